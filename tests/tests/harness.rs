// Test code: a failed unwrap is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The harness proves itself here, without the Interlock filter: real Envoy proxies to the demo
//! upstream on rewritten ports, the raw client decodes what comes back, Envoy's validate mode
//! accepts the configs we run and rejects a broken one.
//!
//! Run alone: `cargo test -p interlock-tests --test harness` (after `make build`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use interlock_tests::{
    Ports, Request, Stack, StackOptions, Which, enforcer_serve_available, filter_wasm,
    render_envoy_config, send_raw, validate_envoy_config,
};

/// Say loudly that part of a test did not run, and why; never skip silently.
fn skipped(what: &str, why: &str) {
    eprintln!("\n!!!!! SKIPPED: {what}: {why} !!!!!\n");
}

/// Options for the self-test stack: no filter; the enforcer only once `interlock serve` exists.
fn self_test_options() -> StackOptions {
    let opts = StackOptions::default().without_filter_for_harness_self_test();
    if enforcer_serve_available() {
        opts
    } else {
        skipped(
            "enforcer part of the harness self-test",
            "target/release/interlock has no working `serve` subcommand yet",
        );
        opts.without_enforcer()
    }
}

#[test]
fn envoy_proxies_to_the_demo_upstream_and_it_counts() {
    let stack = Stack::start_with(self_test_options());
    for addr in [
        stack.listener(),
        stack.admin(),
        stack.enforcer(),
        stack.upstream(),
    ] {
        assert!(addr.ip().is_loopback() && addr.port() != 0);
    }
    assert_ne!(
        stack.listener().port(),
        10000,
        "ports must be rewritten, not the demo's"
    );

    let before = stack.stats();
    let resp = Request::get("/api/customers")
        .header("x-harness", "1")
        .send(stack.listener());
    assert_eq!(
        resp.status,
        200,
        "GET /api/customers through Envoy: {}",
        resp.text()
    );
    assert!(
        resp.header("server").is_some_and(|s| s.contains("envoy"))
            || resp.header("x-envoy-upstream-service-time").is_some(),
        "the answer did not come through Envoy: {:?}",
        resp.headers
    );
    let delta = Stack::stats_delta(&before, &stack.stats());
    assert_eq!(
        delta.get("http:GET /api/customers"),
        Some(&1),
        "the upstream should count exactly one GET /api/customers; delta: {delta:?}"
    );

    // Envoy's own counters see the same request.
    let routed = stack.envoy_counter("cluster.demo_upstream.upstream_rq_total");
    assert!(
        routed.is_some_and(|n| n >= 1),
        "cluster.demo_upstream.upstream_rq_total = {routed:?}"
    );
    assert_eq!(stack.envoy_counter("no.such.counter"), None);

    // A chunked request body passes through Envoy whole: the upstream parsed the JSON-RPC
    // method out of a body sent in 1-byte pieces.
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"harness","version":"0"}}}"#;
    let pieces: Vec<&[u8]> = body.chunks(16).collect();
    let before = stack.stats();
    let resp = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .send_chunked(stack.listener(), &pieces, Duration::from_millis(5));
    assert_eq!(resp.status, 200, "chunked POST /mcp: {}", resp.text());
    let delta = Stack::stats_delta(&before, &stack.stats());
    assert_eq!(delta.get("mcp:initialize"), Some(&1), "delta: {delta:?}");

    // The access log reaches the Envoy log file.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !stack.log(Which::Envoy).contains("GET /api/customers") {
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for GET /api/customers in {}:\n{}",
            stack.log_path(Which::Envoy).display(),
            stack.log_tail(Which::Envoy)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    if stack.pid(Which::Enforcer).is_some() {
        // Without the filter nothing decides, but the event API answers and the CLI can mint
        // tokens.
        let events = stack.events();
        assert!(events.is_empty(), "no filter, yet events: {events:?}");
        let token = stack.token("triage-bot", Some("alice"), Some("s-1"));
        assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    }
}

#[test]
fn drop_stops_every_process_and_removes_the_temp_dir() {
    let stack = Stack::start_with(self_test_options().without_enforcer());
    let dir = stack.dir().to_path_buf();
    let listener = stack.listener();
    let upstream = stack.upstream();
    assert!(dir.join("envoy.yaml").is_file());
    drop(stack);
    assert!(
        std::net::TcpStream::connect(listener).is_err(),
        "Envoy still listens after drop"
    );
    assert!(
        std::net::TcpStream::connect(upstream).is_err(),
        "upstream still listens after drop"
    );
    if std::env::var_os("INTERLOCK_KEEP_TMP").is_none() {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
}

/// A one-shot server that answers with `response`, written in `pieces` with pauses, so the
/// client must reassemble a response that arrives across many reads.
fn serve_once(pieces: Vec<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        for piece in pieces {
            conn.write_all(&piece).unwrap();
            conn.flush().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    addr
}

#[test]
fn raw_client_decodes_chunked_responses_split_across_reads() {
    let addr = serve_once(vec![
        b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6".to_vec(),
        b"\r\ndata: \r\n".to_vec(),
        b"b;ext=1\r\n{\"a\": true}\r\n".to_vec(),
        b"0\r\n\r\n".to_vec(),
    ]);
    let resp = send_raw(
        addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert!(resp.chunked);
    assert_eq!(resp.text(), "data: {\"a\": true}");
    assert_eq!(resp.header("CONTENT-TYPE"), Some("text/event-stream"));
}

#[test]
fn raw_client_reads_content_length_and_to_eof() {
    let addr = serve_once(vec![
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\n{\"rule\":"
            .to_vec(),
        b"\"r\"}".to_vec(),
    ]);
    let resp = send_raw(addr, &Request::get("/").to_bytes());
    assert_eq!((resp.status, resp.reason.as_str()), (403, "Forbidden"));
    assert_eq!(resp.json()["rule"], "r");
    assert_eq!(resp.headers_named("x-a"), vec!["1", "2"]);

    let addr = serve_once(vec![
        b"HTTP/1.1 200 OK\r\n\r\nuntil ".to_vec(),
        b"close".to_vec(),
    ]);
    assert_eq!(
        send_raw(addr, &Request::get("/").to_bytes()).text(),
        "until close"
    );
}

#[test]
fn validate_accepts_the_rendered_config_without_filter() {
    let opts = StackOptions::default().without_filter_for_harness_self_test();
    let yaml = render_envoy_config(&opts, &Ports::pick()).unwrap();
    let path = std::env::temp_dir().join(format!("interlock-validate-{}.yaml", std::process::id()));
    std::fs::write(&path, yaml).unwrap();
    let result = validate_envoy_config(&path);
    let _ = std::fs::remove_file(&path);
    if let Err(output) = result {
        panic!("{output}");
    }
}

#[test]
fn validate_rejects_a_broken_config() {
    let path = std::env::temp_dir().join(format!("interlock-broken-{}.yaml", std::process::id()));
    std::fs::write(&path, "static_resources:\n  no_such_field: 1\n").unwrap();
    let result = validate_envoy_config(&path);
    let _ = std::fs::remove_file(&path);
    let err = result.expect_err("Envoy accepted a config with an unknown field");
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn validate_accepts_the_demo_config_as_shipped() {
    // demo.yaml names the wasm by a path relative to the repository root, where
    // validate_envoy_config runs Envoy. `make test` builds the wasm before the tests.
    assert!(
        filter_wasm().is_file(),
        "{} is missing: run `make build` (or `make test`, which builds it first) before this test",
        filter_wasm().display()
    );
    if let Err(output) = validate_envoy_config(&interlock_tests::demo_envoy_config()) {
        panic!("{output}");
    }
}
