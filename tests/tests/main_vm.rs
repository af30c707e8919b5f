// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! Which VM only validates the policy (issue 7, memory; bench/MEMORY.md, session 5), in real
//! Envoy at `--concurrency 2`: the VMs of a vm_id number themselves in the order they start, and
//! VM 2 keeps no tables. In Envoy 1.40 VM 1 is proxy-wasm's configuration canary (main thread,
//! destroyed at once), VM 2 the main thread's own VM, which never serves a stream, and the
//! workers' come after. The workers still decide with the whole policy, follow a live policy
//! update while VM 2 validates it, and a bad policy is still refused.
//!
//! Run alone: `cargo test -p interlock-tests --test main_vm` (after `make build`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use interlock_tests::{Request, Response, Stack, StackOptions, Which, demo_policy};
use serde_json::json;

/// Envoy's default log line: `[date time][thread id][level][logger] ...`; the thread id.
fn thread_of(line: &str) -> Option<&str> {
    line.split('[').nth(2)?.split(']').next()
}

/// The thread ids of the lines containing `needle`, in log order.
fn threads_of<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).filter_map(thread_of).collect()
}

/// Envoy's log once `done` holds of it (or after 10 s, for the assertions to show it).
fn log_when(stack: &Stack, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = stack.log(Which::Envoy);
        if done(&log) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn search_issues(stack: &Stack, token: &str) -> Response {
    stack.send(
        &Request::post("/mcp")
            .bearer(token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_issues", "arguments": {"query": "x"}}})),
    )
}

const VALIDATED: &str = "not compiled: this VM validates only";

#[test]
fn vm_2_is_the_main_threads_and_only_validates_while_the_workers_decide() {
    let stack = Stack::start_with(StackOptions {
        envoy_args: vec!["--component-log-level".into(), "wasm:debug,main:debug".into()],
        ..StackOptions::default()
    });
    // The workers decide with the demo policy: refused by a rule, and allowed by a grant.
    let triage = stack.token("triage-bot", Some("alice"), Some("s-main-vm-1"));
    let billing = stack.token("billing-agent", Some("bob"), Some("s-main-vm-2"));
    for _ in 0..4 {
        let denied = stack.send(&Request::get("/api/admin/users").bearer(&triage));
        assert_eq!((denied.status, denied.header("x-interlock-rule")), (403, Some("deny-admin-api")), "{}", denied.text());
        let allowed = stack.send(&Request::get("/api/customers").bearer(&billing));
        assert_eq!(allowed.status, 200, "{}", allowed.text());
    }
    assert_eq!(search_issues(&stack, &billing).header("x-interlock-rule"), Some("default-deny"));

    let log = log_when(&stack, |l| l.contains("starting main dispatch loop") && l.matches("worker entering dispatch loop").count() == 2);
    let main = threads_of(&log, "starting main dispatch loop");
    let workers: BTreeSet<&str> = threads_of(&log, "worker entering dispatch loop").into_iter().collect();
    assert_eq!((main.len(), workers.len()), (1, 2), "main and worker threads:\n{log}");
    let main = main[0];
    assert!(!workers.contains(main), "{log}");

    // The numbers, each VM's decision logged once: 1 and 2 on the main thread, 3 and 4 on the workers.
    assert_eq!(threads_of(&log, "interlock: VM 1 (Envoy's configuration canary, by start-up order): compiling policies"), vec![main], "{log}");
    assert_eq!(
        threads_of(&log, "interlock: VM 2 (the main thread's, by start-up order): validating policies only; compiling on first use"),
        vec![main],
        "{log}"
    );
    let numbered: BTreeSet<&str> = threads_of(&log, "interlock: VM 3: compiling policies").into_iter().chain(threads_of(&log, "interlock: VM 4: compiling policies")).collect();
    assert_eq!(numbered, workers, "VMs 3 and 4 are the workers':\n{log}");
    assert!(!log.contains("interlock: VM 5"), "{log}");

    // VM 2 only validated; the canary (main thread) and each worker compiled.
    assert_eq!(threads_of(&log, VALIDATED), vec![main], "the VM that only validated:\n{log}");
    let loaded = threads_of(&log, " loaded (");
    assert_eq!(loaded.len(), 3, "{log}");
    assert_eq!(loaded.iter().filter(|t| **t == main).count(), 1, "the canary compiles:\n{log}");
    assert_eq!(loaded.iter().filter(|t| workers.contains(**t)).copied().collect::<BTreeSet<_>>(), workers, "{log}");
    // VM 2 never got a stream.
    assert!(!log.contains("compiled on this VM's first stream"), "{log}");

    // A live policy update through the enforcer: the workers compile it and decide with it; VM 2
    // validates it and still keeps no tables.
    let mut policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(demo_policy()).unwrap()).unwrap();
    policy["version"] = json!("demo-main-vm-pushed");
    policy["agents"]["billing-agent"]["grants"].as_array_mut().unwrap().push(json!({"id": "billing-search", "mcp": {"tools": ["search_issues"]}}));
    let file = stack.dir().join("pushed.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let url = stack.enforcer_url();
    let out = stack.interlock(&["--enforcer", &url, "policy", "push", file.to_str().unwrap()]);
    assert!(out.status.success(), "push: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let pushed = |l: &str| l.contains("\"demo-main-vm-pushed\"");
    let log = log_when(&stack, |l| {
        let lines: Vec<&str> = l.lines().filter(|l| pushed(l)).collect();
        lines.iter().filter(|l| l.contains("now deciding with policy")).count() == 2 && lines.iter().any(|l| l.contains(VALIDATED))
    });
    let adopted: Vec<&str> = log.lines().filter(|l| pushed(l)).collect();
    let deciding: BTreeSet<&str> = adopted.iter().filter(|l| l.contains("now deciding with policy")).filter_map(|l| thread_of(l)).collect();
    assert_eq!(deciding, workers, "the workers follow the pushed policy:\n{log}");
    let validating: Vec<&str> = adopted.iter().filter(|l| l.contains(VALIDATED)).filter_map(|l| thread_of(l)).collect();
    assert_eq!(validating, vec![main], "VM 2 validates the pushed policy only:\n{log}");
    for token in (0..8).map(|i| stack.token("billing-agent", Some("carol"), Some(&format!("s-main-vm-push-{i}")))) {
        let r = search_issues(&stack, &token);
        assert_eq!(r.status, 200, "the pushed grant: {}", r.text());
    }
    let denied = stack.send(&Request::get("/api/admin/users").bearer(&triage));
    assert_eq!(denied.header("x-interlock-rule"), Some("deny-admin-api"), "{}", denied.text());
    assert!(!stack.log(Which::Envoy).contains("compiled on this VM's first stream"), "{log}");
}

#[test]
fn a_bad_policy_is_still_refused() {
    let dir = std::env::temp_dir().join(format!("interlock-main-vm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(demo_policy()).unwrap()).unwrap();
    doc["rules"][1]["http"]["paths"] = serde_json::json!(["no-slash"]);
    let bad = dir.join("bad-policy.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let opts = StackOptions::default().policy(&bad);
    let outcome = std::panic::catch_unwind(move || Stack::start_with(opts));
    let _ = std::fs::remove_dir_all(&dir);
    let report = match outcome {
        Ok(_) => panic!("Envoy started with a bad policy"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(report.contains("interlock: configuration refused: plugin configuration: policy: $.rules[1].http.paths[0]"), "{report}");
}
