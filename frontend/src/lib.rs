#![recursion_limit = "256"]
//! The browser half. Pages are plain server-rendered HTML; only `#[island]` components (the settings form, the
//! landing page's function cards) are hydrated, by Leptos' island script calling the islands exported from `app`.

// Links `app`, whose `#[island]` components are the wasm exports the island script looks up by name.
pub use app::pages::{home::FunctionCard, settings::SettingsForm};

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
