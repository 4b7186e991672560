//! "Test connection" on the configuration page: the app definition's `[partner.probe]` request, sent once with
//! the settings on screen. The answer names what to check and never repeats the partner's body: the base URL can
//! come from a setting, and the page must not become a way to read arbitrary URLs through ibex.

use crate::partner::{PartnerClient, PartnerError, RequestPlan};
use app::definition::AppDefinition;
use app::settings::probe::{ConnectionCheck, ConnectionProbe};
use app::settings::ResolvedSettings;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub struct PartnerProbe {
    plan: RequestPlan,
    client: PartnerClient,
    deadline: Duration,
}

impl PartnerProbe {
    /// `None` when the app definition has no probe, so the page offers no test.
    pub fn compile(
        definition: &AppDefinition,
        client: PartnerClient,
    ) -> Result<Option<Self>, String> {
        let Some(spec) = &definition.partner.probe else {
            return Ok(None);
        };
        let plan = RequestPlan::compile(&definition.partner, spec, &[])
            .map_err(|e| format!("[partner.probe]: {e}"))?;
        Ok(Some(PartnerProbe {
            plan,
            client,
            deadline: Duration::from_millis(definition.partner.timeout_ms),
        }))
    }

    async fn run(&self, settings: &ResolvedSettings) -> ConnectionCheck {
        let started = Instant::now();
        let result = match self.plan.build(settings) {
            Ok(request) => self.client.probe(&request, self.deadline).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(status) => ConnectionCheck::Passed {
                status,
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            Err(error) => ConnectionCheck::Failed {
                message: advice(&error),
            },
        }
    }
}

impl ConnectionProbe for PartnerProbe {
    fn check<'a>(
        &'a self,
        settings: &'a ResolvedSettings,
    ) -> Pin<Box<dyn Future<Output = ConnectionCheck> + Send + 'a>> {
        Box::pin(self.run(settings))
    }

    fn destination(&self, settings: &ResolvedSettings) -> Option<String> {
        let request = self.plan.build(settings).ok()?;
        Some(request.uri.authority()?.to_string())
    }
}

fn advice(error: &PartnerError) -> String {
    match error {
        PartnerError::Build(e) => format!("Not tested: {e}."),
        PartnerError::Forbidden(e) => format!(
            "Not tested: {e}. Use the public address of the API."
        ),
        PartnerError::Unreachable(_) => {
            "Could not reach the API: check the URL, and that the server is up and reachable from ibex.".into()
        }
        PartnerError::Timeout(ms) => format!(
            "The API did not answer within {ms} ms: check the URL, or try again if the service is busy."
        ),
        PartnerError::ClientError { status: 401 | 403, .. } => format!(
            "The API refused these credentials (HTTP {}): check the key or password.",
            error.partner_status().unwrap_or_default()
        ),
        PartnerError::ClientError { status: 404, .. } => {
            "The API answered HTTP 404: check that the URL points at the API itself.".into()
        }
        PartnerError::ClientError { status, .. } => {
            format!("The API refused the test request with HTTP {status}.")
        }
        PartnerError::ServerError { status, .. } => format!(
            "The API failed with HTTP {status}: the credentials may be right, but the service has a problem."
        ),
        PartnerError::NotJson(_) | PartnerError::TooLarge(_) => {
            "The API answered, but not as expected.".into()
        }
    }
}
