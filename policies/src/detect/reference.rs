//! The regex-based detectors the hand-written scanners replaced (commit f684087), kept for tests
//! only: `mod_tests.rs` checks that the new scanners report exactly what these report, over
//! generated text. `regex` and `aho-corasick` are dev-dependencies; none of this is in the
//! filter's .wasm. The validators (Luhn, mod-97, entropy, JWT header, ...) are shared: what is
//! compared is how candidates are found.

pub mod secrets {
    use std::ops::Range;

    use aho_corasick::AhoCorasick;
    use regex::bytes::Regex;

    use crate::detect::secrets::{is_allowed, is_pem_body, jwt_header_ok};
        use crate::detect::{DataClass, DetectError, shannon_entropy};

    /// What to check on a match beyond the pattern.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Check {
        None,
        /// The first dot-separated part must decode (base64url) to a JSON object with `alg`.
        JwtHeader,
        /// A `-----BEGIN … PRIVATE KEY-----` header: extend to the body and `-----END …-----` line,
        /// and require a body of at least [`PEM_MIN_BODY`] base64 characters (gitleaks: `{64,}`).
        PemBlock,
    }

    /// One detection rule.
    #[derive(Debug)]
    struct Rule {
        /// gitleaks' rule id where there is one, for tests and debugging.
        id: &'static str,
        class: DataClass,
        pattern: &'static str,
        keywords: &'static [&'static str],
        /// Minimum Shannon entropy (bits per byte) of the match; gitleaks' value where it sets one.
        min_entropy: Option<f64>,
        check: Check,
    }

    /// The rule table. Patterns and thresholds follow gitleaks unless the comment says otherwise.
    const RULES: &[Rule] = &[
        // aws.go: entropy 3. The brief (and AWS's documented id format) restricts the 16 characters
        // to base32 `[A-Z2-7]`; gitleaks accepts `[A-Z0-9]` and also the `A3T` prefix, which its own
        // comment doubts.
        Rule {
            id: "aws-access-token",
            class: DataClass::AwsAccessKey,
            pattern: r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
            keywords: &["AKIA", "ASIA", "ABIA", "ACCA"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // github.go: github-pat, github-oauth, github-app-token, github-refresh-token (36 characters;
        // longer runs are kept whole so redaction covers them), entropy 3 in current gitleaks.
        Rule {
            id: "github-token",
            class: DataClass::GithubToken,
            pattern: r"(?-u)gh[pousr]_[0-9A-Za-z]{36,}",
            keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // github.go: github-fine-grained-pat.
        Rule {
            id: "github-fine-grained-pat",
            class: DataClass::GithubToken,
            pattern: r"(?-u)github_pat_[0-9A-Za-z_]{82,}",
            keywords: &["github_pat_"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // gitlab.go: gitlab-pat `glpat-[\w-]{20}`, entropy 3; newer tokens are longer and kept whole.
        Rule {
            id: "gitlab-pat",
            class: DataClass::GitlabToken,
            pattern: r"(?-u)glpat-[0-9A-Za-z_-]{20,}",
            keywords: &["glpat-"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // openai.go: keys carrying the `T3BlbkFJ` marker (base64 of "OpenAI"), legacy and project forms.
        Rule {
            id: "openai-api-key",
            class: DataClass::OpenaiApiKey,
            pattern: r"(?-u)\bsk-[0-9A-Za-z_-]{20,}T3BlbkFJ[0-9A-Za-z_-]{20,}",
            keywords: &["T3BlbkFJ"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // The newer prefixed forms, which do not always carry the marker.
        Rule {
            id: "openai-prefixed-key",
            class: DataClass::OpenaiApiKey,
            pattern: r"(?-u)\bsk-(?:proj|svcacct|admin)-[0-9A-Za-z_-]{40,}",
            keywords: &["sk-proj-", "sk-svcacct-", "sk-admin-"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // anthropic.go: anthropic-api-key and anthropic-admin-api-key, `{93}AA`. gitleaks sets no
        // entropy floor; we add 3.0 so placeholder keys (`sk-ant-api03-xxxx…AA`) in documentation do
        // not count, which real keys (random, ~5.9 bits) always clear.
        Rule {
            id: "anthropic-api-key",
            class: DataClass::AnthropicApiKey,
            pattern: r"(?-u)\bsk-ant-(?:api03|admin01)-[0-9A-Za-z_-]{93}AA\b",
            keywords: &["sk-ant-api03-", "sk-ant-admin01-"],
            min_entropy: Some(3.0),
            check: Check::None,
        },
        // slack.go: slack-bot-token.
        Rule {
            id: "slack-bot-token",
            class: DataClass::SlackToken,
            pattern: r"(?-u)xoxb-[0-9]{10,13}-[0-9]{10,13}[0-9A-Za-z-]*",
            keywords: &["xoxb-"],
            min_entropy: None,
            check: Check::None,
        },
        // slack.go: slack-user-token.
        Rule {
            id: "slack-user-token",
            class: DataClass::SlackToken,
            pattern: r"(?-u)xox[pe](?:-[0-9]{10,13}){3}-[0-9A-Za-z-]{28,34}",
            keywords: &["xoxp-", "xoxe-"],
            min_entropy: None,
            check: Check::None,
        },
        // stripe.go: stripe-access-token, entropy 2; live keys only (test keys grant nothing and
        // Stripe's documentation is full of them).
        Rule {
            id: "stripe-access-token",
            class: DataClass::StripeLiveKey,
            pattern: r"(?-u)\b[sr]k_live_[0-9A-Za-z]{10,}",
            keywords: &["sk_live_", "rk_live_"],
            min_entropy: Some(2.0),
            check: Check::None,
        },
        // privatekey.go: `(?i)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S-]{64,}?KEY(?:
        // BLOCK)?-----`. The regex finds the header; the body and END line are found in linear time
        // by `pem_block` (a lazy `[\s\S]{64,}?` per header could rescan the rest of the text).
        Rule {
            id: "private-key",
            class: DataClass::PrivateKey,
            pattern: r"(?i-u)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
            keywords: &["-----BEGIN"],
            min_entropy: None,
            check: Check::PemBlock,
        },
        // jwt.go: gitleaks requires `ey…\.ey…\.…` with entropy 3. We require the header to be a
        // JSON object with `alg` (RFC 7515 §4.1.1: `alg` MUST be present), so the payload need not
        // start with `ey` and the signature may be empty (`alg: none`).
        Rule {
            id: "jwt",
            class: DataClass::Jwt,
            pattern: r"(?-u)\beyJ[0-9A-Za-z_-]{10,}={0,2}\.[0-9A-Za-z_-]{10,}={0,2}(?:\.[0-9A-Za-z_-]*={0,2})?",
            keywords: &["eyJ"],
            min_entropy: Some(3.0),
            check: Check::JwtHeader,
        },
    ];

    /// The END line of a PEM/PGP private key block.
    const PEM_END: &str = r"(?i-u)-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----";

    use crate::detect::secrets::PEM_MIN_BODY;

    /// The compiled rule table.
    #[derive(Debug)]
    pub struct SecretScanner {
        keywords: AhoCorasick,
        /// Rule index of each keyword pattern id.
        keyword_rule: Vec<usize>,
        regexes: Vec<Regex>,
        pem_end: Regex,
    }

    impl SecretScanner {
        pub fn new() -> Result<Self, DetectError> {
            let mut words = Vec::new();
            let mut keyword_rule = Vec::new();
            let mut regexes = Vec::with_capacity(RULES.len());
            for (i, rule) in RULES.iter().enumerate() {
                for &k in rule.keywords {
                    words.push(k);
                    keyword_rule.push(i);
                }
                regexes.push(compile(rule.id, rule.pattern)?);
            }
            let keywords = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&words)
                .map_err(|e| DetectError::InvalidKeywords { reason: e.to_string() })?;
            Ok(Self { keywords, keyword_rule, regexes, pem_end: compile("private-key-end", PEM_END)? })
        }

        /// Reports every secret in `text` as (class, range).
        pub fn scan(&self, text: &[u8], report: &mut dyn FnMut(DataClass, Range<usize>)) {
            let mut active = [false; RULES.len()];
            let mut remaining = RULES.len();
            // Overlapping search so that no keyword hides another; stops once every rule is on.
            for m in self.keywords.find_overlapping_iter(text) {
                if let Some(slot) = self.keyword_rule.get(m.pattern().as_usize()).and_then(|&r| active.get_mut(r))
                    && !*slot
                {
                    *slot = true;
                    remaining -= 1;
                    if remaining == 0 {
                        break;
                    }
                }
            }
            for ((rule, regex), _) in RULES.iter().zip(&self.regexes).zip(active).filter(|(_, on)| *on) {
                match rule.check {
                    Check::PemBlock => self.pem_blocks(text, regex, report),
                    Check::None | Check::JwtHeader => {
                        for m in regex.find_iter(text) {
                            let value = m.as_bytes();
                            if rule.min_entropy.is_some_and(|min| shannon_entropy(value) < min) || is_allowed(value) {
                                continue;
                            }
                            if rule.check == Check::JwtHeader && !jwt_header_ok(value) {
                                continue;
                            }
                            report(rule.class, m.range());
                        }
                    }
                }
            }
        }

        /// Pairs each PEM header with the first END line after it. Linear: headers and END lines are
        /// each found once, and each byte of a body is examined for one header only (a header inside
        /// an earlier block is skipped).
        fn pem_blocks(&self, text: &[u8], begin: &Regex, report: &mut dyn FnMut(DataClass, Range<usize>)) {
            let mut ends = self.pem_end.find_iter(text).peekable();
            let mut covered_to = 0usize;
            for header in begin.find_iter(text) {
                if header.start() < covered_to {
                    continue;
                }
                while ends.peek().is_some_and(|e| e.start() < header.end()) {
                    ends.next();
                }
                let body_from = header.end();
                // The body runs to the END line if only body characters lie in between; otherwise
                // (no END, or text in between) to the end of the body characters.
                let run_len = text.get(body_from..).map_or(0, |rest| rest.iter().take_while(|&&b| is_pem_body(b)).count());
                let run_end = body_from.saturating_add(run_len);
                let (body_end, block_end) = match ends.peek() {
                    Some(end) if end.start() <= run_end => (end.start(), end.end()),
                    _ => (run_end, run_end),
                };
                let body = text.get(body_from..body_end).unwrap_or_default();
                let base64_chars =
                    body.iter().filter(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')).count();
                if base64_chars >= PEM_MIN_BODY {
                    report(DataClass::PrivateKey, header.start()..block_end);
                    covered_to = block_end;
                }
            }
        }
    }

    fn compile(rule: &'static str, pattern: &str) -> Result<Regex, DetectError> {
        Regex::new(pattern).map_err(|e| DetectError::InvalidPattern { rule, reason: e.to_string() })
    }
}

pub mod pii {
    use std::ops::Range;

    use regex::bytes::Regex;

    use crate::detect::pii::{card_spans, continues_number, email_span, iban_len, ssn_valid};
        use crate::detect::{DataClass, DetectError};

    const CARD: &str = r"(?-u)\b[0-9](?:[ -]?[0-9]){12,18}\b";
    const IBAN: &str = r"(?i-u)\b[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]){11,32}\b";
    const SSN: &str = r"(?-u)\b[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b";
    const EMAIL: &str = r"(?-u)[0-9A-Za-z._%+-]+@[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)+";

    /// The compiled PII patterns.
    #[derive(Debug)]
    pub struct PiiScanner {
        card: Regex,
        iban: Regex,
        ssn: Regex,
        email: Regex,
    }

    impl PiiScanner {
        pub fn new() -> Result<Self, DetectError> {
            let compile = |rule: &'static str, p: &str| {
                Regex::new(p).map_err(|e| DetectError::InvalidPattern { rule, reason: e.to_string() })
            };
            Ok(Self {
                card: compile("payment-card", CARD)?,
                iban: compile("iban", IBAN)?,
                ssn: compile("us-ssn", SSN)?,
                email: compile("email", EMAIL)?,
            })
        }

        /// Reports every PII value in `text` as (class, range).
        pub fn scan(&self, text: &[u8], report: &mut dyn FnMut(DataClass, Range<usize>)) {
            // Cheap gates: cards, IBANs and SSNs need a digit, emails an `@`.
            let has_digit = text.iter().any(u8::is_ascii_digit);
            if has_digit {
                for m in self.card.find_iter(text) {
                    card_spans(m.as_bytes(), &mut |r| report(DataClass::PaymentCard, m.start() + r.start..m.start() + r.end));
                }
                for m in self.iban.find_iter(text) {
                    if let Some(len) = iban_len(m.as_bytes(), text.get(m.end()..).unwrap_or_default()) {
                        report(DataClass::Iban, m.start()..m.start() + len);
                    }
                }
                for m in self.ssn.find_iter(text) {
                    let before = m.start().checked_sub(2).and_then(|s| text.get(s..m.start()));
                    let after = text.get(m.end()..m.end().saturating_add(2));
                    if ssn_valid(m.as_bytes()) && !continues_number(before, true) && !continues_number(after, false) {
                        report(DataClass::UsSsn, m.range());
                    }
                }
            }
            if text.contains(&b'@') {
                for m in self.email.find_iter(text) {
                    if let Some(r) = email_span(text, m.range()) {
                        report(DataClass::Email, r);
                    }
                }
            }
        }
    }
}
