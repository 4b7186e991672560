#![recursion_limit = "256"]
//! The browser half. Pages are plain server-rendered HTML; only `#[island]` components are hydrated, by Leptos'
//! island script calling the islands exported from `app`. Every island is lazy: `cargo leptos build --split`
//! keeps the runtime in the main module and puts each island in chunks of its own, fetched only by a page that
//! has it (the card never loads the configuration page's code).

// Links `app`, whose `#[island]` components are the wasm exports the island script looks up by name.
pub use app::pages::home::FunctionCard;

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
