//! Turning the partner's answer into the function's outputs: a flat JSON object whose fields are the attributes
//! an Answers block or a Flow element reads. JSONPaths and JSON pointers are parsed once at start-up:
//! `Value::pointer` splits and unescapes its text on every call, which was the mapping's largest cost.

use crate::signed::answer::{Answer, AnswerShape};
use app::definition::{Output, ValueType};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use serde_json_path::JsonPath;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("the partner's answer has no value at {pointer} for output `{name}`")]
    Missing { name: String, pointer: String },
    #[error(
        "output `{name}` should be {expected}, but the partner's answer has {found} at {pointer}"
    )]
    WrongType {
        name: String,
        pointer: String,
        expected: &'static str,
        found: &'static str,
    },
}

#[derive(Debug)]
pub struct OutputPlan {
    name: String,
    kind: ValueType,
    pointer: String,
    tokens: Vec<String>,
    path: Option<JsonPath>,
    required: bool,
    items: Vec<OutputPlan>,
    /// Where the parsed answer holds this output's value (`AnswerShape::locate`); slot 0 and the whole pointer
    /// until `answer_shape` sets it, which is right for an answer kept whole.
    location: (usize, usize),
}

impl OutputPlan {
    pub fn compile(output: &Output) -> Result<Self, String> {
        let path = output
            .path
            .as_deref()
            .map(|p| JsonPath::parse(p).map_err(|e| format!("output `{}`: {e}", output.name)))
            .transpose()?;
        let pointer = output.pointer.clone().unwrap_or_default();
        Ok(OutputPlan {
            name: output.name.clone(),
            kind: output.kind,
            tokens: pointer_tokens(&pointer),
            pointer,
            path,
            required: output.required,
            location: (0, 0),
            items: output
                .items
                .iter()
                .map(OutputPlan::compile)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// What of the partner's answer these outputs read (a pointer reads one place, a JSONPath anywhere), and where
/// each output will find its value in the parsed answer.
pub fn answer_shape(plans: &mut [OutputPlan]) -> AnswerShape {
    let shape = AnswerShape::from_pointers(
        plans
            .iter()
            .map(|plan| plan.path.is_none().then_some(plan.tokens.as_slice())),
    );
    for plan in plans.iter_mut() {
        // Every pointer went into the shape, so each has a place; one without would read nothing.
        plan.location = shape.locate(&plan.tokens).unwrap_or((usize::MAX, 0));
    }
    shape
}

/// A function's outputs read from one answer, each borrowed from it unless it had to be converted: a signed call
/// serialises them straight into its JSON answer, with no name or value copied into a map first (~2,500
/// instructions per call, docs/benchmarks.md); the card and People sync take them as a map.
#[derive(Debug)]
pub struct Outputs<'a> {
    fields: Vec<(&'a str, Cow<'a, Value>)>,
}

impl Outputs<'_> {
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_owned()))
            .collect()
    }
}

impl Serialize for Outputs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            map.serialize_entry(name, value.as_ref())?;
        }
        map.end()
    }
}

pub fn map_outputs<'a>(
    plans: &'a [OutputPlan],
    answer: &'a Answer,
) -> Result<Outputs<'a>, MappingError> {
    let read = |plan: &'a OutputPlan| {
        let (slot, depth) = plan.location;
        resolve(&plan.tokens[depth..], answer.slot(slot))
    };
    collect(plans, read, answer.slot(0))
}

/// A JSONPath output's items, read from one element it found.
fn map_items<'a>(plans: &'a [OutputPlan], element: &'a Value) -> Result<Outputs<'a>, MappingError> {
    collect(plans, |plan| resolve(&plan.tokens, element), element)
}

/// `read` finds a pointer's value; a JSONPath queries `root`.
fn collect<'a>(
    plans: &'a [OutputPlan],
    read: impl Fn(&'a OutputPlan) -> Option<&'a Value>,
    root: &'a Value,
) -> Result<Outputs<'a>, MappingError> {
    let mut fields = Vec::with_capacity(plans.len());
    for plan in plans {
        if let Some(value) = map_one(plan, &read, root)? {
            fields.push((plan.name.as_str(), value));
        }
    }
    Ok(Outputs { fields })
}

fn map_one<'a>(
    plan: &'a OutputPlan,
    read: impl Fn(&'a OutputPlan) -> Option<&'a Value>,
    root: &'a Value,
) -> Result<Option<Cow<'a, Value>>, MappingError> {
    if let Some(path) = &plan.path {
        let elements = path.query(root).all();
        let list = elements
            .into_iter()
            .map(|element| {
                if plan.items.is_empty() {
                    Ok(element.clone())
                } else {
                    map_items(&plan.items, element).map(|items| Value::Object(items.into_map()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(Cow::Owned(Value::Array(list))));
    }
    let found = read(plan).filter(|v| !v.is_null());
    let Some(value) = found else {
        return if plan.required {
            Err(MappingError::Missing {
                name: plan.name.clone(),
                pointer: plan.pointer.clone(),
            })
        } else {
            Ok(None)
        };
    };
    convert(plan, value).map(Some)
}

/// RFC 6901 reference tokens, unescaped (`~1` is `/`, `~0` is `~`). The definition loader has already
/// made sure a pointer is empty or starts with `/`.
pub(crate) fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// `Value::pointer` with the tokens already split: an array index is plain decimal without a leading zero.
pub(crate) fn resolve<'v>(tokens: &[String], answer: &'v Value) -> Option<&'v Value> {
    tokens
        .iter()
        .try_fold(answer, |target, token| match target {
            Value::Object(map) => map.get(token),
            Value::Array(list) => {
                if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
                    return None;
                }
                token.parse::<usize>().ok().and_then(|i| list.get(i))
            }
            _ => None,
        })
}

fn convert<'a>(plan: &OutputPlan, value: &'a Value) -> Result<Cow<'a, Value>, MappingError> {
    plan.kind
        .coerce(value)
        .map_err(|expected| MappingError::WrongType {
            name: plan.name.clone(),
            pointer: plan.pointer.clone(),
            expected,
            found: kind_of(value),
        })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(toml: &str) -> OutputPlan {
        let output: Output = toml::from_str(toml).unwrap();
        OutputPlan::compile(&output).unwrap()
    }

    #[test]
    fn maps_scalars_and_lists() {
        let plans = vec![
            plan("name = \"status\"\npointer = \"/status\""),
            plan("name = \"total\"\ntype = \"number\"\npointer = \"/total/amount\""),
            plan(
                "name = \"orders\"\ntype = \"array\"\npath = \"$.orders[*]\"\n[[items]]\nname = \"id\"\npointer = \"/id\"",
            ),
        ];
        let answer = Answer::whole(
            json!({"status": "shipped", "total": {"amount": 9.5}, "orders": [{"id": "1"}, {"id": 2}]}),
        );
        let out = map_outputs(&plans, &answer).unwrap();
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            Value::Object(out.into_map())
        );
        assert_eq!(
            Value::Object(map_outputs(&plans, &answer).unwrap().into_map()),
            json!({"status": "shipped", "total": 9.5, "orders": [{"id": "1"}, {"id": "2"}]})
        );
    }

    #[test]
    fn outputs_from_the_answer_shape_equal_outputs_from_the_whole_answer() {
        let text = r#"{"status": "shipped", "id": 7, "total": {"amount": 9.5, "tax": 1},
            "lines": [{"sku": "A"}, {"sku": "B"}], "orders": [{"id": "1"}, {"id": 2}]}"#;
        let whole = Answer::whole(serde_json::from_str(text).unwrap());
        let pointers_only = || {
            vec![
                plan("name = \"status\"\npointer = \"/status\""),
                plan("name = \"total\"\ntype = \"number\"\npointer = \"/total/amount\""),
                plan("name = \"second\"\npointer = \"/lines/1/sku\""),
                plan("name = \"gone\"\npointer = \"/gone\"\nrequired = false"),
            ]
        };
        let with_path = || {
            vec![
            plan("name = \"status\"\npointer = \"/status\""),
            plan(
                "name = \"orders\"\ntype = \"array\"\npath = \"$.orders[*]\"\n[[items]]\nname = \"id\"\npointer = \"/id\"",
            ),
        ]
        };
        for plans in [pointers_only, with_path] {
            let mut located = plans();
            let pruned = answer_shape(&mut located).parse(text.as_bytes()).unwrap();
            assert_eq!(
                map_outputs(&located, &pruned).unwrap().into_map(),
                map_outputs(&plans(), &whole).unwrap().into_map()
            );
        }
    }

    #[test]
    fn outputs_are_written_in_the_definitions_order() {
        let plans = vec![
            plan("name = \"zeta\"\npointer = \"/z\""),
            plan("name = \"alpha\"\npointer = \"/a\""),
            plan("name = \"gone\"\npointer = \"/gone\"\nrequired = false"),
        ];
        let answer = Answer::whole(json!({"a": "1", "z": 2}));
        let text = serde_json::to_string(&map_outputs(&plans, &answer).unwrap()).unwrap();
        assert_eq!(text, r#"{"zeta":"2","alpha":"1"}"#);
    }

    #[test]
    fn missing_required_output_is_named() {
        let plans = vec![plan("name = \"status\"\npointer = \"/status\"")];
        let error = map_outputs(&plans, &Answer::whole(json!({"state": "x"}))).unwrap_err();
        assert_eq!(
            error,
            MappingError::Missing {
                name: "status".into(),
                pointer: "/status".into()
            }
        );
        let optional = vec![plan(
            "name = \"status\"\npointer = \"/status\"\nrequired = false",
        )];
        assert!(map_outputs(&optional, &Answer::whole(json!({})))
            .unwrap()
            .into_map()
            .is_empty());
    }

    #[test]
    fn wrong_type_is_reported() {
        let plans = vec![plan("name = \"n\"\ntype = \"integer\"\npointer = \"/n\"")];
        assert!(matches!(
            map_outputs(&plans, &Answer::whole(json!({"n": {"a": 1}}))),
            Err(MappingError::WrongType {
                found: "an object",
                ..
            })
        ));
    }

    #[test]
    fn compiled_pointers_agree_with_serde_json() {
        let answer = json!({
            "a": {"b/c": 1, "m~n": 2, "": 3, "list": [10, 20, {"x": "y"}]},
            "0": "zero-key",
        });
        for pointer in [
            "",
            "/",
            "/a",
            "/a/b~1c",
            "/a/m~0n",
            "/a/",
            "/a/list/0",
            "/a/list/2/x",
            "/a/list/01",
            "/a/list/+1",
            "/a/list/3",
            "/a/list/-",
            "/a/list/x",
            "/0",
            "/a/b~1c/d",
            "/missing",
        ] {
            assert_eq!(
                resolve(&pointer_tokens(pointer), &answer),
                answer.pointer(pointer),
                "pointer {pointer:?}"
            );
        }
    }
}
