//! A raw HTTP/1.1 client over `std::net::TcpStream`, no HTTP crate on purpose.
//!
//! Evasion tests must put exact bytes on the wire: duplicate headers, odd paths that a client
//! library would normalize, bodies split into pieces with pauses. A library "fixes" those, so the
//! tests speak HTTP/1.1 themselves. Every connection sends one request (`Connection: close` from
//! the builder) and reads one response, honouring `Content-Length`, chunked transfer coding, or
//! end of stream, with a read timeout so a stuck stream fails the test instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a read may block before the exchange fails (a stuck stream is a failure).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on a response head, so a broken peer cannot make a test eat memory.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// One HTTP response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Reason phrase, as sent.
    pub reason: String,
    /// Headers in wire order; names as sent (compare case-insensitively, see [`Response::header`]).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when the response used chunked transfer coding.
    pub body: Vec<u8>,
    /// Whether the body arrived with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Trailer fields of a chunked body (rare; Envoy may forward them).
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header with this name (case-insensitive), in wire order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the status and the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}); status {} {}, body: {}",
                self.status,
                self.reason,
                self.text()
            ),
        }
    }
}

/// Connect to `addr` with the harness timeouts set.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Write `bytes` exactly as given and read one response. Panics on an I/O error (connection
/// refused, reset, timeout) with the address and the error; use [`try_send_raw`] to observe those.
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    try_send_raw(addr, bytes).unwrap_or_else(|e| panic!("HTTP exchange with {addr} failed: {e}"))
}

/// Write `bytes` exactly as given and read one response.
pub fn try_send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
    try_send_pieces(addr, &[bytes], Duration::ZERO)
}

/// Write each piece, pausing `delay` between pieces (the pieces are sent as given: no framing is
/// added), then read one response. For bodies split across TCP segments with a Content-Length.
pub fn send_pieces(addr: SocketAddr, pieces: &[&[u8]], delay: Duration) -> Response {
    try_send_pieces(addr, pieces, delay)
        .unwrap_or_else(|e| panic!("HTTP exchange with {addr} failed: {e}"))
}

/// Fallible form of [`send_pieces`].
pub fn try_send_pieces(
    addr: SocketAddr,
    pieces: &[&[u8]],
    delay: Duration,
) -> io::Result<Response> {
    exchange_on(connect(addr)?, pieces, delay)
}

/// Write `pieces` on an already connected stream (pausing `delay` between them) and read one
/// response; the caller sets the stream's timeouts.
pub fn exchange_on(
    mut stream: TcpStream,
    pieces: &[&[u8]],
    delay: Duration,
) -> io::Result<Response> {
    let head_request = pieces.first().is_some_and(|p| p.starts_with(b"HEAD "));
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        stream.write_all(piece)?;
        stream.flush()?;
    }
    read_response(stream, head_request)
}

/// Send a request with a chunked body, one chunk per element of `chunks`, pausing `delay` after
/// each chunk, then the last chunk. `head` is the request line and the header lines, each ending
/// in CRLF, without the blank line that ends the head; `Transfer-Encoding: chunked` is added
/// unless `head` already has a Transfer-Encoding header. Empty elements are skipped (a zero-size
/// chunk would end the body early).
pub fn send_chunked(addr: SocketAddr, head: &[u8], chunks: &[&[u8]], delay: Duration) -> Response {
    try_send_chunked(addr, head, chunks, delay)
        .unwrap_or_else(|e| panic!("chunked HTTP exchange with {addr} failed: {e}"))
}

/// Fallible form of [`send_chunked`].
pub fn try_send_chunked(
    addr: SocketAddr,
    head: &[u8],
    chunks: &[&[u8]],
    delay: Duration,
) -> io::Result<Response> {
    let mut first = head.to_vec();
    if !first.ends_with(b"\r\n") {
        first.extend_from_slice(b"\r\n");
    }
    let has_te = String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"));
    if !has_te {
        first.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    first.extend_from_slice(b"\r\n");
    let mut pieces: Vec<Vec<u8>> = vec![first];
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        pieces.push(framed);
    }
    pieces.push(b"0\r\n\r\n".to_vec());
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    try_send_pieces(addr, &refs, delay)
}

/// Read one response from `stream`; interim 1xx responses (100 Continue) are skipped.
fn read_response(stream: TcpStream, head_request: bool) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    loop {
        let (status, reason, headers) = read_head(&mut reader)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut response = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            trailers: Vec::new(),
        };
        // RFC 9112 §6.3: these responses have no body whatever their headers say.
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        let te = response
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.as_deref().is_some_and(|t| t.trim().ends_with("chunked")) {
            response.chunked = true;
            read_chunked(&mut reader, &mut response)?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {len:?}"),
                )
            })?;
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            response.body = body;
        } else {
            reader.read_to_end(&mut response.body)?;
        }
        return Ok(response);
    }
}

type Head = (u16, String, Vec<(String, String)>);

fn read_head(reader: &mut impl BufRead) -> io::Result<Head> {
    let mut total = 0usize;
    let status_line = read_line(reader, &mut total)?;
    if status_line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP/1.x status line: {status_line:?}"),
        ));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers = read_fields(reader, &mut total)?;
    Ok((status, reason, headers))
}

/// Header (or trailer) fields up to the blank line.
fn read_fields(reader: &mut impl BufRead, total: &mut usize) -> io::Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = read_line(reader, total)?;
        if line.is_empty() {
            return Ok(fields);
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad header line {line:?}"),
            )
        })?;
        fields.push((name.to_owned(), value.trim().to_owned()));
    }
}

/// One line without its CRLF (or LF); empty at a blank line.
fn read_line(reader: &mut impl BufRead, total: &mut usize) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf)?;
    *total += n;
    if *total > MAX_HEAD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response head too large",
        ));
    }
    if n > 0 && !buf.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_chunked(reader: &mut impl BufRead, response: &mut Response) -> io::Result<()> {
    let mut total = 0usize;
    loop {
        let size_line = read_line(reader, &mut total)?;
        total = 0;
        // Chunk extensions (";name=value") are allowed and ignored.
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_line:?}"),
            )
        })?;
        if size == 0 {
            response.trailers = read_fields(reader, &mut total)?;
            return Ok(());
        }
        let start = response.body.len();
        response.body.resize(start + size, 0);
        reader.read_exact(&mut response.body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            ));
        }
    }
}

/// A well-formed HTTP/1.1 request: `Host` (default `localhost` unless set), `Content-Length` when
/// there is a body (or the method usually has one), and `Connection: close`.
///
/// ```no_run
/// # use interlock_tests::http::Request;
/// # let addr = "127.0.0.1:10000".parse().unwrap();
/// let resp = Request::new("POST", "/mcp")
///     .header("authorization", "Bearer x")
///     .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
///     .send(addr);
/// assert_eq!(resp.status, 200);
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A request for `path` (sent as given: no encoding or normalization).
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Shorthand for `Request::new("GET", path)`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Shorthand for `Request::new("POST", path)`.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Add a header; calling it twice with the same name sends the header twice.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// The body, sent as given.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A JSON body with `Content-Type: application/json` (unless a content type is already set).
    pub fn json(self, value: &serde_json::Value) -> Self {
        let has_ct = self.has_header("content-type");
        let req = if has_ct {
            self
        } else {
            self.header("content-type", "application/json")
        };
        req.body(value.to_string())
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The request line and headers, without the blank line; `Host` and `Connection: close` added
    /// unless set, `Content-Length` added when `with_length`.
    fn head(&self, with_length: bool) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        if !self.has_header("host") {
            out.extend_from_slice(b"Host: localhost\r\n");
        }
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if with_length && !self.has_header("content-length") {
            let needs_length =
                self.body.is_some() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
            if needs_length {
                let len = self.body.as_ref().map_or(0, Vec::len);
                out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
            }
        }
        if !self.has_header("connection") {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out
    }

    /// The exact bytes [`Request::send`] writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head(true);
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
        out
    }

    /// Send and read the response; panics on an I/O error.
    pub fn send(&self, addr: SocketAddr) -> Response {
        send_raw(addr, &self.to_bytes())
    }

    /// Send and read the response.
    pub fn try_send(&self, addr: SocketAddr) -> io::Result<Response> {
        try_send_raw(addr, &self.to_bytes())
    }

    /// Send the head with `Transfer-Encoding: chunked` (no Content-Length), then `chunks` one by
    /// one with `delay` after each; the builder's own body, if any, is ignored.
    pub fn send_chunked(&self, addr: SocketAddr, chunks: &[&[u8]], delay: Duration) -> Response {
        send_chunked(addr, &self.head(false), chunks, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Response> {
        let mut reader = BufReader::new(bytes);
        let (status, reason, headers) = read_head(&mut reader)?;
        let mut r = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            trailers: vec![],
        };
        if r.header("transfer-encoding").is_some() {
            r.chunked = true;
            read_chunked(&mut reader, &mut r)?;
        } else {
            reader.read_to_end(&mut r.body)?;
        }
        Ok(r)
    }

    #[test]
    fn decodes_chunked_with_extensions_and_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\na\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abc0123456789");
        assert_eq!(r.trailers, vec![("X-T".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn rejects_bad_chunk_size() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn builder_formats_host_length_and_close() {
        let bytes = Request::post("/mcp")
            .header("X-A", "1")
            .header("X-A", "2")
            .body("{}")
            .to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        let get = String::from_utf8(Request::get("/x").to_bytes()).unwrap();
        assert!(!get.contains("Content-Length"), "{get}");
    }
}
