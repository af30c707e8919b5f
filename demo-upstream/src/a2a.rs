//! The demo A2A agent: echoes what it is sent, over JSON-RPC. It accepts both generations of
//! method names (0.x `message/send`, 1.0 `SendMessage`) and answers each in its own shapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::jsonrpc::{self, INVALID_REQUEST, PARSE_ERROR, RpcError};
use crate::stats::a2a_key;

const TASK_NOT_FOUND: i64 = -32001;

/// Which spelling of the protocol a request used; the answer uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// 0.2/0.3: `message/send`, `kind` discriminators, lowercase states.
    V0,
    /// 1.0: `SendMessage`, protobuf-JSON enums (`ROLE_USER`, `TASK_STATE_COMPLETED`).
    V1,
}

#[derive(Debug, Clone)]
struct Task {
    id: String,
    context_id: String,
    user_message_id: String,
    text: String,
    canceled: bool,
}

/// Tasks the agent has answered, so tasks/get and tasks/cancel can find them.
#[derive(Debug, Clone, Default)]
pub struct TaskStore(Arc<Mutex<HashMap<String, Task>>>);

impl TaskStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Task>> {
        // The map stays consistent even if a holder panicked: inserts and updates are single steps.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub async fn handle_http(State(state): State<AppState>, body: Bytes) -> Response {
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = RpcError::new(PARSE_ERROR, format!("Parse error: {e}"));
            return (
                StatusCode::BAD_REQUEST,
                Json(jsonrpc::error(&Value::Null, &err)),
            )
                .into_response();
        }
    };
    if msg.is_array() {
        let err = RpcError::new(
            INVALID_REQUEST,
            "Invalid Request: A2A does not take batches",
        );
        return Json(jsonrpc::error(&Value::Null, &err)).into_response();
    }
    let call = match jsonrpc::parse_call(&msg) {
        Ok(call) => call,
        Err(invalid) => return Json(invalid).into_response(),
    };
    state.stats.incr(a2a_key(call.method));
    let outcome = match call.method {
        "message/send" => send(&state, call.params, Generation::V0),
        "SendMessage" => {
            send(&state, call.params, Generation::V1).map(|task| json!({ "task": task }))
        }
        "tasks/get" => get(&state.tasks, call.params, Generation::V0, false),
        "GetTask" => get(&state.tasks, call.params, Generation::V1, false),
        "tasks/cancel" => get(&state.tasks, call.params, Generation::V0, true),
        "CancelTask" => get(&state.tasks, call.params, Generation::V1, true),
        other => Err(RpcError::method_not_found(other)),
    };
    match call.id {
        Some(id) => Json(jsonrpc::response(id, outcome)).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// The text parts of a message, joined; accepts both part spellings (`{kind:"text",text}`
/// and 1.0's `{text}`).
fn message_text(message: &Value) -> String {
    message
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn send(
    state: &AppState,
    params: Option<&Value>,
    generation: Generation,
) -> Result<Value, RpcError> {
    let message = params
        .and_then(|p| p.get("message"))
        .filter(|m| m.is_object())
        .ok_or_else(|| RpcError::invalid_params("params.message is required"))?;
    let n = state.next_id();
    let string = |key: &str| message.get(key).and_then(Value::as_str).map(str::to_owned);
    let task = Task {
        id: format!("task-demo{n:06}"),
        context_id: string("contextId").unwrap_or_else(|| format!("ctx-demo{n:06}")),
        user_message_id: string("messageId").unwrap_or_else(|| format!("msg-user{n:06}")),
        text: message_text(message),
        canceled: false,
    };
    let rendered = render(&task, generation);
    state.tasks.lock().insert(task.id.clone(), task);
    Ok(rendered)
}

fn get(
    tasks: &TaskStore,
    params: Option<&Value>,
    generation: Generation,
    cancel: bool,
) -> Result<Value, RpcError> {
    // 0.x and 1.0 name the task by `id`; a 1.0 release candidate used `name: "tasks/{id}"`.
    let id = params
        .and_then(|p| {
            p.get("id").and_then(Value::as_str).or_else(|| {
                p.get("name")
                    .and_then(Value::as_str)
                    .map(|n| n.strip_prefix("tasks/").unwrap_or(n))
            })
        })
        .ok_or_else(|| RpcError::invalid_params("params.id is required"))?;
    let mut tasks = tasks.lock();
    let task = tasks
        .get_mut(id)
        .ok_or_else(|| RpcError::new(TASK_NOT_FOUND, "Task not found"))?;
    // The echo task completes at once; the demo still honours a cancel, so that a test can see
    // a successful call get through (or not).
    if cancel {
        task.canceled = true;
    }
    Ok(render(task, generation))
}

fn render(task: &Task, generation: Generation) -> Value {
    let reply = format!("echo: {}", task.text);
    match generation {
        Generation::V0 => json!({
            "kind": "task",
            "id": task.id,
            "contextId": task.context_id,
            "status": { "state": if task.canceled { "canceled" } else { "completed" } },
            "artifacts": [{ "artifactId": "echo", "parts": [{ "kind": "text", "text": reply }] }],
            "history": [
                { "kind": "message", "role": "user", "messageId": task.user_message_id,
                  "parts": [{ "kind": "text", "text": task.text }] },
                { "kind": "message", "role": "agent", "messageId": format!("{}-reply", task.id),
                  "parts": [{ "kind": "text", "text": reply }] },
            ],
        }),
        Generation::V1 => json!({
            "id": task.id,
            "contextId": task.context_id,
            "status": { "state": if task.canceled { "TASK_STATE_CANCELED" } else { "TASK_STATE_COMPLETED" } },
            "artifacts": [{ "artifactId": "echo", "parts": [{ "text": reply }] }],
            "history": [
                { "role": "ROLE_USER", "messageId": task.user_message_id, "parts": [{ "text": task.text }] },
                { "role": "ROLE_AGENT", "messageId": format!("{}-reply", task.id), "parts": [{ "text": reply }] },
            ],
        }),
    }
}

/// `GET /.well-known/agent-card.json`. The URL uses the Host the client asked for, so a client
/// going through Envoy is pointed back through Envoy.
pub async fn agent_card(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let url = format!("http://{host}/a2a");
    Json(json!({
        "protocolVersion": "0.3.0",
        "name": "demo-agent",
        "description": "Interlock demo A2A agent: echoes the text it is sent.",
        "url": url,
        "preferredTransport": "JSONRPC",
        "supportedInterfaces": [{ "url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0" }],
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": { "streaming": false, "pushNotifications": false },
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{ "id": "echo", "name": "Echo", "description": "Echoes the text it is sent.", "tags": ["demo"] }],
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_both_part_spellings() {
        let m = json!({"parts": [{"kind": "text", "text": "a"}, {"kind": "data", "data": {}}, {"text": "b"}]});
        assert_eq!(message_text(&m), "a\nb");
        assert_eq!(message_text(&json!({})), "");
    }

    #[test]
    fn send_get_cancel_in_both_generations() {
        let state = AppState::default();
        let params = json!({"message": {"role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hi"}]}});
        let v0 = send(&state, Some(&params), Generation::V0).unwrap();
        assert_eq!(v0["status"]["state"], "completed");
        assert_eq!(v0["artifacts"][0]["parts"][0]["text"], "echo: hi");
        let id = v0["id"].as_str().unwrap().to_owned();
        let got = get(
            &state.tasks,
            Some(&json!({"id": id})),
            Generation::V1,
            false,
        )
        .unwrap();
        assert_eq!(got["status"]["state"], "TASK_STATE_COMPLETED");
        let canceled = get(
            &state.tasks,
            Some(&json!({"name": format!("tasks/{id}")})),
            Generation::V1,
            true,
        )
        .unwrap();
        assert_eq!(canceled["status"]["state"], "TASK_STATE_CANCELED");
        let missing = get(
            &state.tasks,
            Some(&json!({"id": "nope"})),
            Generation::V0,
            false,
        )
        .unwrap_err();
        assert_eq!(missing.code, TASK_NOT_FOUND);
        assert_eq!(
            send(&state, Some(&json!({})), Generation::V1)
                .unwrap_err()
                .code,
            -32602
        );
    }
}
