//! The configuration page Exchange frames: which Infobip account and user are signed in, and that account's
//! settings as the app definition describes them (secrets only as set / not set).

use crate::definition::SettingType;
use crate::settings::probe::ConnectionCheck;
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
    pub placeholder: String,
    pub secret_set: bool,
    /// A secret is stored but no key of this server opens it: the admin is asked to enter it again.
    pub secret_unreadable: bool,
    pub options: Vec<crate::definition::SelectOption>,
}

/// What a field says when its stored secret cannot be opened (read after the field's label).
pub const UNREADABLE: &str =
    "is stored but cannot be read with this server's encryption keys: enter it again";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SettingsView {
    pub app_name: String,
    pub username: String,
    pub account_key: String,
    pub version: i64,
    /// When the settings last changed, for people: "2026-11-26 01:30 UTC" (the portal's user may be in any time zone).
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// Whether the app definition has a probe request, i.e. whether "Test connection" is offered.
    pub can_test: bool,
    pub fields: Vec<FieldView>,
    /// Conversations' Custom cards: present when the app has a context card.
    pub custom_card: Option<super::custom_card::CustomCardStatus>,
    /// People sync: present when the app defines `[sync]`.
    pub sync: Option<super::sync_panel::SyncStatus>,
    /// Whether this user may change the settings; a user who may only look gets neither secrets' states, nor
    /// the sync panel, nor the Custom cards panel.
    pub access: crate::settings::admins::Access,
    pub user_key: String,
    /// The account's listed admins, for those who may change them.
    pub admins: Vec<crate::settings::admins::AdminEntry>,
    /// What the account's calls did in the last day, for those who may change the settings.
    pub activity: Option<super::activity_panel::ActivityView>,
}

/// The settings service and the session every server function starts from. A token that does not open
/// (forged, altered, expired) is answered 401, so a caller can tell it from a server fault.
#[cfg(feature = "ssr")]
pub(super) fn signed_in(
    token: &str,
) -> Result<(crate::settings::SettingsService, crate::auth::Session), ServerFnError> {
    use crate::settings::crypto::KeyRing;
    use std::sync::Arc;
    let misconfigured = || ServerFnError::new("server misconfigured");
    let keys = use_context::<Arc<KeyRing>>().ok_or_else(misconfigured)?;
    let service = use_context::<crate::settings::SettingsService>().ok_or_else(misconfigured)?;
    let session = crate::auth::Session::open(token, &keys, crate::settings::store::now_ms())
        .map_err(|e| {
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::UNAUTHORIZED);
            }
            ServerFnError::new(e.to_string())
        })?;
    Ok((service, session))
}

/// The session's access to its account, decided afresh at every call (an admin removed a moment ago may change
/// nothing more), with the account's listed admins.
#[cfg(feature = "ssr")]
pub(super) async fn access_of(
    service: &crate::settings::SettingsService,
    session: &crate::auth::Session,
) -> Result<
    (
        crate::settings::admins::Access,
        Vec<crate::settings::admins::AdminEntry>,
    ),
    ServerFnError,
> {
    use crate::settings::admins::{Access, AdminPolicy};
    let policy = use_context::<std::sync::Arc<AdminPolicy>>()
        .ok_or_else(|| ServerFnError::new("server misconfigured"))?;
    let store = service.store();
    let admins = store
        .admins(&session.account_key)
        .await
        .map_err(|_| ServerFnError::new("the settings could not be read; try again"))?;
    let access = policy.decide(session.admin_role, &session.user_key, &admins);
    if access == Access::Admin
        && admins
            .iter()
            .any(|a| a.user_key == session.user_key && a.username != session.username)
    {
        // Only a name for the page to show: a failure costs nothing but a stale name.
        let _ = store
            .note_admin_name(&session.account_key, &session.user_key, &session.username)
            .await;
    }
    Ok((access, admins))
}

/// The start of every server function that changes something (or shows what only admins see): a user who may
/// only look is answered 403.
#[cfg(feature = "ssr")]
pub(super) async fn configuring(
    token: &str,
) -> Result<(crate::settings::SettingsService, crate::auth::Session), ServerFnError> {
    let (service, session) = signed_in(token)?;
    let (access, _) = access_of(&service, &session).await?;
    if !access.can_configure() {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::FORBIDDEN);
        }
        tracing::info!(target: "ibex::audit", account_key = %session.account_key, user_key = %session.user_key,
            "configuration refused: not an admin of the account");
        return Err(ServerFnError::new(
            "only this account's admins can change its settings",
        ));
    }
    Ok((service, session))
}

/// The start of the server functions that change the admin list: only an admin (listed, or by role) may. On an
/// account nobody restricts yet, anyone may configure, but not decide who else may: an agent could otherwise
/// list a key nobody has and lock the real admin out.
#[cfg(feature = "ssr")]
pub(super) async fn administering(
    token: &str,
) -> Result<(crate::settings::SettingsService, crate::auth::Session), ServerFnError> {
    let (service, session) = signed_in(token)?;
    let (access, _) = access_of(&service, &session).await?;
    if access != crate::settings::admins::Access::Admin {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::FORBIDDEN);
        }
        return Err(ServerFnError::new(
            "only this account's admins can change who administers it",
        ));
    }
    Ok((service, session))
}

/// Every call carries the page's session token; the account is taken from it, never from the caller.
#[server(endpoint = "load_settings")]
pub async fn load_settings(session: String) -> Result<SettingsView, ServerFnError> {
    let (service, session) = signed_in(&session)?;
    let (access, admins) = access_of(&service, &session).await?;
    let admin = access.can_configure();
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
        .filter(|f| admin || f.kind != SettingType::Secret)
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
            placeholder: f.placeholder.clone(),
            secret_set: stored
                .as_ref()
                .is_some_and(|s| s.secrets.contains_key(&f.key)),
            secret_unreadable: stored
                .as_ref()
                .is_some_and(|s| s.unreadable.contains(&f.key)),
            options: f.options.clone(),
        })
        .collect();
    let custom_card = match admin {
        true => super::custom_card::status(&service, &session.account_key).await?,
        false => None,
    };
    let sync = match use_context::<std::sync::Arc<dyn super::sync_panel::SyncSource>>() {
        Some(source) if admin => Some(
            source
                .status(&session.account_key)
                .await
                .map_err(ServerFnError::new)?,
        ),
        _ => None,
    };
    let activity = match admin {
        true => super::activity_panel::initial(&session.account_key).await?,
        false => None,
    };
    Ok(SettingsView {
        activity,
        custom_card,
        sync,
        admins: if admin { admins } else { Vec::new() },
        access,
        user_key: session.user_key,
        app_name: definition.app.name.clone(),
        username: session.username,
        account_key: session.account_key,
        version: stored.as_ref().map_or(0, |s| s.version),
        updated_at: stored.as_ref().and_then(|s| utc_minutes(s.updated_at)),
        updated_by: stored.map(|s| s.updated_by),
        can_test: definition.partner.probe.is_some(),
        fields,
    })
}

#[cfg(feature = "ssr")]
pub(super) fn utc_minutes(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .ok()
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
                    Ok(view) => view! { <SettingsOverview view session=session()/> }.into_any(),
                    Err(e) => view! {
                        <section class="notice" role="alert">
                            <h1>"The settings could not be opened"</h1>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

/// One editable field: its text as loaded, what the admin typed, and (for secrets) whether to clear it.
#[derive(Clone)]
struct FieldState {
    view: FieldView,
    initial: String,
    text: RwSignal<String>,
    clear: RwSignal<bool>,
    error: RwSignal<Option<String>>,
}

impl FieldState {
    /// `Some(text)` when the admin changed this field; secrets change only when replaced or cleared.
    fn change(&self) -> Option<String> {
        if self.view.kind == SettingType::Secret {
            if self.clear.get_untracked() {
                return Some(String::new());
            }
            let text = self.text.get_untracked();
            return (!text.is_empty()).then_some(text);
        }
        let text = self.text.get_untracked();
        (text != self.initial).then_some(text)
    }
}

/// "8F3A…A113": enough to tell accounts apart in a narrow frame; the whole key is the tooltip.
fn short_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return key.to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The static part, rendered on the server only: one compact line saying what this is and who is signed in
/// (the portal around the frame already shows the app's name in large), and the last change below the form.
#[component]
fn SettingsOverview(view: SettingsView, session: String) -> impl IntoView {
    let last_change = match (&view.updated_by, view.version) {
        (Some(by), v) if v > 0 => match &view.updated_at {
            Some(at) => format!("Version {v}, last changed by {by} on {at}"),
            None => format!("Version {v}, last changed by {by}"),
        },
        _ => "Not configured yet".to_owned(),
    };
    view! {
        <leptos_meta::Title text=format!("{} settings · ibex", view.app_name)/>
        <header class="topbar">
            <h1>{format!("{} settings", view.app_name)}</h1>
            <p class="muted" data-testid="signed-in">
                <span title=view.account_key.clone()>{format!("Account {}", short_key(&view.account_key))}</span>
                " · "
                <span>{format!("Signed in as {}", view.username)}</span>
            </p>
        </header>
        {match view.access {
            crate::settings::admins::Access::ReadOnly { who } => view! {
                <ReadOnlySettings fields=view.fields who user_key=view.user_key last_change/>
            }.into_any(),
            access => view! {
                <SettingsIsland fields=view.fields version=view.version can_test=view.can_test session
                    last_change sync=view.sync custom_card=view.custom_card access admins=view.admins
                    user_key=view.user_key activity=view.activity/>
            }.into_any(),
        }}
    }
}

/// The settings for a user who may only look: rendered on the server, with no form and no script, and no secret
/// (not even whether one is set).
#[component]
fn ReadOnlySettings(
    fields: Vec<FieldView>,
    who: String,
    user_key: String,
    last_change: String,
) -> impl IntoView {
    let mut groups: Vec<(String, Vec<FieldView>)> = Vec::new();
    for field in fields {
        match groups.iter_mut().find(|(g, _)| *g == field.group) {
            Some((_, list)) => list.push(field),
            None => groups.push((field.group.clone(), vec![field])),
        }
    }
    let shown = |f: &FieldView| -> String {
        let value = f.value.clone().or_else(|| f.default.clone());
        match (f.kind, value) {
            (SettingType::Bool, Some(v)) => if v == "true" { "Yes" } else { "No" }.to_owned(),
            (SettingType::Select, Some(v)) => f
                .options
                .iter()
                .find(|o| o.value == v)
                .map_or(v, |o| o.label.clone()),
            (_, Some(v)) if !v.is_empty() => v,
            _ => "Not set".to_owned(),
        }
    };
    view! {
        <section class="notice read-only" role="status" data-testid="read-only">
            <h2>"You can view these settings"</h2>
            <p>{who}</p>
            <p class="muted small">"Your user key: " <span class="mono" data-testid="user-key">{user_key}</span></p>
        </section>
        {groups.into_iter().map(|(group, list)| view! {
            <section class="card read-only-group">
                <h2>{group}</h2>
                <dl class="settings-list">
                    {list.iter().map(|f| view! {
                        <dt>{f.label.clone()}</dt>
                        <dd data-field=f.key.clone()>{shown(f)}</dd>
                    }).collect_view()}
                </dl>
            </section>
        }).collect_view()}
        <p class="muted small" data-testid="last-change">{last_change}</p>
    }
}

/// The page's one island, loaded as a lazy wasm chunk (the card never fetches it): the form and the panels
/// under it. One island rather than three, because every lazy island's chunks compress apart and repeat their
/// glue: three made the page's wasm 270 KB gzip against 250. Its props travel to the browser as JSON, so they
/// hold nothing that the signed-in admin may not see (never a secret's value), and the session token every call
/// carries.
#[island(lazy)]
fn SettingsIsland(
    fields: Vec<FieldView>,
    version: i64,
    can_test: bool,
    session: String,
    last_change: String,
    sync: Option<super::sync_panel::SyncStatus>,
    custom_card: Option<super::custom_card::CustomCardStatus>,
    access: crate::settings::admins::Access,
    admins: Vec<crate::settings::admins::AdminEntry>,
    user_key: String,
    activity: Option<super::activity_panel::ActivityView>,
) -> impl IntoView {
    view! {
        <SettingsForm fields version can_test session=session.clone()/>
        <p class="muted small" data-testid="last-change">{last_change}</p>
        <super::admins_panel::AdminsPanel access admins user_key session=session.clone()/>
        {sync.map(|status| view! { <super::sync_panel::SyncPanel status session=session.clone()/> })}
        {custom_card.map(|status| view! { <super::custom_card::CustomCardPanel status session=session.clone()/> })}
        {activity.map(|activity| view! { <super::activity_panel::ActivityPanel activity session/> }.into_any())}
    }
}

/// A field's error as a sentence that names it, e.g. "API key is required.": read on its own (by a screen
/// reader, or in the status line) it still says which field.
fn sentence(label: &str, message: &str) -> String {
    let message = message.trim_end_matches('.');
    format!("{label} {message}.")
}

/// Moves focus to an element by its id (scrolling it into view at any width); the islands call it once the
/// browser has drawn what they changed.
pub(super) fn focus_field(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        if let Some(element) = document().get_element_by_id(id) {
            let _ = element
                .unchecked_into::<leptos::web_sys::HtmlElement>()
                .focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// The form: fields by group, Save, and Test connection where the app has a probe.
#[component]
pub fn SettingsForm(
    fields: Vec<FieldView>,
    version: i64,
    can_test: bool,
    session: String,
) -> impl IntoView {
    let version = RwSignal::new(version);
    let status = RwSignal::new(None::<(bool, String)>);
    let fields: Vec<FieldState> = fields
        .into_iter()
        .map(|f| {
            let initial = match f.kind {
                SettingType::Secret => String::new(),
                _ => f
                    .value
                    .clone()
                    .or_else(|| f.default.clone())
                    .unwrap_or_default(),
            };
            FieldState {
                text: RwSignal::new(initial.clone()),
                clear: RwSignal::new(false),
                error: RwSignal::new(f.secret_unreadable.then(|| sentence(&f.label, UNREADABLE))),
                initial,
                view: f,
            }
        })
        .collect();
    let all = fields.clone();
    let changes = {
        let all = all.clone();
        move || -> std::collections::BTreeMap<String, String> {
            all.iter()
                .filter_map(|f| f.change().map(|c| (f.view.key.clone(), c)))
                .collect()
        }
    };
    // Marks the fields named in `errors` (every other field is cleared) and moves focus to the first of them in
    // page order; returns how many fields need correcting.
    let show_errors = {
        let all = all.clone();
        move |errors: Vec<crate::settings::FieldError>| -> usize {
            let mut first = None;
            let mut count = 0;
            for f in &all {
                let message = errors
                    .iter()
                    .filter(|e| e.field == f.view.key)
                    .map(|e| sentence(&f.view.label, &e.message))
                    .collect::<Vec<_>>();
                if message.is_empty() {
                    f.error.set(None);
                } else {
                    count += 1;
                    first.get_or_insert_with(|| format!("field-{}", f.view.key));
                    f.error.set(Some(message.join(" ")));
                }
            }
            if let Some(id) = first {
                request_animation_frame(move || focus_field(&id));
            }
            count
        }
    };
    let check = RwSignal::new(None::<(bool, String)>);
    // Effects run only in the browser, so this flips once the form is hydrated and its buttons work: what tests
    // and the "interactive" budget wait for.
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let test = Action::new({
        let session = session.clone();
        move |changes: &std::collections::BTreeMap<String, String>| {
            let (session, changes) = (session.clone(), changes.clone());
            async move { test_connection(session, changes).await }
        }
    });
    Effect::new({
        let show_errors = show_errors.clone();
        move || {
            let Some(result) = test.value().get() else {
                return;
            };
            check.set(Some(match result {
                Ok(ConnectionCheck::Passed { status, elapsed_ms }) => {
                    show_errors(Vec::new());
                    (
                        true,
                        format!("Connected: the API answered HTTP {status} in {elapsed_ms} ms."),
                    )
                }
                Ok(ConnectionCheck::Failed { message }) => (false, message),
                Ok(ConnectionCheck::Invalid { errors }) => {
                    let n = show_errors(errors);
                    (
                        false,
                        format!("Not tested: correct the {} marked first.", fields_text(n)),
                    )
                }
                Err(e) => (false, e.to_string()),
            }));
        }
    });
    let save = Action::new(
        move |changes: &std::collections::BTreeMap<String, String>| {
            let (session, changes) = (session.clone(), changes.clone());
            async move { save_settings(session, version.get_untracked(), changes).await }
        },
    );
    Effect::new({
        let show_errors = show_errors.clone();
        move || {
            let Some(result) = save.value().get() else {
                return;
            };
            match result {
                Ok(SaveOutcome::Saved { version: v }) => {
                    show_errors(Vec::new());
                    version.set(v);
                    status.set(Some((true, format!("Saved (version {v}).").to_owned())));
                }
                Ok(SaveOutcome::Invalid { errors }) => {
                    let n = show_errors(errors);
                    status.set(Some((
                        false,
                        format!("Nothing was saved: correct the {} marked.", fields_text(n)),
                    )));
                }
                Ok(SaveOutcome::Conflict { current }) => status.set(Some((
                    false,
                    format!(
                        "Someone else saved these settings meanwhile (now version {current}). Nothing of yours was \
                         saved: copy your changes, reload the page, and apply them again."
                    ),
                ))),
                Err(e) => status.set(Some((false, e.to_string()))),
            }
        }
    });
    // While a save runs the button stays enabled (a disabled button drops keyboard focus to the page); a
    // second press is ignored instead.
    let submit = {
        let changes = changes.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            if save.pending().get_untracked() {
                return;
            }
            status.set(None);
            save.dispatch(changes());
        }
    };
    // A new action replaces the last save's message, which may name field errors the test is about to re-check.
    let run_test = move |_| {
        if test.pending().get_untracked() {
            return;
        }
        status.set(None);
        check.set(None);
        test.dispatch(changes());
    };
    let mut groups: Vec<(String, Vec<FieldState>)> = Vec::new();
    for field in fields {
        match groups.iter_mut().find(|(g, _)| *g == field.view.group) {
            Some((_, list)) => list.push(field),
            None => groups.push((field.view.group.clone(), vec![field])),
        }
    }
    let any_required = groups
        .iter()
        .any(|(_, list)| list.iter().any(|f| f.view.required));
    view! {
        // Until the island is hydrated the buttons are disabled, and `post` keeps a native submit (Enter in a
        // field) from putting the typed values, a secret among them, into a URL.
        <form class="settings-form" method="post" on:submit=submit novalidate
            data-interactive=move || interactive.get().to_string()>
            {any_required.then(|| view! {
                <p class="muted small">"Fields marked " <span class="req">"*"</span> " are required."</p>
            })}
            {groups.into_iter().map(|(group, list)| view! {
                <fieldset class="card">
                    <legend>{group}</legend>
                    {list.into_iter().map(field_input).collect_view()}
                </fieldset>
            }).collect_view()}
            <div class="action-bar">
                <div class="actions">
                    <button type="submit" class="button"
                        disabled=move || !interactive.get()
                        aria-disabled=move || save.pending().get().to_string()>
                        {move || if save.pending().get() { "Saving…" } else { "Save" }}
                    </button>
                    {can_test.then(|| view! {
                        <button type="button" class="button secondary" on:click=run_test
                            disabled=move || !interactive.get()
                            aria-disabled=move || test.pending().get().to_string()>
                            {move || if test.pending().get() { "Testing…" } else { "Test connection" }}
                        </button>
                    })}
                </div>
                <p role="status" data-testid="save-status"
                    class=move || match status.get() { Some((true, _)) => "status ok", Some((false, _)) => "status error", None => "status" }>
                    {move || status.get().map(|(_, m)| m)}
                </p>
                <p role="status" data-testid="test-status"
                    class=move || match check.get() { Some((true, _)) => "status ok", Some((false, _)) => "status error", None => "status" }>
                    {move || check.get().map(|(_, m)| m)}
                </p>
            </div>
        </form>
    }
}

fn fields_text(n: usize) -> String {
    if n == 1 {
        "field".into()
    } else {
        format!("{n} fields")
    }
}

fn field_input(f: FieldState) -> impl IntoView {
    let id = format!("field-{}", f.view.key);
    let help_id = format!("{id}-help");
    let error_id = format!("{id}-error");
    let has_help = !f.view.help.is_empty();
    let text = f.text;
    let error = f.error;
    // The error first: it is what the admin must act on, read right after the field's name.
    let described_by = {
        let (help_id, error_id) = (help_id.clone(), error_id.clone());
        move || {
            let mut ids = Vec::new();
            if error.get().is_some() {
                ids.push(error_id.clone());
            }
            if has_help {
                ids.push(help_id.clone());
            }
            (!ids.is_empty()).then(|| ids.join(" "))
        }
    };
    let invalid = move || error.get().is_some().then_some("true");
    let required = f.view.required && !(f.view.kind == SettingType::Secret && f.view.secret_set);
    let aria_required = required.then_some("true");
    let label = f.view.label.clone();
    let mut clear_box = None;
    let input = match f.view.kind {
        SettingType::Select => view! {
            <select id=id.clone() name=f.view.key.clone() aria-describedby=described_by
                aria-invalid=invalid aria-required=aria_required
                on:change=move |ev| text.set(event_target_value(&ev))>
                {f.view.options.iter().map(|o| {
                    let selected = o.value == f.initial;
                    view! { <option value=o.value.clone() selected=selected>{o.label.clone()}</option> }
                }).collect_view()}
            </select>
        }.into_any(),
        SettingType::Bool => view! {
            <input type="checkbox" id=id.clone() name=f.view.key.clone() aria-describedby=described_by
                aria-invalid=invalid
                prop:checked=move || text.get() == "true"
                on:change=move |ev| text.set(event_target_checked(&ev).to_string())/>
        }.into_any(),
        SettingType::Secret => {
            let clear = f.clear;
            let placeholder = match (f.view.secret_set, f.view.secret_unreadable) {
                (_, true) => "Unreadable — enter it again",
                (true, _) => "Set — type to replace",
                _ => "Not set",
            };
            if f.view.secret_set {
                let clear_id = format!("{id}-clear");
                clear_box = Some(view! {
                    <div class="check-row">
                        <input type="checkbox" id=clear_id.clone() prop:checked=move || clear.get()
                            on:change=move |ev| clear.set(event_target_checked(&ev))/>
                        <label for=clear_id>{format!("Clear the stored {}", lower_first(&label))}</label>
                    </div>
                });
            }
            view! {
                <input type="password" id=id.clone() name=f.view.key.clone() autocomplete="off"
                    aria-describedby=described_by aria-invalid=invalid aria-required=aria_required
                    placeholder=placeholder
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
            }.into_any()
        }
        kind => {
            let input_type = match kind { SettingType::Url => "url", _ => "text" };
            let placeholder = (!f.view.placeholder.is_empty()).then(|| f.view.placeholder.clone());
            view! {
                <input type=input_type id=id.clone() name=f.view.key.clone() aria-describedby=described_by
                    aria-invalid=invalid aria-required=aria_required placeholder=placeholder
                    inputmode=if kind == SettingType::Number { "decimal" } else { "text" }
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
            }.into_any()
        }
    };
    let star = f
        .view
        .required
        .then(|| view! { <span class="req" aria-hidden="true">"*"</span> });
    let help =
        has_help.then(|| view! { <small id=help_id class="muted">{f.view.help.clone()}</small> });
    let error_view = view! {
        <Show when=move || error.get().is_some()>
            <small class="field-error" id=error_id.clone()>{move || error.get().unwrap_or_default()}</small>
        </Show>
    };
    if f.view.kind == SettingType::Bool {
        return view! {
            <div class="field" data-field=f.view.key.clone() class:invalid=move || error.get().is_some()>
                <div class="check-row">{input}<label for=id>{f.view.label.clone()}</label>{star}</div>
                {error_view}
                {help}
            </div>
        }
        .into_any();
    }
    view! {
        <div class="field" data-field=f.view.key.clone() class:invalid=move || error.get().is_some()>
            // The star stays outside the label, so the field's name is its label alone.
            <div class="label-row"><label for=id>{f.view.label.clone()}</label>{star}</div>
            {input}
            {error_view}
            {help}
            {clear_box}
        </div>
    }
    .into_any()
}

/// "Password" → "password", for "Clear the stored …"; an acronym ("API key") keeps its capitals.
fn lower_first(label: &str) -> String {
    let mut chars = label.chars();
    match (chars.next(), chars.clone().next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => label.to_owned(),
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
    use crate::settings::store::StoreError;
    use crate::settings::SettingsError;
    let (service, session) = configuring(&session).await?;
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

/// Tries the partner API with the stored settings overlaid by the unsaved values on screen, for the session's
/// account only. Nothing is saved; the answer says whether the connection works or what to check.
#[server(endpoint = "test_connection", input = leptos::server_fn::codec::Json)]
pub async fn test_connection(
    session: String,
    changes: std::collections::BTreeMap<String, String>,
) -> Result<ConnectionCheck, ServerFnError> {
    use crate::settings::probe::ConnectionProbe;
    use crate::settings::store::ProbeRecord;
    use crate::settings::{FieldError, SettingsError};
    use std::sync::Arc;
    let (service, session) = configuring(&session).await?;
    let probe = use_context::<Arc<dyn ConnectionProbe>>()
        .ok_or_else(|| ServerFnError::new("this app defines no connection test"))?;
    match service
        .store()
        .probe_allowed(&session.account_key, crate::settings::store::now_ms())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Ok(ConnectionCheck::Failed {
                message: crate::settings::store::PROBES_EXHAUSTED.into(),
            })
        }
        Err(_) => {
            return Err(ServerFnError::new(
                "the settings could not be read; try again",
            ))
        }
    }
    let (check, destination) = match service.preview(&session.account_key, &changes).await {
        Ok(settings) => (
            probe.check(&settings).await,
            probe.destination(&settings).unwrap_or_default(),
        ),
        Err(SettingsError::Invalid(errors)) => (ConnectionCheck::Invalid { errors }, String::new()),
        Err(SettingsError::NotConfigured { missing, .. }) => (
            ConnectionCheck::Invalid {
                errors: missing
                    .into_iter()
                    .map(|field| FieldError {
                        field,
                        message: "is required".into(),
                    })
                    .collect(),
            },
            String::new(),
        ),
        Err(SettingsError::Unreadable(fields)) => (
            ConnectionCheck::Invalid {
                errors: fields
                    .into_iter()
                    .map(|field| FieldError {
                        field,
                        message: UNREADABLE.into(),
                    })
                    .collect(),
            },
            String::new(),
        ),
        Err(SettingsError::Store(_)) => {
            return Err(ServerFnError::new(
                "the settings could not be read; try again",
            ))
        }
    };
    // The audit log keeps every probe, refused ones too: trying the stored key against a new address is
    // exactly what it must show. The answer is already known, so a failure to record is logged, not shown.
    let record = ProbeRecord {
        tested_fields: changes.keys().cloned().collect(),
        destination,
        outcome: check.summary(),
        tested_by: format!("{} ({})", session.username, session.user_key),
        tested_at: crate::settings::store::now_ms(),
    };
    tracing::info!(
        target: "ibex::audit",
        account_key = %session.account_key,
        tested_by = %record.tested_by,
        destination = %record.destination,
        outcome = %record.outcome,
        "connection test"
    );
    if let Err(e) = service
        .store()
        .record_probe(&session.account_key, &record)
        .await
    {
        tracing::error!(target: "ibex::audit", account_key = %session.account_key, "connection test not recorded: {e}");
    }
    Ok(check)
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    #[test]
    fn change_times_read_in_utc_to_the_minute() {
        assert_eq!(
            super::utc_minutes(0).as_deref(),
            Some("1970-01-01 00:00 UTC")
        );
        // 2026-11-26 01:30:59.999 UTC: seconds are dropped, not rounded up
        assert_eq!(
            super::utc_minutes(1_795_656_659_999).as_deref(),
            Some("2026-11-26 01:30 UTC")
        );
    }
}
