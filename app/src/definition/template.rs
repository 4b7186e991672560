//! `{{inputs.x}}` / `{{settings.x}}` placeholders in the partner request of a function.
//!
//! Templates are parsed once when the definition loads, so a typo is a start-up error naming the function, and a
//! request only walks the parsed parts.

use serde_json::Value;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Input(String),
    Setting(String),
    /// The open conversation, in Infobip's own words (`{{conversation.customerNumber}}`): context card only.
    Conversation(String),
    /// An output of the card's lookup call (`{{lookup.customer_id}}`): context card only.
    Lookup(String),
    /// An item of the card list's row (`{{item.id}}`): the list's action only.
    Item(String),
    /// An output of the action's own call (`{{result.note_id}}`): the action's `done` message only.
    Result(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Input(name) => write!(f, "inputs.{name}"),
            Source::Setting(key) => write!(f, "settings.{key}"),
            Source::Conversation(name) => write!(f, "conversation.{name}"),
            Source::Lookup(name) => write!(f, "lookup.{name}"),
            Source::Item(name) => write!(f, "item.{name}"),
            Source::Result(name) => write!(f, "result.{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Source),
}

/// Where `host_sources` is in a URL template, part by part.
#[derive(Clone, Copy, PartialEq)]
enum UrlPlace {
    BeforeHost,
    Host,
    AfterHost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{{{` in {0:?}")]
    Unclosed(String),
    #[error(
        "`{{{{{0}}}}}` is not a placeholder: use `{{{{inputs.NAME}}}}` or `{{{{settings.KEY}}}}`"
    )]
    Unknown(String),
}

/// Values a template can draw from while rendering.
pub trait Lookup {
    fn lookup(&self, source: &Source) -> Option<&Value>;
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(text.to_owned()))?;
            let inner = after[..end].trim();
            let source = match inner.split_once('.') {
                Some(("inputs", name)) if !name.is_empty() => Source::Input(name.to_owned()),
                Some(("settings", key)) if !key.is_empty() => Source::Setting(key.to_owned()),
                Some(("conversation", name)) if !name.is_empty() => {
                    Source::Conversation(name.to_owned())
                }
                Some(("lookup", name)) if !name.is_empty() => Source::Lookup(name.to_owned()),
                Some(("item", name)) if !name.is_empty() => Source::Item(name.to_owned()),
                Some(("result", name)) if !name.is_empty() => Source::Result(name.to_owned()),
                _ => return Err(TemplateError::Unknown(inner.to_owned())),
            };
            parts.push(Part::Value(source));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(s) => Some(s),
            Part::Text(_) => None,
        })
    }

    /// The placeholders of a URL template that stand in its host, between the literal `://` and the first `/`,
    /// `?` or `#` after it: `tenant` in `https://{{settings.tenant}}.shop.example/v1`, but not `base` in
    /// `{{settings.base}}/v1`, which holds a whole URL.
    pub fn host_sources(&self) -> impl Iterator<Item = &Source> {
        let mut place = UrlPlace::BeforeHost;
        self.parts.iter().filter_map(move |part| match part {
            Part::Text(text) => {
                let rest = match place {
                    UrlPlace::BeforeHost => text.find("://").map(|at| &text[at + 3..]),
                    UrlPlace::Host => Some(text.as_str()),
                    UrlPlace::AfterHost => None,
                };
                if let Some(rest) = rest {
                    place = if rest.contains(['/', '?', '#']) {
                        UrlPlace::AfterHost
                    } else {
                        UrlPlace::Host
                    };
                }
                None
            }
            Part::Value(source) => (place == UrlPlace::Host).then_some(source),
        })
    }

    /// The placeholders of a URL template that stand in its path: every one after a literal `/` that follows
    /// the host (`tenant` in `https://shop.example/{{settings.tenant}}/v1` and in `{{settings.base}}/{{settings.tenant}}`,
    /// but not `base`, which holds a whole URL, nor a host placeholder).
    pub fn path_sources(&self) -> impl Iterator<Item = &Source> {
        let mut in_path = false;
        self.parts.iter().filter_map(move |part| match part {
            Part::Text(text) => {
                if !in_path {
                    let rest = text.find("://").map_or(text.as_str(), |at| &text[at + 3..]);
                    in_path = rest.contains('/');
                }
                None
            }
            Part::Value(source) => in_path.then_some(source),
        })
    }

    /// The placeholder when the template is nothing else, so its value can keep its JSON type.
    pub fn single(&self) -> Option<&Source> {
        match self.parts.as_slice() {
            [Part::Value(source)] => Some(source),
            _ => None,
        }
    }

    /// True when every placeholder has a value; optional inputs left out make a query parameter or header vanish.
    pub fn is_complete(&self, values: &dyn Lookup) -> bool {
        self.sources()
            .all(|s| values.lookup(s).is_some_and(|v| !v.is_null()))
    }

    /// Renders into text, passing each substituted value through `encode` (literal text is kept as written).
    pub fn render(&self, values: &dyn Lookup, encode: fn(&str, &mut String)) -> String {
        // Sized once for the usual value: growing it as values are pushed was several reallocations per call.
        let capacity = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Value(_) => 32,
            })
            .sum();
        let mut out = String::with_capacity(capacity);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(source) => match values.lookup(source) {
                    Some(Value::String(s)) => encode(s, &mut out),
                    Some(Value::Null) | None => {}
                    Some(other) => {
                        let mut text = String::new();
                        let _ = write!(text, "{other}");
                        encode(&text, &mut out);
                    }
                },
            }
        }
        out
    }
}

/// The identity encoding, for headers and query values (the HTTP client encodes the query itself).
pub fn verbatim(value: &str, out: &mut String) {
    out.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<String, Value>);
    impl Lookup for Map {
        fn lookup(&self, source: &Source) -> Option<&Value> {
            self.0.get(&source.to_string())
        }
    }

    #[test]
    fn path_placeholders_are_those_after_the_host() {
        for (template, paths) in [
            (
                "https://shop.example/{{settings.tenant}}/v1",
                &["tenant"][..],
            ),
            ("{{settings.base}}/{{settings.tenant}}", &["tenant"]),
            ("{{settings.base}}", &[]),
            ("https://{{settings.tenant}}.shop.example/v1", &[]),
            (
                "{{settings.scheme}}://{{settings.host}}:{{settings.port}}/{{settings.v}}",
                &["v"],
            ),
        ] {
            let t = Template::parse(template).unwrap();
            let found: Vec<String> = t
                .path_sources()
                .map(|s| match s {
                    Source::Setting(key) => key.clone(),
                    other => other.to_string(),
                })
                .collect();
            assert_eq!(found, paths, "{template}");
        }
    }

    #[test]
    fn host_placeholders_are_those_between_the_scheme_and_the_path() {
        for (template, hosts) in [
            (
                "https://{{settings.tenant}}.shop.example/v1",
                &["tenant"][..],
            ),
            ("https://{{settings.tenant}}.shop.example", &["tenant"]),
            (
                "{{settings.scheme}}://{{settings.host}}:{{settings.port}}/{{settings.v}}",
                &["host", "port"],
            ),
            (
                "https://api.{{settings.region}}.shop.example/{{settings.tenant}}",
                &["region"],
            ),
            ("{{settings.base}}", &[]),
            ("{{settings.base}}/v1", &[]),
            ("https://shop.example/{{settings.tenant}}", &[]),
            ("https://shop.example?x={{settings.tenant}}", &[]),
        ] {
            let t = Template::parse(template).unwrap();
            let found: Vec<String> = t
                .host_sources()
                .map(|s| match s {
                    Source::Setting(key) => key.clone(),
                    other => other.to_string(),
                })
                .collect();
            assert_eq!(found, hosts, "{template}");
        }
    }

    #[test]
    fn renders_text_and_placeholders() {
        let t = Template::parse("/orders/{{ inputs.id }}?c={{settings.currency}}").unwrap();
        let values = Map(HashMap::from([
            ("inputs.id".into(), Value::from(42)),
            ("settings.currency".into(), Value::from("EUR")),
        ]));
        assert_eq!(t.render(&values, verbatim), "/orders/42?c=EUR");
        assert!(t.is_complete(&values));
        assert_eq!(t.single(), None);
    }

    #[test]
    fn single_placeholder_is_recognised() {
        let t = Template::parse("{{inputs.qty}}").unwrap();
        assert_eq!(t.single(), Some(&Source::Input("qty".into())));
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(matches!(
            Template::parse("{{input.x}}"),
            Err(TemplateError::Unknown(_))
        ));
        assert!(matches!(
            Template::parse("/a/{{inputs.x"),
            Err(TemplateError::Unclosed(_))
        ));
    }
}
