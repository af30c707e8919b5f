//! A strictly parsed JSON document that borrows its text from the body it was read from.
//!
//! [`parse_doc`] refuses exactly what [`crate::json::parse_strict`] refuses, with the same errors
//! (the same serde_json parser, driven by a seed with the same checks: duplicate keys after escape
//! decoding, depth before descending, byte-order mark, empty input), and reads numbers the same
//! way. What it builds differs: a [`Doc`] whose strings and keys are slices of the body unless
//! they hold an escape, and whose objects are their members in document order, in a vector.
//!
//! That is what the engine reads on every governed call (a JSON-RPC request, a tool's answer),
//! and the `serde_json::Value` tree was most of that call's cost: natively the strict parse was
//! about half of judging a 1 KB `tools/call` (perf over `demo/mcp_tools_call_1k_allowed`), in an
//! allocation per key and per string, a B-tree per object, and the tree's teardown. The few
//! places that must change or re-serialize a body (redaction, a rewritten tool list) or that read
//! a model provider's body (`crate::llm`) take a `Value`: [`Doc::to_value`] makes one there.
//!
//! The type is written here rather than taken from a crate because the part that matters is the
//! strict seed, which no crate offers; the tree itself is six variants.
//!
//! [`JsonTree`] is what code that accepts either form reads (the detectors' walk).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::json::{DEPTH_CEILING, JsonError, Key, enter, precheck, run, truncate_key};

/// Objects with up to this many members are checked for a repeated key by comparing it with each
/// earlier one; a larger object switches to a hash set (a hostile body of many keys stays linear).
const LINEAR_KEY_CHECK: usize = 16;

/// A JSON value borrowed from the text it was parsed from. Objects hold no key twice.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    Object(Members<'a>),
}

/// The members of an object, in document order, each key once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Members<'a> {
    members: Vec<(Cow<'a, str>, Doc<'a>)>,
}

impl<'a> Members<'a> {
    /// The value of member `key` (compared after escape decoding, as parsed).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Doc<'a>)> + ExactSizeIterator {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_ref())
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl<'a> Doc<'a> {
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_object(&self) -> Option<&Members<'a>> {
        match self {
            Doc::Object(m) => Some(m),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_array(&self) -> Option<&[Doc<'a>]> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Member `key` of an object; `None` for anything else.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        self.as_object()?.get(key)
    }

    /// The value an RFC 6901 JSON pointer names, exactly as `serde_json::Value::pointer` reads
    /// it (`""` is the whole document; array indexes without a sign or leading zero).
    #[must_use]
    pub fn pointer(&self, pointer: &str) -> Option<&Doc<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |target, token| {
            let token: Cow<'_, str> = if token.contains('~') { Cow::Owned(token.replace("~1", "/").replace("~0", "~")) } else { Cow::Borrowed(token) };
            match target {
                Doc::Object(m) => m.get(&token),
                Doc::Array(items) => parse_index(&token).and_then(|i| items.get(i)),
                _ => None,
            }
        })
    }

    /// The same document as a `serde_json::Value` (copied), for the code that needs one.
    #[must_use]
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::String(s) => Value::String(s.as_ref().to_owned()),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(m) => Value::Object(m.members.iter().map(|(k, v)| (k.as_ref().to_owned(), v.to_value())).collect()),
        }
    }

    /// A view of a `Value`, borrowing its strings (for a value that was parsed as one, such as a
    /// model's proposed tool call, judged by code that reads a `Doc`).
    #[must_use]
    pub fn borrowing(value: &'a Value) -> Doc<'a> {
        match value {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.clone()),
            Value::String(s) => Doc::String(Cow::Borrowed(s)),
            Value::Array(items) => Doc::Array(items.iter().map(Doc::borrowing).collect()),
            Value::Object(map) => Doc::Object(Members { members: map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Doc::borrowing(v))).collect() }),
        }
    }
}

/// `serde_json`'s reading of an array index in a pointer: digits only, no leading zero.
fn parse_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

/// What is read of a parsed JSON document by code that takes either form.
pub trait JsonTree: Sized {
    fn as_str(&self) -> Option<&str>;
    /// The elements of an array; `None` for anything else.
    fn items(&self) -> Option<&[Self]>;
    /// Calls `f` with each member of an object, **last first**; nothing for anything else. (A
    /// walk that pushes them on a stack then visits them in order.)
    fn members_rev<'s, F: FnMut(&'s str, &'s Self)>(&'s self, f: F);
    /// The document as a `serde_json::Value` (a copy), for code that rewrites it.
    fn to_value(&self) -> Value;
}

impl JsonTree for Value {
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }

    fn members_rev<'s, F: FnMut(&'s str, &'s Self)>(&'s self, mut f: F) {
        if let Value::Object(map) = self {
            for (k, v) in map.iter().rev() {
                f(k, v);
            }
        }
    }

    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl JsonTree for Doc<'_> {
    fn as_str(&self) -> Option<&str> {
        Doc::as_str(self)
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array()
    }

    fn members_rev<'s, F: FnMut(&'s str, &'s Self)>(&'s self, mut f: F) {
        if let Doc::Object(m) = self {
            for (k, v) in m.members.iter().rev() {
                f(k, v);
            }
        }
    }

    fn to_value(&self) -> Value {
        Doc::to_value(self)
    }
}

/// Parses `bytes` as one strict JSON value, as [`crate::json::parse_strict`] does (same
/// acceptance, same errors, `max_depth` capped at [`DEPTH_CEILING`]), into a [`Doc`] borrowing
/// from `bytes`.
pub fn parse_doc(bytes: &[u8], max_depth: usize) -> Result<Doc<'_>, JsonError> {
    precheck(bytes)?;
    let max = max_depth.min(DEPTH_CEILING);
    let failure: Cell<Option<JsonError>> = Cell::new(None);
    run(bytes, DocSeed { depth: 0, max, failure: &failure }, &failure, max)
}

/// Seed and visitor in one, as `json::StrictValue`: `depth` is the nesting of the value about to
/// be read.
#[derive(Clone, Copy)]
struct DocSeed<'f> {
    depth: usize,
    max: usize,
    failure: &'f Cell<Option<JsonError>>,
}

impl DocSeed<'_> {
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        Ok(Self { depth: enter(self.depth, self.max, self.failure)?, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = Doc<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc<'de>, E> {
        Number::from_f64(v).map(Doc::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    /// A string without escapes: a slice of the body.
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(v)))
    }

    /// A string with escapes, decoded by serde_json into its scratch space.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let child = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let child = self.enter()?;
        let mut members: Vec<(Cow<'de, str>, Doc<'de>)> = Vec::new();
        let mut seen: Option<HashSet<Cow<'de, str>>> = None;
        // Keys arrive decoded (borrowed when they hold no escape), so escaped and plain spellings
        // compare equal, as in `parse_strict`.
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = match &mut seen {
                Some(set) => !set.insert(key.clone()),
                None => members.iter().any(|(k, _)| *k == key),
            };
            if repeated {
                self.failure.set(Some(JsonError::DuplicateKey { key: truncate_key(&key) }));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(child)?;
            members.push((key, value));
            if seen.is_none() && members.len() == LINEAR_KEY_CHECK {
                seen = Some(members.iter().map(|(k, _)| k.clone()).collect());
            }
        }
        Ok(Doc::Object(Members { members }))
    }
}

#[cfg(test)]
#[path = "json_doc_tests.rs"]
mod tests;
