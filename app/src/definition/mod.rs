//! The partner's app definition: one TOML file that drives the manifest, the signed endpoints and the forms.
//!
//! The types are plain data shared by the server and the browser (the configuration form is rendered from
//! `settings`); loading and checking a file is server-only and lives in `load`.

#[cfg(feature = "ssr")]
mod load;
pub mod sync;
#[cfg(feature = "ssr")]
pub mod template;

#[cfg(feature = "ssr")]
pub use load::DefinitionError;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The example app shipped with ibex, used when no `IBEX_APP` is given.
pub const BUNDLED_EXAMPLE: &str = include_str!("../../../examples/order-desk.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppDefinition {
    pub app: AppInfo,
    #[serde(default)]
    pub settings: Vec<SettingField>,
    pub partner: PartnerSpec,
    #[serde(default)]
    pub functions: Vec<Function>,
    /// What the Conversations context card shows of the end user; without it the card names the end user only.
    #[serde(default)]
    pub card: Option<CardSpec>,
    /// People data sync; when present, the People settings of `sync::PEOPLE_SETTINGS` join the form.
    #[serde(default)]
    pub sync: Option<sync::SyncSpec>,
}

/// `[card]`: how the end user of a conversation is found in the partner's platform and what is shown of them.
/// Every call goes through a function of this definition, with the account's settings, as a signed call does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// Tried in order; the first whose `when` fits the end user's address is called.
    pub lookup: Vec<CardLookup>,
    /// The card's heading, e.g. `"{{lookup.name}}"`.
    pub title: String,
    #[serde(default)]
    pub fields: Vec<CardField>,
    #[serde(default)]
    pub list: Option<CardList>,
}

/// What the end user's `from` is, which picks the lookup: a phone number or email address, or the opaque id of
/// a channel that shares neither (see [`OPAQUE_ID_CHANNELS`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    /// A phone number or an email address, whichever it is.
    #[default]
    Any,
    Phone,
    Email,
    /// The id a channel of `channels` gives the end user, passed to the partner as it is.
    ChannelId,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardLookup {
    pub function: String,
    #[serde(default)]
    pub when: AddressKind,
    /// With `when = "channel_id"` only: the channels (of [`OPAQUE_ID_CHANNELS`]) whose id the partner knows.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Input name → template over `conversation.*`.
    pub inputs: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardField {
    pub label: String,
    /// Template over `lookup.*` and `conversation.*`; a field whose value is empty is left out.
    pub value: String,
    /// How the value is shown: in the agent's locale for numbers, money and dates.
    #[serde(default)]
    pub format: ValueFormat,
    /// Money only: the ISO 4217 code, written out (`"EUR"`) or a template (`"{{lookup.currency}}"`).
    #[serde(default)]
    pub currency: Option<String>,
}

/// How a value on the card is shown. Numbers, money and dates follow the agent's locale (Infobip's token says
/// which); a value that does not read as its format is shown as the partner sent it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    #[default]
    Text,
    Number,
    Money,
    /// `2026-11-20`, or the date part of an RFC 3339 timestamp.
    Date,
    /// An RFC 3339 timestamp, shown at the offset the partner gave.
    Datetime,
    /// An http(s) URL, opened in a new tab; any other scheme is shown as text, never as a link.
    Link,
}

/// One more value of each list row, e.g. an order's total or date.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardItemValue {
    /// The item of the list's array output.
    pub item: String,
    #[serde(default)]
    pub format: ValueFormat,
    /// Money only: the item holding the currency code…
    #[serde(default)]
    pub currency_item: Option<String>,
    /// …or the code itself.
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardList {
    pub title: String,
    pub function: String,
    /// Input name → template over `lookup.*` and `conversation.*`.
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, String>,
    /// The function's array output that holds the rows.
    pub output: String,
    /// Item shown as each row's text, and one shown beside it.
    pub item_title: String,
    #[serde(default)]
    pub item_detail: Option<String>,
    /// Item holding an http(s) URL: the row's title links there, in a new tab.
    #[serde(default)]
    pub item_link: Option<String>,
    #[serde(default)]
    pub values: Vec<CardItemValue>,
    /// What the agent can do to a row, e.g. add a note to an order.
    #[serde(default)]
    pub action: Option<CardAction>,
}

/// An action on a list row: a function of this definition, called through the same partner middleware as every
/// other call, after the agent confirms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CardAction {
    /// The button, e.g. "Add note".
    pub label: String,
    pub function: String,
    /// Input name → template over `item.*`, `lookup.*` and `conversation.*`, filled in by the server: the agent
    /// cannot change them.
    #[serde(default)]
    pub inputs: std::collections::BTreeMap<String, String>,
    /// Inputs the agent types (labelled with the function's input titles).
    #[serde(default)]
    pub ask: Vec<String>,
    /// The question the agent confirms, e.g. "Add this note to order {{item.id}}?".
    pub confirm: String,
    /// Said after it worked, e.g. "Note {{result.note_id}} added to order {{item.id}}.".
    pub done: String,
}

/// Channels on which the first inbound message's `from` is the end user's phone number or email address
/// (Infobip's `MessageChannel`, Conversations OpenAPI 3.210.0: "Sender phone number, email address, FB messenger Id
/// or live chat widget Id"). An allow-list, not a deny-list: on any other channel, one Infobip adds later
/// included, `from` is taken for an opaque id, since a numeric id (a Telegram chat, a Viber bot user) sent to
/// the partner as a phone number could find another customer. A conversation whose channel is not given (a
/// Custom cards URL without `channel`) is taken as an address, as Custom cards' `customerNumber` is.
pub const ADDRESS_CHANNELS: &[&str] = &[
    "SMS",
    "VIBER",
    "WHATSAPP",
    "RCS",
    "EMAIL",
    "VOICE",
    "CALLS",
    "WHATSAPP_CALLS",
    "VIBER_CALLS",
];

/// The channels of Infobip's `MessageChannel` whose `from` is an opaque id (a chat widget's visitor, a Messenger,
/// X, Telegram or LINE user id, an Infobip user): the ones a `[[card.lookup]]` with `when = "channel_id"` may name.
/// Infobip's sample app skips the first four. The card makes no partner call for them unless such a lookup names
/// the channel.
pub const OPAQUE_ID_CHANNELS: &[&str] = &[
    "LIVE_CHAT",
    "FACEBOOK_MESSENGER",
    "TWITTER_DM",
    "INTERNAL",
    "TELEGRAM",
    "INSTAGRAM_MESSAGING",
    "VIBER_BOT",
    "LINE",
    "APPLE_BUSINESS_CHAT",
    "GOOGLE_BUSINESS_MESSAGES",
    "KAKAO_SANGDAM",
    "OPEN_CHANNEL",
    "TIKTOK",
    "ZALO",
    "FACEBOOK_POST",
    "INSTAGRAM_POST",
    "TWITTER_POST",
    "GOOGLE_PLAY",
    "VIDEO",
    "UNKNOWN",
];

/// Whether a conversation on `channel` (Infobip's name, any case) gives the end user an opaque id only: any
/// named channel that is not one of `ADDRESS_CHANNELS`.
pub fn opaque_id_channel(channel: &str) -> bool {
    let channel = channel.trim();
    !channel.is_empty()
        && !ADDRESS_CHANNELS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(channel))
}

/// The conversation variables a card template may use, named as Infobip names them.
pub const CONVERSATION_VARIABLES: &[&str] = &[
    "conversationId",
    "customerNumber",
    "customerDisplayName",
    "channel",
    "agentId",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Title of the Conversations context card in the manifest; the app name when absent.
    #[serde(default)]
    pub card_title: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    Text,
    Url,
    Secret,
    Select,
    Bool,
    Number,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SettingField {
    pub key: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: SettingType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// A default for development only (`ibex --dev`), such as the simulator's loopback URL: a customer who
    /// finds `http://127.0.0.1:4001` filled in reads it as a fault.
    #[serde(default)]
    pub dev_default: Option<serde_json::Value>,
    /// Example text shown in the empty field, never used as a value.
    #[serde(default)]
    pub placeholder: String,
    #[serde(default)]
    pub help: String,
    /// Heading the form groups this field under (credentials, preferences, data mapping, ...).
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub options: Vec<SelectOption>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelectOption {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    /// May use `{{settings.x}}`, so each account can point at its own tenant of the partner's platform.
    pub base_url: String,
    #[serde(default)]
    pub auth: Option<PartnerAuth>,
    /// Default deadline for one function call, retries included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Request that "Test connection" makes to check an account's credentials.
    #[serde(default)]
    pub probe: Option<RequestSpec>,
    /// Where partner calls may go. The base URL can come from an account setting, which any customer admin
    /// can change, so without limits ibex would call whatever address an admin names.
    #[serde(default)]
    pub egress: EgressSpec,
}

/// `[partner.egress]`: the partner's own limits on where ibex connects, on top of the default rule that only
/// public (globally routable) addresses are called.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressSpec {
    /// Host names partner calls may go to: `api.example.com` exactly, or `*.example.com` for any name below
    /// it. Empty: any host.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Lets the hosts of `allow_hosts` resolve to private or loopback addresses (a partner API inside the same
    /// private network as ibex). Other hosts still get public addresses only.
    #[serde(default)]
    pub allow_private: bool,
    /// Refuse plain `http://` partner URLs.
    #[serde(default)]
    pub https_only: bool,
}

impl AppDefinition {
    /// In development, each `dev_default` becomes the setting's default.
    pub fn with_dev_defaults(mut self) -> Self {
        for field in &mut self.settings {
            if let Some(value) = field.dev_default.take() {
                field.default = Some(value);
            }
        }
        self
    }
}

#[cfg(feature = "ssr")]
enum UrlPart {
    Whole,
    Host,
    Path,
}

#[cfg(feature = "ssr")]
impl PartnerSpec {
    /// Settings that decide where a partner request goes. When one of them changes, the account's secrets
    /// must be entered again: they were given for the old address.
    pub fn destination_settings(&self) -> Vec<String> {
        self.base_url_settings(false)
    }

    /// The settings among those that stand in the partner's host name (`https://{{settings.tenant}}.shop.example`):
    /// the partner meant a name there, so a value with `/` or `@` that would make the request go to another
    /// host is refused (`settings::fits_a_host`).
    pub fn host_settings(&self) -> Vec<String> {
        self.base_url_settings(true)
    }

    /// The settings among those that stand in the partner's URL path (`https://shop.example/{{settings.tenant}}`):
    /// a value with `/`, `\` or `%` would reach another resource behind a proxy that decodes once more.
    pub fn path_settings(&self) -> Vec<String> {
        self.base_url_settings_in(UrlPart::Path)
    }

    fn base_url_settings(&self, host_only: bool) -> Vec<String> {
        self.base_url_settings_in(if host_only {
            UrlPart::Host
        } else {
            UrlPart::Whole
        })
    }

    fn base_url_settings_in(&self, part: UrlPart) -> Vec<String> {
        let Ok(base) = template::Template::parse(&self.base_url) else {
            return Vec::new();
        };
        let sources: Vec<&template::Source> = match part {
            UrlPart::Whole => base.sources().collect(),
            UrlPart::Host => base.host_sources().collect(),
            UrlPart::Path => base.path_sources().collect(),
        };
        sources
            .into_iter()
            .filter_map(|s| match s {
                template::Source::Setting(key) => Some(key.clone()),
                _ => None,
            })
            .collect()
    }
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PartnerAuth {
    Header { name: String, value: String },
    Bearer { token: String },
    Basic { username: String, password: String },
    Query { name: String, value: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Answers,
    Flow,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Safe to send twice: only these are retried after a connection error or a gateway status.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Method::Get | Method::Put | Method::Delete)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub products: Vec<Product>,
    /// How Infobip calls ibex.
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// How ibex calls the partner.
    pub request: RequestSpec,
    #[serde(default)]
    pub outputs: Vec<Output>,
}

fn default_method() -> Method {
    Method::Post
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
}

impl ValueType {
    /// Converts a JSON value to this type where the meaning is unambiguous (digits in text for a number, a whole
    /// float for an integer, a number for text, "true"/"false"); otherwise returns what was expected, for the
    /// error message. Used for inputs from Infobip and outputs from the partner alike.
    /// Borrowed when the value already has the type, so a mapped answer copies nothing it need not.
    pub fn coerce(
        self,
        value: &serde_json::Value,
    ) -> Result<std::borrow::Cow<'_, serde_json::Value>, &'static str> {
        use serde_json::Value;
        use std::borrow::Cow::{Borrowed, Owned};
        match (self, value) {
            (ValueType::String, Value::String(_)) => Ok(Borrowed(value)),
            (ValueType::String, Value::Number(n)) => Ok(Owned(Value::String(n.to_string()))),
            (ValueType::String, Value::Bool(b)) => Ok(Owned(Value::String(b.to_string()))),
            (ValueType::String, _) => Err("text"),
            (ValueType::Number, Value::Number(_)) => Ok(Borrowed(value)),
            (ValueType::Number, Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| Owned(Value::Number(n)))
                .ok_or("a number"),
            (ValueType::Number, _) => Err("a number"),
            (ValueType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                Ok(Borrowed(value))
            }
            (ValueType::Integer, Value::Number(n)) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Owned(Value::from(f as i64))),
                _ => Err("an integer"),
            },
            (ValueType::Integer, Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(|i| Owned(Value::from(i)))
                .map_err(|_| "an integer"),
            (ValueType::Integer, _) => Err("an integer"),
            (ValueType::Boolean, Value::Bool(_)) => Ok(Borrowed(value)),
            (ValueType::Boolean, Value::String(s)) if s == "true" || s == "false" => {
                Ok(Owned(Value::Bool(s == "true")))
            }
            (ValueType::Boolean, _) => Err("true or false"),
            (ValueType::Array, Value::Array(_)) => Ok(Borrowed(value)),
            (ValueType::Array, _) => Err("a list"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Number => "number",
            ValueType::Integer => "integer",
            ValueType::Boolean => "boolean",
            ValueType::Array => "array",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputLocation {
    Path,
    Query,
    Body,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum View {
    #[default]
    Text,
    Select,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(rename = "type", default = "default_value_type")]
    pub kind: ValueType,
    #[serde(default)]
    pub required: bool,
    /// Where Infobip puts the value; when absent, the query for GET and DELETE and the JSON body otherwise.
    #[serde(rename = "in", default)]
    pub location: Option<InputLocation>,
    /// Moments Flow: how the element's side panel asks for this input.
    #[serde(default)]
    pub view: View,
    /// Moments Flow: the function whose array output fills the SelectView.
    #[serde(default)]
    pub options_from: Option<String>,
    #[serde(default = "default_true")]
    pub personalization: bool,
    /// Lets a value used in the partner's URL path contain `/` (sent escaped, as `%2F`). Off by default: a
    /// proxy in front of the partner that decodes `%2F` would turn `1003%2Frefunds` into two segments and send
    /// the call to another resource of the partner's.
    #[serde(default)]
    pub allow_slash: bool,
}

impl Input {
    pub fn location(&self, method: Method) -> InputLocation {
        self.location.unwrap_or(match method {
            Method::Get | Method::Delete => InputLocation::Query,
            _ => InputLocation::Body,
        })
    }

    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }
}

fn default_value_type() -> ValueType {
    ValueType::String
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; a string that is exactly one `{{...}}` placeholder keeps the value's JSON type.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(rename = "type", default = "default_value_type")]
    pub kind: ValueType,
    /// JSON pointer into the partner's answer (or into one list element for `items`).
    #[serde(default)]
    pub pointer: Option<String>,
    /// JSONPath selecting the elements of an `array` output, e.g. `$.orders[*]`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_true")]
    pub required: bool,
    /// Fields of each element of an `array` output.
    #[serde(default)]
    pub items: Vec<Output>,
    /// Moments Flow: which item fields give a SelectView option's id and name.
    #[serde(default)]
    pub select: Option<SelectSpec>,
}

impl Output {
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelectSpec {
    pub id: String,
    pub name: String,
}

impl AppDefinition {
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    pub fn setting(&self, key: &str) -> Option<&SettingField> {
        self.settings.iter().find(|s| s.key == key)
    }
}

impl Function {
    pub fn path_inputs(&self) -> impl Iterator<Item = &Input> {
        self.inputs
            .iter()
            .filter(move |i| i.location(self.method) == InputLocation::Path)
    }

    pub fn timeout_ms(&self, partner: &PartnerSpec) -> u64 {
        self.timeout_ms.unwrap_or(partner.timeout_ms)
    }

    /// Path under the public URL where Infobip calls this function, with `{input}` templates for path inputs.
    pub fn route_path(&self) -> String {
        let mut path = format!("/fn/{}", self.name);
        for input in self.path_inputs() {
            path.push_str("/{");
            path.push_str(&input.name);
            path.push('}');
        }
        path
    }
}
