//! The router: every endpoint on one listener, behind a layer that counts and logs each request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::a2a::{self, TaskStore};
use crate::stats::{Stats, http_key};
use crate::{crm, llm, mcp};

pub const STATS_PATH: &str = "/__demo/stats";
pub const RESET_PATH: &str = "/__demo/reset";
pub const RUGPULL_PATH: &str = "/__demo/rugpull";

/// What every handler shares.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub stats: Stats,
    pub tasks: TaskStore,
    seq: Arc<AtomicU64>,
}

impl AppState {
    /// A process-wide sequence number for ids (sessions, completions, tool calls, tasks).
    pub fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }
}

/// The whole service. Counting wraps the router from outside: a layer added with
/// `Router::layer` runs after routing, and this one must see (and may rewrite) the path first.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/mcp", post(mcp::handle_http))
        .route("/api/customers", get(crm::list))
        .route("/api/customers/{id}", get(crm::get).delete(crm::delete))
        .route(llm::OPENAI_PATH, post(llm::openai))
        .route(llm::ANTHROPIC_PATH, post(llm::anthropic))
        .route(llm::RESPONSES_PATH, post(llm::responses))
        .route("/a2a", post(a2a::handle_http))
        .route("/.well-known/agent-card.json", get(a2a::agent_card))
        .route(STATS_PATH, get(stats))
        .route(RESET_PATH, post(reset))
        .route(RUGPULL_PATH, post(rugpull))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn_with_state(state, record))
}

/// Counts `http:<METHOD> <raw path>` for every request except the stats endpoints themselves,
/// routes it on the normalized path, and logs one line to stderr.
async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let raw = req.uri().path().to_owned();
    if !is_control(&method, &raw) {
        state.stats.incr(http_key(method.as_str(), &raw));
    }
    let routed = normalize_path(&raw);
    if routed != raw
        && let Some(uri) = with_path(req.uri(), &routed)
    {
        *req.uri_mut() = uri;
    }
    let started = Instant::now();
    let response = next.run(req).await;
    let as_routed = if routed == raw {
        String::new()
    } else {
        format!(" (as {routed})")
    };
    eprintln!(
        "demo-upstream: {method} {raw}{as_routed} -> {} ({:.1} ms)",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// The stats endpoints do not count, so reading them never changes what a test compares.
fn is_control(method: &Method, path: &str) -> bool {
    (method == Method::GET && path == STATS_PATH) || (method == Method::POST && (path == RESET_PATH || path == RUGPULL_PATH))
}

/// The path the upstream acts on, as a typical web server would: percent-encoded unreserved
/// characters decoded, repeated slashes merged, `.` and `..` segments resolved. So a request
/// that hides `/api/admin/...` behind `//`, `..` or `%61` does reach the admin API here, and
/// only a filter that decides on the same normalized path stops it. `%2F` stays encoded.
pub fn normalize_path(raw: &str) -> String {
    if !raw.starts_with('/') {
        // `*` (OPTIONS) and the like: nothing to normalize.
        return raw.to_owned();
    }
    let decoded = decode_unreserved(raw);
    let last = decoded.rsplit('/').next().unwrap_or_default();
    let trailing_slash = matches!(last, "" | "." | "..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if trailing_slash && !segments.is_empty() {
        path.push('/');
    }
    path
}

fn decode_unreserved(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        if b == b'%'
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
            && let Ok(decoded) = u8::try_from(hi * 16 + lo)
            && (decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded))
        {
            out.push(decoded);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII replaced ASCII, so this is UTF-8 whenever the input was.
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(state.stats.snapshot()).into_response()
}

/// Changes `get_issue`'s definition from now on (the demo's rug pull); `?undo=1` puts it back.
async fn rugpull(uri: Uri) -> Response {
    let on = !uri.query().is_some_and(|q| q.contains("undo"));
    crate::mcp::RUG_PULLED.store(on, std::sync::atomic::Ordering::Relaxed);
    Json(json!({ "rug_pulled": on })).into_response()
}

async fn reset(State(state): State<AppState>) -> Response {
    state.stats.reset();
    Json(json!({ "reset": true })).into_response()
}

/// Paths no route matched: the admin area (any depth, any method), else 404.
async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if crm::is_admin_path(path) {
        return crm::admin(path);
    }
    let body = json!({ "error": "not found", "method": method.as_str(), "path": path });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body =
        json!({ "error": "method not allowed", "method": method.as_str(), "path": uri.path() });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn normalizes_like_a_web_server() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "");
        assert_eq!(normalize_path("*"), "*");
        assert_eq!(normalize_path("/api/customers"), "/api/customers");
        assert_eq!(normalize_path("/api//admin/users"), "/api/admin/users");
        assert_eq!(normalize_path("/api/customers/../admin/"), "/api/admin/");
        assert_eq!(normalize_path("/api/./admin/x/.."), "/api/admin/");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path("/api/%61dmin/%7Eu"), "/api/admin/~u");
        assert_eq!(normalize_path("/api/%2e%2e/x"), "/x");
        assert_eq!(normalize_path("/a%2Fb/%zz/%4"), "/a%2Fb/%zz/%4");
    }

    #[test]
    fn control_endpoints_are_exact() {
        assert!(is_control(&Method::GET, STATS_PATH));
        assert!(is_control(&Method::POST, RESET_PATH));
        assert!(!is_control(&Method::POST, STATS_PATH));
        assert!(!is_control(&Method::GET, "/__demo/stats/"));
    }

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// A minimal HTTP/1.1 client: one request per connection, `Connection: close`.
    async fn send(addr: std::net::SocketAddr, method: &str, target: &str, body: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        Reply {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    fn json_of(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_over_real_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            tokio::spawn(async move { axum::serve(listener, router(AppState::default())).await });

        let r = send(addr, "GET", "/api/customers", "").await;
        assert_eq!(r.status, 200);
        assert_eq!(json_of(&r).as_array().unwrap().len(), 50);

        let r = send(addr, "GET", "/api/customers/7?verbose=1", "").await;
        assert!(crate::data::luhn_valid(
            json_of(&r)["card_number"].as_str().unwrap()
        ));
        assert_eq!(send(addr, "GET", "/api/customers/99", "").await.status, 404);
        assert_eq!(
            json_of(&send(addr, "DELETE", "/api/customers/3", "").await),
            json!({"deleted": 3})
        );
        assert_eq!(send(addr, "PUT", "/api/customers/3", "").await.status, 405);

        let r = send(
            addr,
            "POST",
            "/mcp",
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers.contains("mcp-session-id: demo-session-"),
            "{}",
            r.headers
        );
        let r = send(
            addr,
            "POST",
            "/mcp",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (202, ""));
        let r = send(addr, "POST", "/mcp", "{oops").await;
        assert_eq!(r.status, 400);
        assert_eq!(json_of(&r)["error"]["code"], -32700);

        let r = send(addr, "PATCH", "/api//admin/users", "").await;
        assert_eq!(
            json_of(&r),
            json!({"admin": true, "path": "/api/admin/users"})
        );
        assert_eq!(send(addr, "GET", "/nowhere?x=1", "").await.status, 404);

        let r = send(
            addr,
            "POST",
            llm::OPENAI_PATH,
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"call delete_repository"}]}"#,
        )
        .await;
        assert!(r.headers.contains("content-type: text/event-stream"));
        assert!(r.body.ends_with("data: [DONE]\n\n"));

        let r = send(addr, "POST", "/a2a", r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"role":"ROLE_USER","parts":[{"text":"hi"}]}}}"#).await;
        assert_eq!(
            json_of(&r)["result"]["task"]["status"]["state"],
            "TASK_STATE_COMPLETED"
        );

        let stats = json_of(&send(addr, "GET", STATS_PATH, "").await);
        for key in [
            "http:GET /api/customers",
            "http:GET /api/customers/7",
            "http:DELETE /api/customers/3",
            "http:PUT /api/customers/3",
            "http:POST /mcp",
            "http:PATCH /api//admin/users",
            "http:GET /nowhere",
            "mcp:initialize",
            "mcp:notifications/initialized",
            "llm:/v1/chat/completions",
            "a2a:SendMessage",
        ] {
            assert!(stats.get(key).is_some(), "missing {key} in {stats}");
        }
        assert_eq!(stats["http:POST /mcp"], 3);
        assert!(
            stats
                .as_object()
                .unwrap()
                .keys()
                .all(|k| !k.contains("__demo")),
            "{stats}"
        );

        assert_eq!(send(addr, "POST", RESET_PATH, "").await.status, 200);
        assert_eq!(json_of(&send(addr, "GET", STATS_PATH, "").await), json!({}));
        server.abort();
    }
}
