//! Heap allocations per decision of the engine bench's demo requests (evaluate and drop), counted
//! by a global allocator, per thread. Prints the counts and asserts ceilings, so a change that
//! brings an allocation back onto the REST path shows here before it shows in a bench.
//!
//! Run: `cargo test --release -p interlock-policies --test allocations -- --nocapture`

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use interlock_policies::corpus::CaseRequest;
use interlock_policies::ratelimit::NoSharedData;
use interlock_policies::{Action, Engine};
use serde_json::json;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator; the counter is a thread-local `Cell` that does not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get().wrapping_add(1)));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get().wrapping_add(1)));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn allocations_per_decision() {
    let engine = Engine::from_json(include_str!("../examples/demo.json")).expect("demo policy compiles");
    let triage = json!({ "agent": "triage-bot", "user": "alice", "session": "s-1" });
    let headers = json!([
        ["accept", "application/json, text/event-stream"],
        ["user-agent", "interlock-bench/1"],
        ["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    ]);
    let mcp = |tool: &str, args: serde_json::Value| json!({ "jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": { "name": tool, "arguments": args } });
    let comment = "The crash reproduces on the second retry after the cache is warmed; see the attached trace. ".repeat(10);
    let allowed_call = json!({ "method": "POST", "path": "/mcp", "identity": triage, "headers": headers, "body": mcp("create_comment", json!({ "repo": "acme/api", "issue": 7, "body": comment })) });
    // (name, request, expected decision, most allocations allowed)
    let cases = [
        ("rest_get_allowed", json!({ "method": "GET", "path": "/api/customers/42?fields=name", "identity": triage, "headers": headers }), (Action::Allow, 0), 6),
        ("anonymous_401", json!({ "method": "GET", "path": "/api/customers/42", "headers": headers }), (Action::Deny, 401), 4),
        ("mcp_tools_call_1k_allowed", allowed_call.clone(), (Action::Allow, 0), 17),
        (
            "mcp_delete_repository_denied",
            json!({ "method": "POST", "path": "/mcp", "identity": triage, "headers": headers, "body": mcp("delete_repository", json!({ "repo": "acme/api" })) }),
            (Action::Deny, 403),
            17,
        ),
    ];
    for (name, case, expect, ceiling) in cases {
        let case: CaseRequest = serde_json::from_value(case).expect("a corpus request");
        let (req, body) = (case.to_http_request(), case.body_bytes());
        // Once outside the count (lazy statics, first-use growth).
        let first = engine.evaluate(&req, body.as_deref());
        assert_eq!((first.decision.action, first.decision.status), expect, "{name}: {}", first.decision.reason);
        drop(first);
        let before = allocations();
        drop(std::hint::black_box(engine.evaluate(&req, body.as_deref())));
        let n = allocations().wrapping_sub(before);
        println!("{name}: {n} allocations per decision");
        assert!(n <= ceiling, "{name}: {n} allocations, at most {ceiling} expected");
    }
    // The answer to the allowed tools/call, 1 KB of text with nothing sensitive in it, judged as
    // the filter judges a governed response: only the parse and the scan allocate.
    let case: CaseRequest = serde_json::from_value(allowed_call).expect("a corpus request");
    let facts = engine.evaluate(&case.to_http_request(), case.body_bytes().as_deref()).facts;
    let answer = json!({ "jsonrpc": "2.0", "id": 42, "result": { "content": [{ "type": "text", "text": comment }] } }).to_string();
    assert!(engine.on_response_body(&facts, answer.as_bytes(), &mut NoSharedData).is_none(), "a clean answer passes unrecorded");
    let before = allocations();
    drop(std::hint::black_box(engine.on_response_body(&facts, answer.as_bytes(), &mut NoSharedData)));
    let n = allocations().wrapping_sub(before);
    println!("mcp_response_1k_clean: {n} allocations per judgement");
    assert!(n <= 8, "mcp_response_1k_clean: {n} allocations, at most 8 expected");

    // The `llm16k` mix of `make bench`: a chat completion of 16 KB answering triage-bot, judged on
    // its model route (its tool calls read, every string scanned).
    let chat = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Summarize the incident." }] });
    let case: CaseRequest =
        serde_json::from_value(json!({ "method": "POST", "path": "/v1/chat/completions", "identity": triage, "headers": headers, "body": chat })).expect("a corpus request");
    let eval = engine.evaluate(&case.to_http_request(), case.body_bytes().as_deref());
    assert_eq!(eval.decision.action, Action::Allow, "{}", eval.decision.reason);
    let answer = include_bytes!("../../envoy-config/bench/llm16k-response.json");
    assert!(engine.on_response_body(&eval.facts, answer, &mut NoSharedData).is_none(), "the bench's answer passes unrecorded");
    let before = allocations();
    drop(std::hint::black_box(engine.on_response_body(&eval.facts, answer, &mut NoSharedData)));
    let n = allocations().wrapping_sub(before);
    println!("llm_response_16k_clean: {n} allocations per judgement");
    assert!(n <= 39, "llm_response_16k_clean: {n} allocations, at most 39 expected");
}
