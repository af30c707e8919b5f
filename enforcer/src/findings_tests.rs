// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::inventory::tests::{fold, rest, rpc};

const CRM_YAML: &str = r#"
openapi: 3.0.3
info: { title: CRM, version: "1" }
servers:
  - url: /
paths:
  /api/customers:
    get:
      operationId: listCustomers
      deprecated: true
      responses:
        200: { description: ok }
    post:
      responses:
        "201": { description: created }
  /api/customers/{customerId}:
    parameters:
      - { name: customerId, in: path, required: true, schema: { type: string } }
    get:
      operationId: getCustomer
      responses:
        200: { description: ok }
"#;

fn demo_policy() -> PolicyDocument {
    interlock_policies::engine::parse_document(include_str!("../../policies/examples/demo.json")).unwrap()
}

#[test]
fn openapi_yaml_and_json_parse_to_operations() {
    let spec = ApiSpec::parse(CRM_YAML, "crm.yaml").unwrap();
    assert_eq!(spec.title.as_deref(), Some("CRM"));
    assert!(spec.hosts.is_empty());
    let ops: Vec<(&str, &str, bool)> = spec.operations.iter().map(|o| (o.method.as_str(), o.path.as_str(), o.deprecated)).collect();
    assert_eq!(ops, [("GET", "/api/customers", true), ("POST", "/api/customers", false), ("GET", "/api/customers/{customerId}", false)]);
    assert_eq!(spec.operations[0].operation_id.as_deref(), Some("listCustomers"));

    let json = r#"{"openapi": "3.1.0", "servers": [{"url": "https://{env}.example.com:8443/{base}", "variables": {"env": {"default": "crm"}, "base": {"default": "v2"}}}],
                   "paths": {"/orders/{id}": {"delete": {"deprecated": false}, "summary": "not an operation"}}}"#;
    let spec = ApiSpec::parse(json, "orders.json").unwrap();
    assert_eq!(spec.hosts, ["crm.example.com"]);
    assert_eq!(spec.operations.len(), 1);
    assert_eq!((spec.operations[0].method.as_str(), spec.operations[0].path.as_str()), ("DELETE", "/v2/orders/{id}"));
}

#[test]
fn openapi_errors_name_what_is_wrong() {
    let cases = [
        ("swagger 2", r#"{"swagger": "2.0", "paths": {}}"#, "$.swagger"),
        ("no version", "paths: {}", "no `openapi` member"),
        ("version 2", "openapi: 2.0\npaths: {}", "not an OpenAPI 3"),
        ("paths not an object", "openapi: 3.0.0\npaths: []", "$.paths"),
        ("relative path", "openapi: 3.0.0\npaths: {x: {}}", "must start with '/'"),
        ("deprecated not a bool", "openapi: 3.0.0\npaths: {/x: {get: {deprecated: yes please}}}", "deprecated"),
        ("not yaml", "openapi: [", "not valid JSON or YAML"),
    ];
    for (name, text, want) in cases {
        let err = ApiSpec::parse(text, "spec").unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn shadow_and_zombie_apis_against_a_partial_spec() {
    let inv = fold(&[
        rest("1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        rest("2", Some("billing-agent"), "GET", "/api/customers", "billing-crm-read", 0),
        rest("3", Some("rogue-agent"), "DELETE", "/api/customers/7", "default-deny", 403),
        rest("4", Some("triage-bot"), "GET", "/api/admin/users", "deny-admin-api", 403),
        rpc("5", "triage-bot", "mcp", "/mcp", &[("tools/list", None)], "triage-mcp-session", 0),
    ]);
    let spec = ApiSpec::parse(CRM_YAML, "crm.yaml").unwrap();
    let f = findings(&inv, &[spec], None);
    let shadow: Vec<String> = f.shadow_apis.iter().map(|a| format!("{} {}", a.method, a.template)).collect();
    assert_eq!(shadow, ["DELETE /api/customers/{id}", "GET /api/admin/users"], "MCP is governed, not an OpenAPI API");
    assert_eq!(f.shadow_apis[0].agents["rogue-agent"], 1);
    assert_eq!((f.shadow_apis[1].allowed, f.shadow_apis[1].denied), (0, 1));
    let zombies: Vec<String> = f.zombie_apis.iter().map(|a| format!("{} {}", a.method, a.template)).collect();
    assert_eq!(zombies, ["GET /api/customers"]);
    assert_eq!(f.zombie_apis[0].declared_as.as_deref(), Some("GET /api/customers in crm.yaml"));
    assert_eq!(f.unobserved_operations, ["POST /api/customers (crm.yaml)"]);
    assert!(f.notes.iter().any(|n| n.contains("no policy")));

    // A spec for another host judges nothing here: every API is shadow.
    let other = ApiSpec::parse(&CRM_YAML.replace("url: /", "url: https://crm.example.com/"), "other.yaml").unwrap();
    assert_eq!(findings(&inv, &[other], None).shadow_apis.len(), 4);
    // Without a spec there is no judgement at all, and the findings say so.
    let f = findings(&inv, &[], None);
    assert!(f.shadow_apis.is_empty() && f.notes.iter().any(|n| n.contains("--openapi")));
}

#[test]
fn spec_paths_match_inventory_templates() {
    let cases = [
        ("/api/customers/{customerId}", "/api/customers/{id}", true),
        ("/api/users/{name}", "/api/users/alice", true),
        ("/api/customers", "/api/customers/{id}", false),
        ("/api/customers/me", "/api/customers/{id}", false),
        ("/api/customers/", "/api/customers", true),
    ];
    for (declared, template, want) in cases {
        assert_eq!(spec_path_matches(declared, template), want, "{declared} vs {template}");
    }
}

#[test]
fn unused_grants_and_denied_calls_per_agent() {
    let inv = fold(&[
        rest("1", Some("billing-agent"), "GET", "/api/customers/42", "billing-crm-read", 0),
        rest("2", Some("billing-agent"), "DELETE", "/api/customers/42", "default-deny", 403),
        rpc("3", "triage-bot", "mcp", "/mcp", &[("tools/call", Some("search_issues"))], "triage-mcp-tools", 0),
        rest("4", Some("rogue-agent"), "GET", "/api/customers/1", "default-deny", 403),
    ]);
    let f = findings(&inv, &[], Some(&demo_policy()));
    let billing = f.agents.iter().find(|a| a.agent == "billing-agent").unwrap();
    let by_grant: BTreeMap<&str, &GrantFinding> = billing.grants.iter().map(|g| (g.grant.as_str(), g)).collect();
    assert_eq!(by_grant["billing-export"].used, 0, "never used");
    assert_eq!(by_grant["billing-mcp-session"].used, 0);
    assert_eq!(by_grant["billing-crm-read"].unused, ["path /api/customers"], "used for one of its two paths");
    assert_eq!(billing.denied_calls.len(), 1);
    assert_eq!(billing.denied_calls[0].call, "DELETE crm.local/api/customers/{id}");
    assert_eq!(billing.denied_calls[0].rules["default-deny"], 1);

    let triage = f.agents.iter().find(|a| a.agent == "triage-bot").unwrap();
    let tools = triage.grants.iter().find(|g| g.grant == "triage-mcp-tools").unwrap();
    assert_eq!(tools.unused, ["tool get_issue", "tool create_comment", "tool read_file"]);
    assert!(triage.grants.iter().any(|g| g.grant == "triage-llm" && g.used == 0));

    let rogue = f.agents.iter().find(|a| a.agent == "rogue-agent").unwrap();
    assert!(!rogue.in_policy);
    assert_eq!(rogue.denied, 1);
}
