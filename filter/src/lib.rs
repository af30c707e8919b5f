//! Interlock's proxy-wasm filter: a thin adapter between Envoy and the pure policy engine
//! (`interlock-policies`). It builds the engine's request view from the host, applies the
//! decision (continue or local reply), and ships one event per decision to the enforcer.
//!
//! Modules: [`host`] is the only one that calls the host; [`config`] parses the plugin
//! configuration; [`root`] compiles it and flushes events; [`events`] keeps them as the NDJSON
//! they are posted as; [`http`] handles a stream; [`state`] is what a VM's contexts share.

pub mod config;
pub mod events;
pub mod host;
pub mod http;
pub mod live;
pub mod root;
pub mod state;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic aborts this worker's VM (Envoy then applies failure_policy: FAIL_CLOSED). Say so
    // at critical level first, so a crash is never silent.
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("interlock: panic, the VM will abort: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::Root::default()) });
}}
