//! W3C Trace Context `traceparent` (<https://www.w3.org/TR/trace-context/#traceparent-header>).
//!
//! The trace id only correlates decision records; it is client-chosen and never identity. An
//! invalid header is treated as absent (SECURITY.md, "Sessions and traces"), so this returns an
//! `Option` and no error.
//!
//! Only version `00` is accepted. The specification asks a parser that meets a *higher* version to
//! read the version-00 fields from its first 55 characters and ignore the rest; we do not: no later
//! version is published (Trace Context Level 2 still sends `00`), a client that sends one gains
//! nothing from it here, and SECURITY.md lists a wrong version among the values to drop. Version
//! `ff` is invalid by the specification in any case.
//!
//! Version `00` is exactly `vv-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, 55 characters,
//! lower-case hex only (the specification: "Vendors MUST ignore the traceparent when ... the
//! header is not in the expected format", and upper-case hex is not that format). The trace id and
//! the parent id must not be all zeros. Surrounding whitespace is not trimmed: Envoy already strips
//! optional whitespace from header values.

/// Longest header value even looked at. Nothing valid is longer than 55 characters; the bound
/// makes the refusal of huge values explicit and cheap.
pub const MAX_TRACEPARENT_LEN: usize = 512;

/// The 32-character lower-case hex trace id of a valid version-00 `traceparent`, else `None`.
#[must_use]
pub fn trace_id(value: &str) -> Option<String> {
    if value.len() > MAX_TRACEPARENT_LEN {
        return None;
    }
    // The fields sit at fixed offsets, and hex holds no `-`: cutting at the offsets accepts
    // exactly what splitting on `-` into four fields of these lengths would, without a search
    // per field (profiled: a tenth of a REST decision's instructions).
    let (version, rest) = value.split_at_checked(2)?;
    let (trace, rest) = rest.strip_prefix('-')?.split_at_checked(32)?;
    let (parent, rest) = rest.strip_prefix('-')?.split_at_checked(16)?;
    let flags = rest.strip_prefix('-')?;
    let valid = version == "00"
        && is_lower_hex(trace, 32)
        && is_lower_hex(parent, 16)
        && is_lower_hex(flags, 2)
        && trace.as_bytes() != [b'0'; 32]
        && parent.as_bytes() != [b'0'; 16];
    valid.then(|| trace.to_owned())
}

/// `field` is `len` lower-case hex digits. Eight bytes at a time (the trace and parent ids are
/// whole words): a per-byte range test profiled at most of `trace_id`'s time, a tenth of a REST
/// decision.
fn is_lower_hex(field: &str, len: usize) -> bool {
    if field.len() != len {
        return false;
    }
    let mut words = field.as_bytes().chunks_exact(8);
    let words_ok = words.all(|w| w.try_into().is_ok_and(|w| word_is_lower_hex(u64::from_le_bytes(w))));
    words_ok && words.remainder().iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every byte of `w` is `0-9` or `a-f`. For a byte `x` below 0x80, `x + (0x80 - lo)` has its high
/// bit set exactly when `x >= lo`, and `x + (0x7F - hi)` exactly when `x > hi`; neither sum
/// exceeds 0xFF, so no carry crosses into the next byte and the eight bytes are tested at once.
fn word_is_lower_hex(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    if w & HIGH != 0 {
        return false;
    }
    let at_least = |lo: u64| w.wrapping_add(ONES * (0x80 - lo));
    let above = |hi: u64| w.wrapping_add(ONES * (0x7F - hi));
    let digit = at_least(0x30) & !above(0x39);
    let lower = at_least(0x61) & !above(0x66);
    (digit | lower) & HIGH == HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn table() {
        let oversize = format!("{VALID}-{}", "a".repeat(MAX_TRACEPARENT_LEN));
        let cases: &[(&str, &str, bool)] = &[
            ("spec example, sampled", VALID, true),
            ("not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true),
            ("unknown flag bits are fine", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", true),
            ("empty", "", false),
            ("all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
            ("all-zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
            ("version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("future version, exact length", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("future version with extra field", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what", false),
            ("version 00 with extra field", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00", false),
            ("upper-case trace id", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
            ("upper-case parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", false),
            ("upper-case flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", false),
            ("non-hex in trace id", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false),
            ("trace id too short", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false),
            ("trace id too long", "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01", false),
            ("parent id too short", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", false),
            ("flags one digit", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", false),
            ("missing flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false),
            ("leading space", " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("trailing space", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", false),
            ("underscore separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false),
            ("non-ASCII digit", "00-4bf92f3577b34da6a3ce929d0e0e473٤-00f067aa0ba902b7-01", false),
            ("oversize", &oversize, false),
        ];
        for (name, value, ok) in cases {
            assert_eq!(trace_id(value), ok.then(|| TRACE.to_owned()), "case {name}");
        }
    }

    #[test]
    fn word_test_agrees_with_the_byte_test_for_every_byte() {
        let byte_ok = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        for b in 0..=u8::MAX {
            for pos in 0..8 {
                let mut w = *b"0123abcf";
                w[pos] = b;
                assert_eq!(word_is_lower_hex(u64::from_le_bytes(w)), byte_ok(b), "byte {b:#04x} at {pos}");
            }
        }
        assert!(is_lower_hex("0123456789abcdef01", 18));
        assert!(!is_lower_hex("0123456789abcdef0g", 18));
        assert!(!is_lower_hex("0123456789abcdef0", 18));
    }

    #[test]
    fn length_bound_is_checked_before_parsing() {
        assert_eq!(trace_id(&"0".repeat(MAX_TRACEPARENT_LEN + 1)), None);
        assert_eq!(trace_id(&"-".repeat(1_000_000)), None);
    }
}
