use std::time::{Duration, Instant};

use super::*;

#[test]
fn matching_table() {
    let cases: &[(&str, &str, &str, bool)] = &[
        // name, pattern, text, matches
        ("literal equal", "config/.env", "config/.env", true),
        ("literal differs", "config/.env", "config/.envx", false),
        ("literal is case-sensitive", "Config", "config", false),
        ("empty text vs literal", "a", "", false),
        ("star within segment", "*.pem", "key.pem", true),
        ("star matches empty", "*.pem", ".pem", true),
        ("star stops at slash", "*.pem", "keys/key.pem", false),
        ("star in middle", "a*c", "abbbc", true),
        ("star does not cross slash in middle", "a*c", "ab/c", false),
        ("star alone matches one segment", "*", "abc", true),
        ("star alone matches empty", "*", "", true),
        ("star alone rejects slash", "*", "a/b", false),
        ("star per segment", "*/*", "a/b", true),
        ("star per segment too deep", "*/*", "a/b/c", false),
        ("question one char", "a?c", "abc", true),
        ("question not zero chars", "a?c", "ac", false),
        ("question not slash", "a?c", "a/c", false),
        ("question is one scalar", "a?c", "aéc", true),
        ("double star crosses slashes", "a**z", "a/b/c/z", true),
        ("double star alone", "**", "a/b/c", true),
        ("double star alone matches empty", "**", "", true),
        ("trailing double star: slash", "a/**", "a/", true),
        ("trailing double star: child", "a/**", "a/x", true),
        ("trailing double star: grandchild", "a/**", "a/x/y", true),
        ("trailing double star: not the dir itself", "config/**", "config", false),
        ("trailing double star: not a sibling prefix", "config/**", "configs/x", false),
        ("trailing double star: dotfile", "config/**", "config/.env", true),
        ("trailing double star: deep", "config/**", "config/a/b", true),
        ("leading double star: top level", "**/.env", ".env", true),
        ("leading double star: nested", "**/.env", "a/b/.env", true),
        ("leading double star: absolute", "**/.env", "/home/u/.env", true),
        ("leading double star: suffix only", "**/.env", "x.env", false),
        ("leading double star: not a longer name", "**/.env", "a/.envrc", false),
        ("middle double star: zero segments", "a/**/b", "a/b", true),
        ("middle double star: one segment", "a/**/b", "a/x/b", true),
        ("middle double star: many segments", "a/**/b", "a/x/y/z/b", true),
        ("middle double star: needs segment boundary", "a/**/b", "a/xb", false),
        ("middle double star: not glued name", "a/**/b", "ab", false),
        ("two double stars", "**/secrets/**", "x/secrets/y/z", true),
        ("two double stars at top", "**/secrets/**", "secrets/k", true),
        ("two double stars, dir only", "**/secrets/**", "secrets", false),
        ("double star glued is plain any-run", "a**", "a/b/c", true),
        ("double star glued both sides", "x**y", "x/q/y", true),
        ("mixed stars", "**/*.pem", "certs/site/key.pem", true),
        ("mixed stars, top level", "**/*.pem", "key.pem", true),
        ("mixed stars, wrong ext", "**/*.pem", "certs/key.pem.bak", false),
        ("star then double star", "*/**", "a/b/c", true),
        ("star then double star, no slash", "*/**", "abc", false),
        ("ssh lure", "**/.ssh/**", "/home/u/.ssh/id_rsa", true),
        ("backtracking needed", "*a*b", "xaxaxb", true),
        ("backtracking needed, no match", "*a*b", "xaxaxa", false),
        ("non-ascii literal", "données/*", "données/x", true),
    ];
    for (name, pattern, text, want) in cases {
        assert_eq!(glob_match(pattern, text), *want, "case {name}: {pattern:?} vs {text:?}");
    }
}

#[test]
fn compiled_glob_agrees_with_glob_match() {
    let glob = Glob::new("**/*.key");
    for text in ["a.key", "x/y/a.key", "a.keys", "a/key"] {
        assert_eq!(glob.matches(text), glob_match("**/*.key", text), "{text}");
    }
}

#[test]
fn runs_of_three_or_more_stars_read_as_double_star() {
    // validate_glob refuses them; the matcher still behaves predictably.
    assert!(glob_match("a/***", "a/x/y"));
    assert!(glob_match("****", "a/b"));
}

#[test]
fn pathological_patterns_stay_linear() {
    let text = "a".repeat(10_000);
    let cases: &[(&str, &str, bool)] = &[
        ("many stars, no final b", "*a*a*a*a*a*b", false),
        ("many double stars, no final b", "**a**a**a**a**a**b", false),
        ("many stars matching", "*a*a*a*a*a*a", true),
        ("question runs", "?*?*?*?*?*?*b", false),
    ];
    for (name, pattern, want) in cases {
        let started = Instant::now();
        assert_eq!(glob_match(pattern, &text), *want, "case {name}");
        // Quadratic-or-worse behaviour would take minutes here; linear takes well under a
        // millisecond in release and a few in debug.
        assert!(started.elapsed() < Duration::from_secs(2), "case {name} took {:?}", started.elapsed());
    }
    // Longest valid pattern against a long text: bounded by tokens × characters.
    let long_pattern = "*a".repeat(MAX_GLOB_LEN / 2);
    assert!(validate_glob(&long_pattern).is_ok());
    let started = Instant::now();
    assert!(!glob_match(&long_pattern, &"b".repeat(10_000)));
    assert!(glob_match(&long_pattern, &"a".repeat(10_000)));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn validation() {
    let cases: &[(&str, String, bool)] = &[
        ("simple", "config/**".to_owned(), true),
        ("single star", "*".to_owned(), true),
        ("double star", "**".to_owned(), true),
        ("at the length limit", "a".repeat(MAX_GLOB_LEN), true),
        ("empty", String::new(), false),
        ("triple star", "a/***".to_owned(), false),
        ("quadruple star", "****".to_owned(), false),
        ("over the length limit", "a".repeat(MAX_GLOB_LEN + 1), false),
    ];
    for (name, pattern, ok) in cases {
        assert_eq!(validate_glob(pattern).is_ok(), *ok, "case {name}");
    }
    assert_eq!(validate_glob(""), Err("glob pattern is empty".to_owned()));
}

/// Deterministic xorshift64 so the property tests need no extra dependency and replay exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

/// The semantics in the module documentation, written as the obvious exponential recursion.
fn reference(p: &[char], i: usize, t: &[char]) -> bool {
    let rest = &p[i..];
    if rest.is_empty() {
        return t.is_empty();
    }
    if rest.starts_with(&['*', '*']) {
        let run = rest.iter().take_while(|&&c| c == '*').count();
        let after = i + run;
        let whole_segment = (i == 0 || p[i - 1] == '/') && p.get(after) == Some(&'/');
        if whole_segment {
            // Zero segments, or any run ending in '/'.
            return reference(p, after + 1, t) || (1..=t.len()).any(|k| t[k - 1] == '/' && reference(p, after + 1, &t[k..]));
        }
        return (0..=t.len()).any(|k| reference(p, after, &t[k..]));
    }
    match rest[0] {
        '*' => (0..=t.len()).take_while(|&k| !t[..k].contains(&'/')).any(|k| reference(p, i + 1, &t[k..])),
        '?' => t.first().is_some_and(|&c| c != '/') && reference(p, i + 1, &t[1..]),
        c => t.first() == Some(&c) && reference(p, i + 1, &t[1..]),
    }
}

#[test]
fn agrees_with_reference_semantics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut matched = 0;
    for _ in 0..30_000 {
        let pattern = rng.string(&['a', 'b', '/', '*', '?', '.'], 8);
        if validate_glob(&pattern).is_err() {
            continue;
        }
        let text = rng.string(&['a', 'b', '/', '.'], 8);
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let want = reference(&p, 0, &t);
        matched += usize::from(want);
        assert_eq!(glob_match(&pattern, &text), want, "pattern {pattern:?} text {text:?}");
    }
    // The generator must exercise both outcomes for the comparison to mean anything.
    assert!(matched > 500, "only {matched} matches");
}
