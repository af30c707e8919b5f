//! Secret rules: each class found with its exact range, documented examples and near misses not.

use super::{PEM_END, RULE_PATTERNS, SecretScanner};
use crate::detect::shannon_entropy;
use crate::detect::test_samples::*;
use crate::detect::{DataClass, Detector};

fn secrets(text: &str) -> Vec<(DataClass, String)> {
    let scanner = SecretScanner::new().unwrap();
    let mut out = Vec::new();
    scanner.scan(text.as_bytes(), &mut |c, r| out.push((c, text[r].to_string())));
    out
}

#[test]
fn every_documented_pattern_compiles() {
    // The reference implementation compiles these; the hand-written checks implement them.
    for (id, _, pattern) in RULE_PATTERNS {
        regex::bytes::Regex::new(pattern).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    regex::bytes::Regex::new(PEM_END).unwrap();
}

#[test]
fn each_rule_finds_its_class_with_the_exact_range() {
    let mut r = Rng::new(7);
    let cases: Vec<(&str, DataClass, String)> = vec![
        ("aws", DataClass::AwsAccessKey, aws_key(&mut r)),
        ("github classic", DataClass::GithubToken, github_token(&mut r)),
        ("github fine-grained", DataClass::GithubToken, github_pat(&mut r)),
        ("gitlab", DataClass::GitlabToken, gitlab_pat(&mut r)),
        ("openai legacy", DataClass::OpenaiApiKey, openai_legacy(&mut r)),
        ("openai project", DataClass::OpenaiApiKey, openai_project(&mut r)),
        ("anthropic", DataClass::AnthropicApiKey, anthropic_key(&mut r)),
        ("slack bot", DataClass::SlackToken, slack_bot(&mut r)),
        ("slack user", DataClass::SlackToken, slack_user(&mut r)),
        ("stripe live", DataClass::StripeLiveKey, stripe_live(&mut r)),
        ("pem", DataClass::PrivateKey, pem_key(&mut r, "\n")),
        ("pem crlf", DataClass::PrivateKey, pem_key(&mut r, "\r\n")),
        ("jwt", DataClass::Jwt, jwt(&mut r)),
    ];
    for (name, class, value) in cases {
        for wrap in ["{}", "key = {}\n", "\"token\": \"{}\",", "Authorization: Bearer {} ;"] {
            let text = wrap.replace("{}", &value);
            let got = secrets(&text);
            assert_eq!(got, vec![(class, value.clone())], "{name} in {wrap:?}");
        }
    }
}

#[test]
fn documented_examples_and_near_misses_do_not_trigger() {
    let mut r = Rng::new(11);
    let jwt_no_alg = format!("{}.{}.{}", b64url(r#"{"typ":"JWT","kid":"x"}"#), b64url(r#"{"sub":"12345678"}"#), r.pick(ALNUM, 20));
    let cases: Vec<(&str, String)> = vec![
        ("aws docs key", "AKIAIOSFODNN7EXAMPLE".into()),
        ("aws docs key 2", "AKIAI44QH8DHBEXAMPLE".into()),
        ("any aws-shaped EXAMPLE", format!("ASIA{}EXAMPLE", r.pick(BASE32, 9))),
        ("aws low entropy", format!("AKIA{}", "X".repeat(16))),
        ("aws wrong length", "TODAYINASIAASACKOFRICEFELLOVER".into()),
        ("aws digit outside base32", format!("AKIA{}1", r.pick(BASE32, 15))),
        ("aws lowercase", format!("akia{}", r.pick(b"abcdefghijklmnopqrstuvwxyz", 16))),
        ("github too short", format!("ghp_{}", r.pick(ALNUM, 35))),
        ("github low entropy", format!("ghp_{}", "a".repeat(36))),
        ("gitlab too short", format!("glpat-{}", r.pick(ALNUM, 19))),
        ("openai without marker or prefix", format!("sk-{}", r.pick(ALNUM, 48))),
        ("anthropic wrong suffix", format!("sk-ant-api03-{}BB", r.pick(ALNUM_EXT, 93))),
        ("anthropic too short", format!("sk-ant-api03-{}AA", r.pick(ALNUM_EXT, 60))),
        ("anthropic placeholder", format!("sk-ant-api03-{}AA", "x".repeat(93))),
        ("stripe test key", format!("sk_test_{}", r.pick(ALNUM, 24))),
        ("slack docs placeholder", "xoxb-not-a-real-token-this-will-not-work".into()),
        ("pem header only", "-----BEGIN RSA PRIVATE KEY-----".into()),
        ("pem short body", format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", r.pick(B64, 40))),
        ("public key", format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----", r.pick(B64, 200))),
        ("jwt.io example", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into()),
        ("jwt header without alg", jwt_no_alg),
        ("jwt header not json", format!("eyJ{}.{}.{}", r.pick(ALNUM, 30), r.pick(ALNUM, 30), r.pick(ALNUM, 30))),
    ];
    for (name, value) in cases {
        assert_eq!(secrets(&format!("x {value} y")), vec![], "{name}");
    }
}

#[test]
fn pem_block_range_runs_to_the_end_line_or_the_end_of_the_body() {
    let mut r = Rng::new(3);
    let key = pem_key(&mut r, "\n");
    let text = format!("before\n{key}\nafter");
    assert_eq!(secrets(&text), vec![(DataClass::PrivateKey, key.clone())]);
    // Without its END line (truncated output), the body still counts and is covered.
    let cut = &key[..key.find("-----END").unwrap()];
    let text = format!("{cut}\"}}");
    let got = secrets(&text);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.starts_with("-----BEGIN") && got[0].1.len() >= cut.trim_end().len());
    // PGP armour with a header line before the body.
    let pgp = format!(
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{}\n-----END PGP PRIVATE KEY BLOCK-----",
        r.pick(B64, 128)
    );
    assert_eq!(secrets(&pgp), vec![(DataClass::PrivateKey, pgp.clone())]);
    // Two blocks are two findings.
    let two = format!("{key}\n{key}");
    assert_eq!(secrets(&two).len(), 2);
}

#[test]
fn keywords_gate_case_insensitively_but_patterns_keep_case() {
    let mut r = Rng::new(5);
    let key = aws_key(&mut r);
    // The keyword automaton fires on "akia" too, but the pattern wants upper case.
    assert_eq!(secrets(&key.to_lowercase()), vec![]);
    let pem = pem_key(&mut r, "\n").replace("BEGIN", "begin").replace("END", "end");
    assert_eq!(secrets(&pem).len(), 1, "gitleaks' private-key rule is (?i)");
}

#[test]
fn entropy_matches_reference_values() {
    assert_eq!(shannon_entropy(b""), 0.0);
    assert_eq!(shannon_entropy(b"aaaa"), 0.0);
    assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    assert!((shannon_entropy(b"AKIAXXXXXXXXXXXXXXXX") - 1.0219).abs() < 1e-3);
}

#[test]
fn detector_reports_secrets_and_never_their_values() {
    let mut r = Rng::new(9);
    let key = aws_key(&mut r);
    let tok = github_token(&mut r);
    let text = format!("aws={key} gh={tok} again={key}");
    let found = Detector::new().unwrap().scan_str(&text).unwrap();
    let summary = serde_json::to_string(&found.summary()).unwrap();
    assert_eq!(summary, r#"[{"class":"secret.aws_access_key","count":2},{"class":"secret.github_token","count":1}]"#);
    let debug = format!("{found:?}");
    assert!(!debug.contains(&key) && !debug.contains(&tok[4..]), "findings must not carry values: {debug}");
}
