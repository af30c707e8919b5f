//! The decision event: one per decision, sent by the filter to the enforcer, appended to its log.
//! Shared by the filter (which builds it), the enforcer (which stores it) and the tests.

use serde::{Deserialize, Serialize};

use crate::decision::{Action, Evaluation, RpcCall};
use crate::schema::{KernelAction, Mode, Protocol, RevokeAction};

/// One decision, as recorded. Field names are a contract with log consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    /// Unique id, also in the local reply and the access log.
    pub decision_id: String,
    /// Milliseconds since the Unix epoch, from the host clock.
    pub time_unix_ms: u64,
    /// `version` of the policy that decided.
    pub policy_version: String,
    /// The rule that decided.
    pub rule: String,
    /// What the rule does (with `mode: shadow`, what it would have done).
    pub action: Action,
    /// Status of the local reply, 0 when forwarded.
    pub status: u16,
    /// `enforce` or `shadow`.
    pub mode: Mode,
    /// Why.
    pub reason: String,
    /// With `mode: shadow`, the rule that let the request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
    /// Who.
    pub identity: EventIdentity,
    /// What was called.
    pub request: EventRequest,
    /// Sensitive-data classes seen (names and counts only, never values).
    #[serde(default)]
    pub data_classes: Vec<DataClassCount>,
    /// Kernel enforcement asked of the enforcer (from the deciding rule), for enforced denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelAction>,
    /// Revocation asked of the enforcer (from the deciding rule), for enforced denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<RevokeAction>,
    /// Downstream (caller) address, `ip:port`: the caller's end of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<String>,
    /// The address the caller connected to (the proxy's listener), `ip:port`: with `downstream`,
    /// the 4-tuple the enforcer uses to find the caller's socket, process and cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Upstream address, when known at decision time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Which proxy worker decided (`<node id>/<vm instance>`).
    pub worker: String,
    /// `request`, or `response` for a decision about the response of an allowed request.
    #[serde(default)]
    pub phase: Phase,
    /// With `phase: response`: the decision id of the request it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_decision_id: Option<String>,
}

/// Identity of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// What was called.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRequest {
    pub method: String,
    pub authority: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RpcCall>,
    /// The caller's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// MCP `clientInfo` (`name/version`) of an `initialize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The model an LLM request names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Which phase of a request a decision is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The request (one per request).
    #[default]
    Request,
    /// Its response (only when the response was refused, redacted or recorded).
    Response,
}

/// A data class and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataClassCount {
    pub class: String,
    pub count: u32,
}

/// Host facts the engine cannot know.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub phase: Phase,
    pub request_decision_id: Option<String>,
    pub decision_id: String,
    pub time_unix_ms: u64,
    pub downstream: Option<String>,
    pub destination: Option<String>,
    pub upstream: Option<String>,
    pub worker: String,
}

impl DecisionEvent {
    /// The event for an evaluation.
    pub fn new(eval: &Evaluation, policy_version: &str, host: HostFacts) -> Self {
        let d = &eval.decision;
        let f = &eval.facts;
        Self {
            decision_id: host.decision_id,
            time_unix_ms: host.time_unix_ms,
            policy_version: policy_version.to_owned(),
            rule: d.rule.clone(),
            action: d.action,
            status: d.status,
            mode: d.mode,
            reason: d.reason.clone(),
            allowed_by: d.allowed_by.clone(),
            identity: EventIdentity {
                agent: f.agent.clone(),
                user: f.user.clone(),
                session: f.session.clone(),
                trace: f.trace.clone(),
            },
            request: EventRequest {
                method: f.method.clone(),
                authority: f.authority.clone(),
                path: f.path.clone(),
                route: f.route.clone(),
                governed: f.governed.clone(),
                protocol: f.protocol,
                calls: f.calls.clone(),
                user_agent: f.user_agent.clone(),
                client: f.client.clone(),
                model: f.model.clone(),
            },
            data_classes: f.data_classes.iter().map(|c| DataClassCount { class: c.class.as_str().to_owned(), count: c.count }).collect(),
            kernel: d.kernel.clone(),
            revoke: d.revoke.clone(),
            downstream: host.downstream,
            destination: host.destination,
            upstream: host.upstream,
            worker: host.worker,
            phase: host.phase,
            request_decision_id: host.request_decision_id,
        }
    }
}
