use serde_json::json;

use super::*;

const DEPTH: usize = 32;

fn syntax_reason(input: &[u8]) -> String {
    match parse_strict(input, DEPTH) {
        Err(JsonError::Syntax { reason, .. }) => reason,
        other => panic!("expected a syntax error for {:?}, got {other:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn accepts_strict_json() {
    let cases: &[(&str, &[u8], Value)] = &[
        ("object", br#"{"a":1,"b":[true,null,"x"]}"#, json!({"a":1,"b":[true,null,"x"]})),
        ("scalar string", br#""hi""#, json!("hi")),
        ("scalar number", b"42", json!(42)),
        ("negative integer", b"-7", json!(-7)),
        ("u64 max stays exact", b"18446744073709551615", json!(u64::MAX)),
        ("fraction", b"1.5", json!(1.5)),
        ("surrounding whitespace", b" \t\r\n{}\n ", json!({})),
        ("escaped method name decodes", br#"{"method":"\u0074ools/call"}"#, json!({"method":"tools/call"})),
        ("escaped solidus decodes", br#"{"p":"a\/b"}"#, json!({"p":"a/b"})),
        ("surrogate pair decodes", br#""\ud83d\ude00""#, json!("\u{1F600}")),
        ("same key in sibling objects", br#"[{"a":1},{"a":2}]"#, json!([{"a":1},{"a":2}])),
        ("same key at different depths", br#"{"a":{"a":1}}"#, json!({"a":{"a":1}})),
        ("key differing only in case", br#"{"method":1,"Method":2}"#, json!({"method":1,"Method":2})),
        ("empty containers", br#"{"a":[],"b":{}}"#, json!({"a":[],"b":{}})),
    ];
    for (name, input, want) in cases {
        assert_eq!(parse_strict(input, DEPTH).as_ref(), Ok(want), "case {name}");
    }
}

#[test]
fn escaped_method_equals_plain_method() {
    let escaped = parse_strict(br#"{"method":"\u0074ools/call"}"#, DEPTH).unwrap();
    assert_eq!(escaped["method"], "tools/call");
}

#[test]
fn rejects_duplicate_keys() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("plain", br#"{"a":1,"a":2}"#, "a"),
        ("escaped spelling", br#"{"a":1,"\u0061":2}"#, "a"),
        ("escaped method", br#"{"method":"x","\u006dethod":"tools/call"}"#, "method"),
        ("escaped solidus", br#"{"a/b":1,"a\/b":2}"#, "a/b"),
        ("same value both times", br#"{"a":1,"a":1}"#, "a"),
        ("nested object", br#"{"x":{"k":1,"k":2}}"#, "k"),
        ("inside array", br#"[1,{"k":1,"k":2}]"#, "k"),
        ("empty key", br#"{"":1,"":2}"#, ""),
        ("not adjacent", br#"{"a":1,"b":2,"a":3}"#, "a"),
    ];
    for (name, input, key) in cases {
        assert_eq!(parse_strict(input, DEPTH), Err(JsonError::DuplicateKey { key: (*key).to_owned() }), "case {name}");
    }
}

#[test]
fn duplicate_key_in_error_is_truncated() {
    let key = "k".repeat(10_000);
    let input = format!(r#"{{"{key}":1,"{key}":2}}"#);
    match parse_strict(input.as_bytes(), DEPTH) {
        Err(JsonError::DuplicateKey { key }) => assert_eq!(key.len(), MAX_KEY_IN_ERROR),
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
}

#[test]
fn rejects_non_rfc8259_syntax() {
    // Each of these is accepted by some lenient parser (JSON5, Jackson features, Python's json
    // with NaN, JavaScript eval), so an upstream may read them while we must not.
    let cases: &[(&str, &[u8], &str)] = &[
        ("line comment", b"{\"a\":1 // c\n}", "expected `,` or `}`"),
        ("block comment", b"/* c */ {}", "expected value"),
        ("trailing comma in array", b"[1,2,]", "trailing comma"),
        ("trailing comma in object", br#"{"a":1,}"#, "trailing comma"),
        ("NaN", br#"{"a":NaN}"#, "expected value"),
        ("Infinity", br#"{"a":Infinity}"#, "expected value"),
        ("negative Infinity", b"-Infinity", "invalid number"),
        ("single quotes", b"{'a':1}", "key must be a string"),
        ("unquoted key", b"{a:1}", "key must be a string"),
        ("leading zero", b"01", "invalid number"),
        ("hex number", b"0x10", "trailing characters"),
        ("raw control char in string", b"\"a\tb\"", "control character (\\u0000-\\u001F) found while parsing a string"),
        ("invalid escape", br#""\x41""#, "invalid escape"),
        ("trailing data after object", br#"{"a":1} {"b":2}"#, "trailing characters"),
        ("trailing garbage", br#"{"a":1}x"#, "trailing characters"),
        ("trailing NUL", b"{}\0", "trailing characters"),
        ("unterminated", br#"{"a":"#, "EOF while parsing a value"),
    ];
    for (name, input, want) in cases {
        assert_eq!(syntax_reason(input), *want, "case {name}");
    }
}

#[test]
fn rejects_bad_text_encoding() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("invalid UTF-8 in string", b"\"\xff\"", "invalid unicode code point"),
        ("overlong encoding of /", b"\"\xc0\xaf\"", "invalid unicode code point"),
        ("UTF-8 encoded surrogate", b"\"\xed\xa0\x80\"", "invalid unicode code point"),
        ("invalid UTF-8 outside string", b"\xff", "expected value"),
        ("lone leading surrogate", br#""\ud800""#, "unexpected end of hex escape"),
        ("lone trailing surrogate", br#""\udc00""#, "lone leading surrogate in hex escape"),
        ("leading surrogate then BMP char", br#""\ud800\u0041""#, "lone leading surrogate in hex escape"),
        ("lone surrogate in key", br#"{"\ud800":1}"#, "unexpected end of hex escape"),
    ];
    for (name, input, want) in cases {
        assert_eq!(syntax_reason(input), *want, "case {name}");
    }
}

#[test]
fn syntax_error_carries_position() {
    assert_eq!(
        parse_strict(b"{\n  \"a\": 1,\n}", DEPTH),
        Err(JsonError::Syntax { line: 3, column: 1, reason: "trailing comma".to_owned() })
    );
}

#[test]
fn rejects_byte_order_marks() {
    let cases: &[(&str, &[u8])] = &[
        ("UTF-8 BOM", b"\xEF\xBB\xBF{}"),
        ("UTF-8 BOM alone", b"\xEF\xBB\xBF"),
        ("UTF-16 BE BOM", b"\xFE\xFF\0{\0}"),
        ("UTF-16 LE BOM", b"\xFF\xFE{\0}\0"),
    ];
    for (name, input) in cases {
        assert_eq!(parse_strict(input, DEPTH), Err(JsonError::Bom), "case {name}");
    }
    // A BOM after whitespace is not a BOM position any parser honours: plain syntax error.
    assert_eq!(syntax_reason(b" \xEF\xBB\xBF{}"), "expected value");
}

#[test]
fn rejects_empty_input() {
    let cases: &[(&str, &[u8])] = &[("no bytes", b""), ("spaces", b"   "), ("mixed whitespace", b"\r\n\t ")];
    for (name, input) in cases {
        assert_eq!(parse_strict(input, DEPTH), Err(JsonError::Empty), "case {name}");
    }
}

#[test]
fn numbers_document_serde_json_behaviour() {
    // Out of f64 range: rejected, never turned into infinity.
    assert_eq!(syntax_reason(b"1e400"), "number out of range");
    assert_eq!(syntax_reason(b"-1e400"), "number out of range");
    assert_eq!(syntax_reason(br#"{"n":[1e400]}"#), "number out of range");
    // Underflow rounds to zero; integers beyond u64 lose precision as f64. Exact-identifier
    // callers must check is_i64/is_u64.
    assert_eq!(parse_strict(b"1e-400", DEPTH), Ok(json!(0.0)));
    let big = parse_strict(b"18446744073709551616", DEPTH).unwrap();
    assert!(big.is_f64(), "beyond u64 becomes a float: {big}");
    assert!(parse_strict(b"1.0", DEPTH).unwrap().is_f64());
    // Guards the feature set: with serde_json's arbitrary_precision a number would arrive here as
    // a map and change every numeric check downstream.
    assert!(parse_strict(b"7", DEPTH).unwrap().is_u64());
}

#[test]
fn depth_limit_counts_arrays_and_objects() {
    let cases: &[(&str, &[u8], usize, bool)] = &[
        ("scalar at depth 0", b"1", 0, true),
        ("array at depth 0", b"[]", 0, false),
        ("object at depth 1", br#"{"a":1}"#, 1, true),
        ("object holding array at depth 1", br#"{"a":[]}"#, 1, false),
        ("object holding array at depth 2", br#"{"a":[]}"#, 2, true),
        ("three levels at 3", br#"[{"a":[1]}]"#, 3, true),
        ("three levels at 2", br#"[{"a":[1]}]"#, 2, false),
        ("siblings do not add up", b"[[],[],[],[]]", 2, true),
    ];
    for (name, input, max, ok) in cases {
        let got = parse_strict(input, *max);
        if *ok {
            assert!(got.is_ok(), "case {name}: {got:?}");
        } else {
            assert_eq!(got, Err(JsonError::TooDeep { max: *max }), "case {name}");
        }
    }
}

#[test]
fn deep_nesting_fails_without_overflow() {
    let cases: &[(&str, Vec<u8>)] = &[
        ("100k open brackets", vec![b'['; 100_000]),
        ("100k open braces via keys", br#"{"a":"#.repeat(100_000)),
        ("balanced 100k arrays", {
            let mut v = vec![b'['; 100_000];
            v.extend(std::iter::repeat_n(b']', 100_000));
            v
        }),
    ];
    for (name, input) in cases {
        assert_eq!(parse_strict(input, 64), Err(JsonError::TooDeep { max: 64 }), "case {name}");
    }
}

#[test]
fn depth_is_capped_at_ceiling() {
    let nested = |n: usize| {
        let mut v = vec![b'['; n];
        v.extend(std::iter::repeat_n(b']', n));
        v
    };
    assert!(parse_strict(&nested(DEPTH_CEILING), usize::MAX).is_ok());
    assert_eq!(parse_strict(&nested(DEPTH_CEILING + 1), usize::MAX), Err(JsonError::TooDeep { max: DEPTH_CEILING }));
    assert_eq!(parse_strict(&vec![b'['; 100_000], usize::MAX), Err(JsonError::TooDeep { max: DEPTH_CEILING }));
}

#[test]
fn error_messages_name_the_problem() {
    let cases: &[(&str, JsonError, &str)] = &[
        ("duplicate", JsonError::DuplicateKey { key: "a\u{202e}".to_owned() }, "duplicate object key \"a\\u{202e}\""),
        ("too deep", JsonError::TooDeep { max: 8 }, "JSON nested deeper than 8 levels"),
        ("empty", JsonError::Empty, "empty JSON body"),
        ("bom", JsonError::Bom, "JSON body starts with a byte-order mark"),
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

impl Rng {
    /// A JSON text, valid unless `mutate` later breaks it; keys come from a tiny set (with escaped
    /// spellings) so that duplicates are frequent.
    fn json(&mut self, out: &mut Vec<u8>, depth: usize) {
        const SCALARS: &[&[u8]] = &[b"1", b"-0", b"2.5e3", b"1e400", b"null", b"true", b"\"x\"", b"\"\\ud800\"", b"\"\\u00e9\""];
        const KEYS: &[&[u8]] = &[b"\"a\"", b"\"\\u0061\"", b"\"b\"", b"\"a\\/\"", b"\"a/\""];
        match if depth == 0 { 0 } else { self.below(3) } {
            0 => out.extend_from_slice(SCALARS[self.below(SCALARS.len())]),
            1 => {
                out.push(b'[');
                for i in 0..self.below(3) {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.json(out, depth - 1);
                }
                out.push(b']');
            }
            _ => {
                out.push(b'{');
                for i in 0..self.below(3) {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(KEYS[self.below(KEYS.len())]);
                    out.push(b':');
                    self.json(out, depth - 1);
                }
                out.push(b'}');
            }
        }
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        const NOISE: &[&[u8]] = &[b",", b"}", b"]", b" ", b"//", b"\xff", b"\xEF\xBB\xBF", b"NaN", b"\"", b"x"];
        let at = self.below(input.len() + 1);
        let noise = NOISE[self.below(NOISE.len())];
        input.splice(at..at, noise.iter().copied());
    }
}

#[test]
fn differs_from_serde_json_only_by_design() {
    // Strict parsing must accept exactly what serde_json accepts, minus duplicate keys and excess
    // depth, and produce the same value.
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut accepted, mut duplicates, mut too_deep, mut both_refuse) = (0, 0, 0, 0);
    for _ in 0..50_000 {
        let mut input = Vec::new();
        rng.json(&mut input, 4);
        if rng.below(3) == 0 {
            rng.mutate(&mut input);
        }
        let ours = parse_strict(&input, 3);
        let theirs: Result<Value, _> = serde_json::from_slice(&input);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&input));
                accepted += 1;
            }
            (Err(JsonError::DuplicateKey { .. }), Ok(_)) => duplicates += 1,
            (Err(JsonError::TooDeep { .. }), Ok(_)) => too_deep += 1,
            (Err(_), Err(_)) => both_refuse += 1,
            _ => panic!("{:?}: ours {ours:?}, serde_json {theirs:?}", String::from_utf8_lossy(&input)),
        }
    }
    // Every branch must be exercised for the comparison to mean anything.
    assert!(
        accepted > 1_000 && duplicates > 1_000 && too_deep > 1_000 && both_refuse > 1_000,
        "accepted {accepted}, duplicates {duplicates}, too deep {too_deep}, both refuse {both_refuse}"
    );
}

#[test]
fn check_strict_refuses_exactly_what_parse_strict_refuses() {
    // `check_strict` validates large documents without building them; it must give the very same
    // verdict and error, or a policy could pass the check and be read differently.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut same_ok, mut same_err) = (0, 0);
    let fixed: [&[u8]; 8] = [b"{\"a\":1,\"\\u0061\":2}", b"\xEF\xBB\xBF{}", b" \n", b"[[[[1]]]]", b"{\"a\":[1,2,}", b"1e400", b"{\"a\":{\"b\":1},\"b\":{\"b\":2}}", b"\"x\" 1"];
    let mut inputs: Vec<Vec<u8>> = fixed.iter().map(|b| b.to_vec()).collect();
    for _ in 0..20_000 {
        let mut input = Vec::new();
        rng.json(&mut input, 4);
        if rng.below(3) == 0 {
            rng.mutate(&mut input);
        }
        inputs.push(input);
    }
    for input in &inputs {
        let built = parse_strict(input, 3).map(|_| ());
        assert_eq!(check_strict(input, 3), built, "{:?}", String::from_utf8_lossy(input));
        if built.is_ok() { same_ok += 1 } else { same_err += 1 }
    }
    assert!(same_ok > 1_000 && same_err > 1_000, "ok {same_ok}, refused {same_err}");
}
