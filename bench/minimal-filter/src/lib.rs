//! The floor of any Rust proxy-wasm filter, for `make bench`: per request it crosses into the VM
//! for the stream's callbacks and reads one request header through the host, nothing else.
//!
//! Built with the workspace's release profile and the same SDK as the Interlock filter, so the
//! difference between the two in `BENCHMARKS.md` is what Interlock's own work costs, not what
//! V8 or the proxy-wasm ABI cost.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One host call, its result kept alive so the optimizer cannot drop the copy-out. The
        // SDK's `get_http_request_header` would unwrap; the hostcall returns a Result.
        let agent = hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-agent-id");
        std::hint::black_box(agent.ok().flatten().map(|v| v.len()));
        Action::Continue
    }
}
