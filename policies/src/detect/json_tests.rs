//! The JSON walk: document order, keys before values, pointers escaped per RFC 6901.

use serde_json::Value;

use super::*;

#[test]
fn walk_visits_keys_and_strings_in_document_order_with_pointers() {
    let value = serde_json::json!({ "a": ["x", { "b/c": "y", "d~": [1, "z"] }], "e": null });
    let mut seen = Vec::new();
    Walker::new().walk(&value, &mut |s, in_key, path| seen.push((s.to_string(), in_key, pointer(path))));
    let want: Vec<(String, bool, String)> = vec![
        ("a".into(), true, "/a".into()),
        ("x".into(), false, "/a/0".into()),
        ("b/c".into(), true, "/a/1/b~1c".into()),
        ("y".into(), false, "/a/1/b~1c".into()),
        ("d~".into(), true, "/a/1/d~0".into()),
        ("z".into(), false, "/a/1/d~0/1".into()),
        ("e".into(), true, "/e".into()),
    ];
    assert_eq!(seen, want);
    for (s, in_key, p) in &want {
        if !in_key {
            assert_eq!(value.pointer(p).and_then(Value::as_str), Some(s.as_str()));
        }
    }
}

#[test]
fn a_top_level_string_has_the_empty_pointer() {
    let value = Value::String("x".into());
    let mut seen = Vec::new();
    Walker::new().walk(&value, &mut |s, _, path| seen.push((s.to_string(), pointer(path))));
    assert_eq!(seen, vec![("x".to_string(), String::new())]);
}
