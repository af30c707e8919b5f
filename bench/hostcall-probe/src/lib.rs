//! A probe for what each proxy-wasm host call kind costs inside Envoy (bench/PROFILE.md,
//! Session 6; driven by bench/profile/probe.py). The plugin configuration is
//! `<call> <n> [flow ...]`: per request the probe makes that host call `n` times, in the callback
//! where Interlock makes it, through the same raw ABI calls as `filter/src/host.rs`. `none 0` is
//! the floor (the stream's callbacks, nothing else); the CPU-per-request slope between `n = 0` and
//! `n = N` of a call is its cost. The optional flow words make the probe hold a body the way
//! Interlock holds a governed one, doing nothing else with it (the floor of inspecting bodies):
//! `req` pauses the request headers, buffers the request body to its end and reads it once; `resp`
//! does the same with the response; `nocl` removes the response's `content-length` before holding
//! it (as Interlock does, since it may rewrite the body). Not shipped.

use std::cell::Cell;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

thread_local! {
    static CALL: Cell<Call> = const { Cell::new(Call::None) };
    static REPEAT: Cell<u32> = const { Cell::new(0) };
    static FLOW: Cell<Flow> = const { Cell::new(Flow { request: false, response: false, strip_length: false }) };
}

/// Which bodies the probe holds and reads (the configuration's flow words).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Flow {
    pub request: bool,
    pub response: bool,
    pub strip_length: bool,
}

/// The host call kinds the probe can repeat.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Call {
    None,
    /// `proxy_get_current_time_nanoseconds`.
    Clock,
    /// `proxy_get_header_map_pairs` of the request headers (all of them, as Interlock reads them).
    RequestHeaders,
    /// `proxy_get_header_map_value` of one request header (`:path`).
    RequestHeader,
    /// `proxy_replace_header_map_value` of a request header.
    SetRequestHeader,
    /// `proxy_remove_header_map_value` of an absent request header (Interlock's `x-interlock-*`
    /// removal when a client sends one).
    RemoveRequestHeader,
    /// `proxy_replace_header_map_value` of a response header, in `on_http_response_headers`.
    SetResponseHeader,
    /// `proxy_get_property` of the verified JWT payload (a map), as Interlock reads it.
    JwtPayload,
    /// `proxy_get_property` of one claim of it (`...jwt_payload.azp`).
    JwtClaim,
    /// `proxy_get_property` of `source.address`, in `on_log`.
    SourceAddress,
    /// `proxy_get_property` of `upstream.address`, in `on_log`.
    UpstreamAddress,
    /// `proxy_get_property` of `source.address`, in `on_http_request_headers`.
    SourceAddressAtHeaders,
    /// `proxy_get_property` of `connection.uri_san_peer_certificate` (Interlock reads it when the
    /// policy maps mTLS identities; the bench's connections are plaintext: no value).
    PeerSan,
    /// `proxy_set_property` of filter state (`interlock.decision`, a 90-byte value), the same
    /// key each time (after the first, an overwrite).
    SetFilterState,
    /// `proxy_set_property` of filter state, a new key each time (`interlock.probe<i>`): what a
    /// stream's first `set_property` costs.
    SetNewFilterState,
    /// `proxy_get_shared_data` of a 40-byte value.
    SharedGet,
    /// `proxy_get_shared_data` then a CAS `proxy_set_shared_data` (one rate-limit take).
    SharedCas,
    /// `proxy_log` at debug, which the host drops (plugin log level warn).
    LogDropped,
    /// `proxy_increment_metric`.
    IncrementMetric,
    /// No host call: one step of pure computation (a xorshift round) in registers, so that the
    /// CPU per request of `n` steps can be set against the VM time perf samples in them: does
    /// work inside the VM cost Envoy more than itself?
    Spin,
    /// No host call: writes 64 bytes of a 4 MiB buffer in the VM's memory, moving on each time,
    /// so `n` of them sweep `n` × 64 bytes of fresh cache lines per request (the data footprint).
    Touch,
}

impl Call {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "clock" => Self::Clock,
            "headers" => Self::RequestHeaders,
            "header" => Self::RequestHeader,
            "set_header" => Self::SetRequestHeader,
            "remove_header" => Self::RemoveRequestHeader,
            "set_resp_header" => Self::SetResponseHeader,
            "jwt_payload" => Self::JwtPayload,
            "jwt_claim" => Self::JwtClaim,
            "source_addr" => Self::SourceAddress,
            "upstream_addr" => Self::UpstreamAddress,
            "source_addr_req" => Self::SourceAddressAtHeaders,
            "peer_san" => Self::PeerSan,
            "set_state" => Self::SetFilterState,
            "set_new_state" => Self::SetNewFilterState,
            "shared_get" => Self::SharedGet,
            "shared_cas" => Self::SharedCas,
            "log_dropped" => Self::LogDropped,
            "metric" => Self::IncrementMetric,
            "spin" => Self::Spin,
            "touch" => Self::Touch,
            _ => return None,
        })
    }
}

/// `<call> <n> [req] [resp] [nocl]` -> (call, n, flow).
pub fn parse_config(text: &str) -> Option<(Call, u32, Flow)> {
    let mut it = text.split_whitespace();
    let call = Call::parse(it.next()?)?;
    let n = it.next().map_or(Some(0), |n| n.parse().ok())?;
    let mut flow = Flow::default();
    for word in it {
        match word {
            "req" => flow.request = true,
            "resp" => flow.response = true,
            "nocl" => flow.strip_length = true,
            _ => return None,
        }
    }
    Some((call, n, flow))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    RequestHeaders,
    ResponseHeaders,
    Log,
}

fn phase_of(call: Call) -> Phase {
    match call {
        Call::SetResponseHeader => Phase::ResponseHeaders,
        Call::SourceAddress | Call::UpstreamAddress => Phase::Log,
        _ => Phase::RequestHeaders,
    }
}

const JWT_PAYLOAD: &[u8] = b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload";
const JWT_CLAIM: &[u8] = b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload\0azp";
const STATE_VALUE: &[u8] = b"decision=0196a1b2c3d4e5f6-00000001 action=allow rule=triage-crm-lookup mode=enforce agent=triage-bot";
const KEYS: [&str; 20] = [
    "interlock.probe0", "interlock.probe1", "interlock.probe2", "interlock.probe3", "interlock.probe4",
    "interlock.probe5", "interlock.probe6", "interlock.probe7", "interlock.probe8", "interlock.probe9",
    "interlock.probe10", "interlock.probe11", "interlock.probe12", "interlock.probe13", "interlock.probe14",
    "interlock.probe15", "interlock.probe16", "interlock.probe17", "interlock.probe18", "interlock.probe19",
];
const SHARED_KEY: &str = "probe.bucket";
static METRIC: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static NOT_OK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
thread_local! {
    static SPIN: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
    static SWEEP: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}
const SWEEP_BYTES: usize = 4 << 20;

fn run(phase: Phase) {
    let call = CALL.with(Cell::get);
    if call == Call::None || phase_of(call) != phase {
        return;
    }
    for i in 0..REPEAT.with(Cell::get) {
        once(call, i);
    }
}

/// One host call; its result is kept alive so the optimizer cannot drop the copy-out. A call
/// the host does not answer with Ok (and data, where it returns data) is counted in
/// `probe.not_ok`, so the table can tell a refused call from a cheap one.
fn once(call: Call, i: u32) {
    let ok = match call {
        Call::None => true,
        Call::Clock => std::hint::black_box(abi::now_ns()) != 0,
        Call::RequestHeaders => std::hint::black_box(abi::map_pairs(abi::REQUEST_HEADERS)).1.is_some_and(|v| !v.is_empty()),
        Call::RequestHeader => std::hint::black_box(abi::get_map_value(abi::REQUEST_HEADERS, ":path")).1.is_some_and(|v| !v.is_empty()),
        Call::SetRequestHeader => std::hint::black_box(abi::replace_map_value(abi::REQUEST_HEADERS, "x-interlock-decision-id", "0196a1b2c3d4e5f6-00000001")) == 0,
        Call::RemoveRequestHeader => std::hint::black_box(abi::remove_map_value(abi::REQUEST_HEADERS, "x-interlock-absent")) == 0,
        Call::SetResponseHeader => std::hint::black_box(abi::replace_map_value(abi::RESPONSE_HEADERS, "x-interlock-decision-id", "0196a1b2c3d4e5f6-00000001")) == 0,
        Call::JwtPayload => std::hint::black_box(abi::get_property(JWT_PAYLOAD)).1.is_some_and(|v| !v.is_empty()),
        Call::JwtClaim => std::hint::black_box(abi::get_property(JWT_CLAIM)).1.is_some_and(|v| !v.is_empty()),
        Call::SourceAddress | Call::SourceAddressAtHeaders => std::hint::black_box(abi::get_property(b"source\0address")).1.is_some_and(|v| !v.is_empty()),
        Call::UpstreamAddress => std::hint::black_box(abi::get_property(b"upstream\0address")).1.is_some_and(|v| !v.is_empty()),
        Call::PeerSan => std::hint::black_box(abi::get_property(b"connection\0uri_san_peer_certificate")).0 <= 1,
        Call::SetNewFilterState => {
            let key = KEYS.get(usize::try_from(i).unwrap_or(usize::MAX)).copied().unwrap_or("interlock.probe");
            std::hint::black_box(abi::set_property(key, STATE_VALUE)) == 0
        }
        Call::SetFilterState => std::hint::black_box(abi::set_property("interlock.decision", STATE_VALUE)) == 0,
        Call::SharedGet => std::hint::black_box(abi::get_shared_data(SHARED_KEY)).is_ok_and(|(v, _)| v.is_some()),
        Call::SharedCas => match abi::get_shared_data(SHARED_KEY) {
            Ok((v, cas)) => std::hint::black_box(abi::set_shared_data(SHARED_KEY, &v.unwrap_or_default(), cas)) == 0,
            Err(_) => false,
        },
        Call::LogDropped => std::hint::black_box(abi::log(LogLevel::Debug as u32, b"probe: a debug line the host drops")) == 0,
        Call::IncrementMetric => std::hint::black_box(abi::increment_metric(METRIC.load(std::sync::atomic::Ordering::Relaxed), 1)) == 0,
        Call::Spin => SPIN.with(|c| {
            let mut x = std::hint::black_box(c.get());
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.set(x);
            true
        }),
        Call::Touch => SWEEP.with(|s| {
            let (buf, at) = &mut *s.borrow_mut();
            if buf.is_empty() {
                buf.resize(SWEEP_BYTES, 0);
            }
            let start = *at;
            if let Some(line) = buf.get_mut(start..start + 64) {
                line.fill(std::hint::black_box(u8::try_from(i & 0xff).unwrap_or(0)));
            }
            *at = (start + 64) % SWEEP_BYTES;
            true
        }),
    };
    if !ok {
        let _ = abi::increment_metric(NOT_OK.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = proxy_wasm::hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let Some((call, n, flow)) = parse_config(&text) else {
            proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("probe: bad configuration {text:?}")).ok();
            return false;
        };
        CALL.with(|c| c.set(call));
        REPEAT.with(|r| r.set(n));
        FLOW.with(|f| f.set(flow));
        if let Ok(id) = proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, "probe.count") {
            METRIC.store(id, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(id) = proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, "probe.not_ok") {
            NOT_OK.store(id, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = abi::set_shared_data(SHARED_KEY, b"0123456789012345678901234567890123456789", None);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

/// Holds a body to its end and reads it once, as Interlock holds a governed body: Pause
/// (StopIterationAndBuffer) until the last chunk, then one `get_buffer` of all of it.
fn hold_body(held: bool, buffer: proxy_wasm::types::BufferType, size: usize, end_of_stream: bool) -> Action {
    if !held {
        return Action::Continue;
    }
    if !end_of_stream {
        return Action::Pause;
    }
    let body = proxy_wasm::hostcalls::get_buffer(buffer, 0, size).ok().flatten();
    if std::hint::black_box(body).is_none_or(|b| b.len() != size) {
        let _ = abi::increment_metric(NOT_OK.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
    Action::Continue
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        run(Phase::RequestHeaders);
        if FLOW.with(Cell::get).request && !end_of_stream { Action::Pause } else { Action::Continue }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        hold_body(FLOW.with(Cell::get).request, proxy_wasm::types::BufferType::HttpRequestBody, body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        run(Phase::ResponseHeaders);
        let flow = FLOW.with(Cell::get);
        if flow.strip_length {
            let _ = abi::remove_map_value(abi::RESPONSE_HEADERS, "content-length");
        }
        if flow.response && !end_of_stream { Action::Pause } else { Action::Continue }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        hold_body(FLOW.with(Cell::get).response, proxy_wasm::types::BufferType::HttpResponseBody, body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        run(Phase::Log);
    }
}

/// The raw proxy-wasm ABI, as `filter/src/host.rs` calls it.
#[allow(unsafe_code)]
mod abi {
    use std::ptr::null_mut;

    pub const REQUEST_HEADERS: u32 = 0;
    pub const RESPONSE_HEADERS: u32 = 2;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
        fn proxy_get_header_map_pairs(map: u32, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
        fn proxy_get_header_map_value(map: u32, key: *const u8, key_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
        fn proxy_replace_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_get_property(path: *const u8, path_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
        fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
        fn proxy_get_shared_data(key: *const u8, key_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize, ret_cas: *mut u32) -> u32;
        fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
        fn proxy_increment_metric(metric: u32, offset: i64) -> u32;
    }

    fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        // SAFETY: memory the host got from `proxy_on_memory_allocate(size)` (the SDK's boxed slice).
        let boxed = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size)) };
        Some(boxed.into_vec())
    }

    fn returning(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> (u32, Option<Vec<u8>>) {
        let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
        let code = call(&mut data, &mut size);
        (code, if code == 0 { take(data, size) } else { None })
    }

    pub fn log(level: u32, msg: &[u8]) -> u32 {
        // SAFETY: a live slice.
        unsafe { proxy_log(level, msg.as_ptr(), msg.len()) }
    }

    pub fn now_ns() -> u64 {
        let mut ns = 0u64;
        // SAFETY: a valid out pointer.
        unsafe { proxy_get_current_time_nanoseconds(&mut ns) };
        ns
    }

    pub fn map_pairs(map: u32) -> (u32, Option<Vec<u8>>) {
        // SAFETY: valid out pointers.
        returning(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) })
    }

    pub fn get_map_value(map: u32, key: &str) -> (u32, Option<Vec<u8>>) {
        // SAFETY: valid out pointers, a live slice.
        returning(|d, s| unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), d, s) })
    }

    pub fn replace_map_value(map: u32, key: &str, value: &str) -> u32 {
        // SAFETY: live slices.
        unsafe { proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
    }

    pub fn remove_map_value(map: u32, key: &str) -> u32 {
        // SAFETY: a live slice.
        unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) }
    }

    pub fn get_property(path: &[u8]) -> (u32, Option<Vec<u8>>) {
        // SAFETY: valid out pointers, a live slice.
        returning(|d, s| unsafe { proxy_get_property(path.as_ptr(), path.len(), d, s) })
    }

    pub fn set_property(name: &str, value: &[u8]) -> u32 {
        // SAFETY: live slices.
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) }
    }

    pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), u32> {
        let (mut data, mut size, mut cas): (*mut u8, usize, u32) = (null_mut(), 0, 0);
        // SAFETY: valid out pointers, a live slice.
        match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } {
            0 => Ok((take(data, size), (cas != 0).then_some(cas))),
            code => Err(code),
        }
    }

    pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> u32 {
        // SAFETY: live slices.
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) }
    }

    pub fn increment_metric(metric: u32, by: i64) -> u32 {
        // SAFETY: no pointers.
        unsafe { proxy_increment_metric(metric, by) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_a_call_and_a_count() {
        assert_eq!(parse_config("jwt_payload 10"), Some((Call::JwtPayload, 10, Flow::default())));
        assert_eq!(parse_config("none"), Some((Call::None, 0, Flow::default())));
        assert_eq!(parse_config("nonsense 3"), None);
        assert_eq!(parse_config("clock x"), None);
    }

    #[test]
    fn flow_words_say_which_bodies_are_held() {
        let both = Flow { request: true, response: true, strip_length: true };
        assert_eq!(parse_config("none 0 req resp nocl"), Some((Call::None, 0, both)));
        let request = Flow { request: true, ..Flow::default() };
        assert_eq!(parse_config("none 0 req"), Some((Call::None, 0, request)));
        assert_eq!(parse_config("none 0 body"), None);
    }
}
