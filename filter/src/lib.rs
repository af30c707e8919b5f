//! Interlock proxy-wasm filter.
