//! How fast the engine inspects a streamed model answer: a ~58 KB chat completion stream of 457
//! frames (10-character text deltas, nothing sensitive in them) fed in 1 KiB chunks, as `triage-bot`
//! on `/v1/chat/completions`, 300 times.
//!
//! `cargo run --release -p interlock-policies --example stream_throughput [policy.json]`
//! (default: the demo policy, whose `redact-pii-from-llm` rule holds frames for in-frame
//! redaction).

use std::error::Error;
use std::time::Instant;

use interlock_policies::inspect::StreamStep;
use interlock_policies::ratelimit::{SharedStore, StoreError};
use interlock_policies::{Engine, HttpRequest, VerifiedIdentity};

/// Shared data for tool pins: a model's answer never consults them.
struct NoPins;

impl SharedStore for NoPins {
    fn get(&mut self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(None)
    }
    fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.json").to_owned());
    let engine = Engine::from_json(&std::fs::read_to_string(&path)?)?;
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string().into_bytes();
    let request = HttpRequest {
        method: "POST".into(),
        authority: "localhost".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        end_of_stream: false,
        identity: VerifiedIdentity { jwt_agent: Some("triage-bot".into()), jwt_session: Some("s".into()), ..Default::default() },
    };
    let facts = engine.evaluate(&request, Some(&body)).facts;
    let text = "the quick brown fox jumps over the lazy dog and then some more words follow ".repeat(60);
    let chars: Vec<char> = text.chars().collect();
    let mut stream = String::new();
    for piece in chars.chunks(10) {
        let delta: String = piece.iter().collect();
        let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": null}]});
        stream.push_str(&format!("data: {chunk}\n\n"));
    }
    stream.push_str("data: [DONE]\n\n");
    let bytes = stream.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(1024).collect();
    let rounds: u32 = 300;
    let start = Instant::now();
    let mut delivered: usize = 0;
    for _ in 0..rounds {
        let mut s = engine.response_stream(&facts);
        for (i, chunk) in chunks.iter().enumerate() {
            match engine.feed_response_stream(&mut s, &facts, chunk, i + 1 == chunks.len(), &mut NoPins) {
                StreamStep::Deliver(out) => delivered += out.len(),
                StreamStep::Block(eval) => return Err(format!("blocked: {}", eval.decision.reason).into()),
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if delivered != bytes.len() * rounds as usize {
        return Err("not everything was delivered".into());
    }
    println!(
        "{path}: {} bytes, {} frames per stream: {:.1} MB/s, {:.0} us per stream",
        bytes.len(),
        chars.len().div_ceil(10) + 1,
        (bytes.len() as f64) * f64::from(rounds) / secs / 1e6,
        secs / f64::from(rounds) * 1e6
    );
    Ok(())
}
