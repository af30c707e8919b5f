//! Personal data with validators after the pattern, after Microsoft Presidio's recognizers
//! (`presidio-analyzer/predefined_recognizers`): a candidate is found by its shape, then a
//! function decides.
//!
//! - **Payment cards**: 13–19 digits, optionally grouped by one kind of separator (space or dash);
//!   the issuer range (IIN) of a major brand must fit the length, the Luhn checksum must hold, and
//!   one digit repeated (`0000 0000 0000 0000`) is refused. Well-known test card numbers
//!   (`4111 1111 1111 1111`) are detected: they are real-format numbers, and the demo data uses
//!   test-card prefixes to stand for real cards.
//! - **IBAN** (ISO 13616): a known country code, that country's length, and mod-97 == 1.
//!   Printed form (groups of four separated by spaces) and lower case are accepted.
//! - **US SSN**: `AAA-GG-SSSS` (also with spaces or dots, one kind), not area 000, 666 or 900–999,
//!   not group 00, not serial 0000, not one digit repeated, not a number known from advertising
//!   or documentation. Nine bare digits are not matched: too many other things are nine digits.
//! - **Email**: `local@domain` where the domain has at least two labels, no empty label, no label
//!   starting or ending with `-`, and a top-level label of two or more letters.
//!
//! No regex engine. The caller's tokenizer ([`super::sweep`]) calls [`PiiScanner::digits`] at
//! the first digit of every digit run and [`PiiScanner::at_sign`] at every `@`: cards and SSNs
//! start at a digit after a non-word byte, IBANs two letters before a digit run, emails around
//! their `@`. From there each candidate is the match its former pattern (in [`PATTERNS`], the
//! reference implementation compiles them) would make, greedy and leftmost-first, and each rule
//! resumes after its previous match, as `find_iter` did. The work per trigger is bounded (at most
//! 19 digits for a card, 32 characters for an IBAN, the local part and domain for an email), so a
//! scan stays linear.

use std::ops::Range;

use super::{DataClass, DetectError};

/// The patterns the candidate finders implement (for the reference implementation and tests).
pub const PATTERNS: [(&str, DataClass, &str); 4] = [
    ("payment-card", DataClass::PaymentCard, r"(?-u)\b[0-9](?:[ -]?[0-9]){12,18}\b"),
    ("iban", DataClass::Iban, r"(?i-u)\b[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]){11,32}\b"),
    ("us-ssn", DataClass::UsSsn, r"(?-u)\b[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b"),
    ("email", DataClass::Email, r"(?-u)[0-9A-Za-z._%+-]+@[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)+"),
];

/// Per-scan state: where each rule may match next.
#[derive(Debug, Default)]
pub(crate) struct PiiState {
    card: usize,
    iban: usize,
    ssn: usize,
    email: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_digit_at(text: &[u8], i: usize) -> bool {
    text.get(i).is_some_and(u8::is_ascii_digit)
}

/// `\b` after a word character at `i - 1`: `text[i]` is not a word character.
fn ends_word(text: &[u8], i: usize) -> bool {
    !text.get(i).copied().is_some_and(is_word)
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The PII rules. Nothing to compile; kept as a type so the detector's shape stays as it was.
#[derive(Debug, Default)]
pub struct PiiScanner;

impl PiiScanner {
    pub fn new() -> Result<Self, DetectError> {
        Ok(Self)
    }

    /// Reports every PII value in `text` as (class, range).
    pub fn scan(&self, text: &[u8], report: &mut dyn FnMut(DataClass, Range<usize>)) {
        super::sweep(text, false, true, None, &mut |c, r| report(c, r));
    }

    /// At `p`, the first digit of a run of digits: cards and SSNs starting there, an IBAN
    /// starting two letters before.
    pub(crate) fn digits(&self, text: &[u8], p: usize, st: &mut PiiState, report: &mut dyn FnMut(DataClass, Range<usize>)) {
        let before = |k: usize| p.checked_sub(k).and_then(|i| text.get(i)).copied();
        if !before(1).is_some_and(is_word) {
            if p >= st.card
                && let Some(end) = card_candidate(text, p)
            {
                st.card = end;
                card_spans(text.get(p..end).unwrap_or_default(), &mut |r| report(DataClass::PaymentCard, p + r.start..p + r.end));
            }
            if p >= st.ssn && let Some(end) = ssn_candidate(text, p) {
                st.ssn = end;
                let m = text.get(p..end).unwrap_or_default();
                let left = p.checked_sub(2).and_then(|s| text.get(s..p));
                let right = text.get(end..end.saturating_add(2));
                if ssn_valid(m) && !continues_number(left, true) && !continues_number(right, false) {
                    report(DataClass::UsSsn, p..end);
                }
            }
        } else if before(1).is_some_and(|b| b.is_ascii_alphabetic())
            && before(2).is_some_and(|b| b.is_ascii_alphabetic())
            && !before(3).is_some_and(is_word)
            && p - 2 >= st.iban
            && is_digit_at(text, p + 1)
            && let Some(end) = iban_candidate(text, p - 2)
        {
            st.iban = end;
            let start = p - 2;
            if let Some(len) = iban_len(text.get(start..end).unwrap_or_default(), text.get(end..).unwrap_or_default()) {
                report(DataClass::Iban, start..start + len);
            }
        }
    }

    /// At `a`, an `@`: the email around it, if its pattern matches there.
    pub(crate) fn at_sign(&self, text: &[u8], a: usize, st: &mut PiiState, report: &mut dyn FnMut(DataClass, Range<usize>)) {
        if a < st.email {
            return;
        }
        // Leftmost start: the whole run of local-part characters before the `@`, back to the
        // end of the previous match.
        let local = text.get(st.email..a).map_or(0, |t| t.iter().rev().take_while(|&&b| is_email_local(b)).count());
        if local == 0 {
            return;
        }
        let start = a - local;
        // `[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)+`, greedy.
        let mut end = a + 1;
        while text.get(end).copied().is_some_and(is_label) {
            end += 1;
        }
        if end == a + 1 {
            return;
        }
        let mut labels = 0;
        while text.get(end) == Some(&b'.') && text.get(end + 1).copied().is_some_and(is_label) {
            end += 1;
            while text.get(end).copied().is_some_and(is_label) {
                end += 1;
            }
            labels += 1;
        }
        if labels == 0 {
            return;
        }
        st.email = end;
        if let Some(r) = email_span(text, start..end) {
            report(DataClass::Email, r);
        }
    }
}

/// `[0-9](?:[ -]?[0-9]){12,18}\b` at `p` (a digit after a non-word byte): the end of the
/// longest such match, 13 to 19 digits ending before a non-word byte.
fn card_candidate(text: &[u8], p: usize) -> Option<usize> {
    let mut digits = 0;
    let mut i = p;
    let mut best = None;
    loop {
        digits += 1;
        i += 1;
        if digits >= 13 && ends_word(text, i) {
            best = Some(i);
        }
        if digits == 19 {
            break;
        }
        if is_digit_at(text, i) {
            continue;
        }
        if matches!(text.get(i), Some(b' ' | b'-')) && is_digit_at(text, i + 1) {
            i += 1;
            continue;
        }
        break;
    }
    best
}

/// `[0-9]{3}[- .][0-9]{2}[- .][0-9]{4}\b` at `p`.
fn ssn_candidate(text: &[u8], p: usize) -> Option<usize> {
    let m = text.get(p..p.checked_add(11)?)?;
    let shape = m.iter().enumerate().all(|(i, &b)| if i == 3 || i == 6 { matches!(b, b'-' | b' ' | b'.') } else { b.is_ascii_digit() });
    (shape && ends_word(text, p + 11)).then_some(p + 11)
}

/// `[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]){11,32}\b` (case-insensitive) at `s`, where the letters and
/// digits are known to be there: the end of the longest match.
fn iban_candidate(text: &[u8], s: usize) -> Option<usize> {
    let mut i = s + 4;
    let mut best = None;
    for units in 1..=32 {
        if text.get(i).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        } else if text.get(i) == Some(&b' ') && text.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 2;
        } else {
            break;
        }
        if units >= 11 && ends_word(text, i) {
            best = Some(i);
        }
    }
    best
}

/// Whether the two bytes beside a match extend it into a longer number (`1-123-45-6789`,
/// `123-45-6789-1`): a separator followed by (or preceded by) a digit.
pub(crate) fn continues_number(side: Option<&[u8]>, before: bool) -> bool {
    match side {
        Some([a, b]) if before => a.is_ascii_digit() && matches!(b, b'-' | b'.'),
        Some([a, b]) => matches!(a, b'-' | b'.') && b.is_ascii_digit(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Payment cards

/// Reports the valid card numbers inside one candidate match, as ranges relative to it.
///
/// The pattern is greedy, so a card followed by more digit groups (`4111 1111 1111 1111 12`)
/// arrives as one longer candidate. If the whole candidate is not a card, spans of whole groups
/// are tried, longest first from each starting group; a span found valid is reported and the
/// search continues after it. At most 19 groups, so at most a few hundred checks of 19 digits.
pub fn card_spans(candidate: &[u8], report: &mut dyn FnMut(Range<usize>)) {
    // Group boundaries: (start, end) of each run of digits.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut sep: Option<u8> = None;
    let mut start = None;
    for (i, &b) in candidate.iter().enumerate() {
        if b.is_ascii_digit() {
            start.get_or_insert(i);
        } else {
            if let Some(s) = start.take() {
                groups.push((s, i));
            }
            // One kind of separator only: `4111 1111-1111 1111` is not a card as written.
            if *sep.get_or_insert(b) != b {
                return;
            }
        }
    }
    if let Some(s) = start {
        groups.push((s, candidate.len()));
    }
    let mut first = 0usize;
    while first < groups.len() {
        let mut found = None;
        for last in (first..groups.len()).rev() {
            let (Some(&(s, _)), Some(&(_, e))) = (groups.get(first), groups.get(last)) else { continue };
            if card_valid(candidate.get(s..e).unwrap_or_default()) {
                found = Some((last, s..e));
                break;
            }
        }
        match found {
            Some((last, range)) => {
                report(range);
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

/// Whether `number` (digits, possibly with separators) is a card number.
pub fn card_valid(number: &[u8]) -> bool {
    let mut buf = [0u8; 19];
    let mut len = 0usize;
    for &b in number.iter().filter(|b| b.is_ascii_digit()) {
        match buf.get_mut(len) {
            Some(d) => *d = b - b'0',
            None => return false,
        }
        len += 1;
    }
    if len < 13 {
        return false;
    }
    let digits = buf.get(..len).unwrap_or_default();
    if digits.iter().all(|&d| Some(&d) == digits.first()) {
        return false;
    }
    brand_accepts(digits) && luhn_valid(digits)
}

/// Luhn (ISO/IEC 7812-1 annex B) over digit values: from the right, double every second digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The first `n` digits as a number.
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits.iter().take(n).fold(0, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether a major brand issues numbers with this prefix and length (public IIN tables:
/// Visa, Mastercard incl. the 2-series, American Express, Discover, JCB, Diners Club, UnionPay,
/// Maestro).
fn brand_accepts(digits: &[u8]) -> bool {
    let len = digits.len();
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    let p6 = prefix(digits, 6);
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover = (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
        && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners = ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let maestro = (p2 == 50 || (56..=69).contains(&p2)) && (13..=19).contains(&len);
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

// ---------------------------------------------------------------------------------------------
// IBAN

/// IBAN length per country (SWIFT IBAN registry), for the countries in common use.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
    (b"BG", 22), (b"BH", 22), (b"BR", 29), (b"CH", 21), (b"CR", 22), (b"CY", 28), (b"CZ", 24),
    (b"DE", 22), (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24), (b"FI", 18),
    (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27),
    (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26),
    (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21),
    (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19),
    (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NL", 18), (b"NO", 15), (b"PK", 24), (b"PL", 28),
    (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"SA", 24), (b"SC", 31),
    (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"TN", 24), (b"TR", 26), (b"UA", 29),
    (b"VA", 22), (b"VG", 24), (b"XK", 20),
];

/// IBANs that documentation and standards use as their example; valid checksums, no account.
const IBAN_EXAMPLES: &[&[u8]] = &[
    // ECBS / Wikipedia's example.
    b"GB82WEST12345698765432",
    // The German example of most IBAN documentation.
    b"DE89370400440532013000",
];

/// If the candidate starts with a valid IBAN, its length in bytes (spaces included).
///
/// The pattern may run past the IBAN into following text (`DE89 … 00 EUR`), so the candidate is
/// cut at the country's length; what follows the cut must not continue the token.
pub(crate) fn iban_len(candidate: &[u8], after: &[u8]) -> Option<usize> {
    let cc = candidate.get(..2)?.to_ascii_uppercase();
    let &(_, want) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == cc.as_slice())?;
    let mut compact = Vec::with_capacity(want);
    let mut used = 0usize;
    for &b in candidate {
        if compact.len() == want {
            break;
        }
        used += 1;
        if b != b' ' {
            compact.push(b.to_ascii_uppercase());
        }
    }
    if compact.len() != want {
        return None;
    }
    // The character after the IBAN must not be alphanumeric (a space is fine: printed form).
    let next = candidate.get(used).or_else(|| after.first());
    if next.is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    if IBAN_EXAMPLES.contains(&compact.as_slice()) || !iban_checksum_ok(&compact) {
        return None;
    }
    Some(used)
}

/// ISO 7064 mod 97-10 over the rearranged IBAN (country and check digits moved to the end,
/// letters as 10..35): valid when the remainder is 1.
pub fn iban_checksum_ok(compact: &[u8]) -> bool {
    let (Some(head), Some(tail)) = (compact.get(..4), compact.get(4..)) else { return false };
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

// ---------------------------------------------------------------------------------------------
// US SSN

/// Numbers that look valid but are known from advertising and documentation (SSA: the Woolworth
/// wallet card 078-05-1120, 219-09-9999 from a Social Security pamphlet, the LifeLock
/// advertisement 457-55-5462; Presidio also refuses 123-45-6789).
const SSN_EXAMPLES: &[&[u8; 9]] = &[b"078051120", b"219099999", b"457555462", b"123456789"];

/// Whether `candidate` (`AAA?GG?SSSS`) is a possible SSN.
pub fn ssn_valid(candidate: &[u8]) -> bool {
    let (Some(&s1), Some(&s2)) = (candidate.get(3), candidate.get(6)) else { return false };
    if s1 != s2 {
        return false;
    }
    let digits: Vec<u8> = candidate.iter().copied().filter(u8::is_ascii_digit).collect();
    let [a1, a2, a3, g1, g2, s @ ..] = digits.as_slice() else { return false };
    let area = [*a1, *a2, *a3];
    if &area == b"000" || &area == b"666" || *a1 == b'9' {
        return false;
    }
    if [*g1, *g2] == *b"00" || s == b"0000" {
        return false;
    }
    if digits.iter().all(|&d| Some(&d) == digits.first()) {
        return false;
    }
    !SSN_EXAMPLES.iter().any(|e| e.as_slice() == digits.as_slice())
}

// ---------------------------------------------------------------------------------------------
// Email

/// The email inside the candidate match, trimmed and checked, or `None`.
pub(crate) fn email_span(text: &[u8], m: Range<usize>) -> Option<Range<usize>> {
    let candidate = text.get(m.clone())?;
    let at = candidate.iter().position(|&b| b == b'@')?;
    let local = candidate.get(..at)?;
    // Dots and dashes at the end of a domain are sentence punctuation, not the address.
    let domain_full = candidate.get(at + 1..)?;
    let domain_len = domain_full.len() - domain_full.iter().rev().take_while(|&&b| b == b'.' || b == b'-').count();
    let domain = domain_full.get(..domain_len)?;
    // A local part ends where a dot-run or the pattern's start says; leading dots are not part
    // of the address.
    let lead = local.iter().take_while(|&&b| b == b'.').count();
    let local = local.get(lead..)?;
    if local.is_empty() || local.len() > 64 || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    if domain.len() > 253 {
        return None;
    }
    let labels: Vec<&[u8]> = domain.split(|&b| b == b'.').collect();
    if labels.len() < 2 {
        return None;
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 || label.starts_with(b"-") || label.ends_with(b"-") {
            return None;
        }
    }
    let tld = labels.last()?;
    if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let start = m.start + lead;
    Some(start..start + local.len() + 1 + domain.len())
}

#[cfg(test)]
#[path = "pii_tests.rs"]
mod tests;
