//! Compiling a policy document into an immutable, indexed [`Engine`].
//!
//! Validation happens here, once: every refusal names the JSON path and the value. What comes out
//! is a set of tables keyed so that evaluating a request costs a handful of hash probes and a trie
//! walk over the request path, however many rules the document has (see [`Tables`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtin;
use crate::detect::{Category, DataClass, Detector};
use crate::error::PolicyError;
use crate::glob;
use crate::index::{IdSet, KeyIndex, List};
use crate::jsonrpc;
use crate::schema::{
    A2aMatch, ArgumentMatch, DefaultAction, Effect, GovernedRoute, HttpMatch, IdentityConfig, InspectionConfig,
    DataAction, DataRule, Direction, JwtIdentity, KernelAction, LimitKey, McpMatch, Mode, PolicyDocument, Protocol,
    QuarantineBlock, RateLimit, RevokeAction, ToolsControl,
};
use crate::prepared::{Prepared, PreparedPolicy};
use crate::ratelimit::BucketSpec;
use crate::template::{FastMap, HostPattern, PathTemplate, PathTrie};

/// A compiled, immutable policy. Cheap to share; evaluation never allocates tables.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) version: String,
    pub(crate) identity: IdentityConfig,
    pub(crate) inspection: InspectionConfig,
    pub(crate) default_action: DefaultAction,
    pub(crate) governed: Vec<CompiledRoute>,
    pub(crate) governed_trie: PathTrie<usize>,
    /// All rules, indexed by their position (`idx`), which is also their precedence among rules
    /// of the same effect: document rules first, then agents' grants in document order.
    pub(crate) rules: Vec<CompiledRule>,
    /// Rules that apply to every agent.
    pub(crate) global: Scope,
    /// Rules scoped to one agent (its grants, and rules that name it): the agent's index in
    /// `scopes`. Scopes sit in one exact-size vector rather than in the hash table's slack (a
    /// table keeps up to half its buckets free). The names are shared with the decisions' facts.
    pub(crate) agents: FastMap<Arc<str>, u32>,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) rate_limits: Vec<CompiledLimit>,
    pub(crate) data_rules: Vec<CompiledDataRule>,
    /// Built once per policy when data rules exist (the regex tables are the costly part).
    pub(crate) detector: Option<std::sync::Arc<Detector>>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    pub id: Arc<str>,
    pub template: PathTemplate,
    pub hosts: Option<Box<[HostPattern]>>,
    pub protocol: Protocol,
    pub tools: Option<ToolsControl>,
}

/// A compiled sensitive-data rule.
#[derive(Debug, Clone)]
pub(crate) struct CompiledDataRule {
    pub id: String,
    pub classes: Vec<DataClass>,
    pub direction: Direction,
    pub routes: Option<Vec<String>>,
    pub agents: Option<Vec<String>>,
    pub min_count: u32,
    pub action: DataAction,
    pub mode: Mode,
    pub revoke: Option<RevokeAction>,
    pub kernel: Option<KernelAction>,
}

/// One rule. The clauses are boxed: a rule has one or two of them, and inline they made every
/// rule 224 bytes (64 now), which at 100,000 rules is most of the rule table.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// Shared with every decision this rule makes.
    pub id: Arc<str>,
    /// What the decision says when this rule decides alone (`denied by rule "<id>"`), formatted
    /// once here instead of on every decision.
    pub reason: Arc<str>,
    pub effect: Effect,
    pub mode: Mode,
    pub http: Option<Box<HttpClause>>,
    pub rpc: Option<Box<RpcClause>>,
    /// Rare (deny rules that ask for kernel enforcement or a revocation): one box for both.
    pub consequences: Option<Box<Consequences>>,
}

/// What an enforced deny asks of the enforcer besides the refusal.
#[derive(Debug, Clone)]
pub(crate) struct Consequences {
    pub kernel: Option<KernelAction>,
    pub revoke: Option<RevokeAction>,
}

/// A compiled rate limit.
#[derive(Debug, Clone)]
pub struct CompiledLimit {
    pub id: String,
    pub key: Vec<LimitKey>,
    pub spec: BucketSpec,
    pub agents: Option<Vec<String>>,
    pub mode: Mode,
}

/// Lists are exact-size slices (no capacity word, no slack), as in [`RpcClause`].
#[derive(Debug, Clone)]
pub(crate) struct HttpClause {
    pub methods: Option<Methods>,
    pub hosts: Option<Box<[HostPattern]>>,
    pub paths: Option<Box<[PathTemplate]>>,
}

/// The methods of an HTTP clause: the standard ones as bits of [`crate::eval::method_bit`] (the
/// usual `["GET"]` costs no allocation; it was a vector and a string), any other by name.
#[derive(Debug, Clone)]
pub(crate) struct Methods {
    standard: u16,
    other: Box<[Box<str>]>,
}

impl Methods {
    fn new(names: &[String]) -> Self {
        let standard = names.iter().fold(0, |bits, m| bits | crate::eval::method_bit(m));
        let other = names.iter().filter(|m| crate::eval::method_bit(m) == 0).map(|m| m.as_str().into()).collect();
        Self { standard, other }
    }

    /// Whether `method`, whose [`crate::eval::method_bit`] is `bit`, is one of these.
    pub(crate) fn contains(&self, method: &str, bit: u16) -> bool {
        if bit != 0 { self.standard & bit != 0 } else { self.other.iter().any(|m| **m == *method) }
    }

    /// The names, each once.
    fn names(&self) -> impl Iterator<Item = &str> {
        crate::eval::STANDARD_METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.standard & (1 << i) != 0)
            .map(|(_, m)| *m)
            .chain(self.other.iter().map(|m| &**m))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum RpcClause {
    Mcp { methods: Option<Names>, tools: Option<Names>, arguments: Box<[ArgMatcher]> },
    A2a { methods: Option<Box<[&'static str]>> },
}

/// The names of an MCP clause (tools, or methods) in one allocation, joined by spaces, which no
/// accepted name contains (tool names are `[A-Za-z0-9_.-]`, methods printable ASCII without
/// space): a rule names one tool nearly always, and a vector of strings was two heap blocks and
/// a 24-byte header for it.
#[derive(Debug, Clone)]
pub(crate) struct Names(Box<str>);

impl Names {
    fn new(list: &[String]) -> Self {
        Self(list.join(" ").into())
    }

    pub(crate) fn iter(&self) -> std::str::Split<'_, char> {
        self.0.split(' ')
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ArgMatcher {
    pub pointer: Box<str>,
    pub kind: ArgKind,
}

#[derive(Debug, Clone)]
pub(crate) enum ArgKind {
    Exact(Box<str>),
    Prefix(Box<str>),
    Glob(Box<str>),
}

/// The rules of one scope, split by effect: allow tables match exactly, deny tables match
/// case-folded (a deny on `delete_repository` also catches `Delete_Repository`, and one on
/// `/api/admin/**` catches `/API/Admin`, in case an upstream folds case; an allow never widens).
/// 64 bytes natively with both tables inline and empty (one per agent, in every wasm VM).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub allow: Tables,
    pub deny: Tables,
}

/// Rule indices keyed for lookup. Each rule sits in exactly one place per scope, chosen by its
/// most selective clause: an RPC clause (tool name, else method, else "any call"), else the HTTP
/// path templates (trie), else "any request". Lookup collects candidates from the request's keys
/// only; each candidate is then checked in full. Cost per request: one trie walk plus one hash
/// probe per RPC call, independent of how many rules exist. Memory: one entry per (rule, key);
/// a table of a few keys is a scanned vector rather than a hash table (see [`KeyIndex`]).
///
/// Paths and tools are what policies key their rules by; the other tables sit in a box of their
/// own, allocated by the first rule they index ([`OtherTables`]), so that the tables of a scope
/// cost 32 bytes natively when those are empty (they were 160 with every table inline, boxed per
/// scope and effect).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tables {
    pub http_paths: PathTrie<u32>,
    pub mcp_tools: KeyIndex<Box<str>>,
    pub other: Option<Box<OtherTables>>,
}

/// The tables of rules keyed neither by a path nor by a tool.
#[derive(Debug, Clone, Default)]
pub(crate) struct OtherTables {
    /// HTTP rules without paths, keyed by exact host (all their hosts exact), else by method.
    pub http_hosts: KeyIndex<Box<str>>,
    pub http_methods: KeyIndex<Box<str>>,
    pub http_any: List<u32>,
    pub mcp_methods: KeyIndex<Box<str>>,
    pub mcp_any: List<u32>,
    pub a2a_methods: KeyIndex<&'static str>,
    pub a2a_any: List<u32>,
}

impl Scope {
    fn shrink_to_fit(&mut self) {
        self.allow.shrink_to_fit();
        self.deny.shrink_to_fit();
    }
}

impl Tables {
    fn other_mut(&mut self) -> &mut OtherTables {
        self.other.get_or_insert_with(Box::default)
    }

    fn shrink_to_fit(&mut self) {
        self.http_paths.shrink_to_fit();
        self.mcp_tools.shrink_to_fit();
        if let Some(o) = self.other.as_deref_mut() {
            for m in [&mut o.http_hosts, &mut o.http_methods, &mut o.mcp_methods] {
                m.shrink_to_fit();
            }
            o.a2a_methods.shrink_to_fit();
            o.http_any.shrink_to_fit();
            o.mcp_any.shrink_to_fit();
            o.a2a_any.shrink_to_fit();
        }
    }
}

impl Engine {
    /// Parses, validates and compiles a policy document from JSON text. Rules are compiled as
    /// they are read (see [`PreparedPolicy`]); errors are those of [`parse_document`] then
    /// [`Engine::compile`].
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        Self::from_prepared(read_strict(text)?)
    }

    /// Validates and compiles a document already parsed into a JSON value by a strict parser
    /// (`json::parse_strict`: a `Value` cannot hold duplicate keys, so that check must have been
    /// made on the text). Saves parsing a large policy twice more; errors name the same paths.
    pub fn from_value(value: serde_json::Value) -> Result<Self, PolicyError> {
        let doc: PreparedPolicy = serde_path_to_error::deserialize(value).map_err(|e| PolicyError::Malformed {
            path: json_path(&e.path().to_string()),
            reason: e.inner().to_string(),
        })?;
        Self::from_prepared(doc)
    }

    /// Validates and compiles a parsed document.
    pub fn compile(doc: PolicyDocument) -> Result<Self, PolicyError> {
        Self::from_prepared(doc.into())
    }

    /// Validates and compiles a document whose rules were compiled as it was read (what a large
    /// policy is loaded as: its typed form is never held whole).
    pub fn from_prepared(doc: PreparedPolicy) -> Result<Self, PolicyError> {
        Compiler::default().compile(doc)
    }

    /// The document's `version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of rules (document rules and agent grants).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Where the filter reads verified JWT claims from.
    pub fn jwt_identity(&self) -> &JwtIdentity {
        &self.identity.jwt
    }

    /// Whether any agent is identified by its mTLS peer certificate (else the filter need not read
    /// the certificate at all).
    pub fn uses_peer_identity(&self) -> bool {
        !self.identity.mtls_agents.is_empty()
    }

    /// Inspection limits.
    pub fn inspection(&self) -> &InspectionConfig {
        &self.inspection
    }

    /// Ids of every rule the engine can decide with: document rules and built-ins. Bounded; the
    /// filter uses it to bound metric cardinality.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id).chain(builtin::ALL.iter().copied())
    }
}

/// Parses the document's JSON shape, naming the JSON path of the first error.
pub fn parse_document(text: &str) -> Result<PolicyDocument, PolicyError> {
    read_strict(text)
}

/// Reads `text` as a `T` (the document or its prepared form: the same shape), then checks it is
/// strict JSON: shape errors first, then duplicate keys, as the document has always been read.
pub(crate) fn read_strict<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PolicyError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let doc = serde_path_to_error::deserialize(de).map_err(|e| PolicyError::Malformed {
        path: json_path(&e.path().to_string()),
        reason: e.inner().to_string(),
    })?;
    // The document may also carry duplicate keys, which serde would silently resolve (last wins):
    // a policy is security configuration, so reject them like any other ambiguity.
    // Checked without building a tree of the document (a large policy's tree costs several times
    // its text).
    crate::json::check_strict(text.as_bytes(), 64).map_err(|e| PolicyError::Malformed { path: "$".into(), reason: e.to_string() })?;
    Ok(doc)
}

/// serde_path_to_error prints `rules[2].http`; errors say `$.rules[2].http`.
fn json_path(p: &str) -> String {
    if p == "." || p.is_empty() { "$".to_owned() } else { format!("$.{p}") }
}

#[derive(Default)]
struct Compiler {
    rules: Vec<CompiledRule>,
    /// The ids used so far, as positions in `rules`, to find an id that repeats. Compact (no
    /// copy of the ids, no path text per rule while a large policy compiles); where the first
    /// use sits is worked out from its position only for an error ([`Compiler::id_path`]).
    ids: IdSet,
    /// Agent names in document order, to write out a grant's path.
    agent_names: Vec<String>,
    /// Position in `rules` of each agent's first grant (`agent_names` order); document rules
    /// come before the first.
    grant_starts: Vec<u32>,
    global: Scope,
    agents: FastMap<Arc<str>, u32>,
    scopes: Vec<Scope>,
}

impl Compiler {
    /// Checks what needs the whole document (ids unique, agents declared) and indexes the rules,
    /// in document order: document rules, then grants by agent. The rules arrive compiled (see
    /// [`PreparedPolicy`]) and move into the tables, so a large policy is not held twice at the
    /// peak, which a wasm VM keeps.
    fn compile(mut self, doc: PreparedPolicy) -> Result<Engine, PolicyError> {
        let mut doc = doc.0;
        check_label("$.version", &doc.version, 128)?;
        validate_identity(&doc.identity, &doc.agents)?;
        validate_inspection(&doc.inspection)?;

        let mut governed = Vec::new();
        let mut governed_trie = PathTrie::default();
        let mut route_ids = BTreeMap::new();
        for (i, r) in doc.governed.iter().enumerate() {
            let path = format!("$.governed[{i}]");
            let route = compile_route(&path, r)?;
            if let Some(first) = route_ids.insert(route.id.to_string(), path.clone()) {
                return Err(PolicyError::invalid(format!("{path}.id"), &route.id, format!("duplicate governed route id (first at {first})")));
            }
            governed_trie.insert(&route.template, false, governed.len());
            governed.push(route);
        }
        governed_trie.shrink_to_fit();

        // One scope per agent, sized once: a vector that doubles holds its old and new buffers
        // at once, and keeps up to half its capacity as slack (at 20,000 agents, natively 9 MB of empty
        // scopes), which a wasm VM keeps for good.
        self.agents.reserve(doc.agents.len());
        self.agent_names.reserve_exact(doc.agents.len());
        self.scopes.reserve_exact(doc.agents.len());
        for agent in doc.agents.keys() {
            check_label(&format!("$.agents[{agent:?}]"), agent, 256)?;
            let idx = u32::try_from(self.scopes.len()).map_err(|_| PolicyError::invalid("$.agents", "agents", "too many agents"))?;
            self.agents.insert(Arc::from(agent.as_str()), idx);
            self.agent_names.push(agent.clone());
            self.scopes.push(Scope::default());
        }

        // The document rules' vector becomes the rule list (see [`Prepared`]), grown once to
        // take the grants: a vector that doubles holds its old and new buffers at once.
        let total = doc.agents.values().fold(doc.rules.len(), |n, a| n.saturating_add(a.grants.len()));
        let Prepared { compiled, scoped, failed } = std::mem::take(&mut doc.rules);
        let reached = compiled.len();
        self.rules = compiled;
        self.rules.reserve_exact(total.saturating_sub(reached));
        self.ids = IdSet::with_capacity(total);

        let mut scoped = scoped.into_iter().peekable();
        for i in 0..reached {
            let path = format!("$.rules[{i}]");
            let idx = self.admit(&path, i)?;
            match scoped.next_if(|(pos, _)| *pos == idx) {
                None => index_rule(&mut self.global, &self.rules, idx),
                Some((_, list)) => {
                    if list.is_empty() {
                        return Err(PolicyError::invalid(format!("{path}.agents"), &list, "an empty list applies to nobody; omit it to apply to every agent"));
                    }
                    for (j, a) in list.iter().enumerate() {
                        let scope = self.agents.get(a.as_str()).and_then(|s| self.scopes.get_mut(*s as usize)).ok_or_else(|| {
                            PolicyError::invalid(format!("{path}.agents[{j}]"), a, "not an agent declared under $.agents")
                        })?;
                        index_rule(scope, &self.rules, idx);
                    }
                }
            }
        }
        if let Some(failed) = failed.as_deref() {
            return Err(Prepared::error_at(failed, &format!("$.rules[{reached}]")));
        }

        // The grants are taken out (and dropped as they are indexed); the agent names stay for
        // the checks below.
        for (a, (agent, policy)) in doc.agents.iter_mut().enumerate() {
            let grants = std::mem::take(&mut policy.grants);
            let reached = grants.compiled.len();
            self.grant_starts.push(index_u32(self.rules.len())?);
            for (i, compiled) in grants.compiled.into_iter().enumerate() {
                let path = format!("$.agents[{agent:?}].grants[{i}]");
                let idx = self.push(&path, compiled)?;
                if let Some(scope) = self.scopes.get_mut(a) {
                    index_rule(scope, &self.rules, idx);
                }
            }
            if let Some(failed) = grants.failed.as_deref() {
                return Err(Prepared::error_at(failed, &format!("$.agents[{agent:?}].grants[{reached}]")));
            }
        }
        // Growth slack is a third of a large policy's tables: give it back once they are built.
        self.rules.shrink_to_fit();
        self.global.shrink_to_fit();
        self.scopes.iter_mut().for_each(Scope::shrink_to_fit);

        let mut rate_limits = Vec::new();
        for (i, l) in doc.rate_limits.iter().enumerate() {
            let path = format!("$.rate_limits[{i}]");
            if rate_limits.iter().any(|c: &CompiledLimit| c.id == l.id) || self.id_used(&l.id) {
                return Err(PolicyError::invalid(format!("{path}.id"), &l.id, "ids are unique across rules and limits"));
            }
            rate_limits.push(compile_limit(&path, l, &doc.agents)?);
        }

        let mut data_rules = Vec::new();
        for (i, r) in doc.data_rules.iter().enumerate() {
            let path = format!("$.data_rules[{i}]");
            let taken = self.id_used(&r.id)
                || rate_limits.iter().any(|l: &CompiledLimit| l.id == r.id)
                || data_rules.iter().any(|d: &CompiledDataRule| d.id == r.id);
            if taken {
                return Err(PolicyError::invalid(format!("{path}.id"), &r.id, "ids are unique across rules, limits and data rules"));
            }
            data_rules.push(compile_data_rule(&path, r, &doc.agents, &route_ids)?);
        }
        let detector = if data_rules.is_empty() {
            None
        } else {
            Some(std::sync::Arc::new(Detector::new().map_err(|e| PolicyError::invalid("$.data_rules", "detector", e.to_string()))?))
        };

        Ok(Engine {
            data_rules,
            detector,
            rate_limits,
            version: doc.version,
            identity: doc.identity,
            inspection: doc.inspection,
            default_action: doc.default_action,
            governed,
            governed_trie,
            rules: self.rules,
            global: self.global,
            agents: self.agents,
            scopes: self.scopes,
        })
    }

    /// Appends a grant to the rule list and admits it ([`Compiler::admit`]).
    fn push(&mut self, path: &str, rule: CompiledRule) -> Result<u32, PolicyError> {
        self.rules.push(rule);
        self.admit(path, self.rules.len().saturating_sub(1))
    }

    /// Checks the id of the rule at `pos` (not reserved, not used by a rule before it) and notes
    /// it; returns `pos`.
    fn admit(&mut self, path: &str, pos: usize) -> Result<u32, PolicyError> {
        let pos = index_u32(pos)?;
        let rules = &self.rules;
        let Some(rule) = rules.get(pos as usize) else { return Err(PolicyError::invalid(path, pos, "no such rule")) };
        if builtin::ALL.contains(&&*rule.id) {
            return Err(PolicyError::invalid(format!("{path}.id"), &rule.id, "reserved for a built-in rule"));
        }
        let id_of = |p: u32| rules.get(p as usize).map(|r| &*r.id);
        if let Some(first) = self.ids.find(&rule.id, id_of) {
            return Err(PolicyError::DuplicateRuleId { path: format!("{path}.id"), id: rule.id.to_string(), first: self.id_path(first) });
        }
        self.ids.insert(&rule.id, pos, id_of);
        Ok(pos)
    }

    fn id_used(&self, id: &str) -> bool {
        self.ids.find(id, |p| self.rules.get(p as usize).map(|r| &*r.id)).is_some()
    }

    /// The JSON path of the id of the rule at `pos` in `rules`.
    fn id_path(&self, pos: u32) -> String {
        // The last agent whose grants start at or before `pos` (agents without grants share
        // their start with the next agent, which comes later in the list).
        let after = self.grant_starts.partition_point(|&s| s <= pos);
        match after.checked_sub(1) {
            None => format!("$.rules[{pos}].id"),
            Some(a) => {
                let i = pos.saturating_sub(self.grant_starts.get(a).copied().unwrap_or(0));
                format!("$.agents[{:?}].grants[{i}].id", self.agent_names.get(a).map_or("", String::as_str))
            }
        }
    }
}

/// A position in the rule list, as the compiler's tables hold it (`u32`: a policy of 4 billion
/// rules is refused long before).
fn index_u32(i: usize) -> Result<u32, PolicyError> {
    u32::try_from(i).map_err(|_| PolicyError::invalid("$", i, "too many rules"))
}

fn index_rule(scope: &mut Scope, rules: &[CompiledRule], idx: u32) {
    let Some(rule) = rules.get(idx as usize) else { return };
    let fold = rule.effect == Effect::Deny;
    let t = if fold { &mut scope.deny } else { &mut scope.allow };
    let key = |s: &str| -> Box<str> { if fold { s.to_ascii_lowercase().into() } else { s.into() } };
    match (rule.rpc.as_deref(), rule.http.as_deref()) {
        (Some(RpcClause::Mcp { tools: Some(tools), .. }), _) => {
            for tool in tools.iter() {
                t.mcp_tools.push(key(tool), idx);
            }
        }
        (Some(RpcClause::Mcp { methods: Some(methods), .. }), _) => {
            for m in methods.iter() {
                t.other_mut().mcp_methods.push(key(m), idx);
            }
        }
        (Some(RpcClause::Mcp { .. }), _) => t.other_mut().mcp_any.push(idx),
        (Some(RpcClause::A2a { methods: Some(methods) }), _) => {
            for m in methods.iter() {
                t.other_mut().a2a_methods.push(*m, idx);
            }
        }
        (Some(RpcClause::A2a { methods: None }), _) => t.other_mut().a2a_any.push(idx),
        (None, Some(HttpClause { paths: Some(paths), .. })) => {
            for p in paths.iter() {
                t.http_paths.insert(p, fold, idx);
            }
        }
        (None, Some(HttpClause { hosts: Some(hosts), .. })) if hosts.iter().all(|h| matches!(h, HostPattern::Exact(_))) => {
            for h in hosts {
                if let HostPattern::Exact(h) = h {
                    t.other_mut().http_hosts.push(h.as_str().into(), idx);
                }
            }
        }
        (None, Some(HttpClause { methods: Some(methods), .. })) => {
            for m in methods.names() {
                t.other_mut().http_methods.push(m.into(), idx);
            }
        }
        (None, _) => t.other_mut().http_any.push(idx),
    }
}

fn check_label(path: &str, value: &str, max: usize) -> Result<(), PolicyError> {
    if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(PolicyError::invalid(path, value, format!("must be 1..={max} printable characters without spaces")));
    }
    Ok(())
}

fn validate_identity<A>(id: &IdentityConfig, agents: &BTreeMap<String, A>) -> Result<(), PolicyError> {
    let j = &id.jwt;
    for (field, v) in [
        ("metadata_namespace", &j.metadata_namespace),
        ("payload_key", &j.payload_key),
        ("agent_claim", &j.agent_claim),
        ("user_claim", &j.user_claim),
        ("session_claim", &j.session_claim),
    ] {
        check_label(&format!("$.identity.jwt.{field}"), v, 256)?;
    }
    for (principal, agent) in &id.mtls_agents {
        let path = format!("$.identity.mtls_agents[{principal:?}]");
        check_label(&path, principal, 2048)?;
        if !agents.contains_key(agent) {
            return Err(PolicyError::invalid(path, agent, "not an agent declared under $.agents"));
        }
    }
    Ok(())
}

fn validate_inspection(i: &InspectionConfig) -> Result<(), PolicyError> {
    let range = |field: &str, v: u32, lo: u32, hi: u32| {
        if v < lo || v > hi {
            Err(PolicyError::invalid(format!("$.inspection.{field}"), v, format!("must be within {lo}..={hi}")))
        } else {
            Ok(())
        }
    };
    range("max_body_bytes", i.max_body_bytes, 1, 16 << 20)?;
    range("max_json_depth", i.max_json_depth, 1, 128)?;
    range("max_batch", i.max_batch, 1, 1024)
}

fn compile_route(path: &str, r: &GovernedRoute) -> Result<CompiledRoute, PolicyError> {
    check_label(&format!("{path}.id"), &r.id, 128)?;
    let template = PathTemplate::parse(&r.path).map_err(|e| PolicyError::invalid(format!("{path}.path"), &r.path, e.0))?;
    let hosts = compile_hosts(&format!("{path}.hosts"), r.hosts.as_ref())?;
    if r.tools.is_some() && r.protocol != Protocol::Mcp {
        return Err(PolicyError::invalid(format!("{path}.tools"), &r.id, "tool controls apply to `mcp` routes"));
    }
    if let Some(t) = &r.tools {
        for (name, pin) in &t.pins {
            let ok = pin.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok || !jsonrpc::is_valid_tool_name(name) {
                return Err(PolicyError::invalid(format!("{path}.tools.pins[{name:?}]"), pin, "a tool name and `sha256:<64 hex>`"));
            }
        }
        if t.on_change == DataAction::Redact || t.on_change == DataAction::Allow {
            return Err(PolicyError::invalid(format!("{path}.tools.on_change"), t.on_change, "`deny` or `audit`"));
        }
    }
    Ok(CompiledRoute { id: Arc::from(r.id.as_str()), template, hosts, protocol: r.protocol, tools: r.tools.clone() })
}

fn compile_hosts(path: &str, hosts: Option<&Vec<String>>) -> Result<Option<Box<[HostPattern]>>, PolicyError> {
    let Some(hosts) = hosts else { return Ok(None) };
    non_empty(path, hosts)?;
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| HostPattern::parse(h).map_err(|e| PolicyError::invalid(format!("{path}[{i}]"), h, e.0)))
        .collect::<Result<Box<[_]>, _>>()
        .map(Some)
}

fn non_empty<T: std::fmt::Debug>(path: &str, list: &[T]) -> Result<(), PolicyError> {
    if list.is_empty() {
        return Err(PolicyError::invalid(path, list, "an empty list matches nothing; omit the field to match anything"));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn compile_rule(
    path: &str,
    id: &str,
    effect: Effect,
    mode: Mode,
    http: Option<&HttpMatch>,
    mcp: Option<&McpMatch>,
    a2a: Option<&A2aMatch>,
) -> Result<CompiledRule, PolicyError> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(PolicyError::invalid(format!("{path}.id"), id, "rule ids are 1..=128 of [A-Za-z0-9-_.:]"));
    }
    if http.is_none() && mcp.is_none() && a2a.is_none() {
        return Err(PolicyError::invalid(path, id, "a rule needs at least one of http, mcp, a2a"));
    }
    if mcp.is_some() && a2a.is_some() {
        return Err(PolicyError::invalid(path, id, "a rule matches MCP or A2A calls, not both; write two rules"));
    }
    let http = http.map(|h| compile_http(&format!("{path}.http"), h).map(Box::new)).transpose()?;
    let rpc = match (mcp, a2a) {
        (Some(m), _) => Some(compile_mcp(&format!("{path}.mcp"), m)?),
        (None, Some(a)) => Some(compile_a2a(&format!("{path}.a2a"), a)?),
        (None, None) => None,
    };
    let reason = Arc::from(crate::eval::rule_reason(effect, id));
    Ok(CompiledRule { id: Arc::from(id), reason, effect, mode, http, rpc: rpc.map(Box::new), consequences: None })
}

fn compile_data_rule<A>(
    path: &str,
    r: &DataRule,
    agents: &BTreeMap<String, A>,
    routes: &BTreeMap<String, String>,
) -> Result<CompiledDataRule, PolicyError> {
    if r.id.is_empty() || r.id.len() > 128 || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(PolicyError::invalid(format!("{path}.id"), &r.id, "rule ids are 1..=128 of [A-Za-z0-9-_.:]"));
    }
    if builtin::ALL.contains(&r.id.as_str()) {
        return Err(PolicyError::invalid(format!("{path}.id"), &r.id, "reserved for a built-in rule"));
    }
    non_empty(&format!("{path}.classes"), &r.classes)?;
    let mut classes = Vec::new();
    for (i, c) in r.classes.iter().enumerate() {
        let family = match c.as_str() {
            "*" => Some(None),
            "secret.*" => Some(Some(Category::Secret)),
            "pii.*" => Some(Some(Category::Pii)),
            _ => None,
        };
        match (family, DataClass::from_name(c)) {
            (Some(cat), _) => classes.extend(DataClass::ALL.into_iter().filter(|d| cat.is_none_or(|cat| d.category() == cat))),
            (None, Some(d)) => classes.push(d),
            (None, None) => {
                let known: Vec<&str> = DataClass::ALL.iter().map(|d| d.as_str()).collect();
                return Err(PolicyError::invalid(format!("{path}.classes[{i}]"), c, format!("not a data class; known: {}, or secret.*, pii.*, *", known.join(", "))));
            }
        }
    }
    classes.sort_unstable();
    classes.dedup();
    if let Some(list) = &r.routes {
        non_empty(&format!("{path}.routes"), list)?;
        for (j, id) in list.iter().enumerate() {
            if !routes.contains_key(id) {
                return Err(PolicyError::invalid(format!("{path}.routes[{j}]"), id, "not a governed route id"));
            }
        }
    }
    if let Some(list) = &r.agents {
        non_empty(&format!("{path}.agents"), list)?;
        for (j, a) in list.iter().enumerate() {
            if !agents.contains_key(a) {
                return Err(PolicyError::invalid(format!("{path}.agents[{j}]"), a, "not an agent declared under $.agents"));
            }
        }
    }
    if !(1..=100_000).contains(&r.min_count) {
        return Err(PolicyError::invalid(format!("{path}.min_count"), r.min_count, "must be within 1..=100000"));
    }
    let effect = if r.action == DataAction::Deny { Effect::Deny } else { Effect::Allow };
    if let Some(k) = &r.kernel {
        validate_kernel(&format!("{path}.kernel"), effect, k)?;
    }
    if let Some(v) = &r.revoke {
        validate_revoke(&format!("{path}.revoke"), effect, v)?;
    }
    Ok(CompiledDataRule {
        id: r.id.clone(),
        classes,
        direction: r.direction,
        routes: r.routes.clone(),
        agents: r.agents.clone(),
        min_count: r.min_count,
        action: r.action,
        mode: r.mode,
        revoke: r.revoke.clone(),
        kernel: r.kernel.clone(),
    })
}

pub(crate) fn validate_revoke(path: &str, effect: Effect, r: &RevokeAction) -> Result<(), PolicyError> {
    if effect != Effect::Deny {
        return Err(PolicyError::invalid(path, "revoke", "revocation follows a deny; this rule allows"));
    }
    if let Some(t) = r.ttl_secs
        && !(1..=31_536_000).contains(&t) {
            return Err(PolicyError::invalid(format!("{path}.ttl_secs"), t, "must be within 1..=31536000"));
        }
    Ok(())
}

fn compile_limit<A>(path: &str, l: &RateLimit, agents: &BTreeMap<String, A>) -> Result<CompiledLimit, PolicyError> {
    if l.id.is_empty() || l.id.len() > 128 || !l.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(PolicyError::invalid(format!("{path}.id"), &l.id, "limit ids are 1..=128 of [A-Za-z0-9-_.:]"));
    }
    if builtin::ALL.contains(&l.id.as_str()) {
        return Err(PolicyError::invalid(format!("{path}.id"), &l.id, "reserved for a built-in rule"));
    }
    non_empty(&format!("{path}.key"), &l.key)?;
    let mut key = l.key.clone();
    key.sort_unstable();
    if key.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(PolicyError::invalid(format!("{path}.key"), &l.key, "a component appears twice"));
    }
    if !(1..=1_000_000).contains(&l.requests) {
        return Err(PolicyError::invalid(format!("{path}.requests"), l.requests, "must be within 1..=1000000"));
    }
    if !(1..=86_400).contains(&l.per_seconds) {
        return Err(PolicyError::invalid(format!("{path}.per_seconds"), l.per_seconds, "must be within 1..=86400"));
    }
    if let Some(list) = &l.agents {
        non_empty(&format!("{path}.agents"), list)?;
        for (j, a) in list.iter().enumerate() {
            if !agents.contains_key(a) {
                return Err(PolicyError::invalid(format!("{path}.agents[{j}]"), a, "not an agent declared under $.agents"));
            }
        }
    }
    Ok(CompiledLimit {
        id: l.id.clone(),
        key,
        spec: BucketSpec { capacity: l.requests, refill_ms: u64::from(l.per_seconds) * 1000 },
        agents: l.agents.clone(),
        mode: l.mode,
    })
}

pub(crate) fn validate_kernel(path: &str, effect: Effect, k: &KernelAction) -> Result<(), PolicyError> {
    if effect != Effect::Deny {
        return Err(PolicyError::invalid(path, "kernel", "kernel enforcement follows a deny; this rule allows"));
    }
    if k.terminate.is_none() && k.quarantine.is_none() {
        return Err(PolicyError::invalid(path, "{}", "name `terminate`, `quarantine` or both"));
    }
    if let Some(q) = &k.quarantine {
        if !(1..=86_400).contains(&q.duration_secs) {
            return Err(PolicyError::invalid(format!("{path}.quarantine.duration_secs"), q.duration_secs, "must be within 1..=86400"));
        }
        if q.block == QuarantineBlock::Destination && !q.allow.is_empty() {
            return Err(PolicyError::invalid(format!("{path}.quarantine.allow"), &q.allow, "an allow-list only makes sense with `block: all`"));
        }
        for (i, a) in q.allow.iter().enumerate() {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(PolicyError::invalid(format!("{path}.quarantine.allow[{i}]"), a, "an `ip:port` address"));
            }
        }
    }
    Ok(())
}

fn compile_http(path: &str, h: &HttpMatch) -> Result<HttpClause, PolicyError> {
    let methods = match &h.methods {
        None => None,
        Some(list) => {
            non_empty(&format!("{path}.methods"), list)?;
            for (i, m) in list.iter().enumerate() {
                if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(PolicyError::invalid(format!("{path}.methods[{i}]"), m, "an HTTP method in upper case (GET, POST, ...)"));
                }
            }
            Some(Methods::new(list))
        }
    };
    let hosts = compile_hosts(&format!("{path}.hosts"), h.hosts.as_ref())?;
    let paths = match &h.paths {
        None => None,
        Some(list) => {
            non_empty(&format!("{path}.paths"), list)?;
            Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| PathTemplate::parse(p).map_err(|e| PolicyError::invalid(format!("{path}.paths[{i}]"), p, e.0)))
                    .collect::<Result<Box<[_]>, _>>()?,
            )
        }
    };
    Ok(HttpClause { methods, hosts, paths })
}

fn compile_mcp(path: &str, m: &McpMatch) -> Result<RpcClause, PolicyError> {
    let methods = match &m.methods {
        None => None,
        Some(list) => {
            non_empty(&format!("{path}.methods"), list)?;
            for (i, name) in list.iter().enumerate() {
                if name.is_empty() || name.len() > 256 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(PolicyError::invalid(format!("{path}.methods[{i}]"), name, "a JSON-RPC method name (printable ASCII)"));
                }
            }
            Some(list)
        }
    };
    let tools = match &m.tools {
        None => None,
        Some(list) => {
            non_empty(&format!("{path}.tools"), list)?;
            for (i, t) in list.iter().enumerate() {
                if !jsonrpc::is_valid_tool_name(t) {
                    return Err(PolicyError::invalid(format!("{path}.tools[{i}]"), t, "MCP tool names are 1..=128 of [A-Za-z0-9_.-]"));
                }
            }
            if let Some(ms) = &methods
                && !ms.iter().any(|x| x == "tools/call") {
                    return Err(PolicyError::invalid(format!("{path}.methods"), ms, "tools are named only by tools/call; include it or drop methods"));
                }
            Some(Names::new(list))
        }
    };
    let arguments = match &m.arguments {
        None => Box::default(),
        Some(list) => {
            non_empty(&format!("{path}.arguments"), list)?;
            if tools.is_none() {
                return Err(PolicyError::invalid(format!("{path}.arguments"), list.len(), "argument conditions need `tools`"));
            }
            list.iter()
                .enumerate()
                .map(|(i, a)| compile_argument(&format!("{path}.arguments[{i}]"), a))
                .collect::<Result<Box<[_]>, _>>()?
        }
    };
    Ok(RpcClause::Mcp { methods: methods.map(|m| Names::new(m)), tools, arguments })
}

fn compile_argument(path: &str, a: &ArgumentMatch) -> Result<ArgMatcher, PolicyError> {
    if !a.pointer.starts_with('/') || a.pointer.len() > 512 {
        return Err(PolicyError::invalid(format!("{path}.pointer"), &a.pointer, "a JSON pointer (RFC 6901) starting with '/'"));
    }
    let kind = match (&a.exact, &a.prefix, &a.glob) {
        (Some(v), None, None) => ArgKind::Exact(v.as_str().into()),
        (None, Some(v), None) => ArgKind::Prefix(v.as_str().into()),
        (None, None, Some(v)) => {
            glob::validate_glob(v).map_err(|e| PolicyError::invalid(format!("{path}.glob"), v, e))?;
            ArgKind::Glob(v.as_str().into())
        }
        _ => return Err(PolicyError::invalid(path, &a.pointer, "exactly one of exact, prefix, glob")),
    };
    Ok(ArgMatcher { pointer: a.pointer.as_str().into(), kind })
}

fn compile_a2a(path: &str, a: &A2aMatch) -> Result<RpcClause, PolicyError> {
    let methods = match &a.methods {
        None => None,
        Some(list) => {
            non_empty(&format!("{path}.methods"), list)?;
            Some(
                list.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        jsonrpc::canonical_a2a_method(m)
                            .ok_or_else(|| PolicyError::invalid(format!("{path}.methods[{i}]"), m, "not an A2A method this engine knows"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    Ok(RpcClause::A2a { methods: methods.map(Vec::into_boxed_slice) })
}
