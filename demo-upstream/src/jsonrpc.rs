//! JSON-RPC 2.0 envelopes shared by the MCP server and the A2A agent.

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// An error a method answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub fn error(id: &Value, err: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": err.code, "message": err.message } })
}

pub fn response(id: &Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(v) => result(id, v),
        Err(e) => error(id, &e),
    }
}

/// A message's parts, once it is known to be a request or notification.
pub struct Call<'a> {
    pub method: &'a str,
    /// None for a notification (no `id` member), which gets no response.
    pub id: Option<&'a Value>,
    pub params: Option<&'a Value>,
}

/// Splits a JSON-RPC message into method, id and params; Err is the Invalid Request response
/// (with the message's id when it has a usable one).
pub fn parse_call(msg: &Value) -> Result<Call<'_>, Value> {
    let id = msg.get("id");
    let usable_id = id
        .filter(|v| v.is_string() || v.is_number() || v.is_null())
        .cloned()
        .unwrap_or(Value::Null);
    let Some(obj) = msg.as_object() else {
        return Err(error(
            &Value::Null,
            &RpcError::new(INVALID_REQUEST, "Invalid Request"),
        ));
    };
    match obj.get("method").and_then(Value::as_str) {
        Some(method) if id.is_none_or(|v| v.is_string() || v.is_number() || v.is_null()) => {
            Ok(Call {
                method,
                id,
                params: obj.get("params"),
            })
        }
        _ => Err(error(
            &usable_id,
            &RpcError::new(INVALID_REQUEST, "Invalid Request"),
        )),
    }
}

/// Whether a message is a response a client sent back (to a server-initiated request): such a
/// message gets no answer.
pub fn is_client_response(msg: &Value) -> bool {
    msg.get("method").is_none()
        && msg.get("id").is_some()
        && (msg.get("result").is_some() || msg.get("error").is_some())
}
