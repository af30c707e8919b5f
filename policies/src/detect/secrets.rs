//! Secret detection in the style of gitleaks' default rules (`cmd/generate/config/rules/*.go`):
//! each rule's pattern, a Shannon-entropy floor and an allow-list of documented example values.
//!
//! No regex engine: every gitleaks pattern we use starts with a fixed prefix (`AKIA`, `ghp_`,
//! `sk-ant-api03-`, `eyJ`, `-----BEGIN`, ...) followed by runs of one character class, so each is
//! verified by hand at the position of its prefix. Prefixes are looked for only inside runs of
//! base64 characters of at least [`MIN_RUN`] bytes (the caller's tokenizer, [`super::sweep`],
//! hands them over): every prefix is made of such characters, and prose is made of shorter words,
//! so most text costs one table lookup per byte and nothing more (the runs looked into are those
//! of 13 or more, or 10 or more with a dash). Inside a run, a 256-entry table of first bytes
//! (`A g s r x e -`) decides where a prefix check is worth making.
//!
//! Each rule keeps the semantics of its regex as the previous implementation compiled it
//! (leftmost-first, greedy, non-overlapping matches per rule, `\b` on ASCII word characters);
//! `reference.rs` keeps that implementation and the tests compare the two over generated text.
//! Gitleaks matches its keywords case-insensitively only to decide which regexes run; the
//! patterns themselves keep their case (all but the private-key rule, which is `(?i)`), and so do
//! these checks.

use std::ops::Range;

use super::{DataClass, DetectError, shannon_entropy};

/// Shortest base64-character run that can hold a secret other than a PEM header: a JWT's first
/// part (`eyJ` and 10 more; an AWS key id needs 20, the others more).
pub const MIN_RUN: usize = 13;

/// Shortest run that can hold a PEM header's `-----BEGIN`, which has dashes.
pub const MIN_RUN_WITH_DASH: usize = 10;

/// Least number of base64 characters between a PEM header and its end (gitleaks: 64).
pub const PEM_MIN_BODY: usize = 64;

/// The rules, for tests and documentation: gitleaks' id, the class, and the regex each check
/// implements (the reference implementation compiles these).
pub const RULE_PATTERNS: &[(&str, DataClass, &str)] = &[
    // aws.go: entropy 3. AWS's documented id format restricts the 16 characters to base32
    // `[A-Z2-7]`; gitleaks accepts `[A-Z0-9]` and also the `A3T` prefix, which its own comment
    // doubts.
    ("aws-access-token", DataClass::AwsAccessKey, r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"),
    // github.go: github-pat, github-oauth, github-app-token, github-refresh-token (36 characters;
    // longer runs are kept whole so redaction covers them), entropy 3.
    ("github-token", DataClass::GithubToken, r"(?-u)gh[pousr]_[0-9A-Za-z]{36,}"),
    ("github-fine-grained-pat", DataClass::GithubToken, r"(?-u)github_pat_[0-9A-Za-z_]{82,}"),
    // gitlab.go: `glpat-[\w-]{20}`, entropy 3; newer tokens are longer and kept whole.
    ("gitlab-pat", DataClass::GitlabToken, r"(?-u)glpat-[0-9A-Za-z_-]{20,}"),
    // openai.go: keys carrying the `T3BlbkFJ` marker (base64 of "OpenAI"), and the newer
    // prefixed forms, which do not always carry it. Entropy 3.
    ("openai-api-key", DataClass::OpenaiApiKey, r"(?-u)\bsk-[0-9A-Za-z_-]{20,}T3BlbkFJ[0-9A-Za-z_-]{20,}"),
    ("openai-prefixed-key", DataClass::OpenaiApiKey, r"(?-u)\bsk-(?:proj|svcacct|admin)-[0-9A-Za-z_-]{40,}"),
    // anthropic.go: `{93}AA`. gitleaks sets no entropy floor; we add 3.0 so placeholder keys
    // (`sk-ant-api03-xxxx…AA`) in documentation do not count, which real keys always clear.
    ("anthropic-api-key", DataClass::AnthropicApiKey, r"(?-u)\bsk-ant-(?:api03|admin01)-[0-9A-Za-z_-]{93}AA\b"),
    // slack.go: slack-bot-token and slack-user-token, no entropy floor.
    ("slack-bot-token", DataClass::SlackToken, r"(?-u)xoxb-[0-9]{10,13}-[0-9]{10,13}[0-9A-Za-z-]*"),
    ("slack-user-token", DataClass::SlackToken, r"(?-u)xox[pe](?:-[0-9]{10,13}){3}-[0-9A-Za-z-]{28,34}"),
    // stripe.go: entropy 2; live keys only (test keys grant nothing and Stripe's documentation
    // is full of them).
    ("stripe-access-token", DataClass::StripeLiveKey, r"(?-u)\b[sr]k_live_[0-9A-Za-z]{10,}"),
    // privatekey.go: `(?i)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S-]{64,}?KEY(?:
    // BLOCK)?-----`. The header is matched here; the body and END line are found in linear time
    // by `pem_blocks` (a lazy `[\s\S]{64,}?` per header could rescan the rest of the text).
    ("private-key", DataClass::PrivateKey, r"(?i-u)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"),
    // jwt.go: gitleaks requires `ey…\.ey…\.…` with entropy 3. We require the header to be a
    // JSON object with `alg` (RFC 7515 §4.1.1: `alg` MUST be present), so the payload need not
    // start with `ey` and the signature may be empty (`alg: none`).
    ("jwt", DataClass::Jwt, r"(?-u)\beyJ[0-9A-Za-z_-]{10,}={0,2}\.[0-9A-Za-z_-]{10,}={0,2}(?:\.[0-9A-Za-z_-]*={0,2})?"),
];

/// The END line of a PEM/PGP private key block (the pattern `pem_end_at` implements).
pub const PEM_END: &str = r"(?i-u)-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----";

/// Documented example values that must never count, whatever rule matches them. gitleaks'
/// AWS allow-list is `.+EXAMPLE$` plus the stop word `AKIAIOSFODNN7EXAMPLE`; the suffix rule is
/// applied to every rule here (see [`is_allowed`]).
const EXAMPLE_VALUES: &[&[u8]] = &[
    // AWS documentation's access key ids (also caught by the EXAMPLE suffix).
    b"AKIAIOSFODNN7EXAMPLE",
    b"AKIAI44QH8DHBEXAMPLE",
    // The jwt.io debugger's default token (HS256, secret "your-256-bit-secret"), quoted by
    // countless tutorials.
    b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
];

/// Whether a match is a documented example value.
pub(crate) fn is_allowed(value: &[u8]) -> bool {
    value.ends_with(b"EXAMPLE") || EXAMPLE_VALUES.contains(&value)
}

// Character classes, as bits of one table.
const WORD: u8 = 1; // [0-9A-Za-z_]: what `\b` looks at
const ALNUM: u8 = 2; // [0-9A-Za-z]
const TOKEN: u8 = 4; // [0-9A-Za-z_-]
const DIGIT: u8 = 8; // [0-9]
const UPPER32: u8 = 16; // [A-Z2-7]: base32
const MIDDLE: u8 = 32; // [ A-Za-z0-9_-]: between `-----BEGIN` and `PRIVATE KEY`
const START: u8 = 64; // first byte of a prefix: A g s r x e -
const DASH_ONLY: u8 = 128; // `-`: with ALNUM, `[0-9A-Za-z-]`

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        let alnum = b.is_ascii_alphanumeric();
        if alnum || b == b'_' {
            c |= WORD;
        }
        if alnum {
            c |= ALNUM;
        }
        if alnum || b == b'_' || b == b'-' {
            c |= TOKEN | MIDDLE;
        }
        if b == b'-' {
            c |= DASH_ONLY;
        }
        if b == b' ' {
            c |= MIDDLE;
        }
        if b.is_ascii_digit() {
            c |= DIGIT;
        }
        if b.is_ascii_uppercase() || (b >= b'2' && b <= b'7') {
            c |= UPPER32;
        }
        if matches!(b, b'A' | b'g' | b's' | b'r' | b'x' | b'e' | b'-') {
            c |= START;
        }
        if let Some(slot) = t.as_mut_slice().split_at_mut(i).1.first_mut() {
            *slot = c;
        }
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

/// The class bits of `b` (the lookup cannot miss: the table has 256 entries).
#[inline]
fn class_of(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(0)
}

#[inline]
fn class(text: &[u8], i: usize) -> u8 {
    text.get(i).map_or(0, |&b| class_of(b))
}

/// `\b` at `i` (ASCII word characters, as `(?-u)`).
#[inline]
fn boundary(text: &[u8], i: usize) -> bool {
    let before = i.checked_sub(1).is_some_and(|j| class(text, j) & WORD != 0);
    let after = class(text, i) & WORD != 0;
    before != after
}

/// End of the run of bytes with class `bits` starting at `i`.
#[inline]
fn run_end(text: &[u8], mut i: usize, bits: u8) -> usize {
    while class(text, i) & bits != 0 {
        i += 1;
    }
    i
}

/// Whether `text[i..]` starts with `prefix`.
#[inline]
fn has(text: &[u8], i: usize, prefix: &[u8]) -> bool {
    text.get(i..).is_some_and(|t| t.starts_with(prefix))
}

/// Whether `text[i..]` starts with `prefix`, ASCII case-insensitively.
#[inline]
fn has_ci(text: &[u8], i: usize, prefix: &[u8]) -> bool {
    text.get(i..i.saturating_add(prefix.len())).is_some_and(|t| t.eq_ignore_ascii_case(prefix))
}

/// The rules that `find_iter` keeps apart: each resumes after its own previous match.
#[derive(Clone, Copy)]
enum Rule {
    Aws,
    Github,
    GithubPat,
    Gitlab,
    Openai,
    OpenaiPrefixed,
    Anthropic,
    SlackBot,
    SlackUser,
    Stripe,
    PemHeader,
    Jwt,
}
const RULES: usize = 12;

/// Per-scan state: where each rule may match next, and the PEM END lines once needed.
pub(crate) struct SecretState {
    next: [usize; RULES],
    /// END lines (non-overlapping, in order), computed at the first PEM header.
    pem_ends: Option<Vec<Range<usize>>>,
    /// Index into `pem_ends` of the first END not yet passed.
    pem_end_at: usize,
    /// End of the last reported PEM block: headers inside it are part of it.
    pem_covered_to: usize,
}

impl SecretState {
    pub(crate) fn new() -> Self {
        Self { next: [0; RULES], pem_ends: None, pem_end_at: 0, pem_covered_to: 0 }
    }
}

/// The secret rules. Nothing to compile; kept as a type so the detector's shape (and its API)
/// stays as it was.
#[derive(Debug, Default)]
pub struct SecretScanner;

impl SecretScanner {
    pub fn new() -> Result<Self, DetectError> {
        Ok(Self)
    }

    /// Reports every secret in `text` as (class, range), in order of each rule's matches.
    pub fn scan(&self, text: &[u8], report: &mut dyn FnMut(DataClass, Range<usize>)) {
        super::sweep(text, true, false, None, &mut |c, r| report(c, r));
    }

    /// Checks the prefixes inside one run of base64 characters `text[start..end]` (maximal,
    /// at least [`MIN_RUN`] long, or [`MIN_RUN_WITH_DASH`] with a dash in it). Matches may extend past the run (a JWT's later parts, a PEM
    /// body).
    pub(crate) fn scan_run(&self, text: &[u8], start: usize, end: usize, st: &mut SecretState, report: &mut dyn FnMut(DataClass, Range<usize>)) {
        let mut p = start;
        while p < end {
            let Some(&b) = text.get(p) else { break };
            if class_of(b) & START == 0 {
                p += 1;
                continue;
            }
            match b {
                b'A' => self.try_rule(Rule::Aws, text, p, st, report, aws),
                b'g' => {
                    self.try_rule(Rule::Github, text, p, st, report, github);
                    self.try_rule(Rule::GithubPat, text, p, st, report, github_pat);
                    self.try_rule(Rule::Gitlab, text, p, st, report, gitlab);
                }
                b's' => {
                    self.try_rule(Rule::Openai, text, p, st, report, openai);
                    self.try_rule(Rule::OpenaiPrefixed, text, p, st, report, openai_prefixed);
                    self.try_rule(Rule::Anthropic, text, p, st, report, anthropic);
                    self.try_rule(Rule::Stripe, text, p, st, report, stripe);
                }
                b'r' => self.try_rule(Rule::Stripe, text, p, st, report, stripe),
                b'x' => {
                    self.try_rule(Rule::SlackBot, text, p, st, report, slack_bot);
                    self.try_rule(Rule::SlackUser, text, p, st, report, slack_user);
                }
                b'e' => self.try_rule(Rule::Jwt, text, p, st, report, jwt),
                b'-' => {
                    if let Some(slot) = st.next.get_mut(Rule::PemHeader as usize)
                        && p >= *slot
                        && let Some(header_end) = pem_header(text, p)
                    {
                        *slot = header_end;
                        pem_block(text, p..header_end, st, report);
                    }
                }
                _ => {}
            }
            p += 1;
        }
    }

    /// Runs one rule's matcher at `p` unless an earlier match of the rule covers `p`; a match
    /// moves the rule past it whether or not it passes the entropy floor and allow-list (as
    /// `find_iter` does), and is reported if it does.
    #[inline]
    fn try_rule(
        &self,
        rule: Rule,
        text: &[u8],
        p: usize,
        st: &mut SecretState,
        report: &mut dyn FnMut(DataClass, Range<usize>),
        matcher: fn(&[u8], usize) -> Option<usize>,
    ) {
        let Some(next) = st.next.get_mut(rule as usize) else { return };
        if p < *next {
            return;
        }
        let Some(end) = matcher(text, p) else { return };
        *next = end;
        let value = text.get(p..end).unwrap_or_default();
        let (class, min_entropy) = match rule {
            Rule::Aws => (DataClass::AwsAccessKey, Some(3.0)),
            Rule::Github | Rule::GithubPat => (DataClass::GithubToken, Some(3.0)),
            Rule::Gitlab => (DataClass::GitlabToken, Some(3.0)),
            Rule::Openai | Rule::OpenaiPrefixed => (DataClass::OpenaiApiKey, Some(3.0)),
            Rule::Anthropic => (DataClass::AnthropicApiKey, Some(3.0)),
            Rule::SlackBot | Rule::SlackUser => (DataClass::SlackToken, None),
            Rule::Stripe => (DataClass::StripeLiveKey, Some(2.0)),
            Rule::Jwt => (DataClass::Jwt, Some(3.0)),
            Rule::PemHeader => return,
        };
        if min_entropy.is_some_and(|min| shannon_entropy(value) < min) || is_allowed(value) {
            return;
        }
        if matches!(rule, Rule::Jwt) && !jwt_header_ok(value) {
            return;
        }
        report(class, p..end);
    }
}

// Each matcher: the end of the rule's match starting at `p`, if there is one (leftmost-first
// greedy semantics of the rule's pattern in `RULE_PATTERNS`).

/// `\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`
fn aws(text: &[u8], p: usize) -> Option<usize> {
    let prefix = text.get(p..p.checked_add(4)?)?;
    if !matches!(prefix, b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA") || !boundary(text, p) {
        return None;
    }
    let end = p + 20;
    let body = text.get(p + 4..end)?;
    (body.iter().all(|&b| class_of(b) & UPPER32 != 0) && boundary(text, end)).then_some(end)
}

/// `gh[pousr]_[0-9A-Za-z]{36,}`
fn github(text: &[u8], p: usize) -> Option<usize> {
    match text.get(p..p.checked_add(4)?)? {
        [b'g', b'h', b'p' | b'o' | b'u' | b's' | b'r', b'_'] => at_least(text, p + 4, ALNUM, 36),
        _ => None,
    }
}

/// `github_pat_[0-9A-Za-z_]{82,}`
fn github_pat(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"github_pat_") {
        return None;
    }
    at_least(text, p + 11, WORD, 82)
}

/// `glpat-[0-9A-Za-z_-]{20,}`
fn gitlab(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"glpat-") {
        return None;
    }
    at_least(text, p + 6, TOKEN, 20)
}

/// `\bsk-[0-9A-Za-z_-]{20,}T3BlbkFJ[0-9A-Za-z_-]{20,}`: the run after `sk-` must hold the
/// marker with 20 characters on each side; the match takes the whole run.
fn openai(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"sk-") || !boundary(text, p) {
        return None;
    }
    let from = p + 3;
    let end = run_end(text, from, TOKEN);
    let run = text.get(from..end)?;
    let marked = run.windows(8).enumerate().any(|(i, w)| w == b"T3BlbkFJ" && i >= 20 && run.len() - i - 8 >= 20);
    marked.then_some(end)
}

/// `\bsk-(?:proj|svcacct|admin)-[0-9A-Za-z_-]{40,}`
fn openai_prefixed(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"sk-") || !boundary(text, p) {
        return None;
    }
    let kind = [&b"proj-"[..], b"svcacct-", b"admin-"].into_iter().find(|k| has(text, p + 3, k))?;
    at_least(text, p + 3 + kind.len(), TOKEN, 40)
}

/// `\bsk-ant-(?:api03|admin01)-[0-9A-Za-z_-]{93}AA\b`
fn anthropic(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"sk-ant-") || !boundary(text, p) {
        return None;
    }
    let kind = [&b"api03-"[..], b"admin01-"].into_iter().find(|k| has(text, p + 7, k))?;
    let from = p + 7 + kind.len();
    let body = text.get(from..from.checked_add(93)?)?;
    let end = from + 95;
    (body.iter().all(|&b| class_of(b) & TOKEN != 0) && has(text, from + 93, b"AA") && boundary(text, end)).then_some(end)
}

/// `\b[sr]k_live_[0-9A-Za-z]{10,}`
fn stripe(text: &[u8], p: usize) -> Option<usize> {
    if !(has(text, p, b"sk_live_") || has(text, p, b"rk_live_")) || !boundary(text, p) {
        return None;
    }
    at_least(text, p + 8, ALNUM, 10)
}

/// `-[0-9]{10,13}`: the digit run after a dash, which must be 10 to 13 long and be followed by
/// what comes next in the pattern (so the run is taken whole). Returns the end of the digits.
fn dash_digits(text: &[u8], p: usize) -> Option<usize> {
    if text.get(p) != Some(&b'-') {
        return None;
    }
    let end = run_end(text, p + 1, DIGIT);
    (10..=13).contains(&(end - p - 1)).then_some(end)
}

/// `xoxb-[0-9]{10,13}-[0-9]{10,13}[0-9A-Za-z-]*`
fn slack_bot(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"xoxb") {
        return None;
    }
    let first = dash_digits(text, p + 4)?;
    if text.get(first) != Some(&b'-') {
        return None;
    }
    let digits = run_end(text, first + 1, DIGIT);
    if digits - first - 1 < 10 {
        return None;
    }
    Some(run_end(text, digits, ALNUM | DASH_ONLY))
}

/// `xox[pe](?:-[0-9]{10,13}){3}-[0-9A-Za-z-]{28,34}`
fn slack_user(text: &[u8], p: usize) -> Option<usize> {
    if !(has(text, p, b"xoxp") || has(text, p, b"xoxe")) {
        return None;
    }
    let mut at = p + 4;
    for _ in 0..3 {
        at = dash_digits(text, at)?;
    }
    if text.get(at) != Some(&b'-') {
        return None;
    }
    let from = at + 1;
    let end = run_end(text, from, ALNUM | DASH_ONLY);
    let len = end - from;
    (len >= 28).then(|| from + len.min(34))
}

/// `\beyJ[0-9A-Za-z_-]{10,}={0,2}\.[0-9A-Za-z_-]{10,}={0,2}(?:\.[0-9A-Za-z_-]*={0,2})?`
fn jwt(text: &[u8], p: usize) -> Option<usize> {
    if !has(text, p, b"eyJ") || !boundary(text, p) {
        return None;
    }
    let header = at_least(text, p + 3, TOKEN, 10)?;
    let at = padding(text, header);
    if text.get(at) != Some(&b'.') {
        return None;
    }
    let payload = at_least(text, at + 1, TOKEN, 10)?;
    let at = padding(text, payload);
    if text.get(at) != Some(&b'.') {
        return Some(at);
    }
    Some(padding(text, run_end(text, at + 1, TOKEN)))
}

/// After `={0,2}` at `i`.
fn padding(text: &[u8], i: usize) -> usize {
    let mut i = i;
    for _ in 0..2 {
        if text.get(i) == Some(&b'=') {
            i += 1;
        }
    }
    i
}

/// The end of a run of class `bits` at `from` if it is at least `min` long.
#[inline]
fn at_least(text: &[u8], from: usize, bits: u8, min: usize) -> Option<usize> {
    let end = run_end(text, from, bits);
    (end - from >= min).then_some(end)
}

/// `-----BEGIN` or `-----END` (ASCII case-insensitive) at `p`, then
/// `[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`: the end of the line's match. The middle is
/// greedy: the longest middle after which the rest follows.
fn pem_line(text: &[u8], p: usize, word: &[u8]) -> Option<usize> {
    if !has(text, p, b"-----") || !has_ci(text, p + 5, word) {
        return None;
    }
    let from = p + 5 + word.len();
    let middle = run_end(text, from, MIDDLE).min(from + 100);
    (from..=middle).rev().find_map(|at| {
        if !has_ci(text, at, b"PRIVATE KEY") {
            return None;
        }
        let mut at = at + 11;
        if has_ci(text, at, b" BLOCK-----") {
            at += 6;
        }
        has(text, at, b"-----").then_some(at + 5)
    })
}

fn pem_header(text: &[u8], p: usize) -> Option<usize> {
    pem_line(text, p, b"BEGIN")
}

/// Every END line in `text`, non-overlapping, in order.
fn pem_ends(text: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < text.len() {
        match text.get(p..).and_then(|t| t.windows(8).position(|w| w.starts_with(b"-----") && w.get(5..).is_some_and(|e| e.eq_ignore_ascii_case(b"END")))) {
            Some(i) => {
                let at = p + i;
                match pem_line(text, at, b"END") {
                    Some(end) => {
                        out.push(at..end);
                        p = end;
                    }
                    None => p = at + 1,
                }
            }
            None => break,
        }
    }
    out
}

/// Pairs a PEM header with the first END line after it. The body runs to the END line if only
/// body characters lie in between; otherwise (no END, or text in between) to the end of the body
/// characters. Reported if the body has at least [`PEM_MIN_BODY`] base64 characters.
fn pem_block(text: &[u8], header: Range<usize>, st: &mut SecretState, report: &mut dyn FnMut(DataClass, Range<usize>)) {
    if header.start < st.pem_covered_to {
        return;
    }
    let ends = st.pem_ends.get_or_insert_with(|| pem_ends(text));
    while ends.get(st.pem_end_at).is_some_and(|e| e.start < header.end) {
        st.pem_end_at += 1;
    }
    let body_from = header.end;
    let run_len = text.get(body_from..).map_or(0, |rest| rest.iter().take_while(|&&b| is_pem_body(b)).count());
    let run_end = body_from.saturating_add(run_len);
    let (body_end, block_end) = match ends.get(st.pem_end_at) {
        Some(end) if end.start <= run_end => (end.start, end.end),
        _ => (run_end, run_end),
    };
    let body = text.get(body_from..body_end).unwrap_or_default();
    let base64_chars = body.iter().filter(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')).count();
    if base64_chars >= PEM_MIN_BODY {
        report(DataClass::PrivateKey, header.start..block_end);
        st.pem_covered_to = block_end;
    }
}

/// Characters of a PEM body, including RFC 1421 header lines (`Proc-Type: 4,ENCRYPTED`,
/// `DEK-Info: …`), PGP armor headers (`Version: …`), and the backslashes of escaped newlines
/// that were not decoded.
pub(crate) fn is_pem_body(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b':' | b',' | b'-' | b'.')
}

/// Whether the first part of a JWT decodes to a JSON object with a string `alg`.
pub(crate) fn jwt_header_ok(token: &[u8]) -> bool {
    /// Longer headers are not JWT headers we need to believe in; bounds the decode.
    const MAX_HEADER: usize = 4096;
    let header = token.split(|&b| b == b'.').next().unwrap_or_default();
    if header.len() > MAX_HEADER {
        return false;
    }
    let Some(decoded) = super::encoded::decode(header) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(serde_json::Value::is_string),
        _ => false,
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
