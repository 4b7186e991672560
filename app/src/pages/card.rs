//! The Conversations context card: beside the agent's chat, who the account, the agent and the end user are.
//! Rendered on the server only (no island yet: refreshing is a link), so it ships no wasm of its own.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

/// What the card shows, one variant per state the agent can meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CardView {
    Ready {
        app_name: String,
        agent: String,
        /// The end user's phone number or address; `None` when nobody has written in yet.
        end_user: Option<EndUserView>,
        /// What the partner's platform knows of the end user (`[card]` of the app definition).
        partner: PartnerPart,
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
                    Ok(view) => view! { <CardBody view refresh=refresh()/> }.into_any(),
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
fn CardBody(view: CardView, refresh: String) -> impl IntoView {
    match view {
        CardView::Ready {
            app_name,
            agent,
            end_user,
            partner,
        } => {
            let who = match &partner {
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
                    <a class="refresh" href=refresh aria-label="Refresh the card">"Refresh"</a>
                </header>
                {match end_user {
                    Some(u) => view! {
                        <dl class="card-facts" data-testid="end-user">
                            <dt>"Contact"</dt><dd>{u.address}</dd>
                            {u.channel.map(|c| view! { <dt>"Channel"</dt><dd>{c}</dd> })}
                        </dl>
                    }.into_any(),
                    None => view! {
                        <p class="muted">"Nobody has written in this conversation yet."</p>
                    }.into_any(),
                }}
                <PartnerSection partner app_name=app_name.clone()/>
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
fn PartnerSection(partner: PartnerPart, app_name: String) -> impl IntoView {
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
                                {list.rows.into_iter().map(|row| view! {
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
                                    </li>
                                }).collect_view()}
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
        PartnerPart::NotConfigured => view! {
            <p class="card-state" data-testid="not-configured">
                {format!("{app_name} is not set up for this account yet: an admin opens Exchange → My apps → {app_name} → Open and saves its settings.")}
            </p>
        }
        .into_any(),
        PartnerPart::Failed { message } => view! {
            <p class="card-state error" role="status" data-testid="partner-failed">{message}</p>
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
