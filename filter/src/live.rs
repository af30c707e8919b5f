//! Live state: the policy and the revocations every worker decides with, fed by the enforcer and
//! shared across workers through proxy-wasm shared data.
//!
//! Layout (shared data has compare-and-swap and no delete, so keys are a fixed set of slots):
//! - `interlock.state` — the pointer, `"<version> <generation>"`, only ever advanced by CAS;
//! - `interlock.policy.<generation % 2>` — `"<generation>\n<policy JSON>"`;
//! - `interlock.revocations.<version % 2>` — `"<version>\n<revocations JSON>"`.
//!
//! A worker long-polls the enforcer (`GET /v1/state`, out of band on its root context), validates
//! and compiles what it receives, writes the slots, then CASes the pointer forward. Every request
//! reads only the small pointer; when it moved, the worker loads the slots once, compiles the
//! policy into its own memory and swaps its snapshot. A request keeps the snapshot it started
//! with, so no decision mixes two versions. Generation 0 is the policy of the plugin
//! configuration (the bootstrap, used until the enforcer serves one).
//!
//! The VM that never decides (the main thread's, `root.rs`) follows the same state holding only
//! what each policy is ([`Held`] for `Rc<PolicySummary>`): it validates what it receives with the
//! compiler's own checks, so it refuses and publishes exactly what a compiling VM would.

use std::rc::Rc;

use interlock_policies::revocation::{Revocation, RevocationSet};
use interlock_policies::{Engine, PolicyError, PolicySummary, ValidatedPolicy};
use proxy_wasm::types::LogLevel;
use serde::Deserialize;

use crate::host::{self, SetError};
use crate::state::{self, Metrics};

const POINTER: &str = "interlock.state";

fn policy_slot(generation: u64) -> String {
    format!("interlock.policy.{}", generation % 2)
}

fn revocations_slot(version: u64) -> String {
    format!("interlock.revocations.{}", version % 2)
}

/// What a VM keeps of each policy it follows: the compiled engine (a VM that decides), or only
/// what the policy is (the VM that only validates).
pub trait Held: Clone {
    /// Reads a policy's JSON text: compiles it, or only validates it; the same errors either way.
    fn read(text: &str) -> Result<Self, PolicyError>;
    /// The document's `version`.
    fn version(&self) -> &str;
    /// What the log says when this VM follows policy `generation`.
    fn adopted(&self, generation: u64) -> String;
}

impl Held for Rc<Engine> {
    fn read(text: &str) -> Result<Self, PolicyError> {
        Engine::from_json(text).map(Rc::new)
    }

    fn version(&self) -> &str {
        Engine::version(self)
    }

    fn adopted(&self, generation: u64) -> String {
        format!("interlock: now deciding with policy {:?} (generation {generation})", Engine::version(self))
    }
}

impl Held for Rc<PolicySummary> {
    fn read(text: &str) -> Result<Self, PolicyError> {
        ValidatedPolicy::validate_json(text).map(Rc::new)
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn adopted(&self, generation: u64) -> String {
        format!(
            "interlock: policy {:?} (generation {generation}) validated ({} rules), not compiled: this VM validates only",
            self.version, self.rules
        )
    }
}

/// What one decision uses: one policy and one revocation set, of one version.
#[derive(Clone)]
pub struct Snapshot<P = Rc<Engine>> {
    pub version: u64,
    pub generation: u64,
    pub engine: P,
    pub revocations: Rc<RevocationSet>,
}

/// A worker's view of the live state (`P`: what it keeps of each policy, see [`Held`]).
pub struct Live<P = Rc<Engine>> {
    pub current: Snapshot<P>,
    bootstrap: P,
    /// A generation this VM refused to compile: not asked for again.
    rejected_generation: u64,
    pub poll_in_flight: Option<u32>,
    /// Host milliseconds before which no new poll starts (back-off after failures).
    pub next_poll_ms: u64,
    pub poll_failures: u32,
    /// A first poll went out.
    polled: bool,
    /// Host millisecond of the last per-request pointer read ([`Live::sync_at`]).
    synced_ms: u64,
}

/// The enforcer's answer to `GET /v1/state`.
#[derive(Deserialize)]
struct StateAnswer {
    version: u64,
    policy_generation: u64,
    #[serde(default)]
    policy: Option<serde_json::Value>,
    #[serde(default)]
    revocations: Vec<Revocation>,
}

impl<P: Held> Live<P> {
    pub fn new(bootstrap: P) -> Self {
        Self {
            current: Snapshot { version: 0, generation: 0, engine: bootstrap.clone(), revocations: Rc::new(RevocationSet::default()) },
            bootstrap,
            rejected_generation: 0,
            poll_in_flight: None,
            next_poll_ms: 0,
            poll_failures: 0,
            polled: false,
            synced_ms: 0,
        }
    }

    /// `next` (this VM's policy, now compiled) takes this view's place: the poll in flight, its
    /// back-off and the generation refused go over; the caller then syncs `next` to the pointer.
    pub fn hand_over<Q>(self, mut next: Live<Q>) -> Live<Q> {
        next.rejected_generation = self.rejected_generation;
        next.poll_in_flight = self.poll_in_flight;
        next.next_poll_ms = self.next_poll_ms;
        next.poll_failures = self.poll_failures;
        next.polled = self.polled;
        next
    }

    /// The path of the next long poll.
    pub fn poll_path(&mut self, wait_ms: u64) -> String {
        let known = self.current.generation.max(self.rejected_generation);
        // A fresh worker's first poll asks for an immediate answer; every later one waits for a
        // change (an enforcer with nothing yet stays at version 0: asking again at once would
        // spin).
        let wait = if self.polled { wait_ms } else { 0 };
        self.polled = true;
        format!("/v1/state?version={}&policy_generation={known}&wait_ms={wait}", self.current.version)
    }

    /// Adopts what other workers published, if the pointer moved. Called on every tick and on
    /// every answer to this worker's own long poll.
    pub fn sync(&mut self, metrics: &mut Metrics) -> Snapshot<P> {
        if let Some((version, generation, _)) = read_pointer().filter(|(v, _, _)| *v > self.current.version) {
            self.adopt(version, generation, None, metrics);
        }
        self.current.clone()
    }

    /// [`Live::sync`] for a request arriving at host time `now_ms`: the pointer is read at most
    /// once per host millisecond. Shared data sits behind a host-wide lock and is copied on every
    /// read (about a microsecond inside Envoy); under load a millisecond holds tens of requests,
    /// and each worker also hears every change from its own long poll. A change another worker
    /// published therefore reaches this one's requests within a millisecond of its pointer write.
    pub fn sync_at(&mut self, now_ms: u64, metrics: &mut Metrics) -> Snapshot<P> {
        if now_ms == 0 || now_ms != self.synced_ms {
            self.synced_ms = now_ms;
            return self.sync(metrics);
        }
        self.current.clone()
    }

    /// Loads (version, generation) from the slots; `compiled` is a policy this worker already has.
    fn adopt(&mut self, version: u64, generation: u64, compiled: Option<P>, metrics: &mut Metrics) {
        let engine = if generation == self.current.generation {
            Some(self.current.engine.clone())
        } else if generation == 0 {
            Some(self.bootstrap.clone())
        } else if let Some(e) = compiled {
            Some(e)
        } else {
            match read_slot(&policy_slot(generation), generation) {
                Some(text) => match P::read(&text) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        metrics.add(state::POLICY_REJECTED, 1);
                        host::log(LogLevel::Error, &format!("interlock: shared policy generation {generation} refused: {e}"));
                        None
                    }
                },
                // Overwritten by a newer generation meanwhile: the next sync sees the newer pointer.
                None => return,
            }
        };
        let Some(text) = read_slot(&revocations_slot(version), version) else { return };
        let revocations = match serde_json::from_str::<Vec<Revocation>>(&text) {
            Ok(list) => Rc::new(RevocationSet::new(list)),
            Err(e) => {
                host::log(LogLevel::Error, &format!("interlock: shared revocations of version {version} unreadable: {e}"));
                return;
            }
        };
        let (generation, engine) = match engine {
            Some(e) => (generation, e),
            // Keep deciding with the last good policy; take the new revocations.
            None => (self.current.generation, self.current.engine.clone()),
        };
        if generation != self.current.generation {
            metrics.add(state::POLICY_UPDATES, 1);
            host::log(LogLevel::Info, &engine.adopted(generation));
        }
        self.current = Snapshot { version, generation, engine, revocations };
        metrics.set_gauge(state::REVOCATIONS_ACTIVE, self.current.revocations.len() as u64);
    }

    /// Handles the enforcer's answer to a long poll: validate, publish for every worker, adopt.
    pub fn on_poll_answer(&mut self, body: &[u8], metrics: &mut Metrics) {
        let answer: StateAnswer = match serde_json::from_slice(body) {
            Ok(a) => a,
            Err(e) => {
                metrics.add(state::STATE_POLL_FAILURES, 1);
                host::log(LogLevel::Error, &format!("interlock: unreadable state from the enforcer: {e}"));
                return;
            }
        };
        self.sync(metrics);
        if answer.version <= self.current.version {
            return;
        }
        // Compile (or validate, the same checks) before publishing: a policy this filter cannot
        // run never reaches shared data.
        let mut generation = self.current.generation;
        let mut compiled = None;
        if let Some(policy) = answer.policy.filter(|_| answer.policy_generation != self.current.generation) {
            let text = policy.to_string();
            match P::read(&text) {
                Ok(e) => {
                    let slot = policy_slot(answer.policy_generation);
                    if let Err(e) = host::shared_set(&slot, format!("{}\n{text}", answer.policy_generation).as_bytes(), None) {
                        host::log(LogLevel::Error, &format!("interlock: cannot publish the policy to shared data: {e}"));
                        return;
                    }
                    generation = answer.policy_generation;
                    compiled = Some(e);
                }
                Err(e) => {
                    metrics.add(state::POLICY_REJECTED, 1);
                    self.rejected_generation = answer.policy_generation;
                    host::log(
                        LogLevel::Error,
                        &format!("interlock: policy generation {} refused, keeping {:?}: {e}", answer.policy_generation, self.current.engine.version()),
                    );
                }
            }
        }
        let revocations = match serde_json::to_string(&answer.revocations) {
            Ok(t) => t,
            Err(_) => return,
        };
        if host::shared_set(&revocations_slot(answer.version), format!("{}\n{revocations}", answer.version).as_bytes(), None).is_err() {
            return;
        }
        // Advance the pointer; a worker that got there first with a newer version wins.
        for _ in 0..8 {
            let (cur_version, cas) = match read_pointer() {
                Some((v, _, cas)) => (v, Some(cas)),
                None => (0, None),
            };
            if cur_version >= answer.version {
                break;
            }
            match host::shared_set(POINTER, format!("{} {generation}", answer.version).as_bytes(), cas) {
                Ok(()) => break,
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Host(e)) => {
                    host::log(LogLevel::Error, &format!("interlock: cannot publish live state: {e}"));
                    return;
                }
            }
        }
        match read_pointer() {
            Some((v, g, _)) if v == answer.version && g == generation => self.adopt(v, g, compiled, metrics),
            _ => {
                self.sync(metrics);
            }
        }
    }
}

fn read_pointer() -> Option<(u64, u64, u32)> {
    let (bytes, cas) = host::shared_get(POINTER).ok()??;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (v, g) = text.split_once(' ')?;
    Some((v.parse().ok()?, g.parse().ok()?, cas))
}

/// A slot's body if its header names `expected`.
fn read_slot(key: &str, expected: u64) -> Option<String> {
    let (bytes, _) = host::shared_get(key).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once('\n')?;
    (head.parse::<u64>().ok()? == expected).then(|| body.to_owned())
}
