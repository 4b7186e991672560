//! The configuration page's panel for Conversations' Custom cards: the webhook URL to paste into Conversations
//! and the account's bearer token, issued (and re-issued) here and shown once.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The webhook URL with Conversations' own variables in it, provided by the server when the app definition has a
/// `[card]` (the page shows no panel otherwise).
#[derive(Debug, Clone)]
pub struct CustomCardEndpoint(pub String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomCardStatus {
    pub webhook_url: String,
    /// The token in use, if any: never the token itself.
    pub token: Option<TokenInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub hint: String,
    pub issued_by: String,
    pub issued_at: String,
}

#[cfg(feature = "ssr")]
pub async fn status(
    service: &crate::settings::SettingsService,
    account_key: &str,
) -> Result<Option<CustomCardStatus>, ServerFnError> {
    let Some(endpoint) = use_context::<CustomCardEndpoint>() else {
        return Ok(None);
    };
    let token =
        service.store().card_token(account_key).await.map_err(|_| {
            ServerFnError::new("the custom card's token could not be read; try again")
        })?;
    Ok(Some(CustomCardStatus {
        webhook_url: endpoint.0,
        token: token.map(|t| TokenInfo {
            hint: t.hint,
            issued_by: t.issued_by,
            issued_at: super::settings::utc_minutes(t.issued_at).unwrap_or_default(),
        }),
    }))
}

/// Issues a new token for the signed-in account; the one before stops working at once.
#[server(endpoint = "issue_card_token")]
pub async fn issue_card_token(
    session: String,
) -> Result<(String, CustomCardStatus), ServerFnError> {
    let (service, session) = super::settings::configuring(&session).await?;
    if use_context::<CustomCardEndpoint>().is_none() {
        return Err(ServerFnError::new("this app has no context card"));
    }
    let issued = crate::settings::card_tokens::issue();
    let actor = format!("{} ({})", session.username, session.user_key);
    service
        .store()
        .replace_card_token(&session.account_key, &issued.digest, &issued.hint, &actor)
        .await
        .map_err(|_| ServerFnError::new("the token could not be saved; try again"))?;
    tracing::info!(target: "ibex::audit", account = %session.account_key, actor, hint = %issued.hint,
        "custom card token issued");
    let status = status(&service, &session.account_key)
        .await?
        .ok_or_else(|| ServerFnError::new("this app has no context card"))?;
    Ok((issued.token, status))
}

#[component]
pub fn CustomCardPanel(status: CustomCardStatus, session: String) -> impl IntoView {
    let status = RwSignal::new(status);
    let fresh = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let issue = Action::new(move |_: &()| {
        let session = session.clone();
        async move { issue_card_token(session).await }
    });
    Effect::new(move || {
        if let Some(result) = issue.value().get() {
            confirming.set(false);
            match result {
                Ok((token, now)) => {
                    status.set(now);
                    error.set(None);
                    fresh.set(Some(token));
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        }
    });
    let has_token = move || status.with(|s| s.token.is_some());
    let on_issue = move |_| {
        if has_token() && !confirming.get_untracked() {
            confirming.set(true);
        } else {
            issue.dispatch(());
        }
    };
    view! {
        <section class="card custom-card" aria-labelledby="custom-card-title"
            data-interactive=move || interactive.get().to_string()>
            <h2 id="custom-card-title">"Custom card in Conversations"</h2>
            <p class="muted small">
                "To show this app's customer card through Conversations → Settings → Integrations → Custom cards, \
                 add a card with method GET, this URL, and an Authorization header with the token below."
            </p>
            <label for="custom-card-url">"Webhook URL"</label>
            <input id="custom-card-url" class="mono" type="text" readonly
                prop:value=move || status.with(|s| s.webhook_url.clone())/>
            <p class="small" data-testid="card-token-state">
                {move || status.with(|s| match &s.token {
                    Some(t) => format!("A token ending in …{} is in use, issued by {} on {}.", t.hint, t.issued_by, t.issued_at),
                    None => "No token yet: Conversations cannot call the card until one is issued.".to_owned(),
                })}
            </p>
            {move || fresh.get().map(|token| view! {
                <div class="fresh-token" role="status">
                    <label for="custom-card-token">"Authorization header value (shown only now: copy it)"</label>
                    <input id="custom-card-token" class="mono" type="text" readonly
                        prop:value=format!("Bearer {token}")/>
                </div>
            })}
            {move || confirming.get().then(|| view! {
                <p class="status error" role="alert">
                    "The token in use stops working at once: Conversations shows no card until you paste the new one. Replace it?"
                </p>
            })}
            <div class="actions">
                <button type="button" class="button secondary" on:click=on_issue
                    disabled=move || !interactive.get()
                    aria-disabled=move || issue.pending().get().to_string()>
                    {move || match (issue.pending().get(), confirming.get(), has_token()) {
                        (true, _, _) => "Issuing…",
                        (false, true, _) => "Replace the token",
                        (false, false, true) => "Replace token…",
                        (false, false, false) => "Issue token",
                    }}
                </button>
                {move || confirming.get().then(|| view! {
                    <button type="button" class="button secondary" on:click=move |_| confirming.set(false)>"Keep the current token"</button>
                })}
            </div>
            <p role="status" class="status error">{move || error.get()}</p>
        </section>
    }
}
