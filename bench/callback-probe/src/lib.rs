//! The least a proxy-wasm filter can be, on the raw ABI (no SDK): it exports only the callbacks
//! its cargo features name, each doing nothing, so that the difference between two builds in
//! Envoy is what Envoy's entries into those callbacks cost (bench/PROFILE.md, Session 6;
//! measured with bench/profile/probe.py). The Rust SDK exports every `proxy_on_*` callback, which
//! is why this does not use it. Not shipped.
#![allow(unsafe_code)]

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills with what it returns: a leaked buffer of exactly `size` bytes.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buf = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    buf.as_mut_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(_context_id: u32, _plugin_configuration_size: usize) -> bool {
    true
}

/// 0: continue.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    0
}

#[cfg(feature = "response")]
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _num_headers: usize, _end_of_stream: bool) -> u32 {
    0
}

#[cfg(feature = "response")]
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_body(_context_id: u32, _body_size: usize, _end_of_stream: bool) -> u32 {
    0
}

#[cfg(feature = "log")]
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[cfg(feature = "done")]
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(_context_id: u32) -> bool {
    true
}

#[cfg(feature = "done")]
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
