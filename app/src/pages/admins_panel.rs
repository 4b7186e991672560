//! The configuration page's panel for who may change the account's settings (`settings::admins`): the listed
//! admins, adding one by user key, removing one; and, on an account nobody restricts yet, a way for the user at
//! the page to become its first admin.

use crate::settings::admins::{Access, AdminEntry};
use leptos::prelude::*;

/// What each change answers: the list as it now stands, or why nothing changed.
pub type AdminsAnswer = Result<Vec<AdminEntry>, String>;

#[cfg(feature = "ssr")]
fn audit(session: &crate::auth::Session, action: &str, user_key: &str) {
    tracing::info!(target: "ibex::audit", account_key = %session.account_key,
        actor = %format!("{} ({})", session.username, session.user_key), user_key, action, "account admins changed");
}

#[cfg(feature = "ssr")]
async fn listed(
    service: &crate::settings::SettingsService,
    account_key: &str,
) -> Result<Vec<AdminEntry>, ServerFnError> {
    service
        .store()
        .admins(account_key)
        .await
        .map_err(|_| ServerFnError::new("the admin list could not be read; try again"))
}

/// Lists another user of the account as an admin, by the user key their read-only page shows them.
#[server(endpoint = "add_admin")]
pub async fn add_admin(session: String, user_key: String) -> Result<AdminsAnswer, ServerFnError> {
    let (service, session) = super::settings::administering(&session).await?;
    let user_key = user_key.trim().to_owned();
    if !crate::settings::admins::valid_user_key(&user_key) {
        return Ok(Err(
            "User key must be a user key as Infobip writes it (letters, digits, '-', '_', '.', '@', ':'; at \
             most 128)."
                .into(),
        ));
    }
    let by = format!("{} ({})", session.username, session.user_key);
    let added = service
        .store()
        .add_admin(&session.account_key, &user_key, "", &by)
        .await
        .map_err(|_| ServerFnError::new("the admin could not be added; try again"))?;
    if !added {
        return Ok(Err(format!("{user_key} is already an admin.")));
    }
    audit(&session, "added", &user_key);
    Ok(Ok(listed(&service, &session.account_key).await?))
}

/// Removes an admin; never the last one (the operator can, with `ibex admins remove`).
#[server(endpoint = "remove_admin")]
pub async fn remove_admin(
    session: String,
    user_key: String,
) -> Result<AdminsAnswer, ServerFnError> {
    let (service, session) = super::settings::administering(&session).await?;
    let removed = service
        .store()
        .remove_admin(&session.account_key, &user_key, true)
        .await
        .map_err(|_| ServerFnError::new("the admin could not be removed; try again"))?;
    if !removed {
        return Ok(Err(
            "Not removed: an account keeps at least one admin here. Add another admin first."
                .into(),
        ));
    }
    audit(&session, "removed", &user_key);
    Ok(Ok(listed(&service, &session.account_key).await?))
}

/// On an account with no admin yet, where anyone signed in may configure: the user who set the app up (who saved
/// its settings first), or anyone while nobody has, becomes its first admin, and from then on only admins change
/// its settings. Not anyone else: an agent who can open the card could otherwise make themselves sole admin of an
/// account its real admin has set up, and lock them out (a later save does not make anyone the first saver).
#[server(endpoint = "claim_admin")]
pub async fn claim_admin(session: String) -> Result<AdminsAnswer, ServerFnError> {
    let (service, session) = super::settings::configuring(&session).await?;
    let by = format!("{} ({})", session.username, session.user_key);
    let unreadable = |_| ServerFnError::new("the settings could not be read; try again");
    let saved = service
        .load(&session.account_key)
        .await
        .map_err(|_| ServerFnError::new("the settings could not be read; try again"))?
        .is_some();
    if saved {
        let first = service
            .store()
            .first_saved_by(&session.account_key)
            .await
            .map_err(unreadable)?
            .unwrap_or_default();
        // "name (user key)" for a save on the page; a CLI save ("cli:…") names no user of the account.
        if !first.ends_with(&format!("({})", session.user_key)) {
            let who = if first.is_empty() {
                "unknown".to_owned()
            } else {
                first
            };
            return Ok(Err(format!(
                "Only the user who first saved these settings ({who}) can make themselves this account's first \
                 admin; or the app's operator adds one."
            )));
        }
    }
    let claimed = service
        .store()
        .claim_first_admin(
            &session.account_key,
            &session.user_key,
            &session.username,
            &by,
        )
        .await
        .map_err(|_| ServerFnError::new("the admin could not be added; try again"))?;
    if !claimed {
        return Ok(Err(
            "Someone became this account's admin meanwhile: reload the page.".into(),
        ));
    }
    audit(&session, "claimed", &session.user_key);
    Ok(Ok(listed(&service, &session.account_key).await?))
}

#[component]
pub fn AdminsPanel(
    access: Access,
    admins: Vec<AdminEntry>,
    user_key: String,
    session: String,
) -> impl IntoView {
    let admins = RwSignal::new(admins);
    let open = RwSignal::new(access == Access::Open);
    let message = RwSignal::new(None::<(bool, String)>);
    let new_key = RwSignal::new(String::new());
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let change = Action::new({
        let session = session.clone();
        move |what: &(String, String)| {
            let (session, (verb, key)) = (session.clone(), what.clone());
            async move {
                match verb.as_str() {
                    "add" => add_admin(session, key).await,
                    "remove" => remove_admin(session, key).await,
                    _ => claim_admin(session).await,
                }
            }
        }
    });
    Effect::new(move || {
        let Some(result) = change.value().get() else {
            return;
        };
        match result {
            Ok(Ok(list)) => {
                let count = list.len();
                admins.set(list);
                open.set(false);
                new_key.set(String::new());
                message.set(Some((
                    true,
                    format!(
                        "Saved: this account has {count} admin{}.",
                        if count == 1 { "" } else { "s" }
                    ),
                )));
            }
            Ok(Err(why)) => message.set(Some((false, why))),
            Err(e) => message.set(Some((false, e.to_string()))),
        }
    });
    let me = user_key.clone();
    let on_add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if !change.pending().get_untracked() {
            change.dispatch(("add".into(), new_key.get_untracked()));
        }
    };
    view! {
        <section class="card admins" aria-labelledby="admins-title"
            data-interactive=move || interactive.get().to_string()>
            <h2 id="admins-title">"Who can change these settings"</h2>
            <Show when=move || open.get()
                fallback=move || {
                    let me = me.clone();
                    view! {
                        <p class="muted small">
                            {move || if admins.with(Vec::is_empty) {
                                "No admin is listed: you change these settings by your role in Infobip. Everyone else in \
                                 your Infobip account who opens this page can see them (without secrets); list admins by \
                                 user key to let others change them too. Each user's key is shown on their page."
                            } else {
                                "Only the admins below can change these settings; everyone else in your Infobip account \
                                 who opens this page can see them (without secrets). Each user's key is shown on their page."
                            }}
                        </p>
                        <ul class="admin-list" data-testid="admin-list">
                            {move || {
                                let me = me.clone();
                                let list = admins.get();
                                let last = list.len() <= 1;
                                list.into_iter().map(|a| {
                                    let key = a.user_key.clone();
                                    let label = if a.user_key == me { format!("{} (you)", a.display()) } else { a.display() };
                                    view! {
                                        <li>
                                            <span>{label}</span>
                                            <span class="muted small">{format!(" · added by {}", a.added_by)}</span>
                                            {(!last).then(|| view! {
                                                <button type="button" class="link-button"
                                                    aria-label=format!("Remove {} as an admin", a.display())
                                                    on:click=move |_| { change.dispatch(("remove".into(), key.clone())); }>
                                                    "Remove"
                                                </button>
                                            })}
                                        </li>
                                    }
                                }).collect_view()
                            }}
                        </ul>
                        <form class="admin-add" on:submit=on_add novalidate>
                            <label for="admin-user-key">"Add an admin by user key"</label>
                            <div class="admin-add-row">
                                <input id="admin-user-key" type="text" autocomplete="off" class="mono"
                                    placeholder="e.g. U-1A2B-3C4D"
                                    prop:value=move || new_key.get() on:input=move |ev| new_key.set(event_target_value(&ev))/>
                                <button type="submit" class="button secondary" disabled=move || !interactive.get()>"Add admin"</button>
                            </div>
                        </form>
                    }
                }>
                <p class="small" data-testid="admins-open">
                    "Anyone in your Infobip account who opens this page can change these settings, secrets and sync \
                     included. The user who set the app up (who first saved these settings) can make themselves this \
                     account's admin, to allow only the admins they list."
                </p>
                <div class="actions">
                    <button type="button" class="button secondary" disabled=move || !interactive.get()
                        on:click=move |_| { change.dispatch(("claim".into(), String::new())); }>
                        "Make me this account's admin"
                    </button>
                </div>
            </Show>
            <p role="status" data-testid="admins-status"
                class=move || match message.get() { Some((true, _)) => "status ok", Some((false, _)) => "status error", None => "status" }>
                {move || message.get().map(|(_, m)| m)}
            </p>
        </section>
    }
}
