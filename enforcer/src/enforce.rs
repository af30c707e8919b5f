//! From decision to kernel, with receipts. One worker thread owns the [`Kernel`] and the
//! [`AuditLog`]: decisions, manual quarantines and releases are queued to it in arrival order,
//! so map writes never race and every receipt lands in the chain in the order things happened.
//!
//! For a denied, enforced event that carries `kernel`, the worker resolves the caller from the
//! event's (downstream, destination) addresses, plans ([`crate::kernel::plan`]), applies, and
//! appends a receipt with the decision time (the event's) and the kernel time (when the last map
//! write or socket destroy returned), so the delay is measured. Once a second it sweeps: expired
//! quarantines are removed from the maps, and refused connects counted by the program since the
//! last look are appended as `observation` records that reference the decision.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use interlock_policies::decision::Action;
use interlock_policies::schema::Mode;
use interlock_policies::DecisionEvent;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::api::Peer;
use crate::audit::AuditLog;
use crate::kernel::plan::{self, Caller};
use crate::kernel::{Kernel, sys};
use crate::workload::{procs_under, socket_owner, socket_owner_among};

/// How often expired quarantines are swept and refusals observed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

fn now_unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A CLOCK_MONOTONIC instant (ns) as Unix milliseconds, for records people read.
fn mono_to_unix_ms(mono_ns: u64) -> u64 {
    let now_mono = sys::monotonic_ns();
    let now_unix_ms = now_unix_us() / 1000;
    if mono_ns >= now_mono {
        now_unix_ms.saturating_add((mono_ns - now_mono) / 1_000_000)
    } else {
        now_unix_ms.saturating_sub((now_mono - mono_ns) / 1_000_000)
    }
}

/// Whether an event asks the enforcer to act in the kernel.
pub fn wants_kernel(event: &DecisionEvent) -> bool {
    event.kernel.is_some() && event.action == Action::Deny && event.mode == Mode::Enforce
}

enum Job {
    Decision { event: Box<DecisionEvent>, peer: Option<Peer>, received_unix_us: u64, received: Instant },
    Quarantine { workload: String, ttl_secs: u32, reply: oneshot::Sender<Result<Value, String>> },
    Release { workload: String, reply: oneshot::Sender<Result<Value, String>> },
    Status { reply: oneshot::Sender<Value> },
    Stop { cleanup: bool, reply: oneshot::Sender<Value> },
}

/// A quarantine the worker tracks (to sweep it and to report its refusals).
#[derive(Debug, Clone)]
struct Active {
    decision_id: String,
    rule: String,
    workload: Option<String>,
    expires_mono_ns: u64,
    reported: u64,
}

/// The handle the API uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Enforcement {
    tx: mpsc::Sender<Job>,
    /// What the worker thread's scheduling request obtained ([`sys::prioritize_current_thread`]).
    scheduling: &'static str,
}

impl Enforcement {
    /// Starts the worker with `kernel` and `audit`; writes the `start` record first.
    pub fn start(kernel: Kernel, mut audit: AuditLog) -> Result<(Self, std::thread::JoinHandle<()>), String> {
        let status = kernel.status();
        audit
            .append(json!({ "kind": "start", "time_unix_ms": now_unix_us() / 1000, "kernel": status }))
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker { kernel, audit, active: HashMap::new(), events_refused: 0, scheduling: "default" };
        worker.adopt_pinned();
        let (started_tx, started) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("interlock-kernel".to_owned())
            .spawn(move || {
                worker.scheduling = sys::prioritize_current_thread();
                let _ = started_tx.send(worker.scheduling);
                worker.run(&rx);
            })
            .map_err(|e| format!("cannot start the kernel worker: {e}"))?;
        let scheduling = started.recv().map_err(|_| "the kernel worker stopped at start".to_owned())?;
        Ok((Self { tx, scheduling }, handle))
    }

    /// How the worker thread is scheduled (for the start-up message; also in the status).
    pub fn scheduling(&self) -> &'static str {
        self.scheduling
    }

    /// Queues a decision event (only those [`wants_kernel`] accepts are acted on) that came on
    /// the connection `peer` ([`crate::event_auth`]).
    pub fn decision(&self, event: DecisionEvent, peer: Option<Peer>, received_unix_us: u64, received: Instant) {
        if wants_kernel(&event) {
            let _ = self.tx.send(Job::Decision { event: Box::new(event), peer, received_unix_us, received });
        }
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(job(reply)).map_err(|_| "the kernel worker has stopped".to_owned())?;
        answer.await.map_err(|_| "the kernel worker has stopped".to_owned())
    }

    pub async fn quarantine(&self, workload: String, ttl_secs: u32) -> Result<Value, String> {
        self.ask(|reply| Job::Quarantine { workload, ttl_secs, reply }).await?
    }

    pub async fn release(&self, workload: String) -> Result<Value, String> {
        self.ask(|reply| Job::Release { workload, reply }).await?
    }

    pub async fn status(&self) -> Result<Value, String> {
        self.ask(|reply| Job::Status { reply }).await
    }

    /// Stops the worker; with `cleanup`, detaches the programs and removes every pin first.
    pub async fn stop(&self, cleanup: bool) -> Result<Value, String> {
        self.ask(|reply| Job::Stop { cleanup, reply }).await
    }
}

struct Worker {
    kernel: Kernel,
    audit: AuditLog,
    /// By cgroup id.
    active: HashMap<u64, Active>,
    /// Events whose kernel action was refused because their poster may not ask for it.
    events_refused: u64,
    /// The worker thread's scheduling ([`sys::prioritize_current_thread`]).
    scheduling: &'static str,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Job::Decision { event, peer, received_unix_us, received }) => {
                    self.decision(&event, peer, received_unix_us, received);
                    // The decision may have relaxed this thread after enforcing: real-time
                    // again before waiting for the next one.
                    if self.realtime() {
                        let _ = sys::prioritize_current_thread();
                    }
                }
                Ok(Job::Quarantine { workload, ttl_secs, reply }) => {
                    let _ = reply.send(self.manual_quarantine(&workload, ttl_secs));
                }
                Ok(Job::Release { workload, reply }) => {
                    let _ = reply.send(self.release(&workload));
                }
                Ok(Job::Status { reply }) => {
                    let _ = reply.send(self.status());
                }
                Ok(Job::Stop { cleanup, reply }) => {
                    self.sweep();
                    let removed = if cleanup { self.kernel.remove_pins() } else { Vec::new() };
                    let _ = reply.send(json!({ "removed": removed }));
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + SWEEP_INTERVAL;
            }
        }
    }

    fn append(&mut self, record: Value) {
        if let Err(e) = self.audit.append(record) {
            eprintln!("interlock enforcer: AUDIT RECORD NOT WRITTEN: {e}");
        }
    }

    /// After a restart: quarantines still in the pinned map are tracked again, under the
    /// decision their receipt names.
    fn adopt_pinned(&mut self) {
        for (cgroup_id, expires_mono_ns, tag, _) in self.kernel.quarantines() {
            let found = crate::audit::records_tagged(self.audit.path(), tag);
            let (decision_id, rule) = found.unwrap_or_else(|| (format!("unknown-tag-{tag:#018x}"), String::new()));
            let workload = self.kernel.root().and_then(|r| r.workload_of(cgroup_id));
            let reported = self.kernel.refusals(tag).map_or(0, |(c, _)| c);
            self.active.insert(cgroup_id, Active { decision_id, rule, workload, expires_mono_ns, reported });
        }
    }

    fn status(&self) -> Value {
        let now = sys::monotonic_ns();
        let active: Vec<Value> = self
            .active
            .iter()
            .map(|(id, a)| {
                json!({
                    "cgroup_id": id,
                    "workload": a.workload,
                    "decision_id": a.decision_id,
                    "rule": a.rule,
                    "expires_in_ms": (a.expires_mono_ns != 0).then(|| a.expires_mono_ns.saturating_sub(now) / 1_000_000),
                    "refused_connects": self.kernel.refusals(plan::tag_for(&a.decision_id)).map_or(0, |(c, _)| c),
                })
            })
            .collect();
        json!({
            "kernel": self.kernel.status(),
            "audit_log": self.audit.path(),
            "quarantined": active,
            "events_refused": self.events_refused,
            "worker_scheduling": self.scheduling,
            "event_threads_scheduling": sys::event_threads_scheduling(),
        })
    }

    fn decision(&mut self, event: &DecisionEvent, peer: Option<Peer>, received_unix_us: u64, received: Instant) {
        let Some(action) = &event.kernel else { return };
        let mut record = json!({
            "kind": "receipt",
            "decision_id": event.decision_id,
            "rule": event.rule,
            "policy_version": event.policy_version,
            "agent": event.identity.agent,
            "requested": action,
            "downstream": event.downstream,
            "destination": event.destination,
            "decision_unix_ms": event.time_unix_ms,
            "received_unix_us": received_unix_us,
        });
        let addrs = plan::parse_addr("downstream", event.downstream.as_deref())
            .and_then(|d| plan::parse_addr("destination", event.destination.as_deref()).map(|t| (d, t)));
        let (downstream, destination) = match addrs {
            Ok(a) => a,
            Err(e) => {
                set(&mut record, "mode", json!(self.mode()));
                set(&mut record, "outcome", json!("nothing done"));
                set(&mut record, "errors", json!([e.to_string()]));
                self.append(record);
                return;
            }
        };
        let (resolved, mut errors) = self.kernel.resolve(downstream, destination);
        // Who posted it may ask for this? (event_auth's rule, before anything is planned.)
        let (poster, poster_error) = match peer {
            Some(p) => self.kernel.find_poster(p.remote, p.local),
            None => (None, None),
        };
        if let Err(refused) =
            crate::event_auth::may_act(peer, destination, resolved.proxy_here(), poster.as_ref())
        {
            self.events_refused = self.events_refused.saturating_add(1);
            set(&mut record, "kind", json!("refused"));
            set(&mut record, "mode", json!(self.mode()));
            set(&mut record, "outcome", json!("refused: nothing done"));
            set(&mut record, "reason", json!(refused.to_string()));
            set(&mut record, "posted_from", json!(peer.map(|p| p.remote.to_string())));
            if let Some(e) = poster_error {
                errors.push(e);
            }
            if !errors.is_empty() {
                set(&mut record, "errors", json!(errors));
            }
            eprintln!(
                "interlock enforcer: REFUSED the kernel action of decision {} (rule {}) posted from {}: {refused}",
                event.decision_id,
                event.rule,
                peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.remote.to_string())
            );
            self.append(record);
            return;
        }
        let caller = self.kernel.caller(resolved.caller.as_ref().and_then(|s| s.cgroup_id));
        let planned = match plan::plan(action, &event.decision_id, downstream, destination, &caller, sys::monotonic_ns()) {
            Ok(p) => p,
            Err(e) => {
                set(&mut record, "mode", json!(self.mode()));
                set(&mut record, "outcome", json!("nothing done"));
                set(&mut record, "errors", json!([e.to_string()]));
                self.append(record);
                return;
            }
        };
        let mut applied = self.kernel.apply(&planned, &resolved);
        let kernel_unix_us = now_unix_us();
        let received_to_kernel_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The connects the quarantine caught in flight hang until they are aborted: still at
        // real-time priority (one dump, ~0.3 ms; at fair priority a busy CPU held it off for
        // milliseconds, bench/KERNEL.md section 4). The rest (the receipt) at fair priority: at
        // real-time it would hold the CPU of the very workload that was just quarantined.
        if let Some(applied) = applied.as_mut() {
            self.kernel.abort_connecting(&planned, applied);
        }
        if self.realtime() {
            let _ = sys::relax_current_thread();
        }
        // Who, for people: looked up after the kernel acted, so it never delays enforcement.
        // In a managed workload, among the workload's processes only (its cgroup tree's
        // cgroup.procs): not every process of the node, whose walk costs tens of milliseconds
        // with 10,000 sockets open and holds up the next job of this worker.
        let owner = resolved.caller.as_ref().and_then(|s| match (&caller.workload, self.kernel.root()) {
            (Some(w), Some(root)) => root.workload_dir(w).ok().and_then(|dir| socket_owner_among(s.inode, procs_under(&dir))),
            _ => socket_owner(s.inode),
        });
        set(&mut record, "mode", json!(self.mode()));
        set(&mut record, "caller", caller_json(&caller, owner.as_ref()));
        set(&mut record, "plan", json!(planned));
        match &applied {
            Some(applied) => {
                errors.extend(applied.errors.iter().cloned());
                set(&mut record, "outcome", json!(if errors.is_empty() { "enforced" } else { "partially enforced" }));
                set(&mut record, "maps_written", json!(applied.maps_written));
                set(&mut record, "programs_attached", json!(self.kernel.status().programs));
                set(&mut record, "sockets_destroyed", json!(applied.sockets_destroyed));
                if let Some(with) = applied.destroyed_with {
                    set(&mut record, "sockets_destroyed_with", json!(with));
                }
                set(&mut record, "sockets", json!(applied.sockets));
                if applied.sockets_not_listed > 0 {
                    set(&mut record, "sockets_not_listed", json!(applied.sockets_not_listed));
                }
                if !applied.namespaces.is_empty() {
                    set(&mut record, "namespaces", json!(applied.namespaces));
                }
                set(&mut record, "kernel_unix_us", json!(kernel_unix_us));
                set(&mut record, "received_to_kernel_us", json!(received_to_kernel_us));
                // Silenced at T (one map write: every packet of the workload's live sockets to a
                // refused destination dropped), N sockets destroyed by T2 (the end of the above).
                if let (Some(at), Some(mono)) = (applied.silenced_at, applied.silenced_mono_ns) {
                    set(&mut record, "silenced", json!({
                        "received_to_silenced_us": u64::try_from(at.saturating_duration_since(received).as_micros()).unwrap_or(u64::MAX),
                        "monotonic_ns": mono,
                    }));
                }
                if planned.terminate.is_some() {
                    set(&mut record, "received_to_destroyed_us", json!(received_to_kernel_us));
                }
                // Decision time has millisecond resolution (the proxy's clock); kernel time
                // microseconds (ours). Same host, same clock.
                #[allow(clippy::cast_precision_loss)] // Unix times in ms fit f64's 53 bits exactly.
                let delay_ms = (kernel_unix_us as f64) / 1000.0 - (event.time_unix_ms as f64);
                set(&mut record, "decision_to_kernel_ms", json!((delay_ms * 1000.0).round() / 1000.0));
                if let Some(q) = &planned.quarantine {
                    set(&mut record, "quarantine", json!({
                        "cgroup_ids": q.cgroup_ids,
                        "tag": format!("{:#018x}", q.tag),
                        "until_unix_ms": (q.expires_mono_ns != 0).then(|| mono_to_unix_ms(q.expires_mono_ns)),
                        "block": if q.block_all { "all" } else { "destination" },
                        "destinations": q.dests.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }));
                    for &id in &q.cgroup_ids {
                        self.active.insert(id, Active {
                            decision_id: event.decision_id.clone(),
                            rule: event.rule.clone(),
                            workload: caller.workload.clone(),
                            expires_mono_ns: q.expires_mono_ns,
                            reported: 0,
                        });
                    }
                }
            }
            None => {
                // Observe-only: what would have been done, never reported as done.
                set(&mut record, "outcome", json!("observe-only: nothing done in the kernel"));
                set(&mut record, "observe_only_reason", json!(self.kernel.status().reason));
                set(&mut record, "sockets_destroyed", json!(0));
            }
        }
        if !errors.is_empty() {
            set(&mut record, "errors", json!(errors));
        }
        let line = format!(
            "interlock enforcer: decision {} rule {}: {} ({} sockets destroyed{}){}",
            event.decision_id,
            event.rule,
            record.get("outcome").and_then(Value::as_str).unwrap_or_default(),
            applied.as_ref().map_or(0, |a| a.sockets_destroyed),
            if planned.quarantine.is_some() { ", workload quarantined" } else { "" },
            record.get("decision_to_kernel_ms").map(|d| format!(", {d} ms after the decision")).unwrap_or_default(),
        );
        eprintln!("{line}");
        self.append(record);
    }

    /// Whether this thread got real-time scheduling at start (then relaxed and restored
    /// around each decision's bookkeeping).
    fn realtime(&self) -> bool {
        self.scheduling.starts_with("SCHED_FIFO")
    }

    fn mode(&self) -> &'static str {
        if self.kernel.is_enforcing() { "enforcing" } else { "observe-only" }
    }

    fn manual_quarantine(&mut self, workload: &str, ttl_secs: u32) -> Result<Value, String> {
        let root = self.kernel.root().ok_or("no managed cgroup root (kernel enforcement is off)")?;
        let ids = root.cgroup_ids(workload).map_err(|e| e.to_string())?;
        let decision_id = format!("manual-{}", crate::token::random_session_id().map_err(|e| e.to_string())?);
        let q = plan::manual_quarantine(plan::tag_for(&decision_id), ids, ttl_secs, sys::monotonic_ns());
        let applied = self.kernel.install(&q);
        let kernel_unix_us = now_unix_us();
        let mut record = json!({
            "kind": "receipt",
            "decision_id": decision_id,
            "rule": "manual-quarantine",
            "workload": workload,
            "mode": self.mode(),
            "requested": { "quarantine": { "duration_secs": q.duration_secs, "block": "all" } },
            "decision_unix_ms": kernel_unix_us / 1000,
            "kernel_unix_us": kernel_unix_us,
            "quarantine": {
                "cgroup_ids": q.cgroup_ids,
                "tag": format!("{:#018x}", q.tag),
                "until_unix_ms": (q.expires_mono_ns != 0).then(|| mono_to_unix_ms(q.expires_mono_ns)),
                "block": "all",
            },
        });
        match applied {
            Some(a) => {
                set(&mut record, "outcome", json!(if a.errors.is_empty() { "enforced" } else { "partially enforced" }));
                set(&mut record, "maps_written", json!(a.maps_written));
                if !a.errors.is_empty() {
                    set(&mut record, "errors", json!(a.errors));
                }
                for &id in &q.cgroup_ids {
                    self.active.insert(id, Active {
                        decision_id: decision_id.clone(),
                        rule: "manual-quarantine".to_owned(),
                        workload: Some(workload.to_owned()),
                        expires_mono_ns: q.expires_mono_ns,
                        reported: 0,
                    });
                }
            }
            None => set(&mut record, "outcome", json!("observe-only: nothing done in the kernel")),
        }
        self.append(record.clone());
        Ok(record)
    }

    fn release(&mut self, workload: &str) -> Result<Value, String> {
        let root = self.kernel.root().ok_or("no managed cgroup root (kernel enforcement is off)")?;
        let ids = root.cgroup_ids(workload).map_err(|e| e.to_string())?;
        let lifted = self.kernel.lift(&ids);
        let kernel_unix_us = now_unix_us();
        let mut released = Vec::new();
        for id in &ids {
            if let Some(a) = self.active.remove(id) {
                self.observe(&a, "released");
                released.push(a.decision_id);
            }
        }
        let record = json!({
            "kind": "release",
            "workload": workload,
            "cgroup_ids": ids,
            "mode": self.mode(),
            "decisions": released,
            "maps_written": lifted,
            "kernel_unix_us": kernel_unix_us,
        });
        self.append(record.clone());
        Ok(record)
    }

    /// Appends an observation when the program counted refusals since the last one (or always,
    /// with a final `state`).
    fn observe(&mut self, a: &Active, state: &str) {
        let tag = plan::tag_for(&a.decision_id);
        let (count, last_ns) = self.kernel.refusals(tag).unwrap_or((a.reported, 0));
        if state != "active" {
            self.kernel.forget_refusals(tag);
        } else if count == a.reported {
            return;
        }
        self.append(json!({
            "kind": "observation",
            "decision_id": a.decision_id,
            "rule": a.rule,
            "workload": a.workload,
            "quarantine": state,
            "refused_connects": count,
            "last_refusal_unix_ms": (last_ns != 0).then(|| mono_to_unix_ms(last_ns)),
            "observed_unix_ms": now_unix_us() / 1000,
        }));
    }

    fn sweep(&mut self) {
        let now = sys::monotonic_ns();
        let expired: Vec<u64> =
            self.active.iter().filter(|(_, a)| plan::expired(a.expires_mono_ns, now)).map(|(id, _)| *id).collect();
        if !expired.is_empty() {
            let lifted = self.kernel.lift(&expired);
            for id in &expired {
                if let Some(a) = self.active.remove(id) {
                    self.observe(&a, "expired");
                }
            }
            drop(lifted);
        }
        let actives: Vec<(u64, Active)> = self.active.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (id, a) in actives {
            let tag = plan::tag_for(&a.decision_id);
            let count = self.kernel.refusals(tag).map_or(0, |(c, _)| c);
            if count != a.reported {
                self.observe(&a, "active");
                if let Some(entry) = self.active.get_mut(&id) {
                    entry.reported = count;
                }
            }
        }
    }
}

/// Sets a member of a JSON object record.
fn set(record: &mut Value, key: &str, value: Value) {
    if let Some(object) = record.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

fn caller_json(caller: &Caller, owner: Option<&crate::workload::SocketOwner>) -> Value {
    json!({
        "cgroup_id": caller.cgroup_id,
        "workload": caller.workload,
        "managed": caller.workload.is_some(),
        "process": owner,
    })
}
