//! What the engine decides, and the facts it decided on.

use serde::{Deserialize, Serialize};

use crate::schema::{Mode, Protocol};

/// What is done with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forwarded upstream.
    Allow,
    /// Answered locally with `status` (401, 403, 400, 413, 415).
    Deny,
}

impl Action {
    /// The lower-case name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
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
    pub rule: String,
    /// `enforce`, or `shadow` when a shadow rule's verdict is recorded instead of applied.
    pub mode: Mode,
    /// Why, for people (never holds request data beyond names the policy already has).
    pub reason: String,
    /// With `mode: shadow`: the rule that actually let the request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
}

impl Decision {
    /// True when the host must answer locally instead of forwarding.
    pub fn blocks(&self) -> bool {
        self.action != Action::Allow && self.mode == Mode::Enforce
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
    /// Resolved agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Verified end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Verified session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// W3C trace id from a valid `traceparent` (an invalid one counts as absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// `:method`.
    pub method: String,
    /// Host, lower case, port removed.
    pub authority: String,
    /// Canonical path (no query), when the path was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Template of the rule or governed route that matched the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Id of the governed route, when the body is inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<String>,
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
}

/// A decision with its facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub facts: Facts,
}
