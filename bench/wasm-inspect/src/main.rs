//! Inspection throughput where the filter runs it: compiled to wasm32-wasip1 and executed by V8
//! (Node's WASI, `scripts/wasm-inspect.mjs`), the same engine Envoy's wasm runtime uses. Natively
//! it runs too, for the ratio. Criterion does not run on wasm, so this is a plain timed loop:
//! a warm-up, then rounds of a fixed byte budget, reporting the median MB/s of the rounds.
//!
//! Measured over a 16 KiB LLM response (OpenAI chat completion) with no findings and with some,
//! and over a markdown answer (line breaks, which JSON escapes as `\n`, code, typographic quotes
//! and dashes: what the normalizer has to look at): the detectors on the raw body (`scan_bytes`)
//! and on its parsed JSON (`scan_json`, parse timed too, as the filter does it), and the SSE
//! parser with the tool-call assembler over the same content streamed in 512-byte chunks.
//!
//! Also the two bodies of a governed MCP call (1 KB each), parsed into the engine's two JSON trees
//! and scanned, side by side (`json::parse_strict`'s `Value`, `json_doc::parse_doc`'s `Doc`).
//!
//! The machine is shared: each line gives the median of 11 rounds and the range; the best round
//! is the closest to the code's own speed.

// A benchmark stops loudly when its input is not what it claims.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use interlock_policies::detect::Detector;
use interlock_policies::llm::{Provider, ToolCallAssembler};
use interlock_policies::sse::SseParser;

const SIZE: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Doc {
    Clean,
    Findings,
    Markdown,
}

fn prose(doc: Doc) -> String {
    let with_findings = doc == Doc::Findings;
    let mut text = String::new();
    let mut i = 0;
    while text.len() < SIZE - 600 {
        if doc == Doc::Markdown {
            text.push_str(&format!(
                "### Step {i}\n\nThe loader reads `config.toml`, validates each field \u{2014} \u{201c}port\u{201d}, \u{201c}timeout_ms\u{201d} (250 by default) \u{2014} and returns a typed error naming it.\n\n```rust\nlet cfg = Config::load(path)?; // retries 3 times on HTTP 503\n```\n"
            ));
            i += 1;
            continue;
        }
        text.push_str(&format!(
            "Step {i}: the function reads the configuration, validates each field and returns a typed error naming the field. "
        ));
        if with_findings && i % 40 == 7 {
            // Built at run time: no secret-shaped literal in the source.
            text.push_str(&format!("key AKIA{} and card 4111 1111 1111 1111 and mail ada@lovelace.dev. ", "Z7Q3MXKD4PLW2RYT"));
        }
        i += 1;
    }
    text
}

fn completion(doc: Doc) -> Vec<u8> {
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": prose(doc)}}]
    })
    .to_string()
    .into_bytes()
}

fn stream(doc: Doc) -> Vec<u8> {
    let text = prose(doc);
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(200) {
        let piece = String::from_utf8_lossy(chunk);
        let frame = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "mock",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        out.push_str(&format!("data: {frame}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// A 1 KB MCP `tools/call` (as `make bench`'s `mcp` mix sends) and a 1 KB answer to it.
fn mcp_bodies() -> (Vec<u8>, Vec<u8>) {
    let text = "The retry budget is spent before the circuit opens, so the client sees the timeout \"upstream\" instead of a fast 503. ".repeat(8);
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "create_comment", "arguments": {"repo": "acme/api", "issue": 42, "body": text}}});
    let answer = serde_json::json!({"jsonrpc": "2.0", "id": 1,
        "result": {"content": [{"type": "text", "text": format!("Comment created on acme/api#42: {text}")}], "isError": false}});
    (call.to_string().into_bytes(), answer.to_string().into_bytes())
}

/// Median MB/s of 11 rounds, each running `f` over `input` until `budget` bytes are done.
fn measure(name: &str, input: &[u8], mut f: impl FnMut(&[u8]) -> usize) {
    const ROUNDS: usize = 11;
    let budget = 8 << 20;
    for _ in 0..20 {
        black_box(f(black_box(input)));
    }
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut done = 0usize;
        while done < budget {
            black_box(f(black_box(input)));
            done += input.len();
        }
        let secs = start.elapsed().as_secs_f64();
        rates.push(done as f64 / secs / 1e6);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[ROUNDS / 2];
    // For small documents the time per document says more than the rate.
    let per_doc = if input.len() < 4096 { format!("  {:.2} µs per document", input.len() as f64 / median) } else { String::new() };
    println!("{name:<50} {median:>8.1} MB/s  (rounds {:.1}..{:.1}){per_doc}", rates[0], rates[ROUNDS - 1]);
}

fn main() {
    let detector = Detector::new().expect("the detectors compile");
    let target = if cfg!(target_arch = "wasm32") { "wasm32 (V8)" } else { "native" };
    println!("inspection throughput, {target}, 16 KiB documents");
    for doc in [Doc::Clean, Doc::Findings, Doc::Markdown] {
        let findings = doc == Doc::Findings;
        let label = match doc {
            Doc::Clean => "clean",
            Doc::Findings => "with findings",
            Doc::Markdown => "markdown, clean",
        };
        let body = completion(doc);
        let expect = detector.scan_bytes(&body).expect("in limits").len();
        assert_eq!(expect > 0, findings, "the {label} document has the findings it claims");
        measure(&format!("scan_bytes, {label}"), &body, |b| detector.scan_bytes(b).map(|f| f.len()).unwrap_or(0));
        measure(&format!("parse + scan_json, {label}"), &body, |b| {
            let v = interlock_policies::json::parse_strict(b, 64).expect("valid");
            detector.scan_json(&v).map(|f| f.len()).unwrap_or(0)
        });
        let sse = stream(doc);
        measure(&format!("SSE parse + assemble (512 B chunks), {label}"), &sse, |b| {
            let mut parser = SseParser::new();
            let mut assembler = ToolCallAssembler::new(Provider::OpenAi);
            let mut notes = 0;
            for chunk in b.chunks(512) {
                for event in parser.feed(chunk).expect("valid stream") {
                    notes += assembler.feed(&event).map(|n| n.len()).unwrap_or(0);
                }
            }
            notes
        });
    }
    // The governed MCP call's two bodies, parsed into each of the engine's two trees and scanned
    // as the filter does: `Value` (serde_json's, sorted maps, owned strings; the request and
    // answer paths before the borrowed tree) and `Doc` (what they use now), side by side.
    println!("inspection throughput, {target}, MCP bodies (1 KB): strict parse into each tree, then the JSON scan");
    let (call, answer) = mcp_bodies();
    for (label, body) in [("tools/call", &call), ("answer", &answer)] {
        let size = body.len();
        measure(&format!("{label} {size} B: parse_strict (Value) + scan_json"), body, |b| {
            let v = interlock_policies::json::parse_strict(b, 32).expect("valid");
            detector.scan_json(&v).map(|f| f.len()).unwrap_or(0)
        });
        measure(&format!("{label} {size} B: parse_doc (Doc) + scan_json"), body, |b| {
            let v = interlock_policies::json_doc::parse_doc(b, 32).expect("valid");
            detector.scan_json(&v).map(|f| f.len()).unwrap_or(0)
        });
    }
}
