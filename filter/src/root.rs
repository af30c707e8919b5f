//! The root context: compiles the configuration in `on_configure`, creates streams, and flushes
//! decision events to the enforcer on every tick, out of band of any request.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config;
use crate::host;
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
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(b) => b,
            Err(e) => {
                host::log(LogLevel::Critical, &format!("interlock: cannot read the plugin configuration: {e}"));
                return false;
            }
        };
        match config::load(bytes.as_deref()) {
            Ok(loaded) => {
                let version = loaded.engine.version().to_owned();
                let rules = loaded.engine.rule_count();
                let period = Duration::from_millis(loaded.enforcer.flush_interval_ms);
                *self.shared.live.borrow_mut() = Some(Live::new(loaded.engine));
                *self.shared.enforcer.borrow_mut() = loaded.enforcer;
                *self.shared.hold_headers.borrow_mut() = loaded.hold_headers;
                self.shared.access_log_state.set(loaded.access_log_state);
                let node = host::property_str(&["node", "id"]).filter(|n| !n.is_empty()).unwrap_or_else(|| "envoy".into());
                let tag = self.shared.ids.borrow_mut().tag();
                self.shared.debug_logs.set(host::debug_enabled());
                *self.shared.worker.borrow_mut() = format!("{node}/{tag}");
                if let Err(e) = host::set_tick_period(period) {
                    host::log(LogLevel::Critical, &format!("interlock: cannot schedule event flushing: {e}"));
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
        Some(Box::new(Stream::new(Rc::clone(&self.shared))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
