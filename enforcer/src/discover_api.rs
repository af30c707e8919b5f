//! The discovery routes of the enforcer API (merged into [`crate::api::router`]):
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/inventory` | the [`Inventory`](crate::inventory::Inventory), brought up to date with the event log |
//! | `GET /v1/report` | the evidence [`Report`](crate::report::Report) without findings (the caller adds them: it has the OpenAPI files) |
//!
//! Both fold the events logged since the last call into `<data-dir>/inventory.json` first
//! (off the async workers: it is file I/O), so the ingest path never pays for discovery.

use std::path::PathBuf;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::inventory::{Limits, refresh};
use crate::state::{LiveState, now_unix_ms};
use crate::store::EventStore;

#[derive(Clone)]
struct DiscoverApi {
    /// The data directory: where the event log is.
    dir: PathBuf,
    live: LiveState,
}

/// The routes, for the log of `store` (the inventory is kept next to it).
pub fn router<S>(store: &EventStore, live: LiveState) -> Router<S> {
    let dir = store.path().parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    Router::new()
        .route("/v1/inventory", get(inventory))
        .route("/v1/report", get(report))
        .with_state(DiscoverApi { dir, live })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn inventory(axum::extract::State(api): axum::extract::State<DiscoverApi>) -> Response {
    match tokio::task::spawn_blocking(move || refresh(&api.dir, &Limits::default())).await {
        Ok(Ok(inv)) => axum::Json(inv).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn report(axum::extract::State(api): axum::extract::State<DiscoverApi>) -> Response {
    let snapshot = api.live.snapshot();
    let now = now_unix_ms();
    let revocations = snapshot.revocations.iter().cloned().collect::<Vec<_>>();
    let policy = snapshot.policy.as_ref().and_then(|p| interlock_policies::engine::parse_document(&p.json).ok());
    let dir = api.dir.clone();
    match tokio::task::spawn_blocking(move || crate::report::build(&dir, revocations, policy.as_ref(), now)).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
