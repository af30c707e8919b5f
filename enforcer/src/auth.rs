//! Who may do what on the enforcer API.
//!
//! Two kinds of caller reach the API, and they are trusted differently:
//!
//! - **Operators** change state: install a policy, revoke or lift a revocation, quarantine or
//!   release a workload. They also read what the enforcer has learnt (the event log, the
//!   inventory, the evidence report, the audit log, the kernel side): who called what, with which
//!   identities and arguments, is worth as much to an attacker as the power to change policy.
//!   Every such route needs the **admin token** (`Authorization: Bearer <token>`), compared in
//!   constant time.
//! - **Filters** (Envoy sidecars) post decision events and long-poll the live state. A secret in
//!   the filter's configuration would protect nothing: any agent can read its own sidecar's
//!   configuration through the admin port. Those routes stay open, and what an event can make
//!   the enforcer do in the kernel is bounded instead (see [`crate::event_auth`]).
//!
//! | open (no token) | admin token |
//! |---|---|
//! | `GET /healthz` | everything else: `PUT /v1/policy`, `POST`/`DELETE /v1/revocations`, `GET /v1/revocations`, `POST /v1/quarantine`, `POST /v1/release`, `GET /v1/events`, `GET /v1/inventory`, `GET /v1/report`, `GET /v1/audit`, `GET /v1/kernel`, and any route added later |
//! | `POST /v1/events`, `GET /v1/state`, `GET /v1/policy`: the filter's routes | |
//! | `GET /v1/status`: counters only, for probes and dashboards | |
//!
//! `GET /v1/policy` and `GET /v1/state` are open because filters need them, and what they show
//! (the policy, the active revocations) is what every sidecar holds anyway. New routes are
//! admin-only unless added to [`is_open`]: the default is closed.
//!
//! The token is 32 random bytes as 64 hex digits in `<data-dir>/admin.token` (or
//! `--admin-token-file`), created at the first start with mode 0600 (owner only). The daemon
//! refuses to start when the file is readable by group or others, as ssh does with a private
//! key. The `interlock` command reads the same file, so for root on the node every command keeps
//! working without a flag.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The token's file name in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Random bytes in a generated token.
const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from a file someone wrote by hand (hex digits or other printable
/// ASCII): 128 bits at one bit per character would need more, so this is a floor against
/// mistakes like an empty or placeholder file, not a strength check.
pub const MIN_TOKEN_LEN: usize = 32;

/// Why the admin token cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the admin token {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the admin token {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("the admin token {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("the admin token {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("the admin token in {path} is shorter than {MIN_TOKEN_LEN} characters or not printable ASCII")]
    Weak { path: PathBuf },
    #[error("cannot read random bytes for the admin token: {0}")]
    Random(std::io::Error),
}

/// The operators' bearer token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl PartialEq for AdminToken {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for AdminToken {}

impl AdminToken {
    /// A token from its text (surrounding whitespace removed); `None` when too short or not
    /// printable ASCII (it must fit in an HTTP header as is).
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        (t.len() >= MIN_TOKEN_LEN && t.bytes().all(|b| b.is_ascii_graphic())).then(|| Self(t.to_owned()))
    }

    /// A fresh random token.
    pub fn random() -> Result<Self, AuthError> {
        use std::io::Read;
        let mut bytes = [0u8; TOKEN_BYTES];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(AuthError::Random)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The token, to send it.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ:
    /// both sides are hashed first, so neither the content nor the length of the real token
    /// leaks through timing, then the digests are compared byte by byte without an early exit.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented);
        let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }

    /// The daemon's token: read from `path`, or created there (mode 0600, never overwriting
    /// an existing file) when there is none. Refuses a file readable by group or others.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), AuthError> {
        match Self::load(path) {
            Ok(token) => return Ok((token, false)),
            Err(AuthError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token = Self::random()?;
        let create = |source| AuthError::Create { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", token.0).as_bytes()).and_then(|()| f.sync_all()).map_err(create)?;
                Ok((token, true))
            }
            // Another process made it between our look and our create: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((Self::load(path)?, false)),
            Err(e) => Err(create(e)),
        }
    }

    /// Reads the token at `path`, refusing a file that others can read.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let read = |source| AuthError::Read { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(AuthError::NotAFile { path: path.to_owned() });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::TooOpen { path: path.to_owned(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).ok_or_else(|| AuthError::Weak { path: path.to_owned() })
    }
}

/// Where the `interlock` command looks for the token when not told: the data directories of
/// `make run` (the CLI's default `--data-dir`) and of the shipped deployments.
pub const DEFAULT_TOKEN_FILES: [&str; 2] = [".interlock/admin.token", "/var/lib/interlock/admin.token"];

/// The token the `interlock` command sends. `explicit` (`--admin-token-file`, or
/// `INTERLOCK_ADMIN_TOKEN_FILE`) must be readable. Otherwise the first of
/// [`DEFAULT_TOKEN_FILES`] that can be read, but only for an enforcer on loopback: this node's
/// token is never sent to another host unless asked. `None` when there is none: the open routes
/// still work, the others answer 401 and the command says what to do.
pub fn operator_token(explicit: Option<&Path>, enforcer_is_local: bool) -> Result<Option<AdminToken>, AuthError> {
    let read = |path: &Path| -> Result<AdminToken, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
        AdminToken::parse(&text).ok_or_else(|| AuthError::Weak { path: path.to_owned() })
    };
    if let Some(path) = explicit {
        return read(path).map(Some);
    }
    if !enforcer_is_local {
        return Ok(None);
    }
    Ok(DEFAULT_TOKEN_FILES.iter().map(Path::new).find_map(|p| read(p).ok()))
}

/// Whether a route is open to anyone who can reach the API (see the module's table).
pub fn is_open(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("GET" | "HEAD", "/healthz" | "/v1/state" | "/v1/policy" | "/v1/status") | ("POST", "/v1/events")
    )
}

/// What a request presented, when it is not the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    NotBearer,
    Duplicated,
    Wrong,
}

/// Checks the `Authorization` headers of a request to an admin route.
pub fn check(token: &AdminToken, headers: &axum::http::HeaderMap) -> Result<(), Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::Duplicated);
    }
    let bytes = value.as_bytes();
    let presented = match bytes.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => bytes.get(7..).unwrap_or_default(),
        _ => return Err(Refusal::NotBearer),
    };
    if token.matches(presented.trim_ascii()) { Ok(()) } else { Err(Refusal::Wrong) }
}

/// The 401 answer: JSON naming what is wrong and how to get it right.
pub fn unauthorized(refusal: Refusal) -> Response {
    let error = match refusal {
        Refusal::Missing => "this route needs the enforcer's admin token (Authorization: Bearer <token>)",
        Refusal::NotBearer => "the Authorization header must be `Bearer <admin token>`",
        Refusal::Duplicated => "more than one Authorization header",
        Refusal::Wrong => "wrong admin token",
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "error": error,
            "hint": "the token is in the enforcer's data directory (admin.token, readable by root only) or its --admin-token-file; the interlock command reads it from there, or from --admin-token-file / INTERLOCK_ADMIN_TOKEN_FILE",
        })),
    )
        .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"interlock-enforcer\""));
    response
}

/// The middleware in front of every route: open routes pass, the others need the token.
/// Refusals are logged with the peer's address, never with what it presented.
pub async fn require_admin(State(token): State<std::sync::Arc<AdminToken>>, request: Request, next: Next) -> Response {
    if is_open(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    match check(&token, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<crate::api::Peer>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.remote.to_string());
            eprintln!(
                "interlock enforcer: refused {} {} from {peer}: {refusal:?} admin token",
                request.method(),
                request.uri().path()
            );
            unauthorized(refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;
    use axum::http::HeaderMap;

    fn token() -> AdminToken {
        AdminToken::parse("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn the_token_is_compared_exactly() {
        let t = token();
        assert!(t.matches(t.secret().as_bytes()));
        let mut wrong = t.secret().as_bytes().to_vec();
        wrong[63] = b'0';
        for (name, presented) in [
            ("last byte", wrong.as_slice()),
            ("prefix", &t.secret().as_bytes()[..63]),
            ("longer", format!("{}0", t.secret()).leak().as_bytes()),
            ("empty", b"".as_slice()),
        ] {
            assert!(!t.matches(presented), "{name}");
        }
    }

    #[test]
    fn bearer_header_cases() {
        let t = token();
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let good = format!("Bearer {}", t.secret());
        assert_eq!(check(&t, &headers(&[&good])), Ok(()));
        assert_eq!(check(&t, &headers(&[&format!("bearer  {} ", t.secret())])), Ok(()));
        assert_eq!(check(&t, &headers(&[])), Err(Refusal::Missing));
        assert_eq!(check(&t, &headers(&[&format!("Basic {}", t.secret())])), Err(Refusal::NotBearer));
        assert_eq!(check(&t, &headers(&["Bearer"])), Err(Refusal::NotBearer));
        assert_eq!(check(&t, &headers(&[&good, &good])), Err(Refusal::Duplicated));
        assert_eq!(check(&t, &headers(&["Bearer nope"])), Err(Refusal::Wrong));
    }

    #[test]
    fn only_the_filter_routes_and_probes_are_open() {
        for (method, path, open) in [
            (Method::GET, "/healthz", true),
            (Method::POST, "/v1/events", true),
            (Method::GET, "/v1/state", true),
            (Method::GET, "/v1/policy", true),
            (Method::GET, "/v1/status", true),
            (Method::PUT, "/v1/policy", false),
            (Method::GET, "/v1/events", false),
            (Method::POST, "/v1/revocations", false),
            (Method::DELETE, "/v1/revocations/session/s1", false),
            (Method::GET, "/v1/revocations", false),
            (Method::POST, "/v1/quarantine", false),
            (Method::POST, "/v1/release", false),
            (Method::GET, "/v1/kernel", false),
            (Method::GET, "/v1/audit", false),
            (Method::GET, "/v1/inventory", false),
            (Method::GET, "/v1/report", false),
            (Method::GET, "/v1/state/", false),
            (Method::GET, "/nope", false),
        ] {
            assert_eq!(is_open(&method, path), open, "{method} {path}");
        }
    }

    #[test]
    fn the_daemon_creates_a_private_token_once_and_refuses_an_open_one() {
        let dir = TempDir::new("auth-token");
        let path = dir.0.join("sub").join(ADMIN_TOKEN_FILE);
        let (first, created) = AdminToken::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(first.secret().len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, created) = AdminToken::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.secret(), first.secret());
        assert_ne!(AdminToken::random().unwrap().secret(), first.secret());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(AdminToken::load_or_create(&path), Err(AuthError::TooOpen { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(AdminToken::load(&path), Err(AuthError::Weak { .. })));
        assert!(format!("{first:?}").contains("redacted") && !format!("{first:?}").contains(first.secret()));
    }
}
