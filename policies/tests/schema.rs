//! The published JSON Schema (`policies/schema.json`) is the generated one, and it describes the
//! documents the engine accepts.
//!
//! Regenerate the file with `INTERLOCK_BLESS=1 cargo test -p interlock-policies --test schema`
//! (what `make schema` runs). Without a JSON-Schema validator crate, `check` below validates the
//! keyword subset schemars emits and refuses any keyword it does not know, so a schema that grows
//! a new construct fails here rather than passing unchecked.

// Reads and writes files under the crate directory; the wasm corpus run has no filesystem.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use interlock_policies::json_schema::{SCHEMA_ID, SCHEMA_TITLE, json_schema};
use interlock_policies::Engine;
use serde_json::{Value, json};

const DEMO: &str = include_str!("../examples/demo.json");

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema.json")
}

fn pretty(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[test]
fn schema_file_is_current() {
    let generated = json_schema();
    let path = schema_path();
    if std::env::var("INTERLOCK_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, pretty(&generated)).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    // Compared as JSON values, not text: key order may follow serde_json's `preserve_order`
    // feature, which another crate in a build can switch on.
    let on_disk: Option<Value> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    assert!(
        on_disk.as_ref() == Some(&generated),
        "policies/schema.json is stale: run `make schema` (INTERLOCK_BLESS=1 cargo test -p interlock-policies --test schema)"
    );
}

#[test]
fn schema_names_its_draft_id_and_title() {
    let s = json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["$id"], SCHEMA_ID);
    assert_eq!(s["title"], SCHEMA_TITLE);
    assert_eq!(s["type"], "object");
    assert_eq!(s["required"], json!(["version"]));
}

/// `#[serde(deny_unknown_fields)]` must surface as `additionalProperties: false`, or editors
/// accept the typo the engine refuses.
#[test]
fn unknown_fields_are_refused_by_the_schema() {
    let s = json_schema();
    assert_eq!(s["additionalProperties"], false, "the document itself");
    for def in ["Rule", "Grant", "AgentPolicy", "HttpMatch", "McpMatch", "ArgumentMatch", "A2aMatch"] {
        assert_eq!(s["$defs"][def]["additionalProperties"], false, "$defs.{def}");
    }
    // And every object definition, including ones added later.
    let defs = s["$defs"].as_object().unwrap();
    for (name, def) in defs {
        if def["type"] == "object" {
            assert_eq!(def["additionalProperties"], false, "$defs.{name}");
        }
    }
}

#[test]
fn demo_policy_conforms() {
    let s = json_schema();
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    let props = s["properties"].as_object().unwrap();
    for key in demo.as_object().unwrap().keys() {
        // `$schema` is a declared property too (the engine ignores it), so no key is exempt.
        assert!(props.contains_key(key), "examples/demo.json: top-level key {key:?} is not in the schema");
    }
    let errors = validate(&s, &demo);
    assert!(errors.is_empty(), "examples/demo.json does not conform:\n{}", errors.join("\n"));
    assert!(Engine::from_json(DEMO).is_ok(), "the engine refuses examples/demo.json");
}

/// Documents the engine refuses for their shape are refused by the schema too (and the checker
/// can fail at all).
#[test]
fn schema_refuses_what_the_parser_refuses() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit)] = &[
        ("unknown top-level key", |d| d["defaults"] = json!("deny")),
        ("typo in a rule", |d| {
            let rule = &mut d["rules"][0];
            let effect = rule.as_object_mut().unwrap().remove("effect").unwrap();
            rule["efect"] = effect;
        }),
        ("grants have no effect", |d| d["agents"]["triage-bot"]["grants"][0]["effect"] = json!("allow")),
        ("unknown mode", |d| d["rules"][2]["mode"] = json!("audit")),
        ("unknown protocol", |d| d["governed"][0]["protocol"] = json!("grpc")),
        ("unknown field in a match", |d| d["rules"][1]["http"]["path"] = json!("/x")),
        ("number as text", |d| d["inspection"]["max_batch"] = json!("16")),
        ("missing version", |d| {
            d.as_object_mut().unwrap().remove("version");
        }),
    ];
    let s = json_schema();
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    for (name, edit) in cases {
        let mut doc = demo.clone();
        edit(&mut doc);
        assert!(!validate(&s, &doc).is_empty(), "{name}: the schema accepts it");
        assert!(Engine::from_json(&doc.to_string()).is_err(), "{name}: the engine accepts it (fix the case)");
    }
}

/// Checks `value` against the root `schema`; returns one line per violation.
fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, value, "$", &mut errors);
    errors
}

/// The keyword subset schemars 1 emits for these types. Annotations are skipped; anything else
/// is reported as unsupported so the checker never passes a schema it does not understand.
fn check(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{at}: no value is allowed here")),
        Value::Object(o) => o,
        other => return errors.push(format!("{at}: schema is not an object: {other}")),
    };
    for (keyword, arg) in obj {
        match keyword.as_str() {
            "$schema" | "$id" | "$defs" | "title" | "description" | "default" | "format" => {}
            "$ref" => match arg.as_str().and_then(|r| r.strip_prefix('#')).and_then(|p| root.pointer(p)) {
                Some(target) => check(root, target, value, at, errors),
                None => errors.push(format!("{at}: unresolvable $ref {arg}")),
            },
            "type" => {
                let types: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if !types.iter().any(|t| has_type(value, t)) {
                    errors.push(format!("{at}: expected {arg}, found {value}"));
                }
            }
            "const" => {
                if value != arg {
                    errors.push(format!("{at}: expected {arg}, found {value}"));
                }
            }
            "enum" => {
                if !arg.as_array().is_some_and(|a| a.contains(value)) {
                    errors.push(format!("{at}: {value} is not one of {arg}"));
                }
            }
            "minimum" => {
                if let (Some(v), Some(min)) = (value.as_f64(), arg.as_f64())
                    && v < min
                {
                    errors.push(format!("{at}: {v} is below {min}"));
                }
            }
            "required" => {
                for name in arg.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if value.as_object().is_some_and(|o| !o.contains_key(name)) {
                        errors.push(format!("{at}: missing required field {name:?}"));
                    }
                }
            }
            "properties" => {
                if let (Some(o), Some(props)) = (value.as_object(), arg.as_object()) {
                    for (k, v) in o {
                        if let Some(p) = props.get(k) {
                            check(root, p, v, &format!("{at}.{k}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = value.as_object() {
                    let declared = obj.get("properties").and_then(Value::as_object);
                    for (k, v) in o {
                        if declared.is_some_and(|d| d.contains_key(k)) {
                            continue;
                        }
                        if arg == &Value::Bool(false) {
                            errors.push(format!("{at}: unknown field {k:?}"));
                        } else {
                            check(root, arg, v, &format!("{at}.{k}"), errors);
                        }
                    }
                }
            }
            "items" => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    check(root, arg, v, &format!("{at}[{i}]"), errors);
                }
            }
            "anyOf" | "oneOf" => {
                let branches = arg.as_array().map(Vec::as_slice).unwrap_or_default();
                let passing = branches
                    .iter()
                    .filter(|b| {
                        let mut e = Vec::new();
                        check(root, b, value, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" { passing == 1 } else { passing >= 1 };
                if !ok {
                    errors.push(format!("{at}: {value} matches {passing} branch(es) of {keyword}"));
                }
            }
            other => errors.push(format!("{at}: the test's checker does not support keyword {other:?}; extend it")),
        }
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}
