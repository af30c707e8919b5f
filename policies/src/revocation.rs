//! Revocations: principals (user, session, trace, agent) refused fleet-wide until lifted or
//! expired. The enforcer holds the list; each filter keeps it as a hash set in memory and checks
//! every request against it in O(1) per principal kind.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::decision::Facts;
use crate::schema::Principal;

/// One revocation, as the enforcer serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub id: String,
    pub kind: Principal,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_unix_ms: u64,
    /// Absent: until lifted.
    #[serde(default)]
    pub expires_unix_ms: Option<u64>,
    /// `cli`, or `decision:<id>` when a rule revoked.
    pub source: String,
}

/// The active revocations, indexed by kind, then value: a request's names are looked up as they
/// are (a `(kind, value)` key would be a `String` built per principal per request).
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    user: HashMap<String, Revocation>,
    session: HashMap<String, Revocation>,
    trace: HashMap<String, Revocation>,
    agent: HashMap<String, Revocation>,
}

/// The most revocations a filter holds; the enforcer caps its list at the same number.
pub const MAX_REVOCATIONS: usize = 10_000;

impl RevocationSet {
    /// Builds the set; beyond [`MAX_REVOCATIONS`] entries the rest are ignored (the enforcer never
    /// serves more).
    pub fn new(list: impl IntoIterator<Item = Revocation>) -> Self {
        let mut set = Self::default();
        for r in list.into_iter().take(MAX_REVOCATIONS) {
            set.table_mut(r.kind).insert(r.value.clone(), r);
        }
        set
    }

    fn table(&self, kind: Principal) -> &HashMap<String, Revocation> {
        match kind {
            Principal::User => &self.user,
            Principal::Session => &self.session,
            Principal::Trace => &self.trace,
            Principal::Agent => &self.agent,
        }
    }

    fn table_mut(&mut self, kind: Principal) -> &mut HashMap<String, Revocation> {
        match kind {
            Principal::User => &mut self.user,
            Principal::Session => &mut self.session,
            Principal::Trace => &mut self.trace,
            Principal::Agent => &mut self.agent,
        }
    }

    pub fn len(&self) -> usize {
        self.user.len() + self.session.len() + self.trace.len() + self.agent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revocation that refuses a caller with these facts at `now_ms`, if any. Identity comes
    /// from verified sources only, so a fresh trace id or connection changes nothing for a revoked
    /// user, session or agent.
    pub fn check(&self, facts: &Facts, now_ms: u64) -> Option<&Revocation> {
        if self.is_empty() {
            return None;
        }
        [
            (Principal::Agent, facts.agent.as_deref()),
            (Principal::User, facts.user.as_deref()),
            (Principal::Session, facts.session.as_deref()),
            (Principal::Trace, facts.trace.as_deref()),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.map(|v| (kind, v)))
        .find_map(|(kind, v)| self.table(kind).get(v).filter(|r| r.expires_unix_ms.is_none_or(|e| now_ms < e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(kind: Principal, value: &str, expires: Option<u64>) -> Revocation {
        Revocation {
            id: format!("rv-{value}"),
            kind,
            value: value.into(),
            reason: None,
            created_unix_ms: 0,
            expires_unix_ms: expires,
            source: "cli".into(),
        }
    }

    #[test]
    fn each_principal_kind_is_checked_and_expiry_honoured() {
        let set = RevocationSet::new([
            rev(Principal::User, "alice", None),
            rev(Principal::Session, "s1", Some(1_000)),
            rev(Principal::Trace, "4bf92f3577b34da6a3ce929d0e0e4736", None),
            rev(Principal::Agent, "rogue", None),
        ]);
        let facts = |agent: &str, user: &str, session: &str, trace: Option<&str>| Facts {
            agent: Some(agent.to_owned().into()),
            user: Some(user.into()),
            session: Some(session.into()),
            trace: trace.map(Into::into),
            ..Facts::default()
        };
        for (name, f, now, hit) in [
            ("user", facts("a", "alice", "x", None), 0, Some("rv-alice")),
            ("session before expiry", facts("a", "bob", "s1", None), 999, Some("rv-s1")),
            ("session after expiry", facts("a", "bob", "s1", None), 1_000, None),
            ("trace", facts("a", "bob", "x", Some("4bf92f3577b34da6a3ce929d0e0e4736")), 0, Some("rv-4bf92f3577b34da6a3ce929d0e0e4736")),
            ("agent", facts("rogue", "bob", "x", None), 0, Some("rv-rogue")),
            ("nobody", facts("a", "bob", "x", None), 0, None),
            ("value of another kind", facts("alice", "bob", "x", None), 0, None),
        ] {
            assert_eq!(set.check(&f, now).map(|r| r.id.as_str()), hit, "{name}");
        }
    }

    #[test]
    fn a_value_is_revoked_per_kind_and_a_repeat_replaces() {
        let set = RevocationSet::new([rev(Principal::User, "x", None), rev(Principal::Session, "x", Some(5)), rev(Principal::Session, "x", None)]);
        assert_eq!(set.len(), 2);
        let session = Facts { session: Some("x".into()), ..Facts::default() };
        assert!(set.check(&session, 10).is_some(), "the later session revocation (no expiry) replaced the earlier");
    }

    #[test]
    fn the_set_is_bounded() {
        let set = RevocationSet::new((0..MAX_REVOCATIONS + 10).map(|i| rev(Principal::User, &i.to_string(), None)));
        assert_eq!(set.len(), MAX_REVOCATIONS);
    }
}
