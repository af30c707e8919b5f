//! The plugin configuration is read strictly and its errors name the JSON path, inside the
//! policy as `interlock check` names it.

// Test helpers stop loudly on a broken fixture.
#![allow(clippy::unwrap_used, clippy::panic)]

use interlock_filter::config::{ConfigError, load, validate};

fn policy(extra: &str) -> String {
    format!(r#"{{"version":"v1","governed":[{{"id":"mcp","path":"/mcp","protocol":"mcp"}}],"rules":[{{"id":"r1","effect":"deny","http":{{"paths":["/admin/**"]}}}}]{extra}}}"#)
}

/// The error `load` gives, which `validate` (the same checks, nothing kept) must give too.
fn error(config: &str) -> String {
    let validated = validate(Some(config.as_bytes())).err().map(|e| e.to_string());
    match load(Some(config.as_bytes())) {
        Ok(_) => panic!("accepted: {config}"),
        Err(e) => {
            assert_eq!(validated.as_deref(), Some(e.to_string().as_str()), "validate-only: {config}");
            e.to_string()
        }
    }
}

#[test]
fn validating_only_accepts_what_loading_accepts() {
    let config = format!(r#"{{"policy":{},"hold_headers":false,"enforcer":{{"max_batch":7}}}}"#, policy(""));
    let loaded = load(Some(config.as_bytes())).unwrap();
    let validated = validate(Some(config.as_bytes())).unwrap();
    assert_eq!((validated.engine.version.as_str(), validated.engine.rules), (loaded.engine.version(), loaded.engine.rule_count()));
    assert_eq!((validated.hold_headers, validated.enforcer.max_batch), (false, 7));
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/examples/demo.json")).unwrap();
    let config = format!(r#"{{"policy":{demo}}}"#);
    assert_eq!(validate(Some(config.as_bytes())).unwrap().engine.rules, load(Some(config.as_bytes())).unwrap().engine.rule_count());
}

#[test]
fn a_valid_configuration_compiles_its_policy() {
    let loaded = load(Some(format!(r#"{{"policy":{},"hold_headers":false}}"#, policy("")).as_bytes())).unwrap();
    assert_eq!(loaded.engine.rule_count(), 1);
    assert!(!loaded.hold_headers);
}

#[test]
fn errors_name_the_path() {
    for (name, config, expected) in [
        ("missing", "".to_owned(), "plugin configuration is missing".to_owned()),
        ("not JSON", "{".to_owned(), "plugin configuration: $: invalid JSON".to_owned()),
        ("duplicate key in the policy", format!(r#"{{"policy":{}}}"#, policy(r#","version":"v2""#)), "duplicate object key \"version\"".to_owned()),
        ("duplicate top-level key", format!(r#"{{"policy":{p},"policy":{p}}}"#, p = policy("")), "duplicate object key \"policy\"".to_owned()),
        ("unknown top-level field", format!(r#"{{"policy":{},"extra":1}}"#, policy("")), "plugin configuration: $.extra: unknown field `extra`".to_owned()),
        ("unknown enforcer field", format!(r#"{{"policy":{},"enforcer":{{"clusterx":"a"}}}}"#, policy("")), "$.enforcer.clusterx: unknown field".to_owned()),
        ("policy field, typed", format!(r#"{{"policy":{}}}"#, policy(r#","default_action":"maybe""#)), "policy: $.default_action: unknown variant".to_owned()),
        ("policy nested field", r#"{"policy":{"version":"v","rules":[{"id":"r","effect":"deny","http":{"pathz":[]}}]}}"#.to_owned(), "$.rules[0].http.pathz: unknown field".to_owned()),
        ("policy not an object", r#"{"policy":3}"#.to_owned(), "policy: $: invalid type".to_owned()),
        ("policy validation", r#"{"policy":{"version":"v","rules":[{"id":"r","effect":"deny","http":{"paths":["/a/{x"]}}]}}"#.to_owned(), "$.rules[0].http.paths[0]".to_owned()),
    ] {
        let got = error(&config);
        assert!(got.contains(&expected), "{name}: {got:?} should contain {expected:?}");
    }
    assert!(matches!(load(Some(br#"{"policy":3}"#)), Err(ConfigError::Policy(_))));
}

#[test]
fn enforcer_bounds_are_checked_and_named() {
    // Named cases: (what, enforcer block, expected error or None when accepted).
    for (name, enforcer, expected) in [
        ("defaults", "{}", None),
        ("byte bound at its floor", r#"{"max_buffered_bytes":65536}"#, None),
        ("byte bound at its ceiling", r#"{"max_buffered_bytes":268435456}"#, None),
        ("byte bound too small", r#"{"max_buffered_bytes":65535}"#, Some("$.enforcer.max_buffered_bytes: 65535 is out of range 65536..=268435456")),
        ("byte bound too large", r#"{"max_buffered_bytes":268435457}"#, Some("$.enforcer.max_buffered_bytes: 268435457 is out of range")),
        ("byte bound not a number", r#"{"max_buffered_bytes":"4MiB"}"#, Some("$.enforcer.max_buffered_bytes: invalid type")),
        ("event bound zero", r#"{"max_buffered_events":0}"#, Some("$.enforcer.max_buffered_events: 0 is out of range 1..=100000")),
        ("batch too large", r#"{"max_batch":5001}"#, Some("$.enforcer.max_batch: 5001 is out of range 1..=5000")),
    ] {
        let config = format!(r#"{{"policy":{},"enforcer":{enforcer}}}"#, policy(""));
        let validated = validate(Some(config.as_bytes())).err().map(|e| e.to_string());
        assert_eq!(validated, load(Some(config.as_bytes())).err().map(|e| e.to_string()), "{name}: validate-only");
        match (load(Some(config.as_bytes())), expected) {
            (Ok(loaded), None) => {
                let limits = loaded.enforcer.limits();
                assert!(limits.max_bytes >= 65_536 && limits.max_events >= 1 && limits.max_batch >= 1, "{name}: {limits:?}");
            }
            (Ok(_), Some(e)) => panic!("{name}: accepted, expected {e:?}"),
            (Err(got), Some(e)) => assert!(got.to_string().contains(e), "{name}: {got} should contain {e:?}"),
            (Err(got), None) => panic!("{name}: refused: {got}"),
        }
    }
    let defaults = load(Some(format!(r#"{{"policy":{}}}"#, policy("")).as_bytes())).unwrap().enforcer.limits();
    assert_eq!((defaults.max_events, defaults.max_bytes, defaults.max_batch), (10_000, 4 << 20, 500));
}
