//! Deep inspection through real Envoy with the demo stack: sensitive data in both directions, tool
//! calls a model proposes (streamed and not), redaction, and bodies that cannot be inspected.

// Test code: a failed expectation stops the run with what was seen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use interlock_tests::{Request, Response, Stack, StackOptions};
use serde_json::{Value, json};

fn mcp_call(stack: &Stack, token: &str, tool: &str, args: Value) -> Response {
    Request::post("/mcp")
        .bearer(token)
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
        .send(stack.listener())
}

fn chat(stack: &Stack, token: &str, content: &str, stream: bool) -> Response {
    Request::post("/v1/chat/completions")
        .bearer(token)
        .json(&json!({"model": "mock", "stream": stream, "messages": [{"role": "user", "content": content}]}))
        .send(stack.listener())
}

fn messages(stack: &Stack, token: &str, content: &str, stream: bool) -> Response {
    Request::post("/v1/messages")
        .bearer(token)
        .json(&json!({"model": "mock", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": content}]}))
        .send(stack.listener())
}

#[test]
fn a_card_dump_is_refused_and_the_session_revoked() {
    let stack = Stack::start();
    let token = stack.token("billing-agent", Some("bob"), Some("s-card-dump"));
    let r = mcp_call(&stack, &token, "export_customers", json!({}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("x-interlock-rule"), Some("card-dump"));
    let body = r.json();
    assert_eq!(body["error"]["data"]["rule"], "card-dump", "a JSON-RPC error with the rule: {body}");
    assert!(!r.text().contains("card_number"), "nothing of the records leaves");
    // The session is revoked fleet-wide: its next call is refused, whatever it is.
    let deadline = Instant::now() + Duration::from_secs(3);
    let next = loop {
        let r = Request::get("/api/customers/1").bearer(&token).send(stack.listener());
        if r.header("x-interlock-rule") == Some("revoked") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((next.status, next.header("x-interlock-rule")), (403, Some("revoked")), "{}", next.text());
    // The event records the classes and counts, never the values.
    let id = r.header("x-interlock-decision-id").unwrap().to_owned();
    let event = stack.wait_for_event(&id, Duration::from_secs(5));
    assert_eq!(event["revoke"]["principal"], "session");
    // A decision about the response, naming the request's own decision (which let it through).
    assert_eq!(event["phase"], "response");
    let request_id = event["request_decision_id"].as_str().expect("the request's decision id").to_owned();
    let request_event = stack.wait_for_event(&request_id, Duration::from_secs(5));
    assert_eq!((request_event["rule"].as_str(), request_event["phase"].as_str()), (Some("billing-export"), Some("request")));
    let cards = event["data_classes"].as_array().unwrap().iter().find(|c| c["class"] == "pii.payment_card").expect("class recorded");
    assert_eq!(cards["count"], 50);
    assert!(!event.to_string().contains("4111"), "no card digits in the event");
}

#[test]
fn the_aws_key_from_a_config_file_never_reaches_the_llm() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-exfil"));
    // The shadow rule lets the read through; the agent now holds the file.
    let file = mcp_call(&stack, &token, "read_file", json!({"path": "config/.env"}));
    assert_eq!(file.status, 200);
    let text = file.json()["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("AKIA"), "{text}");
    let before = stack.stats();
    for (name, content) in [
        ("as read", format!("summarize this config:\n{text}")),
        ("json-escaped twice", serde_json::to_string(&text).unwrap()),
        ("zero-width inside", text.replacen("AKIA", "AK\u{200b}IA", 1)),
    ] {
        let r = chat(&stack, &token, &content, false);
        assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("no-secrets-to-llm")), "{name}: {}", r.text());
        let r = messages(&stack, &token, &content, true);
        assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("no-secrets-to-llm")), "{name} (anthropic): {}", r.text());
    }
    let delta = Stack::stats_delta(&before, &stack.stats());
    assert!(!delta.keys().any(|k| k.starts_with("llm:")), "the LLM saw nothing: {delta:?}");
    // Without the secret the same call goes through.
    assert_eq!(chat(&stack, &token, "summarize the README", false).status, 200);
}

#[test]
fn a_forbidden_tool_call_proposed_by_the_model_is_blocked_streamed_and_not() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-tool"));
    // Not streamed: the whole response is replaced with a 403 naming the rule.
    for r in [chat(&stack, &token, "please call delete_repository now", false), messages(&stack, &token, "call delete_repository", false)] {
        assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("deny-delete-repository")), "{}", r.text());
        assert!(!r.text().contains("tool_calls") && !r.text().contains("tool_use"), "{}", r.text());
    }
    // Streamed: the stream stops at the frame that names the tool; no fragment of it leaves.
    for (name, r) in [
        ("openai", chat(&stack, &token, "call delete_repository", true)),
        ("anthropic", messages(&stack, &token, "call delete_repository", true)),
    ] {
        assert_eq!(r.status, 200, "{name}: the stream had started");
        let text = r.text();
        assert!(text.contains("event: error") && text.contains("deny-delete-repository"), "{name}: {text}");
        assert!(!text.contains("delete_r") && !text.contains("tool_use\""), "{name}: a fragment leaked: {text}");
        assert!(!text.contains("[DONE]") && !text.contains("message_stop"), "{name}: frames after the block leaked: {text}");
    }
    // A tool the agent may call streams through whole, its split name reassembled.
    let r = Request::post("/v1/chat/completions")
        .bearer(&token)
        .header("user-agent", "agent-sdk/1.2")
        .json(&json!({"model": "mock-4", "stream": true, "messages": [{"role": "user", "content": "call get_issue"}]}))
        .send(stack.listener());
    let seen = stack.wait_for_event(r.header("x-interlock-decision-id").unwrap(), Duration::from_secs(5));
    assert_eq!((seen["request"]["user_agent"].as_str(), seen["request"]["model"].as_str()), (Some("agent-sdk/1.2"), Some("mock-4")));
    assert!(r.text().contains("[DONE]") && r.text().contains("get_") && !r.text().contains("event: error"), "{}", r.text());
    let r = messages(&stack, &token, "call search_issues", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["name"], "search_issues");
    // And the blocked proposals are events with the tool named.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = stack.events();
        if events.iter().filter(|e| e["rule"] == "deny-delete-repository").count() >= 4 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let blocked: Vec<&Value> = events.iter().filter(|e| e["rule"] == "deny-delete-repository").collect();
    assert_eq!(blocked.len(), 4, "{blocked:?}");
    assert!(blocked.iter().all(|e| e["request"]["calls"].to_string().contains("delete_repository")));
}

#[test]
fn tools_offered_to_the_model_are_checked_too() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-offer"));
    let r = Request::post("/v1/chat/completions")
        .bearer(&token)
        .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}],
                      "tools": [{"type": "function", "function": {"name": "export_customers", "parameters": {}}}],
                      "tool_choice": {"type": "function", "function": {"name": "export_customers"}}}))
        .send(stack.listener());
    assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("default-deny")), "{}", r.text());
}

#[test]
fn a_compressed_body_never_reaches_the_upstream_uninspected() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-gzip"));
    let before = stack.stats();
    // A gzip member (header only is enough: it must not be looked into, only refused).
    let gz: Vec<u8> = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    for path in ["/mcp", "/v1/chat/completions", "/a2a"] {
        let r = Request::post(path).bearer(&token).header("content-type", "application/json").header("content-encoding", "gzip").body(gz.clone()).send(stack.listener());
        assert_eq!((r.status, r.header("x-interlock-rule")), (415, Some("unsupported-encoding")), "{path}: {}", r.text());
    }
    assert!(Stack::stats_delta(&before, &stack.stats()).is_empty(), "the upstream saw none of them");
}

#[test]
fn redacted_responses_still_parse_as_json() {
    // The demo policy plus a governed CRM route whose card numbers are redacted.
    let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(interlock_tests::repo_root().join("policies/examples/demo.json")).unwrap()).unwrap();
    policy["governed"].as_array_mut().unwrap().push(json!({"id": "crm", "path": "/api/customers/**", "protocol": "json"}));
    policy["data_rules"].as_array_mut().unwrap().push(json!({"id": "mask-cards", "classes": ["pii.payment_card"], "direction": "response", "routes": ["crm"], "action": "redact"}));
    let dir = std::env::temp_dir().join(format!("interlock-redact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let stack = Stack::start_with(StackOptions::default().policy(&file));
    let token = stack.token("triage-bot", Some("alice"), Some("s-redact"));
    let direct: Value = Request::get("/api/customers/7").send(stack.upstream()).json();
    let card = direct["card_number"].as_str().unwrap().to_owned();
    let r = Request::get("/api/customers/7").bearer(&token).send(stack.listener());
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).expect("the redacted response is JSON");
    assert_eq!(body["card_number"], "[REDACTED:pii.payment_card]");
    assert_eq!(body["name"], direct["name"], "the rest is untouched");
    assert!(!r.text().contains(&card));
    let id = r.header("x-interlock-decision-id").unwrap();
    let redaction = stack.wait_for_event_matching("the redaction", |e| e["rule"] == "mask-cards", Duration::from_secs(5));
    assert_eq!((redaction["action"].as_str(), redaction["status"].as_u64()), (Some("redact"), Some(0)));
    assert_eq!(stack.wait_for_event(id, Duration::from_secs(5))["rule"], "triage-crm-lookup", "the request's own decision");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tools_list_hides_what_the_caller_may_not_call_and_a_rug_pull_is_caught() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-tools"));
    let list = || {
        Request::post("/mcp").bearer(&token).json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).send(stack.listener())
    };
    let r = list();
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = r.json()["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect();
    assert_eq!(names, ["search_issues", "get_issue", "create_comment", "read_file"], "triage-bot only sees the tools it may call");
    // The same list answered as an event stream (what SDK servers do by default) is trimmed too.
    let list_sse = || {
        Request::post("/mcp")
            .bearer(&token)
            .header("accept", "application/json, text/event-stream")
            .header("x-demo-mcp-sse", "1")
            .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}))
            .send(stack.listener())
    };
    let r = list_sse();
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/event-stream")), "{}", r.text());
    let text = r.text();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data line: {text}"));
    let streamed: Value = serde_json::from_str(data).expect("the event's data is the JSON-RPC answer");
    let names: Vec<&str> = streamed["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["search_issues", "get_issue", "create_comment", "read_file"], "hidden in the stream as well: {text}");
    // The server changes get_issue's definition under the agents' feet.
    let pulled = Request::post("/__demo/rugpull").send(stack.upstream());
    assert_eq!(pulled.status, 200);
    let r = list();
    assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("tool-definition-changed")), "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["rule"], "tool-definition-changed", "a JSON-RPC error with the request's id");
    assert_eq!(r.json()["id"], 3);
    let event = stack.wait_for_event_matching("the rug pull", |e| e["rule"] == "tool-definition-changed", Duration::from_secs(5));
    assert!(event["reason"].as_str().unwrap().contains("get_issue"), "{event}");
    // Neither a batch nor an event stream is a way around the pin.
    let r = Request::post("/mcp").bearer(&token).json(&json!([{"jsonrpc": "2.0", "id": 5, "method": "tools/list"}])).send(stack.listener());
    assert_eq!((r.status, r.header("x-interlock-rule")), (403, Some("tool-definition-changed")), "a batch of one: {}", r.text());
    let r = list_sse();
    let text = r.text();
    assert!(!text.contains("search_issues") && !text.contains("id_rsa"), "no part of the pulled list left as a stream: {text}");
    assert!(text.contains("tool-definition-changed"), "the stream ends with the policy's error event: {text}");
    let _ = Request::post("/__demo/rugpull?undo=1").send(stack.upstream());
}
