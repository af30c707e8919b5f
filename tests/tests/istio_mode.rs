//! The filter as Istio runs it: Istio's WasmPlugin cannot set Envoy's
//! `allow_on_headers_stop_iteration`, so the plugin configuration says `"hold_headers": false`
//! (istio/base/wasmplugin.yaml). The headers of a governed request then go upstream first, the body
//! is still held until the decision, and a refusal resets the upstream stream: the upstream never
//! executes what was refused.

// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use interlock_tests::{Request, Stack, StackOptions, demo_envoy_config, embedded_plugin_config};
use serde_json::json;

fn istio_like_stack() -> Stack {
    let yaml = std::fs::read_to_string(demo_envoy_config()).unwrap();
    let mut config = embedded_plugin_config(&yaml).unwrap();
    config["hold_headers"] = json!(false);
    Stack::start_with(StackOptions::default().plugin_config(config))
}

#[test]
fn without_held_headers_a_refused_body_is_never_executed() {
    let stack = istio_like_stack();
    let token = stack.token("triage-bot", Some("alice"), Some("s-istio"));
    let call = |tool: &str, arguments: serde_json::Value| {
        Request::post("/mcp")
            .bearer(&token)
            .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}))
            .send(stack.listener())
    };
    let before = stack.stats();
    let r = call("delete_repository", json!({"name": "core"}));
    assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("deny-delete-repository")), "{}", r.text());
    assert_eq!(r.json()["id"], 5);
    let delta = Stack::stats_delta(&before, &stack.stats());
    assert!(
        !delta.keys().any(|k| k.starts_with("mcp:")),
        "the upstream may have seen the headers, never the body: {delta:?}"
    );
    // Allowed calls still work in this mode.
    let r = call("get_issue", json!({"number": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["result"].is_object(), "{}", r.text());
    // And the worker that decided both is still alive: no host call it made was refused.
    let again = call("get_issue", json!({"number": 4}));
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(!stack.log(interlock_tests::Which::Envoy).contains("panic"), "the filter panicked");
}
