// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::inventory::tests::{rest, rpc, shadowed};

pub(crate) fn demo() -> Value {
    serde_json::from_str(include_str!("../../policies/examples/demo.json")).unwrap()
}

/// Replays `events` (seq 1, 2, ...) through the document `doc`.
pub(crate) fn replay(doc: &Value, events: &[DecisionEvent], agent: Option<&str>) -> ReplayReport {
    let text = doc.to_string();
    let parsed = interlock_policies::engine::parse_document(&text).unwrap();
    let mut r = Replay::new(&parsed, Engine::from_json(&text).unwrap(), None, agent.map(str::to_owned));
    for (i, e) in events.iter().enumerate() {
        r.feed(&StoredEvent { seq: i as u64 + 1, received_unix_ms: 0, event: e.clone() });
    }
    r.finish()
}

/// What the demo policy decided, as the filter would have recorded it.
fn recorded() -> Vec<DecisionEvent> {
    vec![
        rest("b1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        rest("b2", Some("billing-agent"), "GET", "/api/customers/7", "billing-crm-read", 0),
        rest("b3", Some("billing-agent"), "GET", "/api/customers", "billing-crm-read", 0),
        rpc("b4", "billing-agent", "mcp", "/mcp", &[("tools/call", Some("export_customers"))], "billing-export", 0),
        rest("t1", Some("triage-bot"), "GET", "/api/customers/42", "triage-crm-lookup", 0),
        rest("t2", Some("triage-bot"), "GET", "/api/admin/users", "deny-admin-api", 403),
        rpc("t3", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("delete_repository"))], "deny-delete-repository", 403),
        shadowed(rpc("t4", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("read_file"))], "x", 0), "shadow-read-config", "triage-mcp-tools"),
        rpc("t5", "triage-bot", "mcp", "/mcp", &[("initialize", None), ("tools/list", None)], "triage-mcp-session", 0),
        rest("r1", Some("rogue-agent"), "GET", "/api/customers/1", "default-deny", 403),
        rest("u1", None, "GET", "/api/customers/1", "identity-required", 401),
        rpc("x1", "triage-bot", "mcp", "/mcp", &[], "body-too-large", 413),
        rest("x2", Some("triage-bot"), "GET", "/api/customers/3", "per-session", 429),
    ]
}

#[test]
fn the_policy_that_decided_replays_to_no_change() {
    let r = replay(&demo(), &recorded(), None);
    assert_eq!(r.events, 13);
    assert_eq!((r.newly_denied, r.newly_allowed), (0, 0), "{:#?}", r.changes);
    assert_eq!(r.rule_changed, 0, "{:#?}", r.changes);
    assert_eq!(r.replayed, 11);
    assert_eq!(r.skipped.values().sum::<u64>(), 2, "{:?}", r.skipped);
    assert!(r.skipped.keys().any(|k| k.starts_with("body-too-large")));
    // read_file is named by a rule on its arguments: replayed without them, so inexact; no other
    // call is.
    assert_eq!(r.inexact, 1, "{r:#?}");
}

#[test]
fn removing_a_grant_reports_exactly_those_calls_as_newly_denied() {
    let mut candidate = demo();
    let grants = candidate["agents"]["billing-agent"]["grants"].as_array_mut().unwrap();
    grants.retain(|g| g["id"] != "billing-crm-read");
    candidate["version"] = json!("candidate");
    let r = replay(&candidate, &recorded(), None);
    assert_eq!(r.candidate_version, "candidate");
    assert_eq!((r.newly_denied, r.newly_allowed, r.rule_changed), (3, 0, 0), "{:#?}", r.changes);
    assert_eq!(r.changes.len(), 1);
    let g = &r.changes[0];
    assert_eq!((g.agent.as_str(), g.change, g.from_rule.as_str(), g.to_rule.as_str(), g.count), ("billing-agent", Change::NewlyDenied, "billing-crm-read", "default-deny", 3));
    let ids: Vec<&str> = g.examples.iter().map(|e| e.decision_id.as_str()).collect();
    assert_eq!(ids, ["b1", "b2", "b3"]);
    assert_eq!((g.examples[0].status_before, g.examples[0].status_after), (0, 403));
    assert_eq!(g.examples[0].call, "GET crm.local/api/customers/42");
}

#[test]
fn a_looser_candidate_reports_newly_allowed_and_shadow_firings() {
    let mut candidate = demo();
    // Drop the admin deny, grant the rogue agent the CRM, and put the delete deny in shadow mode.
    candidate["rules"].as_array_mut().unwrap().retain(|r| r["id"] != "deny-admin-api");
    candidate["agents"]["rogue-agent"] = json!({"grants": [{"id": "rogue-crm", "http": {"methods": ["GET"], "paths": ["/api/customers/{id}"]}}]});
    let rules = candidate["rules"].as_array_mut().unwrap();
    let delete = rules.iter_mut().find(|r| r["id"] == "deny-delete-repository").unwrap();
    delete["mode"] = json!("shadow");
    delete.as_object_mut().unwrap().remove("kernel");
    candidate["agents"]["triage-bot"]["grants"][1]["mcp"]["tools"].as_array_mut().unwrap().push(json!("delete_repository"));
    let r = replay(&candidate, &recorded(), None);
    let rogue: Vec<_> = r.changes.iter().filter(|g| g.agent == "rogue-agent").collect();
    assert_eq!(rogue.len(), 1);
    assert_eq!((rogue[0].change, rogue[0].from_rule.as_str(), rogue[0].to_rule.as_str(), rogue[0].count), (Change::NewlyAllowed, "default-deny", "rogue-crm", 1));
    assert_eq!(r.changes[0].change, Change::NewlyAllowed, "no call is newly denied: {:#?}", r.changes);
    // The admin call stays refused (now by default-deny: nothing grants it), the delete goes
    // through with the shadow rule recording it.
    let triage: Vec<_> = r.changes.iter().filter(|g| g.agent == "triage-bot").collect();
    assert!(triage.iter().any(|g| g.change == Change::RuleChanged && g.from_rule == "deny-admin-api" && g.to_rule == "default-deny"));
    assert!(triage.iter().any(|g| g.change == Change::NewlyAllowed && g.from_rule == "deny-delete-repository" && g.to_rule == "triage-mcp-tools"));
    assert!(r.shadow.iter().any(|s| s.rule == "deny-delete-repository" && s.agent == "triage-bot" && s.count == 1));
}

#[test]
fn agent_and_since_filters() {
    let r = replay(&demo(), &recorded(), Some("rogue-agent"));
    assert_eq!((r.events, r.replayed), (1, 1));
    let text = demo().to_string();
    let parsed = interlock_policies::engine::parse_document(&text).unwrap();
    let mut r = Replay::new(&parsed, Engine::from_json(&text).unwrap(), Some(crate::inventory::tests::T0 + 1), None);
    r.feed(&StoredEvent { seq: 1, received_unix_ms: 0, event: recorded()[0].clone() });
    assert_eq!(r.finish().events, 0);
}

#[test]
fn reconstructed_requests_carry_identity_and_a_synthetic_body() {
    let e = rpc("m", "triage-bot", "mcp", "/mcp", &[("initialize", None), ("tools/call", Some("get_issue"))], "g", 0);
    let (req, body) = reconstruct(&e).unwrap();
    assert_eq!(req.identity.jwt_agent.as_deref(), Some("triage-bot"));
    assert!(!req.end_of_stream);
    assert_eq!(req.header_values("content-type").next(), Some("application/json"));
    let body: Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(body[1], json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_issue", "arguments": {}}}));
    let (req, body) = reconstruct(&rest("g", Some("a"), "GET", "/x/1", "r", 0)).unwrap();
    assert!(req.end_of_stream && body.is_none());
    let mut no_path = rest("p", Some("a"), "GET", "/x", "malformed-path", 400);
    no_path.request.path = None;
    assert!(reconstruct(&no_path).is_none());
}

#[test]
fn since_accepts_epoch_ms_utc_times_and_durations() {
    let now = 1_763_749_086_000;
    assert_eq!(parse_since("1700000000000", now), Ok(1_700_000_000_000));
    assert_eq!(parse_since("15m", now), Ok(now - 900_000));
    assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
    assert_eq!(parse_since("7d", now), Ok(now - 604_800_000));
    assert_eq!(parse_since("2025-11-21T18:18:06Z", now), Ok(1_763_749_086_000));
    assert_eq!(parse_since("2025-11-21T18:18:06.724Z", now), Ok(1_763_749_086_724));
    assert_eq!(parse_since("2000-02-29T00:00:00Z", now), Ok(951_782_400_000));
    for bad in ["yesterday", "15x", "2025-13-01T00:00:00Z", ""] {
        assert!(parse_since(bad, now).is_err(), "{bad}");
    }
}
