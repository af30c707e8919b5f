//! Test values, generated at run time from a fixed-seed PRNG so that no secret-shaped literal sits
//! in the source (this repository's own secret scanning must stay quiet) and property tests are
//! reproducible.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(alphabet[self.below(alphabet.len())])).collect()
    }
    /// Printable ASCII text with spaces, none of the detectors' keywords likely.
    pub fn prose(&mut self, n: usize) -> String {
        const WORDS: &[&str] = &["the", "model", "said", "tool", "call", "result", "and", "of", "data", "ok", "a", "in"];
        let mut s = String::new();
        while s.len() < n {
            s.push_str(WORDS[self.below(WORDS.len())]);
            s.push(if self.below(8) == 0 { '.' } else { ' ' });
        }
        s.truncate(n);
        s
    }
}

pub const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const ALNUM_EXT: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
pub const DIGITS: &[u8] = b"0123456789";
pub const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn aws_key(r: &mut Rng) -> String {
    format!("{}{}", ["AKIA", "ASIA", "ABIA", "ACCA"][r.below(4)], r.pick(BASE32, 16))
}
pub fn github_token(r: &mut Rng) -> String {
    format!("gh{}_{}", ["p", "o", "u", "s", "r"][r.below(5)], r.pick(ALNUM, 36))
}
pub fn github_pat(r: &mut Rng) -> String {
    format!("github_pat_{}", r.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", 82))
}
pub fn gitlab_pat(r: &mut Rng) -> String {
    format!("glpat-{}", r.pick(ALNUM_EXT, 20))
}
pub fn openai_legacy(r: &mut Rng) -> String {
    let (a, b) = (r.pick(ALNUM, 20), r.pick(ALNUM, 20));
    format!("sk-{a}T3Blbk{}{b}", "FJ")
}
pub fn openai_project(r: &mut Rng) -> String {
    format!("sk-{}-{}", ["proj", "svcacct"][r.below(2)], r.pick(ALNUM_EXT, 120))
}
pub fn anthropic_key(r: &mut Rng) -> String {
    format!("sk-ant-api03-{}AA", r.pick(ALNUM_EXT, 93))
}
pub fn slack_bot(r: &mut Rng) -> String {
    format!("xoxb-{}-{}-{}", r.pick(DIGITS, 12), r.pick(DIGITS, 13), r.pick(ALNUM, 24))
}
pub fn slack_user(r: &mut Rng) -> String {
    format!("xoxp-{}-{}-{}-{}", r.pick(DIGITS, 11), r.pick(DIGITS, 11), r.pick(DIGITS, 12), r.pick(b"0123456789abcdef", 32))
}
pub fn stripe_live(r: &mut Rng) -> String {
    format!("{}k_live_{}", ["s", "r"][r.below(2)], r.pick(ALNUM, 24))
}
pub fn pem_key(r: &mut Rng, newline: &str) -> String {
    let kind = ["RSA ", "EC ", "", "OPENSSH "][r.below(4)];
    let lines: Vec<String> = (0..4).map(|_| r.pick(B64, 64)).collect();
    format!("-----BEGIN {kind}PRIVATE KEY-----{newline}{}{newline}-----END {kind}PRIVATE KEY-----", lines.join(newline))
}
pub fn jwt(r: &mut Rng) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{}","exp":1700000000}}"#, r.pick(ALNUM, 12)));
    format!("{header}.{payload}.{}", r.pick(ALNUM_EXT, 43))
}

/// The digit that makes `payload` Luhn-valid when appended.
pub fn luhn_digit(payload: &str) -> u32 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// A Luhn-valid number with the given prefix and length.
pub fn card(r: &mut Rng, prefix: &str, len: usize) -> String {
    let payload = format!("{prefix}{}", r.pick(DIGITS, len - prefix.len() - 1));
    format!("{payload}{}", luhn_digit(&payload))
}

/// A valid IBAN for `country` with a random numeric BBAN of the right length.
pub fn iban(r: &mut Rng, country: &str, len: usize) -> String {
    let bban = r.pick(DIGITS, len - 4);
    let rearranged = format!("{bban}{country}00");
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap() as u64;
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

pub fn b64(s: &str) -> String {
    STANDARD.encode(s)
}
pub fn b64url(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}
