//! Sensitive-data detectors: secrets (gitleaks' default rule style) and PII with checksum
//! validators, over raw bytes, over the decoded strings of a JSON value, and over a stream of
//! chunks ([`stream`]).
//!
//! One scan of a haystack, linear in its length:
//!
//! 1. **Normalize** ([`normalize`]): decode JSON string escapes (`\n`, `\/`, `\u0041`, surrogate
//!    pairs), map fullwidth ASCII (U+FF01–U+FF5E) and the ideographic space to ASCII, drop
//!    zero-width characters (U+200B–U+200D, U+2060, U+FEFF). Findings are reported in input
//!    coordinates. Text with none of these (checked eight bytes at a time) is not copied.
//! 2. **One sweep** ([`sweep`]) over the normalized text, one table lookup per byte: it splits
//!    the text into runs of base64 characters (`[A-Za-z0-9+/_-]`) and the bytes between them.
//!    A run of 13 or more (10 with a dash) goes to the secret rules ([`secrets`]), which look for their prefixes
//!    (`AKIA`, `ghp_`, `eyJ`, `-----BEGIN`, ...) inside it and verify the rest by hand; a run that
//!    holds a digit goes to the card, IBAN and SSN finders ([`pii`]) at each digit run; an `@`
//!    between runs goes to the email finder; a run of 20 or more is kept as a base64 candidate.
//!    Prose is made of short runs, so it costs the lookup and nothing else. There is no regex
//!    engine and no keyword automaton: every pattern starts with a fixed prefix or a digit, and
//!    inside wasm (no SIMD) a table walk is what a DFA would do anyway, once per pattern.
//!    Secrets then pass the rule's Shannon-entropy floor, its validator (JWT header, PEM body)
//!    and the allow-list of documented example values; PII its checksum (Luhn, mod-97) or range
//!    checks.
//! 3. **Base64** ([`encoded`]): runs of 20 or more base64/base64url characters that are not already
//!    part of a finding are decoded and the decoded bytes scanned once more (steps 1–2, never a
//!    second decode), so the extra work is at most ¾ of the input.
//!
//! Every scan refuses input over [`DetectLimits::max_input_bytes`] with [`ScanError::TooLarge`]:
//! the caller must treat that as "not inspected", never as "nothing found".
//!
//! Findings hold the class and a byte range, never the matched text: what goes into events is
//! [`Findings::summary`] (class and count). The ranges exist for redaction.

pub mod encoded;
pub mod json;
pub mod normalize;
pub mod pii;
pub mod secrets;
pub mod stream;

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use json::{JsonFinding, JsonFindings};
pub use stream::{StreamFinding, StreamLimits, StreamScanner};

/// What a finding is. The serialized names (`secret.aws_access_key`, `pii.payment_card`) are what
/// policies and events use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DataClass {
    /// AWS access key id (`AKIA`, `ASIA`, `ABIA`, `ACCA` and 16 base32 characters).
    #[serde(rename = "secret.aws_access_key")]
    AwsAccessKey,
    /// GitHub token: classic (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) or fine-grained (`github_pat_`).
    #[serde(rename = "secret.github_token")]
    GithubToken,
    /// GitLab personal access token (`glpat-`).
    #[serde(rename = "secret.gitlab_token")]
    GitlabToken,
    /// OpenAI API key (`sk-…T3BlbkFJ…`, `sk-proj-`, `sk-svcacct-`, `sk-admin-`).
    #[serde(rename = "secret.openai_api_key")]
    OpenaiApiKey,
    /// Anthropic API or admin key (`sk-ant-api03-`, `sk-ant-admin01-`).
    #[serde(rename = "secret.anthropic_api_key")]
    AnthropicApiKey,
    /// Slack bot or user token (`xoxb-`, `xoxp-`, `xoxe-`).
    #[serde(rename = "secret.slack_token")]
    SlackToken,
    /// Stripe live secret or restricted key (`sk_live_`, `rk_live_`).
    #[serde(rename = "secret.stripe_live_key")]
    StripeLiveKey,
    /// A PEM or PGP private key block.
    #[serde(rename = "secret.private_key")]
    PrivateKey,
    /// A JSON Web Token whose header decodes to a JSON object with `alg`.
    #[serde(rename = "secret.jwt")]
    Jwt,
    /// A payment card number (13–19 digits, issuer range, Luhn).
    #[serde(rename = "pii.payment_card")]
    PaymentCard,
    /// An IBAN (known country, its length, mod-97).
    #[serde(rename = "pii.iban")]
    Iban,
    /// A US social security number outside the never-issued ranges.
    #[serde(rename = "pii.us_ssn")]
    UsSsn,
    /// An email address with a real domain part.
    #[serde(rename = "pii.email")]
    Email,
}

/// The two families of data classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Secret,
    Pii,
}

impl DataClass {
    /// Every class, in declaration order.
    pub const ALL: [DataClass; 13] = [
        DataClass::AwsAccessKey,
        DataClass::GithubToken,
        DataClass::GitlabToken,
        DataClass::OpenaiApiKey,
        DataClass::AnthropicApiKey,
        DataClass::SlackToken,
        DataClass::StripeLiveKey,
        DataClass::PrivateKey,
        DataClass::Jwt,
        DataClass::PaymentCard,
        DataClass::Iban,
        DataClass::UsSsn,
        DataClass::Email,
    ];

    /// The name policies and events use (the serde name).
    pub const fn as_str(self) -> &'static str {
        match self {
            DataClass::AwsAccessKey => "secret.aws_access_key",
            DataClass::GithubToken => "secret.github_token",
            DataClass::GitlabToken => "secret.gitlab_token",
            DataClass::OpenaiApiKey => "secret.openai_api_key",
            DataClass::AnthropicApiKey => "secret.anthropic_api_key",
            DataClass::SlackToken => "secret.slack_token",
            DataClass::StripeLiveKey => "secret.stripe_live_key",
            DataClass::PrivateKey => "secret.private_key",
            DataClass::Jwt => "secret.jwt",
            DataClass::PaymentCard => "pii.payment_card",
            DataClass::Iban => "pii.iban",
            DataClass::UsSsn => "pii.us_ssn",
            DataClass::Email => "pii.email",
        }
    }

    /// Whether this is a secret or personal data.
    pub const fn category(self) -> Category {
        match self {
            DataClass::PaymentCard | DataClass::Iban | DataClass::UsSsn | DataClass::Email => Category::Pii,
            _ => Category::Secret,
        }
    }

    /// The class named `name` (`"pii.iban"`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for DataClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the finding was present in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// In the text itself (after normalization: escapes, fullwidth and zero-width characters).
    Plain,
    /// Inside a base64 or base64url run; the range covers the whole run.
    Base64,
}

/// One detected value: its class and where it is. Holds no part of the value, so it is safe to
/// log; the range is for redaction (it covers the input bytes the value came from, including any
/// escapes or invisible characters inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub class: DataClass,
    /// Byte range in the scanned input.
    pub range: Range<usize>,
    pub encoding: Encoding,
}

/// How many findings of one class: the only form in which findings may leave the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassCount {
    pub class: DataClass,
    pub count: u32,
}

/// Counts per class, in [`DataClass`] order.
pub fn summarize(classes: impl IntoIterator<Item = DataClass>) -> Vec<ClassCount> {
    let mut counts: BTreeMap<DataClass, u32> = BTreeMap::new();
    for class in classes {
        let n = counts.entry(class).or_insert(0);
        *n = n.saturating_add(1);
    }
    counts.into_iter().map(|(class, count)| ClassCount { class, count }).collect()
}

/// The findings of one scan, ordered by start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    items: Vec<Finding>,
}

impl Findings {
    pub fn iter(&self) -> std::slice::Iter<'_, Finding> {
        self.items.iter()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// How many findings of `class`.
    pub fn count(&self, class: DataClass) -> usize {
        self.items.iter().filter(|f| f.class == class).count()
    }
    /// Class and count per class found: what an event may carry.
    pub fn summary(&self) -> Vec<ClassCount> {
        summarize(self.items.iter().map(|f| f.class))
    }
    pub fn into_vec(self) -> Vec<Finding> {
        self.items
    }
}

impl<'a> IntoIterator for &'a Findings {
    type Item = &'a Finding;
    type IntoIter = std::slice::Iter<'a, Finding>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Size bounds of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectLimits {
    /// Largest input one scan accepts (for [`Detector::scan_json`]: the total length of all
    /// strings and keys). Larger input is refused, never partly scanned.
    pub max_input_bytes: usize,
}

impl DetectLimits {
    /// 4 MiB: above any body the filter buffers for inspection.
    pub const DEFAULT_MAX_INPUT_BYTES: usize = 4 << 20;
}

impl Default for DetectLimits {
    fn default() -> Self {
        Self { max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES }
    }
}

/// A detector that cannot be built: a pattern of the built-in tables does not compile. A test
/// builds every table, so this is a programming error, reported rather than panicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("detector rule {rule}: invalid pattern: {reason}")]
    InvalidPattern { rule: &'static str, reason: String },
    #[error("detector keyword automaton: {reason}")]
    InvalidKeywords { reason: String },
}

/// Input a scan refuses. Not a clean result: the caller must map it to "uninspectable".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("input of {len} bytes exceeds the inspection limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// The compiled detectors. Build once (policy load), share across requests; scanning takes
/// `&self` and allocates only per scan.
#[derive(Debug)]
pub struct Detector {
    secrets: secrets::SecretScanner,
    pii: pii::PiiScanner,
    limits: DetectLimits,
}

impl Detector {
    /// All built-in detectors with the default limits.
    pub fn new() -> Result<Self, DetectError> {
        Self::with_limits(DetectLimits::default())
    }

    pub fn with_limits(limits: DetectLimits) -> Result<Self, DetectError> {
        Ok(Self { secrets: secrets::SecretScanner::new()?, pii: pii::PiiScanner::new()?, limits })
    }

    pub fn limits(&self) -> DetectLimits {
        self.limits
    }

    /// Scans raw bytes (a body, a frame). JSON escapes are decoded as part of normalization, so a
    /// JSON body can be scanned as is; invalid UTF-8 is scanned byte by byte.
    pub fn scan_bytes(&self, input: &[u8]) -> Result<Findings, ScanError> {
        self.check_len(input.len())?;
        let mut items = Vec::new();
        self.scan_layer(input, true, &mut items);
        Ok(Findings { items })
    }

    /// [`Self::scan_bytes`] on a string.
    pub fn scan_str(&self, input: &str) -> Result<Findings, ScanError> {
        self.scan_bytes(input.as_bytes())
    }

    /// Scans every string value and object key of `value`, after JSON decoding (see [`json`]).
    pub fn scan_json<T: crate::json_doc::JsonTree>(&self, value: &T) -> Result<JsonFindings, ScanError> {
        json::scan_value(self, value)
    }

    pub(crate) fn check_len(&self, len: usize) -> Result<(), ScanError> {
        if len > self.limits.max_input_bytes {
            return Err(ScanError::TooLarge { len, max: self.limits.max_input_bytes });
        }
        Ok(())
    }

    /// Normalize, detect, and (on the outer layer only) decode base64 runs and detect again.
    /// Appends findings in input coordinates, sorted by start, overlapping plain findings of one
    /// class merged.
    pub(crate) fn scan_layer(&self, input: &[u8], decode_base64: bool, out: &mut Vec<Finding>) {
        let norm = normalize::normalize(input);
        let text = norm.text();
        let mut hits: Vec<(DataClass, Range<usize>, Encoding)> = Vec::new();
        let mut runs = Vec::new();
        sweep_with(&self.secrets, &self.pii, text, true, true, decode_base64.then_some(&mut runs), &mut |class, range| {
            hits.push((class, range, Encoding::Plain));
        });
        if !runs.is_empty() {
            let mut plain: Vec<Range<usize>> = hits.iter().map(|(_, r, _)| r.clone()).collect();
            plain.sort_by_key(|r| r.start);
            let mut inner = Vec::new();
            for run in runs {
                if overlaps_any(&plain, &run) {
                    continue;
                }
                let Some(decoded) = text.get(run.clone()).and_then(encoded::decode) else {
                    continue;
                };
                inner.clear();
                self.scan_layer(&decoded, false, &mut inner);
                hits.extend(inner.iter().map(|f| (f.class, run.clone(), Encoding::Base64)));
            }
        }
        let mut mapped: Vec<Finding> = hits
            .into_iter()
            .map(|(class, range, encoding)| Finding { class, range: norm.original_range(range), encoding })
            .collect();
        mapped.sort_by_key(|a| (a.range.start, a.class, a.range.end));
        merge_overlapping(mapped, out);
    }
}

/// Byte classes of the sweep.
const RUN: u8 = 1; // [A-Za-z0-9+/_-]: a base64 run (and every secret's prefix) is made of these
const DIGIT: u8 = 2;
const AT: u8 = 4;
const DASH: u8 = 8;

const fn sweep_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let c = if b.is_ascii_digit() {
            RUN | DIGIT
        } else if b == b'-' {
            RUN | DASH
        } else if b.is_ascii_alphabetic() || matches!(b, b'+' | b'/' | b'_') {
            RUN
        } else if b == b'@' {
            AT
        } else {
            0
        };
        if let Some(slot) = t.as_mut_slice().split_at_mut(i).1.first_mut() {
            *slot = c;
        }
        i += 1;
    }
    t
}

static SWEEP: [u8; 256] = sweep_table();

/// The length of the run of non-run bytes at the start of `rest`, and whether it holds an `@`.
#[inline(always)]
fn gap_len(rest: &[u8]) -> (usize, bool) {
    let mut seen = 0u8;
    for (k, &b) in rest.iter().enumerate() {
        let c = SWEEP.get(usize::from(b)).copied().unwrap_or(0);
        if c & RUN != 0 {
            return (k, seen & AT != 0);
        }
        seen |= c;
    }
    (rest.len(), seen & AT != 0)
}

/// The length of the run of base64 characters at the start of `rest`, and the classes seen in
/// it.
#[inline(always)]
fn run_len(rest: &[u8]) -> (usize, u8) {
    let mut seen = 0u8;
    for (k, &b) in rest.iter().enumerate() {
        let c = SWEEP.get(usize::from(b)).copied().unwrap_or(0);
        if c & RUN == 0 {
            return (k, seen);
        }
        seen |= c;
    }
    (rest.len(), seen)
}

/// The one pass over normalized `text` (see the module documentation): secrets and/or PII
/// reported through `report`, and, when `runs` is given, the base64 runs (with up to two `=` of
/// padding) of at least [`encoded::MIN_RUN`] characters.
pub(crate) fn sweep(text: &[u8], secrets: bool, pii: bool, runs: Option<&mut Vec<Range<usize>>>, report: &mut dyn FnMut(DataClass, Range<usize>)) {
    sweep_with(&secrets::SecretScanner, &pii::PiiScanner, text, secrets, pii, runs, report);
}

fn sweep_with(
    secret_rules: &secrets::SecretScanner,
    pii_rules: &pii::PiiScanner,
    text: &[u8],
    secrets: bool,
    pii: bool,
    mut runs: Option<&mut Vec<Range<usize>>>,
    report: &mut dyn FnMut(DataClass, Range<usize>),
) {
    let class = |i: usize| text.get(i).map_or(0, |&b| SWEEP.get(usize::from(b)).copied().unwrap_or(0));
    let mut secret_state = secrets::SecretState::new();
    let mut pii_state = pii::PiiState::default();
    let n = text.len();
    let mut i = 0usize;
    while i < n {
        // Between runs: only an `@` matters.
        let (gap, at) = gap_len(text.get(i..).unwrap_or_default());
        if at && pii {
            for a in i..i + gap {
                if text.get(a) == Some(&b'@') {
                    pii_rules.at_sign(text, a, &mut pii_state, report);
                }
            }
        }
        i += gap;
        if i >= n {
            return;
        }
        // A run of base64 characters.
        let start = i;
        let (run, seen) = run_len(text.get(i..).unwrap_or_default());
        i += run;
        let len = i - start;
        if pii && seen & DIGIT != 0 {
            let mut p = start;
            while p < i {
                if class(p) & DIGIT != 0 {
                    pii_rules.digits(text, p, &mut pii_state, report);
                    while class(p) & DIGIT != 0 {
                        p += 1;
                    }
                } else {
                    p += 1;
                }
            }
        }
        if secrets && (len >= secrets::MIN_RUN || (len >= secrets::MIN_RUN_WITH_DASH && seen & DASH != 0)) {
            secret_rules.scan_run(text, start, i, &mut secret_state, report);
        }
        if len >= encoded::MIN_RUN
            && let Some(runs) = runs.as_deref_mut()
        {
            let mut end = i;
            for _ in 0..2 {
                if text.get(end) == Some(&b'=') {
                    end += 1;
                }
            }
            runs.push(start..end);
        }
    }
}

/// Whether `run` overlaps any of `sorted` (sorted by start; ranges may overlap each other).
fn overlaps_any(sorted: &[Range<usize>], run: &Range<usize>) -> bool {
    // Ranges that start before the run ends are the only candidates; few findings per haystack,
    // so a scan of that prefix is cheap.
    let upto = sorted.partition_point(|r| r.start < run.end);
    sorted.get(..upto).is_some_and(|c| c.iter().any(|r| r.end > run.start))
}

/// Keeps `sorted` (by start) and merges a plain finding into the previous plain finding of the
/// same class when they overlap: two rules of one class (OpenAI's two forms) or a pattern that
/// matched a value twice must count once. Base64 findings share their run's range and each
/// counts (five cards in one blob are five).
fn merge_overlapping(sorted: Vec<Finding>, out: &mut Vec<Finding>) {
    // Index in `out` of the last plain finding of each class.
    let mut last: [Option<usize>; DataClass::ALL.len()] = [None; DataClass::ALL.len()];
    for f in sorted {
        if f.encoding == Encoding::Plain {
            let idx = last.get(f.class as usize).copied().flatten();
            if let Some(prev) = idx.and_then(|i| out.get_mut(i))
                && prev.range.end > f.range.start
            {
                prev.range.end = prev.range.end.max(f.range.end);
                continue;
            }
            if let Some(slot) = last.get_mut(f.class as usize) {
                *slot = Some(out.len());
            }
        }
        out.push(f);
    }
}

/// Shannon entropy in bits per byte, as gitleaks computes it for its per-rule floor.
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c = c.saturating_add(1);
        }
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod test_samples;

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
