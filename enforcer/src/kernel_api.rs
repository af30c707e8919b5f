//! The kernel-enforcement routes of the enforcer API (merged into [`crate::api::router`]):
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/kernel` | the kernel side (enforcing or observe-only, and why), active quarantines |
//! | `POST /v1/quarantine` | body `{"workload":W,"ttl_secs":N}` (0 or absent: until released); the receipt |
//! | `POST /v1/release` | body `{"workload":W}`; the release record |
//! | `GET /v1/audit?decision_id=ID` | `{"decision_id","event","records"}`: the decision and its receipts |
//!
//! Decision events reach the kernel worker from `POST /v1/events` ([`on_events`]).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use interlock_policies::DecisionEvent;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{AUDIT_FILE, records_for};
use crate::enforce::Enforcement;
use crate::store::EventStore;

#[derive(Clone)]
struct KernelApi {
    enforcement: Option<Enforcement>,
    store: EventStore,
    data_dir: PathBuf,
}

/// The routes. `enforcement` `None`: the daemon runs without a kernel worker at all (the
/// routes then answer 503 and say so).
pub fn router<S>(enforcement: Option<Enforcement>, store: EventStore, data_dir: PathBuf) -> Router<S> {
    Router::new()
        .route("/v1/kernel", get(status))
        .route("/v1/quarantine", post(quarantine))
        .route("/v1/release", post(release))
        .route("/v1/audit", get(audit))
        .with_state(KernelApi { enforcement, store, data_dir })
}

/// Hands the events that ask for kernel action to the worker, at once: before they are logged,
/// so the log's fsync does not delay enforcement.
/// `peer`: the connection they came on, which bounds what they may act on
/// ([`crate::event_auth`]).
pub fn on_events(enforcement: Option<&Enforcement>, events: &[DecisionEvent], peer: Option<crate::api::Peer>) {
    let Some(enforcement) = enforcement else { return };
    let received = Instant::now();
    let received_unix_us =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    for event in events.iter().filter(|e| crate::enforce::wants_kernel(e)) {
        enforcement.decision(event.clone(), peer, received_unix_us, received);
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "this enforcer runs without kernel enforcement")
}

async fn status(State(api): State<KernelApi>) -> Response {
    let Some(enforcement) = api.enforcement else { return unavailable() };
    match enforcement.status().await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineBody {
    workload: String,
    #[serde(default)]
    ttl_secs: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    workload: String,
}

/// The JSON body (whatever its content type: the operator client does not send one).
fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Box<Response>> {
    let body = body.map_err(|rejection| Box::new(error(rejection.status(), rejection.body_text())))?;
    serde_json::from_slice(&body).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))))
}

async fn quarantine(State(api): State<KernelApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let body: QuarantineBody = match parse(body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let Some(enforcement) = api.enforcement else { return unavailable() };
    answer(enforcement.quarantine(body.workload, body.ttl_secs).await)
}

async fn release(State(api): State<KernelApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let body: ReleaseBody = match parse(body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let Some(enforcement) = api.enforcement else { return unavailable() };
    answer(enforcement.release(body.workload).await)
}

fn answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        // The worker's refusals are about the request (unknown workload, kernel off).
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    decision_id: String,
}

async fn audit(State(api): State<KernelApi>, query: Result<Query<AuditQuery>, QueryRejection>) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let event = match api.store.find(&query.decision_id).await {
        Ok(found) => found.and_then(|line| serde_json::from_str::<Value>(&line.json).ok()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = api.data_dir.join(AUDIT_FILE);
    let id = query.decision_id.clone();
    let records = match tokio::task::spawn_blocking(move || records_for(&path, &id)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if event.is_none() && records.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no decision {:?} in the event or audit log", query.decision_id));
    }
    axum::Json(json!({ "decision_id": query.decision_id, "event": event, "records": records })).into_response()
}
