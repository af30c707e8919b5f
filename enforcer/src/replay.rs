//! `interlock replay --policy CANDIDATE.json`: recorded decisions re-evaluated by a candidate
//! policy, and what would change, per agent and rule, before anyone deploys it.
//!
//! Events record what was decided on, not the request itself: no headers, no body. Each event is
//! turned back into a request for the engine from what it does hold:
//! - the method, authority and canonical path, and the verified identity (agent, user, session;
//!   the trace id as a `traceparent`);
//! - for MCP and A2A calls, a synthetic JSON-RPC body from `calls[]` (method, tool, whether it had
//!   an id), tool arguments empty: they are not recorded. A rule that looks at arguments can
//!   therefore not be replayed exactly: every result where the candidate has such a rule that
//!   could apply to the call is marked `inexact`, as is every result for a request whose body
//!   carried sensitive data (the data is not recorded either);
//! - for LLM calls, a minimal request body of the route's protocol.
//!
//! Some decisions depended on what cannot be reconstructed at all and are skipped, counted by
//! reason: refusals of the input's form (malformed or uninspectable bodies, duplicate headers),
//! refusals on sensitive data (a body's or a response's: the data is not recorded), and live
//! state (revocations, rate limits). Replay evaluates the candidate without live state.

use std::collections::{BTreeMap, BTreeSet};

use interlock_policies::decision::Action;
use interlock_policies::schema::{Mode, Protocol};
use interlock_policies::{DecisionEvent, Engine, HttpRequest, PolicyDocument, VerifiedIdentity, builtin};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::inventory::iso8601;
use crate::store::StoredEvent;

/// Examples kept per group of changes.
pub const EXAMPLES_PER_GROUP: usize = 5;

/// Refusals whose cause is the request's form, which events do not record.
const UNREPLAYABLE_FORM: &[&str] = &[
    builtin::DUPLICATE_HEADER,
    builtin::MALFORMED_HEADER,
    builtin::MALFORMED_PATH,
    builtin::BODY_REQUIRED,
    builtin::BODY_TOO_LARGE,
    builtin::UNSUPPORTED_ENCODING,
    builtin::UNSUPPORTED_CONTENT_TYPE,
    builtin::MALFORMED_BODY,
    builtin::INVALID_JSONRPC,
    builtin::HEADER_BODY_MISMATCH,
    builtin::IDENTITY_CONFLICT,
];

/// What changes for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Went through, the candidate refuses it.
    NewlyDenied,
    /// Was refused, the candidate lets it through.
    NewlyAllowed,
    /// Same outcome, another rule decides (a grant renamed or split, another deny first).
    RuleChanged,
}

/// One replayed decision that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub decision_id: String,
    pub seq: u64,
    pub time: String,
    /// `GET 127.0.0.1/api/customers/42`, `POST 127.0.0.1/mcp tools/call export_customers`.
    pub call: String,
    pub status_before: u16,
    pub status_after: u16,
    pub inexact: bool,
}

/// Changes of one kind, for one agent, from one rule to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeGroup {
    pub agent: String,
    pub change: Change,
    /// The rule that decided when it happened.
    pub from_rule: String,
    /// The candidate's deciding rule.
    pub to_rule: String,
    pub count: u64,
    /// Of `count`, results marked inexact (see the module docs).
    pub inexact: u64,
    pub examples: Vec<Example>,
}

/// A candidate shadow rule that would have fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowFiring {
    pub rule: String,
    pub agent: String,
    pub count: u64,
}

/// The replay's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub candidate_version: String,
    pub since_unix_ms: Option<u64>,
    /// Events read (after `--since` and `--agent`).
    pub events: u64,
    pub replayed: u64,
    pub unchanged: u64,
    pub newly_denied: u64,
    pub newly_allowed: u64,
    pub rule_changed: u64,
    /// Replayed results marked inexact (whether they changed or not).
    pub inexact: u64,
    /// Not replayed, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Per agent and rule, newly denied first.
    pub changes: Vec<ChangeGroup>,
    /// Shadow rules of the candidate that would have fired (letting the call through).
    pub shadow: Vec<ShadowFiring>,
    pub notes: Vec<String>,
}

/// A replay in progress: feed it events in order, then [`Replay::finish`].
pub struct Replay {
    engine: Engine,
    /// Candidate rules with `arguments` conditions: the tools they name (`None`: any tool).
    argument_rules: Vec<Option<BTreeSet<String>>>,
    since: Option<u64>,
    agent: Option<String>,
    report: ReplayReport,
    groups: BTreeMap<(String, Change, String, String), ChangeGroup>,
    shadow: BTreeMap<(String, String), u64>,
}

impl Replay {
    /// A replay through `candidate` (already compiled from `doc`), of the events at or after
    /// `since` (ms since the epoch) and, with `agent`, of that agent only.
    pub fn new(doc: &PolicyDocument, candidate: Engine, since: Option<u64>, agent: Option<String>) -> Self {
        let mut argument_rules = Vec::new();
        let mut collect = |m: Option<&interlock_policies::schema::McpMatch>| {
            if let Some(m) = m
                && m.arguments.as_ref().is_some_and(|a| !a.is_empty())
            {
                argument_rules.push(m.tools.as_ref().map(|t| t.iter().map(|s| s.to_ascii_lowercase()).collect()));
            }
        };
        for r in &doc.rules {
            collect(r.mcp.as_ref());
        }
        for a in doc.agents.values() {
            for g in &a.grants {
                collect(g.mcp.as_ref());
            }
        }
        let report = ReplayReport {
            candidate_version: candidate.version().to_owned(),
            since_unix_ms: since,
            notes: vec![
                "events record no headers and no body: MCP/A2A calls are replayed from their method and tool with empty arguments; results a rule on arguments could change are marked inexact".to_owned(),
                "live state is not replayed: revocations and rate limits of the time are skipped, and the candidate is evaluated without them".to_owned(),
            ],
            ..ReplayReport::default()
        };
        Self { engine: candidate, argument_rules, since, agent, report, groups: BTreeMap::new(), shadow: BTreeMap::new() }
    }

    fn skip(&mut self, why: &str) {
        let n = self.report.skipped.entry(why.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Replays one recorded decision.
    pub fn feed(&mut self, rec: &StoredEvent) {
        let e = &rec.event;
        if self.since.is_some_and(|s| e.time_unix_ms < s) {
            return;
        }
        let agent = e.identity.agent.clone().unwrap_or_else(|| crate::inventory::UNIDENTIFIED.to_owned());
        if self.agent.as_ref().is_some_and(|a| *a != agent) {
            return;
        }
        self.report.events = self.report.events.saturating_add(1);
        if e.phase == interlock_policies::event::Phase::Response {
            return self.skip("a decision about a response: its request is replayed on its own");
        }
        if UNREPLAYABLE_FORM.contains(&e.rule.as_str()) {
            return self.skip(&format!("{}: the request's form is not recorded", e.rule));
        }
        if e.rule == builtin::REVOKED || e.rule == builtin::RATE_LIMIT_CONTENTION || e.status == 429 {
            return self.skip("revocation or rate limit: live state is not replayed");
        }
        if !e.data_classes.is_empty() && (e.status != 0 || e.action == Action::Deny) {
            return self.skip("decided on sensitive data in a body (or a response), which is not recorded");
        }
        let Some((req, body)) = reconstruct(e) else {
            return self.skip("no canonical path recorded");
        };
        let eval = self.engine.evaluate(&req, body.as_deref());
        self.report.replayed = self.report.replayed.saturating_add(1);
        let inexact = self.inexact(e);
        if inexact {
            self.report.inexact = self.report.inexact.saturating_add(1);
        }
        let d = &eval.decision;
        if d.mode == Mode::Shadow && d.action == Action::Deny {
            let n = self.shadow.entry((d.rule.to_string(), agent.clone())).or_insert(0);
            *n = n.saturating_add(1);
        }
        let before_blocked = e.status != 0 || (e.action == Action::Deny && e.mode == Mode::Enforce);
        let after_blocked = d.blocks();
        // Under shadow, the rule that let it through is what "decided" the outcome.
        let before_rule = if e.mode == Mode::Shadow { e.allowed_by.clone().unwrap_or_else(|| e.rule.clone()) } else { e.rule.clone() };
        let after_rule = if d.mode == Mode::Shadow { d.allowed_by.as_deref().unwrap_or(&d.rule) } else { &d.rule }.to_owned();
        let change = match (before_blocked, after_blocked) {
            (false, true) => Change::NewlyDenied,
            (true, false) => Change::NewlyAllowed,
            // An inexact replay that keeps the outcome says nothing reliable about which rule
            // would decide (a data or argument rule may, on the real body).
            _ if before_rule != after_rule && !inexact => Change::RuleChanged,
            _ => {
                self.report.unchanged = self.report.unchanged.saturating_add(1);
                return;
            }
        };
        let counter = match change {
            Change::NewlyDenied => &mut self.report.newly_denied,
            Change::NewlyAllowed => &mut self.report.newly_allowed,
            Change::RuleChanged => &mut self.report.rule_changed,
        };
        *counter = counter.saturating_add(1);
        let key = (agent.clone(), change, before_rule.clone(), after_rule.clone());
        let group = self.groups.entry(key).or_insert_with(|| ChangeGroup {
            agent,
            change,
            from_rule: before_rule,
            to_rule: after_rule,
            count: 0,
            inexact: 0,
            examples: Vec::new(),
        });
        group.count = group.count.saturating_add(1);
        if inexact {
            group.inexact = group.inexact.saturating_add(1);
        }
        if group.examples.len() < EXAMPLES_PER_GROUP {
            group.examples.push(Example {
                decision_id: e.decision_id.clone(),
                seq: rec.seq,
                time: iso8601(e.time_unix_ms),
                call: call_label(e),
                status_before: e.status,
                status_after: d.status,
                inexact,
            });
        }
    }

    /// Whether the replayed result may differ from what the candidate would decide on the real
    /// request: a candidate rule on tool arguments could apply, or the body carried data.
    fn inexact(&self, e: &DecisionEvent) -> bool {
        if !e.data_classes.is_empty() {
            return true;
        }
        let tools: Vec<String> = e.request.calls.iter().filter_map(|c| c.tool.as_ref()).map(|t| t.to_ascii_lowercase()).collect();
        !tools.is_empty() && self.argument_rules.iter().any(|names| names.as_ref().is_none_or(|n| tools.iter().any(|t| n.contains(t))))
    }

    /// The report: groups newly denied first, then newly allowed, then rule changes, each by
    /// agent and rule.
    pub fn finish(mut self) -> ReplayReport {
        let mut changes: Vec<ChangeGroup> = self.groups.into_values().collect();
        changes.sort_by(|a, b| (a.change, &a.agent, &a.to_rule, &a.from_rule).cmp(&(b.change, &b.agent, &b.to_rule, &b.from_rule)));
        self.report.changes = changes;
        self.report.shadow = self.shadow.into_iter().map(|((rule, agent), count)| ShadowFiring { rule, agent, count }).collect();
        self.report
    }
}

/// `METHOD authority path [rpc method tool, ...]`.
pub fn call_label(e: &DecisionEvent) -> String {
    let r = &e.request;
    let mut s = format!("{} {}{}", r.method, r.authority, r.path.as_deref().unwrap_or("?"));
    for c in &r.calls {
        s.push(' ');
        s.push_str(&c.method);
        if let Some(t) = &c.tool {
            s.push(' ');
            s.push_str(t);
        }
    }
    s
}

/// The request an event was decided on, as far as the event tells it: headers and a body for
/// the engine. `None` when the event has no canonical path (the path itself was refused).
pub fn reconstruct(e: &DecisionEvent) -> Option<(HttpRequest, Option<Vec<u8>>)> {
    let r = &e.request;
    let path = r.path.clone()?;
    let mut headers = Vec::new();
    if let Some(t) = &e.identity.trace {
        headers.push(("traceparent".to_owned(), format!("00-{t}-0000000000000001-01")));
    }
    let body: Option<Value> = match r.protocol {
        Some(Protocol::Mcp | Protocol::A2a) if !r.calls.is_empty() => {
            let mut msgs: Vec<Value> = r
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let params = match (&c.tool, r.protocol) {
                        (Some(t), _) => json!({ "name": t, "arguments": {} }),
                        (None, Some(Protocol::A2a)) => {
                            json!({ "message": { "role": "user", "messageId": "replay", "parts": [{ "kind": "text", "text": "" }] } })
                        }
                        (None, _) => json!({}),
                    };
                    let mut m = json!({ "jsonrpc": "2.0", "method": c.method, "params": params });
                    if c.has_id
                        && let Some(obj) = m.as_object_mut()
                    {
                        obj.insert("id".to_owned(), json!(i.saturating_add(1)));
                    }
                    m
                })
                .collect();
            if msgs.len() == 1 { msgs.pop() } else { Some(Value::Array(msgs)) }
        }
        Some(Protocol::Openai) => Some(json!({ "model": "replay", "messages": [{ "role": "user", "content": "" }] })),
        Some(Protocol::Anthropic) => Some(json!({ "model": "replay", "max_tokens": 1, "messages": [{ "role": "user", "content": "" }] })),
        Some(Protocol::Json) => Some(json!({})),
        // A governed route refused before its body was read (401 on a non-JSON-RPC route): no body.
        _ if matches!(r.method.as_str(), "POST" | "PUT" | "PATCH") && r.governed.is_some() => Some(json!({})),
        _ => None,
    };
    let body = body.map(|b| b.to_string().into_bytes());
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let req = HttpRequest {
        method: r.method.clone(),
        authority: r.authority.clone(),
        path,
        headers,
        end_of_stream: body.is_none(),
        identity: VerifiedIdentity {
            jwt_agent: e.identity.agent.clone(),
            jwt_user: e.identity.user.clone(),
            jwt_session: e.identity.session.clone(),
            peer_principal: None,
        },
    };
    Some((req, body))
}

/// Parses `--since`: milliseconds since the epoch, an RFC 3339 UTC time
/// (`2026-11-21T18:00:00Z`), or a duration back from `now_ms` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let unit = |u: &str| match u {
        "s" => Some(1_000u64),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    };
    if let Some(i) = t.find(|c: char| !c.is_ascii_digit())
        && i > 0
        && let (Some(n), Some(u)) = (t.get(..i).and_then(|n| n.parse::<u64>().ok()), t.get(i..).and_then(unit))
    {
        return Ok(now_ms.saturating_sub(n.saturating_mul(u)));
    }
    parse_rfc3339(t).ok_or_else(|| format!("{text:?}: expected milliseconds since the epoch, a UTC time like 2026-11-21T18:00:00Z, or a duration like 15m, 2h, 7d"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` to ms since the epoch.
fn parse_rfc3339(t: &str) -> Option<u64> {
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|x| x.parse::<u64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|x| x.parse::<u64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 || y < 1970 {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // days_from_civil (Howard Hinnant).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000).saturating_add(ms))
}

#[cfg(test)]
#[path = "replay_tests.rs"]
pub(crate) mod tests;
