// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::store::tests::TempDir;
use serde_json::json;

pub(crate) const T0: u64 = 1_763_749_086_000;

/// A REST decision: `status` 0 is an allow by `rule`, anything else a refusal by it.
pub(crate) fn rest(id: &str, agent: Option<&str>, method: &str, path: &str, rule: &str, status: u16) -> DecisionEvent {
    serde_json::from_value(json!({
        "decision_id": id,
        "time_unix_ms": T0,
        "policy_version": "v1",
        "rule": rule,
        "action": if status == 0 { "allow" } else { "deny" },
        "status": status,
        "mode": "enforce",
        "reason": "test",
        "identity": {"agent": agent, "user": "alice", "session": "s1"},
        "request": {"method": method, "authority": "crm.local", "path": path},
        "worker": "node/0"
    }))
    .unwrap()
}

/// A JSON-RPC decision on a governed route: `calls` are (method, tool).
pub(crate) fn rpc(id: &str, agent: &str, protocol: &str, route: &str, calls: &[(&str, Option<&str>)], rule: &str, status: u16) -> DecisionEvent {
    let calls: Vec<_> = calls.iter().map(|(m, t)| json!({"method": m, "tool": t, "has_id": true})).collect();
    serde_json::from_value(json!({
        "decision_id": id,
        "time_unix_ms": T0,
        "policy_version": "v1",
        "rule": rule,
        "action": if status == 0 { "allow" } else { "deny" },
        "status": status,
        "mode": "enforce",
        "reason": "test",
        "identity": {"agent": agent, "session": "s2"},
        "request": {"method": "POST", "authority": "crm.local", "path": route, "route": route, "governed": protocol, "protocol": protocol, "calls": calls},
        "worker": "node/0"
    }))
    .unwrap()
}

/// `e` as decided by a shadow deny rule `shadow`, let through by `allowed_by`.
pub(crate) fn shadowed(mut e: DecisionEvent, shadow: &str, allowed_by: &str) -> DecisionEvent {
    e.rule = shadow.to_owned();
    e.action = Action::Deny;
    e.mode = Mode::Shadow;
    e.status = 0;
    e.allowed_by = Some(allowed_by.to_owned());
    e
}

pub(crate) fn fold(events: &[DecisionEvent]) -> Inventory {
    let mut inv = Inventory::default();
    for (i, e) in events.iter().enumerate() {
        inv.observe(i as u64 + 1, e, &Limits::default());
    }
    inv
}

#[test]
fn template_inference_collapses_identifiers_and_keeps_names() {
    let cases = [
        ("two numeric ids", "/api/customers/42", "/api/customers/{id}"),
        ("another numeric id", "/api/customers/7", "/api/customers/{id}"),
        ("long number", "/orders/12345678901234567890/lines", "/orders/{id}/lines"),
        ("uuid", "/api/sessions/3f2b8c1e-9a4d-4e7b-8c2f-1a2b3c4d5e6f", "/api/sessions/{id}"),
        ("upper-case uuid", "/x/3F2B8C1E-9A4D-4E7B-8C2F-1A2B3C4D5E6F", "/x/{id}"),
        ("sha1", "/blobs/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/blobs/{id}"),
        ("sha256", "/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "/blobs/{id}"),
        ("mongo object id", "/docs/507f1f77bcf86cd799439011", "/docs/{id}"),
        ("ulid", "/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/runs/{id}"),
        ("opaque token", "/v1/customers/cus_4f9Xk2LmQ8rT7pZ1", "/v1/customers/{id}"),
        ("two ids", "/api/customers/42/orders/9", "/api/customers/{id}/orders/{id}"),
        ("version segment stays", "/api/v1/users", "/api/v1/users"),
        ("word stays", "/api/admin/users", "/api/admin/users"),
        ("hex-looking word without digits stays", "/deadbeefcafe", "/deadbeefcafe"),
        ("short hex stays", "/abc123", "/abc123"),
        ("root", "/", "/"),
        ("query dropped", "/api/customers/42?x=1", "/api/customers/{id}"),
        ("trailing slash kept", "/api/customers/", "/api/customers/"),
    ];
    for (name, path, want) in cases {
        assert_eq!(infer_template(path), want, "{name}");
    }
}

#[test]
fn declared_templates_keep_their_parameter_names() {
    assert_eq!(template_for("/api/customers/42", Some("/api/customers/{customer_id}")), ("/api/customers/{customer_id}".to_owned(), false));
    // A declared parameter where inference sees a name: the declaration wins.
    assert_eq!(template_for("/api/users/alice", Some("/api/users/{name}")), ("/api/users/{name}".to_owned(), false));
    // A glob (a deny rule's `/api/admin/**`) is not a template: infer instead.
    assert_eq!(template_for("/api/admin/7", Some("/api/admin/**")), ("/api/admin/{id}".to_owned(), true));
    // A declaration that does not match the path is ignored.
    assert_eq!(template_for("/a/1", Some("/b/{x}")), ("/a/{id}".to_owned(), true));
    assert!(template_matches("/api/admin/**", "/api/admin"));
    assert!(template_matches("/api/customers/{id}", "/api/customers/{id}"));
    assert!(!template_matches("/api/customers/{id}", "/api/customers"));
    assert!(!template_matches("/api/customers", "/api/customers/{id}"));
}

#[test]
fn fold_builds_agents_apis_servers_and_counts_each_event_once() {
    let events = vec![
        rest("d1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        rest("d2", Some("billing-agent"), "GET", "/api/customers/7", "billing-crm-read", 0),
        rest("d3", Some("rogue-agent"), "DELETE", "/api/customers/7", "default-deny", 403),
        rest("d4", None, "GET", "/api/customers", "identity-required", 401),
        rpc("d5", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("search_issues"))], "triage-mcp-tools", 0),
        rpc("d6", "triage-bot", "mcp", "/mcp", &[("initialize", None), ("tools/list", None)], "triage-mcp-session", 0),
        shadowed(rpc("d7", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("read_file"))], "x", 0), "shadow-read-config", "triage-mcp-tools"),
        rpc("d8", "triage-bot", "openai", "/v1/chat/completions", &[], "triage-llm", 0),
        rpc("d9", "rogue-agent", "a2a", "/a2a", &[("message/send", None)], "default-deny", 403),
    ];
    let mut inv = fold(&events);
    assert_eq!(inv.events, 9);
    assert_eq!(inv.through_seq, 9);

    // One API for both ids; DELETE is its own operation.
    let get = &inv.apis["crm.local GET /api/customers/{id}"];
    assert_eq!((get.usage.counts.calls, get.usage.counts.allowed, get.usage.counts.denied), (2, 2, 0));
    assert!(get.inferred);
    assert_eq!(get.examples, vec!["/api/customers/42", "/api/customers/7"]);
    assert_eq!(get.usage.agents["billing-agent"], 2);
    assert_eq!(inv.apis["crm.local DELETE /api/customers/{id}"].usage.decisions["default-deny"], 1);
    assert_eq!(inv.apis.len(), 3, "{:?}", inv.apis.keys().collect::<Vec<_>>());

    // Agents, the unidentified caller included.
    assert_eq!(inv.agents.keys().map(String::as_str).collect::<Vec<_>>(), ["(unidentified)", "billing-agent", "rogue-agent", "triage-bot"]);
    let triage = &inv.agents["triage-bot"];
    assert_eq!((triage.counts.calls, triage.counts.allowed, triage.counts.denied, triage.counts.shadow), (4, 4, 0, 1));
    let read_file = triage.observed.values().find(|c| c.tool.as_deref() == Some("read_file")).unwrap();
    assert_eq!(read_file.granted_by["triage-mcp-tools"], 1, "a shadow decision is granted by allowed_by");
    assert_eq!(read_file.rules["shadow-read-config"], 1);

    // MCP server, methods and tools.
    let mcp = &inv.mcp_servers["crm.local /mcp"];
    assert_eq!(mcp.tools.keys().map(String::as_str).collect::<Vec<_>>(), ["read_file", "search_issues"]);
    assert_eq!(mcp.methods.keys().map(String::as_str).collect::<Vec<_>>(), ["initialize", "tools/call", "tools/list"]);
    assert_eq!(mcp.tools["read_file"].counts.shadow, 1);
    // LLM and A2A.
    assert_eq!(inv.llm_providers["crm.local /v1/chat/completions"].protocol, "openai");
    assert_eq!(inv.a2a_agents["crm.local /a2a"].methods["message/send"].counts.denied, 1);
    // Rules and coverage.
    assert_eq!(inv.rules["shadow-read-config"].shadow_would_deny, 1);
    assert_eq!(inv.rules["default-deny"].enforce_deny, 2);
    assert_eq!(inv.coverage.governed, 5);
    assert_eq!(inv.coverage.uninspectable, 0);

    // Folding the same events again changes nothing.
    let before = inv.clone();
    for (i, e) in events.iter().enumerate() {
        inv.observe(i as u64 + 1, e, &Limits::default());
    }
    assert_eq!(inv, before);
}

#[test]
fn coverage_counts_uninspectable_refusals() {
    let mut too_large = rpc("a", "triage-bot", "mcp", "/mcp", &[], "body-too-large", 413);
    too_large.request.calls.clear();
    let encoded = rpc("b", "triage-bot", "mcp", "/mcp", &[], "unsupported-encoding", 415);
    let fine = rpc("c", "triage-bot", "mcp", "/mcp", &[("tools/list", None)], "triage-mcp-session", 0);
    let malformed = rpc("d", "triage-bot", "a2a", "/a2a", &[], "malformed-body", 400);
    let inv = fold(&[too_large, encoded, fine.clone(), fine, malformed]);
    assert_eq!((inv.coverage.governed, inv.coverage.uninspectable, inv.coverage.inspected()), (5, 3, 2));
    assert!((inv.coverage.inspected_percent() - 40.0).abs() < 1e-9);
    assert_eq!(inv.coverage.by_route["mcp"], RouteCoverage { governed: 4, uninspectable: 2 });
    assert_eq!(inv.coverage.uninspectable_by_rule["malformed-body"], 1);
    assert!((Coverage::default().inspected_percent() - 100.0).abs() < 1e-9);
}

#[test]
fn caps_bound_memory_and_count_what_they_drop() {
    let limits = Limits { apis: 3, agents: 2, ..Limits::default() };
    let mut inv = Inventory::default();
    for i in 0..10u64 {
        let e = rest(&format!("d{i}"), Some(&format!("agent-{i}")), "GET", &format!("/r{i}/x"), "r", 0);
        inv.observe(i + 1, &e, &limits);
    }
    assert_eq!(inv.apis.len(), 3);
    assert_eq!(inv.agents.len(), 2);
    assert_eq!(inv.overflow["apis"], 7);
    assert_eq!(inv.overflow["agents"], 8);
    assert_eq!(inv.events, 10, "every event still counts");
}

#[test]
fn timeline_widens_instead_of_growing() {
    let mut inv = Inventory::default();
    let limits = Limits { buckets: 10, ..Limits::default() };
    for i in 0..1000u64 {
        let mut e = rest(&format!("d{i}"), Some("a"), "GET", "/x", "r", if i % 4 == 0 { 403 } else { 0 });
        e.time_unix_ms = T0 + i * 1000;
        inv.observe(i + 1, &e, &limits);
    }
    assert!(inv.timeline.buckets.len() <= 10, "{}", inv.timeline.buckets.len());
    assert!(inv.timeline.bucket_ms >= 100_000);
    let total: u64 = inv.timeline.buckets.values().map(Bucket::total).sum();
    let denied: u64 = inv.timeline.buckets.values().map(|b| b.denied).sum();
    assert_eq!((total, denied), (1000, 250));
    assert!(inv.timeline.coarsened(3).buckets.len() <= 3);
}

pub(crate) fn write_log(dir: &Path, events: &[(u64, DecisionEvent)], append: bool) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(append).write(true).truncate(!append).open(dir.join(EVENTS_FILE)).unwrap();
    for (seq, e) in events {
        let rec = StoredEvent { seq: *seq, received_unix_ms: T0, event: e.clone() };
        writeln!(f, "{}", serde_json::to_string(&rec).unwrap()).unwrap();
    }
}

#[test]
fn refresh_persists_and_resumes_where_it_stopped() {
    let dir = TempDir::new("inventory-refresh");
    let e = |i: u64| rest(&format!("d{i}"), Some("billing-agent"), "GET", &format!("/api/customers/{i}"), "g", 0);
    write_log(&dir.0, &[(1, e(1)), (2, e(2))], false);
    let inv = refresh(&dir.0, &Limits::default()).unwrap();
    assert_eq!((inv.events, inv.through_seq), (2, 2));
    assert_eq!(load(&dir.0), inv, "persisted");

    // New events, and a torn last line (a write in progress): folded up to the whole records.
    write_log(&dir.0, &[(3, e(3))], true);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.0.join(EVENTS_FILE)).unwrap();
        write!(f, "{{\"seq\":4,\"received_unix").unwrap();
    }
    let inv = refresh(&dir.0, &Limits::default()).unwrap();
    assert_eq!((inv.events, inv.through_seq), (3, 3));
    assert_eq!(inv.apis["crm.local GET /api/customers/{id}"].usage.counts.calls, 3);
    assert_eq!(from_log(&dir.0, &Limits::default()).unwrap().events, 3, "a rebuild agrees");

    // The log was moved aside and a new one started: the inventory starts over.
    write_log(&dir.0, &[(1, rest("n1", Some("triage-bot"), "GET", "/x", "g", 0))], false);
    let inv = refresh(&dir.0, &Limits::default()).unwrap();
    assert_eq!(inv.events, 1);
    assert_eq!(inv.agents.keys().collect::<Vec<_>>(), ["triage-bot"]);

    // A corrupt persisted inventory is a cache miss, not an error.
    std::fs::write(dir.0.join(INVENTORY_FILE), b"{not json").unwrap();
    assert_eq!(refresh(&dir.0, &Limits::default()).unwrap().events, 1);
}

#[test]
fn iso8601_formats_utc() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(iso8601(1_763_749_086_724), "2025-11-21T18:18:06.724Z");
}

