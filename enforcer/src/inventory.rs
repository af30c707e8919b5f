//! Discovery: what agents really do, folded from the decision-event log.
//!
//! Every decision, allowed or not, is one event, so the log is a complete record of traffic. An
//! [`Inventory`] is a fold over it: agents (identity, first and last seen, users, counts, the
//! rules that decided and the calls made), REST APIs per authority as method + route template,
//! MCP servers with their JSON-RPC methods and tools, LLM providers, A2A agents, each with who
//! calls it, how often, the data classes seen and the decisions taken; plus what the evidence
//! report needs (decisions over time, each rule's firings, inspection coverage).
//!
//! Route templates are inferred from concrete paths ([`infer_template`]): segments that look
//! like ids (numbers, UUIDs, hex hashes, long opaque tokens) become `{id}`, so `/api/customers/42`
//! and `/api/customers/7` are one API. When the policy declared a template that matched the path
//! (the event's `request.route`), its parameter names are kept instead.
//!
//! The fold is incremental and persisted: `<data-dir>/inventory.json` holds the inventory through
//! `through_seq`; [`refresh`] reads the events after it, folds them in and saves. Nothing runs on
//! the event-ingest path. Memory is bounded: every map has a cap ([`Limits`]); what does not fit
//! is counted in `overflow` rather than kept, and the timeline doubles its bucket width instead
//! of growing.
//!
//! What the events cannot tell yet (user agents, SDK fingerprints, LLM models) is left empty
//! here and named in the README: the filter must report it first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use interlock_policies::DecisionEvent;
use interlock_policies::decision::Action;
use interlock_policies::schema::{Mode, Protocol};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::{EVENTS_FILE, StoredEvent};

/// File name of the persisted inventory inside the data directory.
pub const INVENTORY_FILE: &str = "inventory.json";
/// Version of the persisted form; another version is rebuilt from the event log.
pub const FORMAT: u32 = 1;
/// The agent key of calls without a verified agent identity.
pub const UNIDENTIFIED: &str = "(unidentified)";
/// Refusals that mean the body could not be inspected (the coverage figure's "uninspectable").
pub const UNINSPECTABLE_RULES: &[&str] = &[
    interlock_policies::builtin::BODY_TOO_LARGE,
    interlock_policies::builtin::UNSUPPORTED_ENCODING,
    interlock_policies::builtin::UNSUPPORTED_CONTENT_TYPE,
    interlock_policies::builtin::MALFORMED_BODY,
];

/// Caps on every map the fold grows, so a hostile or buggy caller cannot grow the enforcer's
/// memory without bound (at the defaults the inventory stays within a few MiB).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub agents: usize,
    pub apis: usize,
    pub servers: usize,
    pub tools_per_server: usize,
    pub calls_per_agent: usize,
    pub names_per_entry: usize,
    pub rules: usize,
    pub buckets: usize,
    pub examples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            agents: 1_000,
            apis: 5_000,
            servers: 256,
            tools_per_server: 1_000,
            calls_per_agent: 1_000,
            names_per_entry: 64,
            rules: 2_000,
            buckets: 240,
            examples: 3,
        }
    }
}

/// How one decision turned out, as the inventory counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Answered locally (not forwarded).
    pub blocked: bool,
    /// A shadow rule would have denied it (it was let through).
    pub shadow: bool,
}

impl Outcome {
    pub fn of(e: &DecisionEvent) -> Self {
        let blocked = e.status != 0 || (e.action == Action::Deny && e.mode == Mode::Enforce);
        Self { blocked, shadow: !blocked && e.mode == Mode::Shadow && e.action == Action::Deny }
    }
}

/// Calls, and how they turned out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub calls: u64,
    /// Forwarded upstream (shadow denials included: they were let through).
    pub allowed: u64,
    /// Refused by the proxy.
    pub denied: u64,
    /// Let through, but a shadow rule would have denied them.
    pub shadow: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        self.calls = self.calls.saturating_add(1);
        if o.blocked {
            self.denied = self.denied.saturating_add(1);
        } else {
            self.allowed = self.allowed.saturating_add(1);
        }
        if o.shadow {
            self.shadow = self.shadow.saturating_add(1);
        }
    }
}

/// Usage of one thing (an API, a tool, an LLM route, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(flatten)]
    pub counts: Counts,
    pub first_unix_ms: u64,
    pub last_unix_ms: u64,
    /// Agent -> calls.
    pub agents: BTreeMap<String, u64>,
    /// Sensitive-data class -> occurrences seen.
    pub data_classes: BTreeMap<String, u64>,
    /// Deciding rule -> decisions.
    pub decisions: BTreeMap<String, u64>,
}

impl Usage {
    fn add(&mut self, e: &DecisionEvent, o: Outcome, agent: &str, limits: &Limits, overflow: &mut Overflow) {
        if self.counts.calls == 0 || e.time_unix_ms < self.first_unix_ms {
            self.first_unix_ms = e.time_unix_ms;
        }
        self.last_unix_ms = self.last_unix_ms.max(e.time_unix_ms);
        self.counts.add(o);
        bump(&mut self.agents, agent, 1, limits.names_per_entry, overflow, "agents per entry");
        for dc in &e.data_classes {
            bump(&mut self.data_classes, &dc.class, u64::from(dc.count), limits.names_per_entry, overflow, "data classes");
        }
        bump(&mut self.decisions, &e.rule, 1, limits.names_per_entry, overflow, "rules per entry");
    }
}

/// What was dropped because a cap was reached, by what.
pub type Overflow = BTreeMap<String, u64>;

fn count_overflow(overflow: &mut Overflow, what: &str) {
    let n = overflow.entry(what.to_owned()).or_insert(0);
    *n = n.saturating_add(1);
}

/// Adds `n` to `map[key]`, unless the key is new and the map is full.
fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64, cap: usize, overflow: &mut Overflow, what: &str) {
    if let Some(v) = map.get_mut(key) {
        *v = v.saturating_add(n);
    } else if map.len() < cap {
        map.insert(key.to_owned(), n);
    } else {
        count_overflow(overflow, what);
    }
}

/// Gets `map[key]`, inserting `make()` when absent and the map has room.
fn slot<'a, V>(map: &'a mut BTreeMap<String, V>, key: &str, cap: usize, overflow: &mut Overflow, what: &str, make: impl FnOnce() -> V) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        if map.len() >= cap {
            count_overflow(overflow, what);
            return None;
        }
        map.insert(key.to_owned(), make());
    }
    map.get_mut(key)
}

/// What kind of call an agent made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// A REST call (method + route template).
    Http,
    /// An MCP JSON-RPC call (method, and the tool for `tools/call`).
    Mcp,
    /// An A2A JSON-RPC call.
    A2a,
    /// A call to an LLM provider (OpenAI or Anthropic form).
    Llm,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Mcp => "mcp",
            Self::A2a => "a2a",
            Self::Llm => "llm",
        }
    }
}

/// One distinct call an agent made, with how it turned out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedCall {
    pub kind: CallKind,
    pub authority: String,
    /// HTTP method.
    pub method: String,
    /// Route template (inferred, or the policy's), e.g. `/api/customers/{id}` or `/mcp`.
    pub template: String,
    /// JSON-RPC method (MCP, A2A).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_method: Option<String>,
    /// MCP tool of a `tools/call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub first_unix_ms: u64,
    pub last_unix_ms: u64,
    /// Deciding rule -> decisions.
    pub rules: BTreeMap<String, u64>,
    /// The allow rule that let it through (for a shadow decision, `allowed_by`) -> decisions.
    pub granted_by: BTreeMap<String, u64>,
    /// A few decision ids, to look the calls up (`interlock audit show`, `GET /v1/events`).
    pub examples: Vec<String>,
}

impl ObservedCall {
    /// A stable key: kind, authority, method, template, and the JSON-RPC method and tool.
    pub fn key(&self) -> String {
        call_key(self.kind, &self.authority, &self.method, &self.template, self.rpc_method.as_deref(), self.tool.as_deref())
    }

    /// For people: `GET 127.0.0.1/api/customers/{id}`, `mcp tools/call export_customers (127.0.0.1/mcp)`.
    pub fn label(&self) -> String {
        match (self.kind, &self.rpc_method, &self.tool) {
            (CallKind::Mcp | CallKind::A2a, Some(m), Some(t)) => format!("{} {m} {t} ({}{})", self.kind.as_str(), self.authority, self.template),
            (CallKind::Mcp | CallKind::A2a, Some(m), None) => format!("{} {m} ({}{})", self.kind.as_str(), self.authority, self.template),
            _ => format!("{} {}{}", self.method, self.authority, self.template),
        }
    }
}

fn call_key(kind: CallKind, authority: &str, method: &str, template: &str, rpc: Option<&str>, tool: Option<&str>) -> String {
    format!("{} {authority} {method} {template} {} {}", kind.as_str(), rpc.unwrap_or("-"), tool.unwrap_or("-"))
}

/// An agent, as seen in traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    pub agent: String,
    pub first_unix_ms: u64,
    pub last_unix_ms: u64,
    #[serde(flatten)]
    pub counts: Counts,
    /// End users it acted for -> calls.
    pub users: BTreeMap<String, u64>,
    /// Distinct sessions seen (up to the cap).
    pub sessions: BTreeSet<String>,
    /// Deciding rule -> decisions.
    pub rules: BTreeMap<String, u64>,
    /// Policy versions that decided its calls -> decisions.
    pub policy_versions: BTreeMap<String, u64>,
    /// The calls it made, by [`ObservedCall::key`].
    pub observed: BTreeMap<String, ObservedCall>,
    /// User-Agent values. Always empty until the filter reports the header (see README).
    pub user_agents: BTreeMap<String, u64>,
}

/// One REST API operation: authority, method, route template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiEntry {
    pub authority: String,
    pub method: String,
    pub template: String,
    /// True when the template was inferred from paths rather than declared by a policy rule.
    pub inferred: bool,
    /// A few concrete paths seen.
    pub examples: Vec<String>,
    #[serde(flatten)]
    pub usage: Usage,
}

/// An MCP server: an authority and its governed route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerEntry {
    pub authority: String,
    pub route: String,
    /// Id of the policy's governed route.
    pub governed: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// JSON-RPC method -> usage (`initialize`, `tools/list`, `tools/call`, ...).
    pub methods: BTreeMap<String, Usage>,
    /// Tool (from `tools/call`) -> usage.
    pub tools: BTreeMap<String, Usage>,
}

/// An LLM provider endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmProviderEntry {
    pub authority: String,
    pub route: String,
    /// `openai` or `anthropic`.
    pub protocol: String,
    pub governed: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// Model -> calls. Always empty until the filter reports the model (see README).
    pub models: BTreeMap<String, u64>,
}

/// An A2A agent endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct A2aAgentEntry {
    pub authority: String,
    pub route: String,
    pub governed: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// A2A method -> usage.
    pub methods: BTreeMap<String, Usage>,
}

/// How often one rule decided, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    /// Decisions that let the request through (allow, and redact or audit, which forward too).
    pub enforce_allow: u64,
    /// Decisions in enforce mode that refused.
    pub enforce_deny: u64,
    /// Times the rule, in shadow mode, would have denied (the request went through).
    pub shadow_would_deny: u64,
    pub first_unix_ms: u64,
    pub last_unix_ms: u64,
    /// Agent -> decisions.
    pub agents: BTreeMap<String, u64>,
}

/// Decisions in one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub allowed: u64,
    pub denied: u64,
    pub shadow: u64,
}

impl Bucket {
    fn add(&mut self, o: Outcome) {
        if o.blocked {
            self.denied = self.denied.saturating_add(1);
        } else {
            self.allowed = self.allowed.saturating_add(1);
        }
        if o.shadow {
            self.shadow = self.shadow.saturating_add(1);
        }
    }

    fn merge(&mut self, other: Bucket) {
        self.allowed = self.allowed.saturating_add(other.allowed);
        self.denied = self.denied.saturating_add(other.denied);
        self.shadow = self.shadow.saturating_add(other.shadow);
    }

    pub fn total(&self) -> u64 {
        self.allowed.saturating_add(self.denied)
    }
}

/// Decisions over time. Buckets start one second wide; when there are more than the cap, the
/// width doubles and neighbours merge, so the series stays bounded whatever the time span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    /// Bucket start (ms since the epoch, a multiple of `bucket_ms`) -> decisions.
    pub buckets: BTreeMap<u64, Bucket>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self { bucket_ms: 1_000, buckets: BTreeMap::new() }
    }
}

impl Timeline {
    fn add(&mut self, time_unix_ms: u64, o: Outcome, cap: usize) {
        let width = self.bucket_ms.max(1);
        let start = time_unix_ms - time_unix_ms % width;
        self.buckets.entry(start).or_default().add(o);
        while self.buckets.len() > cap.max(2) {
            self.widen();
        }
    }

    /// Doubles the bucket width.
    pub fn widen(&mut self) {
        let width = self.bucket_ms.saturating_mul(2).max(1);
        let mut merged: BTreeMap<u64, Bucket> = BTreeMap::new();
        for (start, b) in std::mem::take(&mut self.buckets) {
            merged.entry(start - start % width).or_default().merge(b);
        }
        self.bucket_ms = width;
        self.buckets = merged;
    }

    /// The series in at most `max` buckets (for a chart).
    pub fn coarsened(&self, max: usize) -> Timeline {
        let mut t = self.clone();
        while t.buckets.len() > max.max(1) {
            t.widen();
        }
        t
    }
}

/// Coverage of governed routes: bodies fully inspected versus refused as uninspectable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Decisions on governed routes.
    pub governed: u64,
    /// Of those, refused because the body could not be inspected ([`UNINSPECTABLE_RULES`]).
    pub uninspectable: u64,
    /// Uninspectable refusals by rule.
    pub uninspectable_by_rule: BTreeMap<String, u64>,
    /// Governed route id -> (decisions, uninspectable).
    pub by_route: BTreeMap<String, RouteCoverage>,
}

/// Coverage of one governed route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCoverage {
    pub governed: u64,
    pub uninspectable: u64,
}

impl Coverage {
    /// Decisions on governed routes whose body was fully inspected.
    pub fn inspected(&self) -> u64 {
        self.governed.saturating_sub(self.uninspectable)
    }

    /// Share inspected, in percent (100 when nothing governed was seen).
    pub fn inspected_percent(&self) -> f64 {
        if self.governed == 0 {
            return 100.0;
        }
        // Counts far below 2^52: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let share = self.inspected() as f64 * 100.0 / self.governed as f64;
        share
    }
}

/// The inventory: everything discovery knows, through event `through_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub format: u32,
    /// Last event seq folded in.
    pub through_seq: u64,
    /// Byte offset in `events.jsonl` after the last record read, where the next fold resumes.
    #[serde(default)]
    pub log_offset: u64,
    /// Events folded in.
    pub events: u64,
    pub first_unix_ms: Option<u64>,
    pub last_unix_ms: Option<u64>,
    /// Policy version -> decisions.
    pub policy_versions: BTreeMap<String, u64>,
    /// Agent id ([`UNIDENTIFIED`] without identity) -> what it did.
    pub agents: BTreeMap<String, AgentEntry>,
    /// `authority METHOD template` -> the REST API operation.
    pub apis: BTreeMap<String, ApiEntry>,
    /// `authority route` -> the MCP server.
    pub mcp_servers: BTreeMap<String, McpServerEntry>,
    /// `authority route` -> the LLM provider.
    pub llm_providers: BTreeMap<String, LlmProviderEntry>,
    /// `authority route` -> the A2A agent.
    pub a2a_agents: BTreeMap<String, A2aAgentEntry>,
    /// Rule id -> its decisions.
    pub rules: BTreeMap<String, RuleStats>,
    pub timeline: Timeline,
    pub coverage: Coverage,
    /// What was not kept because a cap was reached: what -> how often.
    pub overflow: Overflow,
}

impl Default for Inventory {
    fn default() -> Self {
        Self {
            format: FORMAT,
            through_seq: 0,
            log_offset: 0,
            events: 0,
            first_unix_ms: None,
            last_unix_ms: None,
            policy_versions: BTreeMap::new(),
            agents: BTreeMap::new(),
            apis: BTreeMap::new(),
            mcp_servers: BTreeMap::new(),
            llm_providers: BTreeMap::new(),
            a2a_agents: BTreeMap::new(),
            rules: BTreeMap::new(),
            timeline: Timeline::default(),
            coverage: Coverage::default(),
            overflow: Overflow::new(),
        }
    }
}

/// Whether a path segment is an identifier rather than a name: a number, a UUID, a hex hash, or
/// a long opaque token (letters and digits mixed, 16 characters or more).
pub fn is_id_segment(s: &str) -> bool {
    if s.is_empty() || s.starts_with('{') {
        return false;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hex = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    // UUID: 8-4-4-4-12 hex digits.
    let parts: Vec<&str> = s.split('-').collect();
    if parts.iter().map(|p| p.len()).eq([8usize, 4, 4, 4, 12]) && parts.iter().all(|p| hex(p)) {
        return true;
    }
    let has_digit = s.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = s.bytes().any(|b| b.is_ascii_alphabetic());
    // Hex hashes and object ids (MongoDB's 24, MD5's 32, SHA-1's 40, SHA-256's 64 digits): at
    // least 12 hex digits with a digit among them, so a word like `deadbeefcafe` stays a name
    // only if it has no digit.
    if s.len() >= 12 && hex(s) && has_digit {
        return true;
    }
    // Opaque tokens (ULIDs, base64url ids, `cus_4f9Xk2...`): long, letters and digits mixed.
    s.len() >= 16 && has_digit && has_alpha && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The route template of a concrete path: id-like segments become `{id}`.
pub fn infer_template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() || path == "/" {
        return "/".to_owned();
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').map(|s| if is_id_segment(s) { "{id}" } else { s }).collect();
    format!("/{}", segments.join("/"))
}

/// Whether template `t` (`{x}` and `*` one segment each; `**` at the end any depth) matches `path`.
pub fn template_matches(t: &str, path: &str) -> bool {
    let ts: Vec<&str> = t.trim_start_matches('/').split('/').collect();
    let ps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut pi = ps.iter();
    for (i, seg) in ts.iter().enumerate() {
        if *seg == "**" && i + 1 == ts.len() {
            return true;
        }
        match pi.next() {
            Some(p) if is_param(seg) || *seg == "*" || seg == p => {}
            _ => return false,
        }
    }
    pi.next().is_none()
}

/// `{name}`.
pub fn is_param(seg: &str) -> bool {
    seg.len() >= 2 && seg.starts_with('{') && seg.ends_with('}')
}

/// The template an API call is listed under: the declared route when the policy matched one
/// (without wildcards), else the inferred one; parameters the declaration names keep their name,
/// other id-like segments become `{id}`.
pub fn template_for(path: &str, declared: Option<&str>) -> (String, bool) {
    let inferred = infer_template(path);
    match declared {
        Some(d) if !d.contains('*') && template_matches(d, path) => {
            let ds = d.trim_start_matches('/').split('/');
            let is = inferred.trim_start_matches('/').split('/');
            let merged: Vec<&str> = ds.zip(is).map(|(d, i)| if is_param(d) { d } else { i }).collect();
            (format!("/{}", merged.join("/")), false)
        }
        _ => (inferred, true),
    }
}

/// `2026-11-21T18:18:06.724Z` (UTC) for milliseconds since the epoch.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, unix_ms % 1000)
}

impl Inventory {
    /// Folds one stored event in. Events at or before `through_seq` are ignored, so folding the
    /// same log twice counts each event once.
    pub fn observe(&mut self, seq: u64, e: &DecisionEvent, limits: &Limits) {
        if seq <= self.through_seq {
            return;
        }
        self.through_seq = seq;
        self.events = self.events.saturating_add(1);
        self.first_unix_ms = Some(self.first_unix_ms.map_or(e.time_unix_ms, |f| f.min(e.time_unix_ms)));
        self.last_unix_ms = Some(self.last_unix_ms.map_or(e.time_unix_ms, |l| l.max(e.time_unix_ms)));
        let o = Outcome::of(e);
        let ov = &mut self.overflow;
        bump(&mut self.policy_versions, &e.policy_version, 1, limits.names_per_entry, ov, "policy versions");
        self.timeline.add(e.time_unix_ms, o, limits.buckets);

        let agent = e.identity.agent.clone().unwrap_or_else(|| UNIDENTIFIED.to_owned());
        let granted = if o.blocked {
            None
        } else if e.mode == Mode::Shadow {
            e.allowed_by.clone()
        } else {
            Some(e.rule.clone())
        };

        // Rules.
        if let Some(r) = slot(&mut self.rules, &e.rule, limits.rules, ov, "rules", RuleStats::default) {
            if r.enforce_allow == 0 && r.enforce_deny == 0 && r.shadow_would_deny == 0 || e.time_unix_ms < r.first_unix_ms {
                r.first_unix_ms = e.time_unix_ms;
            }
            r.last_unix_ms = r.last_unix_ms.max(e.time_unix_ms);
            if o.shadow {
                r.shadow_would_deny = r.shadow_would_deny.saturating_add(1);
            } else if o.blocked {
                r.enforce_deny = r.enforce_deny.saturating_add(1);
            } else {
                r.enforce_allow = r.enforce_allow.saturating_add(1);
            }
            bump(&mut r.agents, &agent, 1, limits.names_per_entry, ov, "agents per rule");
        }

        // Coverage.
        let uninspectable = UNINSPECTABLE_RULES.contains(&e.rule.as_str());
        if e.request.governed.is_some() || uninspectable {
            let c = &mut self.coverage;
            c.governed = c.governed.saturating_add(1);
            if uninspectable {
                c.uninspectable = c.uninspectable.saturating_add(1);
                bump(&mut c.uninspectable_by_rule, &e.rule, 1, limits.names_per_entry, ov, "coverage rules");
            }
            let route = e.request.governed.clone().unwrap_or_else(|| "(unknown)".to_owned());
            if let Some(rc) = slot(&mut c.by_route, &route, limits.servers, ov, "coverage routes", RouteCoverage::default) {
                rc.governed = rc.governed.saturating_add(1);
                if uninspectable {
                    rc.uninspectable = rc.uninspectable.saturating_add(1);
                }
            }
        }

        // A decision about a response that let it through (a redaction, tools hidden, an audit)
        // is not another call: the request's own event counted it. A refused response still
        // counts, as the refusal the agent met.
        if e.phase == interlock_policies::event::Phase::Response && !o.blocked {
            return;
        }

        // What was called.
        let req = &e.request;
        let authority = req.authority.clone();
        let governed = req.governed.clone().unwrap_or_default();
        let mut calls: Vec<(CallKind, String, Option<String>, Option<String>)> = Vec::new();
        match (req.protocol, req.path.as_deref()) {
            (Some(p @ (Protocol::Mcp | Protocol::A2a)), _) => {
                let route = req.route.clone().or_else(|| req.path.clone()).unwrap_or_else(|| "/".to_owned());
                let kind = if p == Protocol::Mcp { CallKind::Mcp } else { CallKind::A2a };
                let key = format!("{authority} {route}");
                let limit = limits.tools_per_server;
                if p == Protocol::Mcp {
                    let make = || McpServerEntry { authority: authority.clone(), route: route.clone(), governed: governed.clone(), ..McpServerEntry::default() };
                    if let Some(s) = slot(&mut self.mcp_servers, &key, limits.servers, ov, "mcp servers", make) {
                        s.usage.add(e, o, &agent, limits, ov);
                        for c in &req.calls {
                            if let Some(u) = slot(&mut s.methods, &c.method, limit, ov, "mcp methods", Usage::default) {
                                u.add(e, o, &agent, limits, ov);
                            }
                            if let Some(t) = &c.tool
                                && let Some(u) = slot(&mut s.tools, t, limit, ov, "mcp tools", Usage::default)
                            {
                                u.add(e, o, &agent, limits, ov);
                            }
                        }
                    }
                } else {
                    let make = || A2aAgentEntry { authority: authority.clone(), route: route.clone(), governed: governed.clone(), ..A2aAgentEntry::default() };
                    if let Some(s) = slot(&mut self.a2a_agents, &key, limits.servers, ov, "a2a agents", make) {
                        s.usage.add(e, o, &agent, limits, ov);
                        for c in &req.calls {
                            if let Some(u) = slot(&mut s.methods, &c.method, limit, ov, "a2a methods", Usage::default) {
                                u.add(e, o, &agent, limits, ov);
                            }
                        }
                    }
                }
                if req.calls.is_empty() {
                    calls.push((kind, route.clone(), None, None));
                }
                for c in &req.calls {
                    calls.push((kind, route.clone(), Some(c.method.clone()), c.tool.clone()));
                }
            }
            (Some(p @ (Protocol::Openai | Protocol::Anthropic)), _) => {
                let route = req.route.clone().or_else(|| req.path.clone()).unwrap_or_else(|| "/".to_owned());
                let key = format!("{authority} {route}");
                let make = || LlmProviderEntry {
                    authority: authority.clone(),
                    route: route.clone(),
                    protocol: p.as_str().to_owned(),
                    governed: governed.clone(),
                    ..LlmProviderEntry::default()
                };
                if let Some(s) = slot(&mut self.llm_providers, &key, limits.servers, ov, "llm providers", make) {
                    s.usage.add(e, o, &agent, limits, ov);
                }
                calls.push((CallKind::Llm, route, None, None));
            }
            (_, Some(path)) => {
                let (template, inferred) = template_for(path, req.route.as_deref());
                let key = format!("{authority} {} {template}", req.method);
                let make = || ApiEntry {
                    authority: authority.clone(),
                    method: req.method.clone(),
                    template: template.clone(),
                    inferred,
                    ..ApiEntry::default()
                };
                if let Some(api) = slot(&mut self.apis, &key, limits.apis, ov, "apis", make) {
                    api.inferred &= inferred;
                    api.usage.add(e, o, &agent, limits, ov);
                    if api.examples.len() < limits.examples && !api.examples.iter().any(|x| x == path) {
                        api.examples.push(path.to_owned());
                    }
                }
                calls.push((CallKind::Http, template, None, None));
            }
            // The path was refused before it was understood (malformed-path): the agent's
            // counts include it, no API does.
            (_, None) => {}
        }

        // The agent.
        let make = || AgentEntry { agent: agent.clone(), first_unix_ms: e.time_unix_ms, ..AgentEntry::default() };
        let Some(a) = slot(&mut self.agents, &agent, limits.agents, ov, "agents", make) else { return };
        a.first_unix_ms = a.first_unix_ms.min(e.time_unix_ms);
        a.last_unix_ms = a.last_unix_ms.max(e.time_unix_ms);
        a.counts.add(o);
        if let Some(u) = &e.identity.user {
            bump(&mut a.users, u, 1, limits.names_per_entry, ov, "users per agent");
        }
        if let Some(s) = &e.identity.session
            && !a.sessions.contains(s)
        {
            if a.sessions.len() < limits.names_per_entry {
                a.sessions.insert(s.clone());
            } else {
                count_overflow(ov, "sessions per agent");
            }
        }
        bump(&mut a.rules, &e.rule, 1, limits.names_per_entry, ov, "rules per agent");
        bump(&mut a.policy_versions, &e.policy_version, 1, limits.names_per_entry, ov, "policy versions per agent");
        for (kind, template, rpc, tool) in calls {
            let key = call_key(kind, &authority, &req.method, &template, rpc.as_deref(), tool.as_deref());
            let make = || ObservedCall {
                kind,
                authority: authority.clone(),
                method: req.method.clone(),
                template: template.clone(),
                rpc_method: rpc.clone(),
                tool: tool.clone(),
                counts: Counts::default(),
                first_unix_ms: e.time_unix_ms,
                last_unix_ms: e.time_unix_ms,
                rules: BTreeMap::new(),
                granted_by: BTreeMap::new(),
                examples: Vec::new(),
            };
            if let Some(c) = slot(&mut a.observed, &key, limits.calls_per_agent, ov, "calls per agent", make) {
                c.counts.add(o);
                c.first_unix_ms = c.first_unix_ms.min(e.time_unix_ms);
                c.last_unix_ms = c.last_unix_ms.max(e.time_unix_ms);
                bump(&mut c.rules, &e.rule, 1, limits.names_per_entry, ov, "rules per call");
                if let Some(g) = &granted {
                    bump(&mut c.granted_by, g, 1, limits.names_per_entry, ov, "grants per call");
                }
                if c.examples.len() < limits.examples {
                    c.examples.push(e.decision_id.clone());
                }
            }
        }
    }
}

/// Why the inventory could not be loaded, built or saved.
#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("cannot read the event log {path}: {source}")]
    ReadLog { path: std::path::PathBuf, source: std::io::Error },
    #[error("the event log {path} has an unreadable record at line {line}: {source}")]
    BadRecord { path: std::path::PathBuf, line: u64, source: serde_json::Error },
    #[error("cannot save the inventory: {0}")]
    Save(#[from] crate::policy_store::PersistError),
    #[error("cannot encode the inventory: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The persisted inventory in `dir`, or a new one when there is none, it is unreadable, or it is
/// of another format (it is a cache of the event log: rebuilding it loses nothing).
pub fn load(dir: &Path) -> Inventory {
    std::fs::read(dir.join(INVENTORY_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Inventory>(&bytes).ok())
        .filter(|inv| inv.format == FORMAT)
        .unwrap_or_default()
}

/// Saves `inv` to `dir` atomically.
pub fn save(dir: &Path, inv: &Inventory) -> Result<(), InventoryError> {
    let bytes = serde_json::to_vec(inv).map_err(InventoryError::Encode)?;
    crate::policy_store::atomic_write(dir, INVENTORY_FILE, &bytes)?;
    Ok(())
}

/// Calls `f` with each record of `<dir>/events.jsonl` whose seq is after `after`, reading from
/// byte `offset` on and streaming (the file is never held in memory whole). Stops before a last
/// line that has no newline yet (a write in progress, or a torn write the enforcer drops at
/// start). Returns the offset after the last whole line read, where the next scan resumes.
pub fn scan_log(dir: &Path, offset: u64, after: u64, mut f: impl FnMut(StoredEvent)) -> Result<u64, InventoryError> {
    use std::io::{BufRead, Seek, SeekFrom};
    let path = dir.join(EVENTS_FILE);
    let read_err = |source| InventoryError::ReadLog { path: path.clone(), source };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(read_err(source)),
    };
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut reader = std::io::BufReader::new(file);
    let mut pos = offset;
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(read_err)?;
        if read == 0 || !line.ends_with('\n') {
            return Ok(pos);
        }
        n = n.saturating_add(1);
        pos = pos.saturating_add(u64::try_from(read).unwrap_or(u64::MAX));
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<StoredEvent>(&line) {
            Ok(rec) if rec.seq > after => f(rec),
            Ok(_) => {}
            Err(source) => return Err(InventoryError::BadRecord { path: path.clone(), line: n, source }),
        }
    }
}

/// Rebuilds the inventory from `<dir>/events.jsonl` alone (no enforcer needed).
pub fn from_log(dir: &Path, limits: &Limits) -> Result<Inventory, InventoryError> {
    let mut inv = Inventory::default();
    catch_up(&mut inv, dir, limits)?;
    Ok(inv)
}

/// Folds into `inv` the records of `<dir>/events.jsonl` after its `through_seq`, resuming at
/// its `log_offset` when the record there is the next one (O(new events)); otherwise (a log
/// moved aside, or an inventory from elsewhere) it starts over from the first record.
pub fn catch_up(inv: &mut Inventory, dir: &Path, limits: &Limits) -> Result<(), InventoryError> {
    let len = std::fs::metadata(dir.join(EVENTS_FILE)).map_or(0, |m| m.len());
    let mut resumable = inv.log_offset <= len;
    if resumable && inv.log_offset < len {
        // The next record must be the one after `through_seq`.
        resumable = first_seq_at(dir, inv.log_offset) == Some(inv.through_seq.saturating_add(1));
    }
    if !resumable {
        *inv = Inventory::default();
    }
    let after = inv.through_seq;
    let mut folded = Inventory::default();
    std::mem::swap(&mut folded, inv);
    let offset = scan_log(dir, folded.log_offset, after, |rec| folded.observe(rec.seq, &rec.event, limits))?;
    folded.log_offset = offset;
    *inv = folded;
    Ok(())
}

/// The seq of the whole record that starts at byte `offset`, if one does.
fn first_seq_at(dir: &Path, offset: u64) -> Option<u64> {
    use std::io::{BufRead, Seek, SeekFrom};
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let mut file = std::fs::File::open(dir.join(EVENTS_FILE)).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    // Only the seq is needed; the rest of the record is skipped without being built.
    serde_json::from_str::<Seq>(&line).ok().map(|s| s.seq)
}

/// Serialises refreshes, so two concurrent readers never write `inventory.json` at once.
static REFRESH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Brings the persisted inventory in `dir` up to date with the event log there, saves it when
/// it moved, and returns it. Blocking (file I/O): call from `spawn_blocking` in async code.
pub fn refresh(dir: &Path, limits: &Limits) -> Result<Inventory, InventoryError> {
    let _guard = REFRESH.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut inv = load(dir);
    let before = (inv.through_seq, inv.log_offset);
    catch_up(&mut inv, dir, limits)?;
    if (inv.through_seq, inv.log_offset) != before {
        save(dir, &inv)?;
    }
    Ok(inv)
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
pub(crate) mod tests;
