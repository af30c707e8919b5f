// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::inventory::tests::{fold, rest, rpc};
use crate::replay::tests::{demo, replay};
use interlock_policies::DecisionEvent;

fn billing() -> Vec<DecisionEvent> {
    vec![
        rest("b1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        rest("b2", Some("billing-agent"), "GET", "/api/customers/7", "billing-crm-read", 0),
        rpc("b3", "billing-agent", "mcp", "/mcp", &[("initialize", None)], "billing-mcp-session", 0),
        rpc("b4", "billing-agent", "mcp", "/mcp", &[("tools/call", Some("export_customers"))], "billing-export", 0),
        rpc("b5", "billing-agent", "mcp", "/mcp", &[("tools/call", Some("delete_repository"))], "deny-delete-repository", 403),
        rest("b6", Some("billing-agent"), "DELETE", "/api/customers/7", "default-deny", 403),
    ]
}

/// The demo policy with `agent`'s section replaced by the draft's.
fn with_section(s: &Suggestion, agent: &str) -> Value {
    let mut doc = demo();
    doc["agents"][agent] = s.policy["agents"][agent].clone();
    doc
}

#[test]
fn the_draft_compiles_and_allows_exactly_what_was_done() {
    let events = billing();
    let inv = fold(&events);
    let s = suggest(&inv, "billing-agent", &SuggestOptions::default()).unwrap();
    // It is a policy document in its own right.
    Engine::from_json(&s.policy.to_string()).unwrap();
    let grants = s.policy["agents"]["billing-agent"]["grants"].as_array().unwrap();
    let shapes: Vec<Value> = grants.iter().map(|g| json!({"http": g["http"], "mcp": g["mcp"]})).collect();
    assert_eq!(
        shapes,
        [
            json!({"http": {"methods": ["GET"], "hosts": ["crm.local"], "paths": ["/api/customers/{id}"]}, "mcp": null}),
            json!({"http": {"hosts": ["crm.local"], "paths": ["/mcp"]}, "mcp": {"methods": ["initialize"]}}),
            json!({"http": {"hosts": ["crm.local"], "paths": ["/mcp"]}, "mcp": {"tools": ["export_customers"]}}),
        ]
    );
    assert!(grants.iter().all(|g| g["id"].as_str().unwrap().starts_with("suggested-billing-agent-")));
    assert!(grants[0]["description"].as_str().unwrap().contains("Seen 2 allowed"), "{}", grants[0]["description"]);
    // The refused calls are left out, each with why.
    let left: Vec<(&str, &str)> = s.left_out.iter().map(|l| (l.call.as_str(), l.why.as_str())).collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().any(|(c, w)| c.contains("delete_repository") && w.contains("deny or data rule")));
    assert!(left.iter().any(|(c, w)| c.starts_with("DELETE") && w.contains("nothing granted it")));

    // Merged into the policy, replaying what the agent did changes nothing...
    let doc = with_section(&s, "billing-agent");
    let r = replay(&doc, &events, Some("billing-agent"));
    assert_eq!((r.newly_denied, r.newly_allowed), (0, 0), "{:#?}", r.changes);
    // ...and what it never did is refused: the list route the demo grants, a tool, another host.
    let unseen = vec![
        rest("n1", Some("billing-agent"), "GET", "/api/customers", "billing-crm-read", 0),
        rpc("n2", "billing-agent", "mcp", "/mcp", &[("tools/list", None)], "billing-mcp-session", 0),
        {
            let mut e = rest("n3", Some("billing-agent"), "GET", "/api/customers/1", "billing-crm-read", 0);
            e.request.authority = "other.local".to_owned();
            e
        },
    ];
    let r = replay(&doc, &unseen, Some("billing-agent"));
    assert_eq!(r.newly_denied, 3, "{:#?}", r.changes);
}

#[test]
fn include_denied_drafts_default_denied_calls_flagged() {
    let inv = fold(&billing());
    let s = suggest(&inv, "billing-agent", &SuggestOptions { include_denied: true }).unwrap();
    let grants = s.policy["agents"]["billing-agent"]["grants"].as_array().unwrap();
    let flagged: Vec<&Value> = grants.iter().filter(|g| g["description"].as_str().unwrap().contains("REFUSED when seen")).collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["http"]["methods"], json!(["DELETE"]));
    // A call a deny rule refused is never drafted: a grant would not let it through anyway.
    assert!(!s.policy.to_string().contains("\"delete_repository\""));
    assert_eq!(s.left_out.len(), 1);
}

#[test]
fn unknown_or_only_refused_agents_are_errors() {
    let inv = fold(&[rest("r", Some("rogue-agent"), "GET", "/api/customers/1", "default-deny", 403)]);
    assert!(matches!(suggest(&inv, "nobody", &SuggestOptions::default()), Err(SuggestError::UnknownAgent(_))));
    assert!(matches!(suggest(&inv, "rogue-agent", &SuggestOptions::default()), Err(SuggestError::NothingAllowed(_))));
    let s = suggest(&inv, "rogue-agent", &SuggestOptions { include_denied: true }).unwrap();
    assert_eq!(s.policy["agents"]["rogue-agent"]["grants"].as_array().unwrap().len(), 1);
}

#[test]
fn grant_ids_are_slugs() {
    assert_eq!(slug("Billing Agent/v2"), "billing-agent-v2");
    assert_eq!(slug("--a__b--"), "a-b");
}
