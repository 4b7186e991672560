//! The context card's data: the card's sign-in (server-side session) → Infobip's conversation messages → the
//! end user; a refused token turns into a silent new sign-in, Infobip's other failures into the card's states.

use crate::errors::ApiError;
use crate::infobip::InfobipError;
use crate::partner::PartnerError;
use crate::signed::inputs::Inputs;
use crate::signed::invoke::call_partner;
use crate::signin::oauth::start_url;
use crate::state::AppState;
use app::definition::template::{verbatim, Lookup, Source, Template};
use app::definition::{AddressKind, CardSpec};
use app::pages::card::{CardOutcome, CardSource, CardView, EndUserView};
use app::pages::card::{ListView, PartnerPart};
use app::settings::{ResolvedSettings, SettingsError};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

/// Sign-ins in a row before the card stops renewing and shows an error: the same guard as the sign-in's own.
const MAX_RENEWALS: u32 = 3;

pub struct ServerCard {
    pub state: AppState,
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
            .end_user(&sign_in.token, conversation_id)
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
                let context = HashMap::from([
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
                ]);
                self.partner_part(card, &sign_in.account_key, &user.address, context)
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
            partner,
        })
    }

    /// `[card]`: the lookup, then the fields and the list, each call through the signed path's own partner
    /// middleware (`invoke::call_partner`) with this account's settings.
    async fn partner_part(
        &self,
        card: &CardSpec,
        account_key: &str,
        address: &str,
        context: HashMap<&'static str, Value>,
    ) -> PartnerPart {
        let settings = match self.state.settings.resolved(account_key).await {
            Ok(settings) => settings,
            Err(SettingsError::NotConfigured { .. }) => return PartnerPart::NotConfigured,
            Err(e) => {
                return PartnerPart::Failed {
                    message: self.failure(&e.into()),
                }
            }
        };
        let kind = if address.contains('@') {
            AddressKind::Email
        } else {
            AddressKind::Phone
        };
        let Some(lookup) = card
            .lookup
            .iter()
            .find(|l| l.when == AddressKind::Any || l.when == kind)
        else {
            return PartnerPart::NotFound {
                address: address.to_owned(),
            };
        };
        let mut scope = CardScope {
            conversation: context,
            lookup: Map::new(),
        };
        let found = match self
            .call(&lookup.function, &lookup.inputs, &scope, &settings)
            .await
        {
            Ok(outputs) => outputs,
            Err(ApiError::Partner(PartnerError::ClientError { status: 404, .. })) => {
                return PartnerPart::NotFound {
                    address: address.to_owned(),
                }
            }
            Err(e) => {
                return PartnerPart::Failed {
                    message: self.failure(&e),
                }
            }
        };
        scope.lookup = found;
        let fields = card
            .fields
            .iter()
            .filter_map(|f| {
                let value = scope.render(&f.value);
                (!value.is_empty()).then(|| (f.label.clone(), value))
            })
            .collect();
        let list = match &card.list {
            None => None,
            Some(list) => match self
                .call(&list.function, &list.inputs, &scope, &settings)
                .await
            {
                Ok(outputs) => Some(ListView {
                    title: list.title.clone(),
                    rows: outputs
                        .get(&list.output)
                        .and_then(Value::as_array)
                        .map(|items| {
                            items
                                .iter()
                                .map(|item| {
                                    (
                                        text(item.get(&list.item_title)),
                                        list.item_detail
                                            .as_ref()
                                            .map(|d| text(item.get(d)))
                                            .filter(|d| !d.is_empty()),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Err(e) => {
                    return PartnerPart::Failed {
                        message: self.failure(&e),
                    }
                }
            },
        };
        PartnerPart::Found {
            title: scope.render(&card.title),
            fields,
            list,
        }
    }

    /// One function of the definition with inputs rendered from the card's scope.
    async fn call(
        &self,
        function: &str,
        inputs: &BTreeMap<String, String>,
        scope: &CardScope,
        settings: &ResolvedSettings,
    ) -> Result<Map<String, Value>, ApiError> {
        let plan = self
            .state
            .functions
            .iter()
            .find(|p| p.function.name == function)
            .ok_or_else(|| ApiError::UnknownFunction(function.to_owned()))?;
        let given: HashMap<String, Value> = inputs
            .iter()
            .map(|(name, text)| (name.clone(), Value::from(scope.render(text))))
            .collect();
        let inputs = Inputs::from_values(&plan.function, &given)?;
        call_partner(&self.state, plan, settings, &inputs).await
    }

    /// What the agent reads when the partner part fails; the cause goes to the log.
    fn failure(&self, error: &ApiError) -> String {
        let app = &self.state.definition.app.name;
        let (_, code) = error.status_and_code();
        tracing::info!(code, "context card: {error}");
        match code {
            "partner_unreachable" | "partner_timeout" | "partner_server_error" => {
                format!("{app} is not answering right now. Try again in a moment.")
            }
            "partner_address_forbidden" | "partner_request_invalid" | "invalid_settings"
            | "settings_unreadable" | "partner_client_error" => format!(
                "This account's {app} settings do not work: an admin should open the app's configuration \
                 page and use Test connection."
            ),
            _ => format!("{app} answered in a way the card cannot show ({code})."),
        }
    }
}

/// The values a card template draws from: the conversation, and the lookup's outputs once it has run.
struct CardScope {
    conversation: HashMap<&'static str, Value>,
    lookup: Map<String, Value>,
}

impl CardScope {
    fn render(&self, text: &str) -> String {
        Template::parse(text)
            .map(|t| t.render(self, verbatim))
            .unwrap_or_default()
    }
}

impl Lookup for CardScope {
    fn lookup(&self, source: &Source) -> Option<&Value> {
        match source {
            Source::Conversation(name) => self.conversation.get(name.as_str()),
            Source::Lookup(name) => self.lookup.get(name),
            _ => None,
        }
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
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
}
