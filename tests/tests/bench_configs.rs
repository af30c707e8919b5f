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
