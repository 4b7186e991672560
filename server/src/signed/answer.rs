//! Reading the partner's answer: only the parts the function's outputs read are built into a `Value`; the rest
//! is checked to be JSON and skipped. A partner's answer is often a whole record (an order with its customer
//! and lines) of which a bot block reads a handful of fields, and building the rest (a `String` per key and
//! value, a tree node per object) was the largest cost of the signed path after the HTTP exchanges
//! (docs/benchmarks.md).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The parts of an answer a function reads: a trie of object keys and array indices whose leaves are kept
/// whole. An output with a JSONPath can read anywhere, so such a function keeps the whole answer.
#[derive(Debug, Default, PartialEq)]
pub struct AnswerShape {
    whole: bool,
    children: Vec<(String, AnswerShape)>,
}

impl AnswerShape {
    pub fn whole() -> Self {
        AnswerShape {
            whole: true,
            children: Vec::new(),
        }
    }

    /// From the outputs' pointers, each already split into RFC 6901 tokens; `None` for an output read by
    /// JSONPath.
    pub fn from_pointers<'a>(pointers: impl IntoIterator<Item = Option<&'a [String]>>) -> Self {
        let mut shape = AnswerShape::default();
        for pointer in pointers {
            match pointer {
                None => return AnswerShape::whole(),
                Some(tokens) => shape.insert(tokens),
            }
        }
        shape
    }

    fn insert(&mut self, tokens: &[String]) {
        if self.whole {
            return;
        }
        let Some((first, rest)) = tokens.split_first() else {
            *self = AnswerShape::whole();
            return;
        };
        let position = match self.children.iter().position(|(key, _)| key == first) {
            Some(position) => position,
            None => {
                self.children.push((first.clone(), AnswerShape::default()));
                self.children.len() - 1
            }
        };
        self.children[position].1.insert(rest);
    }

    fn child(&self, key: &str) -> Option<&AnswerShape> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    /// Parses `body` into a `Value` in which every path of the shape holds what `serde_json::from_slice`
    /// would hold there. Skipped array elements stay as `null`, so indices keep their meaning. It fails where
    /// the full parse fails, with three exceptions inside the parts it skips, which serde_json's skipping does
    /// not check: numbers out of range (`1e400`), lone surrogate escapes (`"\ud800"`) and nesting deeper than
    /// 128 levels. Nothing of those parts reaches an output.
    pub fn parse(&self, body: &[u8]) -> serde_json::Result<Value> {
        // Checked whole, first: the skipped strings are not otherwise checked to be UTF-8.
        let text = std::str::from_utf8(body).map_err(|e| {
            <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8 text: {e}"))
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let value = self.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &AnswerShape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole {
            serde::Deserialize::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

/// A key compared without being copied when the text has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for &AnswerShape {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key()? {
            match self.child(&key) {
                Some(child) => {
                    let value = map.next_value_seed(child)?;
                    out.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let child = self.child(&out.len().to_string());
            let element = match child {
                Some(child) => seq.next_element_seed(child)?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| Value::Null),
            };
            match element {
                Some(element) => out.push(element),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::mapping::pointer_tokens as tokens;

    fn shape(pointers: &[&str]) -> AnswerShape {
        let split: Vec<Vec<String>> = pointers.iter().map(|p| tokens(p)).collect();
        AnswerShape::from_pointers(split.iter().map(|t| Some(t.as_slice())))
    }

    const ANSWER: &str = r#"{
        "id": "1001", "status": "shipped", "note": "say \"hi\"", "esc\"aped": 1,
        "total": {"amount": 59.9, "currency": "EUR", "big": 18446744073709551615, "neg": -3},
        "customer": {"name": "Ana", "tags": ["a", "b"], "address": {"city": "Zagreb"}},
        "lines": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 2}, null, true],
        "a/b": {"m~n": false}, "": "empty key", "nothing": null
    }"#;

    #[test]
    fn every_pointer_of_the_shape_reads_what_the_full_parse_holds() {
        let pointers = [
            "/status",
            "/note",
            "/esc\"aped",
            "/total/amount",
            "/total/big",
            "/total/neg",
            "/customer/name",
            "/customer/tags",
            "/customer/address/city",
            "/lines/1/sku",
            "/lines/3",
            "/lines/7",
            "/a~1b/m~0n",
            "/",
            "/nothing",
            "/missing/deeper",
            "/status/0",
        ];
        let full: Value = serde_json::from_str(ANSWER).unwrap();
        let pruned = shape(&pointers).parse(ANSWER.as_bytes()).unwrap();
        for pointer in pointers {
            assert_eq!(pruned.pointer(pointer), full.pointer(pointer), "{pointer}");
        }
        // What no output reads was not built.
        assert_eq!(pruned.pointer("/id"), None);
        assert_eq!(pruned.pointer("/total/currency"), None);
        assert_eq!(pruned.pointer("/lines/0/sku"), None);
        assert_eq!(pruned.pointer("/lines/1/qty"), None);
    }

    #[test]
    fn a_jsonpath_or_the_root_keeps_the_whole_answer() {
        let full: Value = serde_json::from_str(ANSWER).unwrap();
        let whole = AnswerShape::from_pointers([Some(&tokens("/status")[..]), None]);
        assert_eq!(whole.parse(ANSWER.as_bytes()).unwrap(), full);
        assert_eq!(
            shape(&["/status", ""]).parse(ANSWER.as_bytes()).unwrap(),
            full
        );
    }

    #[test]
    fn fails_wherever_the_full_parse_fails() {
        let shape = shape(&["/status"]);
        for bad in [
            "",
            "<html>",
            r#"{"status": "ok""#,
            r#"{"status": "ok"} trailing"#,
            r#"{"status": "ok", "skipped": [1, 2}"#,
            r#"{"skipped": tru, "status": "ok"}"#,
            r#"{"skipped": "\q", "status": "ok"}"#,
            "{\"skipped\": \"\u{1}\", \"status\": \"ok\"}",
        ] {
            assert!(
                serde_json::from_str::<Value>(bad).is_err(),
                "the full parse accepts {bad:?}"
            );
            assert!(shape.parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        let invalid_utf8 = b"{\"skipped\": \"\xff\", \"status\": \"ok\"}";
        assert!(serde_json::from_slice::<Value>(invalid_utf8).is_err());
        assert!(shape.parse(invalid_utf8).is_err(), "accepted invalid UTF-8");
        // What serde_json's skipping does not check passes in a skipped part, and fails where it is read.
        for lenient in [
            r#"{"skipped": 1e400, "status": "ok"}"#,
            r#"{"skipped": "\ud800", "status": "ok"}"#,
        ] {
            assert!(serde_json::from_str::<Value>(lenient).is_err());
            assert_eq!(shape.parse(lenient.as_bytes()).unwrap()["status"], "ok");
            let read = lenient
                .replace("skipped", "status")
                .replace(", \"status\": \"ok\"", "");
            assert!(shape.parse(read.as_bytes()).is_err(), "accepted {read}");
        }
        assert_eq!(
            shape.parse(br#"["not", "an", "object"]"#).unwrap(),
            serde_json::json!([null, null, null])
        );
    }
}
