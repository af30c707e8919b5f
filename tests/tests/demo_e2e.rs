// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The demo scenario of ARCHITECTURE.md end to end, through the real stack: Envoy with the
//! release `.wasm` and `envoy-config/demo.yaml` (its embedded copy of
//! `policies/examples/demo.json`), the enforcer, the demo upstream. Each test asserts what a user
//! of the demo would notice: the status and body an agent gets back, whether the upstream executed
//! anything (`/__demo/stats`), the decision event in the enforcer's log, Envoy's metrics and
//! access log, and `interlock events`.
//!
//! Every test starts its own stack (tests run in parallel, also with other test files), and uses
//! its own session ids so a per-session limit never couples two requests of different tests.
//!
//! Run alone: `cargo test -p interlock-tests --test demo_e2e` (after `make build`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use interlock_tests::{Request, Response, Stack, Which, demo_policy, flatten_record};
use serde_json::{Value, json};

/// How long an event may take to reach the enforcer (the filter flushes about every 200 ms).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a metric or a log line may take to appear.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// The JSON-RPC error code of a policy refusal.
const RPC_POLICY_ERROR: i64 = -32001;
/// The AWS access key id the demo upstream serves in `config/.env` (demo-upstream/src/data.rs).
const DEMO_AWS_KEY_ID: &str = "AKIAZ7Q3MXKD4PLW2RYT";

// ----- requests -----

fn mcp(token: Option<&str>, body: &Value) -> Request {
    let req = Request::post("/mcp").header("accept", "application/json, text/event-stream");
    let req = match token {
        Some(t) => req.bearer(t),
        None => req,
    };
    req.json(body)
}

fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    })
}

fn initialize(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "demo-e2e", "version": "0"}
        }
    })
}

fn tools_list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

fn get(path: &str, token: &str) -> Request {
    Request::get(path).bearer(token)
}

fn chat_completion(token: &str) -> Request {
    Request::post("/v1/chat/completions")
        .bearer(token)
        .json(&json!({
            "model": "demo-model",
            "messages": [{"role": "user", "content": "Summarize issue 42."}]
        }))
}

fn a2a_message_send(token: &str, id: &str) -> Request {
    Request::post("/a2a").bearer(token).json(&json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "message/send",
        "params": {
            "message": {
                "role": "user",
                "messageId": "m-1",
                "parts": [{"kind": "text", "text": "Please refund invoice 7."}]
            }
        }
    }))
}

// ----- what comes back -----

/// `x-interlock-decision-id` of a response; fails when the filter did not name its decision.
fn decision_id_of(what: &str, resp: &Response) -> String {
    match resp.header("x-interlock-decision-id") {
        Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
        other => panic!(
            "{what}: no x-interlock-decision-id header (got {other:?}); status {}, headers {:?}, \
             body {}",
            resp.status,
            resp.headers,
            resp.text()
        ),
    }
}

/// A refusal of a JSON-RPC request (/mcp, /a2a): `status`, the decision headers, and a JSON-RPC
/// error with the request's id whose `data` names the decision. Returns the decision id.
fn assert_rpc_refused(
    what: &str,
    resp: &Response,
    status: u16,
    request_id: &Value,
    rule: &str,
) -> String {
    assert_eq!(
        resp.status,
        status,
        "{what}: expected {status}; headers {:?}, body {}",
        resp.headers,
        resp.text()
    );
    let id = decision_id_of(what, resp);
    assert_eq!(
        resp.header("x-interlock-rule"),
        Some(rule),
        "{what}: x-interlock-rule; body {}",
        resp.text()
    );
    let body = resp.json();
    assert_eq!(body["jsonrpc"], "2.0", "{what}: not JSON-RPC: {body}");
    assert_eq!(
        &body["id"], request_id,
        "{what}: the error must carry the request's id: {body}"
    );
    assert!(
        body.get("result").is_none(),
        "{what}: a refusal with a result: {body}"
    );
    let err = &body["error"];
    assert_eq!(
        err["code"].as_i64(),
        Some(RPC_POLICY_ERROR),
        "{what}: error code: {body}"
    );
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: error message: {body}"
    );
    let data = &err["data"];
    assert_eq!(
        data["decision_id"].as_str(),
        Some(id.as_str()),
        "{what}: data.decision_id must equal the header: {body}"
    );
    assert_eq!(
        data["rule"].as_str(),
        Some(rule),
        "{what}: data.rule: {body}"
    );
    assert_eq!(
        data["status"].as_u64(),
        Some(u64::from(status)),
        "{what}: data.status: {body}"
    );
    assert!(
        data["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: data.reason: {body}"
    );
    id
}

/// A refusal of a plain HTTP request: `status`, the decision headers, and
/// `{"error", "decision_id", "rule", "status", "reason"}`. Returns the decision id.
fn assert_http_refused(what: &str, resp: &Response, status: u16, rule: &str) -> String {
    assert_eq!(
        resp.status,
        status,
        "{what}: expected {status}; headers {:?}, body {}",
        resp.headers,
        resp.text()
    );
    let id = decision_id_of(what, resp);
    assert_eq!(
        resp.header("x-interlock-rule"),
        Some(rule),
        "{what}: x-interlock-rule; body {}",
        resp.text()
    );
    let body = resp.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: error: {body}"
    );
    assert_eq!(
        body["decision_id"].as_str(),
        Some(id.as_str()),
        "{what}: decision_id must equal the header: {body}"
    );
    assert_eq!(body["rule"].as_str(), Some(rule), "{what}: rule: {body}");
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "{what}: status: {body}"
    );
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: reason: {body}"
    );
    id
}

/// A 200 that the upstream answered, with the filter's decision id. Returns the decision id.
fn assert_allowed(what: &str, resp: &Response) -> String {
    assert_eq!(
        resp.status,
        200,
        "{what}: expected 200; headers {:?}, body {}",
        resp.headers,
        resp.text()
    );
    decision_id_of(what, resp)
}

/// The text of the first content item of an MCP `tools/call` result with id `id`.
fn tool_result_text(what: &str, resp: &Response, id: u64) -> String {
    let body = resp.json();
    assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    assert_eq!(body["id"], json!(id), "{what}: {body}");
    assert!(body.get("error").is_none(), "{what}: an error: {body}");
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no result.content[0].text: {body}"))
        .to_owned()
}

fn assert_upstream_untouched(what: &str, delta: &BTreeMap<String, u64>) {
    assert!(
        delta.is_empty(),
        "{what}: the demo upstream executed something it must never have seen: {delta:?}"
    );
}

/// A counter of Envoy's, 0 while the filter has not defined it yet (they are defined lazily).
fn counter(stack: &Stack, name: &str) -> u64 {
    stack.envoy_counter(name).unwrap_or(0)
}

/// Waits until `name` is at least `at_least`; returns its value.
fn wait_for_counter(stack: &Stack, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + POLL_TIMEOUT;
    loop {
        let v = counter(stack, name);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} = {v} after {POLL_TIMEOUT:?}, expected >= {at_least}; Envoy's interlock \
             metrics:\n{}\n----- envoy log -----\n{}",
            interlock_metrics(stack),
            stack.log_tail(Which::Envoy)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interlock_metrics(stack: &Stack) -> String {
    stack
        .envoy_stats()
        .lines()
        .filter(|l| l.contains("interlock"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn policy_version() -> String {
    let text = std::fs::read_to_string(demo_policy()).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    policy["version"].as_str().unwrap().to_owned()
}

fn str_at<'a>(event: &'a Value, pointer: &str) -> Option<&'a str> {
    event.pointer(pointer).and_then(Value::as_str)
}

// ----- the scenario -----

/// Who called, as the token says.
#[derive(Clone)]
struct Caller {
    agent: &'static str,
    user: &'static str,
    session: String,
    token: String,
}

impl Caller {
    fn new(stack: &Stack, agent: &'static str, user: &'static str, session: &str) -> Self {
        Self {
            agent,
            user,
            session: session.to_owned(),
            token: stack.token(agent, Some(user), Some(session)),
        }
    }
}

/// One decision the scenario made and what its event must say.
struct Decided {
    what: String,
    decision_id: String,
    /// `None` for a request without identity.
    caller: Option<Caller>,
    /// Whether the request went to the upstream.
    forwarded: bool,
    status: u16,
    rule: String,
    action: &'static str,
    mode: &'static str,
}

impl Decided {
    fn allowed(what: &str, id: String, caller: &Caller, rule: &str) -> Self {
        Self {
            what: what.to_owned(),
            decision_id: id,
            caller: Some(caller.clone()),
            forwarded: true,
            status: 0,
            rule: rule.to_owned(),
            action: "allow",
            mode: "enforce",
        }
    }

    fn refused(what: &str, id: String, caller: Option<&Caller>, status: u16, rule: &str) -> Self {
        Self {
            what: what.to_owned(),
            decision_id: id,
            caller: caller.cloned(),
            forwarded: false,
            status,
            rule: rule.to_owned(),
            action: "deny",
            mode: "enforce",
        }
    }
}

fn triage(stack: &Stack, session: &str) -> Caller {
    Caller::new(stack, "triage-bot", "alice", session)
}

fn billing(stack: &Stack, session: &str) -> Caller {
    Caller::new(stack, "billing-agent", "bob", session)
}

fn rogue(stack: &Stack, session: &str) -> Caller {
    Caller::new(stack, "rogue-agent", "mallory", session)
}

/// triage-bot `get_issue`: 200 with the upstream's result; the upstream ran the tool once.
fn triage_get_issue(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(11, "get_issue", json!({"number": 42})),
    ));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "triage-bot tools/call get_issue";
    let id = assert_allowed(what, &resp);
    let text = tool_result_text(what, &resp, 11);
    let issue: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the tool result is not the issue JSON ({e}): {text}"));
    assert_eq!(
        issue["number"].as_u64(),
        Some(42),
        "{what}: wrong issue: {issue}"
    );
    assert_eq!(
        delta.get("mcp:tool:get_issue"),
        Some(&1),
        "{what}: the upstream must have run get_issue exactly once; delta {delta:?}"
    );
    Decided::allowed(what, id, caller, "triage-mcp-tools")
}

/// triage-bot `delete_repository`: 403 JSON-RPC error; nothing reached the upstream.
fn triage_delete_repository(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(7, "delete_repository", json!({"repository": "demo-repo"})),
    ));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "triage-bot tools/call delete_repository";
    let id = assert_rpc_refused(what, &resp, 403, &json!(7), "deny-delete-repository");
    assert_upstream_untouched(what, &delta);
    Decided::refused(what, id, Some(caller), 403, "deny-delete-repository")
}

/// No token on /mcp: 401 identity-required (status and decision headers); nothing reached the
/// upstream. Returns the response too: the test of this case also checks the body's JSON-RPC form,
/// which the whole-scenario test leaves to it so that each test fails for one reason.
fn anonymous_tools_list(stack: &Stack) -> (Decided, Response) {
    let before = stack.stats();
    let resp = stack.send(&mcp(None, &tools_list(3)));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "POST /mcp tools/list without a token";
    assert_eq!(
        resp.status,
        401,
        "{what}: expected 401; headers {:?}, body {}",
        resp.headers,
        resp.text()
    );
    let id = decision_id_of(what, &resp);
    assert_eq!(
        resp.header("x-interlock-rule"),
        Some("identity-required"),
        "{what}: x-interlock-rule; body {}",
        resp.text()
    );
    assert_upstream_untouched(what, &delta);
    (
        Decided::refused(what, id, None, 401, "identity-required"),
        resp,
    )
}

/// billing-agent `search_issues`: 403 default-deny; the upstream untouched.
fn billing_search_issues(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(5, "search_issues", json!({"query": "refund"})),
    ));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "billing-agent tools/call search_issues";
    let id = assert_rpc_refused(what, &resp, 403, &json!(5), "default-deny");
    assert_upstream_untouched(what, &delta);
    Decided::refused(what, id, Some(caller), 403, "default-deny")
}

/// billing-agent `GET /api/customers`: 200 with the 50 customers.
fn billing_list_customers(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&get("/api/customers", &caller.token));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "billing-agent GET /api/customers";
    let id = assert_allowed(what, &resp);
    let customers = resp.json();
    let list = customers
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list of customers: {customers}"));
    assert_eq!(list.len(), 50, "{what}: {customers}");
    assert!(
        list.iter()
            .all(|c| c["id"].is_u64() && c["name"].is_string()),
        "{what}: {customers}"
    );
    assert_eq!(
        delta.get("http:GET /api/customers"),
        Some(&1),
        "{what}: delta {delta:?}"
    );
    Decided::allowed(what, id, caller, "billing-crm-read")
}

/// rogue-agent everywhere: every call 403 default-deny, the upstream unchanged across all.
fn rogue_everywhere(stack: &Stack, caller: &Caller) -> Vec<Decided> {
    let before = stack.stats();
    let mut decided = Vec::new();
    let t = caller.token.as_str();
    for (what, req, rpc_id) in [
        (
            "rogue-agent /mcp initialize",
            mcp(Some(t), &initialize(1)),
            Some(json!(1)),
        ),
        (
            "rogue-agent /mcp tools/list",
            mcp(Some(t), &tools_list(2)),
            Some(json!(2)),
        ),
        (
            "rogue-agent GET /api/customers",
            get("/api/customers", t),
            None,
        ),
        (
            "rogue-agent GET /api/customers/1",
            get("/api/customers/1", t),
            None,
        ),
        (
            "rogue-agent POST /v1/chat/completions",
            chat_completion(t),
            None,
        ),
        (
            "rogue-agent POST /a2a message/send",
            a2a_message_send(t, "a2a-1"),
            Some(json!("a2a-1")),
        ),
    ] {
        let resp = stack.send(&req);
        let id = match rpc_id {
            Some(rpc_id) => assert_rpc_refused(what, &resp, 403, &rpc_id, "default-deny"),
            None => assert_http_refused(what, &resp, 403, "default-deny"),
        };
        decided.push(Decided::refused(
            what,
            id,
            Some(caller),
            403,
            "default-deny",
        ));
    }
    let delta = Stack::stats_delta(&before, &stack.stats());
    assert_upstream_untouched("rogue-agent's six calls", &delta);
    decided
}

/// triage-bot `read_file config/.env`: the shadow rule lets it through (the body holds the key).
fn triage_read_config(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(21, "read_file", json!({"path": "config/.env"})),
    ));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "triage-bot tools/call read_file config/.env (shadow rule)";
    let id = assert_allowed(what, &resp);
    let text = tool_result_text(what, &resp, 21);
    assert!(
        text.contains(DEMO_AWS_KEY_ID),
        "{what}: a shadow rule must let the call through, so the file comes back: {text}"
    );
    assert_eq!(
        delta.get("mcp:tool:read_file"),
        Some(&1),
        "{what}: delta {delta:?}"
    );
    Decided {
        what: what.to_owned(),
        decision_id: id,
        caller: Some(caller.clone()),
        forwarded: true,
        status: 0,
        rule: "shadow-read-config".to_owned(),
        action: "deny",
        mode: "shadow",
    }
}

/// triage-bot `GET /api/admin/users`: 403 deny-admin-api; the admin API never reached.
fn triage_admin_users(stack: &Stack, caller: &Caller) -> Decided {
    let before = stack.stats();
    let resp = stack.send(&get("/api/admin/users", &caller.token));
    let delta = Stack::stats_delta(&before, &stack.stats());
    let what = "triage-bot GET /api/admin/users";
    let id = assert_http_refused(what, &resp, 403, "deny-admin-api");
    assert_upstream_untouched(what, &delta);
    Decided::refused(what, id, Some(caller), 403, "deny-admin-api")
}

/// The whole scenario in one stack, in the order a demo would show it.
fn run_scenario(stack: &Stack) -> Vec<Decided> {
    let t = triage(stack, "s-scenario-triage");
    let b = billing(stack, "s-scenario-billing");
    let r = rogue(stack, "s-scenario-rogue");
    let mut all = vec![
        triage_get_issue(stack, &t),
        triage_delete_repository(stack, &t),
        anonymous_tools_list(stack).0,
        billing_search_issues(stack, &b),
        billing_list_customers(stack, &b),
    ];
    all.extend(rogue_everywhere(stack, &r));
    all.push(triage_read_config(stack, &t));
    all.push(triage_admin_users(stack, &t));
    all
}

/// The event of `d`, waiting for it; asserts it says what the response said.
fn assert_event_of(stack: &Stack, d: &Decided) -> Value {
    let e = stack.wait_for_event(&d.decision_id, EVENT_TIMEOUT);
    let what = &d.what;
    assert_eq!(
        str_at(&e, "/rule"),
        Some(d.rule.as_str()),
        "{what}: rule: {e}"
    );
    assert_eq!(str_at(&e, "/action"), Some(d.action), "{what}: action: {e}");
    assert_eq!(str_at(&e, "/mode"), Some(d.mode), "{what}: mode: {e}");
    assert_eq!(
        e["status"].as_u64(),
        Some(u64::from(d.status)),
        "{what}: status: {e}"
    );
    e
}

fn addr_of(what: &str, e: &Value, field: &str) -> SocketAddr {
    let s = str_at(e, &format!("/{field}"))
        .unwrap_or_else(|| panic!("{what}: the event names no {field} address: {e}"));
    s.parse()
        .unwrap_or_else(|err| panic!("{what}: {field} {s:?} is not ip:port ({err}): {e}"))
}

// ----- the issue's "Done when", one test each -----

#[test]
fn triage_bot_gets_an_issue_from_the_mcp_server() {
    let stack = Stack::start();
    let caller = triage(&stack, "s-get-issue");
    let d = triage_get_issue(&stack, &caller);
    let e = assert_event_of(&stack, &d);
    assert_eq!(
        str_at(&e, "/request/calls/0/tool"),
        Some("get_issue"),
        "{e}"
    );
}

#[test]
fn delete_repository_is_refused_before_the_upstream_sees_anything() {
    let stack = Stack::start();
    let caller = triage(&stack, "s-delete");
    let d = triage_delete_repository(&stack, &caller);
    let e = assert_event_of(&stack, &d);
    assert_eq!(
        str_at(&e, "/request/calls/0/tool"),
        Some("delete_repository"),
        "{e}"
    );
    assert!(
        counter(
            &stack,
            "wasmcustom.interlock.decisions.deny.deny-delete-repository"
        ) >= 1,
        "metrics:\n{}",
        interlock_metrics(&stack)
    );
}

#[test]
fn mcp_without_a_token_is_401_and_the_upstream_untouched() {
    let stack = Stack::start();
    let (d, resp) = anonymous_tools_list(&stack);
    // /mcp speaks JSON-RPC: the refusal is a JSON-RPC error carrying the request's id, whatever
    // phase of the request the filter decided in.
    let id = assert_rpc_refused(&d.what, &resp, 401, &json!(3), "identity-required");
    assert_eq!(id, d.decision_id);
    let e = assert_event_of(&stack, &d);
    assert!(
        e.pointer("/identity/agent").is_none_or(Value::is_null),
        "an unauthenticated call has no agent: {e}"
    );
}

#[test]
fn billing_agent_lists_customers_but_may_not_search_issues() {
    let stack = Stack::start();
    let caller = billing(&stack, "s-billing");
    let denied = billing_search_issues(&stack, &caller);
    let allowed = billing_list_customers(&stack, &caller);
    assert_event_of(&stack, &denied);
    assert_event_of(&stack, &allowed);
}

#[test]
fn rogue_agent_is_refused_everywhere() {
    let stack = Stack::start();
    let caller = rogue(&stack, "s-rogue");
    let decided = rogue_everywhere(&stack, &caller);
    assert_eq!(decided.len(), 6);
    for d in &decided {
        let e = assert_event_of(&stack, d);
        assert_eq!(str_at(&e, "/identity/agent"), Some("rogue-agent"), "{e}");
    }
}

#[test]
fn shadow_rule_lets_read_file_through_and_records_what_it_would_have_done() {
    let stack = Stack::start();
    let caller = triage(&stack, "s-shadow");
    let d = triage_read_config(&stack, &caller);
    let e = stack.wait_for_event(&d.decision_id, EVENT_TIMEOUT);
    assert_eq!(str_at(&e, "/mode"), Some("shadow"), "{e}");
    assert_eq!(str_at(&e, "/rule"), Some("shadow-read-config"), "{e}");
    assert_eq!(str_at(&e, "/action"), Some("deny"), "{e}");
    assert_eq!(str_at(&e, "/allowed_by"), Some("triage-mcp-tools"), "{e}");
    assert_eq!(
        str_at(&e, "/request/calls/0/tool"),
        Some("read_file"),
        "{e}"
    );
    wait_for_counter(
        &stack,
        "wasmcustom.interlock.decisions.shadow_deny.shadow-read-config",
        1,
    );
    // A shadow verdict is not a refusal: nothing counted it as an enforced deny.
    assert_eq!(
        counter(
            &stack,
            "wasmcustom.interlock.decisions.deny.shadow-read-config"
        ),
        0,
        "metrics:\n{}",
        interlock_metrics(&stack)
    );
}

#[test]
fn admin_api_is_refused_to_agents() {
    let stack = Stack::start();
    let caller = triage(&stack, "s-admin");
    let d = triage_admin_users(&stack, &caller);
    let e = assert_event_of(&stack, &d);
    assert_eq!(str_at(&e, "/request/path"), Some("/api/admin/users"), "{e}");
}

#[test]
fn every_decision_is_exactly_one_event_with_identity_and_addresses() {
    let stack = Stack::start();
    let decided = run_scenario(&stack);
    let ids: BTreeSet<&str> = decided.iter().map(|d| d.decision_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        decided.len(),
        "decision ids must be unique per request: {:?}",
        decided
            .iter()
            .map(|d| (&d.what, &d.decision_id))
            .collect::<Vec<_>>()
    );
    let version = policy_version();
    for d in &decided {
        let what = &d.what;
        let e = assert_event_of(&stack, d);
        assert_eq!(
            str_at(&e, "/policy_version"),
            Some(version.as_str()),
            "{what}: {e}"
        );
        match &d.caller {
            Some(c) => {
                assert_eq!(str_at(&e, "/identity/agent"), Some(c.agent), "{what}: {e}");
                assert_eq!(str_at(&e, "/identity/user"), Some(c.user), "{what}: {e}");
                assert_eq!(
                    str_at(&e, "/identity/session"),
                    Some(c.session.as_str()),
                    "{what}: {e}"
                );
            }
            None => assert!(
                e.pointer("/identity/agent").is_none_or(Value::is_null),
                "{what}: no token, yet an agent: {e}"
            ),
        }
        let downstream = addr_of(what, &e, "downstream");
        assert!(
            downstream.ip().is_loopback(),
            "{what}: downstream {downstream}"
        );
        if d.forwarded {
            let upstream = addr_of(what, &e, "upstream");
            assert_eq!(
                upstream,
                stack.upstream(),
                "{what}: the event's upstream must be the demo upstream: {e}"
            );
        }
        assert!(
            str_at(&e, "/worker").is_some_and(|w| !w.is_empty()),
            "{what}: worker: {e}"
        );
    }

    // Exactly one event per decision in the enforcer's API...
    let events = stack.events();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if let Some(id) = str_at(e, "/decision_id") {
            *served.entry(id.to_owned()).or_default() += 1;
        }
    }
    for d in &decided {
        assert_eq!(
            served.get(&d.decision_id),
            Some(&1),
            "{}: decision {} must be exactly one event in the enforcer's log",
            d.what,
            d.decision_id
        );
    }
    // ... and nothing else: this stack made exactly these decisions.
    assert_eq!(
        events.len(),
        decided.len(),
        "the enforcer holds events no request of this test made: {events:#?}"
    );

    // ... and on disk, in the JSON-lines log.
    let path = stack.enforcer_data_dir().join("events.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut on_disk: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {line}", path.display(), n + 1));
        let e = flatten_record(record);
        let id = str_at(&e, "/decision_id")
            .unwrap_or_else(|| panic!("{}:{}: no decision_id: {line}", path.display(), n + 1));
        *on_disk.entry(id.to_owned()).or_default() += 1;
    }
    for d in &decided {
        assert_eq!(
            on_disk.get(&d.decision_id),
            Some(&1),
            "{}: decision {} must be exactly one line of {}",
            d.what,
            d.decision_id,
            path.display()
        );
    }

    // One decision, one counter.
    assert_eq!(
        counter(&stack, "wasmcustom.interlock.decisions.total"),
        decided.len() as u64,
        "metrics:\n{}",
        interlock_metrics(&stack)
    );
}

#[test]
fn decisions_do_not_wait_for_a_down_enforcer_and_undelivered_events_are_counted() {
    let mut stack = Stack::start();
    let caller = triage(&stack, "s-enforcer-down");
    stack.stop(Which::Enforcer);
    assert!(
        std::net::TcpStream::connect_timeout(&stack.enforcer(), Duration::from_secs(1)).is_err(),
        "the enforcer still accepts connections after stop"
    );
    let failures_before = counter(&stack, "wasmcustom.interlock.events.post_failures");

    let before = stack.stats();
    let started = Instant::now();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(9, "delete_repository", json!({"repository": "demo-repo"})),
    ));
    let took = started.elapsed();
    let what = "delete_repository with the enforcer down";
    assert_rpc_refused(what, &resp, 403, &json!(9), "deny-delete-repository");
    assert_upstream_untouched(what, &Stack::stats_delta(&before, &stack.stats()));
    assert!(
        took < Duration::from_secs(1),
        "{what}: answered after {took:?}; a decision must never wait on the enforcer"
    );

    // The event could not be delivered: that is counted, not silent...
    wait_for_counter(
        &stack,
        "wasmcustom.interlock.events.post_failures",
        failures_before + 1,
    );
    // ... and it is kept for later, not thrown away.
    assert_eq!(
        counter(&stack, "wasmcustom.interlock.events.dropped"),
        0,
        "metrics:\n{}",
        interlock_metrics(&stack)
    );

    // Traffic keeps flowing at full speed while deliveries fail.
    let started = Instant::now();
    let resp = stack.send(&mcp(
        Some(&caller.token),
        &tool_call(10, "get_issue", json!({"number": 1})),
    ));
    let took = started.elapsed();
    assert_allowed("get_issue with the enforcer down", &resp);
    assert!(
        took < Duration::from_secs(1),
        "get_issue with the enforcer down answered after {took:?}"
    );
}

#[test]
fn interlock_events_prints_the_decisions() {
    let stack = Stack::start();
    let t = triage(&stack, "s-cli");
    let decided = [
        triage_get_issue(&stack, &t),
        triage_delete_repository(&stack, &t),
    ];
    for d in &decided {
        stack.wait_for_event(&d.decision_id, EVENT_TIMEOUT);
    }
    let url = stack.enforcer_url();
    let out = stack.interlock(&["events", "--no-follow", "--json", "--enforcer", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "interlock events --no-follow --json --enforcer {url}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map(flatten_record)
                .unwrap_or_else(|e| {
                    panic!("`interlock events --json` printed a non-JSON line ({e}): {l}")
                })
        })
        .collect();
    for d in &decided {
        let hits: Vec<&Value> = printed
            .iter()
            .filter(|e| str_at(e, "/decision_id") == Some(d.decision_id.as_str()))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{}: decision {} must be printed once; stdout:\n{stdout}",
            d.what,
            d.decision_id
        );
        assert_eq!(
            str_at(hits[0], "/rule"),
            Some(d.rule.as_str()),
            "{}",
            hits[0]
        );
        assert_eq!(str_at(hits[0], "/action"), Some(d.action), "{}", hits[0]);
    }
}

#[test]
fn access_log_names_the_decision_and_rule_of_a_refused_call() {
    let stack = Stack::start();
    let t = triage(&stack, "s-access-log");
    let d = triage_delete_repository(&stack, &t);
    let want_decision = format!("decision={}", d.decision_id);
    let deadline = Instant::now() + POLL_TIMEOUT;
    loop {
        let log = stack.log(Which::Envoy);
        let line = log.lines().find(|l| l.contains(&want_decision));
        if let Some(line) = line {
            assert!(
                line.contains("rule=deny-delete-repository") && line.contains(" 403 "),
                "the access-log line of the refused call: {line}"
            );
            assert!(
                line.contains("POST /mcp") && line.contains("agent=triage-bot"),
                "the access-log line of the refused call: {line}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line with `{want_decision}` in {} after {POLL_TIMEOUT:?}:\n{}",
            stack.log_path(Which::Envoy).display(),
            stack.log_tail(Which::Envoy)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
