//! Runs the decision corpus (`tests/corpus/*.json`) through the engine: natively under `cargo
//! test`, and compiled to wasm under wasm-bindgen-test's Node runner (`make test-wasm`). The same
//! files run through real Envoy in `tests/tests/corpus_envoy.rs`.
//!
//! Files are embedded with `include_str!` so the wasm build needs no filesystem; a native test
//! checks that every file in the directory is listed here.

// Test support: a broken corpus file should stop the run with its name.
#![allow(clippy::panic)]

use interlock_policies::corpus::CorpusFile;
use interlock_policies::Engine;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const CORPUS: &[(&str, &str)] = &[("demo.json", include_str!("corpus/demo.json"))];
const POLICIES: &[(&str, &str)] = &[("examples/demo.json", include_str!("../examples/demo.json"))];

fn run_file(name: &str, text: &str) -> Vec<String> {
    let file: CorpusFile = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let policy = POLICIES
        .iter()
        .find(|(p, _)| *p == file.policy)
        .unwrap_or_else(|| panic!("{name}: policy {} is not embedded in POLICIES", file.policy))
        .1;
    let engine = Engine::from_json(policy).unwrap_or_else(|e| panic!("{name}: {}: {e}", file.policy));
    let mut failures = Vec::new();
    for case in &file.cases {
        let req = case.request.to_http_request();
        let body = case.request.body_bytes();
        let got = engine.evaluate(&req, body.as_deref()).decision;
        let e = &case.expect;
        if (got.action, got.status, got.rule.as_str(), got.mode) != (e.action, e.status, e.rule.as_str(), e.mode) {
            failures.push(format!(
                "{name}: {:?}: expected {:?} {} {} {:?}, got {:?} {} {} {:?} ({})",
                case.name, e.action, e.status, e.rule, e.mode, got.action, got.status, got.rule, got.mode, got.reason
            ));
        }
    }
    failures
}

#[test]
fn corpus_decisions_match() {
    let failures: Vec<String> = CORPUS.iter().flat_map(|(n, t)| run_file(n, t)).collect();
    assert!(failures.is_empty(), "{} corpus case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn every_corpus_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "list every file of tests/corpus in CORPUS");
}
