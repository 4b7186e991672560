//! `[sync]`: People data sync, declared once. Which function lists the partner's records and how it pages, how
//! a record becomes an Infobip People person (fields, simple transforms), how People is written, and the default
//! schedule; each account turns it on and adjusts it on the configuration page.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// The People identifier records are matched by.
    #[serde(default)]
    pub identifier: PersonIdentifier,
    /// How a person is written.
    #[serde(default)]
    pub write: WriteMode,
    /// `true`: a write replaces the person (the full upsert, `PUT`: what the mapping omits is cleared); `false`: the
    /// partial upsert, `PATCH` (kept).
    #[serde(default)]
    pub replace: bool,
    /// Minutes between scheduled runs, the accounts' default; 0 runs only on "Sync now".
    #[serde(default)]
    pub every_minutes: u32,
    /// Region for phone numbers written without a country code (`"HR"`), for E.164.
    #[serde(default)]
    pub default_region: Option<String>,
    /// What becomes of a person whose partner record no longer appears in a complete partner → People run.
    #[serde(default)]
    pub on_delete: OnDelete,
    /// The tag `on_delete = "tag"` adds (default `deleted-in-<app name>`, e.g. `deleted-in-order-desk`).
    #[serde(default)]
    pub delete_tag: Option<String>,
    pub to_people: ToPeople,
    /// People → partner: changed persons written to the partner (optional).
    #[serde(default)]
    pub from_people: Option<FromPeople>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PersonIdentifier {
    #[default]
    ExternalId,
    Phone,
    Email,
}

impl PersonIdentifier {
    /// The `type` People's endpoints take.
    pub fn as_str(self) -> &'static str {
        match self {
            PersonIdentifier::ExternalId => "EXTERNAL_ID",
            PersonIdentifier::Phone => "PHONE",
            PersonIdentifier::Email => "EMAIL",
        }
    }

    /// The person field that carries it.
    pub fn field(self) -> &'static str {
        match self {
            PersonIdentifier::ExternalId => "externalId",
            PersonIdentifier::Phone => "phone",
            PersonIdentifier::Email => "email",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `PATCH` (or `PUT` with `replace`) `/people/3/persons/upsert`: Infobip's batch upsert, a page of records
    /// per call (up to 1000 persons), each person's outcome read from the 207.
    #[default]
    Upsert,
    /// v2, one person at a time: look the person up by the identifier, then `POST` a new one or `PATCH`/`PUT` the
    /// one found.
    LookupThenWrite,
}

/// A partner record gone from the source: only a run that read the whole source (one pass, to its last page)
/// decides that a record is gone.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// The person stays in People as it is.
    #[default]
    Ignore,
    /// The person gets `delete_tag` in People (v2's partial update, which appends tags).
    Tag,
    /// The person is deleted from People, on accounts that turned it on (`people_sync_delete_on`); elsewhere it
    /// stays as it is.
    Delete,
}

/// The longest `delete_tag`.
pub const MAX_TAG_CHARS: usize = 128;

/// The tag a gone record's person gets: `delete_tag`, or `deleted-in-` and the app's name in lower case with
/// dashes (`deleted-in-order-desk`).
pub fn delete_tag(sync: &SyncSpec, app_name: &str) -> String {
    if let Some(tag) = &sync.delete_tag {
        return tag.trim().to_owned();
    }
    let mut slug = String::new();
    for c in app_name.chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let tag = format!(
        "deleted-in-{}",
        if slug.is_empty() { "partner" } else { slug }
    );
    tag.chars().take(MAX_TAG_CHARS).collect()
}

/// Partner → People.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToPeople {
    /// A function of this definition whose array output holds one page of records.
    pub function: String,
    pub output: String,
    /// Page pagination: the function's input that takes the page number (from 1). A page with fewer records
    /// than the one before, or none, is the last.
    #[serde(default)]
    pub page_input: Option<String>,
    /// Cursor pagination: the input that takes the cursor, and the output that gives the next one (empty or
    /// missing: the last page).
    #[serde(default)]
    pub cursor_input: Option<String>,
    #[serde(default)]
    pub cursor_output: Option<String>,
    /// A single-value output giving the number of records in the source, for progress and time left.
    #[serde(default)]
    pub total_output: Option<String>,
    pub fields: Vec<FieldMap>,
}

/// People → partner: persons changed in People (found by `modifiedAt`, or named by a Moments flow) are written to
/// the partner by one function of this definition, its inputs taken from the person. Persons without the
/// identifier (not from the partner) are skipped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FromPeople {
    /// A function of this definition that writes one record (e.g. updates a customer).
    pub function: String,
    pub fields: Vec<InputMap>,
}

/// One input of the writing function from one person field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputMap {
    pub input: String,
    /// `externalId`, `firstName`, `lastName`, `email` (the first), `phone` (the first), `tags` (comma-joined),
    /// or `customAttributes.NAME`.
    pub person: String,
}

/// Whether `name` is a person field a mapping may name.
pub fn is_person_field(name: &str) -> bool {
    PERSON_FIELDS.contains(&name)
        || name.strip_prefix("customAttributes.").is_some_and(|attr| {
            !attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// One person field from one item of the record (or a constant).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// `externalId`, `firstName`, `lastName`, `email`, `phone`, `tags`, or `customAttributes.NAME`.
    pub person: String,
    /// The record's item (an item of the list output).
    #[serde(default)]
    pub item: Option<String>,
    /// A constant instead of an item (e.g. a tag every synced person gets).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub transform: Option<Transform>,
    /// Used when the item is missing or empty.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The first word of a full name.
    FirstName,
    /// Everything after the first word of a full name.
    LastName,
    /// A phone number in E.164 digits (`385911234567`), with `default_region` for national numbers.
    E164,
    Lowercase,
    Trim,
}

/// The person fields a mapping may write.
pub const PERSON_FIELDS: &[&str] = &[
    "externalId",
    "firstName",
    "lastName",
    "email",
    "phone",
    "tags",
];

/// The settings `[sync]` adds to the form, under their own heading: where People is and its key (the account's
/// own Infobip API key, with People permissions), and the account's choices.
pub const PEOPLE_BASE_URL: &str = "people_base_url";
pub const PEOPLE_API_KEY: &str = "people_api_key";
pub const PEOPLE_SYNC_ON: &str = "people_sync_on";
pub const PEOPLE_SYNC_EVERY: &str = "people_sync_every_minutes";
pub const PEOPLE_SYNC_FROM_ON: &str = "people_sync_from_on";
/// With `on_delete = "delete"`: this account lets ibex delete persons whose record is gone (off by default).
pub const PEOPLE_SYNC_DELETE_ON: &str = "people_sync_delete_on";

/// The mapped person fields an account may leave out of its sync (both directions): every one but the
/// identifier, in the order the mapping names them.
pub fn optional_fields(sync: &SyncSpec) -> Vec<&str> {
    let identifier = sync.identifier.field();
    let mut fields: Vec<&str> = Vec::new();
    let to = sync.to_people.fields.iter().map(|f| f.person.as_str());
    let from = sync
        .from_people
        .iter()
        .flat_map(|f| f.fields.iter().map(|m| m.person.as_str()));
    for person in to.chain(from) {
        if person != identifier && !fields.contains(&person) {
            fields.push(person);
        }
    }
    fields
}

/// The account setting that turns one person field's sync on or off (`people_field_customattributes_loyaltytier`).
pub fn field_setting(person: &str) -> String {
    let snake: String = person
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("people_field_{snake}")
}

/// "Loyalty tier" for `customAttributes.loyaltyTier`, "First name" for `firstName`.
pub fn field_label(person: &str) -> String {
    let name = person.strip_prefix("customAttributes.").unwrap_or(person);
    let mut label = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 0 {
            label.extend(c.to_uppercase());
        } else if c.is_ascii_uppercase() {
            label.push(' ');
            label.push(c.to_ascii_lowercase());
        } else if c == '_' {
            label.push(' ');
        } else {
            label.push(c);
        }
    }
    label
}

pub fn people_settings(sync: &SyncSpec) -> Vec<super::SettingField> {
    use super::{SettingField, SettingType};
    let field = |key: &str, label: &str, kind: SettingType, help: &str| SettingField {
        key: key.into(),
        label: label.into(),
        kind,
        required: false,
        default: None,
        dev_default: None,
        placeholder: String::new(),
        help: help.into(),
        group: Some("Infobip People".into()),
        options: Vec::new(),
        min: None,
        max: None,
    };
    let mut fields = vec![
        SettingField {
            placeholder: "https://xxxxx.api.infobip.com".into(),
            ..field(
                PEOPLE_BASE_URL,
                "Infobip API base URL",
                SettingType::Url,
                "Your account's API base URL, shown on the Infobip web interface's home page.",
            )
        },
        field(
            PEOPLE_API_KEY,
            "API key with People permissions",
            SettingType::Secret,
            "An API key of this Infobip account that may read and write People. Stored encrypted; never shown again once saved.",
        ),
        SettingField {
            default: Some(serde_json::Value::Bool(false)),
            ..field(
                PEOPLE_SYNC_ON,
                "Sync customers to People",
                SettingType::Bool,
                "Create and update a People person for each customer, on the schedule below and on Sync now.",
            )
        },
        SettingField {
            default: Some(serde_json::Value::from(sync.every_minutes)),
            min: Some(0.0),
            max: Some(10080.0),
            ..field(
                PEOPLE_SYNC_EVERY,
                "Minutes between syncs",
                SettingType::Number,
                "0 syncs only when you press Sync now.",
            )
        },
    ];
    if sync.on_delete == OnDelete::Delete {
        fields.push(SettingField {
            default: Some(serde_json::Value::Bool(false)),
            ..field(
                PEOPLE_SYNC_DELETE_ON,
                "Delete persons of deleted customers",
                SettingType::Bool,
                "When a customer no longer appears in a complete sync, delete their People person. Off: the person stays in People as it is.",
            )
        });
    }
    // Which fields travel: one switch per mapped field, all on until the admin turns one off.
    for person in optional_fields(sync) {
        fields.push(SettingField {
            default: Some(serde_json::Value::Bool(true)),
            group: Some("Fields synced with People".into()),
            ..field(
                &field_setting(person),
                &field_label(person),
                SettingType::Bool,
                "",
            )
        });
    }
    if sync.from_people.is_some() {
        fields.insert(
            3,
            SettingField {
                default: Some(serde_json::Value::Bool(false)),
                ..field(
                    PEOPLE_SYNC_FROM_ON,
                    "Write People changes back",
                    SettingType::Bool,
                    "Persons changed in People since the last sync update their customer here, on the same schedule and on Sync now.",
                )
            },
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_tag_defaults_to_the_apps_name() {
        let mut sync =
            crate::definition::AppDefinition::from_toml(crate::definition::BUNDLED_EXAMPLE)
                .unwrap()
                .sync
                .unwrap();
        assert_eq!(delete_tag(&sync, "Order desk"), "deleted-in-order-desk");
        assert_eq!(delete_tag(&sync, "  Café & Co. "), "deleted-in-café-co");
        assert_eq!(delete_tag(&sync, "!!"), "deleted-in-partner");
        sync.delete_tag = Some(" gone ".into());
        assert_eq!(delete_tag(&sync, "Order desk"), "gone");
    }
}
