//! Revocations: a user, session, trace or agent refused fleet-wide until lifted or expired.
//!
//! This module is the pure part: the record as served, validation of what operators and rules ask
//! for, and the table of revocations keyed by (kind, value). Persistence and the long-poll feed are
//! in [`crate::state`]; the clock is always passed in, so expiry is tested without sleeping.
//!
//! A revocation on the wire (the filter parses exactly this; `expires_unix_ms` is `null` for one
//! that lasts until lifted, `reason` is omitted when there is none):
//!
//! ```json
//! {"id":"rv-1f2e3d4c5b6a7988","kind":"session","value":"s-1","reason":"leaked token",
//!  "created_unix_ms":1718000000000,"expires_unix_ms":1718000300000,"source":"cli"}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Most revocations active at once: the filter keeps the same cap on its side, so the enforcer
/// never serves a list a filter would have to cut short.
pub const MAX_ACTIVE: usize = 10_000;
/// Longest revocation that expires by itself: one year. Longer is "until lifted" (no ttl).
pub const MAX_TTL_SECS: u64 = 31_536_000;
/// Longest value (bytes): user ids, session ids, 32-hex trace ids and agent ids are far shorter.
pub const MAX_VALUE_BYTES: usize = 256;
/// Longest reason (bytes).
pub const MAX_REASON_BYTES: usize = 1_024;

/// Which principal is revoked. The wire names are a contract with the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// The end user (JWT `sub`).
    User,
    /// The session (JWT `sid`).
    Session,
    /// The W3C trace id.
    Trace,
    /// The agent (JWT `azp`).
    Agent,
}

impl RevocationKind {
    pub const ALL: [Self; 4] = [Self::User, Self::Session, Self::Trace, Self::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Session => "session",
            Self::Trace => "trace",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationKind {
    type Err = RevocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| RevocationError::InvalidField {
            field: "kind",
            reason: format!("{s:?} is not one of \"user\", \"session\", \"trace\", \"agent\""),
        })
    }
}

/// One revocation, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `rv-` and 16 hex digits.
    pub id: String,
    pub kind: RevocationKind,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_unix_ms: u64,
    /// `null`: until lifted. Serialized as `null` rather than omitted: the contract says so.
    pub expires_unix_ms: Option<u64>,
    /// `cli`, or `decision:<decision id>` when a rule revoked.
    pub source: String,
}

impl Revocation {
    /// Whether it still refuses callers at `now_ms` (expiry is exclusive: at the instant it
    /// expires it no longer applies, as the filter checks it).
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.expires_unix_ms.is_none_or(|e| now_ms < e)
    }
}

/// What `POST /v1/revocations` asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    pub kind: RevocationKind,
    pub value: String,
    /// `None`: until lifted.
    pub ttl_secs: Option<u64>,
    pub reason: Option<String>,
}

/// Why a revocation request is refused, or cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RevocationError {
    #[error("the body must be a JSON object: {0}")]
    NotAnObject(String),
    #[error("unknown field {0:?} (expected kind, value, ttl_secs, reason)")]
    UnknownField(String),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(
        "the revocation table is full: {MAX_ACTIVE} revocations are active; lift some (interlock unrevoke) or let them expire"
    )]
    TableFull,
    #[error("{kind} {value:?} is not revoked")]
    NotRevoked { kind: RevocationKind, value: String },
}

/// Checks a principal value: 1..=256 bytes, no control characters.
pub fn validate_value(value: &str) -> Result<(), RevocationError> {
    let invalid = |reason: String| RevocationError::InvalidField { field: "value", reason };
    if value.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(invalid(format!("is {} bytes, more than {MAX_VALUE_BYTES}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters".to_owned()));
    }
    Ok(())
}

fn validate_reason(reason: &str) -> Result<(), RevocationError> {
    let invalid = |reason: String| RevocationError::InvalidField { field: "reason", reason };
    if reason.len() > MAX_REASON_BYTES {
        return Err(invalid(format!("is {} bytes, more than {MAX_REASON_BYTES}", reason.len())));
    }
    if reason.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters".to_owned()));
    }
    Ok(())
}

fn validate_ttl(ttl: u64) -> Result<(), RevocationError> {
    if (1..=MAX_TTL_SECS).contains(&ttl) {
        Ok(())
    } else {
        Err(RevocationError::InvalidField {
            field: "ttl_secs",
            reason: format!("{ttl} is outside 1..={MAX_TTL_SECS}; omit it to revoke until lifted"),
        })
    }
}

impl RevokeRequest {
    /// Builds a request from its parts, validating each.
    pub fn new(
        kind: RevocationKind,
        value: impl Into<String>,
        ttl_secs: Option<u64>,
        reason: Option<String>,
    ) -> Result<Self, RevocationError> {
        let value = value.into();
        validate_value(&value)?;
        if let Some(ttl) = ttl_secs {
            validate_ttl(ttl)?;
        }
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        Ok(Self { kind, value, ttl_secs, reason })
    }

    /// Parses `{"kind":K,"value":V,"ttl_secs":N?,"reason":R?}`. Checked member by member (rather
    /// than through a derived `Deserialize`) so every error names the field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self, RevocationError> {
        let object: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| RevocationError::NotAnObject(e.to_string()))?;
        if let Some(unknown) = object.keys().find(|k| !matches!(k.as_str(), "kind" | "value" | "ttl_secs" | "reason")) {
            return Err(RevocationError::UnknownField(unknown.clone()));
        }
        let field = |name: &'static str, reason: &str| RevocationError::InvalidField { field: name, reason: reason.to_owned() };
        let kind = match object.get("kind") {
            Some(Value::String(s)) => s.parse()?,
            Some(_) => return Err(field("kind", "must be a string: \"user\", \"session\", \"trace\" or \"agent\"")),
            None => return Err(field("kind", "is required")),
        };
        let value = match object.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(field("value", "must be a string")),
            None => return Err(field("value", "is required")),
        };
        let ttl_secs = match object.get("ttl_secs") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                field("ttl_secs", &format!("{n} is not a whole number of seconds in 1..={MAX_TTL_SECS}"))
            })?),
            Some(_) => return Err(field("ttl_secs", "must be a number of seconds")),
        };
        let reason = match object.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(field("reason", "must be a string")),
        };
        Self::new(kind, value, ttl_secs, reason)
    }

    /// When a revocation made at `now_ms` expires.
    pub fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.ttl_secs.map(|ttl| now_ms.saturating_add(ttl.saturating_mul(1_000)))
    }
}

/// Whether a revoke created a new revocation or replaced an active one of the same principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Created,
    Replaced,
}

/// The revocations, keyed by principal: one per (kind, value), expired ones included until the
/// next change prunes them (answers filter them out by time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationTable {
    by_principal: BTreeMap<(RevocationKind, String), Revocation>,
}

impl RevocationTable {
    /// Builds the table from a stored list. Two entries for one principal mean the file was not
    /// written by this code: refused rather than one silently dropped.
    pub fn from_list(list: Vec<Revocation>) -> Result<Self, String> {
        let mut by_principal = BTreeMap::new();
        for r in list {
            validate_value(&r.value).map_err(|e| format!("revocation {}: {e}", r.id))?;
            if let Some(old) = by_principal.insert((r.kind, r.value.clone()), r) {
                return Err(format!("two revocations of {} {:?} (one is {})", old.kind, old.value, old.id));
            }
        }
        Ok(Self { by_principal })
    }

    /// Every entry, expired ones too (what is persisted).
    pub fn all(&self) -> impl Iterator<Item = &Revocation> {
        self.by_principal.values()
    }

    /// The active revocations at `now_ms`, oldest first (ties by id, so the order is stable).
    pub fn active(&self, now_ms: u64) -> Vec<Revocation> {
        let mut list: Vec<Revocation> = self.by_principal.values().filter(|r| r.is_active(now_ms)).cloned().collect();
        list.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        list
    }

    pub fn active_count(&self, now_ms: u64) -> usize {
        self.by_principal.values().filter(|r| r.is_active(now_ms)).count()
    }

    /// The active revocation of this principal.
    pub fn get_active(&self, kind: RevocationKind, value: &str, now_ms: u64) -> Option<&Revocation> {
        self.by_principal.get(&(kind, value.to_owned())).filter(|r| r.is_active(now_ms))
    }

    /// Drops expired entries. Not a change anyone sees: answers already leave them out.
    pub fn prune(&mut self, now_ms: u64) {
        self.by_principal.retain(|_, r| r.is_active(now_ms));
    }

    /// Records `revocation`, replacing an active one of the same principal. Refused when it would
    /// make more than [`MAX_ACTIVE`] active. Returns what it replaced (for a rollback).
    pub fn insert(
        &mut self,
        revocation: Revocation,
        now_ms: u64,
    ) -> Result<(RevokeOutcome, Option<Revocation>), RevocationError> {
        let key = (revocation.kind, revocation.value.clone());
        let replaces_active = self.by_principal.get(&key).is_some_and(|r| r.is_active(now_ms));
        if !replaces_active && self.active_count(now_ms) >= MAX_ACTIVE {
            return Err(RevocationError::TableFull);
        }
        let previous = self.by_principal.insert(key, revocation);
        let outcome = if replaces_active { RevokeOutcome::Replaced } else { RevokeOutcome::Created };
        Ok((outcome, previous))
    }

    /// Lifts the active revocation of this principal.
    pub fn remove(&mut self, kind: RevocationKind, value: &str, now_ms: u64) -> Result<Revocation, RevocationError> {
        let key = (kind, value.to_owned());
        match self.by_principal.get(&key) {
            Some(r) if r.is_active(now_ms) => {}
            _ => return Err(RevocationError::NotRevoked { kind, value: value.to_owned() }),
        }
        self.by_principal.remove(&key).ok_or(RevocationError::NotRevoked { kind, value: value.to_owned() })
    }

    /// Puts an entry back as it was (undoing [`Self::insert`] or [`Self::remove`] after a failed
    /// write): `previous` is what the key held before, `None` to delete the key.
    pub fn restore(&mut self, kind: RevocationKind, value: &str, previous: Option<Revocation>) {
        let key = (kind, value.to_owned());
        match previous {
            Some(r) => {
                self.by_principal.insert(key, r);
            }
            None => {
                self.by_principal.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(kind: RevocationKind, value: &str, created: u64, expires: Option<u64>) -> Revocation {
        Revocation {
            id: format!("rv-{value}"),
            kind,
            value: value.into(),
            reason: None,
            created_unix_ms: created,
            expires_unix_ms: expires,
            source: "cli".into(),
        }
    }

    #[test]
    fn wire_form_is_the_contract() {
        let r = rev(RevocationKind::Session, "s-1", 5, None);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"id":"rv-s-1","kind":"session","value":"s-1","created_unix_ms":5,"expires_unix_ms":null,"source":"cli"})
        );
        let r = Revocation { reason: Some("why".into()), expires_unix_ms: Some(9), ..r };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["reason"].as_str(), v["expires_unix_ms"].as_u64()), (Some("why"), Some(9)));
        assert_eq!(serde_json::from_value::<Revocation>(v).unwrap(), r);
    }

    #[test]
    fn the_filter_reads_what_the_enforcer_serves() {
        for kind in RevocationKind::ALL {
            for (reason, expires) in [(None, None), (Some("r".to_owned()), Some(7))] {
                let ours = Revocation { reason, expires_unix_ms: expires, ..rev(kind, "v", 5, None) };
                let json = serde_json::to_string(&ours).unwrap();
                let theirs: interlock_policies::revocation::Revocation = serde_json::from_str(&json).unwrap();
                assert_eq!(theirs.kind.as_str(), kind.as_str());
                assert_eq!((theirs.expires_unix_ms, theirs.reason.as_deref()), (ours.expires_unix_ms, ours.reason.as_deref()));
                assert_eq!(serde_json::to_value(&theirs).unwrap(), serde_json::to_value(&ours).unwrap(), "{json}");
            }
        }
    }

    #[test]
    fn revoke_requests_are_validated_naming_the_field() {
        let ok = RevokeRequest::from_json(br#"{"kind":"user","value":"alice","ttl_secs":60,"reason":"r"}"#).unwrap();
        assert_eq!(ok, RevokeRequest::new(RevocationKind::User, "alice", Some(60), Some("r".into())).unwrap());
        assert_eq!(ok.expires_at(1_000), Some(61_000));
        let ok = RevokeRequest::from_json(br#"{"kind":"trace","value":"t","ttl_secs":null}"#).unwrap();
        assert_eq!((ok.ttl_secs, ok.expires_at(1)), (None, None));

        let long = format!(r#"{{"kind":"user","value":"{}"}}"#, "x".repeat(257));
        let max = format!(r#"{{"kind":"user","value":"{}"}}"#, "x".repeat(256));
        assert!(RevokeRequest::from_json(max.as_bytes()).is_ok());
        for (name, body, field) in [
            ("not json", "nope".to_owned(), None),
            ("array", "[]".to_owned(), None),
            ("unknown field", r#"{"kind":"user","value":"a","ttl":5}"#.to_owned(), None),
            ("unknown kind", r#"{"kind":"tenant","value":"a"}"#.to_owned(), Some("kind")),
            ("kind missing", r#"{"value":"a"}"#.to_owned(), Some("kind")),
            ("kind not a string", r#"{"kind":1,"value":"a"}"#.to_owned(), Some("kind")),
            ("value missing", r#"{"kind":"user"}"#.to_owned(), Some("value")),
            ("empty value", r#"{"kind":"user","value":""}"#.to_owned(), Some("value")),
            ("long value", long, Some("value")),
            ("control char", r#"{"kind":"user","value":"a\nb"}"#.to_owned(), Some("value")),
            ("ttl zero", r#"{"kind":"user","value":"a","ttl_secs":0}"#.to_owned(), Some("ttl_secs")),
            ("ttl over a year", r#"{"kind":"user","value":"a","ttl_secs":31536001}"#.to_owned(), Some("ttl_secs")),
            ("ttl negative", r#"{"kind":"user","value":"a","ttl_secs":-1}"#.to_owned(), Some("ttl_secs")),
            ("ttl fraction", r#"{"kind":"user","value":"a","ttl_secs":1.5}"#.to_owned(), Some("ttl_secs")),
            ("ttl string", r#"{"kind":"user","value":"a","ttl_secs":"5"}"#.to_owned(), Some("ttl_secs")),
            ("reason not a string", r#"{"kind":"user","value":"a","reason":5}"#.to_owned(), Some("reason")),
        ] {
            let err = RevokeRequest::from_json(body.as_bytes()).unwrap_err();
            match field {
                Some(f) => {
                    assert!(matches!(err, RevocationError::InvalidField { field, .. } if field == f), "{name}: {err}");
                    assert!(err.to_string().starts_with(&format!("{f}: ")), "{name}: {err}");
                }
                None => assert!(!matches!(err, RevocationError::InvalidField { .. }), "{name}: {err}"),
            }
        }
        assert!(RevokeRequest::from_json(br#"{"kind":"user","value":"a","ttl_secs":1}"#).is_ok());
        assert!(RevokeRequest::from_json(br#"{"kind":"user","value":"a","ttl_secs":31536000}"#).is_ok());
    }

    #[test]
    fn the_table_replaces_expires_and_is_capped() {
        let mut t = RevocationTable::default();
        let (o, prev) = t.insert(rev(RevocationKind::User, "alice", 1, Some(100)), 1).unwrap();
        assert_eq!((o, prev), (RevokeOutcome::Created, None));
        let (o, prev) = t.insert(rev(RevocationKind::User, "alice", 2, None), 2).unwrap();
        assert_eq!(o, RevokeOutcome::Replaced);
        assert_eq!(prev.unwrap().expires_unix_ms, Some(100));
        // Same value, another kind: a different principal.
        assert_eq!(t.insert(rev(RevocationKind::Agent, "alice", 0, Some(50)), 3).unwrap().0, RevokeOutcome::Created);
        assert_eq!(t.active(3).iter().map(|r| r.kind).collect::<Vec<_>>(), [RevocationKind::Agent, RevocationKind::User]);
        // Expired: gone from answers, and a new one over it counts as created.
        assert_eq!(t.active_count(50), 1);
        assert!(t.get_active(RevocationKind::Agent, "alice", 50).is_none());
        assert!(matches!(t.remove(RevocationKind::Agent, "alice", 50), Err(RevocationError::NotRevoked { .. })));
        assert_eq!(t.insert(rev(RevocationKind::Agent, "alice", 60, None), 60).unwrap().0, RevokeOutcome::Created);
        assert_eq!(t.remove(RevocationKind::Agent, "alice", 61).unwrap().created_unix_ms, 60);
        assert!(matches!(t.remove(RevocationKind::Agent, "alice", 61), Err(RevocationError::NotRevoked { .. })));

        let mut t = RevocationTable::default();
        for i in 0..MAX_ACTIVE {
            t.insert(rev(RevocationKind::Session, &i.to_string(), 0, if i == 0 { Some(10) } else { None }), 0).unwrap();
        }
        assert_eq!(t.insert(rev(RevocationKind::Session, "one-more", 0, None), 0), Err(RevocationError::TableFull));
        // Replacing an active one is not growth.
        assert_eq!(t.insert(rev(RevocationKind::Session, "5", 0, None), 0).unwrap().0, RevokeOutcome::Replaced);
        // Once one expires there is room again.
        assert_eq!(t.insert(rev(RevocationKind::Session, "one-more", 10, None), 10).unwrap().0, RevokeOutcome::Created);
        t.prune(10);
        assert_eq!(t.all().count(), MAX_ACTIVE);
    }

    #[test]
    fn a_stored_list_with_a_principal_twice_is_refused() {
        let a = rev(RevocationKind::User, "alice", 1, None);
        assert!(RevocationTable::from_list(vec![a.clone(), a]).unwrap_err().contains("two revocations of user"));
    }
}
