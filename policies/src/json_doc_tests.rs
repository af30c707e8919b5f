use std::borrow::Cow;

use serde_json::{Value, json};

use super::*;
use crate::json::{JsonError, parse_strict};

const DEPTH: usize = 32;

/// Documents both parsers must agree on, and the seeds the mutations below start from.
const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_comment","arguments":{"repo":"acme/api","body":"looks good\nship it"}}}"#,
    r#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
    r#"{"a":1,"b":[true,null,"x"],"c":{"d":-7,"e":1.5,"f":18446744073709551615,"g":1e-400}}"#,
    r#"{"method":"\u0074ools/call","p":"a\/b","s":"\ud83d\ude00","k":"\u0000"}"#,
    r#"{"z":1,"y":2,"x":3,"w":4,"v":5,"u":6,"t":7,"s":8,"r":9,"q":10,"p":11,"o":12,"n":13,"m":14,"l":15,"k":16,"j":17,"i":18,"h":19}"#,
    r#"[[[[[[[[[[1]]]]]]]]]]"#,
    r#"{"":0,"~":1,"/":2,"a~1b":3}"#,
    r#" "text" "#,
    "123",
    r#"{"a":{"a":{"a":[]}}}"#,
];

/// What a parse result is, comparable across the two parsers.
fn outcome(r: Result<Doc<'_>, JsonError>) -> Result<Value, JsonError> {
    r.map(|d| d.to_value())
}

#[test]
fn parses_what_parse_strict_parses_into_the_same_document() {
    for seed in SEEDS {
        let want = parse_strict(seed.as_bytes(), DEPTH);
        assert!(want.is_ok(), "seed {seed} must be valid");
        assert_eq!(outcome(parse_doc(seed.as_bytes(), DEPTH)), want, "seed {seed}");
    }
}

/// Random edits of the seeds (bytes that matter to JSON inserted, deleted or replaced; keys
/// duplicated; nesting deepened): whatever the result, both parsers give the same one, error text
/// included, at every depth limit.
#[test]
fn agrees_with_parse_strict_on_mutated_documents() {
    const ALPHABET: &[u8] = b"{}[]\",:\\/u0aAe1-+. \t\n\xC3\xA9\xFF~tfn";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n.max(1) as u64).unwrap()
    };
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..20_000 {
        let mut bytes = SEEDS[next(SEEDS.len())].as_bytes().to_vec();
        for _ in 0..=next(4) {
            let at = next(bytes.len() + 1);
            match next(4) {
                0 => bytes.insert(at, ALPHABET[next(ALPHABET.len())]),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 if at < bytes.len() => bytes[at] = ALPHABET[next(ALPHABET.len())],
                _ => {
                    // Repeat a slice elsewhere: makes duplicate keys and deeper nesting likely.
                    let from = next(bytes.len());
                    let to = (from + 1 + next(12)).min(bytes.len());
                    let piece = bytes[from..to].to_vec();
                    bytes.splice(at..at, piece);
                }
            }
        }
        let depth = [0, 1, 2, 3, DEPTH, 200][round % 6];
        let want = parse_strict(&bytes, depth);
        if want.is_ok() { valid += 1 } else { invalid += 1 }
        assert_eq!(outcome(parse_doc(&bytes, depth)), want, "input {:?} depth {depth}", String::from_utf8_lossy(&bytes));
    }
    // The mutations must exercise both sides.
    assert!(valid > 1_000 && invalid > 1_000, "valid {valid}, invalid {invalid}");
}

#[test]
fn refuses_repeated_keys_in_small_and_large_objects() {
    let mut big: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    big.push(r#""k\u0033\u0030":0"#.to_owned());
    let big = format!("{{{}}}", big.join(","));
    let cases: &[(&str, &[u8], &str)] = &[
        ("plain", br#"{"a":1,"a":2}"#, "a"),
        ("escaped spelling", br#"{"a":1,"\u0061":2}"#, "a"),
        ("nested", br#"[{"x":{"k":1,"k":2}}]"#, "k"),
        ("past the linear check, escaped", big.as_bytes(), "k30"),
    ];
    for (name, input, key) in cases {
        assert_eq!(parse_doc(input, DEPTH), Err(JsonError::DuplicateKey { key: (*key).to_owned() }), "case {name}");
    }
}

#[test]
fn strings_without_escapes_are_borrowed_and_members_keep_document_order() {
    let body = br#"{"zeta":"plain","alpha":"esc\naped","mid":["x"]}"#;
    let doc = parse_doc(body, DEPTH).unwrap();
    let members = doc.as_object().unwrap();
    assert_eq!(members.keys().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
    assert!(matches!(members.get("zeta"), Some(Doc::String(Cow::Borrowed("plain")))));
    assert!(matches!(members.get("alpha"), Some(Doc::String(Cow::Owned(s))) if s == "esc\naped"));
    assert_eq!(doc.get("mid").and_then(Doc::as_array).map(<[Doc<'_>]>::len), Some(1));
    assert_eq!(doc.get("absent"), None);
    assert_eq!(Doc::Null.get("zeta"), None);
}

#[test]
fn pointers_read_as_serde_json_reads_them() {
    let text = r#"{"a":{"b":[10,{"c/d":"x","e~f":"y"}],"":{"":"empty"}},"0":"zero","arr":[0,1,2,3,4,5,6,7,8,9,10,11]}"#;
    let value: Value = serde_json::from_str(text).unwrap();
    let doc = parse_doc(text.as_bytes(), DEPTH).unwrap();
    let pointers = [
        "", "/", "//", "/a", "/a/b", "/a/b/0", "/a/b/1/c~1d", "/a/b/1/e~0f", "/a/b/01", "/a/b/+1", "/a/b/-1", "/a/b/2", "/0",
        "/arr/10", "/arr/010", "/a/", "/a//", "a", "/a/b/1/c/d", "/arr/18446744073709551616", "/~2",
    ];
    for p in pointers {
        assert_eq!(doc.pointer(p).map(Doc::to_value), value.pointer(p).cloned(), "pointer {p:?}");
    }
}

#[test]
fn a_borrowed_view_of_a_value_converts_back_to_it() {
    let value = json!({"path": "config/.env", "n": [1, -2, 3.5, null, true], "o": {"k": "v"}});
    let doc = Doc::borrowing(&value);
    assert!(matches!(doc.get("path"), Some(Doc::String(Cow::Borrowed("config/.env")))));
    assert_eq!(doc.to_value(), value);
}

#[test]
fn both_forms_walk_alike() {
    // The walk the detectors make, through the trait, over each form: the same strings, objects
    // in each form's own member order.
    fn strings<T: JsonTree>(v: &T, out: &mut Vec<String>) {
        if let Some(s) = v.as_str() {
            out.push(s.to_owned());
        }
        for item in v.items().unwrap_or_default() {
            strings(item, out);
        }
        let mut members = Vec::new();
        v.members_rev(|k, m| members.push((k, m)));
        for (k, m) in members.into_iter().rev() {
            out.push(format!("key {k}"));
            strings(m, out);
        }
    }
    let text = br#"{"b":"1","a":["2",{"d":"3","c":"4"}],"e":5}"#;
    let (mut from_doc, mut from_value) = (Vec::new(), Vec::new());
    strings(&parse_doc(text, DEPTH).unwrap(), &mut from_doc);
    strings(&parse_strict(text, DEPTH).unwrap(), &mut from_value);
    assert_eq!(from_doc, ["key b", "1", "key a", "2", "key d", "3", "key c", "4", "key e"]);
    // serde_json's map is sorted by key.
    assert_eq!(from_value, ["key a", "2", "key c", "4", "key d", "3", "key b", "1", "key e"]);
}
