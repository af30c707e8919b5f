use super::*;

fn ok(path: &str, segments: &[&str], query: Option<&str>) -> Result<CanonicalPath, PathError> {
    Ok(CanonicalPath {
        path: path.to_owned(),
        segments: segments.iter().map(|s| (*s).to_owned()).collect(),
        query: query.map(str::to_owned),
    })
}

#[test]
fn canonical_forms() {
    let cases: &[(&str, &str, Result<CanonicalPath, PathError>)] = &[
        ("root", "/", ok("/", &[], None)),
        ("plain", "/api/admin", ok("/api/admin", &["api", "admin"], None)),
        ("case kept", "/API/Admin", ok("/API/Admin", &["API", "Admin"], None)),
        ("unreserved letter decoded", "/api/%61dmin", ok("/api/admin", &["api", "admin"], None)),
        ("unreserved upper-case escape decoded", "/api/%41dmin", ok("/api/Admin", &["api", "Admin"], None)),
        ("unreserved marks decoded", "/a%2Db%5Fc%7Ed%30", ok("/a-b_c~d0", &["a-b_c~d0"], None)),
        ("encoded dot inside segment decoded", "/file%2ejson", ok("/file.json", &["file.json"], None)),
        ("reserved escape kept, hex upper-cased", "/caf%c3%a9", ok("/caf%C3%A9", &["caf%C3%A9"], None)),
        ("encoded space kept", "/a%20b", ok("/a%20b", &["a%20b"], None)),
        ("encoded question mark kept", "/a%3fb", ok("/a%3Fb", &["a%3Fb"], None)),
        ("encoded semicolon kept", "/a%3bb", ok("/a%3Bb", &["a%3Bb"], None)),
        ("one trailing slash dropped", "/api/x/", ok("/api/x", &["api", "x"], None)),
        ("query split", "/api/customers/42?x=1", ok("/api/customers/42", &["api", "customers", "42"], Some("x=1"))),
        ("query verbatim", "/a?b=%2F..;\\c?d", ok("/a", &["a"], Some("b=%2F..;\\c?d"))),
        ("empty query", "/a?", ok("/a", &["a"], Some(""))),
        ("root with query", "/?q", ok("/", &[], Some("q"))),
        ("trailing slash before query", "/a/?q", ok("/a", &["a"], Some("q"))),
        ("dots inside a segment", "/v1.2/a.b", ok("/v1.2/a.b", &["v1.2", "a.b"], None)),
        ("leading dot segment name", "/.well-known/x", ok("/.well-known/x", &[".well-known", "x"], None)),
        ("three dots is not a dot segment but ends in dot", "/...", Err(PathError::TrailingDot { segment: "...".into(), index: 0 })),
        ("sub-delims kept", "/a!$&'()*+,=:@b", ok("/a!$&'()*+,=:@b", &["a!$&'()*+,=:@b"], None)),
    ];
    for (name, input, want) in cases {
        assert_eq!(&canonicalize(input), want, "case {name}: {input:?}");
    }
}

#[test]
fn refusals() {
    use PathError::*;
    let cases: &[(&str, &str, PathError)] = &[
        ("empty string", "", Empty),
        ("asterisk form", "*", NotOriginForm { found: b'*' }),
        ("absolute form", "http://host/path", NotOriginForm { found: b'h' }),
        ("relative", "api/x", NotOriginForm { found: b'a' }),
        ("dot segment", "/api/./admin", DotSegment { segment: ".".into(), index: 1 }),
        ("dot-dot segment", "/api/../api/admin", DotSegment { segment: "..".into(), index: 1 }),
        ("leading dot-dot", "/..", DotSegment { segment: "..".into(), index: 0 }),
        ("trailing dot-dot with slash", "/api/../", DotSegment { segment: "..".into(), index: 1 }),
        ("encoded dot-dot", "/api/%2e%2e/admin", DotSegment { segment: "..".into(), index: 1 }),
        ("upper-case encoded dot-dot", "/api/%2E%2E/admin", DotSegment { segment: "..".into(), index: 1 }),
        ("half-encoded dot-dot", "/api/.%2e/admin", DotSegment { segment: "..".into(), index: 1 }),
        ("encoded single dot", "/api/%2e/admin", DotSegment { segment: ".".into(), index: 1 }),
        ("encoded slash", "/api%2fadmin", EscapedSlash { offset: 4 }),
        ("encoded slash upper", "/api%2Fadmin", EscapedSlash { offset: 4 }),
        ("encoded backslash", "/api%5cadmin", EscapedSlash { offset: 4 }),
        ("encoded backslash upper", "/api%5Cadmin", EscapedSlash { offset: 4 }),
        ("double-encoded dot", "/api/%252e", DoubleEncoding { offset: 5 }),
        ("double-encoded slash", "/api%252fadmin", DoubleEncoding { offset: 4 }),
        ("root double slash", "//", EmptySegment { index: 0 }),
        ("leading double slash", "//api", EmptySegment { index: 0 }),
        ("inner double slash", "/api//admin", EmptySegment { index: 1 }),
        ("two trailing slashes", "/api/x//", EmptySegment { index: 2 }),
        ("matrix parameter", "/api/admin;x=1", MatrixParameter { offset: 10 }),
        ("bare semicolon", "/api;/admin", MatrixParameter { offset: 4 }),
        ("trailing dot", "/api/admin.", TrailingDot { segment: "admin.".into(), index: 1 }),
        ("encoded trailing dot", "/api/admin%2e", TrailingDot { segment: "admin.".into(), index: 1 }),
        ("trailing dot before slash", "/admin./x", TrailingDot { segment: "admin.".into(), index: 0 }),
        ("encoded NUL", "/api/%00", EncodedControl { byte: 0x00, offset: 5 }),
        ("encoded newline", "/api%0aadmin", EncodedControl { byte: 0x0A, offset: 4 }),
        ("encoded unit separator", "/a%1F", EncodedControl { byte: 0x1F, offset: 2 }),
        ("encoded DEL", "/a%7f", EncodedControl { byte: 0x7F, offset: 2 }),
        ("space", "/a b", InvalidCharacter { byte: b' ', offset: 2 }),
        ("tab", "/a\tb", InvalidCharacter { byte: b'\t', offset: 2 }),
        ("raw NUL", "/a\0", InvalidCharacter { byte: 0, offset: 2 }),
        ("DEL", "/a\x7f", InvalidCharacter { byte: 0x7F, offset: 2 }),
        ("raw non-ASCII", "/é", InvalidCharacter { byte: 0xC3, offset: 1 }),
        ("space in query", "/a?b c", InvalidCharacter { byte: b' ', offset: 4 }),
        ("backslash", "/a\\b", Backslash { offset: 2 }),
        ("fragment", "/a#b", Fragment { offset: 2 }),
        ("fragment in query", "/a?b#c", Fragment { offset: 4 }),
        ("bad hex", "/a%zz", MalformedEscape { offset: 2 }),
        ("one hex digit", "/a%4", MalformedEscape { offset: 2 }),
        ("bare percent", "/a%", MalformedEscape { offset: 2 }),
        ("percent before slash", "/a%/b", MalformedEscape { offset: 2 }),
        ("half bad hex", "/a%4g", MalformedEscape { offset: 2 }),
    ];
    for (name, input, want) in cases {
        assert_eq!(canonicalize(input).as_ref(), Err(want), "case {name}: {input:?}");
    }
}

#[test]
fn length_bound() {
    let at_limit = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert_eq!(canonicalize(&at_limit).map(|c| c.path.len()), Ok(MAX_PATH_LEN));
    let over = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(canonicalize(&over), Err(PathError::TooLong { len: MAX_PATH_LEN + 1, max: MAX_PATH_LEN }));
    // The query counts: the limit is on what was received.
    let long_query = format!("/a?{}", "q".repeat(MAX_PATH_LEN));
    assert!(matches!(canonicalize(&long_query), Err(PathError::TooLong { .. })));
}

#[test]
fn canonical_form_is_a_fixed_point() {
    // Canonicalizing the canonical path again yields the same thing: the filter and a second
    // normalizing hop agree.
    let inputs = ["/api/%61dmin/", "/caf%c3%a9", "/a%2Db", "/", "/API/x?y"];
    for input in inputs {
        let once = canonicalize(input).unwrap();
        let twice = canonicalize(&once.path).unwrap();
        assert_eq!(once.path, twice.path, "input {input:?}");
        assert_eq!(once.segments, twice.segments, "input {input:?}");
    }
}

#[test]
fn every_single_byte_escape_is_decoded_kept_or_refused() {
    // Exhaustive over %00..%FF: no escape slips through unclassified.
    for b in 0u8..=255 {
        let input = format!("/x%{b:02x}y");
        let got = canonicalize(&input);
        match b {
            b'/' | b'\\' => assert_eq!(got, Err(PathError::EscapedSlash { offset: 2 }), "{input}"),
            b'%' => assert_eq!(got, Err(PathError::DoubleEncoding { offset: 2 }), "{input}"),
            0x00..=0x1F | 0x7F => assert_eq!(got, Err(PathError::EncodedControl { byte: b, offset: 2 }), "{input}"),
            _ if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                assert_eq!(got.unwrap().path, format!("/x{}y", char::from(b)), "{input}");
            }
            _ => assert_eq!(got.unwrap().path, format!("/x%{b:02X}y"), "{input}"),
        }
    }
}

#[test]
fn error_messages_name_the_problem() {
    let cases: &[(&str, PathError, &str)] = &[
        ("too long", PathError::TooLong { len: 5000, max: 4096 }, "request path of 5000 bytes exceeds the limit of 4096"),
        ("char", PathError::InvalidCharacter { byte: 0x20, offset: 2 }, "byte 0x20 at offset 2 is not printable ASCII"),
        ("dot", PathError::DotSegment { segment: "..".into(), index: 1 }, "dot segment \"..\" at index 1"),
        (
            "origin",
            PathError::NotOriginForm { found: b'*' },
            "request path does not start with '/' (found byte 0x2a): only origin form is accepted",
        ),
    ];
    for (name, err, want) in cases {
        assert_eq!(err.to_string(), *want, "case {name}");
    }
}

/// Deterministic xorshift64 so the property test needs no extra dependency and replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn accepted_paths_are_canonical() {
    // Random paths over the characters that matter; whatever is accepted must be a fixed point and
    // free of every refused construct.
    let alphabet: &[&str] =
        &["/", "/", "a", "B", ".", "%2e", "%2E", "%2f", "%5C", "%25", "%41", "%c3", ";", "?", "\\", "~", "%00", "%", "#", " ", "é"];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let mut raw = String::from("/");
        for _ in 0..rng.below(10) {
            raw.push_str(alphabet[rng.below(alphabet.len())]);
        }
        let Ok(c) = canonicalize(&raw) else { continue };
        accepted += 1;
        let again = canonicalize(&c.path).unwrap_or_else(|e| panic!("{raw:?} -> {:?} refused on the second pass: {e}", c.path));
        assert_eq!(again.path, c.path, "{raw:?}");
        assert_eq!(again.segments, c.segments, "{raw:?}");
        assert!(c.path == "/" || !c.path.ends_with('/'), "{raw:?} -> {:?}", c.path);
        for s in &c.segments {
            assert!(!s.is_empty() && s != "." && s != ".." && !s.ends_with('.'), "{raw:?} -> {s:?}");
            assert!(!s.contains(['/', '\\', ';', '?', '#']), "{raw:?} -> {s:?}");
            let upper = s.to_ascii_uppercase();
            assert!(
                !upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%25") && !upper.contains("%2E"),
                "{raw:?} -> {s:?}"
            );
        }
    }
    assert!(accepted > 1_000, "only {accepted} accepted");
}

#[test]
fn the_fast_path_agrees_with_the_full_checks() {
    // `canonical_path` answers from `already_canonical` when it can; wherever that answers, the
    // full decoding and checking must give the same path. Random paths over the bytes that steer
    // either, and the table cases above.
    let alphabet: &[&str] = &["/", "/", "a", "B", ".", "..", "%2e", "%41", ";", "?", "\\", "~", "#", " ", "é", "\x7f", "-"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut fast = 0;
    let mut check = |raw: &str| {
        if let Some(path) = already_canonical(raw) {
            fast += 1;
            assert_eq!(decode_and_check(raw).as_deref(), Ok(path), "{raw:?}");
        }
        assert_eq!(canonical_path(raw), decode_and_check(raw), "{raw:?}");
    };
    for raw in ["/", "/a", "/a/", "/a//", "//", "/.", "/a.", "/a./", "/a./b", "/.a/b", "/a?b#", "/a?b c", "/?", "/a/?q", "?", ""] {
        check(raw);
    }
    for _ in 0..50_000 {
        let mut raw = String::from(if rng.below(8) == 0 { "" } else { "/" });
        for _ in 0..rng.below(10) {
            raw.push_str(alphabet[rng.below(alphabet.len())]);
        }
        check(&raw);
    }
    assert!(fast > 1_000, "only {fast} took the fast path");
}
