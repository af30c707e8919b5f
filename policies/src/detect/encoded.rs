//! Base64-wrapped values: find plausible base64 or base64url runs and decode them for one more
//! scan.
//!
//! A run is a maximal sequence of `[A-Za-z0-9+/_-]` (plus up to two `=`) of at least
//! [`MIN_RUN`] characters that does not mix the two alphabets (`+/` with `-_`). It is decoded with
//! padding optional and trailing bits allowed (a run cut from a longer text need not be
//! canonical). The run is decoded from its first character only: base64 that starts in the middle
//! of a word (`tokenQUtJQ…`) decodes to noise and is not found; runs in JSON strings, headers and
//! `key=value` pairs are delimited and decode from the right place.
//!
//! Bounded: runs do not overlap, so all decoded output together is at most ¾ of the input, and
//! the caller scans it once without decoding again.

use std::ops::Range;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Shortest run worth decoding: 20 characters are 15 bytes, as short as the shortest values the
/// detectors look for (an AWS key id is 20 bytes).
pub const MIN_RUN: usize = 20;

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// The runs in `text`, in order, each including its trailing `=` padding.
pub fn base64_runs(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        while i < text.len() {
            let start = i;
            while text.get(i).is_some_and(|&b| is_b64(b)) {
                i += 1;
            }
            let body_end = i;
            let mut pad = 0;
            while pad < 2 && text.get(i) == Some(&b'=') {
                i += 1;
                pad += 1;
            }
            if body_end == start {
                // Not a run character (or a lone `=`): step over it.
                i = i.max(start + 1);
                continue;
            }
            if body_end - start >= MIN_RUN {
                return Some(start..i);
            }
        }
        None
    })
}

fn engine(url_safe: bool) -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    if url_safe { GeneralPurpose::new(&alphabet::URL_SAFE, config) } else { GeneralPurpose::new(&alphabet::STANDARD, config) }
}

/// Decodes one run, or `None` if it mixes alphabets or is not base64 after all.
pub fn decode(run: &[u8]) -> Option<Vec<u8>> {
    let body_len = run.iter().position(|&b| b == b'=').unwrap_or(run.len());
    let body = run.get(..body_len)?;
    let standard = body.iter().any(|&b| matches!(b, b'+' | b'/'));
    let url = body.iter().any(|&b| matches!(b, b'-' | b'_'));
    if standard && url {
        return None;
    }
    // A length of 1 mod 4 cannot be base64: drop the last character (the run may have picked up
    // one letter of the text after it).
    let body = if body.len() % 4 == 1 { body.get(..body.len() - 1)? } else { body };
    engine(url).decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_runs() {
        let text = b"a QUtJQVo3UTNNWEtENFBMVzJSWVQ= b short:abc x-y_z/w";
        let runs: Vec<_> = base64_runs(text).map(|r| &text[r]).collect();
        assert_eq!(runs, vec![&b"QUtJQVo3UTNNWEtENFBMVzJSWVQ="[..]]);
    }

    #[test]
    fn decodes_both_alphabets_with_or_without_padding() {
        assert_eq!(decode(b"aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode(b"aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(decode(b"-_-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        assert!(decode(b"ab+/cd-_").is_none(), "mixed alphabets");
    }

    #[test]
    fn equals_signs_alone_do_not_loop() {
        assert_eq!(base64_runs(b"====== ==").count(), 0);
    }
}
