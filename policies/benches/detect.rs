//! Detector throughput in MB/s over a 16 KiB LLM-response-like JSON document.
//!
//! Groups (each with `Throughput::Bytes`, so criterion prints MB/s):
//! - `clean`: no sensitive data (prose and code in a chat completion): the common case, where
//!   the keyword automaton keeps most regexes from running.
//! - `findings`: the same document with a secret of several kinds, cards, an IBAN and emails.
//!
//! Each group runs three ways: `scan_bytes` on the raw body, `scan_json` on the parsed value
//! (parse not timed), and a `StreamScanner` fed the body in 512-byte chunks.
//!
//! Run: `cargo bench -p interlock-policies --bench detect` (add `-- --quick` for a short run).

// Benchmark setup must stop loudly when a document does not have the findings it should.
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
    use interlock_policies::detect::{Detector, StreamScanner};

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        targets = detect
    }

    const SIZE: usize = 16 * 1024;

    /// A chat completion whose content is prose and code, padded to `SIZE` bytes of JSON.
    fn document(with_findings: bool) -> Vec<u8> {
        let paragraph = "The function reads the configuration, validates each field and returns a \
            typed error naming the offending path. ```rust\nfn load(path: &Path) -> Result<Config, Error> \
            {\n    let text = std::fs::read_to_string(path)?;\n    serde_json::from_str(&text)\n}\n``` \
            Callers retry on a transient error (HTTP 503) after 250 ms and give up after 3 attempts. ";
        // Secret-shaped values are assembled here so that no literal sits in the source.
        let findings = [
            format!("aws_access_key_id = {}{} ", "AKIA", "Z7Q3MXKD4PLW2RYT"),
            format!("token {}_{} ", "ghp", "Xk2Lm9Qp4Rs7Tv1Wy3Za5Bc8De0Fg6Hj2Kn4"),
            "card 4111 1111 1111 1111 and 5500-0055-5555-5559 ".to_string(),
            "wire to DE44 5001 0517 5407 3249 31 ".to_string(),
            "contact jane.doe@example.com or ops@corp.example.org ".to_string(),
            "ssn 536-22-4875 ".to_string(),
        ];
        let mut content = String::new();
        let mut i = 0;
        while content.len() < SIZE - 400 {
            content.push_str(paragraph);
            if with_findings && i % 3 == 0 {
                content.push_str(&findings[(i / 3) % findings.len()]);
            }
            i += 1;
        }
        let doc = serde_json::json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "model": "gpt-4o",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 812, "completion_tokens": 3900 }
        });
        let mut bytes = serde_json::to_vec(&doc).expect("serializes");
        bytes.truncate(bytes.len().min(SIZE + 1024));
        bytes
    }

    fn detect(c: &mut Criterion) {
        let detector = Detector::new().expect("detectors compile");
        for (name, with) in [("clean", false), ("findings", true)] {
            let body = document(with);
            let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            let found = detector.scan_bytes(&body).expect("under the cap");
            assert_eq!(found.is_empty(), !with, "{name}: {:?}", found.summary());
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function("scan_bytes", |b| b.iter(|| detector.scan_bytes(black_box(&body)).expect("ok")));
            group.bench_function("scan_json", |b| b.iter(|| detector.scan_json(black_box(&value)).expect("ok")));
            group.bench_function("stream_512B_chunks", |b| {
                b.iter(|| {
                    let mut s = StreamScanner::default();
                    for chunk in body.chunks(512) {
                        black_box(s.push(&detector, chunk).expect("ok"));
                    }
                    black_box(s.finish(&detector).expect("ok"))
                })
            });
            group.finish();
        }
    }
}
