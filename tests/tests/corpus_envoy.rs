//! The decision corpus (`policies/tests/corpus/*.json`) through real Envoy with the release
//! `.wasm`: every case is sent on the wire (raw HTTP/1.1, exact bytes), and must come back with
//! the expected decision, never reach the upstream when refused, and leave exactly one event.
//!
//! Where Envoy itself changes a case before the filter sees it (its own path normalization or
//! rejection), the case says so in `envoy` with the reason.

// Test code: a failed expectation stops the run with the case's name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use interlock_policies::Action;
use interlock_policies::corpus::{Case, CorpusFile};
use interlock_policies::schema::Mode;
use interlock_tests::{Request, Response, Stack, repo_root};

fn send_case(stack: &Stack, case: &Case, tokens: &mut HashMap<String, String>) -> Response {
    let r = &case.request;
    let mut req = Request::new(&r.method, &r.path).header("host", &r.authority);
    for (k, v) in r.wire_headers() {
        req = req.header(&k, &v);
    }
    if let Some(bad) = &r.bad_token {
        req = req.header("authorization", bad);
    } else if let Some(id) = &r.identity {
        // A session of its own per case: the demo's per-session rate limit (20 per 10 s) is
        // exercised by its own test, not tripped by the corpus running back to back.
        let session = id.session.as_ref().map(|s| format!("{s}-{}", tokens.len()));
        let key = format!("{}|{:?}|{:?}", id.agent, id.user, session);
        let token = tokens
            .entry(key)
            .or_insert_with(|| stack.token(&id.agent, id.user.as_deref(), session.as_deref()))
            .clone();
        req = req.bearer(&token);
    }
    match (r.body_bytes(), r.chunk_size) {
        (Some(body), Some(n)) => {
            let chunks: Vec<&[u8]> = body.chunks(n.max(1)).collect();
            req.send_chunked(stack.listener(), &chunks, Duration::from_millis(0))
        }
        (Some(body), None) => req.body(body).send(stack.listener()),
        (None, _) => req.send(stack.listener()),
    }
}

/// What the case expects to see through Envoy.
struct Wire {
    /// Local reply status, or None when the request must reach the upstream.
    status: Option<u16>,
    /// A refusal of the response: the request did reach the upstream.
    reached: bool,
    /// The deciding rule when the filter decided; None when Envoy refused on its own.
    rule: Option<String>,
    action: Action,
    mode: Mode,
}

fn wire_expectation(case: &Case) -> Wire {
    match &case.envoy {
        Some(e) => Wire {
            status: Some(e.status),
            reached: e.reaches_upstream,
            rule: e.rule.clone(),
            action: if e.status == 0 { Action::Allow } else { Action::Deny },
            mode: Mode::Enforce,
        },
        None => Wire {
            status: (case.expect.mode == Mode::Enforce && case.expect.action == Action::Deny).then_some(case.expect.status),
            reached: false,
            rule: Some(case.expect.rule.clone()),
            action: case.expect.action,
            mode: case.expect.mode,
        },
    }
}

#[test]
fn corpus_through_envoy() {
    let dir = repo_root().join("policies/tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in files {
        let file: CorpusFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let stack = Stack::start_with(interlock_tests::StackOptions::default().policy(format!("policies/{}", file.policy)));
        let mut tokens = HashMap::new();
        // decision id -> (case name, expected rule, action, mode)
        let mut decided: BTreeMap<String, (String, String, Action, Mode)> = BTreeMap::new();
        for case in &file.cases {
            let before = stack.stats();
            let resp = send_case(&stack, case, &mut tokens);
            let delta = Stack::stats_delta(&before, &stack.stats());
            let want = wire_expectation(case);
            let name = format!("{}: {:?}", path.file_name().unwrap().to_string_lossy(), case.name);
            let got_rule = resp.header("x-interlock-rule").map(str::to_owned);
            let id = resp.header("x-interlock-decision-id").map(str::to_owned);
            match want.status {
                Some(status) => {
                    if resp.status != status || got_rule != want.rule {
                        failures.push(format!("{name}: expected {status} rule {:?}, got {} rule {got_rule:?}: {}", want.rule, resp.status, resp.text()));
                    }
                    // Refused means refused: nothing of the request reached the upstream (unless
                    // it is the response that was refused).
                    if want.reached == delta.is_empty() {
                        failures.push(format!("{name}: refused with {}; upstream reached: expected {}, saw {delta:?}", resp.status, want.reached));
                    }
                    if want.rule.is_some() {
                        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
                        let rule_in_body = body.pointer("/rule").or_else(|| body.pointer("/error/data/rule"));
                        if rule_in_body.and_then(|v| v.as_str()) != want.rule.as_deref() {
                            failures.push(format!("{name}: reply body does not name the rule: {body}"));
                        }
                    }
                }
                None => {
                    if got_rule.is_some() || !delta.keys().any(|k| k.starts_with("http:")) {
                        failures.push(format!(
                            "{name}: expected to reach the upstream, got {} rule {got_rule:?}, upstream saw {delta:?}",
                            resp.status
                        ));
                    }
                }
            }
            match (id, &want.rule) {
                (Some(id), Some(rule)) => {
                    decided.insert(id, (name, rule.clone(), want.action, want.mode));
                }
                (None, Some(_)) => failures.push(format!("{name}: response carries no x-interlock-decision-id")),
                (_, None) => {}
            }
            checked += 1;
        }

        // One decision, one event: every decision id appears exactly once, with its rule.
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let events = stack.events();
            let seen = events.iter().filter(|e| decided.contains_key(e["decision_id"].as_str().unwrap_or_default())).count();
            if seen >= decided.len() || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for e in &events {
            *counts.entry(e["decision_id"].as_str().unwrap_or_default()).or_default() += 1;
        }
        for (id, (name, rule, action, mode)) in &decided {
            let n = counts.get(id.as_str()).copied().unwrap_or(0);
            if n != 1 {
                failures.push(format!("{name}: decision {id} has {n} events, expected exactly 1"));
                continue;
            }
            let e = events.iter().find(|e| e["decision_id"] == id.as_str()).unwrap();
            let want_action = serde_json::to_value(action).unwrap();
            let want_mode = serde_json::to_value(mode).unwrap();
            if e["rule"] != rule.as_str() || e["action"] != want_action || e["mode"] != want_mode {
                failures.push(format!("{name}: event says rule {} action {} mode {}, expected {rule} {want_action} {want_mode}", e["rule"], e["action"], e["mode"]));
            }
        }
    }
    assert!(checked > 0, "no corpus case ran");
    assert!(failures.is_empty(), "{} corpus failure(s) through Envoy:\n{}", failures.len(), failures.join("\n"));
}
