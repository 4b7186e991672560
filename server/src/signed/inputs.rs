//! A function's inputs as Infobip sent them: path parameters, the query string and the JSON body, each typed
//! against the definition. Values that could only be text (the path, the query) are converted to the declared
//! type; a JSON number where text is declared is accepted as its digits, since bots often hold ids as numbers.

use app::definition::template::{Lookup, Source};
use app::definition::{Function, InputLocation, ValueType};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body must be a JSON object of inputs")]
    NotAnObject,
    #[error("input `{0}` is required")]
    Missing(String),
    #[error("input `{name}` must be {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
    },
}

/// A function has a handful of inputs: a list searched in order beats hashing each name.
#[derive(Debug, Default)]
pub struct Inputs {
    values: Vec<(String, Value)>,
}

impl Inputs {
    /// `path`: the path parameters by name, as the router matched them.
    pub fn collect<'p>(
        function: &Function,
        path: impl IntoIterator<Item = (&'p str, &'p str)> + Clone,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Self, InputError> {
        let body = parse_body(body)?;
        let query: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let mut values = Vec::with_capacity(function.inputs.len());
        for input in &function.inputs {
            let raw = match input.location(function.method) {
                InputLocation::Path => path
                    .clone()
                    .into_iter()
                    .find(|(k, _)| *k == input.name)
                    .map(|(_, v)| Value::String(v.to_owned())),
                // The signature covers the body, not the query: a body input is read from the body only, so
                // nobody on the way can add or replace it in the URL of a signed POST.
                InputLocation::Body => body.as_ref().and_then(|b| b.get(&input.name).cloned()),
                InputLocation::Query => query
                    .iter()
                    .find(|(k, _)| *k == input.name)
                    .map(|(_, v)| Value::String(v.clone())),
            };
            match raw.filter(|v| !v.is_null() && v.as_str() != Some("")) {
                Some(value) => {
                    values.push((input.name.clone(), coerce(&input.name, input.kind, value)?));
                }
                None if input.required => return Err(InputError::Missing(input.name.clone())),
                None => {}
            }
        }
        Ok(Inputs { values })
    }

    /// Inputs given by name (the context card's), typed and checked like a signed call's.
    pub fn from_values(
        function: &Function,
        given: &HashMap<String, Value>,
    ) -> Result<Self, InputError> {
        let mut values = Vec::with_capacity(function.inputs.len());
        for input in &function.inputs {
            match given
                .get(&input.name)
                .filter(|v| !v.is_null() && v.as_str() != Some(""))
            {
                Some(value) => {
                    values.push((
                        input.name.clone(),
                        coerce(&input.name, input.kind, value.clone())?,
                    ));
                }
                None if input.required => return Err(InputError::Missing(input.name.clone())),
                None => {}
            }
        }
        Ok(Inputs { values })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    }
}

fn parse_body(body: &[u8]) -> Result<Option<Map<String, Value>>, InputError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(InputError::NotAnObject),
        Err(e) => Err(InputError::MalformedJson(e.to_string())),
    }
}

fn coerce(name: &str, kind: ValueType, value: Value) -> Result<Value, InputError> {
    match kind.coerce(&value) {
        Ok(Cow::Borrowed(_)) => Ok(value),
        Ok(Cow::Owned(converted)) => Ok(converted),
        Err(expected) => Err(InputError::WrongType {
            name: name.to_owned(),
            expected,
        }),
    }
}

/// Inputs and settings together: what a function's request templates draw from.
pub struct Scope<'a> {
    pub inputs: &'a Inputs,
    pub settings: &'a dyn Lookup,
}

impl Lookup for Scope<'_> {
    fn lookup(&self, source: &Source) -> Option<&Value> {
        match source {
            Source::Input(name) => self.inputs.get(name),
            Source::Setting(_) => self.settings.lookup(source),
            Source::Conversation(_) | Source::Lookup(_) | Source::Item(_) | Source::Result(_) => {
                None
            }
        }
    }
}
