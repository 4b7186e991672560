//! One partner record → one Infobip People person, as `[sync.to_people] fields` says. A record that cannot
//! become a valid person (no identifier, a phone number that is not one) is refused here with its reason, so the
//! run records it and goes on instead of sending People something it will reject.

use app::definition::sync::{FieldMap, SyncSpec, Transform};
use phonenumber::Mode;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no {0}: the record cannot be matched in People")]
    NoIdentifier(&'static str),
    #[error("`{value}` is not a phone number{}", region.as_deref().map(|r| format!(" (region {r})")).unwrap_or_default())]
    BadPhone {
        value: String,
        region: Option<String>,
    },
    #[error("`{0}` is not an email address")]
    BadEmail(String),
}

/// The person as the v3 upsert takes it (`UpsertPersonV3DocsSchema` of Infobip's OpenAPI, People 3.210.0:
/// `contactInformation` a list of `{type: EMAIL | PHONE, identifier}`, tags unique), the value it is matched by,
/// and a digest of what is written (equal digests: nothing changed).
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub body: Value,
    pub key: String,
    pub digest: String,
}

impl Person {
    /// The same person in v2's shape (`IamPersonV2`: `contactInformation: {email: [{address}], phone:
    /// [{number}]}`), for `lookup_then_write`.
    pub fn v2_body(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(Value::Array(contacts)) = body.get("contactInformation").cloned() {
            let (mut emails, mut phones) = (Vec::new(), Vec::new());
            for contact in &contacts {
                let identifier = contact["identifier"].clone();
                match contact["type"].as_str() {
                    Some("EMAIL") => emails.push(json!({ "address": identifier })),
                    Some("PHONE") => phones.push(json!({ "number": identifier })),
                    _ => {}
                }
            }
            let mut v2 = Map::new();
            if !emails.is_empty() {
                v2.insert("email".into(), Value::Array(emails));
            }
            if !phones.is_empty() {
                v2.insert("phone".into(), Value::Array(phones));
            }
            body["contactInformation"] = Value::Object(v2);
        }
        body
    }
}

/// The person fields an account turned off on its configuration page (`[sync]`'s per-field switches): left out
/// of what is written, both ways.
pub type FieldsOff = std::collections::HashSet<String>;

/// Which of the definition's optional person fields this account turned off.
pub fn fields_off(sync: &SyncSpec, settings: &app::settings::ResolvedSettings) -> FieldsOff {
    app::definition::sync::optional_fields(sync)
        .into_iter()
        .filter(|person| {
            settings.get(&app::definition::sync::field_setting(person)) == Some(&Value::Bool(false))
        })
        .map(str::to_owned)
        .collect()
}

pub fn map_record(sync: &SyncSpec, record: &Value, off: &FieldsOff) -> Result<Person, RecordError> {
    let mut body = Map::new();
    let mut attributes = Map::new();
    let mut tags: Vec<Value> = Vec::new();
    let (mut emails, mut phones) = (Vec::new(), Vec::new());
    for field in &sync.to_people.fields {
        if off.contains(&field.person) {
            continue;
        }
        let Some(text) = value_of(field, record) else {
            continue;
        };
        let text = transform(field.transform, &text, sync.default_region.as_deref())?;
        if text.is_empty() {
            continue;
        }
        match field.person.as_str() {
            "email" => {
                if !text.contains('@') {
                    return Err(RecordError::BadEmail(text));
                }
                emails.push(text);
            }
            "phone" => phones.push(text),
            // The document says `uniqueItems: true`: a tag named twice is sent once.
            "tags" => {
                if !tags.iter().any(|t| t == &text) {
                    tags.push(Value::from(text));
                }
            }
            other => match other.strip_prefix("customAttributes.") {
                Some(name) => {
                    attributes.insert(name.to_owned(), Value::from(text));
                }
                None => {
                    body.insert(other.to_owned(), Value::from(text));
                }
            },
        }
    }
    let key = identifier(sync, record, off)?;
    let contacts: Vec<Value> = emails
        .into_iter()
        .map(|e| json!({"type": "EMAIL", "identifier": e}))
        .chain(
            phones
                .into_iter()
                .map(|p| json!({"type": "PHONE", "identifier": p})),
        )
        .collect();
    if !contacts.is_empty() {
        body.insert("contactInformation".into(), Value::Array(contacts));
    }
    if !attributes.is_empty() {
        body.insert("customAttributes".into(), Value::Object(attributes));
    }
    if !tags.is_empty() {
        body.insert("tags".into(), Value::Array(tags));
    }
    let body = Value::Object(body);
    // serde_json's maps are ordered, so equal persons serialise equally.
    let digest = const_hex::encode(Sha256::digest(body.to_string().as_bytes()));
    Ok(Person { body, key, digest })
}

/// The key a record is written under and matched by: its identifier as mapped (the first non-empty email or phone
/// of the fields that map it, the last mapping of any other identifier, as the person's body holds them). The
/// mapping and the mark of a record as seen both take it from here, so a record is never written under one key
/// and looked for under another. Computed without mapping the rest: a record that fails its mapping (a bad phone
/// number, say) is still in the source, and must not be taken for one that is gone.
pub fn identifier(sync: &SyncSpec, record: &Value, off: &FieldsOff) -> Result<String, RecordError> {
    let wanted = sync.identifier.field();
    let mut key = None;
    for field in sync
        .to_people
        .fields
        .iter()
        .filter(|f| f.person == wanted && !off.contains(&f.person))
    {
        let Some(text) = value_of(field, record) else {
            continue;
        };
        let text = transform(field.transform, &text, sync.default_region.as_deref())?;
        if text.is_empty() {
            continue;
        }
        if wanted == "email" && !text.contains('@') {
            return Err(RecordError::BadEmail(text));
        }
        match wanted {
            "email" | "phone" => {
                key.get_or_insert(text);
            }
            _ => key = Some(text),
        }
    }
    key.ok_or(RecordError::NoIdentifier(sync.identifier.as_str()))
}

/// `identifier`, where it can be derived: `None` for a record present in the source under a key unknown.
pub fn record_key(sync: &SyncSpec, record: &Value, off: &FieldsOff) -> Option<String> {
    identifier(sync, record, off).ok()
}

/// What People → partner would send for `person` as ibex just wrote it to People (its digest, keyed like the
/// record): recorded for that direction, so a person ibex wrote is not sent back to the partner unchanged.
/// `None` without `[sync.from_people]`.
pub fn mirrored(sync: &SyncSpec, person: &Person, off: &FieldsOff) -> Option<(String, String)> {
    sync.from_people.as_ref()?;
    person_inputs(sync, &person.v2_body(), off).map(|write| (write.key, write.digest))
}

/// A People person → the inputs of `[sync.from_people] function`, the record's key, and a digest of the inputs
/// (equal digests: the partner already has this). `None` when the person lacks the identifier: it did not come
/// from the partner and is skipped.
pub fn person_inputs(sync: &SyncSpec, person: &Value, off: &FieldsOff) -> Option<PartnerWrite> {
    let from = sync.from_people.as_ref()?;
    let key = person_field(person, sync.identifier.field())?;
    let mut inputs = Map::new();
    for field in from.fields.iter().filter(|f| !off.contains(&f.person)) {
        if let Some(value) = person_field(person, &field.person) {
            inputs.insert(field.input.clone(), Value::String(value));
        }
    }
    let digest = const_hex::encode(Sha256::digest(
        Value::Object(inputs.clone()).to_string().as_bytes(),
    ));
    Some(PartnerWrite {
        inputs,
        key,
        digest,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartnerWrite {
    pub inputs: Map<String, Value>,
    pub key: String,
    pub digest: String,
}

/// A person field as text: the first email or phone (a phone with its `+`, as E.164 is written outside People),
/// tags joined with commas; empty counts as missing.
fn person_field(person: &Value, field: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let contact = &person["contactInformation"];
    match field {
        "email" => text(&contact["email"][0]["address"]),
        "phone" => {
            text(&contact["phone"][0]["number"]).map(|n| format!("+{}", n.trim_start_matches('+')))
        }
        "tags" => {
            let tags: Vec<String> = person["tags"].as_array()?.iter().filter_map(text).collect();
            (!tags.is_empty()).then(|| tags.join(","))
        }
        _ => match field.strip_prefix("customAttributes.") {
            Some(name) => text(&person["customAttributes"][name]),
            None => text(&person[field]),
        },
    }
}

fn value_of(field: &FieldMap, record: &Value) -> Option<String> {
    let found = match (&field.item, &field.value) {
        (Some(item), _) => match record.get(item) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        },
        (None, Some(value)) => Some(value.clone()),
        (None, None) => None,
    };
    found.or_else(|| field.default.clone())
}

fn transform(
    transform: Option<Transform>,
    text: &str,
    region: Option<&str>,
) -> Result<String, RecordError> {
    let text = text.trim();
    Ok(match transform {
        None | Some(Transform::Trim) => text.to_owned(),
        Some(Transform::Lowercase) => text.to_lowercase(),
        Some(Transform::FirstName) => text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Some(Transform::LastName) => text
            .split_once(char::is_whitespace)
            .map(|(_, rest)| rest.trim().to_owned())
            .unwrap_or_default(),
        Some(Transform::E164) => e164(text, region)?,
    })
}

/// People stores numbers as E.164 digits without `+` (`385911234567`).
fn e164(text: &str, region: Option<&str>) -> Result<String, RecordError> {
    let bad = || RecordError::BadPhone {
        value: text.to_owned(),
        region: region.map(str::to_owned),
    };
    let country = region.and_then(|r| r.parse::<phonenumber::country::Id>().ok());
    let number = phonenumber::parse(country, text).map_err(|_| bad())?;
    if !phonenumber::is_valid(&number) {
        return Err(bad());
    }
    Ok(number
        .format()
        .mode(Mode::E164)
        .to_string()
        .trim_start_matches('+')
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::definition::AppDefinition;

    fn spec() -> SyncSpec {
        AppDefinition::from_toml(app::definition::BUNDLED_EXAMPLE)
            .unwrap()
            .sync
            .unwrap()
    }

    #[test]
    fn the_example_maps_a_customer() {
        let person = map_record(&spec(), &json!({"id": "c-100", "name": "Ana Marija Horvat", "email": " Ana@Example.com", "phone": "091 123 4567"}), &FieldsOff::default())
        .unwrap();
        assert_eq!(person.key, "c-100");
        assert_eq!(
            person.body,
            json!({
                "externalId": "c-100", "firstName": "Ana", "lastName": "Marija Horvat",
                "contactInformation": [{"type": "EMAIL", "identifier": "ana@example.com"}, {"type": "PHONE", "identifier": "385911234567"}],
                "customAttributes": {"loyaltyTier": "bronze"},
                "tags": ["order-desk"],
            })
        );
        // v2's shape of the same person, for lookup_then_write.
        assert_eq!(
            person.v2_body()["contactInformation"],
            json!({"email": [{"address": "ana@example.com"}], "phone": [{"number": "385911234567"}]})
        );
    }

    #[test]
    fn equal_records_have_equal_digests() {
        let record = json!({"id": "c-1", "name": "Jane Doe", "tier": "gold"});
        let (a, b) = (
            map_record(&spec(), &record, &FieldsOff::default()).unwrap(),
            map_record(&spec(), &record, &FieldsOff::default()).unwrap(),
        );
        assert_eq!(a.digest, b.digest);
        let changed = map_record(
            &spec(),
            &json!({"id": "c-1", "name": "Jane Doe", "tier": "silver"}),
            &FieldsOff::default(),
        )
        .unwrap();
        assert_ne!(a.digest, changed.digest);
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(
            map_record(&spec(), &json!({"name": "No Id"}), &FieldsOff::default()),
            Err(RecordError::NoIdentifier("EXTERNAL_ID"))
        );
        let bad = map_record(
            &spec(),
            &json!({"id": "c-2", "phone": "12"}),
            &FieldsOff::default(),
        )
        .unwrap_err();
        assert_eq!(bad.to_string(), "`12` is not a phone number (region HR)");
        assert!(matches!(
            map_record(
                &spec(),
                &json!({"id": "c-3", "email": "nobody"}),
                &FieldsOff::default()
            ),
            Err(RecordError::BadEmail(_))
        ));
        // An international number keeps its own country.
        let uk = map_record(
            &spec(),
            &json!({"id": "c-4", "phone": "+44 7400 123456"}),
            &FieldsOff::default(),
        )
        .unwrap();
        assert_eq!(
            uk.body["contactInformation"],
            json!([{"type": "PHONE", "identifier": "447400123456"}])
        );
    }

    #[test]
    fn a_person_becomes_the_partners_inputs() {
        let person = json!({
            "id": 7, "externalId": "c-100", "firstName": "Ana", "modifiedAt": "2026-11-26T10:00:00Z",
            "contactInformation": {"email": [{"address": "ana@example.com"}, {"address": "b@example.com"}],
                                   "phone": [{"number": "385911234567"}]},
            "customAttributes": {"loyaltyTier": "platinum"}, "tags": ["order-desk"],
        });
        let write = person_inputs(&spec(), &person, &FieldsOff::default()).unwrap();
        assert_eq!(write.key, "c-100");
        assert_eq!(
            Value::Object(write.inputs.clone()),
            json!({"customer_id": "c-100", "email": "ana@example.com", "phone": "+385911234567", "tier": "platinum"})
        );
        // What the partner is not sent does not count: a new first name leaves the digest as it was.
        let mut renamed = person.clone();
        renamed["firstName"] = json!("Anna");
        assert_eq!(
            person_inputs(&spec(), &renamed, &FieldsOff::default())
                .unwrap()
                .digest,
            write.digest
        );
        let mut upgraded = person.clone();
        upgraded["customAttributes"]["loyaltyTier"] = json!("gold");
        assert_ne!(
            person_inputs(&spec(), &upgraded, &FieldsOff::default())
                .unwrap()
                .digest,
            write.digest
        );
        // Missing fields are left out; a person without the identifier did not come from the partner.
        let bare = json!({"externalId": "g-000001", "contactInformation": {"email": []}, "customAttributes": {"loyaltyTier": ""}});
        assert_eq!(
            Value::Object(
                person_inputs(&spec(), &bare, &FieldsOff::default())
                    .unwrap()
                    .inputs
            ),
            json!({"customer_id": "g-000001"})
        );
        assert_eq!(
            person_inputs(
                &spec(),
                &json!({"firstName": "Walk-in"}),
                &FieldsOff::default()
            ),
            None
        );
    }

    #[test]
    fn what_ibex_writes_is_what_people_to_partner_would_send() {
        // A person as written to People, then as People → partner reads it back (v2's shape, as People stores it):
        // the same digest, so it is not sent back unchanged.
        let person = map_record(
            &spec(),
            &json!({"id": "c-100", "name": "Ana Horvat", "email": "Ana@Example.com",
            "phone": "091 123 4567", "tier": "gold"}),
            &FieldsOff::default(),
        )
        .unwrap();
        let (key, digest) = mirrored(&spec(), &person, &FieldsOff::default()).unwrap();
        let stored = json!({"id": 7, "externalId": "c-100", "firstName": "Ana", "lastName": "Horvat",
            "modifiedAt": "2026-12-08T10:00:00.000Z", "tags": ["order-desk"],
            "contactInformation": {"email": [{"address": "ana@example.com"}], "phone": [{"number": "385911234567"}]},
            "customAttributes": {"loyaltyTier": "gold"}});
        let read = person_inputs(&spec(), &stored, &FieldsOff::default()).unwrap();
        assert_eq!(
            (key.as_str(), digest.as_str()),
            (read.key.as_str(), read.digest.as_str())
        );
        // The key a failing record is still known by: its identifier as mapped.
        assert_eq!(
            record_key(
                &spec(),
                &json!({"id": " c-2 ", "phone": "12"}),
                &FieldsOff::default()
            )
            .as_deref(),
            Some("c-2")
        );
        assert_eq!(
            record_key(&spec(), &json!({"name": "No Id"}), &FieldsOff::default()),
            None
        );
    }

    #[test]
    fn a_record_is_seen_under_the_key_it_is_written_under() {
        let mut sync = spec();
        sync.identifier = app::definition::sync::PersonIdentifier::Email;
        let mut second = sync
            .to_people
            .fields
            .iter()
            .find(|f| f.person == "email")
            .unwrap()
            .clone();
        second.item = Some("name".into());
        sync.to_people.fields.push(second);
        let off = FieldsOff::default();
        for record in [
            json!({"id": "c-1", "name": "Kim@Example.com"}),
            json!({"id": "c-2", "name": "lee@example.com", "email": "Lee.Two@example.com"}),
        ] {
            let written = map_record(&sync, &record, &off).unwrap().key;
            assert_eq!(record_key(&sync, &record, &off), Some(written), "{record}");
        }
        assert_eq!(
            record_key(
                &sync,
                &json!({"id": "c-1", "name": "kim@example.com"}),
                &off
            )
            .as_deref(),
            Some("kim@example.com")
        );
        // No email in either: present, under a key unknown.
        assert_eq!(
            record_key(&sync, &json!({"id": "c-3", "name": ""}), &off),
            None
        );
    }

    #[test]
    fn fields_an_account_turned_off_are_left_out_both_ways() {
        let off: FieldsOff = [
            "customAttributes.loyaltyTier".to_owned(),
            "phone".to_owned(),
        ]
        .into();
        let person = map_record(
            &spec(),
            &json!({"id": "c-100", "name": "Ana Horvat", "phone": "091 123 4567", "tier": "gold"}),
            &off,
        )
        .unwrap();
        assert_eq!(
            person.body,
            json!({"externalId": "c-100", "firstName": "Ana", "lastName": "Horvat", "tags": ["order-desk"]})
        );
        let write = person_inputs(
            &spec(),
            &json!({"externalId": "c-100", "customAttributes": {"loyaltyTier": "gold"},
                    "contactInformation": {"email": [{"address": "ana@example.com"}], "phone": [{"number": "385911234567"}]}}),
            &off,
        )
        .unwrap();
        assert_eq!(
            Value::Object(write.inputs),
            json!({"customer_id": "c-100", "email": "ana@example.com"})
        );
    }
}
