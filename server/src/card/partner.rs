//! What the partner's platform knows of a conversation's end user, as `[card]` declares it: the lookup, then
//! the fields and the list. Both ways of showing a card (the framed page and the Custom cards webhook) come
//! here, and every call goes through the signed path's own partner middleware (`invoke::call_partner`) with the
//! account's settings: there is no second way to reach the partner.

use super::format::AgentLocale;
use crate::activity::{CallRecord, Surface};
use crate::errors::ApiError;
use crate::partner::PartnerError;
use crate::signed::inputs::Inputs;
use crate::signed::invoke::call_partner;
use crate::state::AppState;
use app::definition::template::{verbatim, Lookup, Source, Template};
use app::definition::{
    opaque_id_channel, AddressKind, CardAction, CardList, CardLookup, CardSpec, ValueFormat,
};
use app::pages::card::{ActionView, AskView, ListView, PartnerPart, RowAction, RowView, ValueView};
use app::settings::{ResolvedSettings, SettingsError};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The longest value an agent may type into an action's input.
pub const MAX_TYPED_CHARS: usize = 2000;

/// The conversation as Infobip names it (`customerNumber`, `conversationId` …), for the card's templates.
pub type Conversation = HashMap<&'static str, Value>;

pub async fn partner_part(
    state: &AppState,
    card: &CardSpec,
    account_key: &str,
    conversation: Conversation,
    locale: AgentLocale,
    surface: Surface,
) -> PartnerPart {
    let who = Who {
        account: account_key,
        surface,
    };
    let (scope, settings) = match found(state, card, who, conversation).await {
        Ok(found) => found,
        Err(part) => return part,
    };
    let fields = card
        .fields
        .iter()
        .filter_map(|f| {
            let raw = scope.value(&f.value);
            if raw.is_null() || raw.as_str() == Some("") {
                return None;
            }
            let currency = f.currency.as_deref().map(|c| scope.render(c));
            let text = locale.show(&raw, f.format, currency.as_deref());
            let link = (f.format == ValueFormat::Link)
                .then(|| safe_link(&text))
                .flatten();
            Some(ValueView {
                label: f.label.clone(),
                text,
                link,
            })
        })
        .collect();
    let list = match &card.list {
        None => None,
        Some(list) => match items(state, who, list, &scope, &settings).await {
            Ok(items) => Some(ListView {
                title: list.title.clone(),
                rows: items
                    .iter()
                    .map(|item| row(list, item, &scope, locale))
                    .collect(),
                action: list.action.as_ref().map(|a| action_view(state, a)),
            }),
            Err(e) => {
                return PartnerPart::Failed {
                    message: failure(state, &e),
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

/// The account's settings and the lookup's outputs, or the state the card shows instead.
async fn found(
    state: &AppState,
    card: &CardSpec,
    who: Who<'_>,
    conversation: Conversation,
) -> Result<(CardScope, std::sync::Arc<ResolvedSettings>), PartnerPart> {
    let address = conversation
        .get("customerNumber")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if address.is_empty() {
        return Err(PartnerPart::Nothing);
    }
    let channel = conversation
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let lookup = match pick_lookup(card, &address, channel) {
        Pick::NoAddress => {
            return Err(PartnerPart::NoAddress {
                channel: channel.to_owned(),
            })
        }
        Pick::Lookup(lookup) => Some(lookup),
        Pick::NoneFits => None,
    };
    let started = Instant::now();
    let settings = match state.settings.resolved(who.account).await {
        Ok(settings) => settings,
        Err(e) => {
            let e = ApiError::from(e);
            who.count(state, "settings", started, &Err::<(), _>(&e));
            if matches!(e, ApiError::Settings(SettingsError::NotConfigured { .. })) {
                return Err(PartnerPart::NotConfigured);
            }
            return Err(PartnerPart::Failed {
                message: failure(state, &e),
            });
        }
    };
    let Some(lookup) = lookup else {
        return Err(PartnerPart::NotFound { address });
    };
    let mut scope = CardScope {
        conversation,
        lookup: Map::new(),
        item: None,
        result: None,
    };
    match call(
        state,
        who,
        &lookup.function,
        &lookup.inputs,
        &scope,
        &settings,
        None,
    )
    .await
    {
        Ok(outputs) => scope.lookup = outputs,
        Err(ApiError::Partner(PartnerError::ClientError { status: 404, .. })) => {
            return Err(PartnerPart::NotFound { address })
        }
        Err(e) => {
            return Err(PartnerPart::Failed {
                message: failure(state, &e),
            })
        }
    }
    Ok((scope, settings))
}

/// Which lookup fits the end user's `from`.
#[derive(Debug, PartialEq)]
enum Pick<'a> {
    Lookup(&'a CardLookup),
    /// A phone number or address no lookup takes: the partner has no way to find them.
    NoneFits,
    /// An opaque id (`OPAQUE_ID_CHANNELS`) on a channel no lookup names.
    NoAddress,
}

/// On a channel whose `from` is an opaque id, only a lookup naming that channel may use it: sent as a phone
/// number or address it would find nobody, or the wrong customer; without one, the card says so and asks nobody.
fn pick_lookup<'a>(card: &'a CardSpec, address: &str, channel: &str) -> Pick<'a> {
    let found = if opaque_id_channel(channel) {
        card.lookup.iter().find(|l| {
            l.when == AddressKind::ChannelId
                && l.channels.iter().any(|c| c.eq_ignore_ascii_case(channel))
        })
    } else {
        let kind = if address.contains('@') {
            AddressKind::Email
        } else {
            AddressKind::Phone
        };
        card.lookup
            .iter()
            .find(|l| l.when == AddressKind::Any || l.when == kind)
    };
    match found {
        Some(lookup) => Pick::Lookup(lookup),
        None if opaque_id_channel(channel) => Pick::NoAddress,
        None => Pick::NoneFits,
    }
}

/// The list's rows as the partner answered them.
async fn items(
    state: &AppState,
    who: Who<'_>,
    list: &CardList,
    scope: &CardScope,
    settings: &ResolvedSettings,
) -> Result<Vec<Value>, ApiError> {
    let outputs = call(
        state,
        who,
        &list.function,
        &list.inputs,
        scope,
        settings,
        None,
    )
    .await?;
    Ok(match outputs.get(&list.output) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    })
}

fn action_view(state: &AppState, action: &CardAction) -> ActionView {
    let function = state
        .functions
        .iter()
        .find(|p| p.function.name == action.function);
    ActionView {
        label: action.label.clone(),
        asks: action
            .ask
            .iter()
            .map(|name| AskView {
                name: name.clone(),
                label: function
                    .and_then(|p| p.function.inputs.iter().find(|i| i.name == *name))
                    .and_then(|i| i.title.clone())
                    .unwrap_or_else(|| name.clone()),
            })
            .collect(),
    }
}

/// Runs a row's action for the agent. The row is named by the inputs the server rendered for it (`key`); it is
/// looked for again in the customer's current list, so an agent can act only on rows the card would show, and
/// the only values taken from the browser are the ones `ask` names.
pub async fn act(
    state: &AppState,
    card: &CardSpec,
    account_key: &str,
    conversation: Conversation,
    key: &BTreeMap<String, String>,
    typed: &BTreeMap<String, String>,
) -> Result<String, String> {
    let app = &state.definition.app.name;
    let gone =
        || format!("This row is no longer in {app}'s list for this customer: refresh the card.");
    let (Some(list), Some(action)) = (
        card.list.as_ref(),
        card.list.as_ref().and_then(|l| l.action.as_ref()),
    ) else {
        return Err("This card has no such action.".into());
    };
    if let Some(extra) = typed.keys().find(|name| !action.ask.contains(name)) {
        return Err(format!("`{extra}` cannot be typed for this action."));
    }
    if let Some((name, _)) = typed
        .iter()
        .find(|(_, v)| v.chars().count() > MAX_TYPED_CHARS)
    {
        return Err(format!(
            "`{name}` is longer than {MAX_TYPED_CHARS} characters; shorten it."
        ));
    }
    // Actions are the framed card's only: the Custom cards answer has no buttons.
    let who = Who {
        account: account_key,
        surface: Surface::Card,
    };
    let (mut scope, settings) = match found(state, card, who, conversation).await {
        Ok(found) => found,
        Err(PartnerPart::Failed { message }) => return Err(message),
        Err(_) => return Err(gone()),
    };
    let items = items(state, who, list, &scope, &settings)
        .await
        .map_err(|e| failure(state, &e))?;
    let item = items
        .into_iter()
        .find(|item| {
            scope.item = Some(item.clone());
            row_key(action, &scope) == *key
        })
        .ok_or_else(gone)?;
    scope.item = Some(item);
    let typed: HashMap<String, Value> = typed
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.trim())))
        .collect();
    match call(
        state,
        who,
        &action.function,
        &action.inputs,
        &scope,
        &settings,
        Some(typed),
    )
    .await
    {
        Ok(outputs) => {
            scope.result = Some(outputs);
            tracing::info!(target: "ibex::audit", account = %account_key, function = %action.function,
                "context card action");
            Ok(scope.render(&action.done))
        }
        Err(ApiError::Input(e)) => Err(format!("{e}.")),
        Err(e) => Err(failure(state, &e)),
    }
}

/// The inputs the server fills in for a row's action: what names the row when the agent acts on it.
fn row_key(action: &CardAction, scope: &CardScope) -> BTreeMap<String, String> {
    action
        .inputs
        .iter()
        .map(|(name, text)| (name.clone(), scope.render(text)))
        .collect()
}

fn row(list: &CardList, item: &Value, scope: &CardScope, locale: AgentLocale) -> RowView {
    let get = |name: &str| item.get(name).unwrap_or(&Value::Null);
    let action = list.action.as_ref().map(|action| {
        let scope = CardScope {
            conversation: scope.conversation.clone(),
            lookup: scope.lookup.clone(),
            item: Some(item.clone()),
            result: None,
        };
        RowAction {
            key: row_key(action, &scope),
            confirm: scope.render(&action.confirm),
        }
    });
    RowView {
        action,
        title: text(get(&list.item_title)),
        link: list
            .item_link
            .as_deref()
            .and_then(|name| safe_link(&text(get(name)))),
        detail: list
            .item_detail
            .as_deref()
            .map(|d| text(get(d)))
            .filter(|d| !d.is_empty()),
        values: list
            .values
            .iter()
            .filter(|v| !get(&v.item).is_null())
            .map(|v| {
                let currency = v
                    .currency
                    .clone()
                    .or_else(|| v.currency_item.as_deref().map(|c| text(get(c))));
                locale.show(get(&v.item), v.format, currency.as_deref())
            })
            .collect(),
    }
}

/// Only http(s) URLs become links: a partner's `javascript:` or `data:` value must never be an `href` on the
/// agent's screen.
pub fn safe_link(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

/// Whose card asks, and which kind of card: what the account's activity counts each call under.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub account: &'a str,
    pub surface: Surface,
}

impl Who<'_> {
    fn count<T>(
        &self,
        state: &AppState,
        function: &str,
        started: Instant,
        outcome: &Result<T, &ApiError>,
    ) {
        state.activity.record(&CallRecord::of(
            self.account,
            self.surface,
            function,
            started.elapsed(),
            outcome.as_ref().err().copied(),
        ));
    }
}

/// One function of the definition with inputs rendered from the card's scope, counted in the account's activity.
async fn call(
    state: &AppState,
    who: Who<'_>,
    function: &str,
    inputs: &BTreeMap<String, String>,
    scope: &CardScope,
    settings: &ResolvedSettings,
    typed: Option<HashMap<String, Value>>,
) -> Result<Map<String, Value>, ApiError> {
    let plan = state
        .functions
        .iter()
        .find(|p| p.function.name == function)
        .ok_or_else(|| ApiError::UnknownFunction(function.to_owned()))?;
    let mut given: HashMap<String, Value> = typed.unwrap_or_default();
    given.extend(
        inputs
            .iter()
            .map(|(name, text)| (name.clone(), Value::from(scope.render(text)))),
    );
    let inputs = Inputs::from_values(&plan.function, &given)?;
    let started = Instant::now();
    let outcome = call_partner(state, plan, settings, &inputs).await;
    who.count(state, function, started, &outcome.as_ref().map(|_| ()));
    outcome
}

/// What the agent reads when the partner part fails; the cause goes to the log.
pub fn failure(state: &AppState, error: &ApiError) -> String {
    let app = &state.definition.app.name;
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

/// The values a card template draws from: the conversation, and the lookup's outputs once it has run.
pub struct CardScope {
    pub conversation: Conversation,
    pub lookup: Map<String, Value>,
    /// The list row an action is for.
    pub item: Option<Value>,
    /// The action's own outputs, for its `done` message.
    pub result: Option<Map<String, Value>>,
}

impl CardScope {
    pub fn render(&self, text: &str) -> String {
        Template::parse(text)
            .map(|t| t.render(self, verbatim))
            .unwrap_or_default()
    }

    /// A template that is one placeholder keeps its JSON type (a number stays a number for its format).
    fn value(&self, text: &str) -> Value {
        match Template::parse(text) {
            Ok(t) => match t.single() {
                Some(source) => self.lookup(source).cloned().unwrap_or(Value::Null),
                None => Value::from(t.render(self, verbatim)),
            },
            Err(_) => Value::Null,
        }
    }
}

impl Lookup for CardScope {
    fn lookup(&self, source: &Source) -> Option<&Value> {
        match source {
            Source::Conversation(name) => self.conversation.get(name.as_str()),
            Source::Lookup(name) => self.lookup.get(name),
            Source::Item(name) => self.item.as_ref().and_then(|i| i.get(name)),
            Source::Result(name) => self.result.as_ref().and_then(|r| r.get(name)),
            _ => None,
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{pick_lookup, safe_link, Pick};
    use app::definition::{AddressKind, CardLookup, CardSpec};

    fn lookup(function: &str, when: AddressKind, channels: &[&str]) -> CardLookup {
        CardLookup {
            function: function.into(),
            when,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            inputs: Default::default(),
        }
    }

    fn card(lookups: Vec<CardLookup>) -> CardSpec {
        CardSpec {
            lookup: lookups,
            title: "x".into(),
            fields: vec![],
            list: None,
        }
    }

    #[test]
    fn an_opaque_id_is_looked_up_only_where_a_lookup_names_its_channel() {
        let phone_or_email = card(vec![lookup("by-address", AddressKind::Any, &[])]);
        for channel in [
            "LIVE_CHAT",
            "FACEBOOK_MESSENGER",
            "TWITTER_DM",
            "INTERNAL",
            "live_chat",
            // Numeric ids: sent as phone numbers they could find another customer.
            "TELEGRAM",
            "VIBER_BOT",
            "UNKNOWN",
            "A_CHANNEL_INFOBIP_ADDS_LATER",
        ] {
            assert_eq!(
                pick_lookup(&phone_or_email, "5f1c9a7e", channel),
                Pick::NoAddress,
                "{channel}"
            );
        }
        let mapped = card(vec![
            lookup("by-address", AddressKind::Any, &[]),
            lookup("by-chat-id", AddressKind::ChannelId, &["LIVE_CHAT"]),
        ]);
        let found = |address: &str, channel: &str| match pick_lookup(&mapped, address, channel) {
            Pick::Lookup(l) => Some(l.function.clone()),
            _ => None,
        };
        assert_eq!(
            found("5f1c9a7e", "LIVE_CHAT").as_deref(),
            Some("by-chat-id")
        );
        assert_eq!(
            pick_lookup(&mapped, "5f1c9a7e", "TWITTER_DM"),
            Pick::NoAddress
        );
        assert_eq!(found("+385911234567", "SMS").as_deref(), Some("by-address"));
        assert_eq!(
            found("+385911234567", "whatsapp").as_deref(),
            Some("by-address")
        );
        assert_eq!(
            found("+385911234567", "VIBER").as_deref(),
            Some("by-address")
        );
        assert_eq!(found("a@b.example", "").as_deref(), Some("by-address"));
        // A channel-id lookup never takes a phone number or an address.
        let only_ids = card(vec![lookup(
            "by-chat-id",
            AddressKind::ChannelId,
            &["LIVE_CHAT"],
        )]);
        assert_eq!(
            pick_lookup(&only_ids, "+385911234567", "WHATSAPP"),
            Pick::NoneFits
        );
    }

    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(
            safe_link("https://track.example.com/1001").as_deref(),
            Some("https://track.example.com/1001")
        );
        for hostile in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "//evil.example/x",
            "/relative",
        ] {
            assert_eq!(safe_link(hostile), None, "{hostile}");
        }
    }
}
