//! Unit tests of compilation and evaluation. The request-level behaviour of the demo policy is
//! covered by the corpus (`tests/corpus/`); these pin the semantics the corpus relies on.

use super::*;
use crate::request::VerifiedIdentity;

fn engine(policy: serde_json::Value) -> Engine {
    Engine::from_json(&policy.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn get(agent: &str, path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        authority: "api.example.com".into(),
        path: path.into(),
        end_of_stream: true,
        identity: VerifiedIdentity { jwt_agent: Some(agent.into()), ..Default::default() },
        ..Default::default()
    }
}

fn mcp(agent: &str, body: serde_json::Value) -> (HttpRequest, Vec<u8>) {
    let body = body.to_string().into_bytes();
    let req = HttpRequest {
        method: "POST".into(),
        authority: "localhost".into(),
        path: "/mcp".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        end_of_stream: false,
        identity: VerifiedIdentity { jwt_agent: Some(agent.into()), ..Default::default() },
    };
    (req, body)
}

fn decide(e: &Engine, req: &HttpRequest, body: Option<&[u8]>) -> (Action, u16, String) {
    let d = e.evaluate(req, body).decision;
    (d.action, d.status, d.rule.into())
}

#[test]
fn compile_errors_name_the_json_path_and_value() {
    for (name, policy, path) in [
        ("unknown field", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "http": {}, "bogus": 1}]}), "$.rules[0].bogus"),
        ("bad effect", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "maybe"}]}), "$.rules[0].effect"),
        ("bad template", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "http": {"paths": ["api"]}}]}), "$.rules[0].http.paths[0]"),
        ("lower-case method", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["get"]}}]}), "$.rules[0].http.methods[0]"),
        ("empty rule", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny"}]}), "$.rules[0]"),
        ("bad tool", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "mcp": {"tools": ["a b"]}}]}), "$.rules[0].mcp.tools[0]"),
        ("two arg kinds", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "mcp": {"tools": ["t"], "arguments": [{"pointer": "/p", "exact": "a", "glob": "b"}]}}]}), "$.rules[0].mcp.arguments[0]"),
        ("unknown a2a", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "a2a": {"methods": ["nope"]}}]}), "$.rules[0].a2a.methods[0]"),
        ("unknown agent", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "deny", "agents": ["ghost"], "http": {}}]}), "$.rules[0].agents[0]"),
        ("duplicate id", serde_json::json!({"version": "v", "agents": {"a": {"grants": [{"id": "r", "http": {}}]}}, "rules": [{"id": "r", "effect": "deny", "http": {}}]}), "$.agents[\"a\"].grants[0].id"),
        ("reserved id", serde_json::json!({"version": "v", "rules": [{"id": "default-deny", "effect": "deny", "http": {}}]}), "$.rules[0].id"),
        ("limit key twice", serde_json::json!({"version": "v", "rate_limits": [{"id": "l", "key": ["session", "session"], "requests": 1, "per_seconds": 1}]}), "$.rate_limits[0].key"),
        ("limit zero", serde_json::json!({"version": "v", "rate_limits": [{"id": "l", "key": ["session"], "requests": 0, "per_seconds": 1}]}), "$.rate_limits[0].requests"),
        ("revoke on allow", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "allow", "http": {}, "revoke": {"principal": "session"}}]}), "$.rules[0].revoke"),
        ("kernel on allow", serde_json::json!({"version": "v", "rules": [{"id": "r", "effect": "allow", "http": {}, "kernel": {"terminate": "connection"}}]}), "$.rules[0].kernel"),
        ("body limit", serde_json::json!({"version": "v", "inspection": {"max_body_bytes": 0}}), "$.inspection.max_body_bytes"),
        ("empty version", serde_json::json!({"version": ""}), "$.version"),
    ] {
        let err = Engine::from_json(&policy.to_string()).err().unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(err.path(), path, "{name}: {err}");
        // The filter compiles from an already parsed value: the same refusal, the same path.
        let from_value = Engine::from_value(policy.clone()).err().unwrap_or_else(|| panic!("{name}: accepted from a value"));
        assert_eq!(from_value.path(), path, "{name} (from a value): {from_value}");
    }
}

#[test]
fn duplicate_keys_in_the_policy_are_refused() {
    let err = Engine::from_json(r#"{"version": "a", "version": "b"}"#).err().unwrap();
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[test]
fn deny_beats_allow_and_default_closes() {
    let e = engine(serde_json::json!({
        "version": "v",
        "agents": {"a": {"grants": [{"id": "all-api", "http": {"paths": ["/api/**"]}}]}},
        "rules": [{"id": "no-admin", "effect": "deny", "http": {"paths": ["/api/admin/**"]}}]
    }));
    assert_eq!(decide(&e, &get("a", "/api/users"), None), (Action::Allow, 0, "all-api".into()));
    assert_eq!(decide(&e, &get("a", "/api/admin/x"), None), (Action::Deny, 403, "no-admin".into()));
    assert_eq!(decide(&e, &get("a", "/other"), None), (Action::Deny, 403, "default-deny".into()));
    assert_eq!(decide(&e, &get("b", "/api/users"), None), (Action::Deny, 403, "default-deny".into()));
}

#[test]
fn reasons_name_the_deciding_rule() {
    // Formatted once per rule when the policy is compiled (and a fixed text for the built-in
    // default allow); a decision reads exactly as when each one formatted its own.
    assert_eq!(DEFAULT_ALLOW_REASON, rule_reason(Effect::Allow, builtin::DEFAULT_ALLOW));
    let e = engine(serde_json::json!({
        "version": "v",
        "default_action": "allow",
        "agents": {"a": {"grants": [{"id": "all-api", "http": {"paths": ["/api/**"]}}]}},
        "rules": [{"id": "no-admin", "effect": "deny", "http": {"paths": ["/api/admin/**"]}}]
    }));
    for (path, rule, reason) in [
        ("/api/users", "all-api", r#"allowed by "all-api""#),
        ("/api/admin/x", "no-admin", r#"denied by rule "no-admin""#),
        ("/other", "default-allow", r#"allowed by "default-allow""#),
    ] {
        let d = e.evaluate(&get("a", path), None).decision;
        assert_eq!((d.rule.as_str(), d.reason.as_str()), (rule, reason), "{path}");
    }
}

#[test]
fn hosts_and_methods_restrict_a_rule() {
    let e = engine(serde_json::json!({
        "version": "v",
        "agents": {"a": {"grants": [{"id": "g", "http": {"methods": ["GET"], "hosts": ["*.example.com"], "paths": ["/x"]}}]}}
    }));
    assert_eq!(decide(&e, &get("a", "/x"), None).0, Action::Allow);
    let mut other_host = get("a", "/x");
    other_host.authority = "api.example.org".into();
    assert_eq!(decide(&e, &other_host, None).2, "default-deny");
    let mut with_port = get("a", "/x");
    with_port.authority = "API.Example.com.:8443".into();
    assert_eq!(decide(&e, &with_port, None).0, Action::Allow, "host is case-folded, port and trailing dot dropped");
    let mut post = get("a", "/x");
    post.method = "POST".into();
    assert_eq!(decide(&e, &post, None).2, "default-deny");
}

#[test]
fn rules_for_named_agents_apply_only_to_them() {
    let e = engine(serde_json::json!({
        "version": "v",
        "default_action": "allow",
        "agents": {"a": {}, "b": {}},
        "rules": [{"id": "a-no-x", "effect": "deny", "agents": ["a"], "http": {"paths": ["/x"]}}]
    }));
    assert_eq!(decide(&e, &get("a", "/x"), None).2, "a-no-x");
    assert_eq!(decide(&e, &get("b", "/x"), None), (Action::Allow, 0, "default-allow".into()));
}

#[test]
fn shadow_rules_record_without_acting() {
    let e = engine(serde_json::json!({
        "version": "v",
        "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}],
        "agents": {"a": {"grants": [{"id": "tools", "mcp": {"tools": ["read_file"]}}]}},
        "rules": [{"id": "watch", "effect": "deny", "mode": "shadow",
                   "mcp": {"tools": ["read_file"], "arguments": [{"pointer": "/path", "prefix": "secret/"}]}}]
    }));
    let (req, body) = mcp("a", serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "secret/key"}}}));
    let d = e.evaluate(&req, Some(&body)).decision;
    assert!(!d.blocks());
    assert_eq!((d.action, d.mode, d.rule.as_str(), d.allowed_by.as_deref()), (Action::Deny, Mode::Shadow, "watch", Some("tools")));
    let (req, body) = mcp("a", serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "public/readme"}}}));
    let d = e.evaluate(&req, Some(&body)).decision;
    assert_eq!((d.action, d.mode, d.rule.as_str()), (Action::Allow, Mode::Enforce, "tools"));
}

#[test]
fn deny_argument_conditions_fail_closed_on_non_strings() {
    let e = engine(serde_json::json!({
        "version": "v",
        "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}],
        "agents": {"a": {"grants": [{"id": "tools", "mcp": {"tools": ["read_file"]}}]}},
        "rules": [{"id": "no-config", "effect": "deny", "mcp": {"tools": ["read_file"], "arguments": [{"pointer": "/path", "glob": "config/**"}]}}]
    }));
    for (name, path, denied) in [
        ("plain", serde_json::json!("config/.env"), true),
        ("dot slash", serde_json::json!("./config/.env"), true),
        ("parent", serde_json::json!("a/../config/.env"), true),
        ("backslash", serde_json::json!("config\\.env"), true),
        ("array", serde_json::json!(["config/.env"]), true),
        ("other file", serde_json::json!("docs/readme"), false),
        ("configs sibling", serde_json::json!("configs/x"), false),
    ] {
        let (req, body) = mcp("a", serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": path}}}));
        let d = e.evaluate(&req, Some(&body)).decision;
        assert_eq!(d.rule == "no-config", denied, "{name}: {d:?}");
    }
}

#[test]
fn on_request_body_refuses_what_it_cannot_read() {
    let e = engine(serde_json::json!({
        "version": "v",
        "inspection": {"max_body_bytes": 64},
        "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}],
        "agents": {"a": {"grants": [{"id": "any", "mcp": {}}]}}
    }));
    let (req, _) = mcp("a", serde_json::json!({}));
    let HeadersVerdict::NeedBody(p) = e.on_request_headers(&req) else { panic!("governed POST needs its body") };
    assert_eq!(p.max_body_bytes(), 64);
    let big = vec![b' '; 65];
    assert_eq!(e.on_request_body(p.clone(), &big).decision.status, 413);
    assert_eq!(e.on_request_body(p.clone(), b"").decision.rule, "malformed-body");
    let ok = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(e.on_request_body(p, ok).decision.rule, "any");
}

#[test]
fn a_jsonrpc_refusal_echoes_the_request_id() {
    let e = engine(serde_json::json!({"version": "v", "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}], "agents": {"a": {}}}));
    let (req, body) = mcp("a", serde_json::json!({"jsonrpc": "2.0", "id": "req-7", "method": "tools/list"}));
    let eval = e.evaluate(&req, Some(&body));
    let reply: serde_json::Value = serde_json::from_str(&eval.reply_body("d1")).unwrap();
    assert_eq!(reply["id"], "req-7");
    assert_eq!(reply["error"]["code"], -32001);
    assert_eq!(reply["error"]["data"]["rule"], "default-deny");
    assert_eq!(reply["error"]["data"]["decision_id"], "d1");
}

#[test]
fn mtls_identity_maps_to_an_agent_and_conflicts_are_refused() {
    let e = engine(serde_json::json!({
        "version": "v",
        "identity": {"mtls_agents": {"spiffe://td/ns/x/sa/a": "a"}},
        "agents": {"a": {"grants": [{"id": "g", "http": {}}]}, "b": {}}
    }));
    let mut req = get("a", "/x");
    req.identity = VerifiedIdentity { peer_principal: Some("spiffe://td/ns/x/sa/a".into()), ..Default::default() };
    assert_eq!(decide(&e, &req, None).2, "g");
    req.identity.jwt_agent = Some("b".into());
    assert_eq!(decide(&e, &req, None), (Action::Deny, 403, "identity-conflict".into()));
    req.identity = VerifiedIdentity { peer_principal: Some("spiffe://td/ns/x/sa/unknown".into()), ..Default::default() };
    assert_eq!(decide(&e, &req, None), (Action::Deny, 401, "identity-required".into()));
}

#[test]
fn lookup_is_indexed_not_scanned() {
    // 20,000 grants with distinct paths: the request's candidates are the few whose key matches,
    // not the rule list (checked through the tables, not timing; timing lives in the benches).
    let grants: Vec<_> = (0..20_000).map(|i| serde_json::json!({"id": format!("g{i}"), "http": {"paths": [format!("/svc{i}/items/{{id}}")]}})).collect();
    let e = engine(serde_json::json!({"version": "v", "agents": {"a": {"grants": grants}}}));
    let scope = e.scope_of("a").unwrap();
    let mut candidates = Vec::new();
    scope.allow.http_paths.lookup(&["svc12345", "items", "9"], &mut |i| candidates.push(*i));
    assert_eq!(candidates.len(), 1);
    assert_eq!(decide(&e, &get("a", "/svc12345/items/9"), None), (Action::Allow, 0, "g12345".into()));
}

#[test]
fn an_unauthenticated_jsonrpc_call_gets_a_jsonrpc_401_with_its_id() {
    let e = engine(serde_json::json!({"version": "v", "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}]}));
    let (mut req, body) = mcp("x", serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}));
    req.identity = VerifiedIdentity::default();
    let HeadersVerdict::NeedBody(p) = e.on_request_headers(&req) else { panic!("reads the body for the id") };
    let eval = e.on_request_body(p, &body);
    assert_eq!((eval.decision.status, eval.decision.rule.as_str()), (401, "identity-required"));
    let reply: serde_json::Value = serde_json::from_str(&eval.reply_body("d")).unwrap();
    assert_eq!(reply["id"], 3);
    assert_eq!(reply["error"]["data"]["rule"], "identity-required");
    // Whatever the body holds, the decision stays 401; an unreadable body just has no id.
    let HeadersVerdict::NeedBody(p) = e.on_request_headers(&req) else { panic!() };
    let eval = e.on_request_body(p, b"{not json");
    assert_eq!(eval.decision.status, 401);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&eval.reply_body("d")).unwrap()["id"], serde_json::Value::Null);
}

#[test]
fn revoked_principals_are_refused_whatever_else_they_send() {
    use crate::revocation::{Revocation, RevocationSet};
    use crate::schema::Principal;
    let e = engine(serde_json::json!({"version": "v", "agents": {"a": {"grants": [{"id": "g", "http": {}}]}}}));
    let revs = RevocationSet::new([Revocation {
        id: "rv-1".into(),
        kind: Principal::Session,
        value: "s1".into(),
        reason: Some("stolen".into()),
        created_unix_ms: 0,
        expires_unix_ms: Some(10_000),
        source: "cli".into(),
    }]);
    let mut req = get("a", "/x");
    req.identity.jwt_session = Some("s1".into());
    req.headers.push(("traceparent".into(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()));
    let HeadersVerdict::Decided(eval) = e.on_request_headers_live(&req, &revs, 5_000) else { panic!() };
    assert_eq!((eval.decision.status, eval.decision.rule.as_str()), (403, "revoked"));
    assert!(eval.decision.reason.contains("stolen"));
    let HeadersVerdict::Decided(eval) = e.on_request_headers_live(&req, &revs, 10_000) else { panic!() };
    assert_eq!(eval.decision.rule, "g", "expired");
}

#[test]
fn rate_limit_checks_follow_the_key_and_the_agents() {
    let e = engine(serde_json::json!({
        "version": "v",
        "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}],
        "agents": {"a": {"grants": [{"id": "g", "http": {}}]}, "b": {"grants": [{"id": "gb", "http": {}}]}},
        "rate_limits": [
            {"id": "per-session", "key": ["session"], "requests": 20, "per_seconds": 10},
            {"id": "per-agent-tool", "key": ["agent", "tool"], "requests": 5, "per_seconds": 60, "agents": ["a"]}
        ]
    }));
    let (mut req, body) = mcp("a", serde_json::json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "y"}}
    ]));
    req.identity.jwt_session = Some("s1".into());
    let eval = e.evaluate(&req, Some(&body));
    let checks: Vec<(String, String)> = e.rate_limit_checks(&eval).into_iter().map(|c| (c.limit, c.key)).collect();
    assert_eq!(checks, [
        ("per-session".to_owned(), "2:s1|".to_owned()),
        ("per-agent-tool".to_owned(), "1:a|1:x".to_owned()),
        ("per-agent-tool".to_owned(), "1:a|1:y".to_owned()),
    ]);
    // Agent b: only the session limit applies; no session claim: not counted by it.
    let (req_b, body_b) = mcp("b", serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert!(e.rate_limit_checks(&e.evaluate(&req_b, Some(&body_b))).is_empty());
    // Over the limit: 429 with retry-after, rule = the limit's id.
    let check = e.rate_limit_checks(&eval).remove(0);
    let limited = e.rate_limited(eval, &check, 1_200);
    assert_eq!((limited.decision.status, limited.decision.rule.as_str(), limited.decision.retry_after_secs), (429, "per-session", Some(2)));
    let reply: serde_json::Value = serde_json::from_str(&limited.reply_body("d")).unwrap();
    assert_eq!(reply["error"]["data"]["status"], 429);
}

#[test]
fn rules_without_paths_are_indexed_by_host_or_method() {
    let grants: Vec<_> = (0..5_000)
        .map(|i| serde_json::json!({"id": format!("h{i}"), "http": {"hosts": [format!("svc{i}.example.com")]}}))
        .chain([serde_json::json!({"id": "deletes", "http": {"methods": ["DELETE"]}})])
        .collect();
    let e = engine(serde_json::json!({"version": "v", "agents": {"a": {"grants": grants}}}));
    let scope = e.scope_of("a").unwrap();
    let allow = scope.allow.other.as_deref().unwrap();
    assert!(allow.http_any.is_empty(), "nothing left in the scanned list");
    assert_eq!(allow.http_hosts.get("svc4321.example.com").map(<[u32]>::len), Some(1));
    let mut req = get("a", "/anything");
    req.authority = "svc4321.example.com".into();
    assert_eq!(decide(&e, &req, None).2, "h4321");
    req.authority = "other.example.com".into();
    req.method = "DELETE".into();
    assert_eq!(decide(&e, &req, None).2, "deletes");
}

/// `decide_line` trusts a path trie's candidates to match their template, so the trie (folded
/// templates walked with the folded path, for deny tables) and `template_matches` must agree.
#[test]
fn the_path_trie_and_template_matching_agree() {
    use crate::template::PathTrie;
    let templates = ["/", "/api", "/api/customers/{id}", "/API/Admin/**", "/**", "/api/*/x", "/v1/chat/completions", "/a/{b}/{c}/**"];
    let paths = [
        "/", "/api", "/API", "/api/customers", "/api/customers/42", "/api/Customers/42", "/api/customers/42/x", "/api/admin",
        "/api/ADMIN/users/7", "/Api/q/x", "/api/q/X", "/v1/chat/completions", "/V1/Chat/Completions", "/a/b/c", "/a/b", "/a/B/c/d/e",
    ];
    for fold in [false, true] {
        for text in templates {
            let t = PathTemplate::parse(text).unwrap();
            let mut trie = PathTrie::default();
            trie.insert(&t, fold, ());
            for path in paths {
                let line = Line::new("GET", "h", path);
                let walked = if fold { &*line.folded } else { line.path };
                let mut by_trie = false;
                trie.lookup_path(walked, &mut |()| by_trie = true);
                assert_eq!(by_trie, template_matches(&t, &line, fold), "{text} on {path}, fold {fold}");
            }
        }
    }
}

#[test]
fn repeated_header_names_are_found_at_any_length() {
    let h = |names: &[&str]| names.iter().map(|n| ((*n).to_owned(), String::new())).collect::<Vec<_>>();
    assert!(!repeats_a_name(&h(&[])));
    assert!(!repeats_a_name(&h(&["accept", "user-agent", "traceparent"])));
    assert!(repeats_a_name(&h(&["accept", "traceparent", "user-agent", "traceparent"])));
    assert!(repeats_a_name(&h(&["a", "a"])));
    // Beyond the pairwise bound the answer is "maybe", and the security-header lookup decides.
    let many: Vec<String> = (0..20).map(|i| format!("x-{i}")).collect();
    assert!(repeats_a_name(&h(&many.iter().map(String::as_str).collect::<Vec<_>>())));
    // The decision is unchanged either way: a duplicated security header among many is refused.
    let e = engine(serde_json::json!({ "version": "v", "default_action": "allow" }));
    for extra in [0, 20] {
        let mut req = get("a", "/x");
        req.headers = (0..extra).map(|i| (format!("x-{i}"), String::new())).collect();
        req.headers.push(("host".into(), "a".into()));
        req.headers.push(("host".into(), "b".into()));
        assert_eq!(decide(&e, &req, None), (Action::Deny, 400, builtin::DUPLICATE_HEADER.to_owned()), "{extra} other headers");
    }
}

/// Deterministic xorshift64, so the generated policies replay exactly without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn some<'a>(&mut self, from: &[&'a str], max: usize) -> Vec<&'a str> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.pick(from)).collect()
    }
}

const SEGMENTS: [&str; 8] = ["api", "API", "svc1", "svc2", "items", "Admin", "admin", "x"];
const TEMPLATE_SEGMENTS: [&str; 11] = ["api", "API", "svc1", "svc2", "items", "Admin", "admin", "x", "{id}", "*", "{n}"];
const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PURGE", "PATCH"];
const HOSTS: [&str; 3] = ["a.example.com", "b.example.com", "c.test"];
const TOOLS: [&str; 6] = ["t1", "T1", "tool_2", "danger", "Danger", "read_file"];
const RPC_METHODS: [&str; 4] = ["tools/call", "tools/list", "ping", "Tools/Call"];
const A2A_METHODS: [&str; 4] = ["message/send", "tasks/get", "SendMessage", "tasks/cancel"];
const AGENTS: [&str; 4] = ["a0", "a1", "a2", "a3"];

/// A random rule body (without id, effect, agents): HTTP and/or MCP or A2A clauses over a small
/// vocabulary, so that rules collide on keys, paths and case.
fn random_clauses(rng: &mut Rng) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let mut rule = serde_json::Map::new();
    let rpc = rng.below(3);
    if rpc == 0 || rng.below(3) == 0 {
        let mut http = serde_json::Map::new();
        if rng.below(2) == 0 {
            http.insert("methods".into(), json!(rng.some(&METHODS, 2)));
        }
        if rng.below(4) == 0 {
            let hosts: Vec<String> = rng.some(&HOSTS, 2).into_iter().map(|h| if rng.below(3) == 0 { format!("*.{}", h.split_once('.').map_or(h, |x| x.1)) } else { h.to_owned() }).collect();
            http.insert("hosts".into(), json!(hosts));
        }
        if rng.below(3) != 0 {
            let paths: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    let n = rng.below(4);
                    let mut p: String = (0..n).map(|_| format!("/{}", rng.pick(&TEMPLATE_SEGMENTS))).collect();
                    if rng.below(3) == 0 {
                        p.push_str("/**");
                    }
                    if p.is_empty() { "/".to_owned() } else { p }
                })
                .collect();
            http.insert("paths".into(), json!(paths));
        }
        rule.insert("http".into(), serde_json::Value::Object(http));
    }
    match rpc {
        1 => {
            let mut m = serde_json::Map::new();
            let tools = rng.below(3) != 0;
            if tools {
                m.insert("tools".into(), json!(rng.some(&TOOLS, 2)));
                if rng.below(3) == 0 {
                    m.insert("methods".into(), json!(["tools/call"]));
                }
                if rng.below(3) == 0 {
                    let arg = match rng.below(3) {
                        0 => json!({"pointer": "/path", "glob": "secrets/**"}),
                        1 => json!({"pointer": "/path", "prefix": "/etc"}),
                        _ => json!({"pointer": "/n", "exact": "x"}),
                    };
                    m.insert("arguments".into(), json!([arg]));
                }
            } else if rng.below(2) == 0 {
                m.insert("methods".into(), json!(rng.some(&RPC_METHODS, 2)));
            }
            rule.insert("mcp".into(), serde_json::Value::Object(m));
        }
        2 => {
            let mut a = serde_json::Map::new();
            if rng.below(2) == 0 {
                a.insert("methods".into(), json!(rng.some(&A2A_METHODS, 2)));
            }
            rule.insert("a2a".into(), serde_json::Value::Object(a));
        }
        _ => {}
    }
    rule
}

fn random_policy(rng: &mut Rng, n: usize) -> serde_json::Value {
    use serde_json::json;
    let mut rules = Vec::new();
    let mut grants: Vec<Vec<serde_json::Value>> = vec![Vec::new(); AGENTS.len()];
    for i in 0..n {
        let mut r = random_clauses(rng);
        if rng.below(3) == 0 {
            let a = rng.below(AGENTS.len());
            r.insert("id".into(), json!(format!("g{i}")));
            if rng.below(5) == 0 {
                r.insert("mode".into(), json!("shadow"));
            }
            grants[a].push(serde_json::Value::Object(r));
            continue;
        }
        r.insert("id".into(), json!(format!("r{i}")));
        r.insert("effect".into(), json!(if rng.below(2) == 0 { "deny" } else { "allow" }));
        if rng.below(4) == 0 {
            r.insert("mode".into(), json!("shadow"));
        }
        if rng.below(2) == 0 {
            r.insert("agents".into(), json!(rng.some(&AGENTS, 2)));
        }
        rules.push(serde_json::Value::Object(r));
    }
    let agents: serde_json::Map<String, serde_json::Value> = AGENTS.iter().zip(grants).map(|(a, g)| ((*a).to_owned(), json!({"grants": g}))).collect();
    json!({
        "version": "random",
        "default_action": if rng.below(4) == 0 { "allow" } else { "deny" },
        "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}, {"id": "a2a", "path": "/a2a", "protocol": "a2a"}],
        "agents": agents,
        "rules": rules,
    })
}

fn random_request(rng: &mut Rng) -> (HttpRequest, Option<Vec<u8>>) {
    use serde_json::json;
    let agent = match rng.below(6) {
        0 => None,
        1 => Some("stranger"),
        _ => Some(rng.pick(&AGENTS)),
    };
    let identity = VerifiedIdentity { jwt_agent: agent.map(str::to_owned), ..Default::default() };
    let host = rng.pick(&HOSTS);
    let mut req = HttpRequest { method: rng.pick(&METHODS).into(), authority: host.into(), path: String::new(), identity, end_of_stream: true, ..Default::default() };
    match rng.below(4) {
        0 => {
            req.method = "POST".into();
            req.path = "/mcp".into();
            req.end_of_stream = false;
            req.headers = vec![("content-type".into(), "application/json".into())];
            let call = |rng: &mut Rng, id: usize| {
                let method = rng.pick(&RPC_METHODS);
                let path = ["secrets/a", "./secrets//b", "docs/x", "/etc/passwd", "/ETC/x"][rng.below(5)];
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"name": rng.pick(&TOOLS), "arguments": {"path": path, "n": "x"}}})
            };
            let body = if rng.below(4) == 0 { json!([call(rng, 1), call(rng, 2)]) } else { call(rng, 1) };
            (req, Some(body.to_string().into_bytes()))
        }
        1 => {
            req.method = "POST".into();
            req.path = "/a2a".into();
            req.end_of_stream = false;
            req.headers = vec![("content-type".into(), "application/json".into())];
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": rng.pick(&A2A_METHODS), "params": {}});
            (req, Some(body.to_string().into_bytes()))
        }
        _ => {
            let n = rng.below(5);
            req.path = (0..n).map(|_| format!("/{}", rng.pick(&SEGMENTS))).collect();
            if req.path.is_empty() {
                req.path = "/".into();
            }
            (req, None)
        }
    }
}

/// Every decision (and compile error) the engine makes over generated policies and requests,
/// digested. The digest was taken before the compiled tables were made compact (issue 7): a
/// change of representation must not change a single decision, its rule, reason or route.
#[test]
fn generated_policies_decide_as_before() {
    use std::fmt::Write;
    use std::hash::Hasher;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut log = String::new();
    let (mut compiled, mut decisions, mut allowed, mut by_rule) = (0, 0, 0, 0);
    for p in 0..300 {
        let n = 1 + rng.below(40);
        let policy = random_policy(&mut rng, n);
        let e = match Engine::from_json(&policy.to_string()) {
            Ok(e) => e,
            Err(err) => {
                writeln!(log, "policy {p}: {err}").unwrap();
                continue;
            }
        };
        compiled += 1;
        for _ in 0..60 {
            let (req, body) = random_request(&mut rng);
            let eval = e.evaluate(&req, body.as_deref());
            let d = &eval.decision;
            decisions += 1;
            allowed += usize::from(d.action == Action::Allow);
            by_rule += usize::from(d.rule.starts_with(['r', 'g']) && d.rule.len() < 4);
            writeln!(log, "{p} {:?} {} {} {:?} {} {:?} {:?}", d.action, d.status, d.rule, d.mode, d.reason, d.allowed_by.as_deref().unwrap_or("-"), eval.facts.route.as_deref()).unwrap();
        }
    }
    let mut h = crate::template::FxHasher::default();
    h.write(log.as_bytes());
    let digest = h.finish();
    println!("{compiled} policies compiled, {decisions} decisions ({allowed} allowed, {by_rule} by a generated rule), digest {digest:#018x}");
    // The generator must reach both outcomes, and rules must decide, for this to mean anything.
    assert!(compiled > 200 && allowed > decisions / 10 && allowed < decisions * 9 / 10 && by_rule > decisions / 3, "{compiled} {decisions} {allowed} {by_rule}");
    assert_eq!(digest, 0xfa81_d964_570a_2131, "decisions changed");
}
