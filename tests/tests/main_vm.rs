// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! Which VM only validates the policy (issue 7, memory; bench/MEMORY.md, session 5), in real
//! Envoy at `--concurrency 2`: the first VM of the process to configure a plugin configuration
//! keeps no tables. In Envoy 1.40 that is proxy-wasm's configuration canary, on the main thread,
//! before the main thread's own VM and the workers'. The workers still decide with the whole
//! policy, and a bad policy is still refused.
//!
//! Run alone: `cargo test -p interlock-tests --test main_vm` (after `make build`).

use std::time::{Duration, Instant};

use interlock_tests::{Request, Stack, StackOptions, Which, demo_policy};

/// Envoy's default log line: `[date time][thread id][level][logger] ...`; the thread id.
fn thread_of(line: &str) -> Option<&str> {
    line.split('[').nth(2)?.split(']').next()
}

/// The thread ids of the lines containing `needle`, in log order.
fn threads_of<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).filter_map(thread_of).collect()
}

#[test]
fn the_first_vm_only_validates_and_the_workers_still_decide() {
    let stack = Stack::start_with(StackOptions {
        envoy_args: vec!["--component-log-level".into(), "wasm:debug,main:debug".into()],
        ..StackOptions::default()
    });
    // A worker decides with the demo policy: refused by a rule, and allowed by a grant.
    let triage = stack.token("triage-bot", Some("alice"), Some("s-main-vm-1"));
    let billing = stack.token("billing-agent", Some("bob"), Some("s-main-vm-2"));
    for _ in 0..4 {
        let denied = stack.send(&Request::get("/api/admin/users").bearer(&triage));
        assert_eq!((denied.status, denied.header("x-interlock-rule")), (403, Some("deny-admin-api")), "{}", denied.text());
        let allowed = stack.send(&Request::get("/api/customers").bearer(&billing));
        assert_eq!(allowed.status, 200, "{}", allowed.text());
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = stack.log(Which::Envoy);
        if log.contains("starting main dispatch loop") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let main = threads_of(&log, "starting main dispatch loop");
    let workers = threads_of(&log, "worker entering dispatch loop");
    assert_eq!((main.len(), workers.len()), (1, 2), "main and worker threads:\n{log}");
    let main = main[0];
    assert!(!workers.contains(&main), "{log}");

    // Exactly one VM only validated, on the main thread, and before any VM compiled.
    let validated = threads_of(&log, "rules), not compiled: this VM is the first to configure it");
    assert_eq!(validated, vec![main], "the VM that only validated:\n{log}");
    let order: Vec<&str> = log.lines().filter(|l| l.contains("validated (") || l.contains(" loaded (")).collect();
    assert!(order.first().is_some_and(|l| l.contains("validated (")), "the first VM to configure validates:\n{}", order.join("\n"));
    // Every other VM compiled: the main thread's own, then one per worker.
    let loaded = threads_of(&log, " loaded (");
    assert_eq!(loaded.len(), 3, "{log}");
    assert_eq!(loaded[0], main, "the main thread's VM compiles after the canary:\n{log}");
    for w in &workers {
        assert!(loaded.contains(w), "worker {w} compiled:\n{log}");
    }
    // The places the VMs took, as the debug log gives them.
    for (place, thread) in [(1, main), (2, main)] {
        let line = format!("this VM is #{place} to configure it in this process");
        assert_eq!(threads_of(&log, &line), vec![thread], "{line}:\n{log}");
    }
    // The VM that only validated was the canary: it never got a stream.
    assert!(!log.contains("compiled on this VM's first stream"), "{log}");
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
