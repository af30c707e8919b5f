//! Findings over an [`Inventory`]: shadow APIs (called, never declared in any OpenAPI document),
//! zombie APIs (declared `deprecated: true`, still called), and per agent the grants its policy
//! gives but it never used over the window (least-privilege suggestions) and the calls it made
//! that were refused.
//!
//! OpenAPI 3 documents are read as JSON or YAML (YAML through `serde_norway`, the maintained fork
//! of `serde_yaml`). Paths are joined to each server URL's path (`servers: [{url:
//! "https://crm.example.com/v2"}]` declares `/v2/...`); when servers name hosts, the document
//! applies to those authorities only (port ignored), otherwise to every authority. Only REST
//! APIs are compared: MCP servers, LLM providers and A2A agents are declared by the policy's
//! `governed` routes, not by OpenAPI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use interlock_policies::PolicyDocument;
use interlock_policies::schema::Grant;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::inventory::{ApiEntry, CallKind, Inventory, UNIDENTIFIED, is_param, template_matches};

/// Limits on what an OpenAPI document may hold (it is read whole).
pub const MAX_SPEC_BYTES: u64 = 16 * 1024 * 1024;

/// HTTP methods an OpenAPI path item may hold operations for.
const OPERATIONS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {MAX_SPEC_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not valid JSON or YAML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("{path}: {at}: {reason}")]
    Invalid { path: PathBuf, at: String, reason: String },
}

/// One declared operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecOperation {
    /// Upper case.
    pub method: String,
    /// Path with the server's base path joined, e.g. `/api/customers/{customerId}`.
    pub path: String,
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
}

/// An OpenAPI document, as much of it as findings need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSpec {
    /// Where it was read from.
    pub source: String,
    pub title: Option<String>,
    /// Hosts its servers name (lower case, no port); empty: it applies to every authority.
    pub hosts: Vec<String>,
    pub operations: Vec<SpecOperation>,
}

impl ApiSpec {
    /// Reads a file (`.json`, or anything else as YAML, which also accepts JSON).
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let read_err = |source| SpecError::Read { path: path.to_owned(), source };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge { path: path.to_owned() });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text, &path.display().to_string()).map_err(|e| match e {
            SpecError::Syntax { reason, .. } => SpecError::Syntax { path: path.to_owned(), reason },
            SpecError::Invalid { at, reason, .. } => SpecError::Invalid { path: path.to_owned(), at, reason },
            other => other,
        })
    }

    /// Parses a document's text; `source` names it in findings.
    pub fn parse(text: &str, source: &str) -> Result<Self, SpecError> {
        let syntax = |reason: String| SpecError::Syntax { path: PathBuf::from(source), reason };
        let doc: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
        } else {
            let y: serde_norway::Value = serde_norway::from_str(text).map_err(|e| syntax(e.to_string()))?;
            yaml_to_json(y)
        };
        Self::from_value(&doc, source)
    }

    fn from_value(doc: &Value, source: &str) -> Result<Self, SpecError> {
        let invalid = |at: &str, reason: &str| SpecError::Invalid { path: PathBuf::from(source), at: at.to_owned(), reason: reason.to_owned() };
        match doc.get("openapi") {
            Some(Value::String(v)) if v.starts_with("3.") => {}
            Some(v) => return Err(invalid("$.openapi", &format!("{v} is not an OpenAPI 3 version (3.0.x or 3.1.x)"))),
            None if doc.get("swagger").is_some() => return Err(invalid("$.swagger", "Swagger 2.0 is not supported; convert it to OpenAPI 3")),
            None => return Err(invalid("$", "no `openapi` member: not an OpenAPI 3 document")),
        }
        let title = doc.pointer("/info/title").and_then(Value::as_str).map(str::to_owned);
        let mut prefixes = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        if let Some(servers) = doc.get("servers") {
            let list = servers.as_array().ok_or_else(|| invalid("$.servers", "must be an array"))?;
            for (i, s) in list.iter().enumerate() {
                let url = s.get("url").and_then(Value::as_str).ok_or_else(|| invalid(&format!("$.servers[{i}].url"), "must be a string"))?;
                let url = substitute_variables(url, s.get("variables"));
                let (host, path) = split_server_url(&url);
                if let Some(h) = host {
                    hosts.insert(h);
                }
                prefixes.insert(path);
            }
        }
        if prefixes.is_empty() {
            prefixes.insert(String::new());
        }
        let paths = match doc.get("paths") {
            Some(Value::Object(p)) => p,
            Some(_) => return Err(invalid("$.paths", "must be an object")),
            None => return Ok(Self { source: source.to_owned(), title, hosts: hosts.into_iter().collect(), operations: Vec::new() }),
        };
        let mut operations = Vec::new();
        for (p, item) in paths {
            if !p.starts_with('/') {
                return Err(invalid(&format!("$.paths[{p:?}]"), "a path must start with '/'"));
            }
            let Some(item) = item.as_object() else {
                return Err(invalid(&format!("$.paths[{p:?}]"), "must be an object"));
            };
            for (m, op) in item {
                let lower = m.to_ascii_lowercase();
                if !OPERATIONS.contains(&lower.as_str()) {
                    continue;
                }
                let deprecated = match op.get("deprecated") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(invalid(&format!("$.paths[{p:?}].{m}.deprecated"), "must be true or false")),
                };
                let operation_id = op.get("operationId").and_then(Value::as_str).map(str::to_owned);
                for prefix in &prefixes {
                    let joined = format!("{}{}", prefix.trim_end_matches('/'), p);
                    operations.push(SpecOperation { method: lower.to_ascii_uppercase(), path: joined, deprecated, operation_id: operation_id.clone() });
                }
            }
        }
        Ok(Self { source: source.to_owned(), title, hosts: hosts.into_iter().collect(), operations })
    }

    fn applies_to(&self, authority: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(authority))
    }
}

/// `{name}` in a server URL replaced by the variable's `default`.
fn substitute_variables(url: &str, vars: Option<&Value>) -> String {
    let mut out = url.to_owned();
    if let Some(Value::Object(vars)) = vars {
        for (k, v) in vars {
            if let Some(d) = v.get("default").and_then(Value::as_str) {
                out = out.replace(&format!("{{{k}}}"), d);
            }
        }
    }
    out
}

/// (host without port, path) of a server URL; a relative URL has no host.
fn split_server_url(url: &str) -> (Option<String>, String) {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (rest.get(..i).map(str::to_owned), rest.get(i..).unwrap_or_default().to_owned()),
            None => (Some(rest.to_owned()), String::new()),
        },
        None => (None, url.to_owned()),
    };
    let host = host.map(|h| {
        let h = h.rsplit_once('@').map_or(h.as_str(), |(_, h)| h).to_owned();
        // Strip a port; an IPv6 literal keeps what is inside its brackets.
        if let Some(rest) = h.strip_prefix('[') {
            return rest.split(']').next().unwrap_or_default().to_ascii_lowercase();
        }
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_ascii_lowercase(),
            _ => h.to_ascii_lowercase(),
        }
    });
    let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/').to_owned();
    (host, if path == "/" { String::new() } else { path })
}

/// YAML to JSON: mapping keys that are numbers or booleans (`200:` in `responses`) become
/// strings, tags are dropped.
fn yaml_to_json(y: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    // Complex keys cannot name anything findings read.
                    _ => continue,
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// Whether a declared path (parameters match any one segment) covers an inventory template (its
/// `{id}` segments match only declared parameters).
pub fn spec_path_matches(declared: &str, template: &str) -> bool {
    let ds: Vec<&str> = declared.trim_end_matches('/').trim_start_matches('/').split('/').collect();
    let ts: Vec<&str> = template.trim_end_matches('/').trim_start_matches('/').split('/').collect();
    ds.len() == ts.len() && ds.iter().zip(&ts).all(|(d, t)| is_param(d) || (!is_param(t) && d == t))
}

/// An API a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFinding {
    pub authority: String,
    pub method: String,
    pub template: String,
    pub calls: u64,
    /// Calls forwarded upstream (a shadow API that was only ever refused never reached anything).
    pub allowed: u64,
    pub denied: u64,
    pub agents: BTreeMap<String, u64>,
    pub last_unix_ms: u64,
    /// For a zombie: the deprecated operation (`GET /api/v1/customers` in `crm.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_as: Option<String>,
}

impl ApiFinding {
    fn of(api: &ApiEntry, declared_as: Option<String>) -> Self {
        Self {
            authority: api.authority.clone(),
            method: api.method.clone(),
            template: api.template.clone(),
            calls: api.usage.counts.calls,
            allowed: api.usage.counts.allowed,
            denied: api.usage.counts.denied,
            agents: api.usage.agents.clone(),
            last_unix_ms: api.usage.last_unix_ms,
            declared_as,
        }
    }
}

/// A grant that was never used, or parts of one that were not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFinding {
    pub grant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Decisions this grant allowed over the window.
    pub used: u64,
    /// What it allows that was never used: `tool export_customers`, `path /api/customers`,
    /// `method DELETE`, `mcp method tools/list`, `a2a method message/send`. Empty when the grant
    /// was used in every part it names.
    pub unused: Vec<String>,
    /// For people: what to do.
    pub suggestion: String,
}

/// A call an agent made that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedCall {
    pub call: String,
    pub kind: CallKind,
    pub denied: u64,
    /// Refusing rule -> decisions.
    pub rules: BTreeMap<String, u64>,
    pub examples: Vec<String>,
}

/// What the findings say about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFindings {
    pub agent: String,
    /// Whether the policy has an entry for it.
    pub in_policy: bool,
    pub calls: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Grants never used, and used grants with parts never used.
    pub grants: Vec<GrantFinding>,
    pub denied_calls: Vec<DeniedCall>,
}

/// A spec, summarized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecSummary {
    pub source: String,
    pub title: Option<String>,
    pub operations: usize,
    pub deprecated: usize,
}

/// Everything [`findings`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    /// The window the inventory covers.
    pub from_unix_ms: Option<u64>,
    pub to_unix_ms: Option<u64>,
    pub specs: Vec<SpecSummary>,
    /// Called, never declared (empty when no spec was given).
    pub shadow_apis: Vec<ApiFinding>,
    /// Declared deprecated, still called.
    pub zombie_apis: Vec<ApiFinding>,
    /// Declared operations never called over the window: `METHOD path (source)`.
    pub unobserved_operations: Vec<String>,
    pub agents: Vec<AgentFindings>,
    /// What could not be judged, and why.
    pub notes: Vec<String>,
}

/// Shadow and zombie APIs against `specs`, least-privilege and denial findings against `policy`.
pub fn findings(inv: &Inventory, specs: &[ApiSpec], policy: Option<&PolicyDocument>) -> Findings {
    let mut f = Findings { from_unix_ms: inv.first_unix_ms, to_unix_ms: inv.last_unix_ms, ..Findings::default() };
    f.specs = specs
        .iter()
        .map(|s| SpecSummary {
            source: s.source.clone(),
            title: s.title.clone(),
            operations: s.operations.len(),
            deprecated: s.operations.iter().filter(|o| o.deprecated).count(),
        })
        .collect();
    if specs.is_empty() {
        f.notes.push("no OpenAPI document given (--openapi FILE): shadow and zombie APIs were not computed".to_owned());
    } else {
        let mut seen_ops: BTreeSet<(usize, usize)> = BTreeSet::new();
        for api in inv.apis.values() {
            let mut declared = false;
            let mut zombie = None;
            for (si, spec) in specs.iter().enumerate().filter(|(_, s)| s.applies_to(&api.authority)) {
                for (oi, op) in spec.operations.iter().enumerate() {
                    if op.method.eq_ignore_ascii_case(&api.method) && spec_path_matches(&op.path, &api.template) {
                        declared = true;
                        seen_ops.insert((si, oi));
                        if op.deprecated && zombie.is_none() {
                            zombie = Some(format!("{} {} in {}", op.method, op.path, spec.source));
                        }
                    }
                }
            }
            if !declared {
                f.shadow_apis.push(ApiFinding::of(api, None));
            } else if let Some(d) = zombie {
                f.zombie_apis.push(ApiFinding::of(api, Some(d)));
            }
        }
        for (si, spec) in specs.iter().enumerate() {
            for (oi, op) in spec.operations.iter().enumerate() {
                if !seen_ops.contains(&(si, oi)) {
                    f.unobserved_operations.push(format!("{} {} ({})", op.method, op.path, spec.source));
                }
            }
        }
    }

    let Some(policy) = policy else {
        f.notes.push("no policy (--policy FILE, or one installed at the enforcer): unused grants were not computed".to_owned());
        f.agents = inv.agents.values().map(|a| agent_findings(inv, &a.agent, None, false)).collect();
        return f;
    };
    let mut names: BTreeSet<&str> = inv.agents.keys().map(String::as_str).collect();
    names.extend(policy.agents.keys().map(String::as_str));
    for name in names {
        let entry = policy.agents.get(name);
        f.agents.push(agent_findings(inv, name, entry.map(|e| e.grants.as_slice()), entry.is_some()));
    }
    f
}

fn agent_findings(inv: &Inventory, name: &str, grants: Option<&[Grant]>, in_policy: bool) -> AgentFindings {
    let entry = inv.agents.get(name);
    let mut out = AgentFindings {
        agent: name.to_owned(),
        in_policy: in_policy || name == UNIDENTIFIED,
        calls: entry.map_or(0, |a| a.counts.calls),
        allowed: entry.map_or(0, |a| a.counts.allowed),
        denied: entry.map_or(0, |a| a.counts.denied),
        grants: Vec::new(),
        denied_calls: Vec::new(),
    };
    if let Some(a) = entry {
        for c in a.observed.values().filter(|c| c.counts.denied > 0) {
            let rules = c.rules.iter().filter(|(r, _)| !c.granted_by.contains_key(*r)).map(|(r, n)| (r.clone(), *n)).collect();
            out.denied_calls.push(DeniedCall { call: c.label(), kind: c.kind, denied: c.counts.denied, rules, examples: c.examples.clone() });
        }
    }
    for g in grants.unwrap_or_default() {
        out.grants.extend(grant_finding(g, entry));
    }
    out
}

/// The finding for one grant, or none when every part of it was used.
fn grant_finding(g: &Grant, entry: Option<&crate::inventory::AgentEntry>) -> Option<GrantFinding> {
    let granted: Vec<&crate::inventory::ObservedCall> =
        entry.map(|a| a.observed.values().filter(|c| c.granted_by.contains_key(&g.id)).collect()).unwrap_or_default();
    let used: u64 = granted.iter().map(|c| c.granted_by.get(&g.id).copied().unwrap_or(0)).sum();
    if used == 0 {
        return Some(GrantFinding {
            grant: g.id.clone(),
            description: g.description.clone(),
            used: 0,
            unused: Vec::new(),
            suggestion: "never used over the window: remove it, or confirm the agent still needs it".to_owned(),
        });
    }
    let mut unused = Vec::new();
    if let Some(h) = &g.http {
        for m in h.methods.iter().flatten() {
            if !granted.iter().any(|c| c.method.eq_ignore_ascii_case(m)) {
                unused.push(format!("method {m}"));
            }
        }
        for p in h.paths.iter().flatten() {
            if !granted.iter().any(|c| template_matches(p, &c.template)) {
                unused.push(format!("path {p}"));
            }
        }
    }
    if let Some(m) = &g.mcp {
        for t in m.tools.iter().flatten() {
            if !granted.iter().any(|c| c.tool.as_deref() == Some(t.as_str())) {
                unused.push(format!("tool {t}"));
            }
        }
        for rpc in m.methods.iter().flatten() {
            if !granted.iter().any(|c| c.rpc_method.as_deref() == Some(rpc.as_str())) {
                unused.push(format!("mcp method {rpc}"));
            }
        }
    }
    if let Some(a) = &g.a2a {
        for rpc in a.methods.iter().flatten() {
            if !granted.iter().any(|c| c.kind == CallKind::A2a && c.rpc_method.as_deref() == Some(rpc.as_str())) {
                unused.push(format!("a2a method {rpc}"));
            }
        }
    }
    (!unused.is_empty()).then(|| GrantFinding {
        grant: g.id.clone(),
        description: g.description.clone(),
        used,
        suggestion: format!("used {used} times, but never for: {}; narrow it to what was used", unused.join(", ")),
        unused,
    })
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
