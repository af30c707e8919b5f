//! Strict JSON: one reading of a body, the same one the upstream must have.
//!
//! A governed body is parsed once, here, and every inspector works on the resulting
//! [`serde_json::Value`]. The parser is serde_json's (RFC 8259: no comments, no trailing commas, no
//! `NaN`/`Infinity`, no single quotes, valid UTF-8, no lone surrogates in `\u` escapes, no trailing
//! data), driven by our own [`DeserializeSeed`] so that we can also refuse what RFC 8259 leaves to
//! the implementation and parsers disagree on:
//!
//! - **Duplicate object keys** (RFC 8259 §4: "the behavior of software that receives such an
//!   object is unpredictable"). Python and Go keep the last value, some Java parsers the first: a
//!   filter that reads one and an upstream that reads the other see different requests. Keys are
//!   compared after escape decoding, so `{"a":1,"\u0061":2}` is a duplicate. Never keep either.
//! - **Depth.** Nesting of arrays and objects is bounded; the check runs before descending, so the
//!   parser's own stack stays bounded whatever the input (no overflow on 100 000 `[`).
//! - **A byte-order mark** (RFC 8259 §8.1: implementations "MUST NOT add a byte order mark" and
//!   MAY ignore one). serde_json rejects it already; we name it.
//! - **Empty or whitespace-only input.**
//!
//! Numbers follow serde_json without `arbitrary_precision`: integers in `i64`/`u64` stay exact;
//! larger integers and anything with a fraction or exponent become `f64` (so
//! `18446744073709551616` reads as `1.8446744073709552e19` and `1e-400` as `0.0`); a magnitude that
//! overflows `f64` (`1e400`) is a syntax error ("number out of range"). Callers that need exact
//! identifiers (JSON-RPC ids) must accept only `i64`/`u64` numbers, as [`crate::jsonrpc`] does.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest nesting [`parse_strict`] ever allows, whatever the caller asks.
///
/// serde_json has its own recursion guard that fails at the 128th nested array or object with a
/// generic syntax error; staying one level below it means our own check always fires first and the
/// caller gets [`JsonError::TooDeep`].
pub const DEPTH_CEILING: usize = 126;

/// Longest duplicate key quoted back in an error: keys are client input and end up in logs.
const MAX_KEY_IN_ERROR: usize = 128;

/// Why a body is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Malformed JSON as RFC 8259 defines it (also: invalid UTF-8, lone surrogates, comments,
    /// trailing commas, trailing data, numbers out of `f64` range).
    #[error("invalid JSON at line {line} column {column}: {reason}")]
    Syntax { line: usize, column: usize, reason: String },
    /// The same member name twice in one object, compared after escape decoding.
    #[error("duplicate object key {key:?}")]
    DuplicateKey { key: String },
    /// Arrays and objects nested deeper than allowed (`max` is the limit that applied).
    #[error("JSON nested deeper than {max} levels")]
    TooDeep { max: usize },
    /// No JSON value at all: zero bytes or only whitespace.
    #[error("empty JSON body")]
    Empty,
    /// A leading byte-order mark (UTF-8 `EF BB BF`, or the UTF-16 marks `FE FF` / `FF FE`).
    #[error("JSON body starts with a byte-order mark")]
    Bom,
}

/// Parses `bytes` as one strict JSON value.
///
/// `max_depth` bounds the nesting of arrays and objects: `0` admits only a scalar, `1` a flat
/// array or object, and so on. It is capped at [`DEPTH_CEILING`].
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    precheck(bytes)?;
    let max = max_depth.min(DEPTH_CEILING);
    // The visitor cannot return our error type through serde's, so it leaves the precise reason
    // here and returns a generic serde error that only unwinds the parse.
    let failure: Cell<Option<JsonError>> = Cell::new(None);
    run(bytes, StrictValue { depth: 0, max, failure: &failure }, &failure, max)
}

/// What is refused before parsing: a byte-order mark, and nothing but whitespace.
pub(crate) fn precheck(bytes: &[u8]) -> Result<(), JsonError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") || bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(JsonError::Bom);
    }
    // RFC 8259 §2: the four insignificant whitespace characters.
    if bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Err(JsonError::Empty);
    }
    Ok(())
}

/// Reads one value with `seed` and nothing after it; an error is the precise reason the visitor
/// left in `failure`, else serde_json's syntax error.
pub(crate) fn run<'de, S: DeserializeSeed<'de>>(bytes: &'de [u8], seed: S, failure: &Cell<Option<JsonError>>, max: usize) -> Result<S::Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = seed.deserialize(&mut de).and_then(|value| de.end().map(|()| value));
    parsed.map_err(|err| failure.take().unwrap_or_else(|| syntax_error(&err, max)))
}

/// The depth of a child of a container at `depth`, or an error (its reason left in `failure`)
/// when that exceeds `max`. Called before reading any element, so recursion stops here.
pub(crate) fn enter<E: de::Error>(depth: usize, max: usize, failure: &Cell<Option<JsonError>>) -> Result<usize, E> {
    let depth = depth.saturating_add(1);
    if depth > max {
        failure.set(Some(JsonError::TooDeep { max }));
        return Err(E::custom("nesting too deep"));
    }
    Ok(depth)
}

/// Checks that `bytes` is one strict JSON value, exactly as [`parse_strict`] would, without
/// building it: the same errors (syntax, duplicate keys, depth, BOM, empty), but memory bounded by
/// the keys of the objects on the current nesting path, not by the document. For large documents
/// that are deserialized into typed structures anyway (a policy of 100,000 rules: a `Value` tree
/// of it costs several times its text, and wasm memory keeps that peak for good).
pub fn check_strict(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    precheck(bytes)?;
    let max = max_depth.min(DEPTH_CEILING);
    let failure: Cell<Option<JsonError>> = Cell::new(None);
    run(bytes, StrictSkip { depth: 0, max, failure: &failure }, &failure, max)
}

fn syntax_error(err: &serde_json::Error, max: usize) -> JsonError {
    let full = err.to_string();
    // serde_json renders "<reason> at line L column C"; keep the reason alone.
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    // Unreachable while DEPTH_CEILING stays below serde_json's guard; kept so that a change there
    // still reports the right cause.
    if reason == "recursion limit exceeded" {
        return JsonError::TooDeep { max };
    }
    JsonError::Syntax { line: err.line(), column: err.column(), reason }
}

pub(crate) fn truncate_key(key: &str) -> String {
    key.chars().take(MAX_KEY_IN_ERROR).collect()
}

/// Seed and visitor in one: `depth` is the nesting of the value about to be read.
#[derive(Clone, Copy)]
struct StrictValue<'f> {
    depth: usize,
    max: usize,
    failure: &'f Cell<Option<JsonError>>,
}

impl StrictValue<'_> {
    /// The seed for a child of an array or object, or an error if the container itself already
    /// exceeds the limit.
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        Ok(Self { depth: enter(self.depth, self.max, self.failure)?, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float from text; refuse one anyway rather than
        // turning it into something else.
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut members = Map::new();
        // `String` keys: serde_json hands over the decoded text, so escaped spellings compare
        // equal to plain ones.
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                self.failure.set(Some(JsonError::DuplicateKey { key: truncate_key(&key) }));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(child)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// [`StrictValue`]'s checks without the value: numbers, strings and literals are validated by
/// serde_json and dropped; object keys are kept only while their object is being read.
#[derive(Clone, Copy)]
struct StrictSkip<'f> {
    depth: usize,
    max: usize,
    failure: &'f Cell<Option<JsonError>>,
}

impl StrictSkip<'_> {
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        Ok(Self { depth: enter(self.depth, self.max, self.failure)?, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for StrictSkip<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSkip<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("non-finite number")) }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.enter()?;
        while seq.next_element_seed(child)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let child = self.enter()?;
        // Keys borrow from the input unless they contain escapes (then serde_json decodes them),
        // so escaped and plain spellings compare equal, as in `parse_strict`.
        let mut seen: std::collections::HashSet<std::borrow::Cow<'de, str>> = std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                self.failure.set(Some(JsonError::DuplicateKey { key: truncate_key(&key) }));
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(child)?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
