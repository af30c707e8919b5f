//! MCP tool definitions in `tools/list` answers: pinning (a rug pull is a definition that changed
//! after it was first seen or approved), suspicious descriptions, and hiding the tools a caller
//! may not call.
//!
//! A definition's pin is `sha256:` of the canonical JSON of its name, description and input
//! schema (serde_json writes object keys sorted, so the same definition always hashes the same).
//! Pins first seen are kept in shared data (the same CAS store as rate limits) under
//! `interlock.pin.<server>.<tool>` (both hashed), so every worker and every stream agrees; the
//! number of pins is capped by a counter key, and a tool that cannot be pinned because the table is
//! full is reported like a change (never silently trusted).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::decision::{Action, Decision, Evaluation, Facts};
use crate::engine::Engine;
use crate::ratelimit::{SharedStore, StoreError};
use crate::schema::{DataAction, ToolsControl};

/// Most pins kept in shared data, all servers together.
pub const MAX_PINS: u64 = 10_000;
const PIN_COUNT_KEY: &str = "interlock.pin.count";

/// The pin of one tool definition.
pub fn definition_hash(tool: &Value) -> String {
    let canonical = serde_json::json!({
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Why a description is suspicious, if it is: instruction markers aimed at the model, lures for
/// credentials, and characters a person cannot see (tag characters, zero-width, bidi controls).
pub fn suspicious(text: &str) -> Option<&'static str> {
    if text.chars().any(|c| ('\u{E0000}'..='\u{E007F}').contains(&c)) {
        return Some("invisible tag characters");
    }
    if text.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')) {
        return Some("bidirectional control characters");
    }
    if text.chars().any(|c| matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')) {
        return Some("zero-width characters");
    }
    let lower = text.to_lowercase();
    const MARKERS: &[&str] = &[
        "ignore previous instructions",
        "ignore all previous",
        "ignore the above",
        "disregard previous",
        "<important>",
        "</important>",
        "system prompt",
        "do not tell the user",
        "don't tell the user",
        "without telling the user",
        "do not mention",
    ];
    if MARKERS.iter().any(|m| lower.contains(m)) {
        return Some("instructions aimed at the model");
    }
    const LURES: &[&str] = &["~/.ssh", "id_rsa", "id_ed25519", ".env", "~/.aws", "credentials", "private key", "mcp.json", "/etc/passwd"];
    if LURES.iter().any(|m| lower.contains(m)) {
        return Some("a lure for credentials or secrets");
    }
    None
}

fn fnv(data: &str) -> u64 {
    data.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What pinning found for one tool.
enum PinCheck {
    Known,
    FirstSeen,
    Changed,
    TableFull,
}

fn check_pin(store: &mut dyn SharedStore, server: &str, name: &str, hash: &str) -> Result<PinCheck, StoreError> {
    let key = format!("interlock.pin.{:016x}.{:016x}", fnv(server), fnv(name));
    if let Some((v, _)) = store.get(&key)? {
        return Ok(if v == hash.as_bytes() { PinCheck::Known } else { PinCheck::Changed });
    }
    // Reserve a place under the cap first (CAS on the counter), then write the pin. A worker that
    // loses the race to pin the same tool sees the winner's pin on its next look.
    for _ in 0..16 {
        let (count, cas) = match store.get(PIN_COUNT_KEY)? {
            Some((v, cas)) => (std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(MAX_PINS), Some(cas)),
            None => {
                store.set(PIN_COUNT_KEY, b"0", None)?;
                continue;
            }
        };
        if count >= MAX_PINS {
            return Ok(PinCheck::TableFull);
        }
        match store.set(PIN_COUNT_KEY, (count + 1).to_string().as_bytes(), cas) {
            Ok(()) => break,
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    match store.get(&key)? {
        Some((v, _)) => Ok(if v == hash.as_bytes() { PinCheck::Known } else { PinCheck::Changed }),
        None => {
            store.set(&key, hash.as_bytes(), None)?;
            Ok(PinCheck::FirstSeen)
        }
    }
}

impl Engine {
    /// The tool controls of the route a request with these facts took, if it asked for a tool
    /// list: only then does its answer need judging.
    pub(crate) fn tools_control_for(&self, facts: &Facts) -> Option<&ToolsControl> {
        if !facts.calls.iter().any(|c| c.method == "tools/list") {
            return None;
        }
        facts.governed.as_ref().and_then(|id| self.governed.iter().find(|r| *r.id == **id)).and_then(|r| r.tools.as_ref())
    }

    /// Judges the answer to a `tools/list` on a route with tool controls: pins, suspicious
    /// descriptions, hiding. The answer is one JSON-RPC response or a batch of them; every element
    /// that carries a tool list is judged, so a batch is no way around a pin. `None` when nothing
    /// is to be recorded or changed.
    pub(crate) fn judge_tools_list(&self, facts: &Facts, value: &Value, control: &ToolsControl, store: &mut dyn SharedStore) -> Option<Evaluation> {
        let Value::Array(items) = value else {
            let (mut eval, rewritten) = self.judge_one_tools_list(facts, value, control, store)?;
            eval.rewrite = rewritten.and_then(|v| serde_json::to_vec(&v).ok());
            return Some(eval);
        };
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        let mut recorded: Option<Evaluation> = None;
        let mut changed = false;
        for item in items {
            let Some((eval, rewritten)) = self.judge_one_tools_list(facts, item, control, store) else {
                out.push(item.clone());
                continue;
            };
            if eval.decision.blocks() {
                return Some(eval);
            }
            changed |= rewritten.is_some();
            out.push(rewritten.unwrap_or_else(|| item.clone()));
            // Hiding is what the caller sees changed: it is the decision recorded.
            if recorded.as_ref().is_none_or(|r| r.decision.action != Action::Redact && eval.decision.action == Action::Redact) {
                recorded = Some(eval);
            }
        }
        recorded.map(|mut eval| {
            eval.rewrite = changed.then(|| serde_json::to_vec(&Value::Array(out))).and_then(Result::ok);
            eval
        })
    }

    /// One JSON-RPC response's tool list: the decision, and the response rewritten when tools
    /// are hidden from it.
    fn judge_one_tools_list(&self, facts: &Facts, value: &Value, control: &ToolsControl, store: &mut dyn SharedStore) -> Option<(Evaluation, Option<Value>)> {
        let tools = value.pointer("/result/tools")?.as_array()?;
        let server = format!("{}|{}", facts.authority, facts.governed.as_deref().unwrap_or_default());
        let mut problems: Vec<(String, &'static str)> = Vec::new();
        let mut hidden: Vec<String> = Vec::new();
        for tool in tools {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let description = tool.get("description").and_then(Value::as_str).unwrap_or_default();
            let hash = definition_hash(tool);
            if let Some(approved) = control.pins.get(&name) {
                if approved != &hash {
                    problems.push((name.clone(), "definition differs from the approved pin"));
                }
            } else if control.pin {
                match check_pin(store, &server, &name, &hash) {
                    Ok(PinCheck::Known | PinCheck::FirstSeen) => {}
                    Ok(PinCheck::Changed) => problems.push((name.clone(), "definition changed since it was pinned")),
                    Ok(PinCheck::TableFull) => problems.push((name.clone(), "cannot be pinned: the pin table is full")),
                    Err(_) => problems.push((name.clone(), "cannot be pinned: shared data unavailable")),
                }
            }
            if let Some(why) = suspicious(description).or_else(|| suspicious(&name)) {
                problems.push((name.clone(), why));
            }
            if control.hide_denied && self.judge_tool_call(facts, &name, None).blocks() {
                hidden.push(name);
            }
        }
        let facts = Facts { data_classes: Vec::new(), ..facts.clone() };
        if let Some((tool, why)) = problems.first() {
            let changed = why.contains("pin");
            let rule = if changed { crate::builtin::TOOL_DEFINITION_CHANGED } else { crate::builtin::SUSPICIOUS_TOOL_DEFINITION };
            let reason = format!("tool {tool:?}: {why}{}", if problems.len() > 1 { format!(" (and {} more)", problems.len() - 1) } else { String::new() });
            let decision = match control.on_change {
                DataAction::Deny => Decision::refusal(403, rule, reason),
                _ => Decision { action: Action::Audit, status: 0, ..Decision::refusal(0, rule, reason) },
            };
            if decision.blocks() || hidden.is_empty() {
                return Some((Evaluation { decision, facts, rewrite: None }, None));
            }
        }
        if hidden.is_empty() {
            return None;
        }
        let mut out = value.clone();
        if let Some(Value::Array(list)) = out.pointer_mut("/result/tools") {
            list.retain(|t| !t.get("name").and_then(Value::as_str).is_some_and(|n| hidden.iter().any(|h| h == n)));
        }
        let reason = format!("hid {} tool(s) the caller may not call: {}", hidden.len(), hidden.join(", "));
        let decision = Decision { action: Action::Redact, status: 0, ..Decision::refusal(0, crate::builtin::HIDDEN_TOOLS, reason) };
        Some((Evaluation { decision, facts, rewrite: None }, Some(out)))
    }
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
