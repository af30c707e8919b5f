//! The kernel-enforcement part of the `interlock` command line: `serve`'s kernel flags, `exec`,
//! `quarantine`, `release` and `audit`. What they do lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use interlock_enforcer::audit::{AUDIT_FILE, AuditLog, verify};
use interlock_enforcer::client::Enforcer;
use interlock_enforcer::enforce::Enforcement;
use interlock_enforcer::kernel::{DEFAULT_PIN_DIR, DestroyMode, EventPriority, Kernel, KernelConfig, KernelMode};
use interlock_enforcer::workload::{self, DEFAULT_CGROUP_ROOT};
use serde_json::{Value, json};

/// `interlock serve`'s kernel flags.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel enforcement: `auto` enforces where BPF works and otherwise runs observe-only
    /// (saying so loudly); `on` refuses to start without it; `off` never touches the kernel.
    #[arg(long = "kernel", value_enum, env = "INTERLOCK_KERNEL", default_value_t = KernelMode::Auto)]
    mode: KernelMode,
    /// The managed cgroup root: only cgroups under it are ever quarantined.
    #[arg(long, default_value = DEFAULT_CGROUP_ROOT)]
    cgroup_root: PathBuf,
    /// Where programs and maps are pinned (on bpffs), so enforcement survives a restart.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    bpf_pin_dir: PathBuf,
    /// On shutdown, detach the programs and remove every pin (enforcement ends with the daemon).
    #[arg(long)]
    cleanup_on_exit: bool,
    /// How `terminate: workload` destroys sockets: `auto` uses the BPF socket iterator where the
    /// kernel allows it (6.5+) and otherwise netlink, saying so at start and in the status;
    /// `iterator` refuses to start without it; `netlink` never uses it.
    #[arg(long, value_enum, env = "INTERLOCK_SOCKET_DESTROY", default_value_t = DestroyMode::Auto)]
    socket_destroy: DestroyMode,
    /// Threads reading the socket iterator at once, each destroying its share (each walks the
    /// whole TCP table; the aborts, most of the cost, are shared). 0: one per CPU, at most 4.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    socket_destroy_threads: u16,
    /// Where the node's pod network namespaces are (CNI plugins keep them in /var/run/netns):
    /// a workload's sockets are destroyed from inside its own namespace, found here by the
    /// cookie the quarantine programs saw it connect from, or through its processes when they
    /// are visible. Entering a namespace needs CAP_SYS_ADMIN.
    #[arg(long, env = "INTERLOCK_NETNS_DIR", default_value = interlock_enforcer::kernel::netns::DEFAULT_NETNS_DIR)]
    netns_dir: PathBuf,
    /// How the threads that receive decision events are scheduled: `deadline` (SCHED_DEADLINE,
    /// at most 300 us of CPU every 1 ms per thread: ahead of everything the moment an event
    /// arrives, bounded under a flood), `realtime` (SCHED_FIFO 1, as the kernel worker,
    /// unbounded), `fair` (nice -10 and a 100 us slice: a busy workload can hold them off for a
    /// scheduler tick) or `off`. Needs CAP_SYS_NICE (else fair, as far as allowed); what was
    /// obtained is printed at start and shown in `GET /v1/kernel`.
    #[arg(long, value_enum, env = "INTERLOCK_EVENT_PRIORITY", default_value_t = EventPriority::Deadline)]
    event_priority: EventPriority,
}

impl KernelArgs {
    pub fn event_priority(&self) -> EventPriority {
        self.event_priority
    }
}

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Runs CMD inside the managed cgroup of workload W (the local stand-in for a pod).
    Exec {
        #[arg(long)]
        workload: String,
        /// The enforcer's managed cgroup root.
        #[arg(long, default_value = DEFAULT_CGROUP_ROOT)]
        cgroup_root: PathBuf,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// Quarantines workload W by hand: every new connection it makes is refused and its live
    /// connections fall silent (their packets dropped) until released.
    Quarantine {
        #[arg(long)]
        workload: String,
        /// Seconds until it lifts by itself; until `interlock release` when absent.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=86_400))]
        ttl: Option<u32>,
    },
    /// Lifts workload W's quarantine.
    Release {
        #[arg(long)]
        workload: String,
    },
    /// The hash-chained audit log of kernel receipts.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain; exit status 1 at the first broken link, which it names.
    Verify {
        /// The enforcer's data directory (the log is its audit.jsonl).
        #[arg(long, default_value = ".interlock")]
        data_dir: PathBuf,
        /// Verify this file instead.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Prints a decision with its receipts (from the enforcer).
    Show {
        decision_id: String,
        /// Print the enforcer's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Starts the kernel side of `serve` and its worker; says loudly when it runs observe-only.
pub fn start(args: &KernelArgs, data_dir: &Path) -> Result<Enforcement> {
    let config = KernelConfig {
        mode: args.mode,
        cgroup_root: args.cgroup_root.clone(),
        pin_dir: args.bpf_pin_dir.clone(),
        destroy: args.socket_destroy,
        destroy_threads: match args.socket_destroy_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => usize::from(n),
        },
        netns_dir: Some(args.netns_dir.clone()),
    };
    let kernel = Kernel::start(&config).map_err(|reason| anyhow::anyhow!("kernel enforcement required (--kernel on) but unavailable: {reason}"))?;
    let status = kernel.status();
    match &kernel {
        Kernel::Enforcing(_) => {
            eprintln!("interlock enforcer: kernel enforcement ON: managed cgroup root {}", args.cgroup_root.display());
            for p in &status.programs {
                eprintln!("interlock enforcer:   attached {p}");
            }
            if let Some(how) = &status.socket_destroy {
                if how.starts_with("FALLBACK") {
                    eprintln!("interlock enforcer: ******************************************************************");
                    eprintln!("interlock enforcer: SOCKET DESTRUCTION {how}");
                    eprintln!("interlock enforcer: ******************************************************************");
                } else {
                    eprintln!("interlock enforcer:   sockets of a workload destroyed with: {how}");
                }
            }
            for n in status.notes.iter().filter(|n| !n.starts_with("FALLBACK")) {
                eprintln!("interlock enforcer:   note: {n}");
            }
        }
        Kernel::ObserveOnly { reason, .. } => {
            eprintln!("interlock enforcer: ==================================================================");
            eprintln!("interlock enforcer: KERNEL ENFORCEMENT UNAVAILABLE: running OBSERVE-ONLY.");
            eprintln!("interlock enforcer: reason: {reason}");
            eprintln!("interlock enforcer: decisions asking for kernel action are recorded in the audit log as");
            eprintln!("interlock enforcer: `observe-only`; no connection is cut and no workload is quarantined.");
            eprintln!("interlock enforcer: ==================================================================");
        }
    }
    let audit = AuditLog::open(data_dir)?;
    eprintln!("interlock enforcer: audit log {}", audit.path().display());
    let (enforcement, _worker) = Enforcement::start(kernel, audit).map_err(anyhow::Error::msg)?;
    eprintln!("interlock enforcer: kernel worker scheduled {}", enforcement.scheduling());
    Ok(enforcement)
}

/// Stops the worker at shutdown; with `--cleanup-on-exit`, detaches and unpins everything.
pub async fn stop(enforcement: &Enforcement, args: &KernelArgs) {
    match enforcement.stop(args.cleanup_on_exit).await {
        Ok(v) => {
            if let Some(removed) = v.get("removed").and_then(Value::as_array).filter(|r| !r.is_empty()) {
                eprintln!("interlock enforcer: detached and unpinned {} BPF objects", removed.len());
            }
        }
        Err(e) => eprintln!("interlock enforcer: stopping the kernel worker: {e}"),
    }
}

pub fn run(command: KernelCommand, target: &crate::cli::Target, runtime: impl FnOnce() -> Result<tokio::runtime::Runtime>) -> Result<ExitCode> {
    match command {
        KernelCommand::Exec { workload, cgroup_root, cmd } => {
            let err = match workload::exec(&cgroup_root, &workload, &cmd) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            bail!("exec as workload {workload}: {err}")
        }
        KernelCommand::Quarantine { workload, ttl } => {
            let enforcer = target.client()?;
            let body = json!({ "workload": workload, "ttl_secs": ttl.unwrap_or(0) });
            let v = runtime()?.block_on(post(&enforcer, "/v1/quarantine", &body))?;
            let until = v.pointer("/quarantine/until_unix_ms").and_then(Value::as_u64);
            println!(
                "quarantined workload {workload} ({}): {}{}",
                v.get("decision_id").and_then(Value::as_str).unwrap_or("?"),
                v.get("outcome").and_then(Value::as_str).unwrap_or("?"),
                until.map(|u| format!(", until unix ms {u}")).unwrap_or_else(|| ", until released".to_owned())
            );
            Ok(ExitCode::SUCCESS)
        }
        KernelCommand::Release { workload } => {
            let enforcer = target.client()?;
            let v = runtime()?.block_on(post(&enforcer, "/v1/release", &json!({ "workload": workload })))?;
            let lifted = v.get("maps_written").and_then(Value::as_array).map_or(0, Vec::len);
            println!("released workload {workload} ({lifted} map entries removed)");
            Ok(ExitCode::SUCCESS)
        }
        KernelCommand::Audit { command: AuditCommand::Verify { data_dir, file } } => {
            let path = file.unwrap_or_else(|| data_dir.join(AUDIT_FILE));
            let v = verify(&path)?;
            match v.broken {
                None => {
                    println!("{}: ok, {} records, head {}", path.display(), v.records, v.head);
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    println!("{}: BROKEN at line {}: {} ({} records verified before it)", path.display(), b.line, b.reason, v.records);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        KernelCommand::Audit { command: AuditCommand::Show { decision_id, json } } => {
            let enforcer = target.client()?;
            let path = format!("/v1/audit?decision_id={}", percent_encode(&decision_id));
            let v = runtime()?.block_on(get(&enforcer, &path))?;
            if json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn post(enforcer: &Enforcer, path: &str, body: &Value) -> Result<Value> {
    let bytes = serde_json::to_vec(body)?;
    decode(enforcer.request("POST", path, Some(&bytes)).await?)
}

async fn get(enforcer: &Enforcer, path: &str) -> Result<Value> {
    decode(enforcer.request("GET", path, None).await?)
}

fn decode(resp: interlock_enforcer::client::HttpResponse) -> Result<Value> {
    // A 401 says how to get the admin token (client::ClientError::Unauthorized).
    Ok(interlock_enforcer::client::ok_json(resp)?)
}
