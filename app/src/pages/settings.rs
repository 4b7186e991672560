//! The configuration page Exchange frames: which Infobip account and user are signed in, and that account's
//! settings as the app definition describes them (secrets only as set / not set).

use crate::definition::SettingType;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldView {
    pub key: String,
    pub label: String,
    pub help: String,
    pub group: String,
    pub kind: SettingType,
    pub required: bool,
    /// The stored value as text; `None` when unset. Never a secret's value.
    pub value: Option<String>,
    pub default: Option<String>,
    pub secret_set: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SettingsView {
    pub app_name: String,
    pub username: String,
    pub account_key: String,
    pub version: i64,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
    pub fields: Vec<FieldView>,
}

/// Every call carries the page's session token; the account is taken from it, never from the caller.
#[server(endpoint = "load_settings")]
pub async fn load_settings(session: String) -> Result<SettingsView, ServerFnError> {
    use crate::auth::Session;
    use crate::settings::crypto::KeyRing;
    use crate::settings::SettingsService;
    use std::sync::Arc;
    let keys =
        use_context::<Arc<KeyRing>>().ok_or_else(|| ServerFnError::new("server misconfigured"))?;
    let service = use_context::<SettingsService>()
        .ok_or_else(|| ServerFnError::new("server misconfigured"))?;
    let session = Session::open(&session, &keys, crate::settings::store::now_ms())
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let stored = service
        .load(&session.account_key)
        .await
        .map_err(|_| ServerFnError::new("the settings could not be read; try again"))?;
    let definition = service.definition();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let fields = definition
        .settings
        .iter()
        .map(|f| FieldView {
            key: f.key.clone(),
            label: f.label.clone(),
            help: f.help.clone(),
            group: f.group.clone().unwrap_or_else(|| "Settings".into()),
            kind: f.kind,
            required: f.required,
            value: stored
                .as_ref()
                .filter(|_| f.kind != SettingType::Secret)
                .and_then(|s| s.values.get(&f.key))
                .map(text),
            default: f.default.as_ref().map(text),
            secret_set: stored
                .as_ref()
                .is_some_and(|s| s.secrets.contains_key(&f.key)),
        })
        .collect();
    Ok(SettingsView {
        app_name: definition.app.name.clone(),
        username: session.username,
        account_key: session.account_key,
        version: stored.as_ref().map_or(0, |s| s.version),
        updated_at: stored.as_ref().map(|s| s.updated_at),
        updated_by: stored.map(|s| s.updated_by),
        fields,
    })
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let query = use_query_map();
    let session = move || query.with(|q| q.get("session").unwrap_or_default());
    let settings = Resource::new(session, load_settings);
    view! {
        <section class="page settings">
            <Suspense fallback=|| view! { <p class="muted" aria-live="polite">"Loading settings…"</p> }>
                {move || settings.get().map(|result| match result {
                    Ok(view) => view! { <SettingsOverview view/> }.into_any(),
                    Err(e) => view! {
                        <p class="notice error" role="alert">{e.to_string()}</p>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn SettingsOverview(view: SettingsView) -> impl IntoView {
    let mut groups: Vec<(String, Vec<FieldView>)> = Vec::new();
    for field in view.fields {
        match groups.iter_mut().find(|(g, _)| *g == field.group) {
            Some((_, fields)) => fields.push(field),
            None => groups.push((field.group.clone(), vec![field])),
        }
    }
    let last_change = match (view.updated_by, view.version) {
        (Some(by), v) if v > 0 => format!("Version {v}, last changed by {by}"),
        _ => "Not configured yet".to_owned(),
    };
    view! {
        <header class="page-header">
            <h1>{format!("{} settings", view.app_name)}</h1>
            <p class="muted" data-testid="signed-in">
                {format!("Signed in as {} · account {}", view.username, view.account_key)}
            </p>
            <p class="muted" data-testid="last-change">{last_change}</p>
        </header>
        {groups.into_iter().map(|(group, fields)| view! {
            <h2>{group}</h2>
            <dl class="card settings-list">
                {fields.into_iter().map(|f| {
                    let shown = if f.kind == SettingType::Secret {
                        if f.secret_set { "Set (hidden)".to_owned() } else { "Not set".to_owned() }
                    } else {
                        match (&f.value, &f.default) {
                            (Some(v), _) => v.clone(),
                            (None, Some(d)) => format!("{d} (default)"),
                            (None, None) => "Not set".to_owned(),
                        }
                    };
                    view! {
                        <dt>{f.label}{f.required.then_some(" *")}</dt>
                        <dd data-field=f.key>{shown}<small class="muted">{f.help}</small></dd>
                    }
                }).collect_view()}
            </dl>
        }).collect_view()}
    }
}

/// The result of a save the page shows next to the fields; transport failures stay `ServerFnError`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum SaveOutcome {
    Saved {
        version: i64,
    },
    Invalid {
        errors: Vec<crate::settings::FieldError>,
    },
    Conflict {
        current: i64,
    },
}

/// Saves text changes for the session's account (never another: the account comes from the sealed session
/// only), through the same validation as `ibex settings set`, refusing a stale `version`. An empty text clears
/// a field; a secret not mentioned is left as it is. The change is recorded with the signed-in user's key.
#[server(endpoint = "save_settings", input = leptos::server_fn::codec::Json)]
pub async fn save_settings(
    session: String,
    version: i64,
    changes: std::collections::BTreeMap<String, String>,
) -> Result<SaveOutcome, ServerFnError> {
    use crate::auth::Session;
    use crate::settings::crypto::KeyRing;
    use crate::settings::store::StoreError;
    use crate::settings::{SettingsError, SettingsService};
    use std::sync::Arc;
    let keys =
        use_context::<Arc<KeyRing>>().ok_or_else(|| ServerFnError::new("server misconfigured"))?;
    let service = use_context::<SettingsService>()
        .ok_or_else(|| ServerFnError::new("server misconfigured"))?;
    let session = Session::open(&session, &keys, crate::settings::store::now_ms())
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let actor = format!("{} ({})", session.username, session.user_key);
    match service
        .update(&session.account_key, Some(version), &changes, &actor)
        .await
    {
        Ok(saved) => Ok(SaveOutcome::Saved {
            version: saved.version,
        }),
        Err(SettingsError::Invalid(errors)) => Ok(SaveOutcome::Invalid { errors }),
        Err(SettingsError::Store(StoreError::Conflict { current })) => {
            Ok(SaveOutcome::Conflict { current })
        }
        Err(_) => Err(ServerFnError::new(
            "the settings could not be saved; try again",
        )),
    }
}
