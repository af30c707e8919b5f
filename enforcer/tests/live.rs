//! The shipped `interlock` binary against a real `interlock serve`: policy push and show,
//! revoke, unrevoke and revocations, and what survives a restart of the daemon.

// The whole file is test code, helpers included; clippy.toml's allow-*-in-tests only covers
// `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_interlock");

const V1: &str = r#"{"version": "v1", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#;
const BAD: &str = r#"{"version": "v2", "rules": [{"id": "r", "effect": "maybe"}]}"#;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("interlock-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_policy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/demo.json").to_str().unwrap().to_owned()
}

/// A running `interlock serve`; killed if the test fails before stopping it.
struct Server {
    child: Child,
    addr: String,
    /// The admin token file the daemon created in its data directory.
    token_file: PathBuf,
    logged: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

fn spawn_serve(data_dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        // These tests are about the API: never touch the host's BPF or cgroups.
        .env("INTERLOCK_KERNEL", "off")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, stderr) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, stderr)
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let (child, stderr) = spawn_serve(data_dir, extra);
        let mut logged = Vec::new();
        let addr = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("no listening line from serve ({e}); stderr so far: {logged:?}"));
            if let Some(rest) = line.split_once("listening on http://").map(|(_, r)| r) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            logged.push(line);
        };
        Self { child, addr, token_file: data_dir.join("admin.token"), logged, stderr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn interlock(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("INTERLOCK_ENFORCER", self.url())
            .env("INTERLOCK_ADMIN_TOKEN_FILE", &self.token_file)
            .output()
            .unwrap()
    }

    fn status(&self) -> Value {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /v1/status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).unwrap()
    }

    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success());
        self.logged.extend(self.stderr.try_iter());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn push_revoke_unrevoke_and_list_survive_a_restart() {
    let dir = TempDir::new("cli");
    let data = dir.0.join("data");
    let (v1, bad) = (dir.file("v1.json", V1), dir.file("bad.json", BAD));
    let server = Server::start(&data, &[]);
    assert!(server.logged.iter().any(|l| l.contains("no policy installed")), "{:?}", server.logged);

    let out = server.interlock(&["policy", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no policy installed"), "{}", stderr(&out));

    // Invalid: refused locally, the enforcer never hears of it.
    let out = server.interlock(&["policy", "push", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("{bad}: invalid policy: $.rules[0].effect: ")), "{}", stderr(&out));
    assert_eq!(server.status()["policy_push_rejected"], 0);

    let out = server.interlock(&["policy", "push", &v1]);
    assert_eq!(stdout(&out), "installed policy \"v1\" as generation 1 (1 rules)\n");
    let shown: Value = serde_json::from_str(&stdout(&server.interlock(&["policy", "show"]))).unwrap();
    assert_eq!(shown, serde_json::from_str::<Value>(V1).unwrap());

    let out = server.interlock(&["revoke", "--session", "s-1", "--ttl", "3600", "--reason", "leaked token"]);
    let line = stdout(&out);
    assert!(line.starts_with("revoked session \"s-1\" (rv-"), "{line}");
    assert!(line.contains("expires in 1h 0m") && line.contains("reason \"leaked token\""), "{line}");
    let out = server.interlock(&["revoke", "--user", "alice/ops", "--json"]);
    let alice: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((alice["kind"].as_str(), alice["expires_unix_ms"].is_null()), (Some("user"), true));
    stdout(&server.interlock(&["revoke", "--agent", "rogue"]));

    // Exactly one principal; a ttl in range.
    for args in [
        &["revoke"][..],
        &["revoke", "--user", "a", "--session", "b"],
        &["revoke", "--user", "a", "--ttl", "0"],
        &["unrevoke"],
    ] {
        assert_eq!(server.interlock(args).status.code(), Some(2), "{args:?}");
    }

    let out = server.interlock(&["unrevoke", "--agent", "rogue"]);
    assert!(stdout(&out).starts_with("lifted the revocation of agent \"rogue\""));
    let out = server.interlock(&["unrevoke", "--agent", "rogue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("agent \"rogue\" is not revoked"), "{}", stderr(&out));

    let table = stdout(&server.interlock(&["revocations"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("KIND") && lines[0].contains("EXPIRES IN") && lines[0].ends_with("SOURCE"), "{table}");
    assert!(lines[1].starts_with("session  s-1") && lines[1].contains("leaked token") && lines[1].ends_with("cli"));
    assert!(lines[2].starts_with("user     alice/ops") && lines[2].contains("never"), "{table}");
    let before = server.status();
    assert_eq!(
        (before["version"].as_u64(), before["policy_generation"].as_u64(), before["revocations_active"].as_u64()),
        (Some(5), Some(1), Some(2))
    );
    server.stop();

    // After a restart: the same policy, the same revocations, the version where it was.
    let server = Server::start(&data, &[]);
    assert!(server.logged.iter().any(|l| l.contains("active policy \"v1\", generation 1")), "{:?}", server.logged);
    let after = server.status();
    assert_eq!((after["version"].clone(), after["revocations_active"].clone()), (before["version"].clone(), 2.into()));
    let json: Value = serde_json::from_str(&stdout(&server.interlock(&["revocations", "--json"]))).unwrap();
    let values: Vec<&str> = json["revocations"].as_array().unwrap().iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["s-1", "alice/ops"]);
    let out = server.interlock(&["unrevoke", "--user", "alice/ops"]);
    stdout(&out);
    assert_eq!(server.status()["version"], 6, "the version keeps climbing across the restart");
    assert_eq!(stdout(&server.interlock(&["revocations"])).lines().count(), 2);
}

#[test]
fn serve_seeds_the_policy_only_when_none_is_stored() {
    let dir = TempDir::new("seed");
    let data = dir.0.join("data");
    let v1 = dir.file("v1.json", V1);
    let demo = demo_policy();
    let demo_version: Value = serde_json::from_str(&std::fs::read_to_string(&demo).unwrap()).unwrap();

    let server = Server::start(&data, &["--policy", &demo]);
    assert_eq!(server.status()["policy_version"], demo_version["version"]);
    assert_eq!(server.status()["policy_generation"], 1);
    stdout(&server.interlock(&["policy", "push", &v1]));
    server.stop();

    // The pushed policy wins over the seed at the next start.
    let server = Server::start(&data, &["--policy", &demo]);
    assert!(server.logged.iter().any(|l| l.contains("not installed: the data directory already holds a policy")));
    let status = server.status();
    assert_eq!((status["policy_version"].as_str(), status["policy_generation"].as_u64()), (Some("v1"), Some(2)));
    server.stop();

    // An invalid seed refuses to start, naming the file and the JSON path.
    let bad = dir.file("bad.json", BAD);
    let (mut child, stderr) = spawn_serve(&dir.0.join("fresh"), &["--policy", &bad]);
    let exit = child.wait().unwrap();
    let logged: Vec<String> = stderr.iter().collect();
    assert_eq!(exit.code(), Some(1), "{logged:?}");
    assert!(logged.iter().any(|l| l.contains(&format!("{bad}: invalid policy: $.rules[0].effect"))), "{logged:?}");
}

#[test]
fn a_corrupt_revocations_file_refuses_to_start() {
    let dir = TempDir::new("corrupt");
    let server = Server::start(&dir.0, &[]);
    stdout(&server.interlock(&["revoke", "--user", "alice"]));
    server.stop();
    let path = dir.0.join("revocations.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();

    let (mut child, stderr) = spawn_serve(&dir.0, &[]);
    let exit = child.wait().unwrap();
    let logged: Vec<String> = stderr.iter().collect();
    assert_eq!(exit.code(), Some(1), "{logged:?}");
    assert!(logged.iter().any(|l| l.contains(&path.display().to_string()) && l.contains("corrupt")), "{logged:?}");
}
