//! The root context: compiles the configuration in `on_configure` (the main thread's VM, which
//! never serves a stream, only validates it: [`MAIN_VM`]), creates streams, and flushes decision
//! events to the enforcer on every tick, out of band of any request.

use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::{self, AccessLogState, EnforcerConfig};
use crate::host::{self, SetError};
use crate::http::Stream;
use crate::live::{Held, Live};
use crate::state::{self, Metrics, Shared};

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

    /// The main thread's VM ([`MAIN_VM`]): every configuration it is given gets the same verdict,
    /// with the same error, as a compile would give it, and no tables are kept, even at peak. It
    /// compiles them on its first stream should it ever get one (correctness never depends on the
    /// guess; a wrong one costs one slow first request). It follows the live state validating.
    fn configure_validate_only(&mut self, bytes: Option<Vec<u8>>) -> bool {
        match config::validate(bytes.as_deref()) {
            Ok(v) => {
                if !self.settle(v.enforcer, v.hold_headers, v.access_log_state) {
                    return false;
                }
                *self.shared.pending.borrow_mut() = bytes;
                host::log(
                    LogLevel::Info,
                    &format!("interlock: policy {:?} validated ({} rules), not compiled: this VM validates only", v.engine.version, v.engine.rules),
                );
                *self.shared.validated.borrow_mut() = Some(Live::new(Rc::new(v.engine)));
                true
            }
            Err(e) => {
                host::log(LogLevel::Critical, &format!("interlock: configuration refused: {e}"));
                false
            }
        }
    }

    /// Compiles the policy of a VM that only validated it, on its first stream, and catches up
    /// with the live state. A failure (it was validated: it cannot happen) leaves `live` empty,
    /// and the stream fails closed.
    fn compile_pending(&self) {
        let Some(bytes) = self.shared.pending.borrow_mut().take() else { return };
        let validated = self.shared.validated.borrow_mut().take();
        match config::load(Some(&bytes)) {
            Ok(loaded) => {
                let mut live = Live::new(Rc::new(loaded.engine));
                if let Some(v) = validated {
                    live = v.hand_over(live);
                }
                let snapshot = live.sync(&mut self.shared.metrics.borrow_mut());
                let (version, rules) = (snapshot.engine.version().to_owned(), snapshot.engine.rule_count());
                *self.shared.live.borrow_mut() = Some(live);
                host::log(
                    LogLevel::Info,
                    &format!("interlock: policy {version:?} compiled on this VM's first stream ({rules} rules; VM {} had only validated it)", vm_label()),
                );
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
        if let Some(live) = self.shared.live.borrow_mut().as_mut() {
            poll_live_state(live, &enforcer, &mut metrics);
        }
        if let Some(live) = self.shared.validated.borrow_mut().as_mut() {
            poll_live_state(live, &enforcer, &mut metrics);
        }
    }

    /// The answer to the long poll (or its failure).
    fn on_state_answer(&mut self, body_size: usize) {
        let mut metrics = self.shared.metrics.borrow_mut();
        if let Some(live) = self.shared.live.borrow_mut().as_mut() {
            on_state_answer(live, body_size, &mut metrics);
        }
        if let Some(live) = self.shared.validated.borrow_mut().as_mut() {
            on_state_answer(live, body_size, &mut metrics);
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

/// Adopts what other workers published, and keeps one long poll to the enforcer open.
fn poll_live_state<P: Held>(live: &mut Live<P>, enforcer: &EnforcerConfig, metrics: &mut Metrics) {
    live.sync(metrics);
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
fn on_state_answer<P: Held>(live: &mut Live<P>, body_size: usize, metrics: &mut Metrics) {
    live.poll_in_flight = None;
    match host::http_call_status() {
        Some(200) => {
            live.poll_failures = 0;
            let body = host::http_call_body(body_size).unwrap_or_default();
            live.on_poll_answer(&body, metrics);
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

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let is_poll = self.shared.live.borrow().as_ref().is_some_and(|l| l.poll_in_flight == Some(token_id))
            || self.shared.validated.borrow().as_ref().is_some_and(|l| l.poll_in_flight == Some(token_id));
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
        // Called for every root context: on an update, the main thread's VM gets a new one. The
        // number is taken once per VM.
        vm_number();
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
        if vm_number() == Some(MAIN_VM) {
            return self.configure_validate_only(bytes);
        }
        match config::load(bytes.as_deref()) {
            Ok(loaded) => {
                let version = loaded.engine.version().to_owned();
                let rules = loaded.engine.rule_count();
                *self.shared.live.borrow_mut() = Some(Live::new(Rc::new(loaded.engine)));
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

/// The number of the main thread's VM. Envoy 1.40 starts, for a vm_id, a configuration canary
/// first (on the main thread, destroyed once it answered `on_configure`), then the main thread's
/// long-lived VM, then one per worker once the workers start (bench/MEMORY.md, session 5). The
/// main thread's VM never serves a stream: it only validates. A guess, never a matter of
/// correctness: should VM 2 be a worker (a vm_id first configured after the workers started, by
/// LDS or ECDS), it compiles on its first stream.
const MAIN_VM: u64 = 2;

/// The shared-data key counting this vm_id's VMs (shared data is scoped to the vm_id).
const VM_COUNTER: &str = "interlock.vms.started";

/// This VM's number, taken once: its place among this vm_id's VMs in this process, in the order
/// they started. `None` if shared data failed (then it compiles, as every VM did).
static VM_NUMBER: OnceLock<Option<u64>> = OnceLock::new();

fn vm_number() -> Option<u64> {
    *VM_NUMBER.get_or_init(|| {
        let number = take_vm_number();
        let what = match number {
            Some(MAIN_VM) => format!("VM {MAIN_VM} (the main thread's, by start-up order): validating policies only; compiling on first use"),
            Some(1) => "VM 1 (Envoy's configuration canary, by start-up order): compiling policies".to_owned(),
            Some(n) => format!("VM {n}: compiling policies"),
            None => "VM number unknown (shared data failed): compiling policies".to_owned(),
        };
        host::log(LogLevel::Info, &format!("interlock: {what}"));
        number
    })
}

fn vm_label() -> String {
    vm_number().map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// Takes the next number from the counter, by compare-and-swap, so that no two VMs get the same
/// one. Shared data cannot create a key only if it is absent: two VMs starting at the very same
/// moment with no VM before them could both be 1; in Envoy the canary starts alone.
fn take_vm_number() -> Option<u64> {
    for _ in 0..64 {
        match host::shared_get(VM_COUNTER) {
            Ok(Some((value, cas))) => {
                let seen = std::str::from_utf8(&value).ok().and_then(|t| t.parse::<u64>().ok())?;
                let next = seen.saturating_add(1);
                match host::shared_set(VM_COUNTER, next.to_string().as_bytes(), Some(cas)) {
                    Ok(()) => return Some(next),
                    Err(SetError::CasMismatch) => continue,
                    Err(SetError::Host(_)) => return None,
                }
            }
            Ok(None) => return host::shared_set(VM_COUNTER, b"1", None).ok().map(|()| 1),
            Err(_) => return None,
        }
    }
    None
}
