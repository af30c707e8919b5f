// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! Kernel enforcement end to end, on the real kernel: a client runs as a managed workload
//! (`interlock exec`, its own fresh cgroup), keeps a connection open through real Envoy with the
//! release filter, and calls `delete_repository` on it. The demo rule terminates the connection
//! and quarantines the workload for 30 s: the test sees the connection reset (not just the 403),
//! new connects from the workload refused while the host's still work, connects allowed again
//! after `interlock release`, the receipt with its measured delay and refusal count, the chain
//! verify, and a tampered copy fail naming the line. Every cgroup, program and pin it creates is
//! removed at the end, and checked gone.
//!
//! Needs root and BPF (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for cgroups and bpffs); elsewhere
//! each test prints `SKIPPED: <reason>` and passes.
//!
//! Run alone: `cargo test -p interlock-tests --test kernel_e2e -- --nocapture` (after
//! `make build`); the delay measurement prints its median.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interlock_tests::{Request, Stack, StackOptions, interlock_bin};
use serde_json::{Value, json};

const PROBE: &str = env!("CARGO_BIN_EXE_conn-probe");
const EPERM: i32 = 1;

/// Why kernel tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    if uid.as_deref() != Some("0") {
        return Some("not root (kernel enforcement needs CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)".to_owned());
    }
    if cgroup2_mount().is_none() {
        return Some("no cgroup v2 mount".to_owned());
    }
    // Does BPF work? Ask the real enforcer to start with kernel enforcement required.
    let scratch = Scratch::new("probe");
    // The enforcer sets the kernel side up before it listens; a port that is taken makes it
    // exit right after, with the kernel line already printed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(interlock_bin())
        .args(["serve", "--kernel", "on", "--cleanup-on-exit", "--listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--data-dir")
        .arg(scratch.data_dir())
        .arg("--cgroup-root")
        .arg(&scratch.root)
        .arg("--bpf-pin-dir")
        .arg(&scratch.pins)
        .stdin(Stdio::null())
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string());
    drop(scratch);
    if text.contains("kernel enforcement required") || !text.contains("kernel enforcement ON") {
        return Some(format!("BPF unavailable: {}", text.lines().last().unwrap_or("").trim()));
    }
    None
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

macro_rules! skip_unless_kernel {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("SKIPPED: {}: {reason}", module_path!());
            println!("SKIPPED: {reason}");
            return;
        }
    };
}

/// A cgroup root and a bpffs pin directory of this test's own; removes both (and checks).
struct Scratch {
    root: PathBuf,
    pins: PathBuf,
    data: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let unique = format!("interlock-test-{}-{name}", std::process::id());
        Scratch {
            root: cgroup2_mount().unwrap().join(&unique),
            pins: Path::new("/sys/fs/bpf").join(&unique),
            data: std::env::temp_dir().join(unique),
        }
    }

    fn data_dir(&self) -> &Path {
        &self.data
    }

    fn enforcer_args(&self) -> Vec<String> {
        vec![
            "--kernel".into(),
            "on".into(),
            "--cgroup-root".into(),
            self.root.display().to_string(),
            "--bpf-pin-dir".into(),
            self.pins.display().to_string(),
            "--cleanup-on-exit".into(),
        ]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        let _ = std::fs::remove_dir_all(&self.data);
        // Pins are removed by the enforcer (--cleanup-on-exit); a leftover is a bug, but the host
        // must not keep it either.
        if self.pins.exists() {
            let _ = std::fs::remove_dir_all(&self.pins);
        }
    }
}

/// The probe, running as a workload.
struct Probe {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Probe {
    fn start(root: &Path, workload: &str, addr: std::net::SocketAddr) -> Probe {
        Probe::start_in(None, root, workload, addr)
    }

    /// The probe as a workload whose process runs in the network namespace `netns` (a file, as
    /// `ip netns` keeps them), the way a pod's processes run in the pod's.
    fn start_in(netns: Option<&Path>, root: &Path, workload: &str, addr: std::net::SocketAddr) -> Probe {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(interlock_bin());
                c
            }
            None => Command::new(interlock_bin()),
        };
        let mut child = command
            .args(["exec", "--workload", workload, "--cgroup-root"])
            .arg(root)
            .arg("--")
            .arg(PROBE)
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Probe { child, stdin, lines }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.lines.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| panic!("probe gave no answer to {command:?}: {e}"))
    }

    fn send(&mut self, req: &Request) -> (u16, Value) {
        self.try_send(req).unwrap_or_else(|answer| panic!("{answer}"))
    }

    /// The answer, or the probe's error line when the connection died first.
    fn try_send(&mut self, req: &Request) -> Result<(u16, Value), String> {
        let hex: String = req.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let answer = self.ask(&format!("send {hex}"));
        let parts: Vec<&str> = answer.splitn(3, ' ').collect();
        if parts[0] != "status" {
            return Err(answer);
        }
        let body: Vec<u8> =
            (0..parts[2].len() / 2).map(|i| u8::from_str_radix(&parts[2][2 * i..2 * i + 2], 16).unwrap()).collect();
        Ok((parts[1].parse().unwrap(), serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (thread name, scheduling policy number) of every thread of `pid`, from /proc.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_owned();
        let sched = std::fs::read_to_string(task.path().join("sched")).unwrap_or_default();
        let policy = sched
            .lines()
            .find_map(|l| l.strip_prefix("policy").and_then(|r| r.trim_start().strip_prefix(':')).map(|v| v.trim().parse().unwrap_or(u32::MAX)))
            .unwrap_or(u32::MAX);
        out.push((comm, policy));
    }
    out
}

fn keep_alive(req: Request) -> Request {
    req.header("connection", "keep-alive")
}

fn delete_repository(token: &str, id: u64) -> Request {
    keep_alive(
        Request::post("/mcp")
            .bearer(token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "delete_repository", "arguments": {"name": "core"}}})),
    )
}

fn interlock(stack: &Stack, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--enforcer", Box::leak(stack.enforcer_url().into_boxed_str()) as &str];
    all.extend_from_slice(args);
    stack.interlock(&all)
}

/// The decision's records (`interlock audit show`), once `want` of them are there.
fn wait_records(stack: &Stack, decision_id: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = interlock(stack, &["audit", "show", decision_id, "--json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let records: Vec<Value> = v["records"].as_array().unwrap().iter().map(|r| r["record"].clone()).collect();
            if want(&records) {
                return records;
            }
        }
        assert!(Instant::now() < deadline, "no matching audit records for {decision_id}: {}", String::from_utf8_lossy(&out.stdout));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends a call whose denial terminates the connection and returns its decision id. The kernel
/// may cut the connection before the 403 reaches the caller (the enforcer acts within about a
/// millisecond of the decision): then the decision is found in the event log by its session.
fn denied_and_cut(probe: &mut Probe, stack: &Stack, token: &str, session: &str, id: u64) -> String {
    match probe.try_send(&delete_repository(token, id)) {
        Ok((status, body)) => {
            assert_eq!(status, 403, "{body}");
            body["error"]["data"]["decision_id"].as_str().unwrap().to_owned()
        }
        Err(answer) => {
            assert!(answer.starts_with("err 103 ") || answer.starts_with("err 104 "), "the call failed otherwise: {answer}");
            let event = stack.wait_for_event_matching(
                "the deny-delete-repository decision of this session",
                |e| e["rule"] == "deny-delete-repository" && e["identity"]["session"] == session,
                Duration::from_secs(10),
            );
            event["decision_id"].as_str().unwrap().to_owned()
        }
    }
}

fn kernel_stack(scratch: &Scratch) -> Stack {
    Stack::start_with(StackOptions { enforcer_args: scratch.enforcer_args(), ..StackOptions::default() })
}

#[test]
fn a_denied_call_cuts_the_live_connection_and_quarantines_the_workload() {
    skip_unless_kernel!();
    let scratch = Scratch::new("e2e");
    let mut stack = kernel_stack(&scratch);
    let token = stack.token("triage-bot", Some("alice"), Some("kernel-e2e"));
    let mut probe = Probe::start(&scratch.root, "agent-1", stack.listener());

    assert_eq!(probe.ask("open"), "ok");
    // A plain deny (no kernel action) answers 403 and leaves the connection alone.
    let (status, _) = probe.send(&keep_alive(Request::get("/api/admin/users").bearer(&token)));
    assert_eq!(status, 403);
    assert_eq!(probe.ask("wait_closed 500"), "open", "a plain 403 must not close the connection");

    // delete_repository: 403, and the kernel resets the very connection that carried it (the
    // reset may even beat the 403 to the caller).
    let decision_id = denied_and_cut(&mut probe, &stack, &token, "kernel-e2e", 7);
    let closed = probe.ask("wait_closed 10000");
    assert!(closed.starts_with("reset") || closed.starts_with("err"), "the connection must be reset by the kernel, got {closed:?}");

    // New connects from the workload to the listener are refused (EPERM from the BPF program)...
    for _ in 0..3 {
        let c = probe.ask("connect");
        assert!(c.starts_with(&format!("err {EPERM} ")), "quarantined workload connected: {c}");
    }
    // ... while the host's own processes still connect.
    assert!(std::net::TcpStream::connect(stack.listener()).is_ok(), "the host must never be quarantined");

    // The receipt: enforced, socket destroyed, the workload quarantined, the delay measured.
    let records = wait_records(&stack, &decision_id, |r| r.iter().any(|x| x["kind"] == "receipt"));
    let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap();
    eprintln!("receipt: {receipt:#}");
    assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
    assert_eq!(receipt["rule"], "deny-delete-repository");
    assert!(receipt["sockets_destroyed"].as_u64().unwrap() >= 1, "{receipt:#}");
    assert_eq!(receipt["caller"]["workload"], "agent-1");
    assert_eq!(receipt["quarantine"]["block"], "destination");
    assert_eq!(receipt["quarantine"]["destinations"], json!([stack.listener().to_string()]));
    let delay = receipt["decision_to_kernel_ms"].as_f64().unwrap();
    assert!((0.0..5_000.0).contains(&delay), "implausible delay {delay} ms");
    assert!(receipt["maps_written"].as_array().unwrap().iter().any(|m| m["map"] == "il_quarantine"));
    // Later, the refused connects as counted by the BPF map, referencing the decision.
    let records = wait_records(&stack, &decision_id, |r| {
        r.iter().any(|x| x["kind"] == "observation" && x["refused_connects"].as_u64() >= Some(3))
    });
    assert!(records.iter().any(|x| x["kind"] == "observation"));

    // Released: connects work again, and the connection can carry calls.
    let out = interlock(&stack, &["release", "--workload", "agent-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(probe.ask("connect"), "ok");
    assert_eq!(probe.ask("open"), "ok");

    // The chain verifies; a tampered copy fails, naming the line.
    let data = stack.enforcer_data_dir();
    let out = Command::new(interlock_bin()).args(["audit", "verify", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    let receipt_line = log.lines().position(|l| l.contains("\"kind\":\"receipt\"")).unwrap() + 1;
    let tampered = log.replacen("\"sockets_destroyed\":1", "\"sockets_destroyed\":0", 1);
    assert_ne!(tampered, log);
    let copy = scratch.data_dir().join("tampered.jsonl");
    std::fs::create_dir_all(scratch.data_dir()).unwrap();
    std::fs::write(&copy, tampered).unwrap();
    let out = Command::new(interlock_bin()).args(["audit", "verify", "--file"]).arg(&copy).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("line {receipt_line}")), "{text}");

    // Clean-up: the enforcer detaches and unpins everything on exit.
    drop(probe);
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists(), "pins left behind in {}", scratch.pins.display());
    drop(stack);
    drop(scratch);
}

#[test]
fn a_caller_outside_the_managed_root_loses_the_connection_and_nothing_is_quarantined() {
    skip_unless_kernel!();
    let scratch = Scratch::new("outsider");
    let mut stack = kernel_stack(&scratch);
    let token = stack.token("triage-bot", Some("bob"), Some("kernel-outsider"));
    // This test process is the caller: it is in the host's cgroup, never managed.
    let mut stream = interlock_tests::http::connect(stack.listener()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let answer = interlock_tests::http::exchange_on(stream.try_clone().unwrap(), &[&delete_repository(&token, 1).to_bytes()], Duration::ZERO);
    // The cut may beat the 403 to the caller; either way the decision is in the event log.
    let decision_id = match answer {
        Ok(resp) => {
            assert_eq!(resp.status, 403);
            let mut buf = [0u8; 64];
            let read = std::io::Read::read(&mut stream, &mut buf);
            assert!(read.is_err() || read.is_ok_and(|n| n == 0), "the connection must be cut");
            resp.json()["error"]["data"]["decision_id"].as_str().unwrap().to_owned()
        }
        Err(e) => {
            assert!(matches!(e.raw_os_error(), Some(103 | 104)), "the call failed otherwise: {e}");
            let event = stack.wait_for_event_matching(
                "the outsider's deny-delete-repository decision",
                |e| e["rule"] == "deny-delete-repository" && e["identity"]["session"] == "kernel-outsider",
                Duration::from_secs(10),
            );
            event["decision_id"].as_str().unwrap().to_owned()
        }
    };
    let records = wait_records(&stack, &decision_id, |r| r.iter().any(|x| x["kind"] == "receipt"));
    let receipt = &records[0];
    assert_eq!(receipt["caller"]["managed"], false, "{receipt:#}");
    assert!(receipt.get("quarantine").is_none(), "{receipt:#}");
    assert!(receipt["plan"]["notes"].to_string().contains("nothing quarantined"), "{receipt:#}");
    assert!(receipt["sockets_destroyed"].as_u64().unwrap() >= 1, "{receipt:#}");
    // New connections are not refused.
    assert!(std::net::TcpStream::connect(stack.listener()).is_ok());
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists());
}

/// Decision-to-kernel delay over 50 decisions through real Envoy, each cutting a managed
/// workload's connection and quarantining it (then released for the next one).
#[test]
fn decision_to_kernel_delay_median() {
    skip_unless_kernel!();
    let scratch = Scratch::new("delay");
    let mut stack = kernel_stack(&scratch);
    let tokens: Vec<String> = (0..50).map(|i| stack.token("triage-bot", Some("carol"), Some(&format!("delay-{i}")))).collect();
    let mut probe = Probe::start(&scratch.root, "agent-delay", stack.listener());
    let mut delays = Vec::new();
    let mut in_enforcer = Vec::new();
    for (i, token) in (0u64..).zip(&tokens) {
        assert_eq!(probe.ask("open"), "ok", "decision {i}");
        let id = denied_and_cut(&mut probe, &stack, token, &format!("delay-{i}"), i);
        let closed = probe.ask("wait_closed 10000");
        assert!(closed.starts_with("reset") || closed.starts_with("err"), "{closed}");
        let records = wait_records(&stack, &id, |r| r.iter().any(|x| x["kind"] == "receipt"));
        let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap();
        assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
        delays.push(receipt["decision_to_kernel_ms"].as_f64().unwrap());
        in_enforcer.push(receipt["received_to_kernel_us"].as_u64().unwrap());
        assert!(interlock(&stack, &["release", "--workload", "agent-delay"]).status.success());
    }
    delays.sort_by(f64::total_cmp);
    in_enforcer.sort_unstable();
    let median = (delays[24] + delays[25]) / 2.0;
    println!(
        "decision-to-kernel delay over {} decisions: median {median:.3} ms, min {:.3} ms, max {:.3} ms \
         (of which enforcer receive-to-kernel: median {} us)",
        delays.len(),
        delays[0],
        delays[49],
        in_enforcer[25]
    );
    eprintln!("decision-to-kernel median {median:.3} ms; enforcer receive-to-kernel median {} us", in_enforcer[25]);
    drop(probe);
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists());
}

/// The peer of Envoy's end of the one established connection to `listener`, from
/// `/proc/net/tcp` (the probe does not print its own address).
/// A decision event as a filter posts it: an enforced deny of `triage-bot` asking the enforcer to
/// terminate the caller's workload and quarantine it for 30 s, naming the connection by its two
/// ends.
fn workload_deny(decision_id: &str, rule: &str, downstream: std::net::SocketAddr, destination: std::net::SocketAddr) -> Value {
    json!({
        "decision_id": decision_id, "time_unix_ms": 1_718_000_000_000u64, "policy_version": "test",
        "rule": rule, "action": "deny", "status": 403, "mode": "enforce",
        "reason": "test", "identity": {"agent": "triage-bot"},
        "request": {"method": "POST", "authority": "x", "path": "/mcp"}, "worker": "test",
        "kernel": {"terminate": "workload", "quarantine": {"duration_secs": 30, "block": "all"}},
        "downstream": downstream.to_string(), "destination": destination.to_string(),
    })
}

fn downstream_of(listener: std::net::SocketAddr) -> std::net::SocketAddr {
    fn parse(hex: &str) -> std::net::SocketAddr {
        let (ip, port) = hex.split_once(':').unwrap();
        let ip = u32::from_str_radix(ip, 16).unwrap();
        std::net::SocketAddr::new(std::net::Ipv4Addr::from(ip.to_le_bytes()).into(), u16::from_str_radix(port, 16).unwrap())
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let peers: Vec<std::net::SocketAddr> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3] == "01" && parse(f[1]) == listener).then(|| parse(f[2]))
        })
        .collect();
    assert_eq!(peers.len(), 1, "expected one connection to {listener}: {peers:?}");
    peers[0]
}

/// `POST /v1/events` needs no secret (a filter's configuration cannot keep one from the agent
/// behind it), so the enforcer bounds what an event may make the kernel do: only the proxy that
/// holds the named connection may ask. A process in another workload, on the same node and on
/// loopback, posts a made-up deny naming a victim's live connection through Envoy and asking to
/// terminate the victim's workload and quarantine it: the event is logged, nothing happens to the
/// victim, the refusal is in the audit log and counted.
#[test]
fn a_forged_event_from_another_process_cuts_nothing_and_is_counted() {
    skip_unless_kernel!();
    let scratch = Scratch::new("forged");
    let mut stack = kernel_stack(&scratch);
    let token = stack.token("triage-bot", Some("dave"), Some("kernel-forged"));
    let mut victim = Probe::start(&scratch.root, "victim", stack.listener());
    assert_eq!(victim.ask("open"), "ok");
    let (status, _) = victim.send(&keep_alive(Request::get("/api/customers/1").bearer(&token)));
    assert_eq!(status, 200);
    let downstream = downstream_of(stack.listener());

    let forged = workload_deny("forged-1", "deny-delete-repository", downstream, stack.listener());
    let mut forger = Probe::start(&scratch.root, "forger", stack.enforcer());
    assert_eq!(forger.ask("open"), "ok");
    let (status, body) = forger.send(&keep_alive(Request::post("/v1/events").json(&forged)));
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "the event itself is logged: {body}");

    let records = wait_records(&stack, "forged-1", |r| r.iter().any(|x| x["kind"] == "refused"));
    let refused = records.iter().find(|r| r["kind"] == "refused").unwrap();
    eprintln!("refusal: {refused:#}");
    assert_eq!(refused["outcome"], "refused: nothing done", "{refused:#}");
    assert!(refused["reason"].as_str().unwrap().contains("only the proxy holding the connection"), "{refused:#}");
    assert!(records.iter().all(|r| r["kind"] != "receipt"), "nothing was enforced: {records:#?}");

    // The victim keeps its connection and may still connect.
    assert_eq!(victim.ask("wait_closed 500"), "open", "a forged event must not cut the victim's connection");
    assert_eq!(victim.ask("connect"), "ok", "a forged event must not quarantine the victim");
    let (status, _) = victim.send(&keep_alive(Request::get("/api/customers/1").bearer(&token)));
    assert_eq!(status, 200);

    // Counted, for operators (GET /v1/kernel needs the admin token; without it, 401).
    assert_eq!(Request::get("/v1/kernel").send(stack.enforcer()).status, 401);
    let kernel = Request::get("/v1/kernel").bearer(&stack.admin_token()).send(stack.enforcer()).json();
    assert_eq!(kernel["events_refused"], 1, "{kernel:#}");
    assert!(stack.log(interlock_tests::Which::Enforcer).contains("REFUSED the kernel action of decision forged-1"));

    // The same enforcer still acts on Envoy's own decisions on that connection.
    let decision_id = denied_and_cut(&mut victim, &stack, &token, "kernel-forged", 9);
    let records = wait_records(&stack, &decision_id, |r| r.iter().any(|x| x["kind"] == "receipt"));
    assert_eq!(records.iter().find(|r| r["kind"] == "receipt").unwrap()["outcome"], "enforced");

    drop((victim, forger));
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists());
}

/// Destroying 10,000 sockets takes the kernel tens of milliseconds (its own abort, a few us a socket), so a
/// quarantine first silences: the `cgroup_skb` programs on the managed root drop every packet of
/// the workload's live sockets to a refused destination, from the one map write on. Here a
/// quarantine by hand (a map write, no socket destroyed) leaves the workload's established
/// connection open but mute: a call on it gets no answer while the host's connections work;
/// release restores new connections at once. A decision that quarantines and terminates says in
/// its receipt that it silenced before it destroyed.
#[test]
fn a_quarantine_silences_live_connections_before_any_socket_is_destroyed() {
    skip_unless_kernel!();
    let scratch = Scratch::new("silence");
    let mut stack = kernel_stack(&scratch);
    let token = stack.token("triage-bot", Some("erin"), Some("kernel-silence"));
    let mut probe = Probe::start(&scratch.root, "agent-s", stack.listener());
    assert_eq!(probe.ask("open"), "ok");
    let call = keep_alive(Request::get("/api/customers/1").bearer(&token));
    assert_eq!(probe.send(&call).0, 200, "the connection carries calls before the quarantine");

    let out = interlock(&stack, &["quarantine", "--workload", "agent-s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The established connection passes nothing (the probe waits 10 s for the answer; Envoy
    // answers this call in milliseconds otherwise), yet its socket was not destroyed.
    let started = Instant::now();
    let answer = probe.try_send(&call);
    assert!(
        matches!(&answer, Err(e) if e.starts_with("err 11 ")),
        "a quarantined workload's live connection must pass no data, got {answer:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(probe.ask("wait_closed 300"), "open", "silenced, not destroyed");
    assert!(probe.ask("connect").starts_with(&format!("err {EPERM} ")), "new connects are refused too");
    let status = Request::get("/api/customers/1").bearer(&token).send(stack.listener()).status;
    assert_eq!(status, 200, "the host's own connections are never silenced");

    // Released: new connections work at once and carry calls.
    let out = interlock(&stack, &["release", "--workload", "agent-s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(probe.ask("connect"), "ok");
    assert_eq!(probe.ask("open"), "ok");
    assert_eq!(probe.send(&call).0, 200, "released: calls pass again");

    // A decision that quarantines and terminates: silenced at T, sockets destroyed by T2 >= T.
    let decision_id = denied_and_cut(&mut probe, &stack, &token, "kernel-silence", 11);
    let closed = probe.ask("wait_closed 10000");
    assert!(closed.starts_with("reset") || closed.starts_with("err"), "the connection must be cut, got {closed:?}");
    let records = wait_records(&stack, &decision_id, |r| r.iter().any(|x| x["kind"] == "receipt"));
    let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap();
    eprintln!("receipt: {receipt:#}");
    let silenced = receipt["silenced"]["received_to_silenced_us"].as_u64().unwrap_or_else(|| panic!("{receipt:#}"));
    let destroyed = receipt["received_to_destroyed_us"].as_u64().unwrap_or_else(|| panic!("{receipt:#}"));
    assert!(silenced <= destroyed, "silenced at {silenced} us, destroyed by {destroyed} us: {receipt:#}");
    assert!(receipt["sockets_destroyed"].as_u64().unwrap() >= 1, "{receipt:#}");
    let status = Request::get("/v1/kernel").bearer(&stack.admin_token()).send(stack.enforcer()).json();
    let programs = status["kernel"]["programs"].to_string();
    assert!(programs.contains("cgroup_skb/ingress") && programs.contains("cgroup_skb/egress"), "{status:#}");
    // The threads an event arrives on run SCHED_DEADLINE by default (a busy workload cannot make
    // them wait for a scheduler tick), as the status says and the kernel confirms per thread;
    // the kernel worker SCHED_FIFO.
    assert_eq!(status["event_threads_scheduling"], "SCHED_DEADLINE 300 us every 1 ms", "{status:#}");
    assert_eq!(status["worker_scheduling"], "SCHED_FIFO 1", "{status:#}");
    let pid = stack.pid(interlock_tests::Which::Enforcer).unwrap();
    let policies = thread_policies(pid);
    let workers: Vec<u32> = policies.iter().filter(|(comm, _)| comm == "tokio-rt-worker").map(|(_, p)| *p).collect();
    assert!(workers.contains(&6), "no API worker thread is SCHED_DEADLINE (6): {policies:?}");
    assert!(policies.iter().any(|(comm, p)| comm == "interlock-kerne" && *p == 1), "kernel worker not SCHED_FIFO (1): {policies:?}");

    drop(probe);
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists(), "pins left behind in {}", scratch.pins.display());
}

/// `terminate: workload` destroys every socket of the workload's cgroup and nothing else: two
/// connections of the terminated workload are aborted, while a bystander workload's connection
/// (another cgroup under the same managed root) and the host's own connection, all to the same
/// listener, stay open and carry data. The receipt counts exactly the workload's sockets and
/// names how they were destroyed: the BPF socket iterator where this kernel allows it (the
/// status says which, loudly when it fell back to netlink).
#[test]
fn terminating_a_workload_destroys_its_sockets_and_no_bystanders() {
    skip_unless_kernel!();
    let scratch = Scratch::new("workload");
    let mut stack = kernel_stack(&scratch);
    let kernel = Request::get("/v1/kernel").bearer(&stack.admin_token()).send(stack.enforcer()).json();
    let destroy_path = kernel["kernel"]["socket_destroy"].as_str().unwrap_or_default().to_owned();
    eprintln!("socket destruction: {destroy_path}");
    let expected_with = if destroy_path.starts_with("BPF iterator") {
        "bpf-iterator"
    } else {
        eprintln!("WARNING: this kernel does not allow the BPF socket iterator; testing the netlink fallback");
        "netlink"
    };

    // This process plays the proxy: it holds the listener's ends and posts the decision.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = |what: &str| {
        let (s, peer) = listener.accept().unwrap_or_else(|e| panic!("accepting {what}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        (s, peer)
    };
    let mut victim1 = Probe::start(&scratch.root, "victim", addr);
    assert_eq!(victim1.ask("open"), "ok");
    let (_v1_end, v1_peer) = accept("victim 1");
    let mut victim2 = Probe::start(&scratch.root, "victim", addr);
    assert_eq!(victim2.ask("open"), "ok");
    let _v2_end = accept("victim 2");
    let mut bystander = Probe::start(&scratch.root, "bystander", addr);
    assert_eq!(bystander.ask("open"), "ok");
    let (mut bystander_end, _) = accept("the bystander");
    let mut host = std::net::TcpStream::connect(addr).unwrap();
    let (mut host_end, _) = accept("the host's connection");

    let event = workload_deny("terminate-workload-1", "terminate-the-workload", v1_peer, addr);
    let answer = Request::post("/v1/events").json(&event).send(stack.enforcer());
    assert_eq!(answer.status, 200);
    let records = wait_records(&stack, "terminate-workload-1", |r| r.iter().any(|x| x["kind"] == "receipt" || x["kind"] == "refused"));
    let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap_or_else(|| panic!("{records:#?}"));
    eprintln!("receipt: {receipt:#}");
    assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
    assert_eq!(receipt["sockets_destroyed_with"], expected_with, "{receipt:#}");
    assert_eq!(receipt["sockets_destroyed"], 2, "exactly the workload's two sockets: {receipt:#}");
    let quarantined: Vec<u64> = receipt["quarantine"]["cgroup_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    for s in receipt["sockets"].as_array().unwrap() {
        assert!(quarantined.contains(&s["cgroup_id"].as_u64().unwrap()), "a socket outside the workload: {s:#}");
        assert_eq!(s["result"], "destroyed", "{s:#}");
    }

    // The workload's connections are aborted...
    for (name, probe) in [("victim 1", &mut victim1), ("victim 2", &mut victim2)] {
        let closed = probe.ask("wait_closed 5000");
        assert!(closed.starts_with("reset") || closed.starts_with("err"), "{name}'s connection must be cut, got {closed:?}");
    }
    // ... the bystander's and the host's are not: still open, and they carry data both ways.
    assert_eq!(bystander.ask("wait_closed 300"), "open", "a bystander workload's connection must survive");
    bystander_end.write_all(b"x").unwrap();
    assert_eq!(bystander.ask("wait_closed 2000"), "data 1", "the bystander's connection still carries data");
    host.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    std::io::Read::read_exact(&mut host_end, &mut b).unwrap();
    assert_eq!(&b, b"ping", "the host's own connection must survive");
    assert_eq!(bystander.ask("connect"), "ok", "the bystander is not quarantined");

    drop((victim1, victim2, bystander));
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists(), "pins left behind in {}", scratch.pins.display());
}

/// The netlink path (`--socket-destroy netlink`) lists a workload's sockets in one dump that
/// covers both families: a workload with an IPv4 and an IPv6 connection loses both, and a
/// bystander's IPv6 connection to the same listener stays open.
#[test]
fn terminating_a_workload_through_netlink_destroys_its_ipv4_and_ipv6_sockets() {
    skip_unless_kernel!();
    let Ok(listener6) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    };
    let scratch = Scratch::new("netlink");
    let mut args = scratch.enforcer_args();
    args.extend(["--socket-destroy".to_owned(), "netlink".to_owned()]);
    let mut stack = Stack::start_with(StackOptions { enforcer_args: args, ..StackOptions::default() });
    let listener4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (addr4, addr6) = (listener4.local_addr().unwrap(), listener6.local_addr().unwrap());
    let accept = |l: &std::net::TcpListener, what: &str| l.accept().unwrap_or_else(|e| panic!("accepting {what}: {e}"));

    let mut victim4 = Probe::start(&scratch.root, "victim", addr4);
    assert_eq!(victim4.ask("open"), "ok");
    let (_v4_end, v4_peer) = accept(&listener4, "the victim's IPv4 connection");
    let mut victim6 = Probe::start(&scratch.root, "victim", addr6);
    assert_eq!(victim6.ask("open"), "ok");
    let _v6_end = accept(&listener6, "the victim's IPv6 connection");
    let mut bystander = Probe::start(&scratch.root, "bystander", addr6);
    assert_eq!(bystander.ask("open"), "ok");
    let (mut bystander_end, _) = accept(&listener6, "the bystander");

    let event = workload_deny("terminate-netlink-1", "terminate-the-workload", v4_peer, addr4);
    assert_eq!(Request::post("/v1/events").json(&event).send(stack.enforcer()).status, 200);
    let records = wait_records(&stack, "terminate-netlink-1", |r| r.iter().any(|x| x["kind"] == "receipt" || x["kind"] == "refused"));
    let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
    assert_eq!(receipt["sockets_destroyed_with"], "netlink", "{receipt:#}");
    assert_eq!(receipt["sockets_destroyed"], 2, "the workload's IPv4 and IPv6 sockets: {receipt:#}");
    let families: Vec<u64> = receipt["sockets"].as_array().unwrap().iter().map(|s| s["family"].as_u64().unwrap_or(0)).collect();
    assert!(families.contains(&2) && families.contains(&10), "one socket of each family: {receipt:#}");

    for (name, probe) in [("IPv4", &mut victim4), ("IPv6", &mut victim6)] {
        let closed = probe.ask("wait_closed 5000");
        assert!(closed.starts_with("reset") || closed.starts_with("err"), "the victim's {name} connection must be cut, got {closed:?}");
    }
    assert_eq!(bystander.ask("wait_closed 300"), "open", "a bystander's connection must survive");
    bystander_end.write_all(b"x").unwrap();
    assert_eq!(bystander.ask("wait_closed 2000"), "data 1", "the bystander's connection still carries data");

    drop((victim4, victim6, bystander));
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists(), "pins left behind in {}", scratch.pins.display());
}

/// A network namespace of this test's own, as a pod has (`ip netns add`, so its file is in
/// /var/run/netns as CNI plugins keep pods'), joined to the host's by a veth pair: the host's
/// end is `host`, the namespace's `pod`. Removed on drop, with the pair.
struct PodNetns {
    name: String,
    host: std::net::Ipv4Addr,
    pod: std::net::Ipv4Addr,
}

impl PodNetns {
    fn create() -> Result<PodNetns, String> {
        let id = std::process::id();
        let name = format!("il-test-{id}");
        let (hv, pv) = (format!("ilh{id}"), format!("ilp{id}"));
        let net = u8::try_from(id % 200).unwrap() + 20;
        let (host, pod) = (std::net::Ipv4Addr::new(10, 213, net, 1), std::net::Ipv4Addr::new(10, 213, net, 2));
        let ns = PodNetns { name: name.clone(), host, pod };
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
            if out.status.success() { Ok(()) } else { Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())) }
        };
        run(&["netns", "add", &name])?;
        run(&["link", "add", &hv, "type", "veth", "peer", "name", &pv])?;
        run(&["link", "set", &pv, "netns", &name])?;
        run(&["addr", "add", &format!("{host}/30"), "dev", &hv])?;
        run(&["link", "set", &hv, "up"])?;
        run(&["-n", &name, "addr", "add", &format!("{pod}/30"), "dev", &pv])?;
        run(&["-n", &name, "link", "set", &pv, "up"])?;
        run(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn file(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let gone = !self.file().exists();
        eprintln!("cleaned up: network namespace {} {}", self.name, if gone { "removed" } else { "STILL THERE" });
    }
}

/// In Kubernetes every pod has its own network namespace, and a namespace's sockets can only be
/// found and destroyed from inside it. A workload with one process in a namespace of its own
/// (reaching the host through a veth pair) and one in the enforcer's, and a bystander workload
/// in the same pod namespace: terminating the workload destroys its sockets in both namespaces,
/// the receipt names both, and the bystander's connection in the pod namespace survives.
#[test]
fn terminating_a_workload_in_its_own_network_namespace_destroys_its_sockets_there() {
    skip_unless_kernel!();
    let pod = match PodNetns::create() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace with a veth pair here: {e}");
            return;
        }
    };
    let scratch = Scratch::new("netns");
    let mut stack = kernel_stack(&scratch);
    let listener = std::net::TcpListener::bind((pod.host, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = |what: &str| listener.accept().unwrap_or_else(|e| panic!("accepting {what}: {e}"));

    let mut in_pod = Probe::start_in(Some(&pod.file()), &scratch.root, "victim", addr);
    assert_eq!(in_pod.ask("open"), "ok");
    let (_pod_end, pod_peer) = accept("the victim's connection from its namespace");
    assert_eq!(pod_peer.ip(), std::net::IpAddr::V4(pod.pod), "the connection comes from the pod's namespace");
    let mut on_host = Probe::start(&scratch.root, "victim", addr);
    assert_eq!(on_host.ask("open"), "ok");
    let _host_end = accept("the victim's connection from the host's namespace");
    let mut bystander = Probe::start_in(Some(&pod.file()), &scratch.root, "bystander", addr);
    assert_eq!(bystander.ask("open"), "ok");
    let (mut bystander_end, _) = accept("the bystander");

    let event = workload_deny("terminate-netns-1", "terminate-the-workload", pod_peer, addr);
    assert_eq!(Request::post("/v1/events").json(&event).send(stack.enforcer()).status, 200);
    let records = wait_records(&stack, "terminate-netns-1", |r| r.iter().any(|x| x["kind"] == "receipt" || x["kind"] == "refused"));
    let receipt = records.iter().find(|r| r["kind"] == "receipt").unwrap_or_else(|| panic!("{records:#?}"));
    eprintln!("receipt: {receipt:#}");
    assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
    assert_eq!(receipt["sockets_destroyed"], 2, "the workload's socket in each namespace: {receipt:#}");
    let namespaces: Vec<&str> = receipt["namespaces"].as_array().unwrap_or_else(|| panic!("no namespaces: {receipt:#}")).iter().map(|v| v.as_str().unwrap()).collect();
    assert!(namespaces.iter().any(|n| n.starts_with("own")), "{namespaces:?}");
    assert!(namespaces.iter().any(|n| n.starts_with("/proc/") && n.contains("/ns/net")), "the pod's namespace, found through its process: {namespaces:?}");
    let locals: Vec<String> = receipt["sockets"].as_array().unwrap().iter().map(|s| s["local"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(locals.contains(&pod_peer.to_string()), "the socket in the pod's namespace is listed: {receipt:#}");

    for (name, probe) in [("in the pod's namespace", &mut in_pod), ("in the host's namespace", &mut on_host)] {
        let closed = probe.ask("wait_closed 5000");
        assert!(closed.starts_with("reset") || closed.starts_with("err"), "the victim's connection {name} must be cut, got {closed:?}");
    }
    assert_eq!(bystander.ask("wait_closed 300"), "open", "a bystander's connection in the same namespace must survive");
    bystander_end.write_all(b"x").unwrap();
    assert_eq!(bystander.ask("wait_closed 2000"), "data 1", "the bystander's connection still carries data");

    drop((in_pod, on_host, bystander));
    stack.stop(interlock_tests::Which::Enforcer);
    assert!(!scratch.pins.exists(), "pins left behind in {}", scratch.pins.display());
}
