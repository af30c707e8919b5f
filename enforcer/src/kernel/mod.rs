//! The kernel boundary: the one module that loads and attaches BPF programs, touches their maps
//! and destroys sockets. What to do is decided by [`plan`] (pure, tested natively); this module
//! carries a plan out and reports what the kernel did.
//!
//! - [`bpf`]: the quarantine programs (cgroup connect4/connect6/sendmsg4/sendmsg6, and the
//!   cgroup_skb ingress/egress packet filters that silence live sockets, on the managed root)
//!   and their pinned maps, through aya;
//! - [`diag`]: finding and destroying sockets with netlink sock_diag;
//! - [`iter`]: destroying a workload's sockets in one kernel pass (a BPF TCP iterator calling
//!   the `bpf_sock_destroy` kfunc), netlink's replacement for `terminate: workload` where the
//!   kernel allows it;
//! - [`netns`]: the network namespace a workload's sockets live in (a pod's own), and socket
//!   work done from inside it;
//! - [`sys`]: the raw system calls aya does not make for us (the only `unsafe` code).
//!
//! Where BPF is unavailable (no object in the build, no privileges, an old kernel) the kernel is
//! [`Kernel::ObserveOnly`] and says why; nothing is then ever reported as enforced.

pub mod bpf;
pub mod diag;
pub mod iter;
pub mod netns;
pub mod plan;
pub mod sys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::workload::ManagedRoot;
use diag::{SockDiag, SockInfo};
use plan::{Caller, Plan, QuarantinePlan, Terminate};

/// The default bpffs directory for the pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/interlock";
const BPFFS: &str = "/sys/fs/bpf";

/// `--kernel`: whether to enforce in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KernelMode {
    /// Enforce when BPF works here; otherwise run observe-only and say so loudly.
    #[default]
    Auto,
    /// Enforce, or refuse to start.
    On,
    /// Observe only: never touch the kernel.
    Off,
}

/// `--socket-destroy`: how a workload's sockets are destroyed (`terminate: workload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DestroyMode {
    /// The BPF iterator where this kernel allows it (Linux 6.5+); otherwise netlink, said loudly.
    #[default]
    Auto,
    /// The BPF iterator, or refuse to start.
    Iterator,
    /// Netlink SOCK_DESTROY only (one dump, then batches of requests).
    Netlink,
}

/// `--event-priority`: how the threads that receive decision events (the API's runtime) are
/// scheduled ([`sys::prioritize_event_thread`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EventPriority {
    /// Fair scheduling, ahead of ordinary work: nice -10 and a 100 µs slice (Linux 6.12+). A
    /// flood of events cannot starve the node, but neither does a waking API thread always
    /// preempt a busy CPU: EEVDF picks it only once it is eligible, which a thread that ran
    /// recently is not, and then at the next scheduler tick (4 ms at HZ=250; bench/KERNEL.md).
    Fair,
    /// SCHED_DEADLINE with a bounded bandwidth (300 µs of CPU every 1 ms per thread): ahead of
    /// every other thread the moment an event arrives, yet a flood of requests cannot take more
    /// than that; fair where the kernel refuses it.
    #[default]
    Deadline,
    /// SCHED_FIFO 1, as the kernel worker: ahead of every ordinary thread (bounded only by
    /// the kernel's real-time throttling).
    Realtime,
    /// Leave the API's threads as started.
    Off,
}

/// Where and how to enforce.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub mode: KernelMode,
    pub cgroup_root: PathBuf,
    pub pin_dir: PathBuf,
    pub destroy: DestroyMode,
    /// Threads reading the iterator at once, each destroying its share of the sockets.
    pub destroy_threads: usize,
    /// Where pods' network namespaces are ([`netns::DEFAULT_NETNS_DIR`]).
    pub netns_dir: Option<PathBuf>,
}

/// How the sockets of a workload are destroyed, for receipts.
pub const DESTROYED_WITH_ITERATOR: &str = "bpf-iterator";
pub const DESTROYED_WITH_NETLINK: &str = "netlink";

/// The kernel side of the enforcer.
#[derive(Debug)]
pub enum Kernel {
    Enforcing(Box<Enforcing>),
    ObserveOnly { reason: String, root: Option<ManagedRoot>, diag: Option<SockDiag> },
}

#[derive(Debug)]
pub struct Enforcing {
    programs: bpf::Programs,
    diag: SockDiag,
    /// The socket iterator; `None`: netlink destroys, for the reason in `destroy_path`.
    iter: Option<iter::SockIter>,
    destroy_threads: usize,
    destroy_path: String,
    /// Where workloads' sockets are; `None`: this kernel gives no namespace cookies, and
    /// sockets are looked for in the enforcer's own namespace only (said in the notes).
    namespaces: Option<netns::Namespaces>,
    root: ManagedRoot,
    pinned: bool,
    notes: Vec<String>,
}

/// What [`Kernel::status`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    /// `enforcing` or `observe-only`.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_root: Option<PathBuf>,
    pub programs: Vec<String>,
    pub pinned: bool,
    /// How `terminate: workload` destroys sockets, and why when it is not the iterator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_destroy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One map write, for the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapWrite {
    pub map: &'static str,
    pub op: &'static str,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One socket acted on, for the receipt.
#[derive(Debug, Clone, Serialize)]
pub struct SocketAction {
    /// `caller` (the agent's end), `proxy` (the listener's end), `workload`, or `connecting`
    /// (a connect of the quarantined workload caught in flight).
    pub side: &'static str,
    #[serde(flatten)]
    pub socket: SockInfo,
    /// `destroyed`, `gone` (closed before we got to it) or the error.
    pub result: String,
}

/// What the kernel did for one plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    pub maps_written: Vec<MapWrite>,
    pub sockets: Vec<SocketAction>,
    /// Sockets acted on beyond the first [`MAX_LISTED_SOCKETS`] (counted, not listed: a
    /// workload's 10,000 connections would make one receipt megabytes long).
    #[serde(skip_serializing_if = "is_zero")]
    pub sockets_not_listed: usize,
    pub sockets_destroyed: usize,
    /// How the sockets were destroyed: [`DESTROYED_WITH_ITERATOR`] or [`DESTROYED_WITH_NETLINK`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed_with: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The network namespaces the workload's sockets were looked for in, when one was not the
    /// enforcer's own (a pod's): "own" or the namespace file, with its cookie.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// When the quarantine entries were in the map (CLOCK_MONOTONIC ns, read after the last
    /// write returned): from then on the packet filters drop every packet of the workload's
    /// live sockets to a refused destination, before any socket is destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_mono_ns: Option<u64>,
    /// The same moment, for measuring from the event's arrival.
    #[serde(skip)]
    pub silenced_at: Option<std::time::Instant>,
}

/// Most sockets one receipt lists one by one.
pub const MAX_LISTED_SOCKETS: usize = 100;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The caller's sockets as found from the connection's addresses.
#[derive(Debug, Default)]
pub struct Resolved {
    pub caller: Option<SockInfo>,
    pub proxy: Option<SockInfo>,
    /// The namespace the caller's socket was found in, when not the enforcer's own (a pod's,
    /// found by the caller's address).
    pub caller_ns: Option<netns::Netns>,
    /// The same for the proxy's end.
    pub proxy_ns: Option<netns::Netns>,
}

impl Resolved {
    /// The proxy's end when it is in the enforcer's own namespace: what the event's poster is
    /// checked against ([`crate::event_auth`]'s first rule).
    pub fn proxy_here(&self) -> Option<&SockInfo> {
        self.proxy.as_ref().filter(|_| self.proxy_ns.is_none())
    }
}

impl Kernel {
    /// Starts kernel enforcement as `config` says. With [`KernelMode::Auto`], anything missing
    /// gives an observe-only kernel whose `reason` the daemon prints at start.
    pub fn start(config: &KernelConfig) -> Result<Kernel, String> {
        if config.mode == KernelMode::Off {
            return Ok(Kernel::ObserveOnly {
                reason: "kernel enforcement switched off (--kernel off)".to_owned(),
                root: None,
                diag: None,
            });
        }
        match Self::try_start(config) {
            Ok(k) => Ok(Kernel::Enforcing(Box::new(k))),
            Err(reason) if config.mode == KernelMode::Auto => Ok(Kernel::ObserveOnly {
                reason,
                root: ManagedRoot::open(&config.cgroup_root).ok(),
                diag: SockDiag::open().ok(),
            }),
            Err(reason) => Err(reason),
        }
    }

    fn try_start(config: &KernelConfig) -> Result<Enforcing, String> {
        if !bpf::object_available() {
            return Err(bpf::BpfError::NoObject.to_string());
        }
        let root = ManagedRoot::open(&config.cgroup_root).map_err(|e| e.to_string())?;
        let diag = SockDiag::open().map_err(|e| format!("cannot open a sock_diag netlink socket: {e}"))?;
        let mut notes = Vec::new();
        let bpffs = Path::new(BPFFS);
        let pin_ok = config.pin_dir.starts_with(bpffs)
            && (sys::is_bpffs(bpffs) || {
                let mounted = sys::mount_bpffs(bpffs);
                if let Err(e) = &mounted {
                    notes.push(format!("cannot mount bpffs at {BPFFS}: {e}"));
                } else {
                    notes.push(format!("mounted bpffs at {BPFFS}"));
                }
                mounted.is_ok()
            });
        if !pin_ok {
            notes.push(format!(
                "programs and maps NOT pinned ({} is not on bpffs): enforcement ends when this process does",
                config.pin_dir.display()
            ));
        }
        let pin_dir = pin_ok.then_some(config.pin_dir.as_path());
        let programs = bpf::Programs::load_and_attach(root.path(), pin_dir).map_err(|e| error_chain(&e))?;
        if programs.replaced > 0 {
            notes.push(format!("replaced {} program links pinned by a previous enforcer", programs.replaced));
        }
        let threads = config.destroy_threads.max(1);
        let (iter, destroy_path) = match config.destroy {
            DestroyMode::Netlink => (None, "netlink SOCK_DESTROY (--socket-destroy netlink)".to_owned()),
            DestroyMode::Auto | DestroyMode::Iterator => match iter::SockIter::load() {
                Ok(it) => (Some(it), format!("BPF iterator (iter/tcp, bpf_sock_destroy kfunc), {threads} thread(s); netlink SOCK_DESTROY if it fails")),
                Err(reason) if config.destroy == DestroyMode::Iterator => {
                    return Err(format!("the socket iterator is required (--socket-destroy iterator) but unavailable: {reason}"));
                }
                Err(reason) => {
                    let path = format!("FALLBACK: netlink SOCK_DESTROY, the BPF socket iterator is unavailable: {reason}");
                    notes.push(path.clone());
                    (None, path)
                }
            },
        };
        let namespaces = match netns::Namespaces::new(config.netns_dir.clone()) {
            Ok(n) => Some(n),
            Err(e) => {
                notes.push(format!("cannot read network namespace cookies ({e}): a workload's sockets are looked for in the enforcer's own namespace only"));
                None
            }
        };
        Ok(Enforcing { programs, diag, iter, destroy_threads: threads, destroy_path, namespaces, root, pinned: pin_ok, notes })
    }

    pub fn status(&self) -> KernelStatus {
        match self {
            Kernel::Enforcing(k) => KernelStatus {
                mode: "enforcing",
                reason: None,
                cgroup_root: Some(k.root.path().to_owned()),
                programs: k.programs.attached.clone(),
                pinned: k.pinned,
                socket_destroy: Some(k.destroy_path.clone()),
                notes: k.notes.clone(),
            },
            Kernel::ObserveOnly { reason, root, .. } => KernelStatus {
                mode: "observe-only",
                reason: Some(reason.clone()),
                cgroup_root: root.as_ref().map(|r| r.path().to_owned()),
                programs: Vec::new(),
                pinned: false,
                socket_destroy: None,
                notes: Vec::new(),
            },
        }
    }

    pub fn is_enforcing(&self) -> bool {
        matches!(self, Kernel::Enforcing(_))
    }

    pub fn root(&self) -> Option<&ManagedRoot> {
        match self {
            Kernel::Enforcing(k) => Some(&k.root),
            Kernel::ObserveOnly { root, .. } => root.as_ref(),
        }
    }

    fn diag(&mut self) -> Option<&mut SockDiag> {
        match self {
            Kernel::Enforcing(k) => Some(&mut k.diag),
            Kernel::ObserveOnly { diag, .. } => diag.as_mut(),
        }
    }

    /// Finds both ends of the connection `downstream` → `destination` on this node.
    pub fn resolve(&mut self, downstream: SocketAddr, destination: SocketAddr) -> (Resolved, Vec<String>) {
        let (downstream, destination) = (crate::event_auth::canonical(downstream), crate::event_auth::canonical(destination));
        let mut errors = Vec::new();
        let Some(diag) = self.diag() else {
            return (Resolved::default(), vec!["sock_diag unavailable: the caller's socket was not looked up".to_owned()]);
        };
        let mut find = |local, remote, side: &str| match diag.find(local, remote) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("looking up the {side} socket {local} -> {remote}: {e}"));
                None
            }
        };
        let caller = find(downstream, destination, "caller");
        let proxy = find(destination, downstream, "proxy");
        let mut resolved = Resolved { caller, proxy, ..Resolved::default() };
        // Not here: a pod's socket is in the pod's namespace, the one holding its address.
        if let Kernel::Enforcing(k) = self
            && let Some(namespaces) = k.namespaces.as_mut()
        {
            if resolved.caller.is_none()
                && let Some(ns) = namespaces.holding(downstream.ip())
            {
                resolved.caller = find_in(&ns, downstream, destination, "caller", &mut errors);
                resolved.caller_ns = resolved.caller.is_some().then_some(ns);
            }
            if resolved.proxy.is_none()
                && let Some(ns) = namespaces.holding(destination.ip())
            {
                resolved.proxy = find_in(&ns, destination, downstream, "proxy", &mut errors);
                resolved.proxy_ns = resolved.proxy.is_some().then_some(ns);
            }
        }
        (resolved, errors)
    }

    /// The socket that posted an event: the client end of the API connection (local `remote`,
    /// remote `local`, as the enforcer saw them), with an error when the lookup failed.
    pub fn find_poster(&mut self, remote: SocketAddr, local: SocketAddr) -> (Option<SockInfo>, Option<String>) {
        let Some(diag) = self.diag() else { return (None, None) };
        let (remote, local) = (crate::event_auth::canonical(remote), crate::event_auth::canonical(local));
        match diag.find(remote, local) {
            Ok(s) => (s, None),
            Err(e) => (None, Some(format!("looking up the poster's socket {remote} -> {local}: {e}"))),
        }
    }

    /// Who the caller is, given its socket's cgroup id.
    pub fn caller(&self, cgroup_id: Option<u64>) -> Caller {
        let workload = cgroup_id.and_then(|id| self.root().and_then(|r| r.workload_of(id)));
        let workload_cgroups = match (&workload, self.root()) {
            (Some(w), Some(r)) => r.cgroup_ids(w).unwrap_or_default(),
            _ => Vec::new(),
        };
        Caller { cgroup_id, workload, workload_cgroups }
    }

    /// Carries out `plan`: the quarantine first (so a reconnect is refused as soon as the
    /// connection dies, and the live sockets are silenced by the packet filters at once), then
    /// the terminations; [`Kernel::abort_connecting`] follows. Observe-only: does nothing and
    /// returns `None`.
    pub fn apply(&mut self, plan: &Plan, resolved: &Resolved) -> Option<Applied> {
        let Kernel::Enforcing(k) = self else { return None };
        let mut applied = Applied::default();
        if let Some(q) = &plan.quarantine {
            k.install(q, &mut applied);
            let quarantined = applied.maps_written.iter().any(|w| w.map == bpf::MAP_QUARANTINE && w.error.is_none());
            if quarantined {
                applied.silenced_at = Some(std::time::Instant::now());
                applied.silenced_mono_ns = Some(sys::monotonic_ns());
            }
        }
        match &plan.terminate {
            None => {}
            Some(Terminate::Connection { .. }) => {
                let ends = [("caller", &resolved.caller, &resolved.caller_ns), ("proxy", &resolved.proxy, &resolved.proxy_ns)];
                for (side, sock, ns) in ends {
                    if let Some(sock) = sock {
                        k.destroy(side, sock, ns.as_ref(), &mut applied);
                    }
                }
                if resolved.caller.is_none() && resolved.proxy.is_none() {
                    applied.errors.push("no socket of the connection was found on this node".to_owned());
                }
            }
            Some(Terminate::Workload { cgroup_ids }) => k.destroy_workload(cgroup_ids, &mut applied),
        }
        Some(applied)
    }

    /// After [`Kernel::apply`]: aborts the workload's connects the quarantine caught in flight
    /// ([`Enforcing::abort_connecting`]), when the plan quarantined something and did not
    /// terminate the whole workload (which destroyed these with every other socket). Separate,
    /// so the worker does it after the enforcement proper (the map write) is done.
    pub fn abort_connecting(&mut self, plan: &Plan, applied: &mut Applied) {
        let Kernel::Enforcing(k) = self else { return };
        if let Some(q) = &plan.quarantine
            && applied.silenced_at.is_some()
            && !matches!(plan.terminate, Some(Terminate::Workload { .. }))
        {
            k.abort_connecting(q, applied);
        }
    }

    /// Installs a quarantine asked for by hand. Observe-only: `None`.
    pub fn install(&mut self, q: &QuarantinePlan) -> Option<Applied> {
        let Kernel::Enforcing(k) = self else { return None };
        let mut applied = Applied::default();
        k.install(q, &mut applied);
        Some(applied)
    }

    /// Lifts the quarantine of these cgroups: their `il_quarantine` and `il_dests` entries.
    pub fn lift(&mut self, cgroup_ids: &[u64]) -> Vec<MapWrite> {
        let Kernel::Enforcing(k) = self else { return Vec::new() };
        k.lift(cgroup_ids)
    }

    /// Refusals counted under `tag`: (count, last refusal on CLOCK_MONOTONIC ns).
    pub fn refusals(&self, tag: u64) -> Option<(u64, u64)> {
        let Kernel::Enforcing(k) = self else { return None };
        k.programs.refusals(tag).map(|v| plan::parse_refusals(&v))
    }

    pub fn forget_refusals(&mut self, tag: u64) {
        if let Kernel::Enforcing(k) = self {
            k.programs.remove_refusals(tag);
        }
    }

    /// Quarantines in the map: (cgroup id, expires ns, tag, block_all).
    pub fn quarantines(&self) -> Vec<(u64, u64, u64, bool)> {
        let Kernel::Enforcing(k) = self else { return Vec::new() };
        k.programs
            .quarantines()
            .into_iter()
            .map(|(id, v)| {
                let (expires, tag, all) = plan::parse_quarantine_value(&v);
                (id, expires, tag, all)
            })
            .collect()
    }

    /// Detaches the programs and removes every pin and map (`--cleanup-on-exit`).
    pub fn remove_pins(&mut self) -> Vec<String> {
        let Kernel::Enforcing(k) = self else { return Vec::new() };
        k.programs.remove_pins()
    }
}

/// An error with its sources, on one line ("`bpf_link_create` failed: Invalid argument").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Enforcing {
    fn install(&mut self, q: &QuarantinePlan, applied: &mut Applied) {
        // A new quarantine of the same cgroup replaces the old one: its destinations go first.
        applied.maps_written.extend(self.lift_dests(&q.cgroup_ids));
        let mut record = |map: &'static str, op: &'static str, key: String, r: Result<(), bpf::BpfError>| {
            let error = r.err().map(|e| error_chain(&e));
            if let Some(e) = &error {
                applied.errors.push(e.clone());
            }
            applied.maps_written.push(MapWrite { map, op, key, error });
        };
        record(bpf::MAP_REFUSALS, "create", format!("tag {:#018x}", q.tag), self.programs.init_refusals(q.tag));
        // Destinations before the quarantine entry: once the entry is visible, its list is too.
        for &cgroup_id in &q.cgroup_ids {
            for dest in &q.dests {
                let r = self.programs.put_dest(&plan::dest_key(cgroup_id, *dest));
                record(bpf::MAP_DESTS, "update", format!("cgroup {cgroup_id} {dest}"), r);
            }
        }
        let value = plan::quarantine_value(q.expires_mono_ns, q.tag, q.block_all);
        for &cgroup_id in &q.cgroup_ids {
            let r = self.programs.put_quarantine(cgroup_id, &value);
            record(bpf::MAP_QUARANTINE, "update", format!("cgroup {cgroup_id}"), r);
        }
    }

    fn lift_dests(&mut self, cgroup_ids: &[u64]) -> Vec<MapWrite> {
        let mut out = Vec::new();
        for key in self.programs.dest_keys() {
            let id = plan::dest_key_cgroup(&key);
            if cgroup_ids.contains(&id) {
                let error = self.programs.remove_dest(&key).err().map(|e| error_chain(&e));
                out.push(MapWrite {
                    map: bpf::MAP_DESTS,
                    op: "delete",
                    key: format!("cgroup {id} {}", plan::dest_key_addr(&key)),
                    error,
                });
            }
        }
        out
    }

    fn lift(&mut self, cgroup_ids: &[u64]) -> Vec<MapWrite> {
        let mut out = Vec::new();
        // The entry first: from then on nothing is refused, whatever the list says.
        for &id in cgroup_ids {
            match self.programs.remove_quarantine(id) {
                Ok(true) => out.push(MapWrite { map: bpf::MAP_QUARANTINE, op: "delete", key: format!("cgroup {id}"), error: None }),
                Ok(false) => {}
                Err(e) => out.push(MapWrite {
                    map: bpf::MAP_QUARANTINE,
                    op: "delete",
                    key: format!("cgroup {id}"),
                    error: Some(error_chain(&e)),
                }),
            }
        }
        out.extend(self.lift_dests(cgroup_ids));
        out
    }

    /// The network namespaces the workload's sockets are in: where the programs last saw each
    /// of its cgroups connect (or send) from, and where its processes run when the enforcer can
    /// see them. Nothing known at all: the enforcer's own (a workload that has not connected
    /// since the programs were attached and whose processes it cannot see). A namespace it
    /// cannot enter is an error in the receipt: those sockets are not destroyed.
    fn namespaces_of(&mut self, cgroup_ids: &[u64], applied: &mut Applied) -> netns::Found {
        let Some(namespaces) = self.namespaces.as_mut() else {
            return netns::Found { own: true, ..netns::Found::default() };
        };
        let recorded: Vec<u64> = cgroup_ids.iter().filter_map(|&id| self.programs.netns_of(id)).collect();
        let pids = self.root.procs_of(cgroup_ids);
        let mut found = namespaces.find(&recorded, &pids);
        if !found.own && found.others.is_empty() && found.missing.is_empty() {
            found.own = true;
        }
        let dir = namespaces.dir().map_or_else(|| "no --netns-dir".to_owned(), |d| d.display().to_string());
        for cookie in &found.missing {
            applied.errors.push(format!(
                "the workload connected from the network namespace with cookie {cookie}, and no file of it was found (not the namespace of a process the enforcer can see, not in {dir}): its sockets there were not destroyed"
            ));
        }
        if !found.others.is_empty() || !found.missing.is_empty() {
            if found.own {
                applied.namespaces.push(format!("own (cookie {})", namespaces.own()));
            }
            applied.namespaces.extend(found.others.iter().map(|n| format!("{} (cookie {})", n.path.display(), n.cookie)));
        }
        found
    }

    /// Every socket of the workload's cgroups, in each network namespace they are in.
    fn destroy_workload(&mut self, cgroup_ids: &[u64], applied: &mut Applied) {
        let found = self.namespaces_of(cgroup_ids, applied);
        if found.own {
            self.destroy_workload_in(cgroup_ids, None, applied);
        }
        for ns in &found.others {
            self.destroy_workload_in(cgroup_ids, Some(ns), applied);
        }
    }

    /// Every socket of the workload's cgroups in one namespace (`None`: the enforcer's own): with
    /// the iterator (one kernel pass) when it is loaded; with netlink otherwise, or when the
    /// iterator fails (said in the receipt's errors).
    fn destroy_workload_in(&mut self, cgroup_ids: &[u64], ns: Option<&netns::Netns>, applied: &mut Applied) {
        if let Some(it) = self.iter.as_mut() {
            match it.destroy_cgroups(cgroup_ids, self.destroy_threads, ns) {
                Ok(done) => {
                    // The program counted every socket it acted on and kept the first ones.
                    applied.destroyed_with = Some(DESTROYED_WITH_ITERATOR);
                    let destroyed = usize::try_from(done.destroyed).unwrap_or(usize::MAX);
                    applied.sockets_destroyed = applied.sockets_destroyed.saturating_add(destroyed);
                    let before = applied.sockets.len();
                    for d in done.listed.iter().take(MAX_LISTED_SOCKETS.saturating_sub(before)) {
                        let result = if d.result == 0 {
                            "destroyed".to_owned()
                        } else {
                            format!("destroying {} -> {}: {}", d.sock.local, d.sock.remote, std::io::Error::from_raw_os_error(-d.result))
                        };
                        applied.sockets.push(SocketAction { side: "workload", socket: d.sock.clone(), result });
                    }
                    let listed = u64::try_from(applied.sockets.len().saturating_sub(before)).unwrap_or(u64::MAX);
                    let not_listed = usize::try_from(done.seen.saturating_sub(listed)).unwrap_or(usize::MAX);
                    applied.sockets_not_listed = applied.sockets_not_listed.saturating_add(not_listed);
                    if done.failed > 0 {
                        applied.errors.push(format!("bpf_sock_destroy failed on {} of the workload's {} sockets", done.failed, done.seen));
                    }
                    return;
                }
                Err(e) => applied.errors.push(format!("the BPF socket iterator failed ({e}): destroying through netlink instead")),
            }
        }
        // The kernel lists only the workload's sockets, then they are destroyed in batches:
        // two dumps and about one round trip per 64 sockets (kernel/diag.rs).
        applied.destroyed_with = Some(DESTROYED_WITH_NETLINK);
        let mut opened = None;
        let diag = match ns {
            None => &mut self.diag,
            Some(ns) => match open_diag_in(ns, &mut applied.errors) {
                Some(d) => opened.insert(d),
                None => return,
            },
        };
        match diag.dump_cgroups(cgroup_ids) {
            Ok(socks) => destroy_all(diag, "workload", &socks, applied),
            Err(e) => applied.errors.push(format!("listing the workload's sockets: {e}")),
        }
    }


    /// The workload's connects caught in flight by the quarantine: past the connect hook when
    /// the entry landed, to a destination it refuses. The egress filter drops their SYN and its
    /// retries, so each would hang until its caller's timeout (or the kernel's SYN retries,
    /// about two minutes) and then fail; aborted now, it fails at once (ECONNABORTED, and no
    /// reset: nothing was connected) and the next connect() is refused (EPERM). One sock_diag
    /// dump of the workload's SYN_SENT sockets (cgroup and state filtered in the kernel, both
    /// families in one walk of the TCP table).
    /// A connect that had passed the hook but was not yet in the hash table when the dump ran
    /// (a window of about a microsecond) is not seen: it stays silenced until its timeout.
    /// In each network namespace the workload's sockets are in ([`Enforcing::namespaces_of`]).
    fn abort_connecting(&mut self, q: &QuarantinePlan, applied: &mut Applied) {
        let found = self.namespaces_of(&q.cgroup_ids, applied);
        if found.own {
            abort_connecting_with(&mut self.diag, q, applied);
        }
        for ns in &found.others {
            if let Some(mut diag) = open_diag_in(ns, &mut applied.errors) {
                abort_connecting_with(&mut diag, q, applied);
            }
        }
    }

    /// One socket, in the namespace `ns` it was found in (`None`: the enforcer's own).
    fn destroy(&mut self, side: &'static str, sock: &SockInfo, ns: Option<&netns::Netns>, applied: &mut Applied) {
        let result = match ns {
            None => self.diag.destroy(sock),
            Some(ns) => {
                let described = format!("{} (cookie {})", ns.path.display(), ns.cookie);
                if !applied.namespaces.contains(&described) {
                    applied.namespaces.push(described);
                }
                match open_diag_in(ns, &mut applied.errors) {
                    Some(mut diag) => diag.destroy(sock),
                    None => return,
                }
            }
        };
        record_destroy(side, sock, result, applied);
    }

}

/// The workload's connects in flight to a destination `q` refuses, aborted with `diag`.
fn abort_connecting_with(diag: &mut SockDiag, q: &QuarantinePlan, applied: &mut Applied) {
    match diag.dump_cgroups_in(&q.cgroup_ids, diag::SYN_SENT_STATES) {
        Ok(socks) => {
            let refused: Vec<SockInfo> = socks.into_iter().filter(|s| plan::refuses(q, s.remote)).collect();
            if !refused.is_empty() {
                destroy_all(diag, "connecting", &refused, applied);
            }
        }
        Err(e) => applied.errors.push(format!("listing the workload's connects in flight: {e}")),
    }
}

fn destroy_all(diag: &mut SockDiag, side: &'static str, socks: &[SockInfo], applied: &mut Applied) {
    let refs: Vec<&SockInfo> = socks.iter().collect();
    let results = diag.destroy_many(&refs);
    for (sock, result) in socks.iter().zip(results) {
        record_destroy(side, sock, result, applied);
    }
}

/// The socket `local` -> `remote` in the namespace `ns`; a failure is added to `errors`.
fn find_in(ns: &netns::Netns, local: SocketAddr, remote: SocketAddr, side: &str, errors: &mut Vec<String>) -> Option<SockInfo> {
    let mut diag = open_diag_in(ns, errors)?;
    diag.find(local, remote).unwrap_or_else(|e| {
        errors.push(format!("looking up the {side} socket {local} -> {remote} in {}: {e}", ns.path.display()));
        None
    })
}

/// A sock_diag socket opened inside `ns` (it stays bound to that namespace, whichever thread
/// uses it), for one use: kept, it would keep a deleted pod's namespace alive. `None`: the error
/// is added to `errors`.
fn open_diag_in(ns: &netns::Netns, errors: &mut Vec<String>) -> Option<SockDiag> {
    match netns::run_in(ns, SockDiag::open) {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => {
            errors.push(format!("opening sock_diag in {}: {e}", ns.path.display()));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Counts and records one socket's destruction; the receipt lists at most
/// [`MAX_LISTED_SOCKETS`] sockets and counts the rest.
fn record_destroy(side: &'static str, sock: &SockInfo, result: std::io::Result<bool>, applied: &mut Applied) {
        let result = match result {
            Ok(true) => {
                applied.sockets_destroyed = applied.sockets_destroyed.saturating_add(1);
                "destroyed".to_owned()
            }
            Ok(false) => "gone".to_owned(),
            Err(e) => {
                let msg = format!("destroying {} -> {}: {e}", sock.local, sock.remote);
                applied.errors.push(msg.clone());
                msg
            }
        };
        if applied.sockets.len() < MAX_LISTED_SOCKETS {
            applied.sockets.push(SocketAction { side, socket: sock.clone(), result });
        } else {
            applied.sockets_not_listed = applied.sockets_not_listed.saturating_add(1);
        }
}
