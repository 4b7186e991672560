//! The context card's data: the card's sign-in (server-side session) → Infobip's conversation messages → the
//! end user; a refused token turns into a silent new sign-in, Infobip's other failures into the card's states.

pub mod format;
pub mod partner;
pub mod webhook;

use crate::infobip::InfobipError;
use crate::signin::oauth::start_url;
use crate::state::AppState;
use app::pages::card::{CardOutcome, CardSource, CardView, EndUserView, PartnerPart};
use format::AgentLocale;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

/// Sign-ins in a row before the card stops renewing and shows an error: the same guard as the sign-in's own.
const MAX_RENEWALS: u32 = 3;

pub struct ServerCard {
    pub state: AppState,
    /// Actions done in the last minute, by card session, row and typed values: the same confirmation sent
    /// twice (a double click, a retried request, ten at once) reaches the partner once, and every copy gets the
    /// first one's answer. Failures are not kept, so "Try again" tries again.
    pub done: moka::future::Cache<String, String>,
}

impl ServerCard {
    /// The process's one record of actions done (`AppState::card_actions_done`): each serving thread builds
    /// its own router, and a copy of a confirmation accepted by another thread must still find the first.
    pub fn new(state: AppState) -> Self {
        ServerCard {
            done: state.card_actions_done.clone(),
            state,
        }
    }

    /// What `done` starts as, once per process.
    pub fn new_done_record() -> moka::future::Cache<String, String> {
        moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(std::time::Duration::from_secs(60))
            .build()
    }

    async fn act_once(
        &self,
        card_session: &str,
        conversation_id: &str,
        key: BTreeMap<String, String>,
        typed: BTreeMap<String, String>,
    ) -> Result<String, String> {
        use sha2::{Digest, Sha256};
        let identity = serde_json::json!([card_session, conversation_id, &key, &typed]).to_string();
        let id = const_hex::encode(Sha256::digest(identity.as_bytes()));
        self.done
            .try_get_with(id, self.act(card_session, conversation_id, key, typed))
            .await
            .map_err(|e| (*e).clone())
    }
}

impl ServerCard {
    async fn run(&self, card_session: &str, conversation_id: &str, attempt: u32) -> CardOutcome {
        let again = || CardOutcome::SignInAgain {
            url: start_url("/card", attempt, Some(conversation_id)),
        };
        if !crate::signin::oauth::valid_conversation_id(conversation_id) {
            return CardOutcome::Show(CardView::ConversationNotFound);
        }
        let sign_in = match self.state.card_sessions.load(card_session).await {
            Ok(Some(sign_in)) if sign_in.conversation_id == conversation_id => sign_in,
            Ok(_) => return again(),
            Err(e) => {
                tracing::error!("{e}");
                return CardOutcome::Show(CardView::InfobipUnavailable {
                    message: "The card's sign-in could not be read. Try again in a moment.".into(),
                });
            }
        };
        let end_user = match self
            .state
            .infobip
            .end_user(
                &sign_in.account_key,
                &sign_in.token,
                &sign_in.token_type,
                conversation_id,
            )
            .await
        {
            Ok(user) => user,
            Err(InfobipError::Unauthorized) if attempt < MAX_RENEWALS => {
                // The token expired or was revoked: forget it and sign in again, which the agent does not see.
                let _ = self.state.card_sessions.delete(card_session).await;
                return again();
            }
            Err(error) => {
                tracing::info!(conversation_id, "context card: {error}");
                return CardOutcome::Show(view_of(error));
            }
        };
        let partner = match (&self.state.definition.card, &end_user) {
            (Some(card), Some(user)) => {
                let conversation = conversation_of(conversation_id, &sign_in, user);
                partner::partner_part(
                    &self.state,
                    card,
                    &sign_in.account_key,
                    conversation,
                    AgentLocale::from_tag(&sign_in.locale),
                    crate::activity::Surface::Card,
                )
                .await
            }
            _ => PartnerPart::Nothing,
        };
        CardOutcome::Show(CardView::Ready {
            app_name: self.state.definition.app.name.clone(),
            agent: sign_in.username,
            end_user: end_user.map(|u| EndUserView {
                address: u.address,
                display_name: u.display_name,
                channel: u.channel,
            }),
            partner: Box::new(partner),
        })
    }
}

impl ServerCard {
    /// A row's action: the same sign-in and end user as the card the agent is looking at, then
    /// `partner::act`, which finds the row again in the customer's current list.
    async fn act(
        &self,
        card_session: &str,
        conversation_id: &str,
        key: BTreeMap<String, String>,
        typed: BTreeMap<String, String>,
    ) -> Result<String, String> {
        let ended =
            || "Your sign-in to the card has ended: refresh the card, then try again.".to_owned();
        let Some(card) = &self.state.definition.card else {
            return Err("This card has no actions.".into());
        };
        let sign_in = match self.state.card_sessions.load(card_session).await {
            Ok(Some(sign_in)) if sign_in.conversation_id == conversation_id => sign_in,
            Ok(_) => return Err(ended()),
            Err(e) => {
                tracing::error!("{e}");
                return Err("The card's sign-in could not be read. Try again in a moment.".into());
            }
        };
        let user = match self
            .state
            .infobip
            .end_user(
                &sign_in.account_key,
                &sign_in.token,
                &sign_in.token_type,
                conversation_id,
            )
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => return Err("Nobody has written in this conversation yet.".into()),
            Err(InfobipError::Unauthorized) => return Err(ended()),
            Err(error) => {
                tracing::info!(conversation_id, "context card action: {error}");
                return Err("Infobip did not answer as expected. Try again in a moment.".into());
            }
        };
        let conversation = conversation_of(conversation_id, &sign_in, &user);
        partner::act(
            &self.state,
            card,
            &sign_in.account_key,
            conversation,
            &key,
            &typed,
        )
        .await
    }
}

/// The conversation in Infobip's own words, for the card's templates.
fn conversation_of(
    conversation_id: &str,
    sign_in: &crate::signin::card_sessions::CardSignIn,
    user: &crate::infobip::EndUser,
) -> partner::Conversation {
    HashMap::from([
        ("conversationId", Value::from(conversation_id)),
        ("customerNumber", Value::from(user.address.as_str())),
        (
            "customerDisplayName",
            Value::from(user.display_name.clone().unwrap_or_default()),
        ),
        (
            "channel",
            Value::from(user.channel.clone().unwrap_or_default()),
        ),
        ("agentId", Value::from(sign_in.user_key.as_str())),
    ])
}

fn view_of(error: InfobipError) -> CardView {
    match error {
        InfobipError::NotFound => CardView::ConversationNotFound,
        InfobipError::Unauthorized => CardView::InfobipRefused {
            message: "Infobip keeps refusing the card's sign-in. Reload the conversation; if it goes on, the \
                      app's OAuth settings do not match App shell."
                .into(),
        },
        InfobipError::Forbidden(_) => CardView::InfobipRefused {
            message: "Infobip refused access to this conversation. Your user may lack the Conversations \
                      permission the app asks for."
                .into(),
        },
        InfobipError::RateLimited(secs) => CardView::InfobipRefused {
            message: format!("Infobip is limiting requests right now. Try again in {secs} s."),
        },
        // The details (Infobip's own error text, a connection error) are for the log, not the agent.
        _ => CardView::InfobipUnavailable {
            message: "Infobip did not answer as expected. Try again in a moment.".into(),
        },
    }
}

impl CardSource for ServerCard {
    fn load<'a>(
        &'a self,
        card_session: &'a str,
        conversation_id: &'a str,
        attempt: u32,
    ) -> Pin<Box<dyn Future<Output = CardOutcome> + Send + 'a>> {
        Box::pin(self.run(card_session, conversation_id, attempt))
    }

    fn act<'a>(
        &'a self,
        card_session: &'a str,
        conversation_id: &'a str,
        key: BTreeMap<String, String>,
        typed: BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(self.act_once(card_session, conversation_id, key, typed))
    }
}
