//! State one VM (one Envoy worker) shares between its root context and its streams: the compiled
//! engine, the event queue ([`crate::events`]), the metric handles, the decision-id generator.
//!
//! Everything here is per worker on purpose: events and ids need no coordination across workers,
//! and the engine is compiled into each VM's memory (shared data would copy it on every read).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use interlock_policies::PolicySummary;
use interlock_policies::ratelimit::Leases;

use crate::config::{AccessLogState, EnforcerConfig};
use crate::events::EventQueue;
use crate::host;
use crate::live::Live;

/// What a VM's contexts share.
pub struct Shared {
    /// `None` until `on_configure` succeeded, and in a VM that only validates (the main thread's,
    /// see `root.rs`) until its first stream (see `pending`).
    pub live: RefCell<Option<Live>>,
    /// The configuration of a VM that only validated it (the main thread's VM, which never serves
    /// a stream): compiled into `live` on this VM's first stream, if it ever gets one. The host
    /// hands the configuration over only during `on_configure`, so it is kept (its bytes were in
    /// this VM's memory at the validation's peak anyway: keeping them grows nothing).
    pub pending: RefCell<Option<Vec<u8>>>,
    /// The live state as the VM that only validates follows it: what each policy is, no tables.
    /// Replaced by `live` on that VM's first stream.
    pub validated: RefCell<Option<Live<Rc<PolicySummary>>>>,
    pub enforcer: RefCell<EnforcerConfig>,
    pub hold_headers: RefCell<bool>,
    pub access_log_state: std::cell::Cell<AccessLogState>,
    pub events: RefCell<EventQueue>,
    pub metrics: RefCell<Metrics>,
    pub ids: RefCell<IdGen>,
    pub worker: RefCell<String>,
    /// Whether the host logs at debug level (read at configuration).
    pub debug_logs: std::cell::Cell<bool>,
    /// The tick was shortened to send an urgent event; the next tick restores it.
    pub fast_tick: std::cell::Cell<bool>,
    /// This worker's rate-limit leases (tokens taken from the shared buckets, spent here without
    /// a host call); bounded, see [`Leases`].
    pub leases: RefCell<Leases>,
}

impl Shared {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            live: RefCell::new(None),
            pending: RefCell::new(None),
            validated: RefCell::new(None),
            enforcer: RefCell::new(EnforcerConfig::default()),
            hold_headers: RefCell::new(true),
            access_log_state: std::cell::Cell::new(AccessLogState::default()),
            events: RefCell::new(EventQueue::default()),
            metrics: RefCell::new(Metrics::default()),
            ids: RefCell::new(IdGen::seeded()),
            worker: RefCell::new(String::new()),
            fast_tick: std::cell::Cell::new(false),
            debug_logs: std::cell::Cell::new(false),
            leases: RefCell::new(Leases::default()),
        })
    }
}

/// Metric handles. Decision counters are defined lazily per (outcome, rule); rules come from the
/// policy, so the cardinality is bounded by the policy, never by requests.
///
/// Decision counts are added up in the VM and handed to the host on the root's tick
/// ([`Metrics::flush`]), before that tick posts the events: two host calls fewer per decision, and
/// a decision's event never reaches the enforcer before its counter moved.
#[derive(Default)]
pub struct Metrics {
    /// Counts not yet handed to the host: (metric, amount), one entry per metric.
    pending: Vec<(u32, u64)>,
    /// outcome -> rule -> counter (looked up without allocating).
    decisions: HashMap<&'static str, HashMap<String, u32>>,
    fixed: HashMap<&'static str, u32>,
}

/// Counters and gauges with fixed names (Envoy shows them as `wasmcustom.<name>`).
pub const EVENTS_SENT: &str = "interlock.events.sent";
pub const EVENTS_DROPPED: &str = "interlock.events.dropped";
pub const EVENTS_POST_FAILURES: &str = "interlock.events.post_failures";
pub const EVENTS_BUFFERED: &str = "interlock.events.buffered";
pub const EVENTS_BUFFERED_BYTES: &str = "interlock.events.buffered_bytes";
pub const HOST_ERRORS: &str = "interlock.host_errors";
pub const POLICY_UPDATES: &str = "interlock.policy.updates";
pub const POLICY_REJECTED: &str = "interlock.policy.rejected";
pub const STATE_POLL_FAILURES: &str = "interlock.state.poll_failures";
pub const REVOCATIONS_ACTIVE: &str = "interlock.revocations.active";
pub const RATELIMIT_EVICTIONS: &str = "interlock.ratelimit.evictions";
pub const RATELIMIT_CONTENTION: &str = "interlock.ratelimit.contention";

impl Metrics {
    /// Counts one decision under `interlock.decisions.<outcome>.<rule>`, where the outcome is the
    /// action, or `shadow_<action>` for a shadow rule's verdict.
    pub fn count_decision(&mut self, outcome: &'static str, rule: &str) {
        let rules = self.decisions.entry(outcome).or_default();
        let id = match rules.get(rule) {
            Some(id) => Some(*id),
            None => {
                let id = host::define_counter(&format!("interlock.decisions.{outcome}.{rule}")).ok();
                if let Some(id) = id {
                    rules.insert(rule.to_owned(), id);
                }
                id
            }
        };
        if let Some(id) = id {
            self.defer(id, 1);
        }
        if let Some(total) = self.fixed_id("interlock.decisions.total", false) {
            self.defer(total, 1);
        }
    }

    fn defer(&mut self, metric: u32, by: u64) {
        match self.pending.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, n)) => *n = n.saturating_add(by),
            None => self.pending.push((metric, by)),
        }
    }

    /// Hands the counts added up since the last flush to the host.
    pub fn flush(&mut self) {
        for (metric, by) in self.pending.drain(..) {
            host::increment(metric, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    /// Adds to a fixed counter.
    pub fn add(&mut self, name: &'static str, by: u64) {
        if by == 0 {
            return;
        }
        if let Some(id) = self.fixed_id(name, false) {
            host::increment(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    /// Sets a fixed gauge.
    pub fn set_gauge(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.fixed_id(name, true) {
            host::record(id, value);
        }
    }

    fn fixed_id(&mut self, name: &'static str, gauge: bool) -> Option<u32> {
        if let Some(id) = self.fixed.get(name) {
            return Some(*id);
        }
        let id = if gauge { host::define_gauge(name) } else { host::define_counter(name) }.ok()?;
        self.fixed.insert(name, id);
        Some(id)
    }
}

/// Decision ids: host milliseconds then 64 random bits (xorshift64*, seeded once per VM from the
/// host's WASI `random_get`), 28 hex characters, sortable by time.
pub struct IdGen {
    state: u64,
}

impl IdGen {
    fn seeded() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| host::now_ms() ^ 0x9E37_79B9_7F4A_7C15);
        Self { state: seed | 1 }
    }

    pub fn next_id(&mut self, now_ms: u64) -> String {
        // xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        format!("{:012x}{:016x}", now_ms & 0xFFFF_FFFF_FFFF, x.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    /// A short random tag for this VM, used in the worker name.
    pub fn tag(&mut self) -> String {
        let id = self.next_id(0);
        id.get(id.len().saturating_sub(8)..).unwrap_or_default().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let mut g = IdGen { state: 42 };
        let a = g.next_id(1_700_000_000_000);
        let b = g.next_id(1_700_000_000_000);
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
