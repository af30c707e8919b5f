use super::*;
use crate::ratelimit::{SharedStore, StoreError};

/// Pins are not exercised here (tools_tests.rs does): a store with nothing in it.
struct NoStore;

impl SharedStore for NoStore {
    fn get(&mut self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(None)
    }
    fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }
}
use crate::request::{HttpRequest, VerifiedIdentity};

const DEMO: &str = include_str!("../examples/demo.json");

fn demo() -> Engine {
    Engine::from_json(DEMO).unwrap_or_else(|e| panic!("{e}"))
}

fn post(agent: &str, session: &str, path: &str, body: &Value) -> (HttpRequest, Vec<u8>) {
    let body = body.to_string().into_bytes();
    (
        HttpRequest {
            method: "POST".into(),
            authority: "localhost".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            end_of_stream: false,
            identity: VerifiedIdentity { jwt_agent: Some(agent.into()), jwt_session: Some(session.into()), ..Default::default() },
        },
        body,
    )
}

/// A fake AWS key id built at run time (no secret-shaped literal in the source).
fn aws_key() -> String {
    format!("AKIA{}", "Z7Q3MXKD4PLW2RYT")
}

fn luhn_card(prefix: &str, n: u64) -> String {
    let body = format!("{prefix}{n:09}");
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { let x = d * 2; if x > 9 { x - 9 } else { x } } else { *d })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn allowed_facts(e: &Engine, req: &HttpRequest, body: &[u8]) -> Facts {
    let eval = e.evaluate(req, Some(body));
    assert!(!eval.decision.blocks(), "{:?}", eval.decision);
    eval.facts
}

#[test]
fn a_secret_sent_to_the_llm_is_refused_in_every_spelling() {
    let e = demo();
    for (name, content) in [
        ("plain", format!("here is the key {} ok", aws_key())),
        ("escaped newline around it", format!("line1\n{}\nline3", aws_key())),
        ("zero-width inside", format!("key {}\u{200b}{}", &aws_key()[..8], &aws_key()[8..])),
        ("fullwidth", aws_key().chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)).collect::<String>()),
    ] {
        let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": content}]}));
        let d = e.evaluate(&req, Some(&body)).decision;
        assert_eq!((d.status, d.rule.as_str()), (403, "no-secrets-to-llm"), "{name}: {d:?}");
    }
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "AKIAIOSFODNN7EXAMPLE is the documented example"}]}));
    assert_eq!(e.evaluate(&req, Some(&body)).decision.rule, "triage-llm", "documented examples do not trigger");
}

#[test]
fn tools_offered_to_the_model_must_be_tools_the_agent_may_call() {
    let e = demo();
    let tools = |names: &[&str]| names.iter().map(|n| serde_json::json!({"type": "function", "function": {"name": n, "parameters": {}}})).collect::<Vec<_>>();
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": [], "tools": tools(&["get_issue"])}));
    assert_eq!(e.evaluate(&req, Some(&body)).decision.rule, "triage-llm");
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": [], "tools": tools(&["get_issue", "delete_repository"])}));
    assert_eq!(e.evaluate(&req, Some(&body)).decision.rule, "deny-delete-repository");
    let (req, body) = post("triage-bot", "s", "/v1/messages", &serde_json::json!({"model": "m", "max_tokens": 5, "messages": [], "tools": [{"name": "export_customers", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "export_customers"}}));
    assert_eq!(e.evaluate(&req, Some(&body)).decision.rule, "default-deny");
}

#[test]
fn a_card_dump_in_a_response_is_refused_and_revokes_the_session() {
    let e = demo();
    let (req, body) = post("billing-agent", "s-bill", "/mcp", &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "export_customers"}}));
    let facts = allowed_facts(&e, &req, &body);
    assert!(matches!(e.response_plan(&facts, 200, Some("application/json"), None), ResponsePlan::Buffer { .. }));
    let records: Vec<Value> = (1..=5).map(|i| serde_json::json!({"id": i, "card_number": luhn_card("411111", i)})).collect();
    let text = serde_json::to_string(&records).unwrap();
    let response = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}});
    let eval = e.on_response_body(&facts, response.to_string().as_bytes(), &mut NoStore).expect("a decision");
    assert_eq!((eval.decision.status, eval.decision.rule.as_str()), (403, "card-dump"));
    assert_eq!(eval.decision.revoke.as_ref().map(|r| r.principal), Some(crate::schema::Principal::Session));
    assert_eq!(eval.facts.data_classes.iter().find(|c| c.class == DataClass::PaymentCard).map(|c| c.count), Some(5));
    // Four cards: under the threshold, nothing to record.
    let four = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": serde_json::to_string(&records[..4]).unwrap()}]}});
    assert!(e.on_response_body(&facts, four.to_string().as_bytes(), &mut NoStore).is_none());
}

#[test]
fn redaction_keeps_json_valid_and_removes_the_values() {
    let e = Engine::from_json(
        &serde_json::json!({
            "version": "v",
            "governed": [{"id": "api", "path": "/api/**", "protocol": "json"}],
            "default_action": "allow",
            "data_rules": [{"id": "mask-cards", "classes": ["pii.payment_card"], "direction": "response", "action": "redact"}]
        })
        .to_string(),
    )
    .unwrap();
    let facts = Facts { agent: Some("a".into()), governed: Some("api".into()), protocol: Some(Protocol::Json), ..Facts::default() };
    let card = luhn_card("555555", 42);
    let body = serde_json::json!({"name": "Ada", "card": card, "note": format!("cards: {card} and {card}\nend")});
    let eval = e.on_response_body(&facts, body.to_string().as_bytes(), &mut NoStore).expect("redacted");
    assert_eq!((eval.decision.action, eval.decision.rule.as_str()), (Action::Redact, "mask-cards"));
    let out: Value = serde_json::from_slice(eval.rewrite.as_deref().unwrap()).expect("still JSON");
    assert_eq!(out["name"], "Ada");
    assert_eq!(out["card"], "[REDACTED:pii.payment_card]");
    assert_eq!(out["note"], "cards: [REDACTED:pii.payment_card] and [REDACTED:pii.payment_card]\nend");
    assert!(!String::from_utf8_lossy(eval.rewrite.as_deref().unwrap()).contains(&card));
}

#[test]
fn a_forbidden_tool_call_proposed_by_the_model_is_blocked_unstreamed() {
    let e = demo();
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "call delete_repository"}]}));
    let facts = allowed_facts(&e, &req, &body);
    let eval = e.on_response_body(&facts, include_str!("../tests/llm_fixtures/openai_delete_repository.json").as_bytes(), &mut NoStore).expect("blocked");
    assert_eq!((eval.decision.status, eval.decision.rule.as_str()), (403, "deny-delete-repository"));
    let (req, body) = post("triage-bot", "s", "/v1/messages", &serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "call delete_repository"}]}));
    let facts = allowed_facts(&e, &req, &body);
    let eval = e.on_response_body(&facts, include_str!("../tests/llm_fixtures/anthropic_delete_repository.json").as_bytes(), &mut NoStore).expect("blocked");
    assert_eq!(eval.decision.rule, "deny-delete-repository");
    // An allowed proposal passes untouched.
    let ok = serde_json::json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_issue", "arguments": "{}"}}]}}]});
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": []}));
    assert!(e.on_response_body(&allowed_facts(&e, &req, &body), ok.to_string().as_bytes(), &mut NoStore).is_none());
}

/// Feeds a stream in chunks of `size`; returns what was delivered and the block, if any.
fn run_stream(e: &Engine, facts: &Facts, stream: &[u8], size: usize) -> (Vec<u8>, Option<Evaluation>) {
    let mut s = e.response_stream(facts);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(size.max(1)).collect();
    for (i, c) in chunks.iter().enumerate() {
        match e.feed_response_stream(&mut s, facts, c, i + 1 == chunks.len()) {
            StreamStep::Deliver(b) => out.extend(b),
            StreamStep::Block(eval) => return (out, Some(*eval)),
        }
    }
    (out, None)
}

#[test]
fn a_streamed_forbidden_tool_call_stops_the_stream_before_any_of_its_frames() {
    let e = demo();
    for (path, fixture) in [
        ("/v1/chat/completions", include_str!("../tests/llm_fixtures/openai_stream_delete_repository.sse")),
        ("/v1/messages", include_str!("../tests/llm_fixtures/anthropic_stream_delete_repository.sse")),
    ] {
        let (req, body) = post("triage-bot", "s", path, &serde_json::json!({"model": "m", "max_tokens": 5, "stream": true, "messages": []}));
        let facts = allowed_facts(&e, &req, &body);
        assert!(matches!(e.response_plan(&facts, 200, Some("text/event-stream"), None), ResponsePlan::Stream));
        for size in [1, 7, 64, 100_000] {
            let (delivered, block) = run_stream(&e, &facts, fixture.as_bytes(), size);
            let block = block.unwrap_or_else(|| panic!("{path} in chunks of {size}: not blocked"));
            assert_eq!(block.decision.rule, "deny-delete-repository", "{path}/{size}");
            let text = String::from_utf8_lossy(&delivered);
            assert!(!text.contains("delete_r") && !text.contains("repository"), "{path}/{size}: a fragment of the name leaked: {text}");
            assert!(!text.contains("tool_calls") && !text.contains("tool_use"), "{path}/{size}: a frame of the call leaked: {text}");
        }
    }
}

#[test]
fn an_allowed_stream_is_delivered_whole_whatever_the_chunking() {
    let e = demo();
    for (path, fixture) in [
        ("/v1/chat/completions", include_str!("../tests/llm_fixtures/openai_stream_read_file.sse")),
        ("/v1/messages", include_str!("../tests/llm_fixtures/anthropic_stream_read_file.sse")),
        ("/v1/chat/completions", include_str!("../tests/llm_fixtures/openai_stream_text.sse")),
    ] {
        let (req, body) = post("triage-bot", "s", path, &serde_json::json!({"model": "m", "max_tokens": 5, "stream": true, "messages": []}));
        let facts = allowed_facts(&e, &req, &body);
        for size in [1, 13, 4096] {
            let (delivered, block) = run_stream(&e, &facts, fixture.as_bytes(), size);
            assert!(block.is_none(), "{path}/{size}: {:?}", block.map(|b| b.decision));
            assert_eq!(delivered, fixture.as_bytes(), "{path}/{size}");
        }
    }
}

#[test]
fn uninspectable_responses_are_a_verdict() {
    let e = demo();
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "messages": []}));
    let facts = allowed_facts(&e, &req, &body);
    for (ct, ce) in [(Some("application/json"), Some("gzip")), (Some("text/html"), None), (None, None)] {
        match e.response_plan(&facts, 200, ct, ce) {
            ResponsePlan::Uninspectable(eval) => assert_eq!((eval.decision.status, eval.decision.rule.as_str()), (403, "uninspectable"), "{ct:?} {ce:?}"),
            other => panic!("{ct:?} {ce:?}: {other:?}"),
        }
    }
    assert!(matches!(e.response_plan(&facts, 502, Some("text/html"), None), ResponsePlan::Skip), "an upstream error page is not an answer to judge");
    let eval = e.on_response_body(&facts, b"{\"a\":1,\"a\":2}", &mut NoStore).expect("refused");
    assert_eq!(eval.decision.rule, "uninspectable");
}
