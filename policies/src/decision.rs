//! What the engine decides, and the facts it decided on.

use serde::{Deserialize, Serialize};

use crate::schema::{KernelAction, Mode, Protocol, RevokeAction};
use crate::text::Text;

/// What is done with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forwarded upstream.
    Allow,
    /// Answered locally with `status` (401, 403, 400, 413, 415, 429).
    Deny,
    /// Forwarded with sensitive values replaced (`rule` is the data rule).
    Redact,
    /// Forwarded and recorded: sensitive data seen, or a body that could not be inspected, under
    /// a policy that audits rather than refuses.
    Audit,
}

impl Action {
    /// The lower-case name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Redact => "redact",
            Self::Audit => "audit",
        }
    }
}

/// One decision. `rule` names what decided: a policy rule id, or one of the engine's built-in
/// rules (`identity-required`, `default-deny`, `malformed-path`, ...; see [`crate::builtin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What the deciding rule says. With `mode: shadow` it is what the rule *would* have done;
    /// the request was let through.
    pub action: Action,
    /// HTTP status of the local reply; 0 when the request goes upstream.
    pub status: u16,
    /// The rule that decided.
    pub rule: Text,
    /// `enforce`, or `shadow` when a shadow rule's verdict is recorded instead of applied.
    pub mode: Mode,
    /// Why, for people (never holds request data beyond names the policy already has).
    pub reason: Text,
    /// With `mode: shadow`: the rule that actually let the request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<Text>,
    /// Kernel enforcement the deciding rule asks of the enforcer (enforced denies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelAction>,
    /// Revocation the deciding rule asks of the enforcer (enforced denies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<RevokeAction>,
    /// With a 429: seconds until the bucket has a token again (`retry-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
}

impl Decision {
    /// A refusal by a built-in or named rule, with nothing else attached.
    pub fn refusal(status: u16, rule: impl Into<Text>, reason: impl Into<Text>) -> Self {
        Self {
            action: Action::Deny,
            status,
            rule: rule.into(),
            mode: Mode::Enforce,
            reason: reason.into(),
            allowed_by: None,
            kernel: None,
            revoke: None,
            retry_after_secs: None,
        }
    }
}

impl Decision {
    /// True when the host must answer locally instead of forwarding.
    pub fn blocks(&self) -> bool {
        self.action == Action::Deny && self.mode == Mode::Enforce
    }
}

/// One JSON-RPC call found in a governed body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcCall {
    /// JSON-RPC method as sent (A2A methods in their canonical `message/send` form).
    pub method: String,
    /// `params.name` of an MCP `tools/call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// False for a notification (no `id`).
    pub has_id: bool,
}

/// What the engine established about the request, for the event and the reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Resolved agent id (shared with the policy when the policy names the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Text>,
    /// Verified end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Verified session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// W3C trace id from a valid `traceparent` (an invalid one counts as absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// `:method` (the standard methods are static text).
    pub method: Text,
    /// Host, lower case, port removed.
    pub authority: String,
    /// Canonical path (no query), when the path was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Template of the rule or governed route that matched the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Text>,
    /// Id of the governed route, when the body is inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<Text>,
    /// Its protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// JSON-RPC calls in the body (one, or each element of a batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RpcCall>,
    /// The JSON-RPC `id` of a single request, echoed in a JSON-RPC error reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<serde_json::Value>,
    /// True when the body was a JSON-RPC message (the reply is then a JSON-RPC error).
    #[serde(default)]
    pub jsonrpc: bool,
    /// Sensitive-data classes found, with counts (never the values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_classes: Vec<crate::detect::ClassCount>,
    /// The caller's `User-Agent` (printable, at most 256 characters), for inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// An MCP client's `clientInfo` from `initialize` (`name/version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The model an LLM request names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A decision with its facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub facts: Facts,
    /// The body to forward instead of the original (redaction), when the decision rewrote it.
    #[serde(skip)]
    pub rewrite: Option<Vec<u8>>,
}

impl Evaluation {
    /// The body of the local reply for a blocking decision: a JSON-RPC error carrying the
    /// request's id when the route speaks JSON-RPC, plain JSON otherwise. Both name the rule and
    /// the decision id. Never echoes request content beyond the JSON-RPC id.
    pub fn reply_body(&self, decision_id: &str) -> String {
        let d = &self.decision;
        let data = serde_json::json!({
            "decision_id": decision_id,
            "rule": d.rule,
            "status": d.status,
            "reason": d.reason,
        });
        let message = match d.status {
            401 => "unauthenticated: Interlock requires a verified agent identity",
            413 => "request body exceeds Interlock's inspection limit",
            429 => "rate limit exceeded",
            415 => "request cannot be inspected by Interlock",
            400 => "request refused by Interlock as malformed or ambiguous",
            _ => "request denied by Interlock policy",
        };
        let body = if self.facts.jsonrpc {
            // JSON-RPC 2.0 §5.1: -32700 parse error, -32600 invalid request; -32001 is in the
            // server-defined range (-32000..-32099) for "denied by policy".
            let code = match d.rule.as_str() {
                crate::builtin::MALFORMED_BODY => -32700,
                _ if d.status == 400 => -32600,
                _ => -32001,
            };
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": self.facts.rpc_id.clone().unwrap_or(serde_json::Value::Null),
                "error": { "code": code, "message": message, "data": data },
            })
        } else {
            serde_json::json!({ "error": message, "decision_id": decision_id, "rule": d.rule, "status": d.status, "reason": d.reason })
        };
        body.to_string()
    }
}
