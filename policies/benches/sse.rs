//! SSE parsing and tool-call assembly throughput in MB/s over a 16 KiB streamed LLM response.
//!
//! Groups (each with `Throughput::Bytes`, so criterion prints MB/s), one per provider's stream
//! shape (OpenAI chat completion chunks, Anthropic message events): prose in small text deltas,
//! then a tool call whose name and arguments arrive in fragments, as the demo upstream streams.
//!
//! Each group runs: `parse_512B_chunks` (SseParser alone, fed 512-byte chunks, as Envoy hands a
//! body over), `parse_assemble_512B_chunks` (parser plus ToolCallAssembler: what the filter does
//! per stream), and `parse_assemble_1B_chunks` (the worst case for the chunk bookkeeping).
//!
//! Run: `cargo bench -p interlock-policies --bench sse` (add `-- --quick` for a short run).

// Benchmark setup must stop loudly when a stream does not assemble as it should.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{Criterion, Throughput};
    use interlock_policies::llm::{AssemblerNote, Provider, ToolCallAssembler};
    use interlock_policies::sse::SseParser;
    use serde_json::{Value, json};

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        targets = sse
    }

    const SIZE: usize = 16 * 1024;
    const WORDS: &str = "The function reads the configuration, validates each field and returns a typed error \
        naming the offending path; callers retry on a transient error after 250 ms. ";

    fn openai_chunk(delta: Value, finish: Value) -> String {
        let chunk = json!({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        format!("data: {chunk}\n\n")
    }

    fn anthropic_event(event: Value) -> String {
        let kind = event["type"].as_str().expect("typed").to_owned();
        format!("event: {kind}\ndata: {event}\n\n")
    }

    /// About `SIZE` bytes of text deltas (a few words each), then one tool call in fragments.
    fn stream(provider: Provider) -> Vec<u8> {
        let words: Vec<&str> = WORDS.split_inclusive(' ').collect();
        let mut out = String::new();
        match provider {
            Provider::OpenAi => {
                out.push_str(&openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null));
                let mut i = 0;
                while out.len() < SIZE - 1024 {
                    let piece: String = words.iter().cycle().skip(i).take(3).copied().collect();
                    out.push_str(&openai_chunk(json!({ "content": piece }), Value::Null));
                    i += 3;
                }
                out.push_str(&openai_chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "read", "arguments": ""}}]}),
                    Value::Null,
                ));
                out.push_str(&openai_chunk(json!({"tool_calls": [{"index": 0, "function": {"name": "_file"}}]}), Value::Null));
                for fragment in ["{\"path\":", "\"config/", ".env\"}"] {
                    out.push_str(&openai_chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}), Value::Null));
                }
                out.push_str(&openai_chunk(json!({}), json!("tool_calls")));
                out.push_str("data: [DONE]\n\n");
            }
            Provider::Anthropic => {
                out.push_str(&anthropic_event(json!({"type": "message_start", "message": {
                    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude", "content": [],
                    "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}})));
                out.push_str(&anthropic_event(json!({"type": "ping"})));
                out.push_str(&anthropic_event(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ));
                let mut i = 0;
                while out.len() < SIZE - 1024 {
                    let piece: String = words.iter().cycle().skip(i).take(3).copied().collect();
                    out.push_str(&anthropic_event(
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                    ));
                    i += 3;
                }
                out.push_str(&anthropic_event(json!({"type": "content_block_stop", "index": 0})));
                out.push_str(&anthropic_event(json!({"type": "content_block_start", "index": 1, "content_block":
                    {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}})));
                for fragment in ["{\"path\":", "\"config/", ".env\"}"] {
                    out.push_str(&anthropic_event(json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": fragment}})));
                }
                out.push_str(&anthropic_event(json!({"type": "content_block_stop", "index": 1})));
                out.push_str(&anthropic_event(json!({"type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 900}})));
                out.push_str(&anthropic_event(json!({"type": "message_stop"})));
            }
        }
        out.into_bytes()
    }

    /// Parses and assembles; returns the number of notes so the work cannot be optimized away.
    fn parse_assemble(provider: Provider, body: &[u8], chunk: usize) -> usize {
        let mut parser = SseParser::new();
        let mut assembler = ToolCallAssembler::new(provider);
        let mut notes = 0;
        for piece in body.chunks(chunk) {
            for event in parser.feed(piece).expect("valid SSE") {
                notes += assembler.feed(&event).expect("valid stream").len();
            }
        }
        for event in parser.finish().expect("valid SSE") {
            notes += assembler.feed(&event).expect("valid stream").len();
        }
        notes + assembler.finish().expect("complete").len()
    }

    fn sse(c: &mut Criterion) {
        for (name, provider) in [("openai_stream", Provider::OpenAi), ("anthropic_stream", Provider::Anthropic)] {
            let body = stream(provider);
            // The stream must hold what the benchmark claims: one tool call, assembled.
            let mut parser = SseParser::new();
            let mut assembler = ToolCallAssembler::new(provider);
            let mut calls = Vec::new();
            for event in parser.feed(&body).expect("valid SSE") {
                for note in assembler.feed(&event).expect("valid stream") {
                    if let AssemblerNote::ToolCallComplete(call) = note {
                        calls.push(call);
                    }
                }
            }
            assert_eq!(calls.len(), 1, "{name}");
            assert_eq!(calls[0].name, "read_file");
            assert_eq!(calls[0].arguments, Some(json!({"path": "config/.env"})));
            assert!((SIZE - 1024..SIZE + 2048).contains(&body.len()), "{name}: {} bytes", body.len());

            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function("parse_512B_chunks", |b| {
                b.iter(|| {
                    let mut parser = SseParser::new();
                    let mut events = 0;
                    for piece in black_box(&body).chunks(512) {
                        events += parser.feed(piece).expect("valid SSE").len();
                    }
                    events + parser.finish().expect("valid SSE").len()
                })
            });
            group.bench_function("parse_assemble_512B_chunks", |b| b.iter(|| parse_assemble(provider, black_box(&body), 512)));
            group.bench_function("parse_assemble_1B_chunks", |b| b.iter(|| parse_assemble(provider, black_box(&body), 1)));
            group.finish();
        }
    }
}
