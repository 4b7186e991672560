//! Per-account settings: the one validation that the CLI, the configuration page and the server all go through.
//!
//! Values arrive as text (a form field, a `key=value` on the command line) and are parsed against the definition's
//! settings schema; an empty text clears a field. Storage, encryption and caching are server-only.

pub mod admins;
#[cfg(feature = "ssr")]
pub mod card_tokens;
#[cfg(feature = "ssr")]
pub mod crypto;
#[cfg(feature = "ssr")]
pub mod outbox;
pub mod probe;
#[cfg(feature = "ssr")]
mod service;
#[cfg(feature = "ssr")]
pub mod store;

#[cfg(feature = "ssr")]
pub use service::{ResolvedSettings, SettingsError, SettingsService};

use crate::definition::{AppDefinition, SettingField, SettingType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A validated change: `None` clears the field. Secrets are kept apart because only they get encrypted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsChange {
    pub values: BTreeMap<String, Option<Value>>,
    pub secrets: BTreeMap<String, Option<String>>,
}

impl SettingsChange {
    pub fn changed_fields(&self) -> Vec<String> {
        self.values
            .keys()
            .chain(self.secrets.keys())
            .cloned()
            .collect()
    }
}

/// Whether a value can be part of `[partner] base_url`: each request's path is added after the base URL, so
/// after a `?` or `#` it would land in the query, or be dropped.
pub fn fits_a_base_url(text: &str) -> bool {
    !text.contains(['?', '#'])
}

/// Why a value of a setting used in `[partner] base_url` was refused.
pub const NOT_A_BASE: &str =
    "must not contain `?` or `#`: it is part of the partner's address, and ibex \
    adds each request's path after it, which would then be lost";

/// Whether a value can stand in the host part of `[partner] base_url` (`https://{{settings.tenant}}.shop.example`):
/// letters, digits, `.` and `-`, a DNS name's characters. Any other would send the request elsewhere: `/`, `\`,
/// `?` or `@` end the host early or turn what the partner wrote into a path or a user name; `:` makes the rest a
/// port that `http::Uri` lets fail quietly (`evil.example:.shop.example` is evil.example on the default port);
/// `[…]` is read as an address literal and stripped (`[evil.example].shop.example`). A port has a placeholder of
/// its own (`https://{{settings.host}}:{{settings.port}}`).
pub fn fits_a_host(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

/// Why a value of a setting standing in the partner's host name was refused.
pub const NOT_A_HOST: &str =
    "must be a host name: letters, digits, dots and hyphens only, as it becomes part of the \
    partner's server name";

/// Why a value of a setting standing in the partner's URL path was refused.
pub const NOT_A_PATH_VALUE: &str =
    "must not contain `/`, `\\`, `%` or control characters, nor be `.` or `..`: it becomes one segment of the \
    partner's URL path";

/// Whether a value can stand in the path part of `[partner] base_url` as one segment: a proxy in front of the
/// partner may decode `%2F` or `%25` once more and reach another resource, a `.` or `..` segment (`..;x` for
/// servers that drop path parameters) climbs as it is, and the `url` crate drops tab, CR and LF (`.\t.` is `..`).
pub fn fits_a_path_segment(text: &str) -> bool {
    let bare = text.split(';').next().unwrap_or_default();
    !text.contains(['/', '\\', '%'])
        && !matches!(bare, "." | "..")
        && !text.chars().any(char::is_control)
}

/// The settings of `[partner] base_url` by the part of the address they stand in.
pub struct DestinationParts {
    /// Every setting in the base URL (`PartnerSpec::destination_settings`).
    pub all: Vec<String>,
    /// Those standing in its host name (`PartnerSpec::host_settings`).
    pub hosts: Vec<String>,
    /// Those standing in a URL path: the base URL's (`PartnerSpec::path_settings`), a function's request path,
    /// or the connection probe's.
    pub paths: Vec<String>,
}

#[cfg(feature = "ssr")]
impl DestinationParts {
    pub fn of(partner: &crate::definition::PartnerSpec) -> Self {
        DestinationParts {
            all: partner.destination_settings(),
            hosts: partner.host_settings(),
            paths: partner.path_settings(),
        }
    }

    /// Every place of the definition's requests a setting's value can stand in: a value a call would refuse
    /// (`BuildError::PathSettingSeparator`) is refused when it is saved instead, where the admin can correct it.
    pub fn of_definition(definition: &crate::definition::AppDefinition) -> Self {
        let mut parts = Self::of(&definition.partner);
        let request_paths = definition
            .functions
            .iter()
            .map(|f| f.request.path.as_str())
            .chain(definition.partner.probe.iter().map(|p| p.path.as_str()));
        for path in request_paths {
            let Ok(template) = crate::definition::template::Template::parse(path) else {
                continue;
            };
            for source in template.sources() {
                if let crate::definition::template::Source::Setting(key) = source {
                    if !parts.paths.contains(key) {
                        parts.paths.push(key.clone());
                    }
                }
            }
        }
        parts
    }

    /// Why a value of setting `key` cannot be part of the partner's address, if it cannot.
    pub fn unfit(&self, key: &str, text: &str) -> Option<&'static str> {
        let in_base = self.all.iter().any(|d| d == key);
        if in_base && !fits_a_base_url(text) {
            Some(NOT_A_BASE)
        } else if in_base && self.hosts.iter().any(|h| h == key) && !fits_a_host(text) {
            Some(NOT_A_HOST)
        } else if self.paths.iter().any(|p| p == key) && !fits_a_path_segment(text) {
            Some(NOT_A_PATH_VALUE)
        } else {
            None
        }
    }
}

/// Parses one field's text into the JSON value that is stored.
pub fn parse_value(field: &SettingField, text: &str) -> Result<Value, String> {
    match field.kind {
        SettingType::Text => Ok(Value::String(text.to_owned())),
        SettingType::Secret => {
            if text.trim() != text {
                return Err("has leading or trailing spaces; paste the value without them".into());
            }
            Ok(Value::String(text.to_owned()))
        }
        SettingType::Url => {
            let url = url::Url::parse(text.trim()).map_err(|_| {
                "is not a complete URL: write it in full, like https://api.example.com".to_owned()
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("must start with https:// or http://".into());
            }
            // A URL is stored and shown as it is: a password in it would be plain text in both.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(
                    "must not contain a user name or password (a URL is stored and shown in plain text); enter \
                     credentials in their own fields"
                        .into(),
                );
            }
            Ok(Value::String(text.trim().trim_end_matches('/').to_owned()))
        }
        SettingType::Select => field
            .options
            .iter()
            .find(|o| o.value == text)
            .map(|o| Value::String(o.value.clone()))
            .ok_or_else(|| {
                let allowed: Vec<&str> = field.options.iter().map(|o| o.value.as_str()).collect();
                format!("must be one of: {}", allowed.join(", "))
            }),
        SettingType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "off" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err("must be true or false".into()),
        },
        SettingType::Number => {
            let number: f64 = text
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| "must be a number".to_string())?;
            if let Some(min) = field.min.filter(|min| number < *min) {
                return Err(format!("must be at least {min}"));
            }
            if let Some(max) = field.max.filter(|max| number > *max) {
                return Err(format!("must be at most {max}"));
            }
            if number.fract() == 0.0 && number.abs() < 9.0e15 {
                Ok(Value::from(number as i64))
            } else {
                Ok(Value::from(number))
            }
        }
    }
}

/// Checks raw `key = text` changes against the schema. `is_set` tells whether a field already has a stored value,
/// so that a partial update may leave a required field alone; every problem is returned at once, field by field.
pub fn validate_changes(
    definition: &AppDefinition,
    changes: &BTreeMap<String, String>,
    is_set: impl Fn(&str) -> bool,
) -> Result<SettingsChange, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut change = SettingsChange::default();
    // The settings that make up the partner's base URL.
    #[cfg(feature = "ssr")]
    let destination = DestinationParts::of_definition(definition);
    for (key, text) in changes {
        let Some(field) = definition.setting(key) else {
            errors.push(FieldError {
                field: key.clone(),
                message: "is not a setting of this app".into(),
            });
            continue;
        };
        let parsed = if text.is_empty() {
            Ok(None)
        } else {
            parse_value(field, text).map(Some)
        };
        #[cfg(feature = "ssr")]
        let parsed = parsed.and_then(|value| match &value {
            Some(Value::String(text)) => match destination.unfit(key, text) {
                Some(message) => Err(message.to_owned()),
                None => Ok(value),
            },
            _ => Ok(value),
        });
        match parsed {
            Err(message) => errors.push(FieldError {
                field: key.clone(),
                message,
            }),
            Ok(value) if field.kind == SettingType::Secret => {
                change.secrets.insert(
                    key.clone(),
                    value.and_then(|v| v.as_str().map(str::to_owned)),
                );
            }
            Ok(value) => {
                change.values.insert(key.clone(), value);
            }
        }
    }
    for field in definition.settings.iter().filter(|f| f.required) {
        if errors.iter().any(|e| e.field == field.key) {
            continue;
        }
        let after = match (
            change.values.get(&field.key),
            change.secrets.get(&field.key),
        ) {
            (Some(value), _) => value.is_some(),
            (_, Some(secret)) => secret.is_some(),
            _ => is_set(&field.key),
        };
        if !after && field.default.is_none() {
            errors.push(FieldError {
                field: field.key.clone(),
                message: "is required".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::definition::BUNDLED_EXAMPLE;

    fn def() -> AppDefinition {
        AppDefinition::from_toml(BUNDLED_EXAMPLE).unwrap()
    }

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_a_complete_change_and_splits_secrets() {
        let change = validate_changes(
            &def(),
            &raw(&[
                ("api_key", "k-1"),
                ("api_base_url", "https://shop.example"),
                ("currency", "USD"),
            ]),
            |_| false,
        )
        .unwrap();
        assert_eq!(change.secrets.get("api_key"), Some(&Some("k-1".into())));
        assert_eq!(
            change.values.get("currency"),
            Some(&Some(Value::from("USD")))
        );
    }

    #[test]
    fn reports_every_bad_field() {
        let errors = validate_changes(
            &def(),
            &raw(&[
                ("api_base_url", "ftp://x"),
                ("currency", "XXX"),
                ("nope", "1"),
            ]),
            |_| false,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"api_base_url"), "{errors:?}");
        assert!(fields.contains(&"currency"), "{errors:?}");
        assert!(fields.contains(&"nope"), "{errors:?}");
        assert!(
            fields.contains(&"api_key"),
            "missing required secret: {errors:?}"
        );
    }

    #[test]
    fn required_field_already_set_may_be_left_alone_but_not_cleared() {
        let stored = |k: &str| k == "api_key" || k == "api_base_url";
        assert!(validate_changes(&def(), &raw(&[("currency", "EUR")]), stored).is_ok());
        let errors = validate_changes(&def(), &raw(&[("api_key", "")]), stored).unwrap_err();
        assert_eq!(errors[0].field, "api_key");
    }

    #[test]
    fn a_base_url_setting_takes_no_query_or_fragment() {
        for url in [
            "https://shop.example/v1?tenant=7",
            "https://shop.example/v1#",
            "https://shop.example/#/v1",
        ] {
            let errors =
                validate_changes(&def(), &raw(&[("api_base_url", url)]), |_| true).unwrap_err();
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert_eq!(errors[0].field, "api_base_url");
            assert!(errors[0].message.contains('?'), "{}", errors[0].message);
        }
        // A URL setting that is not part of the base URL may have them: a link shown to people, say.
        let mut def = def();
        let mut link = def.setting("api_base_url").unwrap().clone();
        link.key = "dashboard".into();
        link.required = false;
        def.settings.push(link);
        let change = validate_changes(
            &def,
            &raw(&[("dashboard", "https://app.example/#/orders?x=1")]),
            |_| true,
        )
        .unwrap();
        assert!(change.values.contains_key("dashboard"));
    }

    #[test]
    fn a_setting_standing_in_the_host_name_takes_a_host_name() {
        // The partner's host is the tenant's own subdomain.
        let mut def = def();
        def.partner.base_url = "https://{{settings.tenant}}.shop.example/v1".into();
        let mut tenant = def.setting("currency").unwrap().clone();
        tenant.key = "tenant".into();
        tenant.kind = crate::definition::SettingType::Text;
        tenant.options.clear();
        def.settings.push(tenant);
        for value in ["acme", "acme-7.eu", "ACME.eu-1"] {
            let change = validate_changes(&def, &raw(&[("tenant", value)]), |_| true).unwrap();
            assert!(change.values.contains_key("tenant"), "{value}");
        }
        for value in [
            "evil.example/",
            "evil.example\\x",
            "x@evil.example",
            "evil.example%2F",
            "evil.example:",
            "evil.example:1",
            "[evil.example]",
            "[2606:4700::1111]",
            "evil example",
            "évil",
        ] {
            let errors = validate_changes(&def, &raw(&[("tenant", value)]), |_| true).unwrap_err();
            assert_eq!(errors.len(), 1, "{value}: {errors:?}");
            assert_eq!(errors[0].field, "tenant");
            assert_eq!(errors[0].message, NOT_A_HOST, "{value}");
        }
        // In the path it is one segment: a space is fine (it is percent-encoded), a separator or `%` is not.
        def.partner.base_url = "https://shop.example/{{settings.tenant}}".into();
        let change = validate_changes(&def, &raw(&[("tenant", "a b")]), |_| true).unwrap();
        assert!(change.values.contains_key("tenant"));
        for value in [
            "acme/admin",
            "acme\\admin",
            "%2e%2e",
            "acme%2Fadmin",
            "..",
            ".",
            "..;x",
            ".\t.",
        ] {
            let errors = validate_changes(&def, &raw(&[("tenant", value)]), |_| true).unwrap_err();
            assert_eq!(errors.len(), 1, "{value}: {errors:?}");
            assert_eq!(errors[0].message, NOT_A_PATH_VALUE, "{value}");
        }
        // In a function's request path, the same rule, on save (a call would refuse it anyway, every time).
        def.partner.base_url = "https://shop.example".into();
        def.functions[0].request.path = "/tenants/{{settings.tenant}}/orders".into();
        let change = validate_changes(&def, &raw(&[("tenant", "a b")]), |_| true).unwrap();
        assert!(change.values.contains_key("tenant"));
        for value in ["acme/admin", "..", "%2e%2e"] {
            let errors = validate_changes(&def, &raw(&[("tenant", value)]), |_| true).unwrap_err();
            assert_eq!(errors[0].message, NOT_A_PATH_VALUE, "{value}");
        }
    }

    #[test]
    fn numbers_respect_bounds() {
        let def = def();
        let field = def.setting("max_orders").unwrap();
        assert_eq!(parse_value(field, "7"), Ok(Value::from(7)));
        assert!(parse_value(field, "0").is_err());
        assert!(parse_value(field, "ten").is_err());
    }
}
