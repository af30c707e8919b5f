//! Rate-limit leases through real Envoy with several workers: a per-session limit large enough
//! for the workers to lease tokens (`policies/src/ratelimit.rs`) still admits no more than the
//! limit across workers, and refuses early no more than the leases can hold.

// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use interlock_policies::ratelimit::LEASE_MAX;
use interlock_tests::{Request, Response, Stack, StackOptions, repo_root};
use serde_json::{Value, json};

const WORKERS: u32 = 4;
/// Tokens per session, refilled over 3,000 s: a 10 s run earns at most one more.
const LIMIT: u32 = 300;

fn crm(stack: &Stack, token: &str) -> Response {
    Request::get("/api/customers/1").bearer(token).send(stack.listener())
}

#[test]
fn a_leased_limit_admits_at_most_the_limit_across_workers() {
    let stack = Stack::start_with(StackOptions { concurrency: WORKERS, ..StackOptions::default() });
    let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join("policies/examples/demo.json")).unwrap()).unwrap();
    policy["version"] = json!("demo-lease");
    // A new limit id: its buckets are not the demo limit's.
    policy["rate_limits"] = json!([{"id": "per-session-lease", "key": ["session"], "requests": LIMIT, "per_seconds": 3000}]);
    let file = stack.dir().join("lease.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let url = stack.enforcer_url();
    let out = stack.interlock(&["--enforcer", url.as_str(), "policy", "push", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every worker on the new policy: 25 requests of a fresh session pass (the demo's limit is 20).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut canary = 0;
    loop {
        canary += 1;
        let token = stack.token("triage-bot", Some("alice"), Some(&format!("s-canary-{canary}")));
        if (0..25).all(|_| crm(&stack, &token).status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the pushed limit never took effect");
    }

    let token = stack.token("triage-bot", Some("alice"), Some("s-lease"));
    let start = Instant::now();
    let (mut admitted, mut ids) = (0u32, Vec::new());
    for i in 0..LIMIT + 100 {
        let r = crm(&stack, &token);
        match r.status {
            200 => admitted += 1,
            429 => {
                assert_eq!(r.header("x-interlock-rule"), Some("per-session-lease"), "request {i}");
                assert!(r.header("retry-after").is_some(), "a 429 says when to retry");
            }
            s => panic!("request {i}: {s} {}", r.text()),
        }
        ids.push(r.header("x-interlock-decision-id").unwrap().to_owned());
    }
    let took = start.elapsed();
    let refilled = u32::try_from(took.as_secs() / 10).unwrap();
    let workers = stack.workers_of(&ids);
    eprintln!("{admitted} of {} admitted in {took:?} on {} workers (limit {LIMIT})", LIMIT + 100, workers.len());
    assert!(workers.len() >= 2, "the requests should spread over workers: {workers:?}");
    assert!(admitted <= LIMIT + refilled, "{admitted} admitted: over the limit");
    // Early refusal: at most what the other workers' leases hold when the bucket runs dry.
    assert!(admitted >= LIMIT - WORKERS * (LEASE_MAX - 1), "{admitted} admitted: refused too early");
}
