#![recursion_limit = "256"]
//! The browser half: it only hydrates the server-rendered page, so everything else stays in `app`.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
