//! The Conversations context card: beside the agent's chat, who the account, the agent and the end user are.
//! Rendered on the server; only a row's action is an island (refreshing is a link).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the card shows, one variant per state the agent can meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CardView {
    Ready {
        app_name: String,
        agent: String,
        /// The end user's phone number or address; `None` when nobody has written in yet.
        end_user: Option<EndUserView>,
        /// What the partner's platform knows of the end user (`[card]` of the app definition).
        partner: Box<PartnerPart>,
    },
    /// Infobip knows no such conversation for the signed-in account.
    ConversationNotFound,
    /// Infobip refused the call (403) or keeps rate-limiting; `message` says what to do.
    InfobipRefused { message: String },
    /// Infobip could not be reached or failed.
    InfobipUnavailable { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartnerPart {
    /// The app definition declares no `[card]`, or nobody has written in yet.
    Nothing,
    Found {
        title: String,
        /// In the definition's order; empty values left out.
        fields: Vec<ValueView>,
        list: Option<ListView>,
    },
    /// The lookup ran and the partner has no such customer.
    NotFound {
        address: String,
    },
    /// The conversation's channel (LIVE_CHAT, FACEBOOK_MESSENGER, TWITTER_DM, INTERNAL) gives the end user an
    /// id, not a phone number or email address, and no lookup of the app definition takes that channel's id:
    /// the partner is not asked.
    NoAddress {
        channel: String,
    },
    /// The account has not saved the app's settings yet.
    NotConfigured,
    Failed {
        message: String,
    },
}

/// A labelled value, already formatted for the agent's locale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueView {
    pub label: String,
    pub text: String,
    /// An http(s) URL (checked on the server), opened in a new tab.
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListView {
    pub title: String,
    pub rows: Vec<RowView>,
    /// What the agent can do to each row.
    pub action: Option<ActionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionView {
    pub label: String,
    /// The inputs the agent types.
    pub asks: Vec<AskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskView {
    pub name: String,
    pub label: String,
}

/// A row's action as the server prepared it: `key` names the row (the inputs the server fills in), `confirm`
/// is the question the agent answers before anything is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowAction {
    pub key: BTreeMap<String, String>,
    pub confirm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowView {
    pub title: String,
    /// An http(s) URL (checked on the server): the title links there, in a new tab.
    pub link: Option<String>,
    /// Shown as a tag beside the title (e.g. the order's status).
    pub detail: Option<String>,
    /// Formatted values under the title (e.g. the total and the date).
    pub values: Vec<String>,
    pub action: Option<RowAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndUserView {
    pub address: String,
    pub display_name: Option<String>,
    pub channel: Option<String>,
}

/// What the server does with a card request; the card's sign-in may need renewing, which the page turns into
/// a redirect the agent does not notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CardOutcome {
    Show(CardView),
    SignInAgain { url: String },
}

#[cfg(feature = "ssr")]
pub use server_side::CardSource;

#[cfg(feature = "ssr")]
mod server_side {
    use super::CardOutcome;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;

    /// Implemented by the server, which owns the sessions and the Infobip client.
    pub trait CardSource: Send + Sync + 'static {
        fn load<'a>(
            &'a self,
            card_session: &'a str,
            conversation_id: &'a str,
            attempt: u32,
        ) -> Pin<Box<dyn Future<Output = CardOutcome> + Send + 'a>>;

        /// Runs a row's action: `Ok` with what to tell the agent, or `Err` with why it did not happen.
        fn act<'a>(
            &'a self,
            card_session: &'a str,
            conversation_id: &'a str,
            key: BTreeMap<String, String>,
            typed: BTreeMap<String, String>,
        ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
    }
}

#[server(endpoint = "load_card")]
pub async fn load_card(
    card: String,
    conversation_id: String,
    attempt: u32,
) -> Result<CardView, ServerFnError> {
    use std::sync::Arc;
    let source = use_context::<Arc<dyn CardSource>>()
        .ok_or_else(|| ServerFnError::new("the context card is not set up"))?;
    match source.load(&card, &conversation_id, attempt).await {
        CardOutcome::Show(view) => Ok(view),
        CardOutcome::SignInAgain { url } => {
            // A real redirect (the page is rendered whole before it is sent), so the browser follows it and
            // the agent sees the card again, not a message.
            leptos_axum::redirect(&url);
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::SEE_OTHER);
            }
            Err(ServerFnError::new("signing in again"))
        }
    }
}

/// A row's action, after the agent confirmed it. The answer is a sentence for the agent either way.
#[server(endpoint = "card_action", input = leptos::server_fn::codec::Json)]
pub async fn card_action(
    card: String,
    conversation_id: String,
    key: BTreeMap<String, String>,
    typed: BTreeMap<String, String>,
) -> Result<Result<String, String>, ServerFnError> {
    use std::sync::Arc;
    let source = use_context::<Arc<dyn CardSource>>()
        .ok_or_else(|| ServerFnError::new("the context card is not set up"))?;
    Ok(source.act(&card, &conversation_id, key, typed).await)
}

#[component]
pub fn CardPage() -> impl IntoView {
    let query = use_query_map();
    let params = move || {
        query.with(|q| {
            (
                q.get("card").unwrap_or_default(),
                q.get("conversationId").unwrap_or_default(),
                q.get("attempt")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0u32),
            )
        })
    };
    let card = Resource::new(params, |(card, conversation, attempt)| {
        load_card(card, conversation, attempt)
    });
    let refresh = move || {
        let (card, conversation, _) = params();
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("conversationId", &conversation)
            .append_pair("card", &card)
            .finish();
        format!("/card?{query}")
    };
    view! {
        <leptos_meta::Title text="Customer · ibex"/>
        <section class="card-page">
            <Suspense fallback=|| view! { <CardSkeleton/> }>
                {move || card.get().map(|result| match result {
                    Ok(view) => {
                        let (card, conversation, _) = params();
                        view! { <CardBody view refresh=refresh() card conversation/> }.into_any()
                    }
                    Err(_) => view! {
                        <CardNotice title="The card could not be loaded"
                            message="Something went wrong on the app's side. Try again in a moment.".into()
                            refresh=refresh()/>
                    }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn CardSkeleton() -> impl IntoView {
    view! {
        <div class="skeleton" aria-busy="true" aria-label="Loading the customer">
            <span></span><span></span><span></span>
        </div>
    }
}

#[component]
fn CardNotice(title: &'static str, message: String, refresh: String) -> impl IntoView {
    view! {
        <div class="card-notice" role="status">
            <h1>{title}</h1>
            <p>{message}</p>
            <a class="button secondary" href=refresh>"Try again"</a>
        </div>
    }
}

#[component]
fn CardBody(view: CardView, refresh: String, card: String, conversation: String) -> impl IntoView {
    match view {
        CardView::Ready {
            app_name,
            agent,
            end_user,
            partner,
        } => {
            let who = match partner.as_ref() {
                PartnerPart::Found { title, .. } if !title.is_empty() => Some(title.clone()),
                _ => end_user.as_ref().map(|u| {
                    u.display_name
                        .clone()
                        .unwrap_or_else(|| u.address.clone())
                }),
            };
            view! {
                <header class="card-head">
                    <h1>{who.clone().unwrap_or_else(|| "No customer yet".into())}</h1>
                    <a class="refresh" href=refresh.clone() aria-label="Refresh the card">"Refresh"</a>
                </header>
                {match end_user {
                    Some(u) => view! {
                        <dl class="card-facts" data-testid="end-user">
                            // On a chat channel `from` is the channel's id for the visitor, not a way to reach them.
                            <dt>{if u.channel.as_deref().is_some_and(crate::definition::opaque_id_channel) {
                                "Chat ID"
                            } else {
                                "Contact"
                            }}</dt><dd>{u.address}</dd>
                            {u.channel.map(|c| view! { <dt>"Channel"</dt><dd>{c}</dd> })}
                        </dl>
                    }.into_any(),
                    None => view! {
                        <p class="muted">"Nobody has written in this conversation yet."</p>
                    }.into_any(),
                }}
                <PartnerSection partner=*partner app_name=app_name.clone() card conversation refresh/>
                <p class="muted small card-foot">{format!("{app_name} · signed in as {agent}")}</p>
            }
            .into_any()
        }
        CardView::ConversationNotFound => view! {
            <CardNotice title="Conversation not found"
                message="Infobip has no such conversation for this account. Open the card again from the conversation.".into()
                refresh/>
        }
        .into_any(),
        CardView::InfobipRefused { message } => view! {
            <CardNotice title="Infobip refused the card" message refresh/>
        }
        .into_any(),
        CardView::InfobipUnavailable { message } => view! {
            <CardNotice title="Infobip is not answering" message refresh/>
        }
        .into_any(),
    }
}

#[component]
fn PartnerSection(
    partner: PartnerPart,
    app_name: String,
    card: String,
    conversation: String,
    refresh: String,
) -> impl IntoView {
    match partner {
        PartnerPart::Nothing => ().into_any(),
        PartnerPart::Found { fields, list, .. } => view! {
            <dl class="card-facts" data-testid="partner-fields">
                {fields.into_iter().map(|field| view! {
                    <dt>{field.label}</dt>
                    <dd>{match field.link {
                        Some(href) => view! { <NewTabLink href text=field.text/> }.into_any(),
                        None => field.text.into_any(),
                    }}</dd>
                }).collect_view()}
            </dl>
            {list.map(|list| view! {
                <section class="card-list" aria-labelledby="card-list-title">
                    <h2 id="card-list-title">{list.title}</h2>
                    {if list.rows.is_empty() {
                        view! { <p class="muted">"None yet."</p> }.into_any()
                    } else {
                        view! {
                            <ul>
                                {list.rows.into_iter().map(|row| {
                                    let action = match (&list.action, row.action) {
                                        (Some(a), Some(r)) => Some(view! {
                                            <RowActionControl card=card.clone() conversation=conversation.clone()
                                                label=a.label.clone() asks=a.asks.clone() key=r.key confirm=r.confirm
                                                row_title=row.title.clone()/>
                                        }),
                                        _ => None,
                                    };
                                    view! {
                                    <li>
                                        <div class="row-head">
                                            {match row.link {
                                                Some(href) => view! { <NewTabLink href text=row.title/> }.into_any(),
                                                None => view! { <span>{row.title}</span> }.into_any(),
                                            }}
                                            {row.detail.map(|d| view! { <span class="tag">{d}</span> })}
                                        </div>
                                        {(!row.values.is_empty()).then(|| view! {
                                            <p class="row-values muted small">{row.values.join(" · ")}</p>
                                        })}
                                        {action}
                                    </li>
                                }}).collect_view()}
                            </ul>
                        }.into_any()
                    }}
                </section>
            })}
        }
        .into_any(),
        PartnerPart::NotFound { address } => view! {
            <p class="card-state" data-testid="not-found">{format!("No customer for {address} in {app_name}.")}</p>
        }
        .into_any(),
        // The channel is in the facts above; the agent learns why the partner's part is missing, and what to do.
        PartnerPart::NoAddress { .. } => view! {
            <p class="card-state" data-testid="no-address">
                {format!(
                    "This channel does not share the customer's phone number or email, so {app_name} cannot look them up. Ask the customer for their email or order number."
                )}
            </p>
        }
        .into_any(),
        // No link to the configuration page: the card is an agent's, and the configuration page is for the
        // account's admins, opened from Exchange (a sign-in started from the card's frame would be the agent's).
        PartnerPart::NotConfigured => view! {
            <div class="card-state" data-testid="not-configured">
                <p>{format!("{app_name} is not set up for this account yet: an admin opens Exchange → My apps → {app_name} → Open and saves its settings.")}</p>
            </div>
        }
        .into_any(),
        PartnerPart::Failed { message } => view! {
            <div class="card-state error" role="status" data-testid="partner-failed">
                <p>{message}</p>
                <a class="button secondary" href=refresh>"Retry"</a>
            </div>
        }
        .into_any(),
    }
}

/// A link out of the card: a new tab (the card is a narrow frame beside the chat), without handing the
/// partner's page a handle on Infobip's window, and saying so to screen-reader users.
#[component]
fn NewTabLink(href: String, text: String) -> impl IntoView {
    view! {
        <a href=href target="_blank" rel="noopener noreferrer">
            {text}<span class="visually-hidden">" (opens in a new tab)"</span>
            <span aria-hidden="true">" ↗"</span>
        </a>
    }
}

/// Where a row's action stands in the agent's hands.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Closed,
    Typing,
    Confirming,
    Done(Result<String, String>),
}

/// A row's action: open, type, confirm, done. The card's only island, lazy like every island: the card loads
/// the main wasm module (the runtime) and this island's chunks, never the configuration page's. The row's
/// identity (`key`) is checked again on the server.
#[island(lazy)]
fn RowActionControl(
    card: String,
    conversation: String,
    label: String,
    asks: Vec<AskView>,
    key: BTreeMap<String, String>,
    confirm: String,
    row_title: String,
) -> impl IntoView {
    let step = RwSignal::new(Step::Closed);
    let values: Vec<(AskView, RwSignal<String>)> = asks
        .into_iter()
        .map(|a| (a, RwSignal::new(String::new())))
        .collect();
    let missing = RwSignal::new(None::<String>);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let id = format!(
        "act-{}",
        key.values().cloned().collect::<Vec<_>>().join("-")
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    // Each step replaces the control that had focus, so focus moves to what the step asks for (the first field,
    // Confirm, the outcome), never dropping to the page.
    Effect::new({
        let id = id.clone();
        let first = values
            .first()
            .map(|(a, _)| a.name.clone())
            .unwrap_or_default();
        move || {
            let target = match step.get() {
                Step::Closed => return,
                Step::Typing => format!("{id}-{first}"),
                Step::Confirming => format!("{id}-confirm"),
                Step::Done(_) => format!("{id}-outcome"),
            };
            request_animation_frame(move || super::settings::focus_field(&target));
        }
    });
    let run = Action::new({
        let (card, conversation, key) = (card.clone(), conversation.clone(), key.clone());
        move |typed: &BTreeMap<String, String>| {
            let (card, conversation, key, typed) = (
                card.clone(),
                conversation.clone(),
                key.clone(),
                typed.clone(),
            );
            async move {
                match card_action(card, conversation, key, typed).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err("The app did not answer. Try again in a moment.".to_owned()),
                }
            }
        }
    });
    Effect::new(move || {
        if let Some(outcome) = run.value().get() {
            step.set(Step::Done(outcome));
        }
    });
    let typed = {
        let values = values.clone();
        move || -> BTreeMap<String, String> {
            values
                .iter()
                .map(|(a, v)| (a.name.clone(), v.get_untracked()))
                .collect()
        }
    };
    let review = {
        let values = values.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            match values
                .iter()
                .find(|(_, v)| v.get_untracked().trim().is_empty())
            {
                Some((a, _)) => missing.set(Some(format!("{} is required.", a.label))),
                None => {
                    missing.set(None);
                    step.set(Step::Confirming);
                }
            }
        }
    };
    let open_label = format!("{label}: {row_title}");
    let field_id = id.clone();
    view! {
        <div class="row-action" data-interactive=move || interactive.get().to_string()>
            {move || match step.get() {
                Step::Closed => view! {
                    <button type="button" class="link-button" aria-label=open_label.clone()
                        disabled=move || !interactive.get()
                        on:click=move |_| step.set(Step::Typing)>{label.clone()}</button>
                }.into_any(),
                Step::Typing => view! {
                    <form class="row-action-form" on:submit=review.clone() novalidate>
                        {values.iter().map(|(a, v)| {
                            let v = *v;
                            let input_id = format!("{field_id}-{}", a.name);
                            view! {
                                <label for=input_id.clone()>{a.label.clone()}</label>
                                <textarea id=input_id rows="2" required aria-required="true"
                                    aria-invalid=move || missing.get().is_some().then_some("true")
                                    prop:value=move || v.get()
                                    on:input=move |ev| v.set(event_target_value(&ev))></textarea>
                            }
                        }).collect_view()}
                        <p class="status error" role="alert">{move || missing.get()}</p>
                        <div class="actions">
                            <button type="submit" class="button secondary">"Review"</button>
                            <button type="button" class="link-button" on:click=move |_| step.set(Step::Closed)>"Cancel"</button>
                        </div>
                    </form>
                }.into_any(),
                Step::Confirming => {
                    let typed = typed.clone();
                    let confirm_id = format!("{field_id}-confirm");
                    view! {
                        <div class="row-action-confirm" role="group" aria-label="Confirm">
                            <p>{confirm.clone()}</p>
                            <blockquote class="small">{values.iter().map(|(_, v)| v.get_untracked()).collect::<Vec<_>>().join(" · ")}</blockquote>
                            <div class="actions">
                                <button type="button" class="button" id=confirm_id
                                    aria-disabled=move || run.pending().get().to_string()
                                    on:click=move |_| { if !run.pending().get_untracked() { run.dispatch(typed()); } }>
                                    {move || if run.pending().get() { "Sending…" } else { "Confirm" }}
                                </button>
                                <button type="button" class="link-button" on:click=move |_| step.set(Step::Typing)>"Back"</button>
                            </div>
                        </div>
                    }.into_any()
                }
                Step::Done(Ok(message)) => view! {
                    <p class="status ok" role="status" tabindex="-1" id=format!("{field_id}-outcome")
                        data-testid="action-done">{message}</p>
                }.into_any(),
                Step::Done(Err(message)) => view! {
                    <div>
                        <p class="status error" role="alert" tabindex="-1" id=format!("{field_id}-outcome")
                            data-testid="action-failed">{message}</p>
                        <button type="button" class="link-button" on:click=move |_| step.set(Step::Confirming)>"Try again"</button>
                    </div>
                }.into_any(),
            }}
        </div>
    }
}
