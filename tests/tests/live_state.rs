//! Live state through real Envoy with several workers: revocations and policy pushes reach every
//! worker within a second of the command returning (measured and printed), survive an enforcer
//! restart, an invalid push changes nothing, and the per-session rate limit holds across workers.

// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use interlock_tests::{Request, Response, Stack, StackOptions, Which, repo_root};
use serde_json::{Value, json};

const WORKERS: u32 = 4;

fn stack() -> Stack {
    Stack::start_with(StackOptions { concurrency: WORKERS, ..StackOptions::default() })
}

fn crm(stack: &Stack, token: &str) -> Response {
    Request::get("/api/customers/1").bearer(token).send(stack.listener())
}

fn search_issues(stack: &Stack, token: &str) -> Response {
    Request::post("/mcp")
        .bearer(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_issues", "arguments": {"query": "x"}}}))
        .send(stack.listener())
}

fn cli_ok(stack: &Stack, args: &[&str]) -> String {
    let url = stack.enforcer_url();
    let mut all = vec!["--enforcer", url.as_str()];
    all.extend_from_slice(args);
    let out = stack.interlock(&all);
    assert!(out.status.success(), "interlock {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `req` on fresh connections until `done` holds, for at most `limit`; returns the time it
/// took. Each new connection may land on any worker.
fn time_until(limit: Duration, mut send: impl FnMut() -> Response, done: impl Fn(&Response) -> bool) -> (Duration, Response) {
    let start = Instant::now();
    loop {
        let r = send();
        if done(&r) || start.elapsed() > limit {
            return (start.elapsed(), r);
        }
    }
}

/// Every one of `n` fresh-connection requests is refused with `rule`; returns the workers that
/// refused them (from their events).
fn all_refused(stack: &Stack, n: usize, send: impl Fn() -> Response, rule: &str) -> BTreeSet<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = send();
        assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some(rule)), "request {i} after the change: {}", r.text());
        ids.push(r.header("x-interlock-decision-id").unwrap().to_owned());
    }
    stack.workers_of(&ids)
}

#[test]
fn revoking_a_session_reaches_every_worker_within_a_second() {
    let stack = stack();
    let token = stack.token("triage-bot", Some("alice"), Some("sess-revoke"));
    let other = stack.token("triage-bot", Some("alice"), Some("sess-other"));
    for _ in 0..8 {
        assert_eq!(crm(&stack, &token).status, 200);
    }
    cli_ok(&stack, &["revoke", "--session", "sess-revoke", "--reason", "stolen token"]);
    let (took, first) = time_until(Duration::from_secs(3), || crm(&stack, &token), |r| r.status == 403);
    assert_eq!(first.header("x-interlock-rule"), Some("revoked"), "{}", first.text());
    assert!(took < Duration::from_secs(1), "revocation took {took:?} to take effect");
    let workers = all_refused(&stack, 40, || crm(&stack, &token), "revoked");
    eprintln!("revoke --session: first refusal {took:?} after the command returned; 40/40 refused on {} workers", workers.len());
    assert!(workers.len() >= 2, "refusals came from {workers:?}; expected several workers");
    // Only that session: the same user's other session is untouched.
    assert_eq!(crm(&stack, &other).status, 200);
    // A fresh trace id changes nothing.
    let r = Request::get("/api/customers/1")
        .bearer(&token)
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .send(stack.listener());
    assert_eq!(r.header("x-interlock-rule"), Some("revoked"));
    // Lifted: allowed again everywhere.
    cli_ok(&stack, &["unrevoke", "--session", "sess-revoke"]);
    let (took, r) = time_until(Duration::from_secs(3), || crm(&stack, &token), |r| r.status == 200);
    assert_eq!(r.status, 200);
    assert!(took < Duration::from_secs(1), "unrevoke took {took:?}");
}

#[test]
fn users_traces_and_agents_can_be_revoked_and_it_survives_an_enforcer_restart() {
    let mut stack = stack();
    let alice = stack.token("triage-bot", Some("alice"), Some("s-a"));
    let bob = stack.token("triage-bot", Some("bob"), Some("s-b"));
    let billing = stack.token("billing-agent", Some("carol"), Some("s-c"));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced = |token: &str| {
        Request::get("/api/customers/1")
            .bearer(token)
            .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
            .send(stack.listener())
    };
    assert_eq!(crm(&stack, &alice).status, 200);
    assert_eq!(traced(&bob).status, 200);

    cli_ok(&stack, &["revoke", "--user", "alice", "--ttl", "600"]);
    cli_ok(&stack, &["revoke", "--trace", trace]);
    cli_ok(&stack, &["revoke", "--agent", "billing-agent", "--reason", "compromised"]);
    let (took, r) = time_until(Duration::from_secs(3), || Request::get("/api/customers").bearer(&billing).send(stack.listener()), |r| r.status == 403);
    assert_eq!(r.header("x-interlock-rule"), Some("revoked"));
    assert!(took < Duration::from_secs(1), "agent revocation took {took:?}");
    assert_eq!(crm(&stack, &alice).header("x-interlock-rule"), Some("revoked"));
    assert_eq!(traced(&bob).header("x-interlock-rule"), Some("revoked"));
    assert_eq!(crm(&stack, &bob).status, 200, "bob without the revoked trace is fine");

    let listed = cli_ok(&stack, &["revocations"]);
    for what in ["alice", trace, "billing-agent"] {
        assert!(listed.contains(what), "{what} missing from:\n{listed}");
    }

    // The enforcer restarts: its revocations are still there, and a fresh Envoy (empty shared
    // data) learns them from it.
    stack.restart(Which::Enforcer);
    let listed = cli_ok(&stack, &["revocations"]);
    assert!(listed.contains("alice") && listed.contains("billing-agent"), "after restart:\n{listed}");
    stack.restart(Which::Envoy);
    let (took, r) = time_until(Duration::from_secs(5), || crm(&stack, &alice), |r| r.status == 403);
    assert_eq!(r.header("x-interlock-rule"), Some("revoked"), "a fresh Envoy must learn the revocations ({took:?})");
    assert_eq!(Request::get("/api/customers").bearer(&billing).send(stack.listener()).header("x-interlock-rule"), Some("revoked"));
}

#[test]
fn a_policy_push_changes_decisions_on_every_worker_without_a_restart() {
    let stack = stack();
    let billing = stack.token("billing-agent", Some("carol"), Some("s-push"));
    assert_eq!(search_issues(&stack, &billing).header("x-interlock-rule"), Some("default-deny"));

    let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join("policies/examples/demo.json")).unwrap()).unwrap();
    policy["version"] = json!("demo-pushed-2");
    policy["agents"]["billing-agent"]["grants"].as_array_mut().unwrap().push(json!({"id": "billing-search", "mcp": {"tools": ["search_issues"]}}));
    let file = stack.dir().join("pushed.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    // A session per request from here on: the per-session rate limit is not what this tests.
    let tokens: Vec<String> = (0..100).map(|i| stack.token("billing-agent", Some("carol"), Some(&format!("s-push-{i}")))).collect();
    cli_ok(&stack, &["policy", "push", file.to_str().unwrap()]);

    let mut next = tokens.iter();
    let (took, r) = time_until(Duration::from_secs(3), || search_issues(&stack, next.next().unwrap()), |r| r.status == 200);
    assert_eq!(r.status, 200, "the pushed grant never took effect: {}", r.text());
    assert!(took < Duration::from_secs(1), "policy push took {took:?}");
    let mut ids = Vec::new();
    for token in tokens.iter().rev().take(40) {
        let r = search_issues(&stack, token);
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.header("x-interlock-decision-id").unwrap().to_owned());
    }
    let workers = stack.workers_of(&ids);
    eprintln!("policy push: first decision under the new version {took:?} after the command returned; 40/40 on {} workers", workers.len());
    assert!(workers.len() >= 2, "{workers:?}");
    let events = stack.events();
    for id in &ids {
        let e = events.iter().find(|e| e["decision_id"] == id.as_str()).unwrap();
        assert_eq!((e["policy_version"].as_str(), e["rule"].as_str()), (Some("demo-pushed-2"), Some("billing-search")));
    }
}

#[test]
fn an_invalid_push_changes_nothing_but_a_counter() {
    let stack = stack();
    let billing = stack.token("billing-agent", Some("carol"), Some("s-invalid"));
    let broken = stack.dir().join("broken.json");
    std::fs::write(&broken, r#"{"version": "broken", "rules": [{"id": "r", "effect": "deny", "http": {"paths": ["/api/{id"]}}]}"#).unwrap();
    let url = stack.enforcer_url();
    let out = stack.interlock(&["--enforcer", &url, "policy", "push", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("$.rules[0].http.paths[0]"));

    // Straight to the API (skipping the CLI's own check): refused, counted, nothing else moves.
    let before: Value = Request::get("/v1/status").send(stack.enforcer()).json();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&broken).unwrap()).unwrap();
    // Without the admin token nobody may push a policy, valid or not: 401, before any parsing.
    let r = Request::new("PUT", "/v1/policy").json(&doc).send(stack.enforcer());
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("admin token"), "{}", r.text());
    let r = Request::new("PUT", "/v1/policy").bearer(&stack.admin_token()).json(&doc).send(stack.enforcer());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["path"], "$.rules[0].http.paths[0]");
    let after: Value = Request::get("/v1/status").send(stack.enforcer()).json();
    assert_eq!(after["policy_push_rejected"].as_u64(), before["policy_push_rejected"].as_u64().map(|n| n + 1));
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["policy_generation"], before["policy_generation"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(search_issues(&stack, &billing).header("x-interlock-rule"), Some("default-deny"));
    let r = Request::get("/api/customers").bearer(&billing).send(stack.listener());
    assert_eq!(r.status, 200);
    assert_eq!(stack.envoy_counter("wasmcustom.interlock.policy.rejected").unwrap_or(0), 0, "the filter never saw it");
}

#[test]
fn the_per_session_limit_admits_exactly_20_across_workers() {
    let stack = stack();
    let token = stack.token("triage-bot", Some("alice"), Some("s-limit"));
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    let start = Instant::now();
    for _ in 0..25 {
        let r = crm(&stack, &token);
        if r.status == 429 {
            assert_eq!(r.header("x-interlock-rule"), Some("per-session"));
            let retry: u64 = r.header("retry-after").expect("a 429 says when to retry").parse().unwrap();
            assert!((1..=10).contains(&retry), "retry-after {retry}");
        }
        ids.push(r.header("x-interlock-decision-id").unwrap().to_owned());
        statuses.push(r.status);
    }
    // The bucket refills one token per 500 ms. A burst inside that admits exactly 20; on a
    // loaded machine a slower burst may earn the tokens refilled meanwhile, and no more.
    let took = start.elapsed();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses[..20].iter().all(|s| *s == 200), "the first 20 pass: {statuses:?}");
    if took < Duration::from_millis(450) {
        assert_eq!(admitted, 20, "statuses: {statuses:?}");
        assert!(statuses[20..].iter().all(|s| *s == 429), "the 21st and later are 429: {statuses:?}");
    } else {
        let refilled = usize::try_from(took.as_millis() / 500).unwrap();
        assert!(admitted <= 20 + refilled, "{admitted} admitted in {took:?}: {statuses:?}");
        eprintln!("slow burst ({took:?}): checked the bound only");
    }
    let workers = stack.workers_of(&ids);
    assert!(workers.len() >= 2, "the burst should spread over workers: {workers:?}");
    // Another session is not affected.
    let other = stack.token("triage-bot", Some("alice"), Some("s-limit-2"));
    assert_eq!(crm(&stack, &other).status, 200);
}

/// A stand-in enforcer that serves a policy this filter must refuse, with a revocation beside it.
fn fake_enforcer(addr: std::net::SocketAddr) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind(addr).expect("the enforcer port is free when the stack runs without one");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or_default();
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or_default() == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap_or_default();
                let answer = if path.starts_with("/v1/state") {
                    if path.contains("version=5") {
                        // Up to date: a long poll that simply waits.
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    json!({
                        "version": 5,
                        "policy_generation": 3,
                        "policy": {"version": "broken", "rules": [{"id": "x", "effect": "maybe"}]},
                        "revocations": [{"id": "rv-fake", "kind": "session", "value": "s-fake", "created_unix_ms": 0, "expires_unix_ms": null, "source": "cli"}],
                        "now_unix_ms": 0
                    })
                    .to_string()
                } else {
                    r#"{"accepted":0}"#.to_owned()
                };
                let _ = write!(conn, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len());
            });
        }
    });
}

#[test]
fn a_policy_the_filter_cannot_compile_is_refused_and_the_last_good_one_kept() {
    let stack = Stack::start_with(StackOptions { concurrency: WORKERS, ..StackOptions::default().without_enforcer() });
    fake_enforcer(stack.enforcer());
    let fake = stack.token("triage-bot", Some("alice"), Some("s-fake"));
    let fine = stack.token("triage-bot", Some("alice"), Some("s-fine"));
    // The revocation served beside the broken policy is adopted...
    let (took, r) = time_until(Duration::from_secs(5), || crm(&stack, &fake), |r| r.status == 403);
    assert_eq!(r.header("x-interlock-rule"), Some("revoked"), "after {took:?}: {}", r.text());
    // ...while decisions still come from the last good policy, and the refusal is counted.
    let r = crm(&stack, &fine);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(stack.envoy_counter("wasmcustom.interlock.policy.rejected").unwrap_or(0) >= 1);
    assert!(stack.log(Which::Envoy).contains("policy generation 3 refused"), "the refusal is logged");
}

#[test]
fn an_idle_filter_keeps_one_waiting_poll_per_worker_not_a_busy_loop() {
    // A fresh enforcer has nothing to serve (version 0): the filter must wait, not ask again at
    // once (that once spun at thousands of polls per second).
    let stack = stack();
    std::thread::sleep(Duration::from_millis(500));
    let before = stack.envoy_counter("cluster.interlock_enforcer.upstream_rq_total").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    let after = stack.envoy_counter("cluster.interlock_enforcer.upstream_rq_total").unwrap_or(0);
    assert!(after - before <= u64::from(WORKERS), "{} requests to the enforcer in 2 idle seconds", after - before);
}
