//! A policy document read with its rules compiled as they are read.
//!
//! Why (issue 7, memory): Envoy runs one wasm VM per worker plus one on the main thread, each
//! loads the policy, and wasm linear memory keeps the load's peak for good. Reading the whole
//! typed [`PolicyDocument`](crate::schema::PolicyDocument) first and compiling it afterwards held
//! both at once (natively 6.6 MB of typed document for 10,000 rules, on top of the tables). Here
//! the two lists that grow with a policy, `rules` and every agent's `grants`, are read one element
//! at a time: each is compiled as soon as it is read and its typed form dropped, so what stays
//! until the compiler indexes it is the compiled rule alone.
//!
//! What must not change is the error a bad document gets:
//!
//! - Shape errors (unknown field, wrong type, missing field) come from the same derived
//!   deserializers: `Rule` and `Grant` themselves, and mirrors of `PolicyDocument` and
//!   `AgentPolicy` with their names, fields and attributes (a test compares their errors), so they
//!   read the same and, as before, win over any validation error.
//! - Validation errors come in the order the compiler reaches them, as before: an element that
//!   fails to compile is kept in its typed form and compiled again, with its real JSON path, when
//!   the compiler gets to it; the elements after it are only read.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::engine::{self, CompiledRule};
use crate::error::PolicyError;
use crate::schema::{
    AgentPolicy, DataRule, DefaultAction, Effect, GovernedRoute, Grant, IdentityConfig,
    InspectionConfig, PolicyDocument, RateLimit, Rule,
};

/// A policy document whose rules and grants are compiled but not yet cross-checked (rule ids,
/// agent names) nor indexed: read it from JSON (it deserializes exactly as a
/// [`PolicyDocument`] does) and hand it to [`crate::Engine::from_prepared`].
///
/// Reads as [`mirror::PolicyDocument`], which mirrors [`PolicyDocument`].
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PreparedPolicy(pub(crate) mirror::PolicyDocument);

/// Mirrors of the schema types, with their Rust names too: serde names the struct in some errors
/// ("expected struct PolicyDocument with 10 elements"). Same fields, order, defaults and
/// attributes, so that the same text gets the same shape errors.
pub(crate) mod mirror {
    use super::*;

    /// Generic over the list elements only so that [`super::ValidatedPolicy`] reads the same
    /// document with slimmed rules; the defaults are the compiled ones.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, bound(deserialize = ""))]
    pub(crate) struct PolicyDocument<R: Compile = Rule, G: Compile = Grant> {
        /// Read (a value that is not a string is refused, as before) and dropped.
        #[serde(rename = "$schema", default)]
        pub(crate) _schema: Option<Dropped>,
        pub(crate) version: String,
        #[serde(default)]
        pub(crate) identity: IdentityConfig,
        #[serde(default)]
        pub(crate) inspection: InspectionConfig,
        #[serde(default)]
        pub(crate) governed: Vec<GovernedRoute>,
        #[serde(default)]
        pub(crate) default_action: DefaultAction,
        #[serde(default)]
        pub(crate) agents: BTreeMap<String, AgentPolicy<G>>,
        #[serde(default)]
        pub(crate) rules: Prepared<R>,
        #[serde(default)]
        pub(crate) rate_limits: Vec<RateLimit>,
        #[serde(default)]
        pub(crate) data_rules: Vec<DataRule>,
    }

    /// An agent's entry with its grants compiled.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, bound(deserialize = ""))]
    pub(crate) struct AgentPolicy<G: Compile = Grant> {
        #[serde(rename = "description", default)]
        pub(crate) _description: Option<Dropped>,
        #[serde(default)]
        pub(crate) grants: Prepared<G>,
    }

    impl<G: Compile> Default for AgentPolicy<G> {
        fn default() -> Self {
            Self { _description: None, grants: Prepared::default() }
        }
    }
}

impl fmt::Debug for PreparedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.summarize("PreparedPolicy", f)
    }
}

impl<R: Compile, G: Compile> mirror::PolicyDocument<R, G> {
    /// Debug output that names the document, not its (possibly 100,000) compiled rules.
    fn summarize(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("version", &self.version)
            .field("agents", &self.agents.len())
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// A string that was read, checked to be a string, and not kept (free text for people).
#[derive(Clone, Copy)]
pub(crate) struct Dropped;

impl<'de> Deserialize<'de> for Dropped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `String`'s own deserializer, so a wrong type reads "expected a string" as before.
        String::deserialize(deserializer).map(|_| Dropped)
    }
}

/// An element of a list that compiles on its own, without the rest of the document.
pub(crate) trait Compile: DeserializeOwned {
    /// Compiles the element found at `path` (errors name it).
    fn compile(&self, path: &str) -> Result<CompiledRule, PolicyError>;

    /// The agents a rule of `$.rules` names (checked against `$.agents` and indexed by the
    /// compiler); grants name none.
    fn agents(&self) -> Option<&Vec<String>> {
        None
    }
}

impl Compile for Rule {
    fn compile(&self, path: &str) -> Result<CompiledRule, PolicyError> {
        let mut rule = engine::compile_rule(
            path,
            &self.id,
            self.effect,
            self.mode,
            self.http.as_ref(),
            self.mcp.as_ref(),
            self.a2a.as_ref(),
        )?;
        if let Some(k) = &self.kernel {
            engine::validate_kernel(&format!("{path}.kernel"), self.effect, k)?;
        }
        if let Some(r) = &self.revoke {
            engine::validate_revoke(&format!("{path}.revoke"), self.effect, r)?;
        }
        if self.kernel.is_some() || self.revoke.is_some() {
            rule.consequences = Some(Box::new(engine::Consequences { kernel: self.kernel.clone(), revoke: self.revoke.clone() }));
        }
        Ok(rule)
    }

    fn agents(&self) -> Option<&Vec<String>> {
        self.agents.as_ref()
    }
}

impl Compile for Grant {
    fn compile(&self, path: &str) -> Result<CompiledRule, PolicyError> {
        engine::compile_rule(
            path,
            &self.id,
            Effect::Allow,
            self.mode,
            self.http.as_ref(),
            self.mcp.as_ref(),
            self.a2a.as_ref(),
        )
    }
}

/// A list compiled element by element: the elements compiled up to the first that failed, and
/// that one, kept to be compiled again with its path when the compiler reaches it.
///
/// The compiled rules sit in a vector of their own, the very one the engine keeps (the compiler
/// appends the grants to the document rules' vector, issue 7: a second vector of them doubled the
/// rules' share of the load's peak); the agents a rule names, rarely given, sit beside them.
pub(crate) struct Prepared<T: Compile> {
    pub(crate) compiled: Vec<CompiledRule>,
    /// The agents named by the compiled rules that name any, with the rule's position in
    /// `compiled`, in order.
    pub(crate) scoped: Vec<(u32, Vec<String>)>,
    pub(crate) failed: Option<Box<T>>,
}

impl<T: Compile> Default for Prepared<T> {
    fn default() -> Self {
        Self {
            compiled: Vec::new(),
            scoped: Vec::new(),
            failed: None,
        }
    }
}

impl<T: Compile> Prepared<T> {
    fn push(&mut self, item: T) {
        if self.failed.is_some() {
            // The compiler stops at the first failure; what follows is only read (for its shape).
            return;
        }
        // The path is written out only if this element's error is ever reported, by
        // [`Prepared::error_at`].
        match (item.compile(""), u32::try_from(self.compiled.len())) {
            (Ok(c), Ok(pos)) => {
                if let Some(agents) = item.agents() {
                    self.scoped.push((pos, agents.clone()));
                }
                self.compiled.push(c);
            }
            _ => self.failed = Some(Box::new(item)),
        }
    }

    /// How many elements the compiler will reach: the compiled ones and the failed one.
    pub(crate) fn len(&self) -> usize {
        self.compiled
            .len()
            .saturating_add(usize::from(self.failed.is_some()))
    }

    /// The error of the failed element, which sits at `path`.
    pub(crate) fn error_at(failed: &T, path: &str) -> PolicyError {
        match failed.compile(path) {
            Err(e) => e,
            // Compiling is deterministic, so this cannot happen; refuse rather than accept.
            Ok(_) => PolicyError::invalid(path, "rule", "failed to compile"),
        }
    }

    fn from_list(list: Vec<T>) -> Self {
        let mut out = Self::default();
        out.compiled.reserve_exact(list.len());
        list.into_iter().for_each(|item| out.push(item));
        out
    }
}

impl<'de, T: Compile> Deserialize<'de> for Prepared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements<T>(PhantomData<T>);

        impl<'de, T: Compile> Visitor<'de> for Elements<T> {
            type Value = Prepared<T>;

            // As `Vec<T>`'s, so that a wrong type reads the same.
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prepared<T>, A::Error> {
                let mut out = Prepared::default();
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                }
                // Exact size: the list is kept until the compiler has indexed it.
                out.compiled.shrink_to_fit();
                out.scoped.shrink_to_fit();
                Ok(out)
            }
        }

        deserializer.deserialize_seq(Elements(PhantomData))
    }
}

/// A policy document read only to be validated (issue 7, memory: a VM that will not decide, such
/// as the main thread's VM in Envoy, must refuse exactly what a deciding VM refuses without
/// keeping, even at peak, the tables it would never use).
///
/// It reads as [`PreparedPolicy`] does, with the same derived deserializers, and every rule and
/// grant is compiled as it is read, by the same code; what is kept of each is only what the
/// document-wide checks look at (its id, effect and mode, and the agents a rule names), not its
/// clauses. [`ValidatedPolicy::check`] then runs the very compiler [`crate::Engine::from_prepared`]
/// runs, over those slim rules, so the cross-checks (repeated or reserved ids, unknown agents,
/// rate limits, data rules, identity, inspection, governed routes) and the order they are made in
/// are the same, and so is the first error. Its engine is dropped before it returns: without
/// their clauses its rules would match any request.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct ValidatedPolicy(mirror::PolicyDocument<Slim<Rule>, Slim<Grant>>);

/// What a validated policy is: enough to say what was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// The document's `version`.
    pub version: String,
    /// Document rules and agent grants, as [`crate::Engine::rule_count`] counts them.
    pub rules: usize,
}

impl fmt::Debug for ValidatedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.summarize("ValidatedPolicy", f)
    }
}

impl ValidatedPolicy {
    /// Reads and validates a policy's JSON text, as [`crate::Engine::from_json`] reads it (shape
    /// errors first, then duplicate keys, then the compiler's checks), keeping nothing compiled.
    pub fn validate_json(text: &str) -> Result<PolicySummary, PolicyError> {
        crate::engine::read_strict::<Self>(text)?.check()
    }

    /// Runs the compiler's document-wide checks; the first error is the one
    /// [`crate::Engine::from_prepared`] would return for the same text.
    pub fn check(self) -> Result<PolicySummary, PolicyError> {
        let doc = self.0;
        let agents = doc
            .agents
            .into_iter()
            .map(|(name, a)| {
                (
                    name,
                    mirror::AgentPolicy {
                        _description: a._description,
                        grants: a.grants.unwrap_slim(),
                    },
                )
            })
            .collect();
        let prepared = PreparedPolicy(mirror::PolicyDocument {
            _schema: doc._schema,
            version: doc.version,
            identity: doc.identity,
            inspection: doc.inspection,
            governed: doc.governed,
            default_action: doc.default_action,
            agents,
            rules: doc.rules.unwrap_slim(),
            rate_limits: doc.rate_limits,
            data_rules: doc.data_rules,
        });
        // Never returned: its rules have no clauses.
        let engine = crate::Engine::from_prepared(prepared)?;
        Ok(PolicySummary {
            version: engine.version().to_owned(),
            rules: engine.rule_count(),
        })
    }
}

/// A list element compiled, checked, and kept without its clauses (see [`ValidatedPolicy`]).
/// Transparent, so it reads, and fails to read, exactly as `T` does.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Slim<T>(T);

/// A compiled rule cut down to what the compiler's cross-checks read: the id (the reason shares
/// its allocation), effect and mode; no clauses, so no tables are built from it.
fn slim(rule: CompiledRule) -> CompiledRule {
    CompiledRule {
        reason: Arc::clone(&rule.id),
        id: rule.id,
        effect: rule.effect,
        mode: rule.mode,
        http: None,
        rpc: None,
        consequences: None,
    }
}

impl<T: Compile> Compile for Slim<T> {
    fn compile(&self, path: &str) -> Result<CompiledRule, PolicyError> {
        self.0.compile(path).map(slim)
    }

    fn agents(&self) -> Option<&Vec<String>> {
        self.0.agents()
    }
}

impl<T: Compile> Prepared<Slim<T>> {
    /// The same list as the compiler takes it: slim elements, and the failed one as read.
    fn unwrap_slim(self) -> Prepared<T> {
        Prepared {
            compiled: self.compiled,
            scoped: self.scoped,
            failed: self.failed.map(|f| Box::new(f.0)),
        }
    }
}

impl From<PolicyDocument> for PreparedPolicy {
    fn from(doc: PolicyDocument) -> Self {
        let agents = doc
            .agents
            .into_iter()
            .map(
                |(
                    name,
                    AgentPolicy {
                        description,
                        grants,
                    },
                )| {
                    (
                        name,
                        mirror::AgentPolicy {
                            _description: description.map(|_| Dropped),
                            grants: Prepared::from_list(grants),
                        },
                    )
                },
            )
            .collect();
        Self(mirror::PolicyDocument {
            _schema: doc.schema.map(|_| Dropped),
            version: doc.version,
            identity: doc.identity,
            inspection: doc.inspection,
            governed: doc.governed,
            default_action: doc.default_action,
            agents,
            rules: Prepared::from_list(doc.rules),
            rate_limits: doc.rate_limits,
            data_rules: doc.data_rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document with several faults is refused for the one a whole-document compile meets
    /// first: shape errors anywhere, then rules in order, then grants by agent name.
    #[test]
    fn the_first_fault_is_reported_whatever_was_compiled_while_reading() {
        let bad_grant = r#"{"id":"bad id","http":{}}"#;
        let cases = [
            (
                "a shape error after a rule that fails",
                r#"{"version":"v","rules":[{"id":"bad id","effect":"deny","http":{}},{"id":"r","effect":"deny","nope":1}]}"#.to_owned(),
                "$.rules[1].nope",
            ),
            (
                "an unknown agent before a rule that fails",
                r#"{"version":"v","rules":[{"id":"r","effect":"deny","agents":["x"],"http":{}},{"id":"bad id","effect":"deny","http":{}}]}"#.to_owned(),
                "$.rules[0].agents[0]",
            ),
            (
                "a failing rule before a failing grant read earlier",
                format!(r#"{{"version":"v","agents":{{"a":{{"grants":[{bad_grant}]}}}},"rules":[{{"id":"bad id","effect":"deny","http":{{}}}}]}}"#),
                "$.rules[0].id",
            ),
            (
                "agents by name, not as written",
                format!(r#"{{"version":"v","agents":{{"b":{{"grants":[{bad_grant}]}},"a":{{"grants":[{{"id":"g","http":{{}}}},{bad_grant}]}}}}}}"#),
                r#"$.agents["a"].grants[1].id"#,
            ),
            (
                "a duplicate id before a grant that fails",
                format!(r#"{{"version":"v","agents":{{"a":{{"grants":[{{"id":"r","http":{{}}}},{bad_grant}]}}}},"rules":[{{"id":"r","effect":"deny","http":{{}}}}]}}"#),
                r#"$.agents["a"].grants[0].id"#,
            ),
            (
                "a bad version before everything",
                format!(r#"{{"version":"","agents":{{"a":{{"grants":[{bad_grant}]}}}}}}"#),
                "$.version",
            ),
        ];
        for (name, text, path) in cases {
            let err = crate::Engine::from_json(&text).err();
            assert_eq!(err.as_ref().map(PolicyError::path), Some(path), "{name}: {err:?}");
            let whole = crate::engine::parse_document(&text).and_then(crate::Engine::compile).err();
            assert_eq!(whole, err, "{name}");
        }
    }

    /// A repeated id names where it was first used, found from the rule's position.
    #[test]
    fn a_repeated_id_names_its_first_use() {
        let rule = |id: &str| serde_json::json!({"id": id, "effect": "deny", "http": {}});
        let grant = |id: &str| serde_json::json!({"id": id, "http": {}});
        let cases = [
            ("two rules", serde_json::json!({"rules": [rule("x"), rule("r"), rule("r")]}), "$.rules[2].id", "$.rules[1].id"),
            ("a grant and a rule", serde_json::json!({"agents": {"a": {"grants": [grant("r")]}}, "rules": [rule("r")]}), r#"$.agents["a"].grants[0].id"#, "$.rules[0].id"),
            (
                "grants of two agents, one without grants between",
                serde_json::json!({"agents": {"c": {"grants": [grant("x"), grant("g")]}, "b": {}, "a": {"grants": [grant("g")]}}}),
                r#"$.agents["c"].grants[1].id"#,
                r#"$.agents["a"].grants[0].id"#,
            ),
            (
                "one agent's grants, after agents without grants",
                serde_json::json!({"agents": {"a": {}, "b": {"grants": []}, "c": {"grants": [grant("x"), grant("g"), grant("g")]}}}),
                r#"$.agents["c"].grants[2].id"#,
                r#"$.agents["c"].grants[1].id"#,
            ),
        ];
        for (name, mut doc, path, first) in cases {
            doc["version"] = "v".into();
            match crate::Engine::from_json(&doc.to_string()).err() {
                Some(PolicyError::DuplicateRuleId { path: p, first: f, .. }) => assert_eq!((p.as_str(), f.as_str()), (path, first), "{name}"),
                other => panic!("{name}: {other:?}, want a duplicate id at {path}"),
            }
        }
        let doc = serde_json::json!({"version": "v", "agents": {"a": {"grants": [grant("g")]}}, "rate_limits": [{"id": "g", "key": ["agent"], "requests": 1, "per_seconds": 1}]});
        let err = crate::Engine::from_json(&doc.to_string()).err();
        assert_eq!(err.as_ref().map(PolicyError::path), Some("$.rate_limits[0].id"), "{err:?}");
    }

    /// The validate-only pass refuses what the full compile refuses, with the same error (message
    /// and JSON path), and accepts what it accepts, with the same version and rule count.
    #[test]
    fn validating_only_gives_the_full_compiles_errors() {
        type Edit = fn(&mut serde_json::Value);
        let demo: serde_json::Value = serde_json::from_str(include_str!("../examples/demo.json")).unwrap_or_default();
        let cases: &[(&str, Edit)] = &[
            ("valid: the demo as it is", |_| {}),
            ("valid: no agents, no rules", |d| {
                *d = serde_json::json!({"version": "v"});
            }),
            ("bad version", |d| d["version"] = "".into()),
            ("unknown top-level key", |d| d["defaults"] = "deny".into()),
            ("missing version", |d| {
                d.as_object_mut().map(|o| o.remove("version"));
            }),
            ("bad rule id", |d| d["rules"][1]["id"] = "bad id".into()),
            ("rule without a clause", |d| d["rules"][0] = serde_json::json!({"id": "x", "effect": "deny"})),
            ("rule with mcp and a2a", |d| d["rules"][0]["a2a"] = serde_json::json!({})),
            ("bad path template in a rule", |d| d["rules"][1]["http"]["paths"] = serde_json::json!(["no-slash"])),
            ("unknown field in a match", |d| d["rules"][1]["http"]["path"] = "/x".into()),
            ("bad grant", |d| d["agents"]["triage-bot"]["grants"][1]["http"] = serde_json::json!({"paths": ["x"]})),
            ("bad grant of the second agent", |d| d["agents"]["billing-agent"]["grants"][0]["id"] = "".into()),
            ("grant with an effect", |d| d["agents"]["triage-bot"]["grants"][0]["effect"] = "allow".into()),
            ("repeated rule id", |d| d["rules"][2]["id"] = d["rules"][0]["id"].clone()),
            ("grant id repeating a rule's", |d| d["agents"]["billing-agent"]["grants"][0]["id"] = d["rules"][1]["id"].clone()),
            ("grant ids repeating across agents", |d| d["agents"]["triage-bot"]["grants"][0]["id"] = d["agents"]["billing-agent"]["grants"][0]["id"].clone()),
            ("reserved id", |d| d["rules"][0]["id"] = crate::builtin::ALL.first().copied().unwrap_or("x").into()),
            ("rule naming an unknown agent", |d| d["rules"][0]["agents"] = serde_json::json!(["nobody"])),
            ("rule naming no agent", |d| d["rules"][0]["agents"] = serde_json::json!([])),
            ("rate limit id repeating a grant's", |d| d["rate_limits"][0]["id"] = d["agents"]["triage-bot"]["grants"][0]["id"].clone()),
            ("bad rate limit", |d| d["rate_limits"][0]["per_seconds"] = 0.into()),
            ("data rule id repeating a rule's", |d| d["data_rules"][0]["id"] = d["rules"][0]["id"].clone()),
            ("data rule on an unknown route", |d| d["data_rules"][0]["routes"] = serde_json::json!(["nowhere"])),
            ("mTLS principal of an unknown agent", |d| d["identity"]["mtls_agents"]["spiffe://x"] = "nobody".into()),
            ("bad jwt claim name", |d| d["identity"]["jwt"]["agent_claim"] = "".into()),
            ("repeated governed route", |d| d["governed"][1]["id"] = d["governed"][0]["id"].clone()),
            ("bad agent name", |d| d["agents"]["bad agent"] = serde_json::json!({})),
            ("a bad rule, then a shape error", |d| {
                d["rules"][0]["id"] = "bad id".into();
                d["rules"][2]["nope"] = 1.into();
            }),
        ];
        let mut refused = 0;
        for (name, edit) in cases {
            let mut doc = demo.clone();
            edit(&mut doc);
            let text = doc.to_string();
            let full = crate::Engine::from_json(&text).map(|e| PolicySummary { version: e.version().to_owned(), rules: e.rule_count() });
            let validated = ValidatedPolicy::validate_json(&text);
            assert_eq!(validated, full, "{name}");
            assert_eq!(full.is_ok(), name.starts_with("valid:"), "{name}: fix the case: {full:?}");
            refused += usize::from(full.is_err());
        }
        assert_eq!(refused, cases.len().saturating_sub(2));
        // Texts that are not a document of the right shape at all, and duplicate keys.
        for text in [r#"[]"#, r#"{"version":"v","version":"w"}"#, r#"{"version":"v","rules":[{"id":"r","effect":"deny","http":{},"http":{}}]}"#, "{", r#"{"version":"v"} x"#] {
            let full = crate::Engine::from_json(text).map(|e| e.rule_count());
            assert!(full.is_err(), "{text}");
            assert_eq!(ValidatedPolicy::validate_json(text).map(|s| s.rules), full, "{text}");
        }
    }

    /// The cases of the tests above, validated only: the same first error.
    #[test]
    fn validating_only_reports_the_same_first_fault() {
        let bad_grant = r#"{"id":"bad id","http":{}}"#;
        let texts = [
            r#"{"version":"v","rules":[{"id":"bad id","effect":"deny","http":{}},{"id":"r","effect":"deny","nope":1}]}"#.to_owned(),
            r#"{"version":"v","rules":[{"id":"r","effect":"deny","agents":["x"],"http":{}},{"id":"bad id","effect":"deny","http":{}}]}"#.to_owned(),
            format!(r#"{{"version":"v","agents":{{"b":{{"grants":[{bad_grant}]}},"a":{{"grants":[{{"id":"g","http":{{}}}},{bad_grant}]}}}}}}"#),
            format!(r#"{{"version":"v","agents":{{"a":{{"grants":[{{"id":"r","http":{{}}}},{bad_grant}]}}}},"rules":[{{"id":"r","effect":"deny","http":{{}}}}]}}"#),
            r#"{"version":"v","agents":{"c":{"grants":[{"id":"x","http":{}},{"id":"g","http":{}}]},"b":{},"a":{"grants":[{"id":"g","http":{}}]}}}"#.to_owned(),
        ];
        for text in texts {
            let full = crate::Engine::from_json(&text).err();
            assert!(full.is_some(), "{text}");
            assert_eq!(ValidatedPolicy::validate_json(&text).err(), full, "{text}");
        }
    }

    /// A large generated policy validates to the same summary, and the plugin configuration's
    /// way in (a `ValidatedPolicy` read by serde, then checked) agrees with `validate_json`.
    #[test]
    fn a_large_policy_validates_as_it_compiles() {
        let rules: Vec<_> = (0..2_000).map(|i| serde_json::json!({"id": format!("r{i}"), "effect": "deny", "agents": [format!("a{}", i % 50)], "http": {"paths": [format!("/s{i}/**")]}})).collect();
        let agents: serde_json::Map<_, _> = (0..50).map(|a| (format!("a{a}"), serde_json::json!({"grants": [{"id": format!("g{a}"), "mcp": {"tools": [format!("t{a}")]}}]}))).collect();
        let text = serde_json::json!({"version": "big", "agents": agents, "rules": rules}).to_string();
        let full = crate::Engine::from_json(&text).map(|e| e.rule_count());
        assert_eq!(full.as_ref().ok(), Some(&2_050));
        let read: Result<ValidatedPolicy, _> = serde_json::from_str(&text);
        let summary = read.map_err(|e| e.to_string()).and_then(|v| v.check().map_err(|e| e.to_string()));
        assert_eq!(summary, Ok(PolicySummary { version: "big".into(), rules: 2_050 }));
    }

    /// The mirrors read exactly as the schema types do: the same error for the same text.
    #[test]
    fn shape_errors_are_the_documents() {
        let cases = [
            ("unknown top-level field", r#"{"version":"v","nope":1}"#),
            ("missing version", r#"{}"#),
            ("not an object", r#"[]"#),
            ("$schema not a string", r#"{"$schema":1,"version":"v"}"#),
            ("agents not a map", r#"{"version":"v","agents":[]}"#),
            (
                "unknown agent field",
                r#"{"version":"v","agents":{"a":{"nope":1}}}"#,
            ),
            ("agent not an object", r#"{"version":"v","agents":{"a":1}}"#),
            (
                "agent as a sequence",
                r#"{"version":"v","agents":{"a":[1]}}"#,
            ),
            (
                "agent description not a string",
                r#"{"version":"v","agents":{"a":{"description":2}}}"#,
            ),
            (
                "grants not a list",
                r#"{"version":"v","agents":{"a":{"grants":{}}}}"#,
            ),
            (
                "unknown grant field",
                r#"{"version":"v","agents":{"a":{"grants":[{"id":"g","nope":1}]}}}"#,
            ),
            ("rules not a list", r#"{"version":"v","rules":{}}"#),
            (
                "rule missing effect",
                r#"{"version":"v","rules":[{"id":"r"}]}"#,
            ),
            (
                "duplicate field",
                r#"{"version":"v","rules":[],"rules":[]}"#,
            ),
        ];
        for (name, text) in cases {
            let want = serde_json::from_str::<PolicyDocument>(text)
                .err()
                .map(|e| e.to_string());
            let got = serde_json::from_str::<PreparedPolicy>(text)
                .err()
                .map(|e| e.to_string());
            assert!(want.is_some(), "{name}: the case must be an error");
            assert_eq!(got, want, "{name}");
        }
    }
}
