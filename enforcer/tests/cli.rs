//! The shipped `interlock` binary, end to end: the daemon receives a batch over HTTP, keeps it
//! across a restart, `interlock events` shows it, `interlock check` refuses a bad policy.

// The whole file is test code, helpers included; clippy.toml's allow-*-in-tests only covers
// `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_interlock");

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("interlock-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `interlock serve`; killed if the test fails before stopping it.
struct Server {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // These tests are about the API: never touch the host's BPF or cgroups.
            .env("INTERLOCK_KERNEL", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain stderr on a thread so the daemon never blocks on a full pipe.
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("no listening line from serve ({e}); stderr so far: {seen:?}"));
            if let Some(rest) = line.split_once("listening on http://").map(|(_, r)| r) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            seen.push(line);
        };
        Self { child, addr, stderr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, then the exit status and what it logged meanwhile.
    fn stop(mut self) -> (bool, Vec<String>) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        let logged: Vec<String> = self.stderr.try_iter().collect();
        (exit.success(), logged)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, "")
}

/// [`http`] with extra header lines (each ending in CRLF).
fn http_with(addr: &str, method: &str, path: &str, body: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn event(id: &str, tool: &str) -> String {
    serde_json::json!({
        "decision_id": id,
        "time_unix_ms": 1_718_000_000_000u64,
        "policy_version": "demo-1",
        "rule": "deny-delete-repository",
        "action": "deny",
        "status": 403,
        "mode": "enforce",
        "reason": "delete_repository is denied for everyone",
        "identity": {"agent": "triage-bot", "user": "alice", "session": "s-1"},
        "request": {"method": "POST", "authority": "127.0.0.1", "path": "/mcp", "governed": "mcp",
                    "protocol": "mcp", "calls": [{"method": "tools/call", "tool": tool, "has_id": true}]},
        "worker": "node-1/0"
    })
    .to_string()
}

fn interlock(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("INTERLOCK_ENFORCER").env_remove("INTERLOCK_ADMIN_TOKEN_FILE").output().unwrap()
}

/// The admin token file the daemon created in `data_dir`.
fn token_file(data_dir: &Path) -> String {
    data_dir.join("admin.token").to_str().unwrap().to_owned()
}

#[test]
fn serve_receives_a_batch_and_events_shows_it_across_a_restart() {
    let dir = TempDir::new("serve");
    let server = Server::start(&dir.0);
    let url = server.url();

    let (status, body) = http(&server.addr, "GET", "/healthz", "");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let batch = format!(
        "{}\n{{\"decision_id\":\"broken\"}}\n{}\n",
        event("dec-1", "delete_repository"),
        event("dec-2", "read_file")
    );
    let (status, body) = http(&server.addr, "POST", "/v1/events", &batch);
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(2), Some(1)));
    assert_eq!(report["errors"][0]["line"], 2);

    // The event log is for operators: without the admin token, 401 and a message that says
    // where the token is.
    let (status, body) = http(&server.addr, "GET", "/v1/events", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin token"), "{body}");
    let out = interlock(&["events", "--no-follow", "--json", "--enforcer", &url]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin token") && stderr.contains("--admin-token-file"), "{stderr}");
    // Following gives up too: retrying will not make a refused token good.
    let mut follow = Command::new(BIN)
        .args(["events", "--enforcer", &url])
        .env_remove("INTERLOCK_ADMIN_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = follow.kill();
            panic!("`interlock events` kept retrying a 401");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(1));
    // The daemon made the token owner-only.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(token_file(&dir.0)).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let out = interlock(&["events", "--no-follow", "--json", "--enforcer", &url, "--admin-token-file", &token_file(&dir.0)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(u64, &str)> =
        records.iter().map(|r| (r["seq"].as_u64().unwrap(), r["event"]["decision_id"].as_str().unwrap())).collect();
    assert_eq!(seen, [(1, "dec-1"), (2, "dec-2")]);

    // The env var names the enforcer too; the human form shows who called what.
    let out = Command::new(BIN)
        .args(["events", "--no-follow"])
        .env("INTERLOCK_ENFORCER", &url)
        .env("INTERLOCK_ADMIN_TOKEN_FILE", token_file(&dir.0))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("2024-06-10T06:13:20.000Z dec-1 deny 403 enforce rule=deny-delete-repository"),
        "{first}"
    );
    assert!(first.contains("triage-bot/alice/s-1 POST 127.0.0.1/mcp calls=tools/call:delete_repository"), "{first}");

    let (graceful, logged) = server.stop();
    assert!(graceful, "serve exits 0 on SIGTERM; logged {logged:?}");
    assert!(logged.iter().any(|l| l.contains("SIGTERM")), "{logged:?}");

    // The log survives the restart and seq continues where it stopped.
    let server = Server::start(&dir.0);
    let (status, body) = http(&server.addr, "POST", "/v1/events", &event("dec-3", "get_issue"));
    assert_eq!(status, 200, "{body}");
    let token = std::fs::read_to_string(token_file(&dir.0)).unwrap();
    let bearer = format!("Authorization: Bearer {}\r\n", token.trim());
    let (status, body) = http_with(&server.addr, "GET", "/v1/events?decision_id=dec-3", "", &bearer);
    assert_eq!(status, 200, "the token survives the restart: {body}");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["seq"], 3);
    let out = interlock(&[
        "events", "--no-follow", "--json", "--after", "1", "--enforcer", &server.url(), "--admin-token-file", &token_file(&dir.0),
    ]);
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["decision_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, ["dec-2", "dec-3"]);
}

#[test]
fn events_without_an_enforcer_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = interlock(&["events", "--no-follow", "--enforcer", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the enforcer"));
}

#[test]
fn check_names_the_json_path_of_a_bad_policy() {
    let dir = TempDir::new("check");
    let bad = dir.0.join("bad.json");
    std::fs::write(&bad, r#"{"version": "x", "rules": [{"id": "r", "effect": "maybe"}]}"#).unwrap();
    let out = interlock(&["check", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}: invalid policy: ", bad.display())), "{stderr}");
    assert!(stderr.contains("$.rules[0].effect"), "{stderr}");

    let good = dir.0.join("good.json");
    std::fs::write(
        &good,
        r#"{"version": "v9", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#,
    )
    .unwrap();
    let out = interlock(&["check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}: ok (policy version v9, 1 rules)\n", good.display()));

    let out = interlock(&["check", dir.0.join("missing.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));

    assert_eq!(interlock(&["check"]).status.code(), Some(2), "usage error");
}

#[test]
fn token_prints_a_signed_jwt() {
    let out = interlock(&["token", "--agent", "triage-bot", "--user", "alice", "--session", "s-1", "--ttl", "60"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jwt = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<&str> = jwt.trim_end().split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    assert!(parts.iter().all(|p| !p.is_empty()));

    let out = interlock(&["token", "--agent", "a", "--key", "/nonexistent/key.pem"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key.pem"));
}
