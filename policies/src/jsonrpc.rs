//! Strict JSON-RPC 2.0 requests on governed routes (MCP and A2A), read from a body that
//! [`crate::json_doc::parse_doc`] already parsed (so no object holds a key twice).
//!
//! Strict means one reading only. A request is an object with exactly the members JSON-RPC 2.0
//! defines for a request (<https://www.jsonrpc.org/specification#request_object>) and nothing
//! else: a wrong-case `"Method"` next to `"method"` is refused rather than left for a
//! case-insensitive server (Jackson's `ACCEPT_CASE_INSENSITIVE_PROPERTIES`, .NET's
//! `PropertyNameCaseInsensitive`) to pick, and a response object (`result`/`error`) is not a
//! request. A batch is evaluated element by element by the caller; here it is bounded and every
//! element is validated, so no element can pass unexamined.
//!
//! Beyond the specification, on purpose:
//! - `method` must be printable ASCII without spaces and at most [`MAX_METHOD_LEN`] bytes: every
//!   MCP and A2A method is, and a trailing space or an invisible character is exactly the spelling
//!   a lenient server might trim while a rule keyed on the exact name would miss it;
//! - `id` must be a string of at most [`MAX_ID_LEN`] bytes or an integer: the specification
//!   discourages `null` and fractional ids, and an id beyond `u64` would silently be a float after
//!   parsing (see [`crate::json`]);
//! - `params`, when present, must be an object or an array, as the specification requires.

use serde_json::Value;

use crate::json_doc::{Doc, Members};

/// Longest `method` accepted, in bytes.
pub const MAX_METHOD_LEN: usize = 256;
/// Longest string `id` accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest MCP tool name (MCP 2025-11-25, "Tool names").
pub const MAX_TOOL_NAME_LEN: usize = 128;
/// Longest client-supplied text quoted back in an error (it ends up in logs).
const MAX_QUOTED: usize = 64;

/// One request (or notification, when `id` is absent) of a JSON-RPC body, borrowed from the
/// parsed body: `params` can be most of a body (a tool call's arguments), so it is not copied.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage<'a> {
    pub method: &'a str,
    /// A string or an integer; `None` for a notification. A copy: it outlives the body (the
    /// reply and the event carry it).
    pub id: Option<Value>,
    /// An object or an array when present.
    pub params: Option<&'a Doc<'a>>,
}

/// Why a body is not an acceptable JSON-RPC request. `at` is the index of the batch element (0 for
/// a single request). Quoted client text is truncated and printed escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("JSON-RPC body must be an object or an array of objects")]
    NotObjectOrArray,
    #[error("JSON-RPC batch is empty")]
    EmptyBatch,
    #[error("JSON-RPC batch of {len} elements exceeds the limit of {max}")]
    TooManyInBatch { len: usize, max: usize },
    #[error("JSON-RPC batch element {at} is not an object")]
    NotAnObject { at: usize },
    #[error("JSON-RPC message {at} has no {name:?} member")]
    MissingMember { at: usize, name: &'static str },
    #[error("JSON-RPC message {at}: \"jsonrpc\" must be exactly \"2.0\"")]
    InvalidVersion { at: usize },
    #[error("JSON-RPC message {at}: method {reason}")]
    InvalidMethod { at: usize, reason: &'static str },
    #[error("JSON-RPC message {at}: id must be a string of at most {MAX_ID_LEN} bytes or an integer")]
    InvalidId { at: usize },
    #[error("JSON-RPC message {at}: params must be an object or an array")]
    InvalidParams { at: usize },
    #[error("JSON-RPC message {at} has member {name:?}, which a request may not have")]
    UnknownMember { at: usize, name: String },
    #[error("tools/call has no params")]
    MissingToolParams,
    #[error("tools/call params must be an object")]
    InvalidToolParams,
    #[error("tools/call params have no \"name\"")]
    MissingToolName,
    #[error("tool name {name:?} is not 1 to {MAX_TOOL_NAME_LEN} characters of [A-Za-z0-9_.-]")]
    InvalidToolName { name: String },
    #[error("tools/call params have member {name:?}, a case variant of a member the engine reads")]
    AmbiguousMember { name: String },
    #[error("tools/call arguments must be an object")]
    InvalidArguments,
}

/// Validates a JSON-RPC body: one request object, or a batch of `1..=max_batch` request objects.
/// Returns the messages in order and whether the body was a batch (an array, even of one).
pub fn parse_messages<'a>(body: &'a Doc<'a>, max_batch: usize) -> Result<(Vec<RpcMessage<'a>>, bool), RpcError> {
    match body {
        Doc::Object(members) => Ok((vec![parse_message(members, 0)?], false)),
        Doc::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::EmptyBatch);
            }
            if items.len() > max_batch {
                return Err(RpcError::TooManyInBatch { len: items.len(), max: max_batch });
            }
            let messages = items
                .iter()
                .enumerate()
                .map(|(at, item)| match item {
                    Doc::Object(members) => parse_message(members, at),
                    _ => Err(RpcError::NotAnObject { at }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((messages, true))
        }
        _ => Err(RpcError::NotObjectOrArray),
    }
}

fn parse_message<'a>(members: &'a Members<'a>, at: usize) -> Result<RpcMessage<'a>, RpcError> {
    if let Some(name) = members.keys().find(|k| !matches!(*k, "jsonrpc" | "method" | "id" | "params")) {
        return Err(RpcError::UnknownMember { at, name: quote(name) });
    }
    match members.get("jsonrpc") {
        None => return Err(RpcError::MissingMember { at, name: "jsonrpc" }),
        Some(Doc::String(v)) if v == "2.0" => {}
        Some(_) => return Err(RpcError::InvalidVersion { at }),
    }
    let method = match members.get("method") {
        None => return Err(RpcError::MissingMember { at, name: "method" }),
        Some(Doc::String(m)) => {
            check_method(m).map_err(|reason| RpcError::InvalidMethod { at, reason })?;
            m.as_ref()
        }
        Some(_) => {
            return Err(RpcError::InvalidMethod { at, reason: "is not a string" });
        }
    };
    let id = match members.get("id") {
        None => None,
        Some(Doc::String(s)) if s.len() <= MAX_ID_LEN => Some(Value::String(s.as_ref().to_owned())),
        Some(Doc::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n.clone())),
        Some(_) => return Err(RpcError::InvalidId { at }),
    };
    let params = match members.get("params") {
        None => None,
        Some(p @ (Doc::Object(_) | Doc::Array(_))) => Some(p),
        Some(_) => return Err(RpcError::InvalidParams { at }),
    };
    Ok(RpcMessage { method, id, params })
}

fn check_method(method: &str) -> Result<(), &'static str> {
    if method.is_empty() {
        return Err("is empty");
    }
    if method.len() > MAX_METHOD_LEN {
        return Err("is longer than 256 bytes");
    }
    if !method.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
        return Err("contains a character that is not printable ASCII");
    }
    Ok(())
}

/// MCP's tool-name rule (2025-11-25, "Tool names"): 1 to 128 characters, each an ASCII letter, a
/// digit, `_`, `-` or `.`. The specification says SHOULD; on a governed route it is a MUST, so a
/// name cannot differ from a policy's by invisible, bidi, homoglyph or trailing characters.
#[must_use]
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=MAX_TOOL_NAME_LEN).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The tool name of a `tools/call`, validated; also checks that `arguments`, if present, is an
/// object. Other members (`_meta`, future additions) are left alone unless they are case variants
/// of `name` or `arguments`, which a case-insensitive server could read instead of ours.
pub fn mcp_tool_name<'a>(params: Option<&'a Doc<'_>>) -> Result<&'a str, RpcError> {
    let members = match params {
        None => return Err(RpcError::MissingToolParams),
        Some(Doc::Object(members)) => members,
        Some(_) => return Err(RpcError::InvalidToolParams),
    };
    if let Some(name) = members.keys().find(|k| {
        (*k != "name" && k.eq_ignore_ascii_case("name")) || (*k != "arguments" && k.eq_ignore_ascii_case("arguments"))
    }) {
        return Err(RpcError::AmbiguousMember { name: quote(name) });
    }
    let name = match members.get("name") {
        None => return Err(RpcError::MissingToolName),
        Some(Doc::String(name)) if is_valid_tool_name(name) => name.as_ref(),
        Some(Doc::String(name)) => return Err(RpcError::InvalidToolName { name: quote(name) }),
        Some(other) => {
            return Err(RpcError::InvalidToolName { name: quote(&other.to_value().to_string()) });
        }
    };
    match members.get("arguments") {
        None | Some(Doc::Object(_)) => Ok(name),
        Some(_) => Err(RpcError::InvalidArguments),
    }
}

/// The `arguments` member of `tools/call` params, if the params are an object that has one.
#[must_use]
pub fn tool_arguments<'a, 'd>(params: Option<&'a Doc<'d>>) -> Option<&'a Doc<'d>> {
    params?.as_object()?.get("arguments")
}

/// One name for each A2A method across protocol generations: the v0.3 JSON-RPC names
/// (`message/send`) and the v1.0 names (`SendMessage`, which JSON-RPC shares with gRPC). Returns
/// the v0.3 spelling, or `None` for anything else (the caller refuses it). Exact, case-sensitive.
///
/// Sources: A2A specification v0.3.0 §3.5.6 "Method Mapping Reference Table", v1.0.0 §9.4 and
/// `specification/a2a.proto` (tags `v0.3.0`, `v1.0.0-rc`, `v1.0.0` of a2aproject/A2A). v1.0.0
/// renamed `ListTaskPushNotificationConfig` (1.0.0-rc) to `ListTaskPushNotificationConfigs`; both
/// are accepted. gRPC-only v0.3 names (`TaskSubscription`, `GetAgentCard`, `ListTask`) were never
/// JSON-RPC methods and are not accepted.
#[must_use]
pub fn canonical_a2a_method(method: &str) -> Option<&'static str> {
    Some(match method {
        "message/send" | "SendMessage" => "message/send",
        "message/stream" | "SendStreamingMessage" => "message/stream",
        "tasks/get" | "GetTask" => "tasks/get",
        "tasks/list" | "ListTasks" => "tasks/list",
        "tasks/cancel" | "CancelTask" => "tasks/cancel",
        "tasks/resubscribe" | "SubscribeToTask" => "tasks/resubscribe",
        "tasks/pushNotificationConfig/set" | "CreateTaskPushNotificationConfig" => "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get" | "GetTaskPushNotificationConfig" => "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list" | "ListTaskPushNotificationConfigs" | "ListTaskPushNotificationConfig" => {
            "tasks/pushNotificationConfig/list"
        }
        "tasks/pushNotificationConfig/delete" | "DeleteTaskPushNotificationConfig" => "tasks/pushNotificationConfig/delete",
        "agent/getAuthenticatedExtendedCard" | "GetExtendedAgentCard" => "agent/getAuthenticatedExtendedCard",
        _ => return None,
    })
}

/// Client text for an error message: at most [`MAX_QUOTED`] characters (Display escapes the rest).
fn quote(text: &str) -> String {
    text.chars().take(MAX_QUOTED).collect()
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;
