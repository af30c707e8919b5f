// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! The benchmark configurations (`envoy-config/bench/*.yaml`, run by `make bench`) pass
//! `envoy --mode validate`, Interlock's with its embedded policy loaded by the release filter.
//! `deploy.rs` validates `envoy-config/*.yaml` but not this subdirectory; the generated variants
//! (policies of 10 ... 100,000 rules, RBAC of 100 and 1,000 policies) are validated by
//! `scripts/bench.py` itself, before it times anything.
//!
//! Run alone: `cargo test -p interlock-tests --test bench_configs` (after `make build`).

use std::fs;
use std::path::PathBuf;

use interlock_tests::{filter_wasm, repo_root, require_artifact, target_dir, validate_envoy_config};

#[test]
fn every_bench_config_passes_envoy_validate() {
    require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
    let dir = repo_root().join("envoy-config/bench");
    let mut configs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    configs.sort();
    for expected in ["bare", "jwt", "minimal-wasm", "rbac", "lua", "ext-authz", "buffer", "jwt-buffer", "interlock"] {
        assert!(
            configs.contains(&dir.join(format!("{expected}.yaml"))),
            "envoy-config/bench/{expected}.yaml is missing from {configs:?}"
        );
    }
    // The minimal filter is a bench-only artifact that `make build` does not produce; `make bench`
    // builds it and validates this config too. Say so rather than skip silently.
    let minimal = target_dir().join("wasm32-wasip1/release/interlock_bench_minimal_filter.wasm");
    if !minimal.is_file() {
        eprintln!(
            "SKIPPED: envoy-config/bench/minimal-wasm.yaml: {} not built (`make bench` builds and validates it)",
            minimal.display()
        );
        configs.retain(|p| !p.ends_with("minimal-wasm.yaml"));
    }
    // In parallel: each validate is a separate Envoy process, most of the time spent starting.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| s.spawn(move || validate_envoy_config(c).err().map(|e| format!("{}: {e}", c.display()))))
            .collect();
        handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} bench configs fail validation:\n{}",
        failures.len(),
        configs.len(),
        failures.join("\n\n")
    );
}

/// The `llm16k` mix's response: a 16 KiB OpenAI chat completion that every bench config serves on
/// `/v1/chat/completions`, with nothing in it the demo policy's data rules would act on (so the
/// timed requests measure a scan that lets the response through unchanged, and are answered 200).
#[test]
fn llm16k_response_is_a_clean_16_kib_chat_completion_served_by_every_config() {
    let path = repo_root().join("envoy-config/bench/llm16k-response.json");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (scripts/bench.py writes it)", path.display()));
    assert_eq!(bytes.len(), 16 * 1024, "the llm16k response must be exactly 16 KiB");
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["object"], "chat.completion");
    let content = doc["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.len() > 15_000, "the content is most of the document: {}", content.len());
    let detector = interlock_policies::detect::Detector::new().unwrap();
    assert!(detector.scan_bytes(&bytes).unwrap().is_empty(), "the llm16k response must hold no sensitive data");
    assert!(detector.scan_json(&doc).unwrap().is_empty());
    for entry in fs::read_dir(repo_root().join("envoy-config/bench")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let yaml = fs::read_to_string(&p).unwrap();
            assert!(
                yaml.contains(r#"- match: { path: "/v1/chat/completions" }"#)
                    && yaml.contains("body: { filename: envoy-config/bench/llm16k-response.json }")
                    && yaml.contains("max_direct_response_body_size_bytes: 65536"),
                "{} does not serve the llm16k response",
                p.display()
            );
        }
    }
}
