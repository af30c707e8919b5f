//! Path templates, host patterns, and the segment trie that indexes rules by path.
//!
//! A template is `/`-separated: a literal segment matches itself, `{name}` or `*` matches exactly
//! one segment, and `**` (only as the last segment) matches any number of segments, including
//! none (`/api/admin/**` matches `/api/admin`, `/api/admin/users/7`).
//!
//! The trie makes a lookup cost O(segments of the request path) hash probes, whatever the number
//! of rules: each node holds a hash map of literal children, at most one single-segment wildcard
//! child, and the values of templates that end there or continue with `**`. A request walks the
//! literal child and the wildcard child at each level, so it visits at most the nodes on the
//! paths that can match it; that is bounded by the trie, not by the rule count.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::index::List;

/// The hash maps of the compiled policy. Their keys come from the policy, never from requests, so
/// a request can only probe them and cannot degrade them (no flooding to defend against): a
/// multiply-rotate hash (FxHash, as rustc uses) instead of SipHash, which profiled as a quarter
/// of a REST decision (one probe per path segment per table walked), and no per-map random
/// state.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// FxHash: one rotate, xor and multiply per 8 bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(rest.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b)));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// One segment of a compiled template, read from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Matches this text exactly (or case-folded, in a case-folding trie).
    Literal(&'a str),
    /// `{name}` or `*`: one segment.
    One,
    /// `**`: any number of segments, last only.
    Tail,
}

impl<'a> Segment<'a> {
    /// The segment a part of a template that [`PathTemplate::parse`] accepted stands for.
    fn of(part: &'a str) -> Self {
        match part {
            "**" => Self::Tail,
            "*" => Self::One,
            p if p.starts_with('{') => Self::One,
            p => Self::Literal(p),
        }
    }
}

/// A parsed path template. Only its text is kept: the segments are read from it as they are
/// walked (a list of them was a vector and a string per literal, in every rule with a path and in
/// every wasm VM, issue 7), and the path tries hold their own copy of the literals anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// As written in the policy, and checked; shared with the decisions that name it as their
    /// route.
    pub text: Arc<str>,
}

/// The segments of a checked template text.
fn segments_of(text: &str) -> impl Iterator<Item = Segment<'_>> {
    text.strip_prefix('/').filter(|r| !r.is_empty()).into_iter().flat_map(|r| r.split('/')).map(Segment::of)
}

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

/// Characters allowed in a literal template segment: RFC 3986 `pchar` without `%` (templates are
/// written decoded) and without `;` (matrix parameters are refused in requests anyway).
fn literal_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,=:@".contains(c)
}

impl PathTemplate {
    /// Parses and validates a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let rest = text.strip_prefix('/').ok_or_else(|| TemplateError("must start with '/'".into()))?;
        if text.len() > 1024 {
            return Err(TemplateError("longer than 1024 bytes".into()));
        }
        if rest.is_empty() {
            return Ok(Self { text: Arc::from(text) });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "" => return Err(TemplateError("empty segment ('//' or a trailing '/')".into())),
                "**" if i == last => {}
                "**" => return Err(TemplateError("'**' may only be the last segment".into())),
                "*" => {}
                "." | ".." => return Err(TemplateError(format!("dot segment {part:?}"))),
                p if p.starts_with('{') => {
                    let name = p
                        .strip_prefix('{')
                        .and_then(|p| p.strip_suffix('}'))
                        .ok_or_else(|| TemplateError(format!("unclosed parameter {p:?}")))?;
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(TemplateError(format!("parameter name {name:?} must be [A-Za-z0-9_]+")));
                    }
                }
                p => {
                    if let Some(bad) = p.chars().find(|c| !literal_char_ok(*c)) {
                        return Err(TemplateError(format!("character {bad:?} not allowed in segment {p:?}")));
                    }
                    if p.ends_with('.') {
                        return Err(TemplateError(format!("segment {p:?} ends with '.'")));
                    }
                }
            }
        }
        Ok(Self { text: Arc::from(text) })
    }

    /// The segments, in order (none for `/`).
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        segments_of(&self.text)
    }
}

/// A segment trie from templates to values. Most tables of a compiled policy hold no path rule
/// or a few (an agent's grants): up to [`FEW_TEMPLATES`] templates are kept as they are, their
/// text shared with the rule (one 24-byte entry natively, where a trie of `/svc7/items/{id}` was
/// seven heap blocks and ~220 bytes, in every wasm VM), and a lookup matches them one by one;
/// beyond that they move into a trie, whose walk costs the same however many templates it holds.
#[derive(Debug, Clone)]
pub struct PathTrie<T> {
    root: Root<T>,
}

#[derive(Debug, Clone)]
enum Root<T> {
    /// Templates (their text, folded when the trie is) and values, in insertion order.
    Few(Box<[(Arc<str>, T)]>),
    Trie(Box<Node<T>>),
}

/// [`text_matches`] over a canonical path (`/a/b`, `/` for the root), both split as they are
/// compared, byte by byte: this runs for every template of a small table on every request.
fn text_matches_path(text: &str, path: &str) -> bool {
    fn rest(s: &str) -> Option<&str> {
        s.strip_prefix('/').filter(|r| !r.is_empty())
    }
    let (mut t, mut p) = (rest(text), rest(path));
    while let Some(tr) = t {
        let (tseg, tnext) = crate::path::split_first_segment(tr);
        if tseg == "**" {
            return true;
        }
        let Some(pr) = p else { return false };
        let (pseg, pnext) = crate::path::split_first_segment(pr);
        if !(tseg == pseg || tseg == "*" || tseg.starts_with('{')) {
            return false;
        }
        (t, p) = (tnext, pnext);
    }
    p.is_none()
}

/// Templates a table holds before it becomes a trie: each is matched on every lookup. Two: an
/// agent's path table holds one or two templates in large generated policies, and at four the
/// demo policy's REST decision (its agent's four templates matched one by one) measured ~10%
/// slower than walking their trie, at two the same (`cargo bench --bench engine`, alternated).
const FEW_TEMPLATES: usize = 2;

/// Whether a template's text (checked by [`PathTemplate::parse`]) matches these segments, as the
/// trie walk does: literals exactly, `{name}` and `*` one segment, `**` whatever is left.
fn text_matches<'p>(text: &str, mut segments: impl Iterator<Item = &'p str>) -> bool {
    for seg in segments_of(text) {
        match seg {
            Segment::Tail => return true,
            Segment::One => {
                if segments.next().is_none() {
                    return false;
                }
            }
            Segment::Literal(l) => {
                if segments.next() != Some(l) {
                    return false;
                }
            }
        }
    }
    segments.next().is_none()
}

/// A node is 32 bytes natively (96 with its value lists and a hash table inline): a compiled
/// policy holds a few per path rule, in every wasm VM.
#[derive(Debug, Clone)]
struct Node<T> {
    literal: Children<T>,
    one: Option<Box<Node<T>>>,
    /// Values of templates that end here; allocated only where one does (most nodes lead to
    /// others).
    ends: Option<Box<Ends<T>>>,
}

/// Values of templates that end at a node: nearly always one template, held inline by [`List`].
#[derive(Debug, Clone)]
struct Ends<T> {
    /// Values of templates ending exactly here.
    exact: List<T>,
    /// Values of templates ending here with `**`.
    tail: List<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self { literal: Children::Few(Box::default()), one: None, ends: None }
    }
}

impl<T> Node<T> {
    fn exact(&self) -> &[T] {
        self.ends.as_deref().map_or(&[], |e| &e.exact)
    }

    fn tail(&self) -> &[T] {
        self.ends.as_deref().map_or(&[], |e| &e.tail)
    }

    fn ends_mut(&mut self) -> &mut Ends<T> {
        self.ends.get_or_insert_with(|| Box::new(Ends { exact: List::EMPTY, tail: List::EMPTY }))
    }
}

/// Most trie nodes have one or two literal children (`/svc7/items/{id}`: one each), and a hash
/// table of one entry costs four buckets of key and node: up to [`FEW_CHILDREN`] they sit in an
/// exact-size slice that a lookup scans (a length check rejects most), beyond that in a table.
#[derive(Debug, Clone)]
enum Children<T> {
    Few(Box<[(Box<str>, Node<T>)]>),
    Many(Box<FastMap<Box<str>, Node<T>>>),
}

const FEW_CHILDREN: usize = 8;

impl<T> Children<T> {
    fn get(&self, segment: &str) -> Option<&Node<T>> {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| **k == *segment).map(|(_, n)| n),
            Self::Many(m) => m.get(segment),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Few(v) => v.is_empty(),
            Self::Many(m) => m.is_empty(),
        }
    }

    /// The child for `segment`, created if missing.
    fn child_mut(&mut self, segment: &str) -> Option<&mut Node<T>> {
        if let Self::Few(v) = self
            && !v.iter().any(|(k, _)| **k == *segment)
        {
            let mut grown = std::mem::take(v).into_vec();
            if grown.len() >= FEW_CHILDREN {
                grown.push((segment.into(), Node::default()));
                *self = Self::Many(Box::new(grown.into_iter().collect()));
            } else {
                grown.reserve_exact(1);
                grown.push((segment.into(), Node::default()));
                *v = grown.into_boxed_slice();
            }
        }
        match self {
            Self::Few(v) => v.iter_mut().find(|(k, _)| **k == *segment).map(|(_, n)| n),
            Self::Many(m) => Some(m.entry(segment.into()).or_default()),
        }
    }
}

/// No templates; no allocation.
impl<T> Default for PathTrie<T> {
    fn default() -> Self {
        Self { root: Root::Few(Box::default()) }
    }
}

impl<T: Copy> PathTrie<T> {
    /// Gives back the growth slack of every node's lists, once all templates are in.
    pub fn shrink_to_fit(&mut self) {
        fn shrink<T: Copy>(node: &mut Node<T>) {
            if let Some(ends) = node.ends.as_deref_mut() {
                ends.exact.shrink_to_fit();
                ends.tail.shrink_to_fit();
            }
            if let Some(one) = node.one.as_deref_mut() {
                shrink(one);
            }
            match &mut node.literal {
                Children::Few(v) => v.iter_mut().for_each(|(_, n)| shrink(n)),
                Children::Many(m) => {
                    m.shrink_to_fit();
                    m.values_mut().for_each(shrink);
                }
            }
        }
        if let Root::Trie(root) = &mut self.root {
            shrink(root);
        }
    }

    /// True when no template was inserted (most scopes have no path rules of one effect).
    pub fn is_empty(&self) -> bool {
        match &self.root {
            Root::Few(v) => v.is_empty(),
            Root::Trie(r) => r.literal.is_empty() && r.one.is_none() && r.exact().is_empty() && r.tail().is_empty(),
        }
    }

    /// Adds `value` under `template`, its literal segments lower-cased when `fold` (the
    /// case-folding deny tables, walked with the folded path).
    pub fn insert(&mut self, template: &PathTemplate, fold: bool, value: T) {
        let text = if fold && template.text.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(template.text.to_ascii_lowercase())
        } else {
            Arc::clone(&template.text)
        };
        if let Root::Few(v) = &mut self.root {
            let mut grown = std::mem::take(v).into_vec();
            if grown.len() < FEW_TEMPLATES {
                grown.reserve_exact(1);
                grown.push((text, value));
                *v = grown.into_boxed_slice();
                return;
            }
            // Folded already: moved as they are.
            let mut root = Box::<Node<T>>::default();
            for (text, value) in grown {
                Self::insert_node(&mut root, &text, value);
            }
            self.root = Root::Trie(root);
        }
        if let Root::Trie(root) = &mut self.root {
            Self::insert_node(root, &text, value);
        }
    }

    /// Adds `value` under the template whose (folded if need be) text is `text`.
    fn insert_node(root: &mut Node<T>, text: &str, value: T) {
        let mut node = root;
        for seg in segments_of(text) {
            match seg {
                Segment::Literal(l) => match node.literal.child_mut(l) {
                    Some(next) => node = next,
                    None => return,
                },
                Segment::One => node = node.one.get_or_insert_with(Default::default),
                Segment::Tail => {
                    node.ends_mut().tail.push(value);
                    return;
                }
            }
        }
        node.ends_mut().exact.push(value);
    }

    /// Calls `found` with every value whose template matches `segments`, and the template depth
    /// walked (for tie-breaking). Segments must already be folded when the trie is.
    pub fn lookup<'a>(&'a self, segments: &[&str], found: &mut impl FnMut(&'a T)) {
        match &self.root {
            Root::Few(v) => v.iter().filter(|(t, _)| text_matches(t, segments.iter().copied())).for_each(|(_, x)| found(x)),
            Root::Trie(root) => Self::walk(root, segments, found),
        }
    }

    /// [`PathTrie::lookup`] over a canonical path (`/a/b`, `/` for the root), split as the walk
    /// goes: no segment list is built per request.
    pub fn lookup_path<'a>(&'a self, path: &str, found: &mut impl FnMut(&'a T)) {
        match &self.root {
            Root::Few(v) => v.iter().filter(|(t, _)| text_matches_path(t, path)).for_each(|(_, x)| found(x)),
            Root::Trie(root) => Self::walk_path(root, path.strip_prefix('/').filter(|p| !p.is_empty()), found),
        }
    }

    /// `rest` is what is left of the path after a `/`, or `None` when no segment is left.
    fn walk_path<'a>(node: &'a Node<T>, rest: Option<&str>, found: &mut impl FnMut(&'a T)) {
        node.tail().iter().for_each(&mut *found);
        match rest {
            None => node.exact().iter().for_each(&mut *found),
            Some(rest) => {
                let (head, tail) = crate::path::split_first_segment(rest);
                if let Some(child) = node.literal.get(head) {
                    Self::walk_path(child, tail, found);
                }
                if let Some(child) = &node.one {
                    Self::walk_path(child, tail, found);
                }
            }
        }
    }

    fn walk<'a>(node: &'a Node<T>, rest: &[&str], found: &mut impl FnMut(&'a T)) {
        node.tail().iter().for_each(&mut *found);
        match rest.split_first() {
            None => node.exact().iter().for_each(&mut *found),
            Some((head, tail)) => {
                if let Some(child) = node.literal.get(head) {
                    Self::walk(child, tail, found);
                }
                if let Some(child) = &node.one {
                    Self::walk(child, tail, found);
                }
            }
        }
    }
}

/// A host pattern: exact, or `*.suffix` matching one or more labels before the suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    /// Parses a pattern (case-folded).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let t = text.to_ascii_lowercase();
        let ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        if let Some(suffix) = t.strip_prefix("*.") {
            if ok(suffix) {
                return Ok(Self::Suffix(format!(".{suffix}")));
            }
        } else if ok(&t) {
            return Ok(Self::Exact(t));
        }
        Err(TemplateError("host must be DNS labels, optionally after a leading '*.'".into()))
    }

    /// Does `host` (lower case, no port, no trailing dot) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(trie: &PathTrie<&'static str>, path: &str) -> Vec<&'static str> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let mut out = Vec::new();
        trie.lookup(&segs, &mut |v| out.push(*v));
        out.sort_unstable();
        // Walking the path string finds the same values as walking its segments.
        let mut by_path = Vec::new();
        trie.lookup_path(path, &mut |v| by_path.push(*v));
        by_path.sort_unstable();
        assert_eq!(by_path, out, "{path}");
        out
    }

    #[test]
    fn templates_parse_or_name_the_problem() {
        for (name, text, ok) in [
            ("root", "/", true),
            ("literal", "/api/customers", true),
            ("param", "/api/customers/{id}", true),
            ("star", "/api/*/x", true),
            ("tail", "/api/admin/**", true),
            ("tail not last", "/api/**/x", false),
            ("no slash", "api", false),
            ("empty segment", "/api//x", false),
            ("trailing slash", "/api/", false),
            ("dot", "/api/./x", false),
            ("dotdot", "/api/../x", false),
            ("unclosed", "/api/{id", false),
            ("bad name", "/api/{i-d}", false),
            ("percent", "/api/%2f", false),
            ("semicolon", "/api;x", false),
            ("trailing dot", "/api/x.", false),
        ] {
            assert_eq!(PathTemplate::parse(text).is_ok(), ok, "{name}: {text}");
        }
    }

    #[test]
    fn trie_matches_literals_params_and_tails() {
        let mut t = PathTrie::default();
        for (tpl, v) in [
            ("/api/customers", "list"),
            ("/api/customers/{id}", "one"),
            ("/api/admin/**", "admin"),
            ("/**", "all"),
            ("/", "root"),
        ] {
            t.insert(&PathTemplate::parse(tpl).unwrap(), false, v);
        }
        assert_eq!(lookup(&t, "/api/customers"), ["all", "list"]);
        assert_eq!(lookup(&t, "/api/customers/7"), ["all", "one"]);
        assert_eq!(lookup(&t, "/api/customers/7/x"), ["all"]);
        assert_eq!(lookup(&t, "/api/admin"), ["admin", "all"]);
        assert_eq!(lookup(&t, "/api/admin/users/1"), ["admin", "all"]);
        assert_eq!(lookup(&t, "/"), ["all", "root"]);
        assert_eq!(lookup(&t, "/API/admin"), ["all"]);
    }

    /// The few-templates form and the trie (a table of more than [`FEW_TEMPLATES`]) find the
    /// values of exactly the templates that match, folded or not, against an independent
    /// segment-by-segment reference.
    #[test]
    fn few_templates_and_the_trie_find_what_matches() {
        fn reference(t: &str, path: &str, fold: bool) -> bool {
            fn go(ts: &[&str], ps: &[&str], fold: bool) -> bool {
                match (ts.first(), ps.first()) {
                    (Some(&"**"), _) | (None, None) => true,
                    (None, Some(_)) | (Some(_), None) => false,
                    (Some(t), Some(p)) => {
                        (*t == "*" || t.starts_with('{') || if fold { t.eq_ignore_ascii_case(p) } else { t == p }) && go(&ts[1..], &ps[1..], fold)
                    }
                }
            }
            let ts: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
            let ps: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            go(&ts, &ps, fold)
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let template_segments = ["a", "B", "b", "{id}", "*", "c"];
        let path_segments = ["a", "b", "B", "c", "x"];
        let (mut tries, mut found) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + next(3 * FEW_TEMPLATES);
            let fold = next(2) == 0;
            let templates: Vec<String> = (0..n)
                .map(|_| {
                    let k = next(4);
                    let mut t: String = (0..k).map(|_| format!("/{}", template_segments[next(template_segments.len())])).collect();
                    if next(3) == 0 {
                        t.push_str("/**");
                    }
                    if t.is_empty() { "/".into() } else { t }
                })
                .collect();
            let mut trie = PathTrie::default();
            for (i, t) in templates.iter().enumerate() {
                trie.insert(&PathTemplate::parse(t).unwrap(), fold, i);
            }
            tries += usize::from(matches!(trie.root, Root::Trie(_)));
            for _ in 0..10 {
                let k = next(5);
                let mut path: String = (0..k).map(|_| format!("/{}", path_segments[next(path_segments.len())])).collect();
                if path.is_empty() {
                    path = "/".into();
                }
                let walked = if fold { path.to_ascii_lowercase() } else { path.clone() };
                let mut got = Vec::new();
                trie.lookup_path(&walked, &mut |v| got.push(*v));
                got.sort_unstable();
                let segs: Vec<&str> = walked.split('/').filter(|s| !s.is_empty()).collect();
                let mut by_segments = Vec::new();
                trie.lookup(&segs, &mut |v| by_segments.push(*v));
                by_segments.sort_unstable();
                let want: Vec<usize> = templates.iter().enumerate().filter(|(_, t)| reference(t, &path, fold)).map(|(i, _)| i).collect();
                assert_eq!(got, want, "{templates:?} on {path}, fold {fold}");
                assert_eq!(by_segments, want, "{templates:?} on {path}, fold {fold}");
                found += want.len();
            }
        }
        // Both forms, and matches, must be exercised for the comparison to mean anything.
        assert!(tries > 1000 && tries < 2800 && found > 5000, "{tries} tries, {found} found");
    }

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("xapi.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("a..b").is_err());
    }
}
