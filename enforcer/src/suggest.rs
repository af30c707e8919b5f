//! `interlock suggest --agent A`: a least-privilege policy section drafted from what the agent
//! was observed doing, for a person to review.
//!
//! Each distinct thing the agent did that went through becomes part of a grant, and nothing
//! else does:
//! - REST and LLM calls: one grant per host and route template, with the methods seen;
//! - MCP calls: per server route, one grant for the JSON-RPC methods (`initialize`,
//!   `tools/list`, ...) and one for the tools called, both pinned to the route and host;
//! - A2A calls: per route, one grant for the methods seen.
//!
//! Calls that were refused are left out and listed (in the agent's `description` and in the
//! draft's `left_out`); with `include_denied`, those refused only because nothing granted them
//! (`default-deny`) become grants too, each saying it was refused when seen. Tool arguments are
//! not recorded, so no grant narrows them.
//!
//! The draft is a whole, minimal policy document (the section under `agents`, the governed
//! routes it relies on) and is compiled with the filter's engine before it is shown: what is
//! printed always passes `interlock check`.

use std::collections::{BTreeMap, BTreeSet};

use interlock_policies::Engine;
use interlock_policies::builtin;
use interlock_policies::template::HostPattern;
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::inventory::{AgentEntry, CallKind, Inventory, ObservedCall, iso8601};

#[derive(Debug, Error)]
pub enum SuggestError {
    #[error("agent {0:?} was never seen in the event log")]
    UnknownAgent(String),
    #[error("agent {0:?} made no call that was let through: there is nothing to grant (run with --include-denied to draft grants for its refused calls)")]
    NothingAllowed(String),
    #[error("the drafted policy does not compile ({0}); this is a bug in interlock suggest")]
    Invalid(String),
}

/// What to draft.
#[derive(Debug, Clone, Default)]
pub struct SuggestOptions {
    /// Also grant calls refused by `default-deny` (flagged in their description).
    pub include_denied: bool,
}

/// The draft.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub agent: String,
    /// A minimal policy document holding the section; compiles with the filter's engine.
    pub policy: Value,
    /// Refused calls that no grant covers, for the reviewer.
    pub left_out: Vec<LeftOut>,
    /// What the draft cannot express, for the reviewer.
    pub notes: Vec<String>,
}

/// A refused call the draft does not grant.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub call: String,
    pub denied: u64,
    pub rules: BTreeMap<String, u64>,
    pub why: String,
}

/// Grant ids: `suggested-<agent>-<what>-<n>`, lower-case letters, digits and dashes.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn seen(calls: &[&ObservedCall]) -> String {
    let allowed: u64 = calls.iter().map(|c| c.counts.allowed).sum();
    let denied: u64 = calls.iter().map(|c| c.counts.denied).sum();
    let first = calls.iter().map(|c| c.first_unix_ms).min().unwrap_or(0);
    let last = calls.iter().map(|c| c.last_unix_ms).max().unwrap_or(0);
    let mut by: BTreeSet<&str> = BTreeSet::new();
    for c in calls {
        by.extend(c.granted_by.keys().map(String::as_str));
    }
    let denied_text = if denied > 0 { format!(", {denied} refused") } else { String::new() };
    let by_text = if by.is_empty() { String::new() } else { format!("; allowed then by {}", by.into_iter().collect::<Vec<_>>().join(", ")) };
    format!("Seen {allowed} allowed{denied_text} between {} and {}{by_text}.", iso8601(first), iso8601(last))
}

fn hosts(authority: &str) -> Option<Value> {
    HostPattern::parse(authority).ok().map(|_| json!([authority]))
}

/// Drafts the section for `agent` from the inventory.
pub fn suggest(inv: &Inventory, agent: &str, opts: &SuggestOptions) -> Result<Suggestion, SuggestError> {
    let entry = inv.agents.get(agent).ok_or_else(|| SuggestError::UnknownAgent(agent.to_owned()))?;
    let mut notes = vec![
        "tool arguments are not recorded in decision events: no grant narrows them; add `arguments` conditions by hand where a tool needs them".to_owned(),
    ];
    let mut left_out = Vec::new();
    let mut take: Vec<(&ObservedCall, bool)> = Vec::new();
    for c in entry.observed.values() {
        let refused_rules: BTreeMap<String, u64> =
            c.rules.iter().filter(|(r, _)| !c.granted_by.contains_key(*r)).map(|(r, n)| (r.clone(), *n)).collect();
        if c.counts.allowed > 0 {
            take.push((c, false));
        } else if opts.include_denied && refused_rules.keys().all(|r| r == builtin::DEFAULT_DENY) {
            take.push((c, true));
        }
        if c.counts.denied > 0 && !(c.counts.allowed == 0 && opts.include_denied && refused_rules.keys().all(|r| r == builtin::DEFAULT_DENY)) {
            let why = if refused_rules.keys().all(|r| r == builtin::DEFAULT_DENY) {
                "refused because nothing granted it: not granted here (rerun with --include-denied to draft it)".to_owned()
            } else if refused_rules.keys().any(|r| builtin::ALL.contains(&r.as_str())) {
                "refused by the proxy's own checks (identity, malformed or uninspectable input, revocation, rate limit): a grant would not change that".to_owned()
            } else {
                "refused by a deny or data rule (on the request, or on its response): a grant would not change that".to_owned()
            };
            left_out.push(LeftOut { call: c.label(), denied: c.counts.denied, rules: refused_rules, why });
        }
    }
    if take.is_empty() {
        return Err(SuggestError::NothingAllowed(agent.to_owned()));
    }

    let agent_slug = slug(agent);
    let mut grants: Vec<Value> = Vec::new();
    let mut governed: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    let mut n = 0usize;
    let mut next_id = |what: &str| {
        n = n.saturating_add(1);
        format!("suggested-{agent_slug}-{what}-{n}")
    };
    let flag = |denied: bool| if denied { " REFUSED when seen (nothing granted it): granting it widens this agent's access; review." } else { "" };

    // REST and LLM: (authority, template, refused?) -> calls.
    let mut http: BTreeMap<(String, String, bool), Vec<&ObservedCall>> = BTreeMap::new();
    // MCP and A2A: (kind, authority, route, refused?) -> calls.
    let mut rpc: BTreeMap<(CallKind, String, String, bool), Vec<&ObservedCall>> = BTreeMap::new();
    for (c, denied) in &take {
        match (c.kind, &c.rpc_method) {
            (CallKind::Mcp | CallKind::A2a, Some(_)) => rpc.entry((c.kind, c.authority.clone(), c.template.clone(), *denied)).or_default().push(c),
            _ => http.entry((c.authority.clone(), c.template.clone(), *denied)).or_default().push(c),
        }
        if let Some(p) = match c.kind {
            CallKind::Mcp => Some("mcp"),
            CallKind::A2a => Some("a2a"),
            CallKind::Llm | CallKind::Http => None,
        } {
            governed.entry(c.template.clone()).or_insert_with(|| (format!("{p}-{}", slug(&c.template)), p));
        }
    }
    for ((authority, template, denied), calls) in &http {
        let methods: BTreeSet<String> = calls.iter().map(|c| c.method.clone()).collect();
        let what = if calls.iter().any(|c| c.kind == CallKind::Llm) { "llm" } else { "http" };
        let mut m = json!({ "methods": methods, "paths": [template] });
        if let (Some(h), Some(obj)) = (hosts(authority), m.as_object_mut()) {
            obj.insert("hosts".to_owned(), h);
        }
        grants.push(json!({
            "id": next_id(what),
            "description": format!("{} {} on {authority}. {}{}", methods.iter().cloned().collect::<Vec<_>>().join(", "), template, seen(calls), flag(*denied)),
            "http": m,
        }));
    }
    for ((kind, authority, route, denied), calls) in &rpc {
        let mut http_clause = json!({ "paths": [route] });
        if let (Some(h), Some(obj)) = (hosts(authority), http_clause.as_object_mut()) {
            obj.insert("hosts".to_owned(), h);
        }
        if *kind == CallKind::A2a {
            let methods: BTreeSet<&str> = calls.iter().filter_map(|c| c.rpc_method.as_deref()).collect();
            grants.push(json!({
                "id": next_id("a2a"),
                "description": format!("A2A {} at {authority}{route}. {}{}", methods.iter().copied().collect::<Vec<_>>().join(", "), seen(calls), flag(*denied)),
                "http": http_clause,
                "a2a": { "methods": methods },
            }));
            continue;
        }
        let (tool_calls, method_calls): (Vec<&ObservedCall>, Vec<&ObservedCall>) = calls.iter().partition(|c| c.tool.is_some());
        if !method_calls.is_empty() {
            let methods: BTreeSet<&str> = method_calls.iter().filter_map(|c| c.rpc_method.as_deref()).collect();
            grants.push(json!({
                "id": next_id("mcp-methods"),
                "description": format!("MCP {} at {authority}{route}. {}{}", methods.iter().copied().collect::<Vec<_>>().join(", "), seen(&method_calls), flag(*denied)),
                "http": http_clause.clone(),
                "mcp": { "methods": methods },
            }));
        }
        if !tool_calls.is_empty() {
            let tools: BTreeSet<&str> = tool_calls.iter().filter_map(|c| c.tool.as_deref()).collect();
            grants.push(json!({
                "id": next_id("mcp-tools"),
                "description": format!("MCP tools {} at {authority}{route}. {}{}", tools.iter().copied().collect::<Vec<_>>().join(", "), seen(&tool_calls), flag(*denied)),
                "http": http_clause,
                "mcp": { "tools": tools },
            }));
        }
    }

    let mut description = format!(
        "Drafted by `interlock suggest` from {} decisions ({} allowed, {} refused) between {} and {}. Review before use.",
        entry.counts.calls,
        entry.counts.allowed,
        entry.counts.denied,
        iso8601(entry.first_unix_ms),
        iso8601(entry.last_unix_ms)
    );
    if !left_out.is_empty() {
        description.push_str(" Refused when seen, and not widened by this draft: ");
        description.push_str(&left_out.iter().map(|l| format!("{} x{}", l.call, l.denied)).collect::<Vec<_>>().join("; "));
        description.push('.');
    }
    let governed: Vec<Value> = governed.iter().map(|(path, (id, protocol))| json!({ "id": id, "path": path, "protocol": protocol })).collect();
    if !governed.is_empty() {
        notes.push("the draft's `governed` routes are the ones the agent's JSON-RPC calls went to; your policy's own `governed` list is what counts when you merge the section".to_owned());
    }
    let policy = json!({
        "version": format!("suggested-{agent_slug}"),
        "governed": governed,
        "default_action": "deny",
        "agents": { agent: { "description": description, "grants": grants } },
    });
    let text = policy.to_string();
    Engine::from_json(&text).map_err(|e| SuggestError::Invalid(e.to_string()))?;
    Ok(Suggestion { agent: agent.to_owned(), policy, left_out, notes })
}

/// The agent entry's calls as the draft saw them (for tests and the human summary).
pub fn allowed_calls(entry: &AgentEntry) -> Vec<&ObservedCall> {
    entry.observed.values().filter(|c| c.counts.allowed > 0).collect()
}

#[cfg(test)]
#[path = "suggest_tests.rs"]
mod tests;
