//! The view detectors match on: one linear pass that undoes the cheap obfuscations.
//!
//! - **JSON string escapes** (RFC 8259 §7): `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` and
//!   `\uXXXX`, with UTF-16 surrogate pairs joined. A lone surrogate or a malformed escape is left
//!   as it is. Decoding is applied everywhere in the input, not only inside JSON strings: in a
//!   non-JSON body a stray backslash sequence only changes what we look at, never what is sent.
//!   One level only: `\\u0041` decodes to the six characters `\u0041`, as a JSON parser would.
//! - **Fullwidth ASCII**, U+FF01–U+FF5E, to U+0021–U+007E, and the ideographic space U+3000 to a
//!   space: the part of NFKC that turns `ＡＫＩＡ…` back into `AKIA…`. Other compatibility
//!   mappings (ligatures, superscripts, homoglyphs from other scripts) are out of scope.
//! - **Zero-width characters** removed: U+200B ZERO WIDTH SPACE, U+200C ZWNJ, U+200D ZWJ, U+2060
//!   WORD JOINER, U+FEFF ZERO WIDTH NO-BREAK SPACE (BOM).
//!
//! Escape decoding runs first, so `\uff21` and `\u200b` are mapped or dropped too. Input that is
//! not UTF-8 is copied byte for byte. The output is never longer than the input (every mapping
//! shrinks or keeps the length).
//!
//! Cost: a search, eight bytes at a time, for a backslash or one of the lead bytes `E2`, `E3`,
//! `EF` these characters start with; text with none (the common case) is returned as it is.
//! Otherwise the same search finds each next candidate and the spans between changes are copied
//! whole; text whose candidates
//! all turn out to be other characters (`—`, `“`, `é`…) is still returned uncopied. The offset
//! map keeps two entries per change, not one per byte.

use std::borrow::Cow;
use std::ops::Range;

/// Where output byte offsets come from: from `out` on, the output follows the input from `input`
/// byte for byte (`linear`), or every byte comes from the one character at `input` (a mapped
/// character).
#[derive(Debug, Clone, Copy)]
struct Break {
    out: u32,
    input: u32,
    linear: bool,
}

/// The normalized text and, when it differs from the input, where each byte came from.
#[derive(Debug)]
pub struct Normalized<'a> {
    text: Cow<'a, [u8]>,
    /// Breakpoints in increasing `out` (later entries win at an equal `out`), and the input
    /// length. `None` when the text is the input.
    map: Option<(Vec<Break>, u32)>,
}

impl Normalized<'_> {
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The input offset of the character that produced output byte `i`; the input length for
    /// `i == text.len()`.
    fn origin(&self, i: usize) -> usize {
        let Some((breaks, input_len)) = &self.map else { return i };
        if i >= self.text.len() {
            return *input_len as usize;
        }
        let at = breaks.partition_point(|b| b.out as usize <= i);
        match at.checked_sub(1).and_then(|k| breaks.get(k)) {
            Some(b) if b.linear => b.input as usize + (i - b.out as usize),
            Some(b) => b.input as usize,
            None => i,
        }
    }

    /// The input range that produced `range` of the text: from the first contributing
    /// character to the start of the character after the last one (so invisible characters
    /// removed from the inside of a match, or right after it, are covered).
    pub fn original_range(&self, range: Range<usize>) -> Range<usize> {
        self.origin(range.start)..self.origin(range.end)
    }
}

/// Whether `b` may start something the normalizer changes: a backslash (an escape) or the lead
/// byte of U+2000–U+2FFF (`E2`: zero-width characters, the word joiner), U+3000–U+3FFF (`E3`: the
/// ideographic space) or U+F000–U+FFFF (`EF`: fullwidth forms, the BOM).
fn is_candidate(b: u8) -> bool {
    matches!(b, b'\\' | 0xE2 | 0xE3 | 0xEF)
}

/// The first candidate byte at or after `from`. Eight bytes at a time: a word with no backslash
/// and no byte of 0x80 or more is skipped whole (plain ASCII prose costs a few operations per
/// eight bytes; inside wasm there is no SIMD to do better).
fn next_candidate(input: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const BACKSLASH: u64 = LO * b'\\' as u64;
    let rest = input.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for w in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(w);
        let x = u64::from_le_bytes(buf);
        // Zero bytes of `x ^ BACKSLASH` are backslashes (the classic has-zero-byte test).
        let y = x ^ BACKSLASH;
        if ((y.wrapping_sub(LO) & !y & HI) != 0 || x & HI != 0)
            && let Some(i) = w.iter().position(|&b| is_candidate(b))
        {
            return Some(at + i);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| is_candidate(b)).map(|i| at + i)
}

/// Normalizes `input` (see the module documentation). Inputs of 4 GiB or more are returned
/// unchanged: every caller caps its input far below that.
pub fn normalize(input: &[u8]) -> Normalized<'_> {
    let Ok(input_len) = u32::try_from(input.len()) else {
        return Normalized { text: Cow::Borrowed(input), map: None };
    };
    let Some(first) = next_candidate(input, 0) else {
        return Normalized { text: Cow::Borrowed(input), map: None };
    };
    // Output so far and its map; both start only at the first change.
    let mut text: Vec<u8> = Vec::new();
    let mut breaks: Vec<Break> = Vec::new();
    // Input consumed into `text` (everything before it is copied or mapped).
    let mut copied = 0usize;
    let mut changed = false;
    let mut next = Some(first);
    while let Some(i) = next {
        let Some(&b) = input.get(i) else { break };
        let decoded = if b == b'\\' { json_escape(input, i) } else { utf8_char(input, i) };
        let Some((c, used)) = decoded else {
            next = next_candidate(input, i + 1);
            continue;
        };
        let mapped = map_char(c);
        // A multi-byte character that maps to itself (not an escape) is no change.
        if b != b'\\' && mapped == Some(c) {
            next = next_candidate(input, i + used);
            continue;
        }
        if !changed {
            changed = true;
            text.reserve(input.len());
            breaks.push(Break { out: 0, input: 0, linear: true });
        }
        text.extend_from_slice(input.get(copied..i).unwrap_or_default());
        // `i` < input.len() <= u32::MAX and the output is never longer than the input.
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        let out = u32::try_from(text.len()).unwrap_or(u32::MAX);
        if let Some(m) = mapped {
            breaks.push(Break { out, input: at, linear: false });
            let mut buf = [0u8; 4];
            text.extend_from_slice(m.encode_utf8(&mut buf).as_bytes());
        }
        let after = i + used;
        copied = after;
        let out = u32::try_from(text.len()).unwrap_or(u32::MAX);
        breaks.push(Break { out, input: u32::try_from(after).unwrap_or(u32::MAX), linear: true });
        next = next_candidate(input, after);
    }
    if !changed {
        return Normalized { text: Cow::Borrowed(input), map: None };
    }
    text.extend_from_slice(input.get(copied..).unwrap_or_default());
    Normalized { text: Cow::Owned(text), map: Some((breaks, input_len)) }
}

/// The character after fullwidth folding, or `None` for a zero-width character (dropped).
fn map_char(c: char) -> Option<char> {
    match c {
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => None,
        '\u{3000}' => Some(' '),
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFF01 + 0x21),
        _ => Some(c),
    }
}

/// Decodes one UTF-8 character at `i` (a non-ASCII lead byte), or `None` if invalid there.
fn utf8_char(input: &[u8], i: usize) -> Option<(char, usize)> {
    let lead = *input.get(i)?;
    let len = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let bytes = input.get(i..i.checked_add(len)?)?;
    let s = std::str::from_utf8(bytes).ok()?;
    s.chars().next().map(|c| (c, len))
}

/// Decodes one JSON escape at `i` (which holds a backslash): the character and the bytes used.
fn json_escape(input: &[u8], i: usize) -> Option<(char, usize)> {
    let c = match *input.get(i.checked_add(1)?)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{C}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(input, i.checked_add(2)?)?;
            if (0xD800..0xDC00).contains(&hi) {
                // A high surrogate must be followed by `\u` and a low surrogate.
                let j = i.checked_add(6)?;
                if input.get(j) != Some(&b'\\') || input.get(j.checked_add(1)?) != Some(&b'u') {
                    return None;
                }
                let lo = hex4(input, j.checked_add(2)?)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return None;
                }
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(cp).map(|c| (c, 12));
            }
            return char::from_u32(hi).map(|c| (c, 6));
        }
        _ => return None,
    };
    Some((c, 2))
}

fn hex4(input: &[u8], at: usize) -> Option<u32> {
    let digits = input.get(at..at.checked_add(4)?)?;
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes()).text().to_vec()).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain ascii is untouched", "AKIA key", "AKIA key"),
            ("json newline escape", r"a\nb", "a\nb"),
            ("escaped slash", r"https:\/\/x", "https://x"),
            ("unicode escape", r"\u0041KIA", "AKIA"),
            ("surrogate pair", r"\ud83d\ude00", "\u{1F600}"),
            ("lone surrogate kept", r"\ud83dx", r"\ud83dx"),
            ("bad escape kept", r"\q\u12", r"\q\u12"),
            ("one level only", r"\\u0041", r"\u0041"),
            ("fullwidth", "ＡＫＩＡ１２", "AKIA12"),
            ("ideographic space", "a\u{3000}b", "a b"),
            ("zero width removed", "A\u{200B}K\u{200C}I\u{200D}A\u{2060}\u{FEFF}", "AKIA"),
            ("escaped zero width removed", r"A\u200bKIA", "AKIA"),
            ("escaped fullwidth mapped", r"\uff21KIA", "AKIA"),
            ("other non-ascii kept", "café — ok", "café — ok"),
        ];
        for (name, input, want) in cases {
            assert_eq!(norm(input), *want, "{name}");
        }
    }

    #[test]
    fn invalid_utf8_is_copied() {
        let input = b"\xEF\xBC abc \xE2\x80";
        assert_eq!(normalize(input).text(), input);
    }

    #[test]
    fn ranges_map_back_to_input() {
        let input = "x A\u{200B}KIA y";
        let n = normalize(input.as_bytes());
        let text = n.text();
        let start = text.windows(4).position(|w| w == b"AKIA").unwrap();
        let r = n.original_range(start..start + 4);
        assert_eq!(&input[r], "A\u{200B}KIA");

        let input = r#"{"k":"\u0041KIA"}"#;
        let n = normalize(input.as_bytes());
        let start = n.text().windows(4).position(|w| w == b"AKIA").unwrap();
        assert_eq!(&input[n.original_range(start..start + 4)], r"\u0041KIA");
    }

    #[test]
    fn never_longer_than_input() {
        for input in ["\\u0041", "ＡＡ", "\u{200B}", "\\n", "\\ud83d\\ude00"] {
            assert!(normalize(input.as_bytes()).text().len() <= input.len(), "{input}");
        }
    }
}
