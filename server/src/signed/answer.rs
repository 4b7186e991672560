//! Reading the partner's answer: only the parts the function's outputs read are built, each into a slot of its
//! own; the rest is checked to be JSON and skipped. A partner's answer is often a whole record (an order with
//! its customer and lines) of which a bot block reads a handful of fields, and building the rest (a `String`
//! per key and value, a tree node per object) was the largest cost of the signed path after the HTTP exchanges
//! (docs/benchmarks.md). The objects and arrays on the way to what is read are not built either.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The parts of an answer a function reads: a trie of object keys and array indices whose leaves are kept
/// whole, each in a slot of the parsed `Answer`. An output with a JSONPath can read anywhere, so such a function
/// keeps the whole answer, in slot 0.
#[derive(Debug, PartialEq)]
pub struct AnswerShape {
    whole: bool,
    children: Vec<(String, AnswerShape)>,
    /// The slots of this node's leaves (DFS order makes them one range); a leaf's own slot is `slots.start`.
    slots: std::ops::Range<usize>,
}

impl Default for AnswerShape {
    fn default() -> Self {
        AnswerShape {
            whole: false,
            children: Vec::new(),
            slots: 0..0,
        }
    }
}

/// What `AnswerShape::parse` built: one value per leaf of the shape, `Null` where the answer had none.
#[derive(Debug, PartialEq)]
pub struct Answer {
    slots: Vec<Value>,
}

impl Answer {
    /// An answer kept whole, in slot 0: what outputs read through `locate` of a shape kept whole.
    pub fn whole(value: Value) -> Self {
        Answer { slots: vec![value] }
    }

    pub fn slot(&self, slot: usize) -> &Value {
        self.slots.get(slot).unwrap_or(&Value::Null)
    }
}

impl AnswerShape {
    pub fn whole() -> Self {
        AnswerShape {
            whole: true,
            children: Vec::new(),
            slots: 0..1,
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
        shape.number(0);
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

    /// Gives the leaves their slots, from `first` on; returns the next free one.
    fn number(&mut self, first: usize) -> usize {
        let mut next = first;
        if self.whole {
            next += 1;
        } else {
            for (_, child) in &mut self.children {
                next = child.number(next);
            }
        }
        self.slots = first..next;
        next
    }

    fn child(&self, key: &str) -> Option<&AnswerShape> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    /// Where a pointer's value is found: the slot of the leaf on its way, and how many of its tokens lead there
    /// (the rest are read inside the slot's value). `None` if the shape does not hold it.
    pub fn locate(&self, tokens: &[String]) -> Option<(usize, usize)> {
        let mut node = self;
        for (depth, token) in tokens.iter().enumerate() {
            if node.whole {
                return Some((node.slots.start, depth));
            }
            node = node.child(token)?;
        }
        node.whole.then_some((node.slots.start, tokens.len()))
    }

    /// Parses `body` into one value per leaf, each what `serde_json::from_slice` would hold at its path. It fails
    /// where the full parse fails, with three exceptions inside the parts it skips, which serde_json's skipping
    /// does not check: numbers out of range (`1e400`), lone surrogate escapes (`"\ud800"`) and nesting deeper
    /// than 128 levels. Nothing of those parts reaches an output.
    pub fn parse(&self, body: &[u8]) -> serde_json::Result<Answer> {
        // Checked whole, first: the skipped strings are not otherwise checked to be UTF-8.
        let text = std::str::from_utf8(body).map_err(|e| {
            <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8 text: {e}"))
        })?;
        let mut answer = Answer {
            slots: vec![Value::Null; self.slots.end],
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        Fill {
            shape: self,
            slots: &mut answer.slots,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(answer)
    }
}

/// One node of the shape being read: a leaf is deserialised whole into its slot; any other node passes each
/// key or index it has a child for to that child and skips the rest.
struct Fill<'s> {
    shape: &'s AnswerShape,
    slots: &'s mut [Value],
}

impl<'de> DeserializeSeed<'de> for Fill<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.shape.whole {
            self.slots[self.shape.slots.start] = serde::Deserialize::deserialize(deserializer)?;
            Ok(())
        } else {
            // A key seen twice is read as its last occurrence, as in a `Map`: the first one's leaves go.
            self.slots[self.shape.slots.clone()].fill(Value::Null);
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

impl<'de> Visitor<'de> for Fill<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            match self.shape.child(&key) {
                Some(child) => map.next_value_seed(Fill {
                    shape: child,
                    slots: &mut *self.slots,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        let mut digits = itoa::Buffer::new();
        loop {
            let more = match self.shape.child(digits.format(index)) {
                Some(child) => seq
                    .next_element_seed(Fill {
                        shape: child,
                        slots: &mut *self.slots,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    // What this node holds is not an object or array, so none of its children is there.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::mapping::{pointer_tokens as tokens, resolve};

    fn shape(pointers: &[&str]) -> AnswerShape {
        let split: Vec<Vec<String>> = pointers.iter().map(|p| tokens(p)).collect();
        AnswerShape::from_pointers(split.iter().map(|t| Some(t.as_slice())))
    }

    /// What the parsed answer holds at a pointer, read as an output reads it (`null` counts as nothing).
    fn read<'a>(shape: &AnswerShape, answer: &'a Answer, pointer: &str) -> Option<&'a Value> {
        let tokens = tokens(pointer);
        let (slot, depth) = shape.locate(&tokens)?;
        resolve(&tokens[depth..], answer.slot(slot)).filter(|v| !v.is_null())
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
        let shape = shape(&pointers);
        let pruned = shape.parse(ANSWER.as_bytes()).unwrap();
        for pointer in pointers {
            let expected = full.pointer(pointer).filter(|v| !v.is_null());
            assert_eq!(read(&shape, &pruned, pointer), expected, "{pointer}");
        }
        // One slot per place read, nothing else built: `/status/0` is read inside `/status`'s slot.
        assert_eq!(pruned.slots.len(), pointers.len() - 1);
        assert_eq!(shape.locate(&tokens("/id")), None);
        assert_eq!(shape.locate(&tokens("/lines/0/sku")), None);
    }

    #[test]
    fn a_key_seen_twice_is_read_as_its_last_occurrence() {
        let shape = shape(&["/total/amount", "/total/currency"]);
        for text in [
            r#"{"total": {"amount": 1, "currency": "EUR"}, "total": "free"}"#,
            r#"{"total": {"amount": 1, "currency": "EUR"}, "total": {"amount": 2}}"#,
            r#"{"total": "free", "total": {"amount": 2, "currency": "HRK"}}"#,
        ] {
            let full: Value = serde_json::from_str(text).unwrap();
            let parsed = shape.parse(text.as_bytes()).unwrap();
            for pointer in ["/total/amount", "/total/currency"] {
                let expected = full.pointer(pointer).filter(|v| !v.is_null());
                assert_eq!(read(&shape, &parsed, pointer), expected, "{text} {pointer}");
            }
        }
    }

    #[test]
    fn a_jsonpath_or_the_root_keeps_the_whole_answer() {
        let full: Value = serde_json::from_str(ANSWER).unwrap();
        let whole = AnswerShape::from_pointers([Some(&tokens("/status")[..]), None]);
        assert_eq!(
            whole.parse(ANSWER.as_bytes()).unwrap(),
            Answer::whole(full.clone())
        );
        assert_eq!(
            shape(&["/status", ""]).parse(ANSWER.as_bytes()).unwrap(),
            Answer::whole(full)
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
            let parsed = shape.parse(lenient.as_bytes()).unwrap();
            assert_eq!(read(&shape, &parsed, "/status"), Some(&Value::from("ok")));
            let read = lenient
                .replace("skipped", "status")
                .replace(", \"status\": \"ok\"", "");
            assert!(shape.parse(read.as_bytes()).is_err(), "accepted {read}");
        }
        let parsed = shape.parse(br#"["not", "an", "object"]"#).unwrap();
        assert_eq!(read(&shape, &parsed, "/status"), None);
    }
}
