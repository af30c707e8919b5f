//! The operator commands' client for the enforcer API.
//!
//! A deliberately small HTTP/1.1 client: one request per connection (`Connection: close`),
//! plain `http://` only, a bounded response, a deadline on the whole exchange. The enforcer API
//! is on loopback or the node's own network, so this is all it needs. hyper's client
//! (`hyper::client::conn::http1` via `hyper-util`) would handle more of HTTP, but pulls new
//! crates and features into the shared workspace lock for no gain on this path; switch to it if
//! the CLI ever needs TLS, keep-alive or a proxy.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::AdminToken;
use crate::store::StoredEvent;

/// The enforcer API address the commands use unless told otherwise.
pub const DEFAULT_ENFORCER_URL: &str = "http://127.0.0.1:9090";

/// Largest response read. A full page of 10,000 records is about 10 MiB.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Deadline for a request that does not long-poll; a long poll gets its wait on top.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid enforcer URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("cannot reach the enforcer at {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("talking to the enforcer at {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("the enforcer at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("the enforcer at {url} sent a malformed HTTP response: {reason}")]
    MalformedResponse { url: String, reason: String },
    #[error("the enforcer at {url} sent a response over {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge { url: String },
    #[error("the enforcer answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the enforcer refused: {message}. Operator commands need the enforcer's admin token: run as root on the node (it is read from <data-dir>/admin.token, by default .interlock/ or /var/lib/interlock/), or pass --admin-token-file FILE (or INTERLOCK_ADMIN_TOKEN_FILE)")]
    Unauthorized { message: String },
    #[error("the enforcer's answer is not what this client expects: {0}")]
    Decode(#[source] serde_json::Error),
}

/// Why the operator client cannot be built.
#[derive(Debug, Error)]
pub enum OperatorClientError {
    #[error(transparent)]
    Url(#[from] ClientError),
    #[error(transparent)]
    Token(#[from] crate::auth::AuthError),
}

/// Where the enforcer API is: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforcer {
    url: String,
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path prefix without a trailing slash ("" for none).
    prefix: String,
    /// Sent as `Authorization: Bearer` on every request when set ([`crate::auth`]).
    admin_token: Option<AdminToken>,
}

/// A response: status and body (headers are not needed by any caller).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One page of `GET /v1/events`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsPage {
    pub events: Vec<StoredEvent>,
    pub next: u64,
}

impl Enforcer {
    /// Parses the API base URL.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl { url: url.to_owned(), reason };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            invalid(if url.starts_with("https://") {
                "https is not supported by this client"
            } else {
                "it must start with http://"
            })
        })?;
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed '[' in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| invalid("junk after the IPv6 address"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().map_err(|_| invalid("the port is not a number from 0 to 65535"))?,
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        if prefix.contains(['?', '#']) {
            return Err(invalid("a query or fragment has no place in the base URL"));
        }
        let prefix = prefix.trim_end_matches('/');
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            prefix: if prefix.is_empty() { String::new() } else { format!("/{prefix}") },
            admin_token: None,
        })
    }

    /// This client, sending the operators' admin token with every request.
    #[must_use]
    pub fn with_admin_token(mut self, token: Option<AdminToken>) -> Self {
        self.admin_token = token;
        self
    }

    /// Whether the enforcer is on this host (`localhost` or a loopback address).
    pub fn is_local(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost") || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The client the operator commands use: `url`, with the admin token from `token_file`, or
    /// from this node's data directory ([`crate::auth::operator_token`]).
    pub fn for_operator(url: &str, token_file: Option<&std::path::Path>) -> Result<Self, OperatorClientError> {
        let enforcer = Self::parse(url)?;
        let token = crate::auth::operator_token(token_file, enforcer.is_local())?;
        Ok(enforcer.with_admin_token(token))
    }

    /// Whether this client sends an admin token.
    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// The base URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request (`path` starts with `/` and may carry a query) within
    /// [`REQUEST_TIMEOUT`].
    pub async fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<HttpResponse, ClientError> {
        self.request_within(method, path, body, REQUEST_TIMEOUT).await
    }

    async fn request_within(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<HttpResponse, ClientError> {
        tokio::time::timeout(timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout { url: self.url.clone(), timeout })?
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<HttpResponse, ClientError> {
        let io_err = |source| ClientError::Io { url: self.url.clone(), source };
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ClientError::Connect { url: self.url.clone(), source })?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: interlock/{}\r\n",
            self.prefix,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(token) = &self.admin_token {
            head.push_str(&format!("Authorization: Bearer {}\r\n", token.secret()));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");

        let sent = async {
            stream.write_all(head.as_bytes()).await?;
            if let Some(body) = body {
                stream.write_all(body).await?;
            }
            stream.flush().await
        }
        .await;

        // Read even when sending failed: a server may answer (413) and close before taking the
        // whole body, and that answer is the useful error.
        let mut raw = Vec::new();
        let read = (&mut stream).take(MAX_RESPONSE_BYTES.saturating_add(1)).read_to_end(&mut raw).await;
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(ClientError::ResponseTooLarge { url: self.url.clone() });
        }
        match (parse_response(&raw), sent, read) {
            (Ok(resp), _, _) => Ok(resp),
            (Err(_), Err(e), _) | (Err(_), Ok(()), Err(e)) => Err(io_err(e)),
            (Err(reason), Ok(()), Ok(_)) => Err(ClientError::MalformedResponse { url: self.url.clone(), reason }),
        }
    }

    /// `GET /v1/events`: records after `after`, waiting up to `wait_ms` for one when there is
    /// none yet.
    pub async fn events(&self, after: u64, limit: usize, wait_ms: u64) -> Result<EventsPage, ClientError> {
        let path = format!("/v1/events?after={after}&limit={limit}&wait_ms={wait_ms}");
        let timeout = REQUEST_TIMEOUT.saturating_add(Duration::from_millis(wait_ms));
        let resp = self.request_within("GET", &path, None, timeout).await?;
        ok_json(resp)
    }
}

/// Decodes a 2xx JSON answer; turns any other into [`ClientError::Status`] with the enforcer's
/// `error` message.
pub fn ok_json<T: serde::de::DeserializeOwned>(resp: HttpResponse) -> Result<T, ClientError> {
    if !(200..300).contains(&resp.status) {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = serde_json::from_slice::<ErrorBody>(&resp.body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&resp.body).into_owned());
        if resp.status == 401 {
            return Err(ClientError::Unauthorized { message });
        }
        return Err(ClientError::Status { status: resp.status, message });
    }
    serde_json::from_slice(&resp.body).map_err(ClientError::Decode)
}

/// Parses a whole HTTP/1.1 response read to end of stream: status line, headers, then a body
/// delimited by `Transfer-Encoding: chunked`, `Content-Length`, or the end of the stream.
fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(raw.get(..split).ok_or("short")?).map_err(|_| "headers are not UTF-8")?;
    let rest = raw.get(split.saturating_add(4)..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code.parse().map_err(|_| format!("bad status code {code:?}"))?;

    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| format!("bad Content-Length {value:?}"))?);
        }
    }
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = length {
        rest.get(..len).ok_or("the body is shorter than its Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line not terminated")?;
        let size_line = std::str::from_utf8(rest.get(..eol).unwrap_or_default()).map_err(|_| "bad chunk size")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = rest.get(eol.saturating_add(2)..).unwrap_or_default();
        if size == 0 {
            return Ok(body); // trailers, if any, are not needed
        }
        body.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size..).unwrap_or_default().strip_prefix(b"\r\n").ok_or("chunk not followed by CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_enforcer_urls() {
        let e = Enforcer::parse("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str(), e.authority.as_str()),
            ("127.0.0.1", 9090, "", "127.0.0.1:9090")
        );
        let e = Enforcer::parse("http://localhost/interlock/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.prefix.as_str()), ("localhost", 80, "/interlock"));
        let e = Enforcer::parse("http://[::1]:9090/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9090));
        for bad in
            ["127.0.0.1:9090", "https://x", "http://", "http://h:99999", "http://u:p@h", "http://h/?q", "http://[::1"]
        {
            assert!(Enforcer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}junk").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"{}".as_slice()));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, b"abcde".as_slice()));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, b"to the end");
        for bad in [
            b"HTTP/1.1 200 OK\r\n".as_slice(),
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn error_answers_carry_the_enforcers_message() {
        let resp = HttpResponse { status: 404, body: br#"{"error":"no such route"}"#.to_vec() };
        let err = ok_json::<serde_json::Value>(resp).unwrap_err();
        assert_eq!(err.to_string(), "the enforcer answered 404: no such route");
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = Enforcer::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = e.request("GET", "/healthz", None).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    }
}
