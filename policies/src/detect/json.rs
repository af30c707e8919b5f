//! Scanning a parsed JSON value: every string value and every object key, as decoded text.
//!
//! The document is either form of a strict parse ([`crate::json::parse_strict`]'s `Value`,
//! [`crate::json_doc::parse_doc`]'s `Doc`); objects are walked in the form's own member order.
//! Parsing already decoded the escapes, so `"\u0041KIA…"` arrives here as `AKIA…`. The strings
//! are joined with a NUL separator into one haystack and scanned once (one keyword pass and one
//! regex pass per rule for the whole document, not per string); no pattern matches across a NUL,
//! so a value split over two strings is not joined. Findings are reported per string, as an RFC
//! 6901 JSON pointer and a byte range inside the decoded string, which is what a redactor needs
//! to rewrite the value and re-serialize valid JSON.
//!
//! Numbers are not scanned: a card number sent as a JSON number is found by the raw-bytes scan
//! of the body ([`super::Detector::scan_bytes`]), which callers run as well when they hold the
//! bytes.

use std::ops::Range;

use crate::json_doc::JsonTree;

use super::{ClassCount, DataClass, Detector, Encoding, Finding, ScanError, summarize};

/// One finding inside a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFinding {
    pub class: DataClass,
    pub encoding: Encoding,
    /// RFC 6901 pointer to the string (for a key: to the member whose key it is). The pointer is
    /// made of the document's keys: fine for redaction, not for events (keys can carry data too).
    pub pointer: String,
    /// The finding is in an object key, not in a value.
    pub in_key: bool,
    /// Byte range inside the decoded string.
    pub range: Range<usize>,
}

/// The findings of one JSON scan, in the walk's order: strings as they come, objects in the
/// tree's own member order (a `Doc`'s as written, a `Value`'s sorted by key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonFindings {
    items: Vec<JsonFinding>,
}

impl JsonFindings {
    pub fn iter(&self) -> std::slice::Iter<'_, JsonFinding> {
        self.items.iter()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn count(&self, class: DataClass) -> usize {
        self.items.iter().filter(|f| f.class == class).count()
    }
    /// Class and count per class found: what an event may carry.
    pub fn summary(&self) -> Vec<ClassCount> {
        summarize(self.items.iter().map(|f| f.class))
    }
    pub fn into_vec(self) -> Vec<JsonFinding> {
        self.items
    }
}

/// A step of the path from the root to a string.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// What is left to do, on a walk's stack.
enum Frame<'a, T> {
    Enter(&'a T, Option<Step<'a>>),
    Key(&'a str),
    Leave,
}

/// A walk's path and stack, kept across the two or three walks one scan makes of a document.
struct Walker<'a, T> {
    path: Vec<Step<'a>>,
    stack: Vec<Frame<'a, T>>,
}

impl<'a, T: JsonTree> Walker<'a, T> {
    /// Sized for common documents once, rather than grown step by step.
    fn new() -> Self {
        Self { path: Vec::with_capacity(16), stack: Vec::with_capacity(32) }
    }

    /// Visits every key and string of `value` (each key right before its value) with the path to
    /// it, objects in the form's order (a `Doc`'s members as written, a `Value`'s sorted by key).
    /// Iterative: the parser bounds the depth, but nothing here needs the stack.
    fn walk(&mut self, value: &'a T, visit: &mut dyn FnMut(&'a str, bool, &[Step<'a>])) {
        let Self { path, stack } = self;
        path.clear();
        stack.clear();
        stack.push(Frame::Enter(value, None));
        while let Some(frame) = stack.pop() {
            match frame {
                Frame::Leave => {
                    path.pop();
                }
                Frame::Key(k) => {
                    path.push(Step::Key(k));
                    visit(k, true, path);
                    path.pop();
                }
                Frame::Enter(v, step) => {
                    if let Some(s) = step {
                        path.push(s);
                        stack.push(Frame::Leave);
                    }
                    if let Some(s) = v.as_str() {
                        visit(s, false, path);
                    } else if let Some(items) = v.items() {
                        for (i, item) in items.iter().enumerate().rev() {
                            stack.push(Frame::Enter(item, Some(Step::Index(i))));
                        }
                    } else {
                        // Objects (nothing for numbers, booleans and null).
                        v.members_rev(|k, item| {
                            stack.push(Frame::Enter(item, Some(Step::Key(k))));
                            stack.push(Frame::Key(k));
                        });
                    }
                }
            }
        }
    }
}

fn pointer(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

pub(super) fn scan_value<T: JsonTree>(detector: &Detector, value: &T) -> Result<JsonFindings, ScanError> {
    // The cap applies to the strings themselves (the separators are ours), checked before
    // anything is copied.
    let mut walker = Walker::new();
    let (mut total, mut strings) = (0usize, 0usize);
    walker.walk(value, &mut |s, _, _| {
        total = total.saturating_add(s.len());
        strings += 1;
    });
    detector.check_len(total)?;
    // Pass 1: the haystack and where each string starts in it.
    let mut haystack: Vec<u8> = Vec::with_capacity(total.saturating_add(strings));
    let mut starts: Vec<usize> = Vec::with_capacity(strings);
    walker.walk(value, &mut |s, _, _| {
        starts.push(haystack.len());
        haystack.extend_from_slice(s.as_bytes());
        haystack.push(0);
    });
    let mut found: Vec<Finding> = Vec::new();
    detector.scan_layer(&haystack, true, &mut found);
    if found.is_empty() {
        return Ok(JsonFindings::default());
    }
    // Which string each finding is in (by start offset), with the range made relative.
    let mut located: Vec<(usize, Finding)> = found
        .into_iter()
        .map(|f| {
            let idx = starts.partition_point(|&s| s <= f.range.start).saturating_sub(1);
            let base = starts.get(idx).copied().unwrap_or(0);
            let end_of_string = starts.get(idx + 1).map_or(haystack.len(), |&n| n.saturating_sub(1));
            let range = f.range.start - base..f.range.end.min(end_of_string).saturating_sub(base);
            (idx, Finding { range, ..f })
        })
        .collect();
    located.sort_by_key(|(idx, f)| (*idx, f.range.start));
    // Pass 2: the pointers of the strings that have findings.
    let mut items = Vec::with_capacity(located.len());
    let mut next = located.iter().peekable();
    let mut index = 0usize;
    walker.walk(value, &mut |_, in_key, path| {
        while let Some((idx, f)) = next.peek() {
            if *idx != index {
                break;
            }
            items.push(JsonFinding {
                class: f.class,
                encoding: f.encoding,
                pointer: pointer(path),
                in_key,
                range: f.range.clone(),
            });
            next.next();
        }
        index += 1;
    });
    Ok(JsonFindings { items })
}


#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
