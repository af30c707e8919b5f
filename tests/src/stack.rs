//! The stack under test: the demo upstream, the enforcer and real Envoy with the release `.wasm`,
//! each a child process on its own free loopback port, logging into a private temp directory.
//!
//! The Envoy configuration is `envoy-config/demo.yaml` itself with only its four ports and the
//! wasm path rewritten, so the tests exercise the file that ships. Every rewrite must match
//! exactly the expected number of times, or the start fails: a config that drifted must not
//! quietly run on the demo's fixed ports.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use interlock_policies::DecisionEvent;
use serde_json::Value;

use crate::http::{self, Request, Response};
use crate::{
    demo_envoy_config, demo_upstream_bin, envoy_bin, filter_wasm, interlock_bin, repo_root,
    require_artifact,
};

/// How long the whole stack may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL on drop.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Attempts at starting when a port was taken between picking it and binding it.
const START_ATTEMPTS: u32 = 3;
/// Lines of each log quoted in failure messages.
const TAIL_LINES: usize = 40;
/// The wasm path as written in the demo config (relative to the repository root).
const DEMO_WASM_PATH: &str = "target/wasm32-wasip1/release/interlock_filter.wasm";
const PLUGIN_CONFIG_BEGIN: &str = "# BEGIN interlock plugin configuration";
const PLUGIN_CONFIG_END: &str = "# END interlock plugin configuration";

/// One of the processes of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    Envoy,
    Enforcer,
    Upstream,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Envoy => "envoy",
            Which::Enforcer => "enforcer",
            Which::Upstream => "upstream",
        }
    }

    const ALL: [Which; 3] = [Which::Envoy, Which::Enforcer, Which::Upstream];
}

/// The four loopback ports of one stack (the demo's fixed ones are 10000, 9901, 9090, 8080).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub listener: u16,
    pub admin: u16,
    pub enforcer: u16,
    pub upstream: u16,
}

impl Ports {
    /// The demo's fixed ports, as in `envoy-config/demo.yaml`.
    pub const DEMO: Ports = Ports {
        listener: 10000,
        admin: 9901,
        enforcer: 9090,
        upstream: 8080,
    };

    /// Four distinct free ports: all four are bound at once (so they differ), then released.
    /// Another process may grab one before we bind it; [`Stack::start_with`] retries on that.
    pub fn pick() -> Ports {
        let listeners: Vec<TcpListener> = (0..4)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port")
            })
            .collect();
        let port = |i: usize| {
            listeners[i]
                .local_addr()
                .expect("local_addr of a bound socket")
                .port()
        };
        Ports {
            listener: port(0),
            admin: port(1),
            enforcer: port(2),
            upstream: port(3),
        }
    }
}

/// What to start. `StackOptions::default()` is the demo: `envoy-config/demo.yaml` with its
/// embedded policy, the filter, the enforcer, Envoy with `--concurrency 2`.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The Envoy bootstrap to rewrite and run; it must contain each of the demo's four
    /// `port_value`s exactly once, and the demo wasm path exactly once when `with_filter`.
    pub envoy_config: PathBuf,
    /// A policy file to run instead of the embedded one: the `policy` member of the plugin
    /// configuration (between the `# BEGIN/END interlock plugin configuration` markers) becomes
    /// this file's JSON; the other members (`enforcer`, `hold_headers`) stay. `None` keeps the
    /// config's own policy.
    pub policy: Option<PathBuf>,
    /// A whole plugin configuration (`{"policy": ..., "enforcer": {...}, "hold_headers": ...}`,
    /// see filter/src/config.rs) to embed instead of the config's own; `policy`, when also set,
    /// is applied on top of it.
    pub plugin_config: Option<Value>,
    /// `false` removes the `envoy.filters.http.wasm` filter from the config. HARNESS SELF-TEST
    /// ONLY: it proves the plumbing (ports, processes, client) without the filter; a test of
    /// Interlock's behaviour must never use it.
    pub with_filter: bool,
    /// `false` does not start the enforcer (its port stays reserved and unanswered), e.g. to test
    /// what the filter does when the enforcer is down.
    pub with_enforcer: bool,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Envoy `--log-level`.
    pub envoy_log_level: String,
    /// Extra Envoy arguments, e.g. `["--component-log-level", "wasm:debug"]`.
    pub envoy_args: Vec<String>,
    /// Extra `interlock serve` arguments. The default, `--kernel off`, keeps the many stacks
    /// that tests run in parallel away from the host's BPF and cgroups; kernel tests replace it
    /// with their own cgroup root and pin directory (tests/tests/kernel_e2e.rs).
    pub enforcer_args: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            envoy_config: demo_envoy_config(),
            policy: None,
            plugin_config: None,
            with_filter: true,
            with_enforcer: true,
            concurrency: 2,
            envoy_log_level: "info".to_owned(),
            envoy_args: Vec::new(),
            enforcer_args: vec!["--kernel".to_owned(), "off".to_owned()],
        }
    }
}

impl StackOptions {
    /// Use another Envoy bootstrap (path relative to the repository root or absolute).
    pub fn envoy_config(mut self, path: impl AsRef<Path>) -> Self {
        self.envoy_config = repo_root().join(path);
        self
    }

    /// Embed this policy file (path relative to the repository root or absolute).
    pub fn policy(mut self, path: impl AsRef<Path>) -> Self {
        self.policy = Some(repo_root().join(path));
        self
    }

    /// Embed this whole plugin configuration (see [`StackOptions::plugin_config`]).
    pub fn plugin_config(mut self, config: Value) -> Self {
        self.plugin_config = Some(config);
        self
    }

    /// Do not start the enforcer.
    pub fn without_enforcer(mut self) -> Self {
        self.with_enforcer = false;
        self
    }

    /// HARNESS SELF-TEST ONLY: strip the Interlock filter (see [`StackOptions::with_filter`]).
    pub fn without_filter_for_harness_self_test(mut self) -> Self {
        self.with_filter = false;
        self
    }
}

/// A running stack. Dropping it stops every process (SIGTERM, SIGKILL after 2 s) and removes the
/// temp directory, unless `INTERLOCK_KEEP_TMP` is set or the test is panicking (then the path is
/// printed so the logs can be read).
pub struct Stack {
    ports: Ports,
    dir: PathBuf,
    envoy_config: PathBuf,
    procs: Vec<Proc>,
    enforcer_started: bool,
}

struct Proc {
    which: Which,
    child: Child,
    /// How it was started, so [`Stack::restart`] can start it again the same way.
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
}

/// Why one start attempt failed.
struct StartFailure {
    port_conflict: bool,
    report: String,
}

impl Stack {
    /// The demo stack (see [`StackOptions::default`]); panics with the logs' tails when it cannot
    /// start within 30 s.
    pub fn start() -> Stack {
        Self::start_with(StackOptions::default())
    }

    /// HARNESS SELF-TEST ONLY: the demo stack without the Interlock filter.
    pub fn start_without_filter() -> Stack {
        Self::start_with(StackOptions::default().without_filter_for_harness_self_test())
    }

    /// A stack as `opts` says; panics with the logs' tails when it cannot start within 30 s.
    pub fn start_with(opts: StackOptions) -> Stack {
        require_artifact(
            &demo_upstream_bin(),
            "the demo upstream (interlock-demo-upstream)",
        );
        if opts.with_enforcer {
            require_artifact(&interlock_bin(), "the enforcer (interlock)");
        }
        if opts.with_filter {
            require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
        }
        require_artifact(&envoy_bin(), "Envoy");
        let mut attempt = 1;
        loop {
            match Self::try_start_once(&opts) {
                Ok(stack) => return stack,
                Err(f) if f.port_conflict && attempt < START_ATTEMPTS => {
                    eprintln!(
                        "interlock-tests: a port was taken while starting, retrying:\n{}",
                        f.report
                    );
                    attempt += 1;
                }
                Err(f) => panic!("the test stack did not start:\n{}", f.report),
            }
        }
    }

    fn try_start_once(opts: &StackOptions) -> Result<Stack, StartFailure> {
        let ports = Ports::pick();
        let dir = unique_temp_dir().map_err(|e| StartFailure {
            port_conflict: false,
            report: format!(
                "cannot create a temp dir under {}: {e}",
                std::env::temp_dir().display()
            ),
        })?;
        let envoy_config = dir.join("envoy.yaml");
        let mut stack = Stack {
            ports,
            dir,
            envoy_config,
            procs: Vec::new(),
            enforcer_started: false,
        };
        let fail = |stack: &Stack, report: String| StartFailure {
            port_conflict: stack.logs_mention_port_conflict(),
            report: format!("{report}\n{}", stack.all_log_tails()),
        };

        let yaml = render_envoy_config(opts, &ports).map_err(|e| {
            fail(
                &stack,
                format!("cannot render {}: {e:#}", opts.envoy_config.display()),
            )
        })?;
        fs::write(&stack.envoy_config, yaml).map_err(|e| {
            fail(
                &stack,
                format!("cannot write {}: {e}", stack.envoy_config.display()),
            )
        })?;

        let upstream_addr = stack.upstream().to_string();
        let mut upstream = Command::new(demo_upstream_bin());
        upstream.args(["--listen", &upstream_addr]);
        stack
            .spawn(Which::Upstream, upstream)
            .map_err(|e| fail(&stack, e))?;

        if opts.with_enforcer {
            let data_dir = stack.dir.join("enforcer-data");
            fs::create_dir_all(&data_dir)
                .map_err(|e| fail(&stack, format!("cannot create {}: {e}", data_dir.display())))?;
            let mut enforcer = Command::new(interlock_bin());
            enforcer
                .arg("serve")
                .args(["--listen", &stack.enforcer().to_string()])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(&opts.enforcer_args);
            stack
                .spawn(Which::Enforcer, enforcer)
                .map_err(|e| fail(&stack, e))?;
            stack.enforcer_started = true;
        }

        let mut envoy = Command::new(envoy_bin());
        envoy
            .arg("-c")
            .arg(&stack.envoy_config)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args(["--log-level", &opts.envoy_log_level])
            // Parallel Envoys on one host clash on the hot-restart shared memory and domain
            // socket of a common base id; tests never hot-restart, so switch it off altogether
            // (stronger than a unique --base-id).
            .arg("--disable-hot-restart")
            .args(&opts.envoy_args);
        stack
            .spawn(Which::Envoy, envoy)
            .map_err(|e| fail(&stack, e))?;

        stack.wait_ready().map_err(|e| fail(&stack, e))?;
        Ok(stack)
    }

    fn spawn(&mut self, which: Which, mut cmd: Command) -> Result<(), String> {
        let log_path = self.log_path(which);
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot dup the log fd: {e}"))?;
        cmd.current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {} ({:?}): {e}",
                which.name(),
                cmd.get_program()
            )
        })?;
        let program = cmd.get_program().to_owned();
        let args = cmd.get_args().map(ToOwned::to_owned).collect();
        self.procs.push(Proc { which, child, program, args });
        Ok(())
    }

    /// Wait until the upstream answers its stats, the enforcer its health check, Envoy's admin
    /// says LIVE and its listener accepts; fail at once when a process exits.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = Duration::from_secs(1);
        let mut upstream_ready = false;
        let mut enforcer_ready = !self.enforcer_started;
        let mut envoy_ready = false;
        loop {
            for p in &mut self.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Err(format!(
                        "{} exited during start-up with {status}",
                        p.which.name()
                    ));
                }
            }
            if !upstream_ready {
                upstream_ready = probe_get(self.upstream(), "/__demo/stats", probe)
                    .is_some_and(|r| r.status == 200);
            }
            if !enforcer_ready {
                enforcer_ready =
                    probe_get(self.enforcer(), "/healthz", probe).is_some_and(|r| r.status == 200);
            }
            if !envoy_ready {
                envoy_ready = probe_get(self.admin(), "/ready", probe)
                    .is_some_and(|r| r.status == 200 && r.text().trim() == "LIVE")
                    && TcpStream::connect_timeout(&self.listener(), probe).is_ok();
            }
            if upstream_ready && enforcer_ready && envoy_ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {START_TIMEOUT:?}: upstream ready={upstream_ready}, \
                     enforcer ready={enforcer_ready}, envoy ready={envoy_ready} (Envoy admin /ready \
                     must say LIVE and the listener accept)"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs_mention_port_conflict(&self) -> bool {
        Which::ALL.iter().any(|w| {
            let log = self.log(*w).to_ascii_lowercase();
            log.contains("address already in use") || log.contains("os error 98")
        })
    }

    fn all_log_tails(&self) -> String {
        let mut out = format!("temp dir: {}\n", self.dir.display());
        for which in Which::ALL {
            if self.log_path(which).exists() {
                out.push_str(&format!(
                    "----- last {TAIL_LINES} lines of {} -----\n{}\n",
                    self.log_path(which).display(),
                    self.log_tail(which)
                ));
            }
        }
        out
    }

    // ----- addresses and files -----

    /// The four ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Envoy's listener with the filter (the demo's 127.0.0.1:10000).
    pub fn listener(&self) -> SocketAddr {
        loopback(self.ports.listener)
    }

    /// Envoy's admin (the demo's 127.0.0.1:9901).
    pub fn admin(&self) -> SocketAddr {
        loopback(self.ports.admin)
    }

    /// The enforcer API (the demo's 127.0.0.1:9090).
    pub fn enforcer(&self) -> SocketAddr {
        loopback(self.ports.enforcer)
    }

    /// `http://127.0.0.1:<port>`, for `interlock ... --enforcer URL`.
    pub fn enforcer_url(&self) -> String {
        format!("http://{}", self.enforcer())
    }

    /// The demo upstream (the demo's 127.0.0.1:8080).
    pub fn upstream(&self) -> SocketAddr {
        loopback(self.ports.upstream)
    }

    /// The stack's temp directory (logs, `envoy.yaml`, `enforcer-data/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The enforcer's `--data-dir`.
    pub fn enforcer_data_dir(&self) -> PathBuf {
        self.dir.join("enforcer-data")
    }

    /// The enforcer's admin token, which it created in its data directory at its first start:
    /// what operator routes (`GET /v1/events`, `PUT /v1/policy`, revocations, ...) need as
    /// `Authorization: Bearer`.
    pub fn admin_token(&self) -> String {
        let path = self.enforcer_data_dir().join("admin.token");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the enforcer's admin token {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The rewritten Envoy config that is running.
    pub fn envoy_config_path(&self) -> &Path {
        &self.envoy_config
    }

    /// The log file of a process (its stdout and stderr; Envoy's includes the access log).
    pub fn log_path(&self, which: Which) -> PathBuf {
        self.dir.join(format!("{}.log", which.name()))
    }

    /// The whole log of a process so far (empty when there is none).
    pub fn log(&self, which: Which) -> String {
        fs::read(self.log_path(which))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last 40 lines of a process's log.
    pub fn log_tail(&self, which: Which) -> String {
        let log = self.log(which);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// The process id of a running process.
    pub fn pid(&self, which: Which) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.which == which)
            .map(|p| p.child.id())
    }

    /// Stop one process now (SIGTERM, SIGKILL after 2 s), e.g. the enforcer, to test what the
    /// filter does without it.
    pub fn stop(&mut self, which: Which) {
        if let Some(i) = self.procs.iter().position(|p| p.which == which) {
            let p = self.procs.remove(i);
            stop_all(vec![p]);
        }
    }

    /// Stop one process and start it again with the same command line (same ports, same data
    /// dir), then wait until the whole stack is ready again. Its log starts over.
    pub fn restart(&mut self, which: Which) {
        let Some(i) = self.procs.iter().position(|p| p.which == which) else {
            panic!("{} is not running", which.name());
        };
        let p = self.procs.remove(i);
        let (program, args) = (p.program.clone(), p.args.clone());
        stop_all(vec![p]);
        let mut cmd = Command::new(program);
        cmd.args(args);
        if let Err(e) = self.spawn(which, cmd).and_then(|()| self.wait_ready()) {
            panic!("restarting {} failed: {e}\n{}", which.name(), self.all_log_tails());
        }
    }

    // ----- helpers -----

    /// Send a request to the listener.
    pub fn send(&self, req: &Request) -> Response {
        req.send(self.listener())
    }

    /// A demo JWT from `interlock token` (signed with the committed test-only demo key).
    pub fn token(&self, agent: &str, user: Option<&str>, session: Option<&str>) -> String {
        mint_token(agent, user, session, None)
    }

    /// Run the `interlock` CLI with `args` (from the repository root) and return its output.
    /// It authenticates with this stack's enforcer's admin token (`INTERLOCK_ADMIN_TOKEN_FILE`),
    /// as root on the node does with the default file.
    pub fn interlock(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(interlock_bin());
        if self.enforcer_started {
            cmd.env(
                "INTERLOCK_ADMIN_TOKEN_FILE",
                self.enforcer_data_dir().join("admin.token"),
            );
        }
        cmd.args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", interlock_bin().display()))
    }

    /// The demo upstream's counters (`GET /__demo/stats`).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let resp = Request::get("/__demo/stats").send(self.upstream());
        assert_eq!(resp.status, 200, "GET /__demo/stats: {}", resp.text());
        serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
            panic!(
                "/__demo/stats is not a map of counters ({e}): {}",
                resp.text()
            )
        })
    }

    /// Reset the demo upstream's counters (`POST /__demo/reset`).
    pub fn reset_stats(&self) {
        let resp = Request::post("/__demo/reset").send(self.upstream());
        assert!(
            (200..300).contains(&resp.status),
            "POST /__demo/reset answered {}: {}",
            resp.status,
            resp.text()
        );
    }

    /// What grew between two [`Stack::stats`] snapshots: only the counters that changed, by how
    /// much. An empty map means the upstream executed nothing in between.
    pub fn stats_delta(
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
    ) -> BTreeMap<String, u64> {
        after
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }

    /// One page of `GET /v1/events` after `after` (from the start when `None`), long-polling up
    /// to `wait_ms` when there is nothing new: the events (flattened, see [`flatten_record`])
    /// and the cursor to pass next.
    pub fn events_page(
        &self,
        after: Option<u64>,
        limit: u32,
        wait_ms: u64,
    ) -> (Vec<Value>, Option<u64>) {
        let (records, next) = self.event_records_page(after, limit, wait_ms);
        (records.into_iter().map(flatten_record).collect(), next)
    }

    /// Every record the enforcer holds, oldest first, as it serves them
    /// (`{"seq":N,"received_unix_ms":T,"event":{...}}`).
    pub fn event_records(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.event_records_page(cursor, 1000, 0);
            if page.is_empty() {
                return all;
            }
            all.extend(page);
            if next == cursor || next.is_none() {
                return all;
            }
            cursor = next;
        }
    }

    /// One page of raw records; see [`Stack::events_page`].
    pub fn event_records_page(
        &self,
        after: Option<u64>,
        limit: u32,
        wait_ms: u64,
    ) -> (Vec<Value>, Option<u64>) {
        let mut path = format!("/v1/events?limit={limit}&wait_ms={wait_ms}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let resp = http::send_raw(
            self.enforcer(),
            &Request::get(&path).bearer(&self.admin_token()).to_bytes(),
        );
        assert_eq!(
            resp.status,
            200,
            "GET {path} on the enforcer: {}",
            resp.text()
        );
        let body = resp.json();
        let events = body
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("GET {path}: no `events` array in {body}"));
        let next = body.get("next").and_then(Value::as_u64).or(after);
        (events, next)
    }

    /// Every event the enforcer holds, oldest first: each a `DecisionEvent` object with the
    /// record's `seq` and `received_unix_ms` added (see [`flatten_record`]).
    pub fn events(&self) -> Vec<Value> {
        self.event_records()
            .into_iter()
            .map(flatten_record)
            .collect()
    }

    /// The workers (`worker` of their events) that decided these decision ids, waiting up to 10 s
    /// for every id's event; after that, those found.
    pub fn workers_of(&self, ids: &[String]) -> std::collections::BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events();
            let found: BTreeMap<&str, &str> = events
                .iter()
                .filter_map(|e| Some((e["decision_id"].as_str()?, e["worker"].as_str()?)))
                .filter(|(id, _)| ids.iter().any(|x| x == id))
                .collect();
            if found.len() == ids.len() || Instant::now() > deadline {
                return found.values().map(|w| (*w).to_owned()).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first event with this `decision_id`, waiting up to `timeout` for it (the filter
    /// flushes events about every 250 ms); panics with what arrived instead.
    pub fn wait_for_event(&self, decision_id: &str, timeout: Duration) -> Value {
        self.wait_for_event_matching(
            &format!("decision_id == {decision_id:?}"),
            |e| e.get("decision_id").and_then(Value::as_str) == Some(decision_id),
            timeout,
        )
    }

    /// The first event (oldest first) for which `matches` holds, waiting up to `timeout`;
    /// `what` describes it in the panic message.
    pub fn wait_for_event_matching(
        &self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut cursor = None;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait_ms = remaining.as_millis().min(1000) as u64;
            let (page, next) = self.events_page(cursor, 1000, wait_ms);
            for e in page {
                if matches(&e) {
                    return e;
                }
                seen.push(summarize_event(&e));
            }
            cursor = next;
            if Instant::now() >= deadline {
                let last: Vec<&String> = seen.iter().rev().take(20).rev().collect();
                panic!(
                    "no event with {what} within {timeout:?}; {} other events arrived, the last:\n  {}\n\
                     ----- enforcer log -----\n{}\n----- envoy log -----\n{}",
                    seen.len(),
                    last.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("\n  "),
                    self.log_tail(Which::Enforcer),
                    self.log_tail(Which::Envoy),
                );
            }
            // The enforcer long-polls; this only guards against one that answers at once.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Stack::events`] as typed records (the enforcer's extra `seq` field is ignored).
    pub fn decision_events(&self) -> Vec<DecisionEvent> {
        self.events().iter().map(decision_event).collect()
    }

    /// Envoy's stats in plain text (`GET /stats` on the admin): one `name: value` per line.
    pub fn envoy_stats(&self) -> String {
        let resp = Request::get("/stats").send(self.admin());
        assert_eq!(
            resp.status,
            200,
            "GET /stats on Envoy admin: {}",
            resp.text()
        );
        resp.text()
    }

    /// One counter or gauge from [`Stack::envoy_stats`] by its full name, e.g.
    /// `http.agents.downstream_rq_2xx`, or a filter metric, which Envoy names
    /// `wasmcustom.<name>` (e.g. `wasmcustom.interlock.decisions.total`); `None` when Envoy does not have it.
    pub fn envoy_counter(&self, name: &str) -> Option<u64> {
        parse_envoy_stat(&self.envoy_stats(), name)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Envoy first, so it does not log a burst of upstream failures while the others stop.
        self.procs.sort_by_key(|p| match p.which {
            Which::Envoy => 0,
            Which::Enforcer => 1,
            Which::Upstream => 2,
        });
        stop_all(std::mem::take(&mut self.procs));
        let keep = std::env::var_os("INTERLOCK_KEEP_TMP").is_some_and(|v| !v.is_empty());
        if keep || std::thread::panicking() {
            eprintln!(
                "interlock-tests: kept the stack's logs and config in {}",
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("interlock-tests: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// SIGTERM every process, give them 2 s together, then SIGKILL the rest; reap all.
fn stop_all(mut procs: Vec<Proc>) {
    for p in &procs {
        // std's Child::kill sends SIGKILL only; `kill -TERM` lets Envoy and the daemons exit
        // cleanly (flush logs) without pulling in libc.
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        procs.retain_mut(|p| !matches!(p.child.try_wait(), Ok(Some(_))));
        if procs.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn probe_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<Response> {
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    http::exchange_on(stream, &[&Request::get(path).to_bytes()], Duration::ZERO).ok()
}

/// A new, empty directory `interlock-test-<pid>-<n>-<nanos>` under the system temp dir.
fn unique_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("interlock-test-{}-{n}-{nanos}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn summarize_event(e: &Value) -> String {
    let s = |p: &str| {
        e.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "{} rule={} action={} status={} {} {} agent={}",
        s("/decision_id"),
        s("/rule"),
        s("/action"),
        e.get("status")
            .map_or_else(|| "-".to_owned(), Value::to_string),
        s("/request/method"),
        s("/request/path"),
        s("/identity/agent"),
    )
}

/// The enforcer serves records `{"seq":N,"received_unix_ms":T,"event":{...}}`; this returns the
/// `event` object with the record's other members (`seq`, `received_unix_ms`) added where the
/// event has no member of that name. A value without an `event` object is returned as is.
pub fn flatten_record(record: Value) -> Value {
    let Value::Object(mut outer) = record else {
        return record;
    };
    match outer.remove("event") {
        Some(Value::Object(mut event)) => {
            for (k, v) in outer {
                event.entry(k).or_insert(v);
            }
            Value::Object(event)
        }
        Some(other) => {
            outer.insert("event".to_owned(), other);
            Value::Object(outer)
        }
        None => Value::Object(outer),
    }
}

/// An event from the enforcer API as the typed record the filter sent; panics naming what does
/// not fit the contract (`interlock_policies::DecisionEvent`).
pub fn decision_event(event: &Value) -> DecisionEvent {
    serde_json::from_value(event.clone())
        .unwrap_or_else(|e| panic!("event does not match DecisionEvent ({e}): {event}"))
}

/// The value of `name` in Envoy's plain-text stats (`name: value` lines).
fn parse_envoy_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (k, v) = line.split_once(": ")?;
        if k == name {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A demo JWT from `interlock token --agent A [--user U] [--session S] [--ttl SECS]`.
pub fn mint_token(
    agent: &str,
    user: Option<&str>,
    session: Option<&str>,
    ttl_secs: Option<u64>,
) -> String {
    require_artifact(&interlock_bin(), "the enforcer (interlock)");
    let mut cmd = Command::new(interlock_bin());
    cmd.current_dir(repo_root())
        .args(["token", "--agent", agent]);
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    if let Some(session) = session {
        cmd.args(["--session", session]);
    }
    if let Some(ttl) = ttl_secs {
        cmd.args(["--ttl", &ttl.to_string()]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run `interlock token`: {e}"));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && token.split('.').count() == 3,
        "`interlock token --agent {agent}` failed ({}) or printed no JWT; stdout: {token:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    token
}

/// Whether the built `interlock` has a working `serve` subcommand (`interlock serve --help`
/// succeeds and mentions `--listen`). For tests that must skip, loudly, while it is missing.
pub fn enforcer_serve_available() -> bool {
    Command::new(interlock_bin())
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--listen")
        })
}

/// The Envoy config `opts` describes, for `ports`: the four demo ports replaced (each must occur
/// exactly once), the wasm path made absolute (exactly once) or the wasm filter removed, and the
/// policy embedded when `opts.policy` is set.
pub fn render_envoy_config(opts: &StackOptions, ports: &Ports) -> anyhow::Result<String> {
    let mut yaml = fs::read_to_string(&opts.envoy_config)
        .with_context(|| format!("reading {}", opts.envoy_config.display()))?;
    for (demo, port) in [
        (Ports::DEMO.listener, ports.listener),
        (Ports::DEMO.admin, ports.admin),
        (Ports::DEMO.enforcer, ports.enforcer),
        (Ports::DEMO.upstream, ports.upstream),
    ] {
        yaml = replace_port(&yaml, demo, port)?;
    }
    if opts.with_filter {
        let wasm = filter_wasm();
        let needle = format!("filename: {DEMO_WASM_PATH}");
        let n = yaml.matches(&needle).count();
        if n != 1 {
            bail!("expected `{needle}` exactly once in the Envoy config, found it {n} times");
        }
        yaml = yaml.replace(&needle, &format!("filename: {}", wasm.display()));
    } else {
        yaml = strip_wasm_filter(&yaml)?;
    }
    if opts.policy.is_some() || opts.plugin_config.is_some() {
        let mut config = match &opts.plugin_config {
            Some(config) => config.clone(),
            None => embedded_plugin_config(&yaml)?,
        };
        if let Some(policy) = &opts.policy {
            let text = fs::read_to_string(policy)
                .with_context(|| format!("reading the policy {}", policy.display()))?;
            let policy: Value = serde_json::from_str(&text)
                .with_context(|| format!("the policy {} is not JSON", policy.display()))?;
            let Some(object) = config.as_object_mut() else {
                bail!("the plugin configuration is not a JSON object: {config}");
            };
            object.insert("policy".to_owned(), policy);
        }
        yaml = embed_plugin_config(&yaml, &serde_json::to_string_pretty(&config)?)?;
    }
    Ok(yaml)
}

/// Replace `port_value: <from>` (not followed by another digit) with `port_value: <to>`; it must
/// occur exactly once.
fn replace_port(yaml: &str, from: u16, to: u16) -> anyhow::Result<String> {
    let needle = format!("port_value: {from}");
    let mut out = String::with_capacity(yaml.len());
    let mut rest = yaml;
    let mut found = 0;
    while let Some(i) = rest.find(&needle) {
        let end = i + needle.len();
        let boundary = !rest[end..].starts_with(|c: char| c.is_ascii_digit());
        out.push_str(&rest[..i]);
        if boundary {
            found += 1;
            out.push_str(&format!("port_value: {to}"));
        } else {
            out.push_str(&needle);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    if found != 1 {
        bail!("expected `{needle}` exactly once in the Envoy config, found it {found} times");
    }
    Ok(out)
}

/// Remove the list item `- name: envoy.filters.http.wasm` (and everything indented under it).
fn strip_wasm_filter(yaml: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == "- name: envoy.filters.http.wasm")
        .map(|(i, _)| i)
        .collect();
    let [start] = starts.as_slice() else {
        bail!(
            "expected one `- name: envoy.filters.http.wasm` item, found {}",
            starts.len()
        );
    };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[*start]);
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && indent(l) <= base)
        .map_or(lines.len(), |p| start + 1 + p);
    let mut out: Vec<&str> = lines[..*start].to_vec();
    out.extend_from_slice(&lines[end..]);
    Ok(out.join("\n") + "\n")
}

/// The line numbers of the two plugin-configuration markers (each must occur exactly once).
fn plugin_config_markers(lines: &[&str]) -> anyhow::Result<(usize, usize)> {
    let find = |marker: &str| -> anyhow::Result<usize> {
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(marker))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            _ => Err(anyhow!(
                "expected `{marker}` exactly once in the Envoy config, found it {} times",
                hits.len()
            )),
        }
    };
    let (begin, end) = (find(PLUGIN_CONFIG_BEGIN)?, find(PLUGIN_CONFIG_END)?);
    if end <= begin {
        bail!("`{PLUGIN_CONFIG_END}` comes before `{PLUGIN_CONFIG_BEGIN}`");
    }
    Ok((begin, end))
}

/// The plugin configuration embedded between the markers (a `value: |` block of JSON).
pub fn embedded_plugin_config(yaml: &str) -> anyhow::Result<Value> {
    let lines: Vec<&str> = yaml.lines().collect();
    let (begin, end) = plugin_config_markers(&lines)?;
    let block = &lines[begin + 1..end];
    let Some((first, body)) = block.split_first() else {
        bail!("nothing between the plugin-configuration markers");
    };
    if first.trim() != "value: |" {
        bail!("expected `value: |` after `{PLUGIN_CONFIG_BEGIN}`, found {first:?}");
    }
    let text = body.join("\n");
    serde_json::from_str(&text).context("the embedded plugin configuration is not JSON")
}

/// Replace the text between the plugin-configuration markers with `value: |` and `config`.
fn embed_plugin_config(yaml: &str, config: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let (begin, end) = plugin_config_markers(&lines)?;
    let indent = &lines[begin][..lines[begin].len() - lines[begin].trim_start().len()];
    let mut out: Vec<String> = lines[..=begin].iter().map(|l| (*l).to_owned()).collect();
    out.push(format!("{indent}value: |"));
    out.extend(config.lines().map(|l| {
        if l.is_empty() {
            String::new()
        } else {
            format!("{indent}  {l}")
        }
    }));
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    Ok(out.join("\n") + "\n")
}

/// Run `envoy --mode validate -c <path>` from the repository root: `Ok(())` when Envoy accepts
/// the config, else `Err` with its status and output.
pub fn validate_envoy_config(path: &Path) -> Result<(), String> {
    require_artifact(&envoy_bin(), "Envoy");
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(path)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", envoy_bin().display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate -c {} failed ({}):\n{}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str =
        "a:\n  port_value: 9901\n  port_value: 10000\n  port_value: 9090\n  port_value: 8080\n";

    #[test]
    fn replaces_each_port_once_and_respects_digit_boundaries() {
        let y = replace_port("port_value: 80801\nport_value: 8080\n", 8080, 1234).unwrap();
        assert_eq!(y, "port_value: 80801\nport_value: 1234\n");
        let err = replace_port("port_value: 8080\nport_value: 8080\n", 8080, 1).unwrap_err();
        assert!(err.to_string().contains("found it 2 times"), "{err}");
        assert!(replace_port(DEMO, 1111, 1).is_err());
    }

    #[test]
    fn strips_only_the_wasm_filter_item() {
        let y = "f:\n- name: a\n  x: 1\n- name: envoy.filters.http.wasm\n  typed_config:\n    deep: 1\n\n  more: 2\n- name: envoy.filters.http.router\nz: 1\n";
        assert_eq!(
            strip_wasm_filter(y).unwrap(),
            "f:\n- name: a\n  x: 1\n- name: envoy.filters.http.router\nz: 1\n"
        );
        assert!(strip_wasm_filter("x: 1\n").is_err());
    }

    #[test]
    fn embeds_a_policy_between_the_markers() {
        let y = "c:\n  # BEGIN interlock plugin configuration (x)\n  value: |\n    {}\n  # END interlock plugin configuration\nd: 1\n";
        assert_eq!(
            embed_plugin_config(y, "{\n  \"a\": 1\n}\n").unwrap(),
            "c:\n  # BEGIN interlock plugin configuration (x)\n  value: |\n    {\n      \"a\": 1\n    }\n  # END interlock plugin configuration\nd: 1\n"
        );
    }

    #[test]
    fn swaps_the_policy_and_keeps_the_other_plugin_settings() {
        let dir = unique_temp_dir().unwrap();
        let policy = dir.join("p.json");
        fs::write(&policy, r#"{"version": "test-policy-1"}"#).unwrap();
        let opts = StackOptions {
            policy: Some(policy),
            plugin_config: Some(serde_json::json!({"policy": {}, "hold_headers": false})),
            ..StackOptions::default()
        };
        let yaml = render_envoy_config(&opts, &Ports::DEMO).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            embedded_plugin_config(&yaml).unwrap(),
            serde_json::json!({"policy": {"version": "test-policy-1"}, "hold_headers": false})
        );
    }

    #[test]
    fn the_demo_config_embeds_a_policy() {
        let yaml = fs::read_to_string(demo_envoy_config()).unwrap();
        let config = embedded_plugin_config(&yaml).unwrap();
        assert!(
            config.get("policy").is_some_and(Value::is_object),
            "{config}"
        );
    }

    #[test]
    fn renders_the_demo_config_for_other_ports() {
        let ports = Ports {
            listener: 20000,
            admin: 20001,
            enforcer: 20002,
            upstream: 20003,
        };
        let yaml = render_envoy_config(&StackOptions::default(), &ports).unwrap();
        for p in [20000, 20001, 20002, 20003] {
            assert!(
                yaml.contains(&format!("port_value: {p}\n"))
                    || yaml.contains(&format!("port_value: {p} ")),
                "{p}"
            );
        }
        assert!(yaml.contains(&format!("filename: {}", filter_wasm().display())));
        let bare = render_envoy_config(
            &StackOptions::default().without_filter_for_harness_self_test(),
            &ports,
        )
        .unwrap();
        assert!(
            !bare.contains("envoy.filters.http.wasm") && bare.contains("envoy.filters.http.router")
        );
    }

    #[test]
    fn flattens_enforcer_records() {
        let r = serde_json::json!({"seq": 3, "received_unix_ms": 9, "event": {"decision_id": "d", "seq": 1}});
        assert_eq!(
            flatten_record(r),
            serde_json::json!({"decision_id": "d", "seq": 1, "received_unix_ms": 9})
        );
        let flat = serde_json::json!({"decision_id": "d", "seq": 2});
        assert_eq!(flatten_record(flat.clone()), flat);
    }

    #[test]
    fn parses_envoy_plain_stats() {
        let s = "cluster.a.upstream_rq_total: 7\nhttp.agents.downstream_rq_2xx: 3\nh: P0(nan,1)\n";
        assert_eq!(
            parse_envoy_stat(s, "http.agents.downstream_rq_2xx"),
            Some(3)
        );
        assert_eq!(parse_envoy_stat(s, "http.agents"), None);
    }
}
