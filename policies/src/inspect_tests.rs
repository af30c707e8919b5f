use super::*;
use crate::ratelimit::MapStore;
// Pins are not exercised here (tools_tests.rs does): a store with nothing in it.
use crate::ratelimit::NoSharedData as NoStore;
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
    // Nothing found at all: nothing to record either, and a malformed answer is still refused.
    let clean = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "no records matched"}]}});
    assert!(e.on_response_body(&facts, clean.to_string().as_bytes(), &mut NoStore).is_none());
    let eval = e.on_response_body(&facts, br#"{"jsonrpc":"2.0","id":1,"id":2}"#, &mut NoStore).expect("refused");
    assert_eq!(eval.decision.rule, "uninspectable");
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
    let (out, block, _) = run_stream_outcome(e, facts, stream, size);
    (out, block)
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

// ---------------------------------------------------------------------------------------------
// In-frame redaction of streamed model answers

fn chat_chunk(delta: Value, finish: Option<&str>) -> String {
    let c = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// A streamed chat completion whose content arrives in `deltas`.
fn chat_text_stream(deltas: &[&str]) -> String {
    let mut s = chat_chunk(serde_json::json!({"role": "assistant", "content": ""}), None);
    for d in deltas {
        s.push_str(&chat_chunk(serde_json::json!({"content": d}), None));
    }
    s + &chat_chunk(serde_json::json!({}), Some("stop")) + "data: [DONE]\n\n"
}

/// A streamed chat completion proposing `tool` with its arguments in `fragments`.
fn chat_call_stream(tool: &str, fragments: &[&str]) -> String {
    let mut s = chat_chunk(serde_json::json!({"role": "assistant", "content": null}), None);
    s.push_str(&chat_chunk(serde_json::json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": tool, "arguments": ""}}]}), None));
    for f in fragments {
        s.push_str(&chat_chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}), None));
    }
    s + &chat_chunk(serde_json::json!({}), Some("tool_calls")) + "data: [DONE]\n\n"
}

/// The data of every event of a delivered stream, each parsed as JSON (`[DONE]` as a string).
fn delivered_events(delivered: &[u8]) -> Vec<Value> {
    let mut parser = crate::sse::SseParser::new();
    let mut events = parser.feed(delivered).expect("delivered stream is SSE");
    events.extend(parser.finish().expect("delivered stream is SSE"));
    events
        .iter()
        .map(|e| if e.data == "[DONE]" { Value::String(e.data.clone()) } else { serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("frame {:?} is not JSON: {err}", e.data)) })
        .collect()
}

/// What a client assembles from a delivered chat stream: the content, and the call's arguments.
fn chat_assembled(delivered: &[u8]) -> (String, String) {
    let (mut text, mut args) = (String::new(), String::new());
    for v in delivered_events(delivered) {
        let delta = &v["choices"][0]["delta"];
        text.push_str(delta["content"].as_str().unwrap_or_default());
        args.push_str(delta["tool_calls"][0]["function"]["arguments"].as_str().unwrap_or_default());
    }
    (text, args)
}

fn chat_facts(e: &Engine) -> Facts {
    let (req, body) = post("triage-bot", "s", "/v1/chat/completions", &serde_json::json!({"model": "m", "stream": true, "messages": []}));
    allowed_facts(e, &req, &body)
}

/// Feeds a stream; returns what was delivered, the block, and the stream's recorded outcome.
fn run_stream_outcome(e: &Engine, facts: &Facts, stream: &[u8], size: usize) -> (Vec<u8>, Option<Evaluation>, Option<Evaluation>) {
    let mut s = e.response_stream(facts);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(size.max(1)).collect();
    for (i, c) in chunks.iter().enumerate() {
        match e.feed_response_stream(&mut s, facts, c, i + 1 == chunks.len(), &mut MapStore::default()) {
            StreamStep::Deliver(b) => out.extend(b),
            StreamStep::Block(eval) => return (out, Some(*eval), None),
        }
    }
    (out, None, s.outcome().cloned())
}

const SIZES: [usize; 5] = [1, 5, 17, 64, 100_000];

#[test]
fn a_value_inside_one_frame_is_redacted_in_that_frame() {
    let e = demo();
    let facts = chat_facts(&e);
    let stream = chat_text_stream(&["Write to ", "bob.smith@example.org", " or call."]);
    for size in SIZES {
        let (delivered, block, outcome) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        assert!(block.is_none(), "{size}: {:?}", block.map(|b| b.decision));
        let (text, _) = chat_assembled(&delivered);
        assert_eq!(text, "Write to [REDACTED:pii.email] or call.", "{size}");
        let raw = String::from_utf8_lossy(&delivered);
        assert!(!raw.contains("bob.smith") && !raw.contains("example.org"), "{size}: {raw}");
        assert!(raw.ends_with("data: [DONE]\n\n"), "{size}: the stream goes on to its end");
        assert_eq!(delivered_events(&delivered).len(), 6, "{size}: every frame is delivered, one rewritten");
        let outcome = outcome.expect("the redaction is recorded");
        assert_eq!((outcome.decision.action, outcome.decision.rule.as_str()), (Action::Redact, "redact-pii-from-llm"));
        assert_eq!(outcome.facts.data_classes, vec![ClassCount { class: DataClass::Email, count: 1 }]);
        assert!(!format!("{outcome:?}").contains("bob.smith"), "the record holds no value");
    }
}

#[test]
fn a_value_split_across_held_frames_is_redacted_in_each() {
    let e = demo();
    let facts = chat_facts(&e);
    let card = luhn_card("411111", 7);
    let (head, tail) = card.split_at(7);
    for (name, deltas, expected) in [
        ("card split in two", vec!["pay with ".to_owned(), head.to_owned(), format!("{tail} today")], "pay with [REDACTED:pii.payment_card] today".to_owned()),
        // "bob@example.co" is a whole address at the end of its frame; the next frame extends it.
        ("address that grows", vec!["mail bob@example.co".to_owned(), "m.au now".to_owned()], "mail [REDACTED:pii.email] now".to_owned()),
        ("address in many pieces", "reach x.y@mail.example.net soon".chars().map(String::from).collect(), "reach [REDACTED:pii.email] soon".to_owned()),
    ] {
        let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
        let stream = chat_text_stream(&refs);
        for size in SIZES {
            let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
            assert!(block.is_none(), "{name}/{size}: {:?}", block.map(|b| b.decision));
            assert_eq!(chat_assembled(&delivered).0, expected, "{name}/{size}");
            let raw = String::from_utf8_lossy(&delivered);
            assert!(!raw.contains(tail) && !raw.contains("m.au") && !raw.contains("example"), "{name}/{size}: {raw}");
        }
    }
}

#[test]
fn a_value_in_tool_call_arguments_is_redacted_and_the_arguments_stay_json() {
    let e = demo();
    let facts = chat_facts(&e);
    for (name, fragments) in [
        ("plain, split", vec!["{\"body\":\"ask bob@ex", "ample.org\"}"]),
        ("escaped @", vec!["{\"body\":\"ask bob\\u0040example.org\"", "}"]),
        ("escaped quote before it", vec!["{\"body\":\"say \\\"", "bob@example.org\\\" ok\"}"]),
    ] {
        let stream = chat_call_stream("create_comment", &fragments);
        for size in SIZES {
            let (delivered, block, outcome) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
            assert!(block.is_none(), "{name}/{size}: {:?}", block.map(|b| b.decision));
            let (_, args) = chat_assembled(&delivered);
            let args: Value = serde_json::from_str(&args).unwrap_or_else(|err| panic!("{name}/{size}: arguments {args:?} not JSON: {err}"));
            let body = args["body"].as_str().unwrap_or_default();
            assert!(body.contains("[REDACTED:pii.email]") && !body.contains("bob"), "{name}/{size}: {body}");
            assert!(outcome.is_some(), "{name}/{size}");
        }
    }
}

#[test]
fn a_value_that_cannot_be_redacted_in_its_frame_stops_the_stream() {
    let e = demo();
    let facts = chat_facts(&e);
    let card = luhn_card("411111", 9);
    // A card as a JSON number: no text can stand in for it and keep the arguments JSON.
    let stream = chat_call_stream("create_comment", &["{\"n\":", &card, "}"]);
    for size in SIZES {
        let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        let block = block.unwrap_or_else(|| panic!("{size}: not stopped"));
        assert_eq!((block.decision.status, block.decision.rule.as_str()), (403, "redact-pii-from-llm"), "{size}");
        assert!(!String::from_utf8_lossy(&delivered).contains(&card[..6]), "{size}");
    }
    // A threshold reached once an earlier value left: it cannot be taken back.
    let e = Engine::from_json(
        &serde_json::json!({
            "version": "v",
            "governed": [{"id": "llm", "path": "/v1/chat/completions", "protocol": "openai"}],
            "default_action": "allow",
            "data_rules": [{"id": "two-addresses", "classes": ["pii.email"], "direction": "response", "min_count": 2, "action": "redact"}]
        })
        .to_string(),
    )
    .unwrap();
    let facts = Facts { agent: Some("a".into()), governed: Some("llm".into()), protocol: Some(Protocol::Openai), ..Facts::default() };
    let filler = "x".repeat(usize::try_from(REDACT_HOLD_BYTES).unwrap_or(128) + 10);
    let stream = chat_text_stream(&["one a@example.org ", &filler, " two b@example.org"]);
    for size in [1, 17] {
        let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        assert_eq!(block.map(|b| b.decision.rule), Some("two-addresses".into()), "{size}");
        assert!(!String::from_utf8_lossy(&delivered).contains("b@example"), "{size}");
    }
    // In one chunk nothing had left yet when the second address came: both are redacted.
    let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), 100_000);
    assert!(block.is_none());
    assert!(!String::from_utf8_lossy(&delivered).contains("@example"));
    // Both close together: both are still held, and both are redacted.
    let stream = chat_text_stream(&["one a@example.org ", "two b@example.org"]);
    let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), 9);
    assert!(block.is_none());
    assert_eq!(chat_assembled(&delivered).0, "one [REDACTED:pii.email] two [REDACTED:pii.email]");
}

#[test]
fn anthropic_text_and_input_deltas_are_redacted_in_frame() {
    let e = demo();
    let (req, body) = post("triage-bot", "s", "/v1/messages", &serde_json::json!({"model": "m", "max_tokens": 5, "stream": true, "messages": []}));
    let facts = allowed_facts(&e, &req, &body);
    let card = luhn_card("555555", 3);
    let events = [
        serde_json::json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": []}}),
        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("card {card}.")}}),
        serde_json::json!({"type": "content_block_stop", "index": 0}),
        serde_json::json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "create_comment", "input": {}}}),
        serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"body\": \"to ann@"}}),
        serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "example.org\"}"}}),
        serde_json::json!({"type": "content_block_stop", "index": 1}),
        serde_json::json!({"type": "message_stop"}),
    ];
    let stream: String = events.iter().map(|v| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or_default())).collect();
    for size in SIZES {
        let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        assert!(block.is_none(), "{size}: {:?}", block.map(|b| b.decision));
        let raw = String::from_utf8_lossy(&delivered);
        assert!(!raw.contains(&card) && !raw.contains("ann@") && !raw.contains("example.org"), "{size}: {raw}");
        assert_eq!(raw.matches("event: content_block_delta\n").count(), 3, "{size}: event names kept");
        let got = delivered_events(&delivered);
        assert_eq!(got[2]["delta"]["text"], "card [REDACTED:pii.payment_card].");
        let input: String = got.iter().filter_map(|v| v["delta"]["partial_json"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&input).expect("input still JSON")["body"], "to [REDACTED:pii.email]");
    }
}

fn responses_facts(e: &Engine) -> Facts {
    let (req, body) = post("triage-bot", "s", "/v1/responses", &serde_json::json!({"model": "m", "stream": true, "input": "hi"}));
    allowed_facts(e, &req, &body)
}

#[test]
fn a_responses_stream_is_read_its_calls_judged_and_its_values_redacted_in_every_copy() {
    let e = demo();
    let facts = responses_facts(&e);
    assert!(matches!(e.response_plan(&facts, 200, Some("text/event-stream"), None), ResponsePlan::Stream));
    let stream = crate::llm::tests::responses_stream(&["mail dora@exa", "mple.org, ok"], "create_comment", &["{\"body\":\"cc dora@", "example.org\"}"]);
    for size in SIZES {
        let (delivered, block, outcome) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        assert!(block.is_none(), "{size}: {:?}", block.map(|b| b.decision));
        let raw = String::from_utf8_lossy(&delivered);
        assert!(!raw.contains("dora") && !raw.contains("example.org"), "{size}: a copy leaked: {raw}");
        let events = delivered_events(&delivered);
        let text: String = events.iter().filter(|v| v["type"] == "response.output_text.delta").filter_map(|v| v["delta"].as_str()).collect();
        assert_eq!(text, "mail [REDACTED:pii.email], ok", "{size}");
        let done = events.iter().find(|v| v["type"] == "response.completed").expect("completed delivered");
        assert_eq!(done["response"]["output"][0]["content"][0]["text"], "mail [REDACTED:pii.email], ok");
        let args: Value = serde_json::from_str(done["response"]["output"][1]["arguments"].as_str().unwrap_or_default()).expect("arguments JSON");
        assert_eq!(args["body"], "cc [REDACTED:pii.email]");
        let deltas: String = events.iter().filter(|v| v["type"] == "response.function_call_arguments.delta").filter_map(|v| v["delta"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&deltas).expect("delta arguments JSON")["body"], "cc [REDACTED:pii.email]");
        let outcome = outcome.expect("recorded");
        assert_eq!(outcome.facts.data_classes, vec![ClassCount { class: DataClass::Email, count: 2 }], "{size}: counted once each, not per copy");
    }
    // Nothing sensitive: delivered byte for byte.
    let clean = crate::llm::tests::responses_stream(&["Reading ", "it"], "read_file", &["{\"path\":", "\"a\"}"]);
    for size in SIZES {
        let (delivered, block, outcome) = run_stream_outcome(&e, &facts, clean.as_bytes(), size);
        assert!(block.is_none() && outcome.is_none(), "{size}");
        assert_eq!(delivered, clean.as_bytes(), "{size}");
    }
}

#[test]
fn a_forbidden_call_in_a_responses_stream_stops_it_at_the_frame_that_names_it() {
    let e = demo();
    let facts = responses_facts(&e);
    let stream = crate::llm::tests::responses_stream(&["Deleting"], "delete_repository", &["{}"]);
    for size in SIZES {
        let (delivered, block, _) = run_stream_outcome(&e, &facts, stream.as_bytes(), size);
        assert_eq!(block.map(|b| b.decision.rule), Some("deny-delete-repository".into()), "{size}");
        let raw = String::from_utf8_lossy(&delivered);
        assert!(!raw.contains("delete_repository") && !raw.contains("function_call"), "{size}: {raw}");
    }
}

#[test]
fn five_streamed_cards_still_stop_the_stream() {
    let e = demo();
    let facts = chat_facts(&e);
    let cards: Vec<String> = (1..=5).map(|i| format!("{} ", luhn_card("411111", i))).collect();
    let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
    let (_, block, _) = run_stream_outcome(&e, &facts, chat_text_stream(&refs).as_bytes(), 64);
    assert_eq!(block.map(|b| b.decision.rule), Some("card-dump".into()));
}

#[test]
fn held_frames_leave_once_enough_text_followed_them() {
    let e = demo();
    let facts = chat_facts(&e);
    let deltas: Vec<String> = (0..60).map(|i| format!("word{i:02} abc ")).collect();
    let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
    let stream = chat_text_stream(&refs);
    let mut s = e.response_stream(&facts);
    let mut out = Vec::new();
    let frames: Vec<&str> = stream.split_inclusive("\n\n").collect();
    let hold = usize::try_from(REDACT_HOLD_BYTES + REDACT_SCAN_STEP).unwrap_or(256);
    for (i, frame) in frames.iter().enumerate() {
        match e.feed_response_stream(&mut s, &facts, frame.as_bytes(), i + 1 == frames.len(), &mut MapStore::default()) {
            StreamStep::Deliver(b) => out.extend(b),
            StreamStep::Block(b) => panic!("{:?}", b.decision),
        }
        // Frame 0 is the role; each delta is 11 bytes of text.
        let text_seen = 11 * i.min(60);
        let delivered_text = chat_assembled(&out).0.len();
        assert!(delivered_text + hold + 22 >= text_seen, "frame {i}: {} bytes of text held back", text_seen - delivered_text);
    }
    assert_eq!(out, stream.as_bytes(), "nothing found: delivered as it came");
}

#[test]
fn a_stream_that_is_no_model_answer_is_redacted_event_by_event() {
    let e = Engine::from_json(
        &serde_json::json!({
            "version": "v",
            "governed": [{"id": "mcp", "path": "/mcp", "protocol": "mcp"}, {"id": "feed", "path": "/feed", "protocol": "json"}],
            "default_action": "allow",
            "data_rules": [{"id": "mask", "classes": ["pii.email", "pii.payment_card"], "direction": "response", "action": "redact"}]
        })
        .to_string(),
    )
    .unwrap();
    let mcp = Facts { agent: Some("a".into()), governed: Some("mcp".into()), protocol: Some(Protocol::Mcp), ..Facts::default() };
    let card = luhn_card("411111", 5);
    let answer = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": format!("owner: \"ann@example.org\", card {card}")}]}});
    let stream = format!("event: message\ndata: {answer}\n\n");
    for size in SIZES {
        // The answer leaves as soon as it is judged, though the stream stays open.
        let mut s = e.response_stream(&mcp);
        let mut out = Vec::new();
        for chunk in stream.as_bytes().chunks(size) {
            match e.feed_response_stream(&mut s, &mcp, chunk, false, &mut MapStore::default()) {
                StreamStep::Deliver(b) => out.extend(b),
                StreamStep::Block(b) => panic!("{size}: {:?}", b.decision),
            }
        }
        let got = delivered_events(&out);
        assert_eq!(got.len(), 1, "{size}: delivered before the stream ends");
        assert_eq!(got[0]["result"]["content"][0]["text"], "owner: \"[REDACTED:pii.email]\", card [REDACTED:pii.payment_card]", "{size}");
        assert!(String::from_utf8_lossy(&out).starts_with("event: message\n"), "{size}");
        assert_eq!(s.outcome().map(|o| o.decision.rule.as_str()), Some("mask"));
    }
    // A card as a JSON number cannot be replaced: the stream stops.
    let stream = format!("data: {}\n\n", serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"n": card.parse::<u64>().unwrap()}}));
    let (delivered, block, _) = run_stream_outcome(&e, &mcp, stream.as_bytes(), 7);
    assert_eq!(block.map(|b| b.decision.rule), Some("mask".into()));
    assert!(!String::from_utf8_lossy(&delivered).contains(&card[..6]));
    // Plain-text data, in two lines: replaced anywhere, lines kept.
    let feed = Facts { agent: Some("a".into()), governed: Some("feed".into()), protocol: Some(Protocol::Json), ..Facts::default() };
    let (delivered, block, _) = run_stream_outcome(&e, &feed, b"data: write to\ndata: ann@example.org now\n\n", 3);
    assert!(block.is_none());
    assert_eq!(String::from_utf8_lossy(&delivered), "data: write to\ndata: [REDACTED:pii.email] now\n\n");
}
