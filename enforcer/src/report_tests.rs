// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::audit::AuditLog;
use crate::inventory::tests::{T0, fold, rest, rpc, shadowed};
use crate::store::tests::TempDir;
use serde_json::json;

fn demo_doc() -> PolicyDocument {
    interlock_policies::engine::parse_document(include_str!("../../policies/examples/demo.json")).unwrap()
}

fn sample() -> Inventory {
    let mut late = rest("d3", Some("<script>alert(1)</script>"), "GET", "/api/customers/3", "default-deny", 403);
    late.time_unix_ms = T0 + 5_000;
    fold(&[
        rest("d1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        shadowed(rpc("d2", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("read_file"))], "x", 0), "shadow-read-config", "triage-mcp-tools"),
        late,
        rpc("d4", "triage-bot", "mcp", "/mcp", &[], "unsupported-content-type", 415),
    ])
}

#[test]
fn receipts_and_the_chain_status_come_from_the_audit_log() {
    let dir = TempDir::new("report-audit");
    let path = dir.0.join(AUDIT_FILE);
    let (r, a) = receipts(&path);
    assert_eq!((r.total, a.status.as_str(), a.present), (0, "no receipts", false));

    let mut log = AuditLog::open(&dir.0).unwrap();
    log.append(json!({"kind": "start", "kernel": {}})).unwrap();
    for (i, d) in [1.5, 0.25, 3.0].iter().enumerate() {
        log.append(json!({"kind": "receipt", "decision_id": format!("d{i}"), "rule": "deny-delete-repository", "agent": "triage-bot",
                          "mode": "enforce", "outcome": "enforced", "decision_unix_ms": T0, "decision_to_kernel_ms": d,
                          "sockets_destroyed": 1, "quarantine": {"tag": "0x1"}})).unwrap();
    }
    drop(log);
    let (r, a) = receipts(&path);
    assert_eq!((a.status.as_str(), a.records), ("verified", 4));
    assert_eq!(r.total, 3);
    assert_eq!((r.delays.min_ms, r.delays.median_ms, r.delays.max_ms), (Some(0.25), Some(1.5), Some(3.0)));
    assert!(r.recent[0].quarantined);
    assert_eq!(r.recent[2].decision_id, "d2");

    let text = std::fs::read_to_string(&path).unwrap().replacen("\"sockets_destroyed\":1", "\"sockets_destroyed\":0", 1);
    std::fs::write(&path, text).unwrap();
    let (_, a) = receipts(&path);
    assert_eq!((a.status.as_str(), a.broken_line), ("broken", Some(2)));
}

#[test]
fn shadow_rules_and_coverage() {
    let r = assemble(sample(), Receipts::default(), AuditStatus::default(), Vec::new(), Some(&demo_doc()), T0);
    assert_eq!(r.shadow_rules.len(), 1);
    assert_eq!((r.shadow_rules[0].rule.as_str(), r.shadow_rules[0].would_deny), ("shadow-read-config", 1));
    assert_eq!(r.shadow_rules[0].agents["triage-bot"], 1);
    assert_eq!((r.coverage.governed, r.coverage.uninspectable, r.coverage.inspected_percent), (2, 1, 50.0));
    assert_eq!(r.policy_version.as_deref(), Some("demo-2026-11-21"));
    // Without the policy, the rule is still reported from what it did.
    let r = assemble(sample(), Receipts::default(), AuditStatus::default(), Vec::new(), None, T0);
    assert_eq!(r.shadow_rules[0].rule, "shadow-read-config");
}

#[test]
fn the_page_is_self_contained_escaped_and_shows_the_sections() {
    let report = assemble(sample(), Receipts::default(), AuditStatus { status: "no receipts".into(), ..AuditStatus::default() }, Vec::new(), Some(&demo_doc()), T0);
    let html = render_html(&report);
    for id in ["id=\"agents\"", "id=\"apis\"", "id=\"mcp\"", "id=\"decisions-chart\"", "id=\"coverage-figure\"", "id=\"audit-status\"", "id=\"shadow-table\""] {
        assert!(html.contains(id), "{id} missing");
    }
    assert!(html.contains("<code>/api/customers/{id}</code>"));
    assert!(html.contains("50.0%"));
    assert!(html.contains("no receipts"));
    assert_eq!(html.matches("<rect class=\"allowed\"").count(), 1, "one bucket with allowed calls");
    assert!(html.contains("<rect class=\"denied\""));
    assert!(html.contains("<rect class=\"shadow\""));
    // Hostile names are text, never markup; nothing is fetched from anywhere.
    assert!(!html.contains("<script"), "agent name not escaped");
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.contains("<link") && !html.contains("src=") && !html.contains("@import"));
    assert!(!html.contains("{{"), "a placeholder was left");
}

#[test]
fn build_and_write_from_a_data_directory() {
    let dir = TempDir::new("report-build");
    crate::inventory::tests::write_log(&dir.0, &[(1, rest("d1", Some("billing-agent"), "GET", "/api/customers/42", "g", 0))], false);
    let r = build(&dir.0, Vec::new(), None, T0).unwrap();
    assert_eq!(r.inventory.events, 1);
    assert_eq!(r.audit.status, "no receipts");
    let out = dir.0.join("out");
    write(&out, &r).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["inventory"]["events"], 1);
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().starts_with("<!DOCTYPE html>"));
}
