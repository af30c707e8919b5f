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
        && !all_zero(trace)
        && !all_zero(parent);
    valid.then(|| trace.to_owned())
}

fn is_lower_hex(field: &str, len: usize) -> bool {
    field.len() == len && field.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zero(field: &str) -> bool {
    field.bytes().all(|b| b == b'0')
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
    fn length_bound_is_checked_before_parsing() {
        assert_eq!(trace_id(&"0".repeat(MAX_TRACEPARENT_LEN + 1)), None);
        assert_eq!(trace_id(&"-".repeat(1_000_000)), None);
    }
}
