//! [`Text`]: the strings of a decision and its facts, most of which the engine already holds.
//!
//! Rule ids, agent names, route templates and fixed reasons come from the compiled policy or from
//! the engine's own vocabulary. A decision that copied them into fresh `String`s paid one heap
//! allocation each, on every request (issue 7); a `Text` points at them instead, and only text
//! made for this decision (a formatted reason, a name the policy does not know) owns its bytes.
//! Whatever the variant, a `Text` compares, hashes, prints and serializes as the plain string.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is fixed, shared with the compiled policy, or owned.
#[derive(Clone)]
pub enum Text {
    /// A built-in name or message.
    Static(&'static str),
    /// Shared with the compiled policy: cloning it bumps a reference count.
    Shared(Arc<str>),
    /// Made for this decision.
    Owned(String),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::Static("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

// Eq, Ord and Hash agree with `str`'s, as `Borrow` requires.
impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Self::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::Owned(s)
    }
}

impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Self {
        Self::Shared(s)
    }
}

impl From<&Arc<str>> for Text {
    fn from(s: &Arc<str>) -> Self {
        Self::Shared(Arc::clone(s))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        match t {
            Text::Owned(s) => s,
            other => other.as_str().to_owned(),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

/// Prints as the string does (`"id"`), whatever the variant.
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_the_same_string() {
        let variants = [Text::Static("rule-1"), Text::Shared(Arc::from("rule-1")), Text::Owned("rule-1".to_owned())];
        for t in &variants {
            assert_eq!(t, "rule-1");
            assert_eq!(format!("{t:?}"), format!("{:?}", "rule-1"));
            assert_eq!(t.to_string(), "rule-1");
            assert_eq!(serde_json::to_string(t).unwrap(), "\"rule-1\"");
            for u in &variants {
                assert_eq!(t, u);
            }
        }
        let back: Text = serde_json::from_str("\"rule-1\"").unwrap();
        assert_eq!(back, variants[0]);
    }
}
