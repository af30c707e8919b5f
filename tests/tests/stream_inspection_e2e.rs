//! Streamed model answers through real Envoy with the demo stack: values redacted inside the
//! frames that carry them (even split across frames), the stream still valid SSE and JSON and
//! delivered to its end; and the OpenAI Responses API's streamed form read and judged.
//!
//! The mock model answers "repeat: <text>" with `<text>` and "call <tool> with: <text>" with a
//! call whose arguments are `{"body": "<text>"}`, streamed five characters per frame, so every
//! value below is split across frames on its way through the filter.

// Test code: a failed expectation stops the run with what was seen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use interlock_tests::{Request, Response, Stack};
use serde_json::{Value, json};
use std::time::Duration;

const EMAIL: &str = "bob.smith@example.org";

/// A card number that passes the Luhn check, built at run time.
fn card() -> String {
    let body = "411111234567890";
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn post(stack: &Stack, token: &str, path: &str, body: Value) -> Response {
    Request::post(path)
        .bearer(token)
        .json(&body)
        .send(stack.listener())
}

fn chat(stack: &Stack, token: &str, content: &str, stream: bool) -> Response {
    post(
        stack,
        token,
        "/v1/chat/completions",
        json!({"model": "mock", "stream": stream, "messages": [{"role": "user", "content": content}]}),
    )
}

fn messages(stack: &Stack, token: &str, content: &str, stream: bool) -> Response {
    post(
        stack,
        token,
        "/v1/messages",
        json!({"model": "mock", "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": content}]}),
    )
}

fn responses(stack: &Stack, token: &str, input: &str, stream: bool) -> Response {
    post(
        stack,
        token,
        "/v1/responses",
        json!({"model": "mock", "stream": stream, "input": input}),
    )
}

/// Every event of an SSE body, as (event name, data parsed as JSON; `[DONE]` as a string). Panics
/// on a frame that is not JSON: a rewritten frame must still parse.
fn sse_events(body: &str) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    for frame in body.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let mut name = None;
        let mut data = String::new();
        for line in frame.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        let value = if data == "[DONE]" {
            Value::String(data)
        } else {
            serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("frame {frame:?} is not JSON: {e}"))
        };
        out.push((name, value));
    }
    out
}

/// The `delta` strings of the events named `name`, joined.
fn joined_deltas(events: &[(Option<String>, Value)], name: &str) -> String {
    events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some(name))
        .filter_map(|(_, v)| v["delta"].as_str())
        .collect()
}

fn no_value_leaked(what: &str, body: &str, card: &str) {
    for fragment in ["bob.smith", "example.org", &card[..8], &card[8..]] {
        assert!(
            !body.contains(fragment),
            "{what}: {fragment:?} leaked: {body}"
        );
    }
}

/// The redaction of a streamed answer is one response-phase event naming the rule, the classes
/// and their counts (never the values) and the request's decision; the request has its own.
fn redaction_recorded_once(stack: &Stack, r: &Response, card: &str) {
    let request_id = r
        .header("x-interlock-decision-id")
        .expect("the request's decision id")
        .to_owned();
    // The request's event is queued at the end of the stream, after the response's: once it
    // arrived, everything about this request did.
    let request_event = stack.wait_for_event(&request_id, Duration::from_secs(5));
    assert_eq!(request_event["phase"], "request", "{request_event}");
    let about: Vec<Value> = stack
        .events()
        .into_iter()
        .filter(|e| e["request_decision_id"].as_str() == Some(request_id.as_str()))
        .collect();
    assert_eq!(about.len(), 1, "exactly one event about the response: {about:?}");
    let e = &about[0];
    assert_eq!(e["phase"], "response", "{e}");
    assert_eq!(e["rule"], "redact-pii-from-llm", "{e}");
    assert_eq!(e["action"], "redact", "{e}");
    assert_ne!(e["decision_id"].as_str(), Some(request_id.as_str()), "a decision id of its own");
    let classes: Vec<(String, u64)> = e["data_classes"]
        .as_array()
        .expect("data_classes")
        .iter()
        .map(|c| (c["class"].as_str().unwrap().to_owned(), c["count"].as_u64().unwrap()))
        .collect();
    assert!(
        classes.iter().any(|(c, n)| c == "pii.email" && *n >= 1)
            && classes.iter().any(|(c, n)| c == "pii.payment_card" && *n >= 1),
        "classes and counts: {classes:?}"
    );
    no_value_leaked("the redaction event", &e.to_string(), card);
}

#[test]
fn values_in_a_streamed_answer_are_redacted_in_frame_and_the_stream_goes_on() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-stream-redact"));
    let card = card();
    let said = format!("repeat: write to {EMAIL} and charge {card} today");
    let want = "write to [REDACTED:pii.email] and charge [REDACTED:pii.payment_card] today";

    // OpenAI chat completions, streamed.
    let r = chat(&stack, &token, &said, true);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    no_value_leaked("openai", &body, &card);
    assert!(!body.contains("event: error"), "not stopped: {body}");
    let events = sse_events(&body);
    assert_eq!(
        events.last().map(|(_, v)| v.clone()),
        Some(json!("[DONE]")),
        "delivered to its end"
    );
    let text: String = events
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);
    redaction_recorded_once(&stack, &r, &card);

    // Anthropic messages, streamed: event names kept.
    let r = messages(&stack, &token, &said, true);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    no_value_leaked("anthropic", &body, &card);
    let events = sse_events(&body);
    assert!(
        events
            .iter()
            .all(|(name, v)| name.as_deref() == v["type"].as_str()),
        "{body}"
    );
    assert_eq!(
        events.last().and_then(|(n, _)| n.clone()).as_deref(),
        Some("message_stop")
    );
    let text: String = events
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, want);

    // Not streamed: the JSON answer is redacted as a whole.
    let r = chat(&stack, &token, &said, false);
    assert_eq!(r.status, 200, "{}", r.text());
    no_value_leaked("openai, not streamed", &r.text(), &card);
    assert_eq!(r.json()["choices"][0]["message"]["content"], want);

    // Without a value the stream passes byte for byte as the upstream sent it.
    let direct = Request::post("/v1/chat/completions")
        .json(&json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "repeat: nothing to see here"}]}))
        .send(stack.upstream())
        .text();
    let through = chat(&stack, &token, "repeat: nothing to see here", true).text();
    let strip_ids = |s: &str| {
        s.split("\n\n")
            .map(|f| {
                serde_json::from_str::<Value>(f.trim_start_matches("data: "))
                    .map(|mut v| {
                        v["id"] = json!(0);
                        v["created"] = json!(0);
                        v.to_string()
                    })
                    .unwrap_or_else(|_| f.to_owned())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_ids(&through), strip_ids(&direct));
}

#[test]
fn values_in_streamed_tool_call_arguments_are_redacted_and_stay_json() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-args-redact"));
    let card = card();
    let said = format!("call create_comment with: refund {card} to {EMAIL}");
    let want = json!({"body": "refund [REDACTED:pii.payment_card] to [REDACTED:pii.email]"});

    let r = chat(&stack, &token, &said, true);
    assert_eq!(r.status, 200, "{}", r.text());
    no_value_leaked("openai arguments", &r.text(), &card);
    let args: String = sse_events(&r.text())
        .iter()
        .filter_map(|(_, v)| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).expect("arguments still JSON"),
        want
    );

    let r = messages(&stack, &token, &said, true);
    assert_eq!(r.status, 200, "{}", r.text());
    no_value_leaked("anthropic input", &r.text(), &card);
    let input: String = sse_events(&r.text())
        .iter()
        .filter_map(|(_, v)| v["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).expect("input still JSON"),
        want
    );
}

#[test]
fn the_responses_api_streamed_is_read_judged_and_redacted() {
    let stack = Stack::start();
    let token = stack.token("triage-bot", Some("alice"), Some("s-responses"));
    let card = card();

    // A call the agent may not make: stopped at the frame that names it.
    let before = stack.stats();
    let r = responses(&stack, &token, "call delete_repository", true);
    assert_eq!(r.status, 200, "the stream had started: {}", r.text());
    let body = r.text();
    assert!(
        body.contains("event: error") && body.contains("deny-delete-repository"),
        "{body}"
    );
    assert!(
        !body.contains("delete_repository\"") && !body.contains("function_call\""),
        "a frame of the call leaked: {body}"
    );
    assert!(
        !body.contains("response.completed"),
        "frames after the block leaked: {body}"
    );
    assert!(
        Stack::stats_delta(&before, &stack.stats()).contains_key("llm:/v1/responses"),
        "the model was asked"
    );
    // Not streamed: 403 naming the rule.
    let r = responses(&stack, &token, "call delete_repository", false);
    assert_eq!(
        (r.status, r.header("x-interlock-rule")),
        (403, Some("deny-delete-repository")),
        "{}",
        r.text()
    );

    // A call it may make, with a value in its arguments, and a text with values: every copy
    // (deltas, *.done, output_item.done, response.completed) is redacted.
    let r = responses(
        &stack,
        &token,
        &format!("call create_comment with: cc {EMAIL}"),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    no_value_leaked("responses arguments", &body, &card);
    let events_seen = sse_events(&body);
    let args: String = joined_deltas(&events_seen, "response.function_call_arguments.delta");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"body": "cc [REDACTED:pii.email]"})
    );
    let completed = &events_seen.last().expect("events").1;
    assert_eq!(completed["type"], "response.completed", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(
            completed["response"]["output"][0]["arguments"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        json!({"body": "cc [REDACTED:pii.email]"})
    );

    let r = responses(
        &stack,
        &token,
        &format!("repeat: card {card}, mail {EMAIL}."),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    no_value_leaked("responses text", &body, &card);
    let events_seen = sse_events(&body);
    let text: String = joined_deltas(&events_seen, "response.output_text.delta");
    let want = "card [REDACTED:pii.payment_card], mail [REDACTED:pii.email].";
    assert_eq!(text, want);
    assert_eq!(
        events_seen.last().unwrap().1["response"]["output"][0]["content"][0]["text"],
        want
    );

    // Plain text streams through untouched, and a plain Responses answer parses.
    let r = responses(&stack, &token, "hello", true);
    assert!(
        r.text().contains("Hello from ")
            && r.text().contains("response.completed")
            && !r.text().contains("event: error"),
        "{}",
        r.text()
    );
    let r = responses(&stack, &token, "hello", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["output"][0]["content"][0]["text"],
        "Hello from the mock LLM"
    );
}
