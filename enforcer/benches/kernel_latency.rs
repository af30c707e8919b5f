// A bench program: a failed unwrap is a failed run, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! The enforcer's kernel path, measured on this kernel with the real daemon (issue 7's targets):
//!
//! 1. **Event to refused connect** (target: p99 at most 1 ms). A workload (a managed cgroup, via
//!    `interlock exec`) holds one connection to a stand-in proxy (this process) and calls
//!    `connect()` in a loop; this process posts, as Envoy does (HTTP/1.1 keep-alive), a deny
//!    that quarantines the workload. Measured: from just before the POST is written to the
//!    workload's first `EPERM` (CLOCK_MONOTONIC on both sides), and each hop on the way: the
//!    handler's entry (the receipt's `received_unix_us`), the quarantine entry's write (the
//!    receipt's `silenced.monotonic_ns`), the EPERM; and whether the workload's connect() before
//!    the refused one was caught in flight (past the connect hook when the entry landed, its SYN
//!    then dropped: it waits out its timeout). Released between iterations.
//! 2. **Silencing, then destroying, a workload's 10,000 connections** (target: p99 at most
//!    10 ms). The workload opens 10,000 connections to this process, and one more that it
//!    echoes; a deny with `terminate: workload` and `quarantine: block: all` arrives. The
//!    quarantine entry silences every socket of the workload at once (the cgroup_skb programs
//!    drop their packets); the sockets are then destroyed. Measured: the receipt's times to
//!    silenced and to the last socket destroyed; from before the POST, the first byte sent on the
//!    echo connection that is never echoed (the probe) and the reset of its destruction as its other
//!    end sees it; the workload checks that every one of its sockets was aborted
//!    (ECONNABORTED). Released between iterations.
//!
//!    Part 2 runs once per way of destroying the sockets, side by side (one enforcer each, with
//!    its own cgroup root and workload; the iterations take turns, so load on the machine falls
//!    on all alike): `netlink` (a dump of the workload's sockets, then SOCK_DESTROY in batches),
//!    `iterator` (the BPF TCP iterator calling bpf_sock_destroy) and `iterator-2t` (two threads
//!    reading it, each destroying half). Each receipt must name the path the enforcer was told
//!    to use (`sockets_destroyed_with`).
//!
//!    What this measures, beside the enforcer: the peer (this process) is on the same host, over
//!    loopback, so each reset a destruction sends is received, and its socket torn down, in the
//!    softirq of the very CPU that sent it, inside the abort (perf: about 30% of the destroying
//!    thread's time). With a remote peer that work happens on the peer's machine; the enforcer's
//!    own cost per socket (build and send the reset, unhash and close the socket) remains.
//!
//! Needs root, cgroup v2 and BPF; prints `SKIPPED: <reason>` otherwise. Creates its own cgroup
//! roots and pin directories and removes them (the enforcers run with `--cleanup-on-exit`).
//!
//! `cargo bench -p interlock-enforcer --bench kernel_latency` (`make bench` writes the output
//! to bench/enforcer.txt). ITERATIONS: `BENCH_CONNECT_ITERATIONS` (default 300),
//! `BENCH_DESTROY_ITERATIONS` (default 50, per path), `BENCH_CONNECTIONS` (default 10000),
//! `BENCH_DESTROY_PATHS` (default `netlink,iterator,iterator-2t@netns-ehash,iterator-2t`). A path
//! written `NAME@netns` or `NAME@netns-ehash` runs its workload in a network namespace of its
//! own, as a pod does, whose sockets are in the host's TCP hash or in one of its own of
//! `BENCH_CHILD_EHASH` buckets (default 16384). A path written `NAME=BINARY` is run by that build
//! of `interlock` instead of this one's, side by side with the others: a before/after
//! comparison in one run; part 1 then also runs once per binary, taking turns.
//! `BENCH_EVENT_PRIORITY` (the enforcers' `--event-priority`; default: theirs),
//! `BENCH_TRACE_SLOW` (print each part-1 iteration whose event reached the handler over 1 ms after
//! the POST, with the POST's CLOCK_MONOTONIC time, to find it in a `perf sched record -k
//! CLOCK_MONOTONIC -a` trace of the run).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use interlock_enforcer::kernel::sys::{monotonic_ns, raise_nofile_limit};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_interlock");
const ROLE_ENV: &str = "INTERLOCK_BENCH_ROLE";
const EPERM: i32 = 1;
const ECONNABORTED: i32 = 103;
/// The workload's connect() timeout in part 1 (an agent's HTTP client has one too).
const SPIN_CONNECT_TIMEOUT_MS: u64 = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("workload") {
        workload();
        return;
    }
    if let Some(reason) = skip_reason() {
        println!("SKIPPED: enforcer kernel-path benchmark: {reason}");
        return;
    }
    let connections = env_usize("BENCH_CONNECTIONS", 10_000);
    let nofile = raise_nofile_limit(u64::try_from(connections).unwrap() * 2 + 1_000).unwrap();
    let paths: Vec<DestroyPath> = std::env::var("BENCH_DESTROY_PATHS")
        // The default path last: scripts/bench.py reads the last per-path table as the default's.
        .unwrap_or_else(|_| "netlink,iterator,iterator-2t@netns-ehash,iterator-2t".to_owned())
        .split(',')
        .map(|p| DestroyPath::parse(p.trim()))
        .collect();
    let scratches: Vec<Scratch> = paths.iter().enumerate().map(|(k, p)| Scratch::new(&format!("{k}-{}", p.name))).collect();
    let result = std::panic::catch_unwind(|| run(&scratches, &paths, connections));
    drop(scratches);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    eprintln!("(RLIMIT_NOFILE raised to {nofile})");
}

/// One way of destroying a workload's sockets, as the enforcer is told (`--socket-destroy`),
/// and the enforcer binary that does it.
#[derive(Clone)]
struct DestroyPath {
    name: &'static str,
    flag: &'static str,
    threads: u16,
    /// What the receipt's `sockets_destroyed_with` must say.
    receipt: &'static str,
    /// The `interlock` binary: this build's, or another build's to compare with (`name=BINARY`).
    bin: String,
    /// `name`, or `name (BINARY)` for another build.
    label: String,
    /// Where the workload runs: `None`, in this process's network namespace (over loopback);
    /// otherwise in a namespace of its own, as a pod does.
    netns: Option<PodHash>,
}

/// How a workload's own network namespace keeps its TCP sockets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PodHash {
    /// In the host's hash table (`net.ipv4.tcp_child_ehash_entries` 0, the kernel's default):
    /// a walk of it still visits every bucket, but touches only this namespace's sockets.
    Shared,
    /// A hash table of its own, of this many buckets (`tcp_child_ehash_entries` set when the
    /// namespace is created, as a node sysctl would).
    Own(u32),
}

impl DestroyPath {
    /// `netlink`, `iterator` or `iterator-2t`, optionally `=BINARY`: that path run by another
    /// build of the enforcer (a before/after comparison in one run, taking turns).
    fn parse(spec: &str) -> DestroyPath {
        let (name, bin) = match spec.split_once('=') {
            Some((name, bin)) => (name, Some(bin)),
            None => (spec, None),
        };
        let (name, netns) = match name.split_once('@') {
            None => (name, None),
            Some((name, "netns")) => (name, Some(PodHash::Shared)),
            Some((name, "netns-ehash")) => (name, Some(PodHash::Own(u32::try_from(env_usize("BENCH_CHILD_EHASH", 16_384)).unwrap()))),
            Some((_, other)) => panic!("BENCH_DESTROY_PATHS: unknown placement @{other} (@netns, @netns-ehash)"),
        };
        let (name, flag, threads, receipt) = match name {
            "netlink" => ("netlink", "netlink", 1, "netlink"),
            "iterator" => ("iterator", "iterator", 1, "bpf-iterator"),
            "iterator-2t" => ("iterator-2t", "iterator", 2, "bpf-iterator"),
            other => panic!("BENCH_DESTROY_PATHS: unknown path {other:?} (netlink, iterator, iterator-2t, each optionally =BINARY)"),
        };
        let mut label = bin.map_or_else(|| name.to_owned(), |b| format!("{name} ({b})"));
        match netns {
            None => {}
            Some(PodHash::Shared) => label.push_str(", workload in its own netns (shared hash)"),
            Some(PodHash::Own(n)) => label.push_str(&format!(", workload in its own netns ({n}-bucket hash)")),
        }
        DestroyPath { name, flag, threads, receipt, bin: bin.unwrap_or(BIN).to_owned(), label, netns }
    }

    fn describe(&self) -> String {
        let how = match (self.flag, self.threads) {
            ("netlink", _) => "`--socket-destroy netlink`: one sock_diag dump of the workload's sockets (filtered by cgroup in the kernel), then SOCK_DESTROY requests, 64 per netlink message".to_owned(),
            (_, 1) => "`--socket-destroy iterator`: one read of a BPF TCP iterator (iter/tcp) that matches each socket's cgroup and calls the bpf_sock_destroy kfunc".to_owned(),
            (_, n) => format!("`--socket-destroy iterator --socket-destroy-threads {n}`: {n} threads each read the BPF TCP iterator and destroy the sockets of their shard (socket cookie modulo {n})"),
        };
        match self.netns {
            None => how,
            Some(hash) => format!(
                "{how}. The workload runs in a network namespace of its own, as a pod does (`ip netns`, reaching this process through a veth pair), {}; the enforcer finds the namespace by the cookie its programs saw the workload connect from and destroys the sockets from inside it",
                match hash {
                    PodHash::Shared => "whose sockets are in the host's TCP hash table (the kernel's default)".to_owned(),
                    PodHash::Own(n) => format!("with a TCP hash table of its own ({n} buckets: `net.ipv4.tcp_child_ehash_entries` set before it was created)"),
                }
            ),
        }
    }
}

fn run(scratches: &[Scratch], paths: &[DestroyPath], connections: usize) {
    let enforcers: Vec<Enforcer> = scratches.iter().zip(paths).map(|(s, p)| Enforcer::start(s, p)).collect();
    let nets: Vec<Option<PodNet>> =
        paths.iter().enumerate().map(|(k, p)| p.netns.map(|hash| PodNet::create(k, hash))).collect();
    let proxies: Vec<Proxy> =
        nets.iter().map(|n| Proxy::start(n.as_ref().map_or(std::net::Ipv4Addr::LOCALHOST, |n| n.host))).collect();
    let mut workloads: Vec<Workload> =
        scratches.iter().zip(&nets).map(|(s, n)| Workload::start(&s.root, "bench", n.as_ref())).collect();

    let kernel = uname();
    println!("# Enforcer kernel path (issue 7), {}", kernel);
    println!();
    println!("`cargo bench -p interlock-enforcer --bench kernel_latency`: the real `interlock serve --kernel on`, a managed");
    println!(
        "workload (cgroup) on loopback, {} cores, load average {} at the start. Times in microseconds.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!();

    // --- 1. event -> refused connect, once per enforcer binary, taking turns ---
    // On a thread of its own that stands in for the proxy, which runs on CPUs of its own in
    // production: ahead of the workload's threads, so what is measured when they burn every core
    // is the enforcer. (Its own thread: threads it would start inherit its scheduling.)
    let builds = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let poster = interlock_enforcer::kernel::sys::prioritize_current_thread();
                println!("This process's thread that posts the events in part 1 (standing in for the proxy) runs {poster}.");
                println!();
                connect_part(&enforcers, &mut workloads, paths, &proxies)
            })
            .join()
            .unwrap()
    });

    // --- 2. silencing, then destroying, 10,000 connections, once per path, taking turns ---
    for &v in &builds {
        workloads[v].ask("close");
    }
    for p in &proxies {
        p.clear();
    }
    let iterations = env_usize("BENCH_DESTROY_ITERATIONS", 50);
    let mut runs: Vec<DestroyRuns> = paths.iter().map(|_| DestroyRuns::default()).collect();
    let mut posts: Vec<Http> = enforcers.iter().map(Enforcer::keep_alive).collect();
    for i in 0..iterations {
        for (v, path) in paths.iter().enumerate() {
            let (enforcer, w, post, m) = (&enforcers[v], &mut workloads[v], &mut posts[v], &mut runs[v]);
            destroy_once(i, path, enforcer, w, post, &proxies[v], m, connections);
        }
    }
    let targets: Vec<String> = paths.iter().map(|p| p.label.clone()).collect();
    println!(
        "## Destroying the sockets of a workload with {connections} connections (target: p99 <= 10,000 us), by path, {iterations} iterations each"
    );
    println!();
    println!("Event received -> last socket destroyed, from the enforcer's receipt (which names the path it used). The");
    println!("paths ran side by side, one enforcer each, taking turns iteration by iteration: {}.", targets.join(", "));
    println!();
    println!("| path | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (path, m) in paths.iter().zip(runs.iter_mut()) {
        row(&path.label, &mut m.destroyed.clone());
    }
    println!();
    for (path, m) in paths.iter().zip(runs.iter_mut()) {
        print_destroy(path, m, iterations, connections);
    }
    drop(posts);
    drop(workloads); // each sends `exit`, which has no answer
    for e in enforcers {
        e.stop();
    }
    drop(nets);
}

fn connect_part(enforcers: &[Enforcer], workloads: &mut [Workload], paths: &[DestroyPath], proxies: &[Proxy]) -> Vec<usize> {
    let iterations = env_usize("BENCH_CONNECT_ITERATIONS", 300);
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: nothing listens
    // The first enforcer of each binary.
    let mut builds: Vec<usize> = Vec::new();
    for (v, p) in paths.iter().enumerate() {
        if !builds.iter().any(|&b| paths[b].bin == p.bin) {
            builds.push(v);
        }
    }
    let mut downstreams = Vec::new();
    let mut posts: Vec<Http> = Vec::new();
    for &v in &builds {
        downstreams.push(workloads[v].ask(&format!("open 1 {}", proxies[v].addr)).strip_prefix("ok ").unwrap().parse::<SocketAddr>().unwrap());
        posts.push(enforcers[v].keep_alive());
    }
    // Then again with the workload burning every core besides (as many spinning threads as
    // CPUs, on top of the connect() loop): an agent must not be able to delay its own
    // quarantine by keeping the CPUs busy.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for burn in [0, cpus] {
        let mut runs: Vec<ConnectRuns> = builds.iter().map(|_| ConnectRuns::default()).collect();
        for i in 0..iterations {
            for (k, &v) in builds.iter().enumerate() {
                if burn > 0 {
                    assert_eq!(workloads[v].ask(&format!("burn {burn}")), "burning");
                }
                let id = format!("bench-connect-{}-{v}-burn{burn}-{i}", std::process::id());
                connect_once(&id, &enforcers[v], &mut workloads[v], &mut posts[k], &proxies[v], closed_port, downstreams[k], &mut runs[k]);
                if burn > 0 {
                    assert_eq!(workloads[v].ask("unburn"), "ok");
                }
            }
        }
        for (k, &v) in builds.iter().enumerate() {
            let mut what = String::new();
            if burn > 0 {
                what.push_str(&format!(", the workload burning every core ({burn} more threads spinning)"));
            }
            if builds.len() > 1 {
                what.push_str(&format!(", enforcer {}", paths[v].bin));
            }
            print_connect(&mut runs[k], iterations, &what);
        }
        if builds.len() > 1 {
            println!("The enforcers above ran side by side, taking turns iteration by iteration.");
            println!();
        }
    }

    builds
}

#[allow(clippy::too_many_arguments)]
fn connect_once(id: &str, enforcer: &Enforcer, w: &mut Workload, post: &mut Http, proxy: &Proxy, closed_port: SocketAddr, downstream: SocketAddr, m: &mut ConnectRuns) {
    let event = event(id, json!({"quarantine": {"duration_secs": 60, "block": "all"}}), downstream, proxy.addr);
    assert_eq!(w.ask(&format!("spin {closed_port} 5000")), "spinning");
    let (t0_unix_us, t0) = (unix_us(), monotonic_ns());
    post.post_events(&event);
    let answer = w.line();
    // refused <at> <attempts> <its start> <previous start> <previous end> <previous outcome>
    let f: Vec<&str> = answer.strip_prefix("refused ").unwrap_or_else(|| panic!("{id}: {answer}")).split(' ').collect();
    let num = |k: usize| -> u64 { f[k].parse().unwrap_or_else(|_| panic!("{id}: {answer}")) };
    let (refused_at, prev_start, prev_end, prev_how) = (num(0), num(3), num(4), f[5]);
    let receipt = enforcer.receipt(id);
    assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
    let in_map = receipt["silenced"]["monotonic_ns"].as_u64().unwrap_or_else(|| panic!("{receipt:#}"));
    m.e2e.push(refused_at.saturating_sub(t0) / 1_000);
    m.inside.push(receipt["silenced"]["received_to_silenced_us"].as_u64().unwrap());
    m.done.push(receipt["received_to_kernel_us"].as_u64().unwrap());
    m.to_received.push(receipt["received_unix_us"].as_u64().unwrap().saturating_sub(t0_unix_us));
    let to_received = receipt["received_unix_us"].as_u64().unwrap().saturating_sub(t0_unix_us);
    if std::env::var_os("BENCH_TRACE_SLOW").is_some() && to_received > 1_000 {
        // CLOCK_MONOTONIC, as `perf sched record -k CLOCK_MONOTONIC` stamps its events.
        eprintln!("slow: POST written at monotonic {}.{:06} s, event received {to_received} us later", t0 / 1_000_000_000, t0 % 1_000_000_000 / 1_000);
    }
    m.to_map.push(in_map.saturating_sub(t0) / 1_000);
    m.map_to_refused.push(refused_at.saturating_sub(in_map) / 1_000);
    // The attempt before the refused one was under way when the entry landed and was not
    // answered: its SYN (or its retries) dropped by the egress filter, it waited out the
    // workload's connect timeout, or the enforcer aborted it (ECONNABORTED).
    let straddles = prev_start <= in_map && prev_end >= in_map;
    match prev_how {
        "timeout" if straddles => m.in_flight_timed_out += 1,
        "errno-103" if straddles => {
            m.in_flight_aborted += 1;
            m.map_to_aborted.push(prev_end.saturating_sub(in_map) / 1_000);
        }
        _ => m.e2e_not_in_flight.push(refused_at.saturating_sub(t0) / 1_000),
    }
    enforcer.release("bench");
}

fn print_connect(m: &mut ConnectRuns, iterations: usize, build: &str) {
    let ConnectRuns { e2e, inside, done, to_received, to_map, map_to_refused, e2e_not_in_flight, in_flight_timed_out, in_flight_aborted, map_to_aborted } = m;
    println!("## Event to refused connect() (target: p99 <= 1,000 us), {iterations} iterations{build}");
    println!();
    println!("The workload calls connect() (with a {SPIN_CONNECT_TIMEOUT_MS} ms timeout, like an HTTP client) in a loop to a closed port");
    println!("(each refused at once with a reset) while this process posts the deny. Per hop, each timestamp taken where");
    println!("it happens: the POST's first byte written (this process), the handler's entry and the quarantine entry's");
    println!("write (the enforcer's receipt), the first EPERM (the workload).");
    println!();
    println!("| measured | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    row("POST written -> first EPERM in the workload", e2e);
    row("POST written -> quarantine in the map (from then on every connect() is refused)", to_map);
    row("POST written -> event received by the handler (CLOCK_REALTIME both ends)", to_received);
    row("event received -> quarantine in the map (receipt)", inside);
    row("quarantine in the map -> first EPERM in the workload", map_to_refused);
    row("event received -> the enforcer's kernel work done (receipt: quarantine and terminations)", done);
    if !e2e_not_in_flight.is_empty() {
        row("POST written -> first EPERM, iterations with no connect() caught in flight", e2e_not_in_flight);
    }
    if !map_to_aborted.is_empty() {
        row("quarantine in the map -> the connect() caught in flight aborted (ECONNABORTED)", map_to_aborted);
    }
    println!();
    println!(
        "Connects caught in flight: in {} of {iterations} iterations the workload's connect() before the refused one had passed the",
        *in_flight_timed_out + *in_flight_aborted
    );
    println!("connect hook before the entry landed, and its SYN was then dropped by the egress filter (the quarantine");
    println!(
        "silences it). {in_flight_timed_out} of them waited out the workload's {SPIN_CONNECT_TIMEOUT_MS} ms connect timeout (their first EPERM is {SPIN_CONNECT_TIMEOUT_MS} ms late by"
    );
    println!("construction); {in_flight_aborted} were aborted by the enforcer (ECONNABORTED) after the entry's write (row above).");
    println!("Percentiles by nearest rank (with {iterations} iterations, p99 is the {}-th smallest).", (iterations * 99).div_ceil(100));
    println!();
}

#[allow(clippy::too_many_arguments)]
fn destroy_once(i: usize, path: &DestroyPath, enforcer: &Enforcer, w: &mut Workload, post: &mut Http, proxy: &Proxy, m: &mut DestroyRuns, connections: usize) {
    {
        let first: SocketAddr = w.ask(&format!("open {connections} {}", proxy.addr)).strip_prefix("ok ").unwrap().parse().unwrap();
        proxy.wait_for(connections);
        // One more connection of the workload, which echoes what this process sends on it.
        let echo = proxy.echo_connection(w);
        let id = format!("bench-destroy-{}-{}-{i}", std::process::id(), path.name);
        let kernel = json!({"terminate": "workload", "quarantine": {"duration_secs": 60, "block": "all"}});
        let event = event(&id, kernel, first, proxy.addr);
        let prober = Prober::start(echo);
        let (t0_unix_us, t0_mono) = (unix_us(), monotonic_ns());
        post.post_events(&event);
        let receipt = enforcer.receipt(&id);
        assert_eq!(receipt["outcome"], "enforced", "{receipt:#}");
        assert_eq!(receipt["sockets_destroyed_with"], path.receipt, "iteration {i} of {}: {:#}", path.name, receipt["errors"]);
        let probed = prober.finish();
        let reset_at = probed.reset_at.unwrap_or_else(|| panic!("iteration {i}: no reset on the probe connection: {probed:?}"));
        // Nothing passes from the first byte never echoed on; when the probe's socket is among
        // the first destroyed (and the prober was not scheduled in between), from its reset.
        let quiet_at = match probed.silent_at {
            Some(t) if t <= reset_at => {
                m.silent_first += 1;
                t
            }
            _ => reset_at,
        };
        m.probe_quiet.push(quiet_at.saturating_sub(t0_mono) / 1_000);
        m.probe_reset.push(reset_at.saturating_sub(t0_mono) / 1_000);
        m.silenced.push(receipt["silenced"]["received_to_silenced_us"].as_u64().unwrap_or_else(|| panic!("{receipt:#}")));
        m.destroyed.push(receipt["received_to_destroyed_us"].as_u64().unwrap());
        m.e2e_destroyed.push(receipt["kernel_unix_us"].as_u64().unwrap().saturating_sub(t0_unix_us));
        let check = w.ask("check");
        let destroyed = receipt["sockets_destroyed"].as_u64().unwrap();
        assert_eq!(check, format!("aborted {connections} of {connections}"), "iteration {i}: receipt says {destroyed} destroyed");
        m.counts.push(destroyed);
        w.ask("close");
        proxy.clear();
        enforcer.release("bench");
    }
}

fn print_destroy(path: &DestroyPath, m: &mut DestroyRuns, iterations: usize, connections: usize) {
    println!(
        "## Silencing, then destroying, the sockets of a workload with {connections} connections (target: p99 <= 10,000 us), path {}, {iterations} iterations",
        path.label
    );
    println!();
    println!("{}.", path.describe());
    println!();
    println!("A deny with `terminate: workload` and `quarantine: block: all`. The quarantine entry is one map write; from");
    println!("then on the cgroup_skb programs drop every packet of the workload's sockets (only the resets of the");
    println!("destruction leave). The probe: one more workload connection that echoes; this process sends it a byte and");
    println!("waits for the echo, again and again, from before the POST; silent = the send time of the first byte never");
    println!("echoed (or, when the probe's own socket was among the first destroyed, its reset); reset = this process's");
    println!("end saw the reset of the probe socket's destruction.");
    println!();
    println!("| measured | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    row("event received -> silenced: quarantine in the map (receipt)", &mut m.silenced);
    row("POST written -> probe passes nothing more (first byte never echoed, or its reset)", &mut m.probe_quiet);
    row("event received -> last socket destroyed (receipt)", &mut m.destroyed);
    row("POST written -> last socket destroyed", &mut m.e2e_destroyed);
    row("POST written -> probe's end sees the reset", &mut m.probe_reset);
    println!();
    println!(
        "The probe went silent while its socket was still open (a byte sent, never echoed, before the reset) in {} of {iterations} iterations; in the others its socket was destroyed before the prober sent again.",
        m.silent_first
    );
    println!(
        "Every iteration: the probe echoed before the POST, the receipt counted {} sockets destroyed (the {connections} and the probe) and the workload found all {connections} of its sockets aborted (ECONNABORTED).",
        m.counts.first().copied().unwrap_or(0)
    );
    assert!(m.counts.iter().all(|&d| d == u64::try_from(connections).unwrap() + 1), "{:?}", m.counts);
    println!("Percentiles by nearest rank (with {iterations} iterations, p99 is the {}-th smallest).", (iterations * 99).div_ceil(100));
    println!();
}

/// Part 1's figures, one value per iteration (µs), and how many iterations caught a connect()
/// in flight.
#[derive(Default)]
struct ConnectRuns {
    e2e: Vec<u64>,
    inside: Vec<u64>,
    done: Vec<u64>,
    to_received: Vec<u64>,
    to_map: Vec<u64>,
    map_to_refused: Vec<u64>,
    e2e_not_in_flight: Vec<u64>,
    in_flight_timed_out: usize,
    in_flight_aborted: usize,
    /// Per connect caught in flight and aborted: from the quarantine's map write to its
    /// ECONNABORTED in the workload.
    map_to_aborted: Vec<u64>,
}

/// Part 2's figures, one value per iteration.
#[derive(Default)]
struct DestroyRuns {
    silenced: Vec<u64>,
    probe_quiet: Vec<u64>,
    silent_first: usize,
    destroyed: Vec<u64>,
    e2e_destroyed: Vec<u64>,
    probe_reset: Vec<u64>,
    counts: Vec<u64>,
}

/// What the probe saw (CLOCK_MONOTONIC ns).
#[derive(Debug, Default)]
struct Probed {
    echoes: u64,
    /// Send time of the first byte never echoed.
    silent_at: Option<u64>,
    /// When this end saw the reset (or EOF).
    reset_at: Option<u64>,
    /// How the connection ended.
    end: String,
}

/// Sends a byte on the workload's echo connection and waits for it, until the connection dies.
struct Prober {
    handle: std::thread::JoinHandle<Probed>,
}

impl Prober {
    /// An echo not back within this long is taken as silence unless it arrives later.
    const ECHO_WAIT: Duration = Duration::from_millis(20);

    fn start(mut s: TcpStream) -> Prober {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Self::ECHO_WAIT)).unwrap();
        let (ready_tx, ready) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut p = Probed::default();
            let mut b = [0u8; 64];
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut pending: Option<u64> = None; // send time of the byte not yet echoed
            while Instant::now() < deadline {
                if pending.is_none() {
                    let t = monotonic_ns();
                    if let Err(e) = s.write_all(b"x") {
                        p.reset_at = Some(monotonic_ns());
                        p.end = format!("write: {e}");
                        break;
                    }
                    pending = Some(t);
                }
                match s.read(&mut b) {
                    Ok(0) => {
                        p.reset_at = Some(monotonic_ns());
                        p.end = "eof".to_owned();
                        break;
                    }
                    Ok(n) => {
                        // An echo (a late one too: then it was no silence).
                        if p.echoes == 0 {
                            let _ = ready_tx.send(());
                        }
                        p.echoes += n as u64;
                        p.silent_at = None;
                        pending = None;
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        // Keep waiting for this byte; remember when it was sent.
                        if p.silent_at.is_none() {
                            p.silent_at = pending;
                        }
                    }
                    Err(e) => {
                        p.reset_at = Some(monotonic_ns());
                        p.end = format!("read: {e}");
                        break;
                    }
                }
            }
            // A byte sent and never echoed before the reset counts too: from its sending on,
            // nothing passed.
            if p.silent_at.is_none() {
                p.silent_at = pending;
            }
            p
        });
        // Echoing before the decision: the loop runs, and the connection passes data.
        ready.recv_timeout(Duration::from_secs(10)).expect("the probe connection echoes before the decision");
        Prober { handle }
    }

    fn finish(self) -> Probed {
        self.handle.join().unwrap()
    }
}

fn row(what: &str, values: &mut [u64]) {
    values.sort_unstable();
    let pct = |p: usize| {
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let rank = (values.len() * p).div_ceil(100).max(1);
        values[rank - 1]
    };
    println!("| {what} | {} | {} | {} | {} |", pct(50), pct(90), pct(99), values[values.len() - 1]);
}

fn unix_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

fn uname() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Linux {}", release.trim())
}

fn event(id: &str, kernel: Value, downstream: SocketAddr, destination: SocketAddr) -> Value {
    json!({
        "decision_id": id, "time_unix_ms": unix_us() / 1000, "policy_version": "bench",
        "rule": "bench-deny", "action": "deny", "status": 403, "mode": "enforce",
        "reason": "benchmark", "identity": {"agent": "bench-agent"},
        "request": {"method": "POST", "authority": "bench", "path": "/mcp"}, "worker": "bench/0",
        "kernel": kernel, "downstream": downstream.to_string(), "destination": destination.to_string(),
    })
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    if uid.as_deref() != Some("0") {
        return Some("not root (needs CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for cgroups)".to_owned());
    }
    if cgroup2_mount().is_none() {
        return Some("no cgroup v2 mount".to_owned());
    }
    None
}

/// This run's cgroup root, pin directory and data directory; removed on drop.
struct Scratch {
    root: PathBuf,
    pins: PathBuf,
    data: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        let unique = format!("interlock-bench-{}-{tag}", std::process::id());
        let s = Scratch {
            root: cgroup2_mount().unwrap().join(&unique),
            pins: Path::new("/sys/fs/bpf").join(&unique),
            data: std::env::temp_dir().join(&unique),
        };
        std::fs::create_dir_all(&s.data).unwrap();
        s
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
        if std::env::var_os("BENCH_KEEP_DATA").is_some() {
            eprintln!("kept the enforcer's data and log in {} (BENCH_KEEP_DATA)", self.data.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.data);
        }
        if self.pins.exists() {
            eprintln!("WARNING: the enforcer left pins in {}; removing them", self.pins.display());
            let _ = std::fs::remove_dir_all(&self.pins);
        }
        let left = self.root.exists();
        eprintln!("cleaned up: cgroup root {} {}", self.root.display(), if left { "STILL THERE" } else { "removed" });
    }
}

/// The daemon under test.
struct Enforcer {
    child: Child,
    addr: SocketAddr,
    token: String,
}

impl Enforcer {
    fn start(s: &Scratch, path: &DestroyPath) -> Enforcer {
        let mut child = Command::new(&path.bin)
            .args(["serve", "--kernel", "on", "--cleanup-on-exit", "--listen", "127.0.0.1:0"])
            .args(["--socket-destroy", path.flag, "--socket-destroy-threads", &path.threads.to_string()])
            .args(std::env::var("BENCH_EVENT_PRIORITY").map(|p| vec!["--event-priority".to_owned(), p]).unwrap_or_default())
            .arg("--data-dir")
            .arg(&s.data)
            .arg("--cgroup-root")
            .arg(&s.root)
            .arg("--bpf-pin-dir")
            .arg(&s.pins)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log_path = s.data.join("enforcer.log");
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("enforcer did not start ({e}): {seen:#?}"));
            if line.contains("kernel enforcement required") {
                panic!("the enforcer cannot enforce here: {line}");
            }
            if let Some(rest) = line.split_once("listening on http://").map(|(_, r)| r) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            seen.push(line);
        };
        assert!(seen.iter().any(|l| l.contains("kernel enforcement ON")), "{seen:#?}");
        let token = std::fs::read_to_string(s.data.join("admin.token")).unwrap().trim().to_owned();
        Enforcer { child, addr, token }
    }

    fn keep_alive(&self) -> Http {
        Http::connect(self.addr)
    }

    /// One admin request on its own connection.
    fn admin(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut h = Http::connect(self.addr);
        h.exchange(method, path, body, Some(&self.token))
    }

    /// The decision's receipt, once written.
    fn receipt(&self, decision_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = self.admin("GET", &format!("/v1/audit?decision_id={decision_id}"), "");
            if status == 200
                && let Some(r) = v["records"].as_array().and_then(|r| r.iter().map(|x| &x["record"]).find(|x| x["kind"] == "receipt" || x["kind"] == "refused"))
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no receipt for {decision_id}: {status} {v}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn release(&self, workload: &str) {
        let (status, v) = self.admin("POST", "/v1/release", &json!({"workload": workload}).to_string());
        assert_eq!(status, 200, "{v}");
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client (Content-Length bodies only: what axum sends).
struct Http {
    stream: BufReader<TcpStream>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Http { stream: BufReader::new(stream) }
    }

    fn post_events(&mut self, event: &Value) {
        let (status, v) = self.exchange("POST", "/v1/events", &format!("{event}\n"), None);
        assert_eq!((status, &v["accepted"]), (200, &json!(1)), "{v}");
    }

    fn exchange(&mut self, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: interlock-enforcer\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap_or_else(|| panic!("bad status line {status_line:?}")).parse().unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0u8; length];
        self.stream.read_exact(&mut buf).unwrap();
        (status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
    }
}

/// The stand-in proxy: a listener in this process's cgroup that accepts and holds connections.
struct Proxy {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(ip: std::net::Ipv4Addr) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let sink = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                sink.lock().unwrap().push(s);
            }
        });
        Proxy { addr, held }
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.held.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "only {} of {n} connections accepted", self.held.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn clear(&self) {
        self.held.lock().unwrap().clear();
    }

    /// Has the workload open one more connection, which it echoes; returns this end of it.
    fn echo_connection(&self, w: &mut Workload) -> TcpStream {
        let before = self.held.lock().unwrap().len();
        let answer = w.ask(&format!("echo {}", self.addr));
        assert!(answer.starts_with("ok "), "{answer}");
        self.wait_for(before + 1);
        let local: SocketAddr = answer.strip_prefix("ok ").unwrap().parse().unwrap();
        let mut held = self.held.lock().unwrap();
        let at = held.iter().position(|s| s.peer_addr().is_ok_and(|p| p == local)).unwrap();
        held.remove(at)
    }
}

/// A network namespace of the bench's own for one path's workload, as a pod has (`ip netns add`:
/// its file in /var/run/netns, where the enforcer looks), joined to this process's by a veth
/// pair (this end `host`, the namespace's `pod`). Removed on drop, with the pair.
struct PodNet {
    name: String,
    host: std::net::Ipv4Addr,
}

impl PodNet {
    fn create(k: usize, hash: PodHash) -> PodNet {
        let id = std::process::id();
        let name = format!("il-bench-{id}-{k}");
        let (hv, pv) = (format!("ilbh{}{k}", id % 100_000), format!("ilbp{}{k}", id % 100_000));
        let net = u8::try_from(k).unwrap() + 1;
        let (host, pod) = (std::net::Ipv4Addr::new(10, 215, net, 1), std::net::Ipv4Addr::new(10, 215, net, 2));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        };
        // The hash size is read when the namespace is created; the host's setting is put back.
        const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_child_ehash_entries";
        let before = std::fs::read_to_string(SYSCTL).unwrap_or_else(|e| panic!("{SYSCTL}: {e} (Linux 6.1+)"));
        if let PodHash::Own(n) = hash {
            std::fs::write(SYSCTL, n.to_string()).unwrap();
        }
        let net_ns = PodNet { name: name.clone(), host };
        ip(&["netns", "add", &name]);
        std::fs::write(SYSCTL, before.trim()).unwrap();
        ip(&["link", "add", &hv, "type", "veth", "peer", "name", &pv]);
        ip(&["link", "set", &pv, "netns", &name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &hv]);
        ip(&["link", "set", &hv, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{pod}/30"), "dev", &pv]);
        ip(&["-n", &name, "link", "set", &pv, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        // 10,000 connections from one address to one port: the whole ephemeral range.
        ip(&["netns", "exec", &name, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000"]);
        net_ns
    }

    fn file(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        eprintln!("cleaned up: network namespace {} {}", self.name, if self.file().exists() { "STILL THERE" } else { "removed" });
    }
}

/// This program again, as a managed workload (`interlock exec`), driven over stdin/stdout.
struct Workload {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Workload {
    fn start(root: &Path, name: &str, net: Option<&PodNet>) -> Workload {
        let mut command = match net {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", n.file().display())).arg("--").arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["exec", "--workload", name, "--cgroup-root"])
            .arg(root)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(ROLE_ENV, "workload")
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
        Workload { child, stdin, lines }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }

    fn line(&mut self) -> String {
        self.lines.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|e| panic!("the workload did not answer: {e}"))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workload's side: `open N ADDR`, `echo ADDR`, `check`, `close`, `spin ADDR TIMEOUT_MS`,
/// `exit`.
fn workload() {
    let mut held: Vec<TcpStream> = Vec::new();
    // `burn N`: N threads of the workload spinning on the CPU until `unburn`.
    let burning = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut burners: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let answer = match parts.as_slice() {
            ["open", n, addr] => {
                let addr: SocketAddr = addr.parse().unwrap();
                let n: usize = n.parse().unwrap();
                let mut failed = None;
                for _ in 0..n {
                    match TcpStream::connect(addr) {
                        Ok(s) => held.push(s),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => format!("err {e}"),
                    None => format!("ok {}", held[held.len() - n].local_addr().unwrap()),
                }
            }
            ["echo", addr] => match TcpStream::connect(addr.parse::<SocketAddr>().unwrap()) {
                Ok(s) => {
                    let local = s.local_addr().unwrap();
                    s.set_nodelay(true).unwrap();
                    std::thread::spawn(move || {
                        let mut s = s;
                        let mut b = [0u8; 64];
                        while let Ok(n) = s.read(&mut b) {
                            if n == 0 || s.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    });
                    format!("ok {local}")
                }
                Err(e) => format!("err {e}"),
            },
            ["check"] => {
                let aborted = held.iter().filter(|s| matches!(s.take_error(), Ok(Some(e)) if e.raw_os_error() == Some(ECONNABORTED))).count();
                format!("aborted {aborted} of {}", held.len())
            }
            ["close"] => {
                held.clear();
                "ok".to_owned()
            }
            ["burn", n] => {
                burning.store(true, std::sync::atomic::Ordering::SeqCst);
                for _ in 0..n.parse::<usize>().unwrap() {
                    let burning = burning.clone();
                    burners.push(std::thread::spawn(move || {
                        while burning.load(std::sync::atomic::Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    }));
                }
                "burning".to_owned()
            }
            ["unburn"] => {
                burning.store(false, std::sync::atomic::Ordering::SeqCst);
                for b in burners.drain(..) {
                    b.join().unwrap();
                }
                "ok".to_owned()
            }
            ["spin", addr, timeout_ms] => {
                let addr: SocketAddr = addr.parse().unwrap();
                let deadline = Instant::now() + Duration::from_millis(timeout_ms.parse().unwrap());
                writeln!(out, "spinning").unwrap();
                out.flush().unwrap();
                let mut attempts = 0u64;
                // The attempt before the refused one: (start, end, how it ended), CLOCK_MONOTONIC.
                let mut previous: (u64, u64, String) = (0, 0, "none".to_owned());
                loop {
                    attempts += 1;
                    // With a timeout: a connect whose SYN left just as the quarantine landed
                    // is silenced (its SYN retries dropped) and would hang for seconds; the
                    // next one is refused.
                    let start = monotonic_ns();
                    let outcome = TcpStream::connect_timeout(&addr, Duration::from_millis(SPIN_CONNECT_TIMEOUT_MS));
                    let end = monotonic_ns();
                    match outcome {
                        Err(e) if e.raw_os_error() == Some(EPERM) => {
                            let (p_start, p_end, p_how) = &previous;
                            break format!("refused {end} {attempts} {start} {p_start} {p_end} {p_how}");
                        }
                        _ if Instant::now() > deadline => break format!("timeout after {attempts} connects"),
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => previous = (start, end, "timeout".to_owned()),
                        Err(e) => previous = (start, end, format!("errno-{}", e.raw_os_error().unwrap_or(0))),
                        Ok(_) => previous = (start, end, "connected".to_owned()),
                    }
                }
            }
            ["exit"] => return,
            _ => format!("err unknown command {line:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}
