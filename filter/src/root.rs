//! The root context: compiles the configuration in `on_configure`, creates streams, and flushes
//! decision events to the enforcer on every tick, out of band of any request.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::{self, AccessLogState, EnforcerConfig};
use crate::host::{self, SetError};
use crate::http::Stream;
use crate::live::Live;
use crate::state::{self, Shared};

pub struct Root {
    shared: Rc<Shared>,
    /// Failed posts since the last success; the warning is logged on the 1st, 10th, 100th...
    /// so an unreachable enforcer does not flood the log (the counter metric has every one).
    failures: u64,
}

impl Default for Root {
    fn default() -> Self {
        Self { shared: Shared::new(), failures: 0 }
    }
}

impl Root {

    /// The configuration and everything but the policy's tables, shared by both ways in.
    fn settle(&mut self, enforcer: EnforcerConfig, hold_headers: bool, access_log_state: AccessLogState) -> bool {
        let period = Duration::from_millis(enforcer.flush_interval_ms);
        *self.shared.enforcer.borrow_mut() = enforcer;
        *self.shared.hold_headers.borrow_mut() = hold_headers;
        self.shared.access_log_state.set(access_log_state);
        let node = host::property_str(&["node", "id"]).filter(|n| !n.is_empty()).unwrap_or_else(|| "envoy".into());
        let tag = self.shared.ids.borrow_mut().tag();
        self.shared.debug_logs.set(host::debug_enabled());
        *self.shared.worker.borrow_mut() = format!("{node}/{tag}");
        if let Err(e) = host::set_tick_period(period) {
            host::log(LogLevel::Critical, &format!("interlock: cannot schedule event flushing: {e}"));
            return false;
        }
        true
    }

    /// The first VM of the process to configure these bytes: in Envoy 1.40 the configuration
    /// canary, a throwaway VM on the main thread whose verdict decides whether the configuration
    /// is taken, and which is destroyed right after (bench/MEMORY.md, session 5). It gives the
    /// same verdict, with the same error, without keeping the policy's tables, even at peak; it
    /// compiles them on its first stream should it ever get one (correctness never depends on the
    /// guess; a wrong one costs one slow first request). It does not follow live state until then.
    fn configure_validate_only(&mut self, bytes: Option<Vec<u8>>) -> bool {
        match config::validate(bytes.as_deref()) {
            Ok(v) => {
                if !self.settle(v.enforcer, v.hold_headers, v.access_log_state) {
                    return false;
                }
                *self.shared.pending.borrow_mut() = bytes;
                host::log(
                    LogLevel::Info,
                    &format!(
                        "interlock: policy {:?} validated ({} rules), not compiled: this VM is the first to configure it in this process (Envoy's configuration canary); it compiles it on its first stream",
                        v.engine.version, v.engine.rules
                    ),
                );
                true
            }
            Err(e) => {
                host::log(LogLevel::Critical, &format!("interlock: configuration refused: {e}"));
                false
            }
        }
    }

    /// Compiles the policy of a VM that only validated it, on its first stream. A failure (it
    /// was validated: it cannot happen) leaves `live` empty, and the stream fails closed.
    fn compile_pending(&self) {
        let Some(bytes) = self.shared.pending.borrow_mut().take() else { return };
        match config::load(Some(&bytes)) {
            Ok(loaded) => {
                let version = loaded.engine.version().to_owned();
                let rules = loaded.engine.rule_count();
                *self.shared.live.borrow_mut() = Some(Live::new(loaded.engine));
                host::log(LogLevel::Info, &format!("interlock: policy {version:?} compiled on this VM's first stream ({rules} rules; it had only validated it)"));
            }
            Err(e) => host::log(LogLevel::Critical, &format!("interlock: policy validated earlier now refused, failing closed: {e}")),
        }
    }

    fn warn_failure(&mut self, what: &str) {
        self.failures = self.failures.saturating_add(1);
        if self.failures.is_power_of_two() || self.failures.is_multiple_of(1000) {
            host::log(LogLevel::Warn, &format!("interlock: {what} ({} consecutive failures; events are kept and retried)", self.failures));
        }
    }

    /// Adopts what other workers published, and keeps one long poll to the enforcer open.
    fn follow_live_state(&mut self) {
        let enforcer = self.shared.enforcer.borrow().clone();
        let mut metrics = self.shared.metrics.borrow_mut();
        let mut live = self.shared.live.borrow_mut();
        let Some(live) = live.as_mut() else { return };
        live.sync(&mut metrics);
        if !enforcer.live || live.poll_in_flight.is_some() || host::now_ms() < live.next_poll_ms {
            return;
        }
        let path = live.poll_path(enforcer.state_wait_ms);
        let timeout = Duration::from_millis(enforcer.state_wait_ms.saturating_add(5_000));
        match host::get(&enforcer.cluster, &enforcer.authority, &path, timeout) {
            Ok(token) => live.poll_in_flight = Some(token),
            Err(e) => {
                metrics.add(state::STATE_POLL_FAILURES, 1);
                live.next_poll_ms = host::now_ms().saturating_add(1_000);
                host::log(LogLevel::Warn, &format!("interlock: cannot poll the enforcer's state: {e}"));
            }
        }
    }

    /// The answer to the long poll (or its failure, with back-off up to 5 s).
    fn on_state_answer(&mut self, body_size: usize) {
        let mut metrics = self.shared.metrics.borrow_mut();
        let mut live = self.shared.live.borrow_mut();
        let Some(live) = live.as_mut() else { return };
        live.poll_in_flight = None;
        match host::http_call_status() {
            Some(200) => {
                live.poll_failures = 0;
                let body = host::http_call_body(body_size).unwrap_or_default();
                live.on_poll_answer(&body, &mut metrics);
            }
            status => {
                metrics.add(state::STATE_POLL_FAILURES, 1);
                live.poll_failures = live.poll_failures.saturating_add(1);
                let backoff = 250u64.saturating_mul(1 << live.poll_failures.min(5)).min(5_000);
                live.next_poll_ms = host::now_ms().saturating_add(backoff);
                if live.poll_failures.is_power_of_two() {
                    host::log(LogLevel::Warn, &format!("interlock: state poll answered {status:?} ({} failures in a row); keeping the current state", live.poll_failures));
                }
            }
        }
    }

    fn flush(&mut self) {
        let enforcer = self.shared.enforcer.borrow();
        let mut events = self.shared.events.borrow_mut();
        let mut metrics = self.shared.metrics.borrow_mut();
        // Counters first: whoever sees an event can already see its decision counted.
        metrics.flush();
        metrics.set_gauge(state::EVENTS_BUFFERED, events.len() as u64);
        metrics.set_gauge(state::EVENTS_BUFFERED_BYTES, events.bytes() as u64);
        if events.in_flight.is_some() {
            return;
        }
        let Some(batch) = events.take_batch() else { return };
        // The batch's buffer is the body as it is: no copy to assemble it.
        match host::post(
            &enforcer.cluster,
            &enforcer.authority,
            "/v1/events",
            "application/x-ndjson",
            batch.body(),
            Duration::from_millis(enforcer.timeout_ms),
        ) {
            Ok(token) => events.in_flight = Some((token, batch)),
            Err(e) => {
                // Typically an unknown cluster: keep the events, count the failure, retry later.
                metrics.add(state::EVENTS_POST_FAILURES, 1);
                events.retrying = true;
                let dropped = events.requeue(batch, enforcer.limits());
                metrics.add(state::EVENTS_DROPPED, dropped);
                let what = format!("cannot post events to cluster {:?}: {e}", enforcer.cluster);
                drop((events, metrics, enforcer));
                self.warn_failure(&what);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let is_poll = self.shared.live.borrow().as_ref().is_some_and(|l| l.poll_in_flight == Some(token_id));
        if is_poll {
            self.on_state_answer(body_size);
            // Re-arm at once rather than on the next tick: a change right after this answer
            // must not wait a tick to be heard.
            self.follow_live_state();
            return;
        }
        let limits = self.shared.enforcer.borrow().limits();
        let mut events = self.shared.events.borrow_mut();
        let mut metrics = self.shared.metrics.borrow_mut();
        let Some((token, batch)) = events.in_flight.take() else { return };
        if token != token_id {
            events.in_flight = Some((token, batch));
            return;
        }
        match host::http_call_status() {
            Some(s) if (200..300).contains(&s) => {
                metrics.add(state::EVENTS_SENT, batch.len() as u64);
                events.recycle(batch);
                events.retrying = false;
                self.failures = 0;
                // A full batch (or an urgent event) goes out at once, not on the next tick: one
                // batch per tick caps delivery at max_batch / flush_interval (2,500 events/s by
                // default) and a busier worker would drop the rest.
                let ready = events.ready(limits);
                drop((events, metrics));
                if ready {
                    self.flush();
                }
            }
            status => {
                metrics.add(state::EVENTS_POST_FAILURES, 1);
                events.retrying = true;
                let dropped = events.requeue(batch, limits);
                metrics.add(state::EVENTS_DROPPED, dropped);
                drop((events, metrics));
                self.warn_failure(&format!("the enforcer answered {status:?} to an event batch"));
            }
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        if host::debug_enabled() {
            host::log(LogLevel::Debug, "interlock: VM started");
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(b) => b,
            Err(e) => {
                host::log(LogLevel::Critical, &format!("interlock: cannot read the plugin configuration: {e}"));
                return false;
            }
        };
        let position = bytes.as_deref().filter(|b| !b.is_empty()).and_then(configure_position);
        if host::debug_enabled() {
            let key = bytes.as_deref().map(claim_key).unwrap_or_default();
            host::log(LogLevel::Debug, &format!("interlock: configuring ({key}: this VM is #{} to configure it in this process)", position.map_or("?".into(), |p| p.saturating_add(1).to_string())));
        }
        if position == Some(0) {
            return self.configure_validate_only(bytes);
        }
        match config::load(bytes.as_deref()) {
            Ok(loaded) => {
                let version = loaded.engine.version().to_owned();
                let rules = loaded.engine.rule_count();
                *self.shared.live.borrow_mut() = Some(Live::new(loaded.engine));
                if !self.settle(loaded.enforcer, loaded.hold_headers, loaded.access_log_state) {
                    return false;
                }
                host::log(LogLevel::Info, &format!("interlock: policy {version:?} loaded ({rules} rules)"));
                true
            }
            Err(e) => {
                // Envoy refuses to start (or keeps the previous configuration on an update).
                host::log(LogLevel::Critical, &format!("interlock: configuration refused: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if self.shared.fast_tick.replace(false) {
            let period = Duration::from_millis(self.shared.enforcer.borrow().flush_interval_ms);
            let _ = host::set_tick_period(period);
        }
        self.flush();
        self.follow_live_state();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.compile_pending();
        Some(Box::new(Stream::new(Rc::clone(&self.shared))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The shared-data key that counts the VMs that configured these exact bytes in this process:
/// FNV-1a 64 of the bytes and their length (a collision only makes a VM compile what it could
/// have only validated).
fn claim_key(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("interlock.configured.{hash:016x}.{}", bytes.len())
}

/// This VM's place among the VMs of this Envoy process that configured these bytes (0: the
/// first), taken with a compare-and-swap on a counter in shared data, so that only one VM is
/// first. `None` when shared data fails (then the VM compiles, as before). Shared data cannot
/// create a key only if it is absent: two VMs configuring never-seen bytes at the very same time
/// could both see it absent and both be first; in Envoy the canary configures alone, before any
/// other VM gets the configuration, and the cost would only be one slow first stream.
fn configure_position(bytes: &[u8]) -> Option<u64> {
    let key = claim_key(bytes);
    for _ in 0..32 {
        match host::shared_get(&key) {
            Ok(Some((value, cas))) => {
                let seen = std::str::from_utf8(&value).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(1);
                match host::shared_set(&key, seen.saturating_add(1).to_string().as_bytes(), Some(cas)) {
                    Ok(()) => return Some(seen),
                    Err(SetError::CasMismatch) => continue,
                    Err(SetError::Host(_)) => return None,
                }
            }
            Ok(None) => return host::shared_set(&key, b"1", None).ok().map(|()| 0),
            Err(_) => return None,
        }
    }
    None
}
