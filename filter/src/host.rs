//! The one module that calls the proxy-wasm host. Every call returns a typed [`HostError`]
//! instead of unwrapping (the SDK's trait helpers `unwrap()` internally, and a panic aborts the
//! worker's VM).

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use thiserror::Error;

/// A host call that did not succeed.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("host call {call} failed: {status:?}")]
    Status { call: &'static str, status: Status },
}

type Result<T> = std::result::Result<T, HostError>;

fn st(call: &'static str) -> impl Fn(Status) -> HostError {
    move |status| HostError::Status { call, status }
}

/// Logs at `level`; logging failures have nowhere to go and are ignored.
pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// Whether the host logs debug lines for this plugin.
pub fn debug_enabled() -> bool {
    matches!(hostcalls::get_log_level(), Ok(LogLevel::Debug | LogLevel::Trace))
}

/// Milliseconds since the Unix epoch from the host clock (0 if unavailable).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The plugin configuration bytes.
pub fn plugin_configuration() -> Result<Option<Vec<u8>>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).map_err(st("get_buffer(plugin_configuration)"))
}

pub fn set_tick_period(period: Duration) -> Result<()> {
    hostcalls::set_tick_period(period).map_err(st("set_tick_period"))
}

/// Every request header as (lower-case name, raw value bytes), duplicates kept.
pub fn request_headers() -> Result<Vec<(String, Vec<u8>)>> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(st("get_map(request_headers)"))
}

pub fn remove_request_header(name: &str) -> Result<()> {
    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(st("remove_map_value"))
}

pub fn set_request_header(name: &str, value: &str) -> Result<()> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).map_err(st("set_map_value"))
}

pub fn set_response_header(name: &str, value: &str) -> Result<()> {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).map_err(st("set_map_value"))
}

/// The buffered request body, `[0, size)`.
pub fn request_body(size: usize) -> Result<Option<Vec<u8>>> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).map_err(st("get_buffer(request_body)"))
}

/// A property as bytes; `None` when the host has no value for it (not an error).
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>> {
    hostcalls::get_property(path.to_vec()).map_err(st("get_property"))
}

/// A property as UTF-8 text, `None` when absent or not text.
pub fn property_str(path: &[&str]) -> Option<String> {
    property(path).ok().flatten().and_then(|b| String::from_utf8(b).ok())
}

/// The verified JWT payload's claims named in `claims`, as UTF-8 text, with one host call for
/// the whole payload instead of one per claim (each `get_property` costs about a microsecond
/// inside Envoy). Envoy serializes the payload (a `google.protobuf.Struct`, which CEL sees as a
/// map) as key/value pairs, each value serialized as it would be on its own, so a claim decoded
/// here is byte for byte what reading `<payload>.<claim>` returns. When the whole payload cannot
/// be serialized (a list-valued claim such as `aud: [..]` makes Envoy refuse the map) or the
/// answer does not parse, each claim is read on its own, as before.
pub fn jwt_claims<const N: usize>(payload: &[&str], claims: [&str; N]) -> [Option<String>; N] {
    match property(payload) {
        // No verified payload: no claim.
        Ok(None) => return std::array::from_fn(|_| None),
        Ok(Some(bytes)) => {
            if let Some(pairs) = decode_pairs(&bytes) {
                return claims.map(|c| {
                    pairs.iter().find(|(k, _)| *k == c.as_bytes()).and_then(|(_, v)| String::from_utf8(v.to_vec()).ok())
                });
            }
        }
        Err(_) => {}
    }
    claims.map(|c| {
        let mut path = payload.to_vec();
        path.push(c);
        property_str(&path)
    })
}

/// Decodes proxy-wasm's serialized pairs: a little-endian `u32` count, then each pair's key and
/// value lengths (`u32` each), then each key and value followed by a NUL byte. `None` if the bytes
/// are not exactly that.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let n = u32_at(0)?;
    // Each pair takes at least 10 bytes (two lengths, two NULs): a count beyond that is corrupt.
    if n > bytes.len() / 10 {
        return None;
    }
    let mut sizes = 4usize;
    let mut data = n.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (klen, vlen) = (u32_at(sizes)?, u32_at(sizes + 4)?);
        sizes += 8;
        let key = bytes.get(data..data.checked_add(klen)?)?;
        data = data.checked_add(klen)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data += 1;
        let value = bytes.get(data..data.checked_add(vlen)?)?;
        data = data.checked_add(vlen)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data += 1;
        out.push((key, value));
    }
    (data == bytes.len()).then_some(out)
}

/// Sets filter state (`wasm.<name>` in Envoy), readable by access logs as `%FILTER_STATE%`.
pub fn set_filter_state(name: &str, value: &str) -> Result<()> {
    hostcalls::set_property(vec![name], Some(value.as_bytes())).map_err(st("set_property"))
}

/// Answers the stream locally.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<()> {
    hostcalls::send_http_response(status, headers.to_vec(), Some(body)).map_err(st("send_http_response"))
}

/// Resets the stream (nothing more reaches the upstream).
pub fn reset_request() -> Result<()> {
    hostcalls::reset_http_request().map_err(st("reset_http_request"))
}

pub fn resume_request() -> Result<()> {
    hostcalls::resume_http_request().map_err(st("resume_http_request"))
}

/// POSTs `body` to `cluster`; the answer arrives in the root context's `on_http_call_response`.
pub fn post(cluster: &str, authority: &str, path: &str, content_type: &str, body: &[u8], timeout: Duration) -> Result<u32> {
    let headers = vec![(":method", "POST"), (":path", path), (":authority", authority), ("content-type", content_type)];
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout).map_err(st("dispatch_http_call"))
}

/// The `:status` of an HTTP call's response; `None` on timeout or reset (the host then gives no
/// headers at all).
pub fn http_call_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten().and_then(|s| s.parse().ok())
}

pub fn define_counter(name: &str) -> Result<u32> {
    hostcalls::define_metric(MetricType::Counter, name).map_err(st("define_metric"))
}

pub fn define_gauge(name: &str) -> Result<u32> {
    hostcalls::define_metric(MetricType::Gauge, name).map_err(st("define_metric"))
}

pub fn increment(metric: u32, by: i64) {
    let _ = hostcalls::increment_metric(metric, by);
}

pub fn record(metric: u32, value: u64) {
    let _ = hostcalls::record_metric(metric, value);
}

/// A shared-data value and its CAS token; `None` when the key does not exist. (Envoy returns no
/// bytes for an empty value that exists; that is an empty value with a token here.)
pub fn shared_get(key: &str) -> Result<Option<(Vec<u8>, u32)>> {
    match hostcalls::get_shared_data(key).map_err(st("get_shared_data"))? {
        (Some(v), Some(cas)) => Ok(Some((v, cas))),
        (None, Some(cas)) => Ok(Some((Vec::new(), cas))),
        (Some(v), None) => Ok(Some((v, 0))),
        (None, None) => Ok(None),
    }
}

/// Writes shared data if its CAS token is still `cas` (`None`: unconditionally).
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> std::result::Result<(), SetError> {
    match hostcalls::set_shared_data(key, Some(value), cas) {
        Ok(()) => Ok(()),
        Err(Status::CasMismatch) => Err(SetError::CasMismatch),
        Err(status) => Err(SetError::Host(HostError::Status { call: "set_shared_data", status })),
    }
}

/// Why a shared-data write failed.
#[derive(Debug, Error)]
pub enum SetError {
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    #[error(transparent)]
    Host(HostError),
}

/// Envoy's shared data as the engine's rate-limit store.
pub struct HostStore;

impl interlock_policies::ratelimit::SharedStore for HostStore {
    fn get(&mut self, key: &str) -> std::result::Result<Option<(Vec<u8>, u32)>, interlock_policies::ratelimit::StoreError> {
        shared_get(key).map_err(|e| interlock_policies::ratelimit::StoreError::Host(e.to_string()))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> std::result::Result<(), interlock_policies::ratelimit::StoreError> {
        use interlock_policies::ratelimit::StoreError;
        shared_set(key, value, cas).map_err(|e| match e {
            SetError::CasMismatch => StoreError::CasMismatch,
            SetError::Host(h) => StoreError::Host(h.to_string()),
        })
    }
}

/// GETs `path` from `cluster`; the answer arrives in the root context's `on_http_call_response`.
pub fn get(cluster: &str, authority: &str, path: &str, timeout: Duration) -> Result<u32> {
    let headers = vec![(":method", "GET"), (":path", path), (":authority", authority)];
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout).map_err(st("dispatch_http_call"))
}

/// The body of an HTTP call's response.
pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).ok().flatten()
}

/// A response header's value, `None` when absent.
pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
}

pub fn remove_response_header(name: &str) -> Result<()> {
    hostcalls::remove_map_value(MapType::HttpResponseHeaders, name).map_err(st("remove_map_value"))
}

/// The buffered response body, `[0, size)`.
pub fn response_body(size: usize) -> Result<Option<Vec<u8>>> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).map_err(st("get_buffer(response_body)"))
}

/// Replaces `[0, size)` of the response body buffer with `value` (any length).
pub fn set_response_body(size: usize, value: &[u8]) -> Result<()> {
    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, value).map_err(st("set_buffer(response_body)"))
}

/// Resets the response (used when a response must be refused after its headers left).
pub fn reset_response() -> Result<()> {
    hostcalls::reset_http_response().map_err(st("reset_http_response"))
}

/// Replaces `[0, size)` of the request body buffer with `value` (any length).
pub fn set_request_body(size: usize, value: &[u8]) -> Result<()> {
    hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, value).map_err(st("set_buffer(request_body)"))
}

#[cfg(test)]
mod tests {
    use super::decode_pairs;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            out.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_what_envoy_returns_for_a_jwt_payload() {
        // Captured from Envoy 1.40 (`metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload`
        // of an `interlock token`): numbers come as 8-byte doubles, strings raw.
        let nbf = 1_763_758_135f64.to_le_bytes();
        let bytes = encode(&[(b"nbf", &nbf), (b"aud", b"interlock-demo"), (b"sub", b"u1"), (b"azp", b"triage-bot"), (b"sid", b"s1")]);
        let pairs = decode_pairs(&bytes).unwrap();
        assert_eq!(pairs.len(), 5);
        assert_eq!(pairs[3], (&b"azp"[..], &b"triage-bot"[..]));
        assert_eq!(pairs[0].1, &nbf[..]);
        assert_eq!(decode_pairs(&encode(&[])).unwrap(), Vec::<(&[u8], &[u8])>::new());
        // Empty values and values holding NUL bytes are kept whole.
        assert_eq!(decode_pairs(&encode(&[(b"k", b""), (b"n", b"a\0b")])).unwrap()[1].1, b"a\0b");
    }

    #[test]
    fn refuses_anything_else() {
        let good = encode(&[(b"azp", b"triage-bot"), (b"sub", b"u1")]);
        for cut in 0..good.len() {
            assert!(decode_pairs(&good[..cut]).is_none(), "truncated at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_pairs(&long).is_none(), "trailing byte");
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(decode_pairs(&no_nul).is_none(), "missing NUL");
        assert!(decode_pairs(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_none(), "absurd count");
        assert!(decode_pairs(b"triage-bot").is_none(), "a plain string");
    }
}
