//! The partner's landing page: what this ibex serves, so a deployment can be checked at a glance.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Overview {
    pub app_name: String,
    pub description: String,
    pub functions: Vec<FunctionSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionSummary {
    pub name: String,
    pub description: String,
    pub method: String,
    pub path: String,
    pub products: Vec<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

#[server]
pub async fn app_overview() -> Result<Overview, ServerFnError> {
    use crate::definition::AppDefinition;
    let definition = use_context::<std::sync::Arc<AppDefinition>>()
        .ok_or_else(|| ServerFnError::new("the app definition is not available"))?;
    Ok(Overview {
        app_name: definition.app.name.clone(),
        description: definition.app.description.clone(),
        functions: definition
            .functions
            .iter()
            .map(|f| FunctionSummary {
                name: f.name.clone(),
                description: f.description.clone(),
                method: f.method.as_str().to_owned(),
                path: f.route_path(),
                products: f.products.iter().map(|p| format!("{p:?}")).collect(),
                inputs: f.inputs.iter().map(|i| i.name.clone()).collect(),
                outputs: f.outputs.iter().map(|o| o.name.clone()).collect(),
            })
            .collect(),
    })
}

#[component]
pub fn HomePage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| app_overview());
    view! {
        <section class="page">
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || overview.get().map(|result| match result {
                    Ok(o) => view! { <OverviewView overview=o/> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn OverviewView(overview: Overview) -> impl IntoView {
    view! {
        <leptos_meta::Title text=format!("{} · ibex", overview.app_name)/>
        <header class="page-header">
            <h1>{overview.app_name}</h1>
            <p class="muted">{overview.description}</p>
        </header>
        <h2>"Functions"</h2>
        <ul class="functions">
            // The island goes inside the item: an island element between <ul> and <li> breaks the list.
            {overview.functions.into_iter().map(|f| {
                let name = f.name.clone();
                view! { <li class="card" data-function=name><FunctionCard f/></li> }
            }).collect_view()}
        </ul>
    }
}

/// An island: its show/hide toggle is the landing page's only interaction.
#[island(lazy)]
pub fn FunctionCard(f: FunctionSummary) -> impl IntoView {
    let (open, set_open) = signal(false);
    let details_id = format!("fields-{}", f.name);
    view! {
        <div class="card-row">
            <div>
                <h3>{f.name.clone()}</h3>
                <p class="muted">{f.description}</p>
                <code>{format!("{} {}", f.method, f.path)}</code>
                " "
                <span class="tag">{f.products.join(" · ")}</span>
            </div>
            // Several cards have this button: the hidden part of its name says whose fields it shows.
            <button type="button" class="button secondary" aria-expanded=move || open.get().to_string()
                aria-controls=details_id.clone()
                on:click=move |_| set_open.update(|o| *o = !*o)>
                {move || if open.get() { "Hide fields" } else { "Show fields" }}
                <span class="visually-hidden">{format!(" of {}", f.name)}</span>
            </button>
        </div>
        <div id=details_id>
            <Show when=move || open.get()>
                <dl class="fields">
                    <dt>"Inputs"</dt><dd>{f.inputs.join(", ")}</dd>
                    <dt>"Outputs"</dt><dd>{f.outputs.join(", ")}</dd>
                </dl>
            </Show>
        </div>
    }
}
