//! The context card's data: the card's sign-in (server-side session) → Infobip's conversation messages → the
//! end user; a refused token turns into a silent new sign-in, Infobip's other failures into the card's states.

use crate::infobip::InfobipError;
use crate::oauth::start_url;
use crate::state::AppState;
use app::pages::card::{CardOutcome, CardSource, CardView, EndUserView};
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
        let sign_in = match self.state.card_sessions.load(card_session).await {
            Ok(Some(sign_in)) => sign_in,
            Ok(None) => return again(),
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
            Err(error) => return CardOutcome::Show(view_of(error)),
        };
        CardOutcome::Show(CardView::Ready {
            app_name: self
                .state
                .definition
                .app
                .card_title
                .clone()
                .unwrap_or_else(|| self.state.definition.app.name.clone()),
            agent: sign_in.username,
            end_user: end_user.map(|u| EndUserView {
                address: u.address,
                display_name: u.display_name,
                channel: u.channel,
            }),
        })
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
        InfobipError::Forbidden(text) => CardView::InfobipRefused {
            message: format!(
                "Infobip refused access to this conversation ({text}). Your user may lack the \
                 Conversations permission the app asks for."
            ),
        },
        InfobipError::RateLimited(secs) => CardView::InfobipRefused {
            message: format!("Infobip is limiting requests right now. Try again in {secs} s."),
        },
        other => CardView::InfobipUnavailable {
            message: format!("{other}. Try again in a moment."),
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
