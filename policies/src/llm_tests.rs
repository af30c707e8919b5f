use serde_json::json;

use super::*;
use crate::sse::SseParser;

// Captured from the demo upstream's mock LLM (demo-upstream/src/llm.rs) with curl: the exact bytes
// the demo stack streams.
const OPENAI_STREAM_READ_FILE: &str = include_str!("../tests/llm_fixtures/openai_stream_read_file.sse");
const OPENAI_STREAM_DELETE_REPOSITORY: &str = include_str!("../tests/llm_fixtures/openai_stream_delete_repository.sse");
const OPENAI_STREAM_TEXT: &str = include_str!("../tests/llm_fixtures/openai_stream_text.sse");
const OPENAI_DELETE_REPOSITORY: &str = include_str!("../tests/llm_fixtures/openai_delete_repository.json");
const ANTHROPIC_STREAM_READ_FILE: &str = include_str!("../tests/llm_fixtures/anthropic_stream_read_file.sse");
const ANTHROPIC_STREAM_DELETE_REPOSITORY: &str =
    include_str!("../tests/llm_fixtures/anthropic_stream_delete_repository.sse");
const ANTHROPIC_STREAM_TEXT: &str = include_str!("../tests/llm_fixtures/anthropic_stream_text.sse");
const ANTHROPIC_DELETE_REPOSITORY: &str = include_str!("../tests/llm_fixtures/anthropic_delete_repository.json");

// ---------------------------------------------------------------------------------------------
// Requests

fn err_text(result: Result<impl std::fmt::Debug, LlmError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn reads_openai_chat_requests() {
    let body = json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": [{"type": "text", "text": "call delete_repository"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\".env\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "AWS_SECRET=abc"},
            {"role": "assistant", "refusal": "no"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "read_file", "parameters": {}}},
            {"type": "function", "function": {"name": "delete_repository"}},
        ],
        "functions": [{"name": "legacy_fn"}],
        "tool_choice": {"type": "function", "function": {"name": "delete_repository"}},
    });
    let request = parse_request(Provider::OpenAi, &body).unwrap();
    assert_eq!(
        request,
        LlmRequest {
            model: Some("gpt-4o".into()),
            stream: true,
            declared_tools: vec!["read_file".into(), "delete_repository".into(), "legacy_fn".into()],
            forced_tool: Some("delete_repository".into()),
            texts: vec![
                "be terse".into(),
                "call delete_repository".into(),
                "{\"path\":\".env\"}".into(),
                "AWS_SECRET=abc".into(),
                "no".into(),
            ],
        }
    );
}

#[test]
fn reads_the_forced_tool_in_every_form() {
    let cases: &[(&str, Provider, Value, Option<&str>)] = &[
        ("openai auto", Provider::OpenAi, json!({"messages": [], "tool_choice": "auto"}), None),
        ("openai none", Provider::OpenAi, json!({"messages": [], "tool_choice": "none"}), None),
        ("openai required", Provider::OpenAi, json!({"messages": [], "tool_choice": "required"}), None),
        ("openai null", Provider::OpenAi, json!({"messages": [], "tool_choice": null}), None),
        (
            "openai function",
            Provider::OpenAi,
            json!({"messages": [], "tool_choice": {"type": "function", "function": {"name": "x"}}}),
            Some("x"),
        ),
        (
            "openai legacy function_call",
            Provider::OpenAi,
            json!({"messages": [], "function_call": {"name": "legacy"}}),
            Some("legacy"),
        ),
        ("openai legacy auto", Provider::OpenAi, json!({"messages": [], "function_call": "auto"}), None),
        (
            "responses function",
            Provider::OpenAi,
            json!({"input": "hi", "tool_choice": {"type": "function", "name": "y"}}),
            Some("y"),
        ),
        ("anthropic auto", Provider::Anthropic, json!({"messages": [], "tool_choice": {"type": "auto"}}), None),
        ("anthropic any", Provider::Anthropic, json!({"messages": [], "tool_choice": {"type": "any"}}), None),
        (
            "anthropic tool",
            Provider::Anthropic,
            json!({"messages": [], "tool_choice": {"type": "tool", "name": "delete_repository"}}),
            Some("delete_repository"),
        ),
        (
            "escaped name decodes before judging",
            Provider::Anthropic,
            parse_strict(br#"{"messages":[],"tool_choice":{"type":"tool","name":"delete\u005frepository"}}"#, 8).unwrap(),
            Some("delete_repository"),
        ),
    ];
    for (name, provider, body, want) in cases {
        let request = parse_request(*provider, body).unwrap_or_else(|e| panic!("case {name}: {e}"));
        assert_eq!(request.forced_tool.as_deref(), *want, "case {name}");
    }
}

#[test]
fn reads_openai_responses_requests() {
    let body = json!({
        "model": "gpt-4.1",
        "instructions": "be terse",
        "input": [
            {"role": "user", "content": "call delete_repository"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part"}]},
            {"type": "function_call", "call_id": "c", "name": "read_file", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "file body"},
        ],
        "tools": [{"type": "function", "name": "read_file", "parameters": {}}],
    });
    let request = parse_request(Provider::OpenAi, &body).unwrap();
    assert_eq!(request.declared_tools, ["read_file"]);
    assert_eq!(request.texts, ["be terse", "call delete_repository", "part", "{}", "file body"]);
    assert!(!request.stream);
    let plain_body = json!({"input": "hello"});
    let plain = parse_request(Provider::OpenAi, &plain_body).unwrap();
    assert_eq!(plain.texts, ["hello"]);
}

#[test]
fn reads_anthropic_requests() {
    let body = json!({
        "model": "claude-sonnet",
        "max_tokens": 10,
        "stream": false,
        "system": [{"type": "text", "text": "be terse"}],
        "tools": [
            {"name": "read_file", "input_schema": {"type": "object"}},
            {"type": "bash_20250124", "name": "bash"},
        ],
        "messages": [
            {"role": "user", "content": "call read_file"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "read_file", "input": {"path": ".env"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "AKIA..."}]},
                {"type": "tool_result", "tool_use_id": "u", "content": "plain result"},
                {"type": "image", "source": {"type": "base64", "data": "..."}},
                {"type": "text", "text": "thanks"},
            ]},
        ],
    });
    let request = parse_request(Provider::Anthropic, &body).unwrap();
    assert_eq!(
        request,
        LlmRequest {
            model: Some("claude-sonnet".into()),
            stream: false,
            declared_tools: vec!["read_file".into(), "bash".into()],
            forced_tool: None,
            texts: vec![
                "be terse".into(),
                "call read_file".into(),
                "{\"path\":\".env\"}".into(),
                "AKIA...".into(),
                "plain result".into(),
                "thanks".into(),
            ],
        }
    );
    let system_body = json!({"system": "sys", "messages": []});
    let system = parse_request(Provider::Anthropic, &system_body).unwrap();
    assert_eq!(system.texts, ["sys"]);
}

#[test]
fn refuses_malformed_requests_naming_the_field() {
    let cases: &[(&str, Provider, Value, &str)] = &[
        ("body not an object", Provider::OpenAi, json!([]), "body: expected an object"),
        (
            "tool name not a string",
            Provider::OpenAi,
            json!({"messages": [], "tools": [
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "b"}},
                {"type": "function", "function": {"name": 7}},
            ]}),
            "tools[2].function.name: expected a string",
        ),
        (
            "tool without function",
            Provider::OpenAi,
            json!({"messages": [], "tools": [{"type": "function"}]}),
            "tools[0].function: missing",
        ),
        (
            "tools not an array",
            Provider::OpenAi,
            json!({"messages": [], "tools": {"name": "x"}}),
            "tools: expected an array",
        ),
        ("stream not a boolean", Provider::OpenAi, json!({"messages": [], "stream": "yes"}), "stream: expected a boolean"),
        ("model not a string", Provider::Anthropic, json!({"messages": [], "model": 4}), "model: expected a string"),
        ("messages missing", Provider::Anthropic, json!({"model": "m"}), "messages: missing"),
        (
            "content not text",
            Provider::OpenAi,
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content: expected a string or an array",
        ),
        (
            "text part without text",
            Provider::OpenAi,
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text: missing",
        ),
        (
            "unknown tool type",
            Provider::OpenAi,
            json!({"messages": [], "tools": [{"type": "mcp", "server_url": "x"}]}),
            "tools[0].type: unsupported value \"mcp\"",
        ),
        (
            "responses built-in tool",
            Provider::OpenAi,
            json!({"input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type: unsupported value \"web_search\"",
        ),
        (
            "unknown tool_choice string",
            Provider::OpenAi,
            json!({"messages": [], "tool_choice": "delete_repository"}),
            "tool_choice: unsupported value \"delete_repository\"",
        ),
        (
            "allowed_tools choice",
            Provider::OpenAi,
            json!({"messages": [], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
            "tool_choice.type: unsupported value \"allowed_tools\"",
        ),
        (
            "anthropic choice without name",
            Provider::Anthropic,
            json!({"messages": [], "tool_choice": {"type": "tool"}}),
            "tool_choice.name: missing",
        ),
        (
            "anthropic choice as string",
            Provider::Anthropic,
            json!({"messages": [], "tool_choice": "auto"}),
            "tool_choice: expected an object",
        ),
        (
            "anthropic tool_result content",
            Provider::Anthropic,
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": 3}]}]}),
            "messages[0].content[0].content: expected a string or an array",
        ),
        (
            "messages and input",
            Provider::OpenAi,
            json!({"messages": [], "input": "x"}),
            "messages and input are both present",
        ),
        (
            "tool_choice and function_call",
            Provider::OpenAi,
            json!({"messages": [], "tool_choice": "auto", "function_call": "auto"}),
            "tool_choice and function_call are both present",
        ),
    ];
    for (name, provider, body, want) in cases {
        assert_eq!(err_text(parse_request(*provider, body)), *want, "case {name}");
    }
}

#[test]
fn refuses_tool_names_outside_the_safe_alphabet() {
    let long = "a".repeat(129);
    let names: &[(&str, &str)] = &[
        ("cyrillic o homoglyph", "delete_rep\u{43e}sitory"),
        ("zero-width space", "delete\u{200b}_repository"),
        ("bidi override", "\u{202e}yrotisoper_eteled"),
        ("fullwidth letters", "\u{ff44}elete_repository"),
        ("space", "delete repository"),
        ("slash", "tools/delete"),
        ("empty", ""),
        ("129 bytes", &long),
    ];
    for (case, name) in names {
        for provider in [Provider::OpenAi, Provider::Anthropic] {
            let body = match provider {
                Provider::OpenAi => json!({"messages": [], "tools": [{"type": "function", "function": {"name": name}}]}),
                Provider::Anthropic => json!({"messages": [], "tools": [{"name": name}]}),
            };
            let result = parse_request(provider, &body);
            assert!(matches!(result, Err(LlmError::InvalidToolName { .. })), "case {case} {provider:?}: {result:?}");
        }
    }
    let ok = json!({"messages": [], "tools": [{"name": "a".repeat(128)}, {"name": "ns.tool-1_x"}]});
    assert_eq!(parse_request(Provider::Anthropic, &ok).unwrap().declared_tools.len(), 2);
}

#[test]
fn bounds_declared_tools() {
    let tools: Vec<Value> = (0..=MAX_DECLARED_TOOLS).map(|i| json!({"name": format!("t{i}")})).collect();
    let body = json!({"messages": [], "tools": tools});
    assert_eq!(
        parse_request(Provider::Anthropic, &body),
        Err(LlmError::TooLarge { what: "declared tools", limit: MAX_DECLARED_TOOLS })
    );
}

// ---------------------------------------------------------------------------------------------
// Non-streamed responses

fn call(choice: usize, index: usize, id: Option<&str>, name: &str, raw: &str) -> ProposedToolCall {
    ProposedToolCall {
        choice,
        index,
        id: id.map(str::to_owned),
        name: name.to_owned(),
        arguments: parse_strict(raw.as_bytes(), 8).ok(),
        raw_arguments: raw.to_owned(),
    }
}

#[test]
fn reads_the_demo_responses() {
    let openai = parse_strict(OPENAI_DELETE_REPOSITORY.as_bytes(), 32).unwrap();
    let response = parse_response(Provider::OpenAi, &openai).unwrap();
    assert_eq!(response.tool_calls, vec![call(0, 0, Some("call_demo000004"), "delete_repository", "{}")]);
    assert!(response.texts.is_empty());
    let anthropic = parse_strict(ANTHROPIC_DELETE_REPOSITORY.as_bytes(), 32).unwrap();
    let response = parse_response(Provider::Anthropic, &anthropic).unwrap();
    assert_eq!(response.tool_calls, vec![call(0, 0, Some("toolu_demo000008"), "delete_repository", "{}")]);
}

#[test]
fn reads_parallel_calls_and_several_choices() {
    let body = json!({"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "let me", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"x\"}"}},
            {"id": "b", "type": "function", "function": {"name": "delete_repository", "arguments": "{\"repo\":"}},
        ]}, "finish_reason": "tool_calls"},
        {"index": 1, "message": {"role": "assistant", "content": null, "function_call": {"name": "export_customers", "arguments": "{}"}}},
    ]});
    let response = parse_response(Provider::OpenAi, &body).unwrap();
    assert_eq!(
        response.tool_calls,
        vec![
            call(0, 0, Some("a"), "read_file", "{\"path\":\"x\"}"),
            // Arguments that are not JSON stay raw, unparsed.
            call(0, 1, Some("b"), "delete_repository", "{\"repo\":"),
            call(1, 0, None, "export_customers", "{}"),
        ]
    );
    assert_eq!(response.tool_calls[1].arguments, None);
    assert_eq!(response.texts, ["let me"]);

    let anthropic = json!({"content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a"}},
        {"type": "tool_use", "id": "t2", "name": "delete_repository", "input": {}},
    ]});
    let response = parse_response(Provider::Anthropic, &anthropic).unwrap();
    assert_eq!(
        response.tool_calls,
        vec![
            call(0, 2, Some("t1"), "read_file", "{\"path\":\"a\"}"),
            call(0, 3, Some("t2"), "delete_repository", "{}"),
        ]
    );
    assert_eq!(response.texts, ["hmm", "ok"]);

    let responses_api = json!({"object": "response", "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c", "name": "delete_repository", "arguments": "{}"},
    ]});
    let response = parse_response(Provider::OpenAi, &responses_api).unwrap();
    assert_eq!(response.tool_calls, vec![call(0, 2, Some("c"), "delete_repository", "{}")]);
    assert_eq!(response.texts, ["hi"]);
}

#[test]
fn refuses_malformed_responses() {
    let too_many: Vec<Value> = (0..=MAX_TOOL_CALLS)
        .map(|i| json!({"type": "function", "function": {"name": format!("t{i}"), "arguments": "{}"}}))
        .collect();
    let big_arguments = format!("\"{}\"", "x".repeat(MAX_ARGUMENTS_BYTES));
    let cases: &[(&str, Provider, Value, &str)] = &[
        (
            "name not a string",
            Provider::OpenAi,
            json!({"choices": [{"message": {"tool_calls": [{"type": "function", "function": {"name": ["x"]}}]}}]}),
            "choices[0].message.tool_calls[0].function.name: expected a string",
        ),
        (
            "homoglyph name",
            Provider::OpenAi,
            json!({"choices": [{"message": {"tool_calls": [{"type": "function", "function": {"name": "delete_rep\u{43e}sitory"}}]}}]}),
            "choices[0].message.tool_calls[0].function.name: tool name \"delete_rep\u{43e}sitory\" is not 1 to 128 characters of [A-Za-z0-9_.-]",
        ),
        ("no choices", Provider::OpenAi, json!({"id": "x"}), "choices: missing"),
        (
            "anthropic unknown block",
            Provider::Anthropic,
            json!({"content": [{"type": "future_tool_call", "name": "x"}]}),
            "content[0].type: unsupported value \"future_tool_call\"",
        ),
        (
            "anthropic tool_use without input",
            Provider::Anthropic,
            json!({"content": [{"type": "tool_use", "name": "x"}]}),
            "content[0].input: missing",
        ),
        (
            "too many calls",
            Provider::OpenAi,
            json!({"choices": [{"message": {"tool_calls": too_many}}]}),
            "tool calls exceeds the limit of 128",
        ),
        (
            "arguments too large",
            Provider::OpenAi,
            json!({"choices": [{"message": {"tool_calls": [{"type": "function", "function": {"name": "x", "arguments": big_arguments}}]}}]}),
            "tool call arguments exceeds the limit of 1048576",
        ),
    ];
    for (name, provider, body, want) in cases {
        assert_eq!(err_text(parse_response(*provider, body)), *want, "case {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Everything the assembler said, with the number of the SSE event that made it say so, and
/// whether a tool call was pending after each event.
#[derive(Debug, PartialEq)]
struct Run {
    notes: Vec<(usize, AssemblerNote)>,
    pending_after: Vec<bool>,
}

fn run_chunks(provider: Provider, chunks: &[&[u8]]) -> Result<Run, LlmError> {
    let mut parser = SseParser::new();
    let mut assembler = ToolCallAssembler::new(provider);
    let mut run = Run { notes: Vec::new(), pending_after: Vec::new() };
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(parser.feed(chunk).unwrap());
    }
    events.extend(parser.finish().unwrap());
    for (n, event) in events.iter().enumerate() {
        // Argument fragments are followed by their own tests; the demo streams' are "{" and "}".
        for note in assembler.feed(event)? {
            if !matches!(note, AssemblerNote::Text(TextSpan { kind: TextKind::Arguments { .. }, .. })) {
                run.notes.push((n, note));
            }
        }
        run.pending_after.push(assembler.pending_tool_call());
    }
    for note in assembler.finish()? {
        run.notes.push((events.len(), note));
    }
    Ok(run)
}

fn run(provider: Provider, stream: &str) -> Result<Run, LlmError> {
    run_chunks(provider, &[stream.as_bytes()])
}

fn sse(datas: &[Value]) -> String {
    datas.iter().map(|d| format!("data: {d}\n\n")).collect::<String>() + "data: [DONE]\n\n"
}

fn text_note(text: &str, pointer: &str) -> AssemblerNote {
    AssemblerNote::Text(TextSpan { text: text.into(), pointer: pointer.into(), kind: TextKind::Content })
}

fn name_complete(choice: usize, index: usize, name: &str) -> AssemblerNote {
    AssemblerNote::ToolNameComplete { choice, index, name: name.into() }
}

fn complete(choice: usize, index: usize, id: Option<&str>, name: &str, raw: &str) -> AssemblerNote {
    AssemblerNote::ToolCallComplete(call(choice, index, id, name, raw))
}

#[test]
fn demo_openai_stream_names_the_tool_once_its_name_is_whole() {
    // Events: 0 role, 1 {"name":"read"}, 2 {"name":"_file"}, 3 arguments "{", 4 "}", 5 finish,
    // 6 usage, 7 [DONE].
    let got = run(Provider::OpenAi, OPENAI_STREAM_READ_FILE).unwrap();
    assert_eq!(
        got.notes,
        vec![
            (3, name_complete(0, 0, "read_file")),
            (5, complete(0, 0, Some("call_demo000002"), "read_file", "{}")),
            (7, AssemblerNote::Done),
        ]
    );
    // Frames 1 and 2 (fragments of the name) are held back until event 3 completes it.
    assert_eq!(got.pending_after, [false, true, true, false, false, false, false, false]);

    let got = run(Provider::OpenAi, OPENAI_STREAM_DELETE_REPOSITORY).unwrap();
    assert_eq!(got.notes[0], (3, name_complete(0, 0, "delete_repository")));
    assert!(matches!(&got.notes[1], (5, AssemblerNote::ToolCallComplete(c)) if c.arguments == Some(json!({}))));
    assert_eq!(got.pending_after, [false, true, true, false, false, false, false]);

    let text = run(Provider::OpenAi, OPENAI_STREAM_TEXT).unwrap();
    assert_eq!(
        text.notes,
        vec![
            (1, text_note("Hello from ", "/choices/0/delta/content")),
            (2, text_note("the mock LLM", "/choices/0/delta/content")),
            (4, AssemblerNote::Done),
        ]
    );
}

#[test]
fn demo_anthropic_stream_names_the_tool_at_content_block_start() {
    // Events: 0 message_start, 1 ping, 2 content_block_start, 3 "{", 4 "}", 5 stop,
    // 6 message_delta, 7 message_stop.
    let got = run(Provider::Anthropic, ANTHROPIC_STREAM_READ_FILE).unwrap();
    assert_eq!(
        got.notes,
        vec![
            (2, name_complete(0, 0, "read_file")),
            (5, complete(0, 0, Some("toolu_demo000006"), "read_file", "{}")),
            (7, AssemblerNote::Done),
        ]
    );
    assert!(got.pending_after.iter().all(|p| !p));
    let got = run(Provider::Anthropic, ANTHROPIC_STREAM_DELETE_REPOSITORY).unwrap();
    assert_eq!(got.notes[0], (2, name_complete(0, 0, "delete_repository")));
    let text = run(Provider::Anthropic, ANTHROPIC_STREAM_TEXT).unwrap();
    assert_eq!(
        text.notes,
        vec![
            (3, text_note("Hello from ", "/delta/text")),
            (4, text_note("the mock LLM", "/delta/text")),
            (7, AssemblerNote::Done),
        ]
    );
}

#[test]
fn demo_streams_split_anywhere_give_the_same_notes() {
    for (provider, stream) in [
        (Provider::OpenAi, OPENAI_STREAM_READ_FILE),
        (Provider::OpenAi, OPENAI_STREAM_DELETE_REPOSITORY),
        (Provider::Anthropic, ANTHROPIC_STREAM_READ_FILE),
        (Provider::Anthropic, ANTHROPIC_STREAM_DELETE_REPOSITORY),
    ] {
        let whole = run(provider, stream).unwrap();
        let bytes = stream.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(run_chunks(provider, &[a, b]).unwrap(), whole, "{provider:?} split at {at}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run_chunks(provider, &singles).unwrap(), whole, "{provider:?} byte by byte");
        // The same stream with CRLF line ends.
        let crlf = stream.replace('\n', "\r\n");
        assert_eq!(run(provider, &crlf).unwrap(), whole, "{provider:?} CRLF");
    }
}

fn chunk(choice: usize, delta: Value, finish: Value) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": choice, "delta": delta, "finish_reason": finish}]})
}

fn tool_delta(index: usize, function: Value) -> Value {
    json!({"tool_calls": [{"index": index, "function": function}]})
}

#[test]
fn openai_parallel_calls_with_split_names() {
    let stream = sse(&[
        chunk(0, json!({"role": "assistant"}), Value::Null),
        chunk(0, json!({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "read", "arguments": ""}}]}), Value::Null),
        chunk(0, tool_delta(0, json!({"name": "_file"})), Value::Null),
        chunk(0, tool_delta(0, json!({"arguments": "{\"path\":"})), Value::Null),
        chunk(0, tool_delta(0, json!({"arguments": "\"x\"}"})), Value::Null),
        // Index 1 starts with a name fragment only: its name is still pending.
        chunk(0, json!({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "delete_"}}]}), Value::Null),
        chunk(0, tool_delta(1, json!({"name": "repository"})), Value::Null),
        // No more fragments: the finish completes name and call.
        chunk(0, json!({}), json!("tool_calls")),
    ]);
    let got = run(Provider::OpenAi, &stream).unwrap();
    assert_eq!(
        got.notes,
        vec![
            (3, name_complete(0, 0, "read_file")),
            (7, name_complete(0, 1, "delete_repository")),
            (7, complete(0, 0, Some("a"), "read_file", "{\"path\":\"x\"}")),
            (7, complete(0, 1, Some("b"), "delete_repository", "")),
            (8, AssemblerNote::Done),
        ]
    );
    assert_eq!(got.pending_after, [false, true, true, false, false, true, true, false, false]);
}

#[test]
fn openai_another_index_completes_a_pending_name() {
    // Two calls in one chunk and a third in the next: each entry for another call completes the
    // names before it.
    let stream = sse(&[
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": "read_file", "arguments": ""}},
            {"index": 1, "function": {"name": "get_", "arguments": ""}},
        ]}}]}),
        chunk(0, tool_delta(2, json!({"name": "x"})), Value::Null),
    ]);
    let got = run(Provider::OpenAi, &stream).unwrap();
    assert_eq!(got.notes[0], (0, name_complete(0, 0, "read_file")));
    assert_eq!(got.notes[1], (1, name_complete(0, 1, "get_")));
    assert_eq!(got.notes[2], (2, name_complete(0, 2, "x")));
    assert_eq!(got.pending_after, [true, true, false]);
    // A text chunk or a usage chunk without choices extends no name either.
    let stream = sse(&[chunk(0, tool_delta(0, json!({"name": "read_file"})), Value::Null), json!({"choices": [], "usage": {}})]);
    assert_eq!(run(Provider::OpenAi, &stream).unwrap().notes[0], (1, name_complete(0, 0, "read_file")));
}

#[test]
fn openai_several_choices() {
    let stream = sse(&[
        chunk(0, tool_delta(0, json!({"name": "read_file", "arguments": "{}"})), Value::Null),
        chunk(1, tool_delta(0, json!({"name": "delete_", "arguments": ""})), Value::Null),
        chunk(1, tool_delta(0, json!({"name": "repository"})), Value::Null),
        chunk(0, json!({}), json!("tool_calls")),
        chunk(1, tool_delta(0, json!({"arguments": "{}"})), Value::Null),
        chunk(1, json!({}), json!("tool_calls")),
    ]);
    let got = run(Provider::OpenAi, &stream).unwrap();
    assert_eq!(
        got.notes,
        vec![
            (1, name_complete(0, 0, "read_file")),
            (3, name_complete(1, 0, "delete_repository")),
            (3, complete(0, 0, None, "read_file", "{}")),
            (5, complete(1, 0, None, "delete_repository", "{}")),
            (6, AssemblerNote::Done),
        ]
    );
}

#[test]
fn openai_escaped_name_decodes() {
    let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"delete\\u005frepository\",\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n";
    let got = run(Provider::OpenAi, stream).unwrap();
    assert_eq!(got.notes[0], (1, name_complete(0, 0, "delete_repository")));
    // The escape ends one fragment; the rest of the name follows in the next chunk.
    let got_split = run(Provider::OpenAi, &stream.replace("\\u005f", "\\u005f\",\"arguments\":\"\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\""));
    assert_eq!(got_split.unwrap().notes[0], (2, name_complete(0, 0, "delete_repository")));
    let anthropic = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"delete\\u005Frepository\",\"input\":{}}}\n\n";
    assert_eq!(run(Provider::Anthropic, anthropic).unwrap().notes[0], (0, name_complete(0, 0, "delete_repository")));
}

#[test]
fn openai_legacy_function_call_stream() {
    let stream = sse(&[
        chunk(0, json!({"function_call": {"name": "delete_", "arguments": ""}}), Value::Null),
        chunk(0, json!({"function_call": {"name": "repository"}}), Value::Null),
        chunk(0, json!({"function_call": {"arguments": "{}"}}), Value::Null),
        chunk(0, json!({}), json!("function_call")),
    ]);
    let got = run(Provider::OpenAi, &stream).unwrap();
    assert_eq!(got.notes[0], (2, name_complete(0, 0, "delete_repository")));
    assert_eq!(got.notes[1], (3, complete(0, 0, None, "delete_repository", "{}")));
}

#[test]
fn stream_without_end_marker_completes_at_finish() {
    let stream = format!("data: {}\n\ndata: {}\n\n", chunk(0, tool_delta(0, json!({"name": "read"})), Value::Null), chunk(0, tool_delta(0, json!({"name": "_file"})), Value::Null));
    let got = run(Provider::OpenAi, &stream).unwrap();
    assert_eq!(got.notes, vec![(2, name_complete(0, 0, "read_file")), (2, complete(0, 0, None, "read_file", ""))]);
    assert_eq!(got.pending_after, [true, true]);
}

#[test]
fn anthropic_parallel_tool_uses_and_text() {
    let events = [
        json!({"type": "message_start", "message": {"content": []}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "on it"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "read_file", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"pa"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "th\":\"a\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "t2", "name": "delete_repository", "input": {}}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_stop"}),
    ];
    let stream: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    let got = run(Provider::Anthropic, &stream).unwrap();
    assert_eq!(
        got.notes,
        vec![
            (2, text_note("on it", "/delta/text")),
            (4, name_complete(0, 1, "read_file")),
            (7, complete(0, 1, Some("t1"), "read_file", "{\"path\":\"a\"}")),
            (8, name_complete(0, 2, "delete_repository")),
            (9, complete(0, 2, Some("t2"), "delete_repository", "{}")),
            (10, AssemblerNote::Done),
        ]
    );
    // Without event names (a line reader's view) the data's type decides.
    let bare: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    assert_eq!(run(Provider::Anthropic, &bare).unwrap(), got);
}

#[test]
fn refuses_hostile_streams() {
    let dup = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"read_file\",\"name\":\"delete_repository\"}}]}}]}\n\n";
    let late = sse(&[
        chunk(0, tool_delta(0, json!({"name": "read"})), Value::Null),
        chunk(0, tool_delta(0, json!({"arguments": "{"})), Value::Null),
        chunk(0, tool_delta(0, json!({"name": "_all"})), Value::Null),
    ]);
    let interleaved = sse(&[
        chunk(0, tool_delta(0, json!({"name": "delete_"})), Value::Null),
        chunk(0, tool_delta(1, json!({"name": "x"})), Value::Null),
        chunk(0, tool_delta(0, json!({"name": "repository"})), Value::Null),
    ]);
    let after_done = format!("{}data: {}\n\n", sse(&[]), chunk(0, tool_delta(0, json!({"name": "x"})), Value::Null));
    let after_finish = sse(&[chunk(0, json!({}), json!("stop")), chunk(0, tool_delta(0, json!({"name": "x"})), Value::Null)]);
    let homoglyph = sse(&[chunk(0, tool_delta(0, json!({"name": "delete_rep\u{43e}"})), Value::Null)]);
    let long_name = sse(&[
        chunk(0, tool_delta(0, json!({"name": "a".repeat(100)})), Value::Null),
        chunk(0, tool_delta(0, json!({"name": "a".repeat(29)})), Value::Null),
    ]);
    let no_name = sse(&[chunk(0, tool_delta(0, json!({"arguments": "{}"})), Value::Null)]);
    let too_many: Vec<Value> =
        (0..=MAX_TOOL_CALLS).map(|i| chunk(0, tool_delta(i, json!({"name": "t", "arguments": "{}"})), Value::Null)).collect();
    let half = "x".repeat(MAX_ARGUMENTS_BYTES / 2 + 1);
    let big_args = sse(&[
        chunk(0, tool_delta(0, json!({"name": "t", "arguments": half})), Value::Null),
        chunk(0, tool_delta(0, json!({"arguments": half})), Value::Null),
    ]);
    let responses_stream = "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"item\":{\"type\":\"function_call\",\"name\":\"delete_repository\"}}\n\n";
    let added = json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "read_file", "arguments": ""}});
    let responses_then_chat = format!("data: {added}\n\ndata: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": "x"}}]}));
    let responses_renamed = format!(
        "data: {added}\n\ndata: {}\n\n",
        json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "delete_repository", "arguments": "{}"}})
    );
    let responses_orphan_delta = format!("data: {}\n\n", json!({"type": "response.function_call_arguments.delta", "output_index": 3, "delta": "{"}));
    let responses_mislabelled = format!("event: response.output_text.delta\ndata: {added}\n\n");
    let not_json = "data: {\"choices\": [\n\n";
    let deep = format!("data: {}{}\n\n", "[".repeat(100), "]".repeat(100));
    let cases: &[(&str, Provider, &str, &str)] = &[
        ("duplicate key", Provider::OpenAi, dup, "event data: duplicate object key \"name\""),
        ("late name fragment", Provider::OpenAi, &late, "choice 0 tool call 0: name fragment after the name was complete"),
        ("interleaved name fragment", Provider::OpenAi, &interleaved, "choice 0 tool call 0: name fragment after the name was complete"),
        ("event after [DONE]", Provider::OpenAi, &after_done, "event: event after the end of the stream"),
        ("call after finish", Provider::OpenAi, &after_finish, "choices[index 0].delta.tool_calls: tool call after the choice finished"),
        (
            "homoglyph fragment",
            Provider::OpenAi,
            &homoglyph,
            "choices[0].delta.tool_calls[0].function.name: tool name \"delete_rep\u{43e}\" is not 1 to 128 characters of [A-Za-z0-9_.-]",
        ),
        ("name over 128 bytes", Provider::OpenAi, &long_name, "tool name exceeds the limit of 128"),
        (
            "arguments without a name",
            Provider::OpenAi,
            &no_name,
            "choices[0].delta.tool_calls[0].function.name: tool name \"\" is not 1 to 128 characters of [A-Za-z0-9_.-]",
        ),
        ("too many calls", Provider::OpenAi, &sse(&too_many), "tool calls exceeds the limit of 128"),
        ("arguments over 1 MiB", Provider::OpenAi, &big_args, "tool call arguments exceeds the limit of 1048576"),
        ("responses item without output_index", Provider::OpenAi, responses_stream, "output_index: missing"),
        ("responses and chat mixed", Provider::OpenAi, &responses_then_chat, "type: Chat Completions chunks and Responses events mixed"),
        ("responses name changed when done", Provider::OpenAi, &responses_renamed, "output[0].name: tool name differs from the one announced"),
        ("responses arguments for no call", Provider::OpenAi, &responses_orphan_delta, "output_index: arguments for an output item that is not an open tool call"),
        ("responses event name disagrees", Provider::OpenAi, &responses_mislabelled, "SSE event \"response.output_text.delta\" carries data of type \"response.output_item.added\""),
        ("not JSON", Provider::OpenAi, not_json, "event data: invalid JSON at line 1 column 13: EOF while parsing a list"),
        ("too deep", Provider::OpenAi, &deep, "event data: JSON nested deeper than 64 levels"),
        (
            "event name disagrees with type",
            Provider::Anthropic,
            "event: ping\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"x\",\"input\":{}}}\n\n",
            "SSE event \"ping\" carries data of type \"content_block_start\"",
        ),
        (
            "delta for no tool use",
            Provider::Anthropic,
            "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
            "index: input_json_delta for a block that is not an open tool use",
        ),
        (
            "unknown block type",
            Provider::Anthropic,
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_call\",\"name\":\"x\"}}\n\n",
            "content_block.type: unsupported value \"tool_call\"",
        ),
        (
            "block started twice",
            Provider::Anthropic,
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"a\",\"input\":{}}}\n\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"b\",\"input\":{}}}\n\n",
            "index: content block started twice",
        ),
        (
            "tool use hidden in message_start",
            Provider::Anthropic,
            "data: {\"type\":\"message_start\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":\"x\",\"input\":{}}]}}\n\n",
            "message.content: message_start with content",
        ),
        (
            "anthropic after message_stop",
            Provider::Anthropic,
            "data: {\"type\":\"message_stop\"}\n\ndata: {\"type\":\"ping\"}\n\n",
            "event: event after the end of the stream",
        ),
    ];
    for (name, provider, stream, want) in cases {
        assert_eq!(err_text(run(*provider, stream)), *want, "case {name}");
    }
}

#[test]
fn ignores_keep_alives_and_unknown_anthropic_events() {
    let stream = "data:\n\nevent: future_event\ndata: {\"type\":\"future_event\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
    assert!(run(Provider::Anthropic, stream).unwrap().notes.is_empty());
    let openai = "data: {\"error\":{\"message\":\"overloaded\"}}\n\n";
    assert!(run(Provider::OpenAi, openai).unwrap().notes.is_empty());
}

/// A streamed Responses API answer: a sentence, then a call to `tool` whose arguments arrive in
/// `fragments`, each `.done` event and `response.completed` repeating the whole.
pub(crate) fn responses_stream(text: &[&str], tool: &str, fragments: &[&str]) -> String {
    let whole_text: String = text.concat();
    let args: String = fragments.concat();
    let message = json!({"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": whole_text, "annotations": []}]});
    let call = json!({"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": tool, "arguments": args});
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        json!({"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for t in text {
        events.push(json!({"type": "response.output_text.delta", "sequence_number": events.len(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": t}));
    }
    events.push(json!({"type": "response.output_text.done", "sequence_number": events.len(), "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": whole_text}));
    events.push(json!({"type": "response.output_item.done", "sequence_number": events.len(), "output_index": 0, "item": message}));
    events.push(json!({"type": "response.output_item.added", "sequence_number": events.len(), "output_index": 1,
        "item": {"id": "fc_1", "type": "function_call", "status": "in_progress", "call_id": "call_1", "name": tool, "arguments": ""}}));
    for f in fragments {
        events.push(json!({"type": "response.function_call_arguments.delta", "sequence_number": events.len(), "item_id": "fc_1", "output_index": 1, "delta": f}));
    }
    events.push(json!({"type": "response.function_call_arguments.done", "sequence_number": events.len(), "item_id": "fc_1", "output_index": 1, "arguments": args}));
    events.push(json!({"type": "response.output_item.done", "sequence_number": events.len(), "output_index": 1, "item": call}));
    events.push(json!({"type": "response.completed", "sequence_number": events.len(),
        "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [message, call]}}));
    events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default())).collect()
}

#[test]
fn responses_stream_names_the_call_when_its_item_is_added_and_judges_every_copy() {
    let stream = responses_stream(&["Reading ", "it now"], "read_file", &["{\"pa", "th\":\"a\"}"]);
    let mut parser = SseParser::new();
    let events = parser.feed(stream.as_bytes()).unwrap();
    let mut assembler = ToolCallAssembler::new(Provider::OpenAi);
    let mut notes = Vec::new();
    for (n, event) in events.iter().enumerate() {
        for note in assembler.feed(event).unwrap() {
            notes.push((n, note));
        }
    }
    let read_file = ProposedToolCall { choice: 0, index: 1, id: Some("call_1".into()), name: "read_file".into(), arguments: Some(json!({"path": "a"})), raw_arguments: "{\"path\":\"a\"}".into() };
    let args = |t: &str| AssemblerNote::Text(TextSpan { text: t.into(), pointer: "/delta".into(), kind: TextKind::Arguments { choice: 0, index: 1 } });
    // Events: 0 created, 1 item added, 2 part added, 3-4 text, 5 text done, 6 item done,
    // 7 call added, 8-9 arguments, 10 arguments done, 11 item done, 12 completed.
    let expected = vec![
        (0, AssemblerNote::Snapshot),
        (1, AssemblerNote::Snapshot),
        (2, AssemblerNote::Snapshot),
        (3, text_note("Reading ", "/delta")),
        (4, text_note("it now", "/delta")),
        (5, AssemblerNote::Snapshot),
        (6, AssemblerNote::Snapshot),
        (7, AssemblerNote::Snapshot),
        (7, name_complete(0, 1, "read_file")),
        (8, args("{\"pa")),
        (9, args("th\":\"a\"}")),
        (10, AssemblerNote::Snapshot),
        (10, AssemblerNote::ToolCallComplete(read_file.clone())),
        (11, AssemblerNote::Snapshot),
        (11, AssemblerNote::ToolCallComplete(read_file.clone())),
        (12, AssemblerNote::Snapshot),
        (12, AssemblerNote::ToolCallComplete(read_file)),
        (12, AssemblerNote::Done),
    ];
    assert_eq!(notes, expected);
    assert!(!assembler.pending_tool_call());
    // A `[DONE]` some servers add after `response.completed` is no event after the end.
    assert_eq!(assembler.feed(&parser.feed(b"data: [DONE]\n\n").unwrap()[0]).unwrap(), vec![]);
    // Split anywhere, the notes are the same.
    let whole = run(Provider::OpenAi, &stream).unwrap();
    let bytes = stream.as_bytes();
    for at in (0..=bytes.len()).step_by(7) {
        let (a, b) = bytes.split_at(at);
        assert_eq!(run_chunks(Provider::OpenAi, &[a, b]).unwrap(), whole, "split at {at}");
    }
}

#[test]
fn responses_stream_refuses_a_call_it_renames_or_never_announced() {
    // A call first seen whole in response.completed is judged there.
    let completed = json!({"type": "response.completed", "response": {"output": [
        {"type": "function_call", "call_id": "c", "name": "delete_repository", "arguments": "{}"}]}});
    let got = run(Provider::OpenAi, &format!("data: {completed}\n\n")).unwrap();
    assert_eq!(got.notes[1], (0, name_complete(0, 0, "delete_repository")));
    assert!(matches!(&got.notes[2], (0, AssemblerNote::ToolCallComplete(c)) if c.name == "delete_repository"));
    // An output item added twice is a hostile stream.
    let added = json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "read_file", "arguments": ""}});
    let err = run(Provider::OpenAi, &format!("data: {added}\n\ndata: {added}\n\n")).unwrap_err();
    assert_eq!(err.to_string(), "output_index: output item added twice");
    // The arguments' done event may not name another tool.
    let done = json!({"type": "response.function_call_arguments.done", "output_index": 0, "name": "delete_repository", "arguments": "{}"});
    let err = run(Provider::OpenAi, &format!("data: {added}\n\ndata: {done}\n\n")).unwrap_err();
    assert_eq!(err.to_string(), "name: tool name differs from the one announced");
}
