//! The enforcer's HTTP API (axum). Every answer is JSON, errors included: `{"error": "..."}`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` |
//! | `POST /v1/events` | body: NDJSON decision events; `{"accepted":N,"rejected":M,"errors":[{"line":K,"error":"..."}]}` |
//! | `GET /v1/events?after=&limit=&wait_ms=` | `{"events":[record...],"next":SEQ}` |
//! | `GET /v1/events?decision_id=ID` | one record, or 404 |
//!
//! A record is `{"seq":N,"received_unix_ms":T,"event":{...}}` ([`crate::store::StoredEvent`]).
//!
//! The live state's routes (`/v1/policy`, `/v1/revocations`, `/v1/state`, `/v1/status`) are in
//! [`crate::live_api`]; kernel enforcement's (`/v1/kernel`, `/v1/quarantine`, `/v1/release`,
//! `/v1/audit`) in [`crate::kernel_api`]. An enforced deny whose rule revokes records that revocation once its event
//! is stored.
//!
//! Every route but the filters' and the probes' needs the admin token ([`crate::auth`]); a
//! kernel action asked for by an event is bounded by who posted it ([`crate::event_auth`]).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::AdminToken;
use crate::batch::parse_batch;
use crate::live_api;
use crate::state::LiveState;
use crate::store::{EventStore, StoredLine};

/// Largest event batch accepted; a larger body gets 413. The filter batches well below this.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Records per page when the query does not say.
pub const DEFAULT_LIMIT: usize = 1_000;
/// Records per page at most; a larger `limit` is clamped.
pub const MAX_LIMIT: usize = 10_000;
/// Longest long poll; a larger `wait_ms` is clamped. Below common proxy and client idle timeouts.
pub const MAX_WAIT_MS: u64 = 30_000;

/// Both ends of the TCP connection a request came on: who posted an event, as the kernel sees
/// it ([`crate::event_auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// Our address on that connection (not the listening address, which may be 0.0.0.0).
    pub local: std::net::SocketAddr,
}

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        let remote = *stream.remote_addr();
        // An accepted socket always has a local address; the fallback only keeps this total.
        let local = stream.io().local_addr().unwrap_or(remote);
        Peer { remote, local }
    }
}

/// Shared by the handlers.
#[derive(Debug, Clone)]
pub struct ApiState {
    store: EventStore,
    live: LiveState,
    /// The kernel worker, when the daemon runs one ([`ApiState::with_kernel`]).
    kernel: Option<crate::enforce::Enforcement>,
    /// Where the audit log is (for `GET /v1/audit`).
    data_dir: std::path::PathBuf,
    /// Turns true when the server starts shutting down, so long polls answer at once instead of
    /// holding graceful shutdown up for their whole wait.
    shutdown: watch::Receiver<bool>,
    /// The operators' token ([`crate::auth`]).
    admin: std::sync::Arc<AdminToken>,
}

impl ApiState {
    pub fn new(store: EventStore, live: LiveState, admin: AdminToken, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, live, kernel: None, data_dir: std::path::PathBuf::from("."), shutdown, admin: std::sync::Arc::new(admin) }
    }

    /// Hands kernel-bound decisions to `kernel` and serves its routes; `data_dir` holds the
    /// audit log.
    pub fn with_kernel(mut self, kernel: Option<crate::enforce::Enforcement>, data_dir: std::path::PathBuf) -> Self {
        self.kernel = kernel;
        self.data_dir = data_dir;
        self
    }
}

/// The API's routes, behind the admin-token check ([`crate::auth::require_admin`]), which runs
/// before routing so an unknown route is a 401 too (it reveals nothing to a caller without the
/// token).
pub fn router(state: ApiState) -> Router {
    let admin = state.admin.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/events", get(get_events).post(post_events).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)))
        .merge(live_api::router(state.live.clone(), state.store.clone(), state.shutdown.clone()))
        .merge(crate::kernel_api::router(state.kernel.clone(), state.store.clone(), state.data_dir.clone()))
        .merge(crate::discover_api::router(&state.store, state.live.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(admin, crate::auth::require_admin))
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the requests in flight
/// (long polls are cut short) and returns.
pub async fn serve(
    listener: TcpListener,
    store: EventStore,
    live: LiveState,
    admin: AdminToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_kernel(listener, store, live, None, std::path::PathBuf::from("."), admin, shutdown).await
}

/// [`serve`], with a kernel worker that acts on decisions (see [`ApiState::with_kernel`]).
pub async fn serve_with_kernel(
    listener: TcpListener,
    store: EventStore,
    live: LiveState,
    kernel: Option<crate::enforce::Enforcement>,
    data_dir: std::path::PathBuf,
    admin: AdminToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = router(ApiState::new(store, live, admin, stop_rx).with_kernel(kernel, data_dir));
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Wakes the long polls; they answer with what they have (nothing) at once.
            stop_tx.send_replace(true);
        })
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
}

/// `POST /v1/events`: validates each line, appends the valid events durably, then answers.
/// 200 when at least one event was accepted (the errors name the rejected lines), 400 when none
/// was, 413 over [`MAX_BATCH_BYTES`], 500 when the log could not be written (nothing of the
/// batch was kept: the sender should count the batch as undelivered).
async fn post_events(
    State(state): State<ApiState>,
    // Absent only when the router is served without connect info (never by `serve`): then no
    // event may act in the kernel (see `event_auth`).
    peer: Option<axum::Extension<ConnectInfo<Peer>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // 413 for an oversize body, 400 for one that could not be read.
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let batch = parse_batch(&body);
    let report = batch.report();
    if batch.events.is_empty() {
        let mut report = report;
        if report.rejected == 0 {
            report.errors.push(crate::batch::LineError { line: 0, error: "the body holds no events".to_owned() });
        }
        return (StatusCode::BAD_REQUEST, axum::Json(report)).into_response();
    }
    // Taken before the events move into the log, applied once they are durable: a revocation
    // never exists for a decision the log does not hold.
    let revokes = live_api::decision_revokes(&batch.events);
    // Kernel actions start now, not after the log's fsync: the receipt measures the delay.
    crate::kernel_api::on_events(state.kernel.as_ref(), &batch.events, peer.map(|axum::Extension(ConnectInfo(p))| p));
    match state.store.append(batch.events).await {
        Ok(_) => {
            live_api::apply_decision_revokes(&state.live, revokes).await;
            (StatusCode::OK, axum::Json(report)).into_response()
        }
        Err(e) => {
            eprintln!("interlock enforcer: event batch of {} not stored: {e}", report.accepted);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Query of `GET /v1/events`. Unknown parameters are refused so a typo (`?afer=`) does not
/// silently return everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    wait_ms: Option<u64>,
    decision_id: Option<String>,
}

async fn get_events(State(state): State<ApiState>, query: Result<Query<EventsQuery>, QueryRejection>) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Some(id) = query.decision_id {
        if query.after.is_some() || query.limit.is_some() || query.wait_ms.is_some() {
            return error(StatusCode::BAD_REQUEST, "decision_id cannot be combined with after, limit or wait_ms");
        }
        return match state.store.find(&id).await {
            Ok(Some(line)) => json_response(StatusCode::OK, line.json.to_string()),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no event with decision_id {id:?}")),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }

    let after = query.after.unwrap_or(0);
    let limit = match query.limit {
        Some(0) => return error(StatusCode::BAD_REQUEST, "limit must be at least 1"),
        Some(n) => n.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));

    // Subscribe before looking, so an append between the look and the wait still wakes us.
    let mut committed = state.store.subscribe();
    let mut lines = match state.store.after(after, limit).await {
        Ok(lines) => lines,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if lines.is_empty() && !wait.is_zero() {
        let mut shutdown = state.shutdown.clone();
        let woke = tokio::select! {
            changed = committed.wait_for(|&last| last > after) => changed.is_ok(),
            _ = tokio::time::sleep(wait) => false,
            _ = shutdown.wait_for(|&stop| stop) => false,
        };
        if woke {
            lines = match state.store.after(after, limit).await {
                Ok(lines) => lines,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        }
    }
    json_response(StatusCode::OK, events_page(&lines, after))
}

/// `{"events":[...],"next":N}`, assembled from the stored JSON so records are served byte for
/// byte as logged. `next` is the last seq returned, or `after` when there is none: the value to
/// pass as `after` next time.
fn events_page(lines: &[StoredLine], after: u64) -> String {
    let next = lines.last().map_or(after, |l| l.seq);
    let size: usize = lines.iter().map(|l| l.json.len().saturating_add(1)).sum();
    let mut body = String::with_capacity(size.saturating_add(40));
    body.push_str("{\"events\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&line.json);
    }
    body.push_str("],\"next\":");
    body.push_str(&next.to_string());
    body.push('}');
    body
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Enforcer, HttpResponse};
    use crate::store::tests::{TempDir, event};
    use serde_json::Value;
    use std::time::Instant;

    struct Running {
        /// With the admin token.
        client: Enforcer,
        /// Without it.
        anonymous: Enforcer,
        store: EventStore,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
        _dir: TempDir,
    }

    async fn start(name: &str) -> Running {
        let dir = TempDir::new(name);
        let (store, _) = EventStore::open(&dir.0, 100).unwrap();
        let (live, _) = LiveState::open(&dir.0).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = AdminToken::random().unwrap();
        let server = tokio::spawn(serve(listener, store.clone(), live, admin.clone(), async move {
            let _ = stopped.await;
        }));
        let anonymous = Enforcer::parse(&format!("http://{addr}")).unwrap();
        let client = anonymous.clone().with_admin_token(Some(admin));
        Running { client, anonymous, store, stop: Some(stop), server, _dir: dir }
    }

    fn ndjson(ids: &[&str]) -> String {
        ids.iter().map(|id| serde_json::to_string(&event(id)).unwrap() + "\n").collect()
    }

    fn body(resp: &HttpResponse) -> Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    #[tokio::test]
    async fn health_and_unknown_routes_answer_json() {
        let s = start("api-health").await;
        let r = s.client.request("GET", "/healthz", None).await.unwrap();
        assert_eq!((r.status, body(&r)), (200, serde_json::json!({"status": "ok"})));
        let r = s.client.request("GET", "/nope", None).await.unwrap();
        assert_eq!(r.status, 404);
        assert!(body(&r)["error"].is_string());
        let r = s.client.request("DELETE", "/v1/events", None).await.unwrap();
        assert_eq!(r.status, 405);
        assert!(body(&r)["error"].is_string());
        let r = s.client.request("GET", "/v1/events?afer=1", None).await.unwrap();
        assert_eq!(r.status, 400);
        assert!(body(&r)["error"].as_str().unwrap().contains("afer"));
    }

    #[tokio::test]
    async fn operator_routes_need_the_admin_token_and_filter_routes_do_not() {
        let s = start("api-auth").await;
        let wrong = s.anonymous.clone().with_admin_token(AdminToken::parse(&"0".repeat(64)));
        for (method, path, payload) in [
            ("GET", "/v1/events", None),
            ("PUT", "/v1/policy", Some(r#"{"version":"x","rules":[]}"#)),
            ("POST", "/v1/revocations", Some(r#"{"kind":"user","value":"alice"}"#)),
            ("DELETE", "/v1/revocations/user/alice", None),
            ("GET", "/v1/revocations", None),
            ("POST", "/v1/quarantine", Some(r#"{"workload":"w"}"#)),
            ("POST", "/v1/release", Some(r#"{"workload":"w"}"#)),
            ("GET", "/v1/kernel", None),
            ("GET", "/v1/audit?decision_id=x", None),
            ("GET", "/v1/inventory", None),
            ("GET", "/v1/report", None),
            ("GET", "/nope", None),
        ] {
            for (who, client) in [("no token", &s.anonymous), ("wrong token", &wrong)] {
                let r = client.request(method, path, payload.map(str::as_bytes)).await.unwrap();
                assert_eq!(r.status, 401, "{method} {path} with {who}");
                let b = body(&r);
                assert!(b["error"].as_str().unwrap().contains("token"), "{method} {path}: {b}");
                assert!(b["hint"].as_str().unwrap().contains("admin.token"), "{b}");
            }
        }
        // Nothing changed: no policy, no revocation.
        let r = s.anonymous.request("GET", "/v1/status", None).await.unwrap();
        assert_eq!((r.status, body(&r)["policy_generation"].as_u64(), body(&r)["revocations_active"].as_u64()), (200, Some(0), Some(0)));
        // The filter's routes and the probes answer without a token.
        for path in ["/healthz", "/v1/state", "/v1/status"] {
            assert_eq!(s.anonymous.request("GET", path, None).await.unwrap().status, 200, "{path}");
        }
        assert_eq!(s.anonymous.request("GET", "/v1/policy", None).await.unwrap().status, 404, "no policy yet");
        let r = s.anonymous.request("POST", "/v1/events", Some(ndjson(&["open"]).as_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        // With the token, the operator routes work.
        let r = s.client.request("POST", "/v1/revocations", Some(br#"{"kind":"user","value":"alice"}"#)).await.unwrap();
        assert_eq!(r.status, 201);
        let r = s.client.request("GET", "/v1/events", None).await.unwrap();
        assert_eq!((r.status, body(&r)["next"].as_u64()), (200, Some(1)));
        // The operator client's error says where the token is.
        let err = crate::client::ok_json::<Value>(s.anonymous.request("GET", "/v1/events", None).await.unwrap()).unwrap_err();
        assert!(err.to_string().contains("--admin-token-file"), "{err}");
    }

    #[tokio::test]
    async fn post_mixed_batch_stores_the_valid_events() {
        let s = start("api-post").await;
        let batch = format!("{}{{\"oops\":1}}\n{}", ndjson(&["a"]), ndjson(&["b"]));
        let r = s.client.request("POST", "/v1/events", Some(batch.as_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        let b = body(&r);
        assert_eq!((b["accepted"].as_u64(), b["rejected"].as_u64()), (Some(2), Some(1)));
        assert_eq!(b["errors"][0]["line"], 2);
        assert!(b["errors"][0]["error"].as_str().unwrap().contains("missing field"));

        let r = s.client.request("GET", "/v1/events", None).await.unwrap();
        let b = body(&r);
        assert_eq!(b["next"], 2);
        let events = b["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["seq"], 1);
        assert_eq!(events[1]["event"]["decision_id"], "b");
        assert!(events[0]["received_unix_ms"].as_u64().unwrap() > 0);

        let r = s.client.request("GET", "/v1/events?decision_id=b", None).await.unwrap();
        assert_eq!((r.status, body(&r)["seq"].as_u64()), (200, Some(2)));
        let r = s.client.request("GET", "/v1/events?decision_id=zz", None).await.unwrap();
        assert_eq!(r.status, 404);
        let r = s.client.request("GET", "/v1/events?decision_id=b&after=1", None).await.unwrap();
        assert_eq!(r.status, 400);

        let r = s.client.request("GET", "/v1/events?after=1&limit=5", None).await.unwrap();
        let b = body(&r);
        assert_eq!((b["events"].as_array().unwrap().len(), b["next"].as_u64()), (1, Some(2)));
        let r = s.client.request("GET", "/v1/events?after=2", None).await.unwrap();
        assert_eq!(body(&r), serde_json::json!({"events": [], "next": 2}));
        let r = s.client.request("GET", "/v1/events?limit=0", None).await.unwrap();
        assert_eq!(r.status, 400);
    }

    #[tokio::test]
    async fn all_invalid_or_empty_batches_are_400_and_store_nothing() {
        let s = start("api-invalid").await;
        let r = s.client.request("POST", "/v1/events", Some(b"nope\n{}\n")).await.unwrap();
        assert_eq!(r.status, 400);
        let b = body(&r);
        assert_eq!((b["accepted"].as_u64(), b["rejected"].as_u64()), (Some(0), Some(2)));
        assert_eq!(b["errors"].as_array().unwrap().len(), 2);
        let r = s.client.request("POST", "/v1/events", Some(b"")).await.unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(body(&r)["rejected"], 0);
        assert_eq!(s.store.last_seq(), 0);
    }

    #[tokio::test]
    async fn oversize_batch_is_413() {
        let s = start("api-413").await;
        let big = vec![b' '; MAX_BATCH_BYTES + 1];
        let r = s.client.request("POST", "/v1/events", Some(&big)).await.unwrap();
        assert_eq!(r.status, 413);
        assert!(body(&r)["error"].is_string());
    }

    #[tokio::test]
    async fn long_poll_returns_when_an_event_arrives() {
        let s = start("api-poll").await;
        let poller = {
            let client = s.client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = client.request("GET", "/v1/events?after=0&wait_ms=10000", None).await.unwrap();
                (started.elapsed(), r)
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = s.client.request("POST", "/v1/events", Some(ndjson(&["late"]).as_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        let (elapsed, r) = poller.await.unwrap();
        let b = body(&r);
        assert_eq!(b["events"][0]["event"]["decision_id"], "late");
        assert_eq!(b["next"], 1);
        assert!(elapsed >= Duration::from_millis(250), "it waited for the event: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "it answered when the event came: {elapsed:?}");
    }

    #[tokio::test]
    async fn long_poll_times_out_empty_and_shutdown_cuts_it_short() {
        let mut s = start("api-poll-timeout").await;
        let started = Instant::now();
        let r = s.client.request("GET", "/v1/events?after=0&wait_ms=200", None).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert_eq!(body(&r), serde_json::json!({"events": [], "next": 0}));

        let poller = {
            let client = s.client.clone();
            tokio::spawn(async move { client.request("GET", "/v1/events?wait_ms=30000", None).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        s.stop.take().unwrap().send(()).unwrap();
        let r = poller.await.unwrap();
        assert_eq!(body(&r)["events"], serde_json::json!([]));
        s.server.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited {:?}", started.elapsed());
    }
}
