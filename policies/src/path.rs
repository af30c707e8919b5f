//! Canonical request paths: one spelling per resource, or a refusal.
//!
//! The input is the `:path` Envoy hands the filter. Envoy is configured to normalize it first
//! (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action: REJECT_REQUEST`), but a
//! security decision must not depend on that configuration being present, so everything is checked
//! again here. The rule is the one in SECURITY.md: decide on a single normalized view, and refuse
//! whatever a server behind us might read differently instead of guessing which reading it picks.
//!
//! What is normalized (these have exactly one meaning, RFC 3986 §6.2.2):
//! - `%XX` of an unreserved character (`ALPHA / DIGIT / - . _ ~`) is decoded (§6.2.2.2; Envoy's
//!   `normalize_path` does the same);
//! - other `%XX` keep their encoding with upper-case hex digits (§6.2.2.1);
//! - one trailing `/` is dropped (`/api/x/` and `/api/x` name the same rule target).
//!
//! What is refused, because servers disagree on it:
//! - anything but origin form (`*`, `http://host/path`), and a path over [`MAX_PATH_LEN`] bytes;
//! - a fragment `#` (never sent by a conforming client; some servers cut the path there);
//! - bytes outside printable ASCII, and `\` (Windows servers and some routers treat it as `/`);
//! - `;` in the path (Tomcat and Spring strip `;params` from each segment: `/admin;x=1` reaches
//!   `/admin`);
//! - malformed escapes, encoded `/` and `\` (`%2F`, `%5C`: decoded by some servers before
//!   routing), an encoded `%` (`%25`: double decoding turns `%252e` into `.`), encoded NUL and
//!   control characters (C-string truncation, log injection);
//! - empty segments (`//`: merged by some servers and not by others);
//! - `.` and `..` segments, also when spelled `%2e` (resolved by some servers, not by others);
//! - a segment ending in `.` (Windows and IIS strip trailing dots: `/admin.` reaches `/admin`).
//!
//! Case is preserved: paths are case-sensitive in general; the caller folds case where a deny
//! rule must also catch a case-insensitive upstream.
//!
//! The query (after the first `?`) is kept verbatim and not interpreted; it must still be printable
//! ASCII without `#`.

/// Longest `:path` accepted, query included, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// `/` followed by the segments joined with `/`; `/` for the root.
    pub path: String,
    /// The decoded, validated segments; empty for the root.
    pub segments: Vec<String>,
    /// Everything after the first `?`, verbatim; `None` when there is no `?`.
    pub query: Option<String>,
}

/// Why a request path was refused. Offsets are byte offsets into the raw `:path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty request path")]
    Empty,
    #[error("request path does not start with '/' (found byte {found:#04x}): only origin form is accepted")]
    NotOriginForm { found: u8 },
    #[error("request path of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("byte {byte:#04x} at offset {offset} is not printable ASCII")]
    InvalidCharacter { byte: u8, offset: usize },
    #[error("fragment '#' at offset {offset}")]
    Fragment { offset: usize },
    #[error("backslash at offset {offset}")]
    Backslash { offset: usize },
    #[error("';' path parameter at offset {offset}")]
    MatrixParameter { offset: usize },
    #[error("'%' at offset {offset} is not followed by two hex digits")]
    MalformedEscape { offset: usize },
    #[error("encoded slash or backslash at offset {offset}")]
    EscapedSlash { offset: usize },
    #[error("encoded '%' (double encoding) at offset {offset}")]
    DoubleEncoding { offset: usize },
    #[error("encoded control character {byte:#04x} at offset {offset}")]
    EncodedControl { byte: u8, offset: usize },
    #[error("empty path segment at index {index}")]
    EmptySegment { index: usize },
    #[error("dot segment {segment:?} at index {index}")]
    DotSegment { segment: String, index: usize },
    #[error("segment {segment:?} at index {index} ends with '.'")]
    TrailingDot { segment: String, index: usize },
}

/// Validates `raw` and returns its canonical form.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathError> {
    let path = canonical_path(raw)?;
    let query = raw.split_once('?').map(|(_, q)| q.to_owned());
    let segments = segments(&path).map(str::to_owned).collect();
    Ok(CanonicalPath { path, segments, query })
}

/// The segments of a canonical path (none for `/`). A decoded segment never holds `/` (an
/// encoded slash is refused), so splitting the canonical path gives back exactly its segments.
/// A byte loop, not `str::split`: segments are a few bytes long, and the generic searcher's setup
/// cost more than the search (profiled: an eighth of a REST decision).
pub fn segments(canonical: &str) -> Segments<'_> {
    Segments { rest: canonical.strip_prefix('/').filter(|rest| !rest.is_empty()) }
}

/// Iterator of [`segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        let (head, tail) = split_first_segment(rest);
        self.rest = tail;
        Some(head)
    }
}

/// `a/b/c` → (`a`, Some(`b/c`)); `a` → (`a`, None).
pub fn split_first_segment(rest: &str) -> (&str, Option<&str>) {
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i.saturating_add(1)..)),
        None => (rest, None),
    }
}

fn has_pair(s: &str, pair: &[u8; 2]) -> bool {
    s.as_bytes().windows(2).any(|w| w == pair)
}

/// [`canonicalize`]'s `path` alone, built in one allocation: what the engine decides on, once
/// per request. Same checks, same errors, in the same order.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    match already_canonical(raw) {
        Some(path) => Ok(path.to_owned()),
        None => decode_and_check(raw),
    }
}

/// How [`already_canonical`] sees a byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// Printable, nothing to decode or refuse.
    Plain,
    Slash,
    Dot,
    Query,
    /// Anything that needs the full treatment: `%`, `\`, `;`, `#`, not printable ASCII.
    Other,
}

// Indexing in a constant is evaluated by the compiler: an index out of bounds is a build error,
// never a panic at run time (and `get_mut` is not available in a `const` block).
#[allow(clippy::indexing_slicing)]
const BYTE_CLASS: [ByteClass; 256] = {
    let mut table = [ByteClass::Other; 256];
    let mut b = 0x21;
    while b <= 0x7E {
        table[b] = match b as u8 {
            b'/' => ByteClass::Slash,
            b'.' => ByteClass::Dot,
            b'?' => ByteClass::Query,
            b'%' | b'\\' | b';' | b'#' => ByteClass::Other,
            _ => ByteClass::Plain,
        };
        b += 1;
    }
    table
};

/// The canonical path of a `:path` that is already canonical but for its query and one trailing
/// `/` (what clients and Envoy's own normalization send nearly always), borrowed from it; `None`
/// when anything might need decoding or refusing, which [`decode_and_check`] then does. One pass
/// over the bytes instead of that function's five (profiled: a tenth of a REST decision).
///
/// `None` unless: origin form within [`MAX_PATH_LEN`]; the path part printable ASCII without
/// `%`, `\`, `;` or `#`, and without `//` or `./` (empty, dot and trailing-dot segments all
/// contain one, once a trailing `/` is counted) and not ending in `.`; the query printable
/// ASCII without `#`. Then nothing is decoded or refused, and the canonical path is the path
/// part with one trailing `/` dropped (the root stays `/`).
fn already_canonical(raw: &str) -> Option<&str> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN || bytes.first() != Some(&b'/') {
        return None;
    }
    let mut end = bytes.len();
    let mut prev = ByteClass::Plain;
    for (i, &b) in bytes.iter().enumerate() {
        let class = BYTE_CLASS.get(usize::from(b)).copied().unwrap_or(ByteClass::Other);
        match class {
            ByteClass::Plain | ByteClass::Dot => {}
            ByteClass::Slash if matches!(prev, ByteClass::Plain) => {}
            ByteClass::Query => {
                end = i;
                break;
            }
            // `//`, `./`, or something to decode or refuse. The root's leading slash follows
            // `Plain` (the initial value).
            ByteClass::Slash | ByteClass::Other => return None,
        }
        prev = class;
    }
    if prev == ByteClass::Dot {
        return None;
    }
    let query_ok = bytes.get(end..)?.iter().all(|&b| b != b'#' && (0x21..=0x7E).contains(&b));
    let path = raw.get(..end).filter(|_| query_ok)?;
    Some(if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path })
}

/// [`canonical_path`] in full: every check, decoding the escapes.
fn decode_and_check(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(PathError::Empty);
    };
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong { len: bytes.len(), max: MAX_PATH_LEN });
    }
    if first != b'/' {
        return Err(PathError::NotOriginForm { found: first });
    }
    // Character set of the whole target, query included.
    for (offset, &byte) in bytes.iter().enumerate() {
        if byte == b'#' {
            return Err(PathError::Fragment { offset });
        }
        if !(0x21..=0x7E).contains(&byte) {
            return Err(PathError::InvalidCharacter { byte, offset });
        }
    }
    let path_part = raw.split_once('?').map_or(raw, |(p, _)| p);
    let path = decode_path(path_part)?;
    // A segment ending in '.' (which covers `.` and `..`) is refused: one byte test per segment
    // before naming the error.
    if has_pair(&path, b"./") || path.ends_with('.') {
        for (index, segment) in segments(&path).enumerate() {
            if segment == "." || segment == ".." {
                return Err(PathError::DotSegment { segment: segment.to_owned(), index });
            }
            if segment.ends_with('.') {
                return Err(PathError::TrailingDot { segment: segment.to_owned(), index });
            }
        }
    }
    Ok(path)
}

/// Decodes the path part (which starts with `/` and is printable ASCII): `/` and the decoded
/// segments joined with `/`, one trailing `/` dropped; `/` for the root.
fn decode_path(path_part: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path_part.len());
    out.push('/');
    if path_part == "/" {
        return Ok(out);
    }
    // Without an escape or a refused byte (the usual path) there is nothing to decode: the rest
    // is copied at once rather than byte by byte.
    if path_part.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        decode_rest(path_part.as_bytes(), &mut out)?;
    } else {
        out.push_str(path_part.get(1..).unwrap_or_default());
    }
    // One trailing slash names the same resource (when there is more than one segment); a second
    // one is an empty segment.
    let rest = out.get(1..).unwrap_or_default();
    if rest.ends_with('/') {
        out.pop();
    }
    let rest = out.get(1..).unwrap_or_default();
    if (rest.is_empty() || rest.starts_with('/') || rest.ends_with('/') || has_pair(rest, b"//"))
        && let Some(index) = rest.split('/').position(str::is_empty)
    {
        return Err(PathError::EmptySegment { index });
    }
    Ok(out)
}

/// Appends the path part after its leading `/` (checked by the caller) to `out`, decoded.
fn decode_rest(bytes: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut offset = 1usize;
    while let Some(&byte) = bytes.get(offset) {
        match byte {
            b'/' => out.push('/'),
            b'\\' => return Err(PathError::Backslash { offset }),
            b';' => return Err(PathError::MatrixParameter { offset }),
            b'%' => {
                let hi = bytes.get(offset.saturating_add(1)).copied().and_then(hex_value);
                let lo = bytes.get(offset.saturating_add(2)).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::MalformedEscape { offset });
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' | b'\\' => return Err(PathError::EscapedSlash { offset }),
                    b'%' => return Err(PathError::DoubleEncoding { offset }),
                    0x00..=0x1F | 0x7F => return Err(PathError::EncodedControl { byte: decoded, offset }),
                    b if is_unreserved(b) => out.push(char::from(b)),
                    b => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
                        out.push(char::from(HEX_UPPER.get(usize::from(b & 0x0F)).copied().unwrap_or(b'0')));
                    }
                }
                offset = offset.saturating_add(2);
            }
            other => out.push(char::from(other)),
        }
        offset = offset.saturating_add(1);
    }
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
