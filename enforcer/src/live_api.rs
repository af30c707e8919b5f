//! The API of the live state ([`crate::state`]): policy pushes, revocations, the filters' long
//! poll and the status. Merged into [`crate::api::router`].
//!
//! | route | answer |
//! |---|---|
//! | `PUT /v1/policy` | body: a policy document; 200 `{"generation":G,"version":V,"policy_version":"...","rules":N}`; 400 `{"error":"...","path":"$..."}`; 413 over 32 MiB |
//! | `GET /v1/policy` | 200 `{"generation":G,"policy_version":"...","policy":{...}}`; 404 when none is installed |
//! | `POST /v1/revocations` | body `{"kind":K,"value":V,"ttl_secs":N?,"reason":R?}`; 201 the revocation (200 when it replaced an active one); 400; 507 when 10,000 are active |
//! | `DELETE /v1/revocations/{kind}/{value}` | 200 `{"removed":{...}}`; 404 when not active |
//! | `GET /v1/revocations` | `{"revocations":[...]}`, active ones, oldest first |
//! | `GET /v1/state?version=&policy_generation=&wait_ms=` | `{"version":V,"policy_generation":G,"policy":{...}?,"revocations":[...],"now_unix_ms":T}` |
//! | `GET /v1/status` | `{"version":V,"policy_generation":G,"policy_version":"..."\|null,"policy_push_rejected":N,"revocations_active":N,"events_received":N,"decision_revocations_failed":N}` |

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use interlock_policies::DecisionEvent;
use interlock_policies::decision::Action;
use interlock_policies::schema::{Mode, Principal};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::policy_store::MAX_POLICY_BYTES;
use crate::revocations::{RevocationError, RevocationKind, RevokeOutcome, RevokeRequest, validate_value};
use crate::state::{DecisionOutcome, DecisionRevoke, LiveState, StateError, now_unix_ms};
use crate::store::EventStore;

/// Longest long poll on `/v1/state`; a larger `wait_ms` is clamped.
pub const MAX_STATE_WAIT_MS: u64 = 30_000;

#[derive(Debug, Clone)]
struct LiveApi {
    live: LiveState,
    store: EventStore,
    shutdown: watch::Receiver<bool>,
}

/// The live-state routes, with their state applied (merge them into the main router).
pub fn router<S>(live: LiveState, store: EventStore, shutdown: watch::Receiver<bool>) -> Router<S> {
    Router::new()
        .route("/v1/policy", get(get_policy).put(put_policy).layer(DefaultBodyLimit::max(MAX_POLICY_BYTES)))
        .route("/v1/revocations", get(list_revocations).post(post_revocation))
        .route("/v1/revocations/{kind}/{value}", delete(delete_revocation))
        .route("/v1/state", get(get_state))
        .route("/v1/status", get(get_status))
        .with_state(LiveApi { live, store, shutdown })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A string as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The status for a failed change: what the caller got wrong is 4xx, the enforcer's own
/// trouble (a write that failed) is 500.
fn state_error(e: &StateError) -> Response {
    let status = match e {
        StateError::InvalidPolicy(_) => StatusCode::BAD_REQUEST,
        StateError::Revocation(RevocationError::TableFull) => StatusCode::INSUFFICIENT_STORAGE,
        StateError::Revocation(RevocationError::NotRevoked { .. }) => StatusCode::NOT_FOUND,
        StateError::Revocation(_) => StatusCode::BAD_REQUEST,
        StateError::Persist(_) | StateError::Random(_) | StateError::Task(_) | StateError::Poisoned => {
            eprintln!("interlock enforcer: live state change failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

/// `PUT /v1/policy`.
async fn put_policy(State(api): State<LiveApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            api.live.count_rejected_push();
            eprintln!("interlock enforcer: policy push refused: {}", rejection.body_text());
            return error(rejection.status(), rejection.body_text());
        }
    };
    match api.live.install_policy(body.to_vec()).await {
        Ok(installed) => {
            eprintln!(
                "interlock enforcer: policy {:?} installed as generation {} ({} rules), state version {}",
                installed.label, installed.generation, installed.rules, installed.version
            );
            axum::Json(json!({
                "generation": installed.generation,
                "version": installed.version,
                "policy_version": installed.label,
                "rules": installed.rules,
            }))
            .into_response()
        }
        Err(StateError::InvalidPolicy(e)) => {
            eprintln!("interlock enforcer: policy push rejected: invalid policy: {e}; the installed policy stays");
            (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e.to_string(), "path": e.path() }))).into_response()
        }
        Err(e) => state_error(&e),
    }
}

/// `GET /v1/policy`.
async fn get_policy(State(api): State<LiveApi>) -> Response {
    let snapshot = api.live.snapshot();
    let Some(policy) = &snapshot.policy else {
        return error(StatusCode::NOT_FOUND, "no policy installed");
    };
    json_response(
        StatusCode::OK,
        format!(
            "{{\"generation\":{},\"policy_version\":{},\"policy\":{}}}",
            policy.generation,
            json_str(&policy.label),
            policy.json
        ),
    )
}

/// `POST /v1/revocations`.
async fn post_revocation(State(api): State<LiveApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let req = match RevokeRequest::from_json(&body) {
        Ok(req) => req,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match api.live.revoke(req).await {
        Ok((revocation, outcome)) => {
            eprintln!(
                "interlock enforcer: revoked {} {:?} ({}, {})",
                revocation.kind,
                revocation.value,
                revocation.id,
                if outcome == RevokeOutcome::Replaced { "replacing the active one" } else { "new" }
            );
            let status = if outcome == RevokeOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
            (status, axum::Json(revocation)).into_response()
        }
        Err(e) => state_error(&e),
    }
}

/// `DELETE /v1/revocations/{kind}/{value}` (value percent-encoded; axum decodes it).
async fn delete_revocation(
    State(api): State<LiveApi>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Path((kind, value)) = match path {
        Ok(path) => path,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let kind: RevocationKind = match kind.parse() {
        Ok(kind) => kind,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    if let Err(e) = validate_value(&value) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match api.live.unrevoke(kind, value).await {
        Ok(removed) => {
            eprintln!("interlock enforcer: lifted the revocation of {} {:?} ({})", removed.kind, removed.value, removed.id);
            axum::Json(json!({ "removed": removed })).into_response()
        }
        Err(e) => state_error(&e),
    }
}

/// `GET /v1/revocations`.
async fn list_revocations(State(api): State<LiveApi>) -> Response {
    let snapshot = api.live.snapshot();
    let active: Vec<_> = snapshot.active_revocations(now_unix_ms()).collect();
    axum::Json(json!({ "revocations": active })).into_response()
}

/// Query of `GET /v1/state`. Unknown parameters are refused, as on `/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    version: Option<u64>,
    policy_generation: Option<u64>,
    wait_ms: Option<u64>,
}

/// `GET /v1/state`: the filters' long poll. Answers at once when the state's version is newer
/// than `version`; otherwise waits for a newer one, up to `wait_ms`, and answers with the state as
/// it then is. The policy document rides along only when its generation differs from the caller's.
async fn get_state(State(api): State<LiveApi>, query: Result<Query<StateQuery>, QueryRejection>) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let known = query.version.unwrap_or(0);
    let known_generation = query.policy_generation.unwrap_or(0);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(MAX_STATE_WAIT_MS));

    // Subscribe before looking, so a change between the look and the wait still wakes us.
    let mut changed = api.live.subscribe();
    let mut snapshot = api.live.snapshot();
    // `<=`, not `==`: a caller ahead of this enforcer (its data directory was lost) would ignore
    // an older answer and ask again at once; waiting keeps that from becoming a busy loop.
    if snapshot.version <= known && !wait.is_zero() {
        let mut shutdown = api.shutdown.clone();
        // The version only grows; the snapshot is replaced before the version is announced.
        tokio::select! {
            _ = changed.wait_for(|&v| v > known) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|&stop| stop) => {}
        }
        snapshot = api.live.snapshot();
    }

    let now = now_unix_ms();
    let generation = snapshot.generation();
    let active: Vec<_> = snapshot.active_revocations(now).collect();
    let revocations = match serde_json::to_string(&active) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut body = String::with_capacity(revocations.len().saturating_add(128));
    body.push_str(&format!("{{\"version\":{},\"policy_generation\":{generation},", snapshot.version));
    if let Some(policy) = snapshot.policy.as_ref().filter(|_| generation != known_generation) {
        body.push_str("\"policy\":");
        body.push_str(&policy.json);
        body.push(',');
    }
    body.push_str(&format!("\"revocations\":{revocations},\"now_unix_ms\":{now}}}"));
    json_response(StatusCode::OK, body)
}

/// `GET /v1/status`.
async fn get_status(State(api): State<LiveApi>) -> Response {
    let snapshot = api.live.snapshot();
    axum::Json(json!({
        "version": snapshot.version,
        "policy_generation": snapshot.generation(),
        "policy_version": snapshot.policy.as_ref().map(|p| p.label.clone()),
        "policy_push_rejected": api.live.policy_push_rejected(),
        "revocations_active": snapshot.active_revocations(now_unix_ms()).count(),
        "events_received": api.store.last_seq(),
        "decision_revocations_failed": api.live.decision_revocations_failed(),
    }))
    .into_response()
}

/// The revocations that events ask for: enforced denies whose rule revokes, with the principal's
/// value taken from the event's identity. An event without a value of that kind is logged and
/// skipped (there is nothing to revoke).
pub fn decision_revokes(events: &[DecisionEvent]) -> Vec<DecisionRevoke> {
    events
        .iter()
        .filter(|e| e.action == Action::Deny && e.mode == Mode::Enforce)
        .filter_map(|e| {
            let action = e.revoke.as_ref()?;
            let (kind, value) = match action.principal {
                Principal::User => (RevocationKind::User, &e.identity.user),
                Principal::Session => (RevocationKind::Session, &e.identity.session),
                Principal::Trace => (RevocationKind::Trace, &e.identity.trace),
                Principal::Agent => (RevocationKind::Agent, &e.identity.agent),
            };
            let Some(value) = value else {
                eprintln!(
                    "interlock enforcer: decision {} (rule {}) asks to revoke the caller's {kind}, but the event has none; nothing revoked",
                    e.decision_id, e.rule
                );
                return None;
            };
            Some(DecisionRevoke {
                decision_id: e.decision_id.clone(),
                rule: e.rule.clone(),
                kind,
                value: value.clone(),
                ttl_secs: action.ttl_secs.map(u64::from),
            })
        })
        .collect()
}

/// Records the revocations that stored events asked for. Failures are logged and counted in
/// `decision_revocations_failed`: the events themselves are stored either way.
pub async fn apply_decision_revokes(live: &LiveState, revokes: Vec<DecisionRevoke>) {
    for d in revokes {
        let (id, rule, kind, value) = (d.decision_id.clone(), d.rule.clone(), d.kind, d.value.clone());
        match live.revoke_for_decision(d).await {
            Ok(DecisionOutcome::Revoked(r)) => eprintln!(
                "interlock enforcer: decision {id} (rule {rule}) revoked {kind} {value:?} ({}, expires {})",
                r.id,
                r.expires_unix_ms.map_or("never".to_owned(), |e| format!("at {e} ms"))
            ),
            Ok(DecisionOutcome::AlreadyApplied) => {}
            Ok(DecisionOutcome::AlreadyCovered(r)) => eprintln!(
                "interlock enforcer: decision {id} (rule {rule}): {kind} {value:?} is already revoked at least as long ({})",
                r.id
            ),
            Err(e) => eprintln!("interlock enforcer: decision {id} (rule {rule}) could not revoke {kind} {value:?}: {e}"),
        }
    }
}

#[cfg(test)]
#[path = "live_api_tests.rs"]
mod tests;
