//! Everything the browser and the server share: the page shell, the routes, server functions, and the app
//! definition and settings types that drive them. Server-only halves sit behind the `ssr` feature.

#![recursion_limit = "256"]

pub mod auth;
pub mod definition;
pub mod pages;
pub mod settings;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

const IDLE_DEADLINE: &str =
    "(()=>{const r=window.requestIdleCallback;if(r){window.requestIdleCallback=\
(c,o)=>r.call(window,c,Object.assign({timeout:50},o));}})();";

pub fn shell(options: LeptosOptions) -> impl IntoView {
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                // Leptos' island script waits for requestIdleCallback, which a busy or cross-site iframe may not
                // grant for seconds (seen in Chromium: the form stayed inert). A deadline keeps the form
                // interactive soon after load without replacing Leptos' own script (same nonce as its scripts).
                <script nonce=leptos::nonce::use_nonce() inner_html=IDLE_DEADLINE></script>
                <HydrationScripts options islands=true/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy, with the nonce Leptos put on every inline script of this response: no
/// other script runs, nothing is loaded from elsewhere, no plugin, no `<base>`. `wasm-unsafe-eval` lets the
/// islands' WebAssembly start. The server adds `frame-ancestors` (`signin::oauth::frame_policy`).
fn content_security_policy() {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        let policy = format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
        );
        if let Ok(value) = http::HeaderValue::try_from(policy) {
            response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/ibex.css"/>
        <Title text="ibex"/>
        <Router>
            <main>
                <Routes fallback=|| view! {
                    <Title text="Page not found · ibex"/>
                    <section class="notice">
                        <h1>"Page not found"</h1>
                        <p>"This address is not a page of this app. Open the app again from Infobip."</p>
                    </section>
                }>
                    // Async: the page is sent whole once its data is read, so the island script never races a
                    // streamed chunk and an island is always in the document when it looks for islands.
                    <Route path=StaticSegment("") view=pages::home::HomePage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("settings") view=pages::settings::SettingsPage ssr=SsrMode::Async/>
                    <Route path=StaticSegment("card") view=pages::card::CardPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}
