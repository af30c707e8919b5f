//! The mock LLM, in the OpenAI Chat Completions, OpenAI Responses and Anthropic Messages forms,
//! streaming or not.
//!
//! It answers a fixed greeting, unless the last user message says "call <tool>": then it proposes
//! a call to that tool, whatever tools the request declared, so the demo can show Interlock
//! blocking a tool call a model proposes to an agent that may not make it. "call <tool> with:
//! <text>" gives the call the arguments `{"body": "<text>"}`, and "repeat: <text>" makes the
//! model answer `<text>`: streamed, both arrive in pieces of a few characters, so a value in them
//! (an address, a card number) is split across frames, as a real model's tokens split it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::stats::llm_key;

pub const OPENAI_PATH: &str = "/v1/chat/completions";
pub const ANTHROPIC_PATH: &str = "/v1/messages";
pub const RESPONSES_PATH: &str = "/v1/responses";
/// Characters per streamed piece of an echoed text or of a call's arguments.
const PIECE_CHARS: usize = 5;
pub const GREETING: &str = "Hello from the mock LLM";
/// The greeting as it is streamed: two deltas, so clients have to concatenate.
const GREETING_PARTS: [&str; 2] = ["Hello from ", "the mock LLM"];
const DEFAULT_MODEL: &str = "mock-model";

/// What the model decided to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Text,
    /// "repeat: <text>": the model says `<text>`.
    Echo(String),
    /// `arguments` is the JSON text of the call's arguments.
    ToolCall {
        name: String,
        arguments: String,
    },
}

/// What one request asks for, read from either provider's body.
struct Ask {
    model: String,
    stream: bool,
    include_usage: bool,
    answer: Answer,
    prompt_tokens: u64,
}

impl Ask {
    fn from_body(body: &Value) -> Self {
        let text = match body.get("input") {
            // The Responses API: a string, or message items.
            Some(Value::String(s)) => s.clone(),
            Some(items) => last_user_text(items),
            None => last_user_text(body.get("messages").unwrap_or(&Value::Null)),
        };
        let answer = answer_to(&text);
        Ask {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_MODEL)
                .to_owned(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            answer,
            // Rough, but stable: a word is a token.
            prompt_tokens: u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX),
        }
    }

    fn completion_tokens(&self) -> u64 {
        match &self.answer {
            Answer::Text => 5,
            Answer::Echo(text) => {
                u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
            }
            Answer::ToolCall { .. } => 12,
        }
    }

    /// The text the model says (none for a tool call).
    fn text(&self) -> Option<&str> {
        match &self.answer {
            Answer::Text => Some(GREETING),
            Answer::Echo(text) => Some(text),
            Answer::ToolCall { .. } => None,
        }
    }

    /// The text as it is streamed.
    fn text_pieces(&self) -> Vec<String> {
        match &self.answer {
            Answer::Text => GREETING_PARTS.iter().map(|p| (*p).to_owned()).collect(),
            Answer::Echo(text) => pieces(text),
            Answer::ToolCall { .. } => Vec::new(),
        }
    }
}

/// What the model answers to the last user message.
pub fn answer_to(text: &str) -> Answer {
    if let Some((_, rest)) = text.split_once("repeat:") {
        return Answer::Echo(rest.trim_start().to_owned());
    }
    match proposed_tool(text) {
        Some(name) => {
            let arguments = match text.split_once("with:") {
                Some((_, body)) => json!({ "body": body.trim_start() }).to_string(),
                None => "{}".to_owned(),
            };
            Answer::ToolCall { name, arguments }
        }
        None => Answer::Text,
    }
}

/// `text` in pieces of [`PIECE_CHARS`] characters ("{}" in its two characters).
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = if text == "{}" { 1 } else { PIECE_CHARS };
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The text of the last user message; text parts of a multi-part content are joined by newlines.
pub fn last_user_text(messages: &Value) -> String {
    let Some(msg) = messages.as_array().and_then(|m| {
        m.iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    }) else {
        return String::new();
    };
    match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("text" | "input_text")
                )
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The tool named right after the word "call" (any case), stripped of quotes, backticks and
/// punctuation around it: "please call `read_file`." gives read_file. None without such a token.
pub fn proposed_tool(text: &str) -> Option<String> {
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        if !word.eq_ignore_ascii_case("call") {
            continue;
        }
        let Some(next) = words.peek() else { break };
        let name =
            next.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        let starts_well = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let all_valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if starts_well && all_valid {
            return Some(name.to_owned());
        }
    }
    None
}

fn bad_request_openai(message: &str) -> Response {
    let body = json!({ "error": {
        "message": message, "type": "invalid_request_error", "param": null, "code": null,
    }});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn bad_request_anthropic(message: &str) -> Response {
    let body = json!({ "type": "error", "error": { "type": "invalid_request_error", "message": message } });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn parse_object(body: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("request body must be a JSON object".into()),
        Err(e) => Err(format!("request body is not valid JSON: {e}")),
    }
}

fn sse(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Counts the call, reads the request, and answers in the provider's form, streamed or not.
fn answer(
    state: &AppState,
    path: &str,
    body: &[u8],
    bad_request: fn(&str) -> Response,
    stream: impl Fn(&Ask, u64, u64) -> String,
    whole: impl Fn(&Ask, u64, u64) -> Value,
) -> Response {
    state.stats.incr(llm_key(path));
    let body = match parse_object(body) {
        Ok(b) => b,
        Err(msg) => return bad_request(&msg),
    };
    let ask = Ask::from_body(&body);
    let n = state.next_id();
    let created = unix_time();
    if ask.stream {
        sse(stream(&ask, n, created))
    } else {
        Json(whole(&ask, n, created)).into_response()
    }
}

pub async fn openai(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        &state,
        OPENAI_PATH,
        &body,
        bad_request_openai,
        openai_stream,
        openai_completion,
    )
}

pub async fn anthropic(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        &state,
        ANTHROPIC_PATH,
        &body,
        bad_request_anthropic,
        |ask, n, _| anthropic_stream(ask, n),
        |ask, n, _| anthropic_message(ask, n),
    )
}

pub async fn responses(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        &state,
        RESPONSES_PATH,
        &body,
        bad_request_openai,
        responses_stream,
        |ask, n, created| responses_object(ask, n, created, true),
    )
}

fn openai_usage(ask: &Ask) -> Value {
    let completion = ask.completion_tokens();
    json!({
        "prompt_tokens": ask.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": ask.prompt_tokens.saturating_add(completion),
    })
}

fn openai_completion(ask: &Ask, n: u64, created: u64) -> Value {
    let (message, finish) = match &ask.answer {
        Answer::Text | Answer::Echo(_) => (
            json!({ "role": "assistant", "content": ask.text(), "refusal": null }),
            "stop",
        ),
        Answer::ToolCall { name, arguments } => (
            json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": format!("call_demo{n:06}"),
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }],
            }),
            "tool_calls",
        ),
    };
    json!({
        "id": format!("chatcmpl-demo{n:06}"),
        "object": "chat.completion",
        "created": created,
        "model": ask.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": openai_usage(ask),
    })
}

/// Splits at the middle character, so a name arrives in two pieces.
fn halves(s: &str) -> (&str, &str) {
    let mid = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map_or(s.len(), |(i, _)| i);
    s.split_at_checked(mid).unwrap_or((s, ""))
}

/// The SSE body of a streamed chat completion. A tool call's name and its arguments each arrive
/// over two chunks, as some providers do, so a reader has to reassemble them by index.
fn openai_stream(ask: &Ask, n: u64, created: u64) -> String {
    let id = format!("chatcmpl-demo{n:06}");
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ask.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    };
    let mut chunks = Vec::new();
    match &ask.answer {
        Answer::Text | Answer::Echo(_) => {
            chunks.push(chunk(
                json!({ "role": "assistant", "content": "" }),
                Value::Null,
            ));
            for part in ask.text_pieces() {
                chunks.push(chunk(json!({ "content": part }), Value::Null));
            }
            chunks.push(chunk(json!({}), json!("stop")));
        }
        Answer::ToolCall { name, arguments } => {
            let (head, tail) = halves(name);
            chunks.push(chunk(
                json!({ "role": "assistant", "content": null }),
                Value::Null,
            ));
            chunks.push(chunk(
                json!({ "tool_calls": [{
                    "index": 0,
                    "id": format!("call_demo{n:06}"),
                    "type": "function",
                    "function": { "name": head, "arguments": "" },
                }]}),
                Value::Null,
            ));
            chunks.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "name": tail } }] }),
                Value::Null,
            ));
            for fragment in pieces(arguments) {
                chunks.push(chunk(
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": fragment } }] }),
                    Value::Null,
                ));
            }
            chunks.push(chunk(json!({}), json!("tool_calls")));
        }
    }
    if ask.include_usage {
        // With stream_options.include_usage, OpenAI sends the usage in one last chunk with no choices.
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ask.model,
            "choices": [],
            "usage": openai_usage(ask),
        }));
    }
    let mut out = String::new();
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_message(ask: &Ask, n: u64) -> Value {
    let (content, stop) = match &ask.answer {
        Answer::Text | Answer::Echo(_) => {
            (json!([{ "type": "text", "text": ask.text() }]), "end_turn")
        }
        Answer::ToolCall { name, arguments } => (
            json!([{ "type": "tool_use", "id": format!("toolu_demo{n:06}"), "name": name,
                "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})) }]),
            "tool_use",
        ),
    };
    json!({
        "id": format!("msg_demo{n:06}"),
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": { "input_tokens": ask.prompt_tokens, "output_tokens": ask.completion_tokens() },
    })
}

/// The SSE body of a streamed Anthropic message, with the event sequence the real API sends.
fn anthropic_stream(ask: &Ask, n: u64) -> String {
    let mut events = vec![
        json!({ "type": "message_start", "message": {
            "id": format!("msg_demo{n:06}"),
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": ask.prompt_tokens, "output_tokens": 1 },
        }}),
        json!({ "type": "ping" }),
    ];
    let stop = match &ask.answer {
        Answer::Text | Answer::Echo(_) => {
            events.push(json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" } }));
            for part in ask.text_pieces() {
                events.push(json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": part } }));
            }
            "end_turn"
        }
        Answer::ToolCall { name, arguments } => {
            events.push(json!({ "type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": format!("toolu_demo{n:06}"), "name": name, "input": {},
            }}));
            for fragment in pieces(arguments) {
                events.push(json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "input_json_delta", "partial_json": fragment } }));
            }
            "tool_use"
        }
    };
    events.push(json!({ "type": "content_block_stop", "index": 0 }));
    events.push(json!({ "type": "message_delta",
        "delta": { "stop_reason": stop, "stop_sequence": null },
        "usage": { "output_tokens": ask.completion_tokens() } }));
    events.push(json!({ "type": "message_stop" }));
    let mut out = String::new();
    for e in events {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("message");
        out.push_str(&format!("event: {kind}\ndata: {e}\n\n"));
    }
    out
}

/// The one output item of a Responses API answer, complete.
fn responses_item(ask: &Ask, n: u64) -> Value {
    match &ask.answer {
        Answer::ToolCall { name, arguments } => json!({
            "id": format!("fc_demo{n:06}"), "type": "function_call", "status": "completed",
            "call_id": format!("call_demo{n:06}"), "name": name, "arguments": arguments,
        }),
        _ => json!({
            "id": format!("msg_demo{n:06}"), "type": "message", "status": "completed", "role": "assistant",
            "content": [{ "type": "output_text", "text": ask.text(), "annotations": [] }],
        }),
    }
}

/// A Responses API response object; `done` says whether its output is there yet.
fn responses_object(ask: &Ask, n: u64, created: u64, done: bool) -> Value {
    let completion = ask.completion_tokens();
    json!({
        "id": format!("resp_demo{n:06}"),
        "object": "response",
        "created_at": created,
        "status": if done { "completed" } else { "in_progress" },
        "model": ask.model,
        "output": if done { json!([responses_item(ask, n)]) } else { json!([]) },
        "usage": if done { json!({
            "input_tokens": ask.prompt_tokens,
            "output_tokens": completion,
            "total_tokens": ask.prompt_tokens.saturating_add(completion),
        }) } else { Value::Null },
    })
}

/// The SSE body of a streamed Responses API answer, with the event sequence the real API sends:
/// the item added, its deltas, the `*.done` events repeating it, and `response.completed`.
fn responses_stream(ask: &Ask, n: u64, created: u64) -> String {
    let item = responses_item(ask, n);
    let item_id = item.get("id").cloned().unwrap_or(Value::Null);
    let mut events = vec![
        json!({ "type": "response.created", "response": responses_object(ask, n, created, false) }),
        json!({ "type": "response.in_progress", "response": responses_object(ask, n, created, false) }),
    ];
    match &ask.answer {
        Answer::ToolCall { name, arguments } => {
            let mut added = item.clone();
            if let Some(fields) = added.as_object_mut() {
                fields.insert("status".into(), json!("in_progress"));
                fields.insert("arguments".into(), json!(""));
            }
            events.push(
                json!({ "type": "response.output_item.added", "output_index": 0, "item": added }),
            );
            for fragment in pieces(arguments) {
                events.push(json!({ "type": "response.function_call_arguments.delta",
                    "item_id": item_id, "output_index": 0, "delta": fragment }));
            }
            events.push(json!({ "type": "response.function_call_arguments.done",
                "item_id": item_id, "output_index": 0, "name": name, "arguments": arguments }));
        }
        _ => {
            let text = ask.text().unwrap_or_default();
            events.push(json!({ "type": "response.output_item.added", "output_index": 0, "item": {
                "id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": [] } }));
            let part =
                |text: &str| json!({ "type": "output_text", "text": text, "annotations": [] });
            events.push(
                json!({ "type": "response.content_part.added", "item_id": item_id,
                "output_index": 0, "content_index": 0, "part": part("") }),
            );
            for piece in ask.text_pieces() {
                events.push(
                    json!({ "type": "response.output_text.delta", "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": piece }),
                );
            }
            events.push(
                json!({ "type": "response.output_text.done", "item_id": item_id,
                "output_index": 0, "content_index": 0, "text": text }),
            );
            events.push(
                json!({ "type": "response.content_part.done", "item_id": item_id,
                "output_index": 0, "content_index": 0, "part": part(text) }),
            );
        }
    }
    events.push(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
    events.push(json!({ "type": "response.completed", "response": responses_object(ask, n, created, true) }));
    let mut out = String::new();
    for (seq, mut e) in events.into_iter().enumerate() {
        if let Some(fields) = e.as_object_mut() {
            fields.insert("sequence_number".into(), json!(seq));
        }
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        out.push_str(&format!("event: {kind}\ndata: {e}\n\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: Value) -> Ask {
        Ask::from_body(&body)
    }

    fn data_lines(sse: &str) -> Vec<&str> {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect()
    }

    /// The `delta.content` of every chunk of a streamed chat completion.
    fn content_deltas(body: &str) -> Vec<String> {
        data_lines(body)
            .iter()
            .filter(|l| **l != "[DONE]")
            .filter_map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    #[test]
    fn extracts_the_tool_after_call() {
        assert_eq!(
            proposed_tool("call delete_repository"),
            Some("delete_repository".into())
        );
        assert_eq!(
            proposed_tool("Please CALL `read_file`."),
            Some("read_file".into())
        );
        assert_eq!(
            proposed_tool("now, call: \"export_customers\"!"),
            Some("export_customers".into())
        );
        assert_eq!(
            proposed_tool("call get-issue please"),
            Some("get-issue".into())
        );
        assert_eq!(proposed_tool("recall search_issues"), None);
        assert_eq!(proposed_tool("I will call"), None);
        assert_eq!(
            proposed_tool("call 42 then call search_issues"),
            Some("search_issues".into())
        );
        assert_eq!(proposed_tool("hello there"), None);
        assert_eq!(proposed_tool(""), None);
    }

    #[test]
    fn reads_the_last_user_message_in_both_forms() {
        let openai = json!([
            {"role": "user", "content": "call read_file"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "please"}, {"type": "text", "text": "call get_issue"}]},
            {"role": "tool", "content": "x"},
        ]);
        assert_eq!(last_user_text(&openai), "please\ncall get_issue");
        let anthropic = json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": "call nothing"},
            {"type": "text", "text": "call export_customers"},
        ]}]);
        assert_eq!(last_user_text(&anthropic), "call export_customers");
        assert_eq!(last_user_text(&Value::Null), "");
    }

    #[test]
    fn openai_completion_proposes_the_tool() {
        let a = ask(
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "call delete_repository"}]}),
        );
        let v = openai_completion(&a, 1, 0);
        assert_eq!(v["model"], "gpt-test");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "delete_repository");
        assert_eq!(call["function"]["arguments"], "{}");
        let t = openai_completion(
            &ask(json!({"messages": [{"role": "user", "content": "hi"}]})),
            2,
            0,
        );
        assert_eq!(t["choices"][0]["message"]["content"], GREETING);
        assert_eq!(t["model"], DEFAULT_MODEL);
    }

    #[test]
    fn openai_stream_splits_name_and_arguments() {
        let a = ask(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "call export_customers"}]}),
        );
        let body = openai_stream(&a, 3, 0);
        let lines = data_lines(&body);
        assert_eq!(lines.last(), Some(&"[DONE]"));
        let (mut name, mut args, mut name_chunks, mut arg_chunks, mut finish) =
            (String::new(), String::new(), 0, 0, None);
        for l in &lines[..lines.len() - 1] {
            let c: Value = serde_json::from_str(l).unwrap();
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "m");
            let Some(choice) = c["choices"].get(0) else {
                continue;
            };
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
            if let Some(tc) = choice["delta"]["tool_calls"].get(0) {
                if let Some(n) = tc["function"]["name"].as_str() {
                    name.push_str(n);
                    name_chunks += 1;
                }
                if let Some(x) = tc["function"]["arguments"]
                    .as_str()
                    .filter(|x| !x.is_empty())
                {
                    args.push_str(x);
                    arg_chunks += 1;
                }
            }
        }
        assert_eq!(name, "export_customers");
        assert_eq!(args, "{}");
        assert!(name_chunks >= 2 && arg_chunks >= 2);
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        assert!(body.contains("\"usage\""));
    }

    #[test]
    fn openai_text_stream_spells_the_greeting() {
        let body = openai_stream(&ask(json!({"stream": true, "messages": []})), 4, 0);
        let text: String = content_deltas(&body).concat();
        assert_eq!(text, GREETING);
    }

    #[test]
    fn anthropic_message_and_stream() {
        let a = ask(json!({"model": "claude-test", "stream": true,
            "messages": [{"role": "user", "content": "call read_file"}]}));
        let m = anthropic_message(&a, 5);
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            json!({"type": "tool_use", "id": "toolu_demo000005", "name": "read_file", "input": {}})
        );
        let body = anthropic_stream(&a, 5);
        let events: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let partial: String = data_lines(&body)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["delta"]["type"] == "input_json_delta")
            .map(|v| v["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(partial, "{}");
        assert!(body.contains("\"model\":\"claude-test\""));
        let t = anthropic_stream(
            &ask(json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]})),
            6,
        );
        assert!(t.contains("text_delta") && t.contains("end_turn"));
    }

    #[test]
    fn repeat_answers_the_text_in_pieces_and_with_gives_arguments() {
        let a = ask(
            json!({"stream": true, "messages": [{"role": "user", "content": "please repeat: mail bob@example.org"}]}),
        );
        assert_eq!(a.answer, Answer::Echo("mail bob@example.org".into()));
        let body = openai_stream(&a, 1, 0);
        let deltas: Vec<String> = content_deltas(&body)
            .into_iter()
            .filter(|d| !d.is_empty())
            .collect();
        assert_eq!(deltas.concat(), "mail bob@example.org");
        assert!(
            deltas.iter().all(|d| d.chars().count() <= PIECE_CHARS) && deltas.len() == 4,
            "{deltas:?}"
        );
        let c = answer_to("call create_comment with: to ann@example.org");
        assert_eq!(
            c,
            Answer::ToolCall {
                name: "create_comment".into(),
                arguments: r#"{"body":"to ann@example.org"}"#.into()
            }
        );
        let m = anthropic_message(
            &ask(
                json!({"messages": [{"role": "user", "content": "call create_comment with: hi"}]}),
            ),
            2,
        );
        assert_eq!(m["content"][0]["input"], json!({"body": "hi"}));
    }

    #[test]
    fn responses_api_plain_and_streamed() {
        let a = ask(json!({"model": "m", "input": "call delete_repository"}));
        let r = responses_object(&a, 3, 0, true);
        assert_eq!(r["output"][0]["type"], "function_call");
        assert_eq!(r["output"][0]["name"], "delete_repository");
        let a = ask(
            json!({"model": "m", "stream": true, "input": [{"role": "user", "content": [{"type": "input_text", "text": "repeat: hello there"}]}]}),
        );
        let body = responses_stream(&a, 4, 0);
        let events: Vec<Value> = data_lines(&body)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.len(), events.len());
        for (name, e) in names.iter().zip(&events) {
            assert_eq!(e["type"], *name);
        }
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(text, "hello there");
        assert_eq!(
            events.last().unwrap()["response"]["output"][0]["content"][0]["text"],
            "hello there"
        );
        assert_eq!(names.first(), Some(&"response.created"));
        assert_eq!(names.last(), Some(&"response.completed"));
    }

    #[test]
    fn halves_split_in_the_middle() {
        assert_eq!(halves("abcd"), ("ab", "cd"));
        assert_eq!(halves("a"), ("", "a"));
        assert_eq!(halves(""), ("", ""));
    }
}
