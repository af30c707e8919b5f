//! The one module that calls the proxy-wasm host. Every call returns a typed [`HostError`]
//! instead of unwrapping (the SDK's trait helpers `unwrap()` internally, and a panic aborts the
//! worker's VM).
//!
//! The calls a request makes go straight to the proxy-wasm ABI ([`abi`]): the SDK's `hostcalls`
//! wrappers `panic!` on any status they do not expect (a header write the host refuses, a
//! response header that is not UTF-8), which would abort the VM and with it every stream of this
//! worker. Here every status comes back as a value. Calls made only at configuration or on the
//! root's tick still use the SDK.

use std::time::Duration;

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
    let _ = abi::log(level as u32, msg.as_bytes());
}

/// Whether the host logs debug lines for this plugin.
pub fn debug_enabled() -> bool {
    matches!(hostcalls::get_log_level(), Ok(LogLevel::Debug | LogLevel::Trace))
}

/// Milliseconds since the Unix epoch from the host clock (0 if unavailable).
pub fn now_ms() -> u64 {
    abi::now_ns().map_or(0, |ns| ns / 1_000_000)
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
    let bytes = abi::map_pairs(MapType::HttpRequestHeaders as u32).map_err(st("get_map(request_headers)"))?;
    let Some(bytes) = bytes else { return Ok(Vec::new()) };
    let pairs = decode_pairs(&bytes).ok_or(HostError::Status { call: "get_map(request_headers)", status: Status::ParseFailure })?;
    Ok(pairs.into_iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec())).collect())
}

pub fn remove_request_header(name: &str) -> Result<()> {
    abi::remove_map_value(MapType::HttpRequestHeaders as u32, name).map_err(st("remove_map_value"))
}

pub fn set_request_header(name: &str, value: &str) -> Result<()> {
    abi::replace_map_value(MapType::HttpRequestHeaders as u32, name, value).map_err(st("set_map_value"))
}

pub fn set_response_header(name: &str, value: &str) -> Result<()> {
    abi::replace_map_value(MapType::HttpResponseHeaders as u32, name, value).map_err(st("set_map_value"))
}

/// The buffered request body, `[0, size)`.
pub fn request_body(size: usize) -> Result<Option<Vec<u8>>> {
    abi::get_buffer(BufferType::HttpRequestBody as u32, 0, size).map_err(st("get_buffer(request_body)"))
}

/// A property as bytes; `None` when the host has no value for it (not an error).
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>> {
    abi::get_property(path).map_err(st("get_property"))
}

/// A property as UTF-8 text, `None` when absent or not text.
pub fn property_str(path: &[&str]) -> Option<String> {
    property(path).ok().flatten().and_then(|b| String::from_utf8(b).ok())
}

/// Property paths of the addresses a decision event names, already in the ABI's form (segments
/// separated by NUL bytes): read for every decision, they need no path buffer built each time.
pub const SOURCE_ADDRESS: &str = "source\0address";
pub const UPSTREAM_ADDRESS: &str = "upstream\0address";
pub const DESTINATION_ADDRESS: &str = "destination\0address";

/// [`property_str`] for a path already in the ABI's form (one of the constants above).
pub fn property_str_at(joined_path: &'static str) -> Option<String> {
    abi::get_property_joined(joined_path.as_bytes()).ok().flatten().and_then(|b| String::from_utf8(b).ok())
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
    abi::set_property(name, value.as_bytes()).map_err(st("set_property"))
}

/// Answers the stream locally.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<()> {
    abi::send_local_response(status, headers, body).map_err(st("send_http_response"))
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
    let status = abi::get_map_value(MapType::HttpCallResponseHeaders as u32, ":status").ok().flatten()?;
    std::str::from_utf8(&status).ok()?.parse().ok()
}

pub fn define_counter(name: &str) -> Result<u32> {
    hostcalls::define_metric(MetricType::Counter, name).map_err(st("define_metric"))
}

pub fn define_gauge(name: &str) -> Result<u32> {
    hostcalls::define_metric(MetricType::Gauge, name).map_err(st("define_metric"))
}

pub fn increment(metric: u32, by: i64) {
    let _ = abi::increment_metric(metric, by);
}

pub fn record(metric: u32, value: u64) {
    let _ = hostcalls::record_metric(metric, value);
}

/// A shared-data value and its CAS token; `None` when the key does not exist. (Envoy returns no
/// bytes for an empty value that exists; that is an empty value with a token here.)
pub fn shared_get(key: &str) -> Result<Option<(Vec<u8>, u32)>> {
    match abi::get_shared_data(key).map_err(st("get_shared_data"))? {
        (Some(v), Some(cas)) => Ok(Some((v, cas))),
        (None, Some(cas)) => Ok(Some((Vec::new(), cas))),
        (Some(v), None) => Ok(Some((v, 0))),
        (None, None) => Ok(None),
    }
}

/// Writes shared data if its CAS token is still `cas` (`None`: unconditionally).
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> std::result::Result<(), SetError> {
    match abi::set_shared_data(key, value, cas) {
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
    abi::get_buffer(BufferType::HttpCallResponseBody as u32, 0, size).ok().flatten()
}

/// The values of these response headers (`None` when absent), from one read of the whole map:
/// a call that returns bytes costs ~1 µs in Envoy/V8 whatever their size, so one read of all the
/// headers is cheaper than one per name (bench/PROFILE.md, session 7). A header present more
/// than once is joined with ", " (HTTP's list syntax), so a second `content-encoding` cannot
/// hide behind a first. Upstream-controlled bytes: not UTF-8 is decoded lossily.
pub fn response_headers<const N: usize>(names: [&str; N]) -> [Option<String>; N] {
    let bytes = abi::map_pairs(MapType::HttpResponseHeaders as u32).ok().flatten().unwrap_or_default();
    named_values(&bytes, names)
}

/// [`response_headers`]' pick from serialized pairs (all `None` when they do not decode).
fn named_values<const N: usize>(bytes: &[u8], names: [&str; N]) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in decode_pairs(bytes).unwrap_or_default() {
        let Some(slot) = names.iter().position(|n| n.as_bytes() == key).and_then(|i| found.get_mut(i)) else { continue };
        let value = String::from_utf8_lossy(value);
        match slot {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => *slot = Some(value.into_owned()),
        }
    }
    found
}

pub fn remove_response_header(name: &str) -> Result<()> {
    abi::remove_map_value(MapType::HttpResponseHeaders as u32, name).map_err(st("remove_map_value"))
}

/// The buffered response body, `[0, size)`.
pub fn response_body(size: usize) -> Result<Option<Vec<u8>>> {
    abi::get_buffer(BufferType::HttpResponseBody as u32, 0, size).map_err(st("get_buffer(response_body)"))
}

/// Replaces `[0, size)` of the response body buffer with `value` (any length).
pub fn set_response_body(size: usize, value: &[u8]) -> Result<()> {
    abi::set_buffer(BufferType::HttpResponseBody as u32, 0, size, value).map_err(st("set_buffer(response_body)"))
}

/// Resets the response (used when a response must be refused after its headers left).
pub fn reset_response() -> Result<()> {
    hostcalls::reset_http_response().map_err(st("reset_http_response"))
}

/// Replaces `[0, size)` of the request body buffer with `value` (any length).
pub fn set_request_body(size: usize, value: &[u8]) -> Result<()> {
    abi::set_buffer(BufferType::HttpRequestBody as u32, 0, size, value).map_err(st("set_buffer(request_body)"))
}

/// The proxy-wasm ABI (v0.2.1, as Envoy implements it), called directly. Statuses are read as
/// plain integers (an unknown one is `InternalFailure`, never undefined behaviour) and every one
/// is returned, none panics. Memory the host returns was allocated through this module's
/// `proxy_on_memory_allocate` (the SDK's: a boxed slice of exactly the size asked), and is taken
/// back as such.
#[allow(unsafe_code)]
mod abi {
    use std::ptr::{null, null_mut};

    use proxy_wasm::types::Status;

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
        fn proxy_get_buffer_bytes(buffer: u32, start: usize, max_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
        fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
        #[allow(clippy::too_many_arguments)]
        fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_increment_metric(metric: u32, offset: i64) -> u32;
    }

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;

    fn status(code: u32) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            _ => Status::InternalFailure,
        }
    }

    fn done(code: u32) -> Result<(), Status> {
        if code == OK { Ok(()) } else { Err(status(code)) }
    }

    /// Takes ownership of what the host returned.
    fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        // SAFETY: the host filled `data` with memory it got from `proxy_on_memory_allocate(size)`,
        // a `Box<[u8]>` of exactly `size` bytes leaked for it, which is ours again now.
        let boxed = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size)) };
        Some(boxed.into_vec())
    }

    /// A call that returns bytes: `Ok(None)` for `NotFound` or no data.
    fn returning(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
        let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
        match call(&mut data, &mut size) {
            OK => Ok(take(data, size)),
            NOT_FOUND => Ok(None),
            code => Err(status(code)),
        }
    }

    pub fn log(level: u32, msg: &[u8]) -> Result<(), Status> {
        // SAFETY: pointer and length of a live slice.
        done(unsafe { proxy_log(level, msg.as_ptr(), msg.len()) })
    }

    pub fn now_ns() -> Result<u64, Status> {
        let mut ns = 0u64;
        // SAFETY: a valid out pointer.
        done(unsafe { proxy_get_current_time_nanoseconds(&mut ns) }).map(|()| ns)
    }

    pub fn map_pairs(map: u32) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: valid out pointers; the result is taken back by `take`.
        returning(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) })
    }

    pub fn get_map_value(map: u32, key: &str) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: as above; `key` is a live slice.
        returning(|d, s| unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), d, s) })
    }

    pub fn replace_map_value(map: u32, key: &str, value: &str) -> Result<(), Status> {
        // SAFETY: live slices.
        done(unsafe { proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
    }

    pub fn remove_map_value(map: u32, key: &str) -> Result<(), Status> {
        // SAFETY: a live slice.
        done(unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
    }

    /// A property path as the ABI takes it: the segments joined by NUL bytes.
    pub(super) fn path_bytes(path: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
        for (i, part) in path.iter().enumerate() {
            if i > 0 {
                out.push(0);
            }
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// `Ok(None)` when the host has no value; `SerializationFailure` when it has one it cannot
    /// serialize.
    pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        get_property_joined(&path_bytes(path))
    }

    /// [`get_property`] with the path already joined by NUL bytes.
    pub fn get_property_joined(path: &[u8]) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: valid out pointers; `path` is a live buffer.
        returning(|d, s| unsafe { proxy_get_property(path.as_ptr(), path.len(), d, s) })
    }

    pub fn set_property(name: &str, value: &[u8]) -> Result<(), Status> {
        // SAFETY: live slices.
        done(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
    }

    /// (value, CAS token), both `None` when the key does not exist.
    pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        let (mut data, mut size, mut cas): (*mut u8, usize, u32) = (null_mut(), 0, 0);
        // SAFETY: valid out pointers; `key` is a live slice.
        match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } {
            OK => Ok((take(data, size), (cas != 0).then_some(cas))),
            NOT_FOUND => Ok((None, None)),
            code => Err(status(code)),
        }
    }

    pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        // SAFETY: live slices.
        done(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
    }

    pub fn get_buffer(buffer: u32, start: usize, max_size: usize) -> Result<Option<Vec<u8>>, Status> {
        // SAFETY: valid out pointers.
        returning(|d, s| unsafe { proxy_get_buffer_bytes(buffer, start, max_size, d, s) })
    }

    pub fn set_buffer(buffer: u32, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
        // SAFETY: a live slice.
        done(unsafe { proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) })
    }

    pub fn send_local_response(status_code: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
        let pairs = super::encode_pairs(headers);
        // SAFETY: live buffers; no details (null, 0); -1: not a gRPC reply.
        done(unsafe { proxy_send_local_response(status_code, null(), 0, body.as_ptr(), body.len(), pairs.as_ptr(), pairs.len(), -1) })
    }

    pub fn increment_metric(metric: u32, by: i64) -> Result<(), Status> {
        // SAFETY: no pointers.
        done(unsafe { proxy_increment_metric(metric, by) })
    }
}

/// Encodes pairs the way [`decode_pairs`] reads them (headers of a local reply).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(4 + pairs.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>());
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode_pairs, encode_pairs, named_values};

    #[test]
    fn named_header_values_are_picked_from_one_read_and_repeats_joined() {
        let headers = encode(&[(b":status", b"200"), (b"content-encoding", b"identity"), (b"content-type", b"application/json"), (b"content-encoding", b"gzip"), (b"x-other", b"\xff")]);
        assert_eq!(named_values(&headers, [":status", "content-type", "content-encoding", "absent"]), [Some("200".into()), Some("application/json".into()), Some("identity, gzip".into()), None]);
        assert_eq!(named_values(&headers, ["x-other"]), [Some("\u{fffd}".into())], "not UTF-8: lossy");
        assert_eq!(named_values(b"\x01\0\0", [":status"]), [None], "undecodable: as if absent");
        assert_eq!(named_values(&[], [":status"]), [None]);
    }

    #[test]
    fn joined_address_paths_are_what_the_segments_join_to() {
        for (joined, segments) in [(super::SOURCE_ADDRESS, ["source", "address"]), (super::UPSTREAM_ADDRESS, ["upstream", "address"]), (super::DESTINATION_ADDRESS, ["destination", "address"])] {
            assert_eq!(joined.as_bytes(), super::abi::path_bytes(&segments), "{segments:?}");
        }
    }

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
    fn local_reply_headers_decode_back() {
        let headers = [("content-type", "application/json"), ("x-interlock-rule", "deny-x"), ("retry-after", "")];
        let bytes = encode_pairs(&headers);
        assert_eq!(bytes, encode(&headers.map(|(k, v)| (k.as_bytes(), v.as_bytes()))));
        let back: Vec<(&str, &str)> = decode_pairs(&bytes).unwrap().into_iter().map(|(k, v)| (std::str::from_utf8(k).unwrap(), std::str::from_utf8(v).unwrap())).collect();
        assert_eq!(back, headers);
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
