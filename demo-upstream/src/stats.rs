//! What the upstream executed, counted by key, so a test can prove whether a call reached it.
//!
//! Key formats (the contract the end-to-end tests read from `GET /__demo/stats`):
//! - `http:<METHOD> <path>`: every HTTP request answered, path as received, query string cut;
//! - `mcp:<method>`: every JSON-RPC message with a method on `/mcp` (batch elements each count);
//! - `mcp:tool:<name>`: every tool that ran;
//! - `a2a:<method>`: every A2A JSON-RPC method, spelled as sent;
//! - `llm:<path>`: every mock LLM call, e.g. `llm:/v1/chat/completions`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Process-wide counters, shared by every handler.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<BTreeMap<String, u64>>>);

impl Stats {
    /// Adds one to `key`.
    pub fn incr(&self, key: impl Into<String>) {
        *self.lock().entry(key.into()).or_insert(0) += 1;
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// Forgets every counter.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        // A handler that panicked while holding the lock leaves a map that is still consistent
        // (one increment is atomic under the lock), so poisoning is not a reason to stop counting.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn http_key(method: &str, path: &str) -> String {
    format!("http:{method} {path}")
}

pub fn mcp_key(method: &str) -> String {
    format!("mcp:{method}")
}

pub fn mcp_tool_key(tool: &str) -> String {
    format!("mcp:tool:{tool}")
}

pub fn a2a_key(method: &str) -> String {
    format!("a2a:{method}")
}

pub fn llm_key(path: &str) -> String {
    format!("llm:{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_format() {
        assert_eq!(http_key("GET", "/api/customers"), "http:GET /api/customers");
        assert_eq!(mcp_key("tools/call"), "mcp:tools/call");
        assert_eq!(mcp_tool_key("read_file"), "mcp:tool:read_file");
        assert_eq!(a2a_key("SendMessage"), "a2a:SendMessage");
        assert_eq!(llm_key("/v1/messages"), "llm:/v1/messages");
    }

    #[test]
    fn counts_accumulate_and_reset() {
        let stats = Stats::default();
        let shared = stats.clone();
        stats.incr("a");
        shared.incr("a");
        stats.incr(String::from("b"));
        let snap = stats.snapshot();
        assert_eq!(snap.get("a"), Some(&2));
        assert_eq!(snap.get("b"), Some(&1));
        shared.reset();
        assert!(stats.snapshot().is_empty());
    }
}
