//! Deep inspection of governed bodies: sensitive data in both directions (data rules), and what a
//! governed response may carry back (LLM tool calls, MCP answers).
//!
//! Data-rule semantics: the rules that apply (direction, route, agent) are looked at together.
//! `allow` rules first exempt their classes; every other rule fires when at least `min_count`
//! values of its (non-exempt) classes were found in the one body. Among firing `enforce` rules the
//! most severe action wins (deny > redact > audit; the first in document order on a tie), and
//! every firing `redact` rule's classes are redacted. A firing `shadow` rule more severe than what
//! was done is recorded instead, with `mode: shadow`. Events carry class counts, never values.
//!
//! Streams (`text/event-stream`) are judged frame by frame and a frame leaves only once judged.
//! In a model's streamed answer, when an enforced `redact` rule watches it, the strings frames add
//! (text deltas, tool-call argument fragments) are scanned as one text, and a frame waits until
//! [`REDACT_HOLD_BYTES`] of later text have been scanned: a value found is then replaced inside
//! every held frame that carries part of it (the first part by `[REDACTED:<class>]`, later parts by
//! nothing), each frame rewritten as valid JSON and SSE. Frames that repeat content (the
//! Responses API's `*.done` and `response.completed`) are scanned and redacted on their own. When
//! a value cannot be replaced in its frames (part of it already left, a number inside a call's
//! arguments, a threshold first reached after an earlier value left) the stream is stopped as a
//! `deny` would, with an error frame. Other streams stop on `redact` as on `deny`.

use serde_json::Value;

use crate::decision::{Action, Decision, Evaluation, Facts};
use crate::detect::{ClassCount, DataClass, JsonFindings};
use crate::engine::{CompiledDataRule, Engine};
use crate::json_doc::{Doc, JsonTree, parse_doc};
use crate::schema::{DataAction, Direction, Mode, Protocol, Uninspectable};

/// The data rules' verdict on one body.
#[derive(Debug, Clone, Default)]
pub(crate) struct DataJudgement {
    /// The enforced rule that decided, if any fired.
    pub enforced: Option<usize>,
    /// A shadow rule that would have done more.
    pub shadow: Option<usize>,
    /// Classes to replace in the body.
    pub redact: Vec<DataClass>,
}

/// How a governed response is to be inspected.
#[derive(Debug, Clone)]
pub enum ResponsePlan {
    /// Nothing in the policy looks at this response.
    Skip,
    /// Hold the whole body (at most `max_bytes`), then call [`Engine::on_response_body`].
    Buffer { max_bytes: usize },
    /// A stream (`text/event-stream`): inspect it frame by frame.
    Stream,
    /// It cannot be inspected (encoded, an unknown type): this is the verdict.
    Uninspectable(Box<Evaluation>),
}

impl Engine {
    fn data_rules_for(&self, facts: &Facts, direction: Direction) -> impl Iterator<Item = (usize, &CompiledDataRule)> {
        let route = facts.governed.clone();
        let agent = facts.agent.clone();
        self.data_rules.iter().enumerate().filter(move |(_, r)| {
            (r.direction == Direction::Both || r.direction == direction)
                && r.routes.as_ref().is_none_or(|rs| route.as_ref().is_some_and(|x| rs.iter().any(|r| r == x)))
                && r.agents.as_ref().is_none_or(|ags| agent.as_ref().is_some_and(|a| ags.iter().any(|g| g == a)))
        })
    }

    /// Whether any data rule watches this direction for these facts.
    pub(crate) fn watches_data(&self, facts: &Facts, direction: Direction) -> bool {
        self.detector.is_some() && self.data_rules_for(facts, direction).any(|(_, r)| r.action != DataAction::Allow)
    }

    pub(crate) fn judge_data(&self, facts: &Facts, direction: Direction, found: &[ClassCount]) -> DataJudgement {
        let rules: Vec<(usize, &CompiledDataRule)> = self.data_rules_for(facts, direction).collect();
        let exempt: Vec<DataClass> = rules
            .iter()
            .filter(|(_, r)| r.action == DataAction::Allow && r.mode == Mode::Enforce)
            .flat_map(|(_, r)| r.classes.iter().copied())
            .collect();
        let count = |r: &CompiledDataRule| -> u64 {
            found.iter().filter(|c| r.classes.contains(&c.class) && !exempt.contains(&c.class)).map(|c| u64::from(c.count)).sum()
        };
        let mut j = DataJudgement::default();
        let severity = |i: Option<usize>| i.and_then(|i| self.data_rules.get(i)).map(|r| r.action);
        for (i, r) in rules {
            if r.action == DataAction::Allow || count(r) < u64::from(r.min_count) {
                continue;
            }
            match r.mode {
                Mode::Enforce => {
                    if r.action == DataAction::Redact {
                        j.redact.extend(r.classes.iter().copied().filter(|c| !exempt.contains(c)));
                    }
                    if severity(j.enforced).is_none_or(|cur| r.action > cur) {
                        j.enforced = Some(i);
                    }
                }
                Mode::Shadow => {
                    if severity(j.shadow).is_none_or(|cur| r.action > cur) {
                        j.shadow = Some(i);
                    }
                }
            }
        }
        if severity(j.shadow) <= severity(j.enforced) {
            j.shadow = None;
        }
        j.redact.sort_unstable();
        j.redact.dedup();
        j
    }

    /// Applies a data judgement to an evaluation the rules let through.
    pub(crate) fn apply_data(&self, eval: Evaluation, j: &DataJudgement) -> Evaluation {
        let Evaluation { decision, facts, rewrite } = eval;
        let allowed_by = decision.rule.clone();
        let decision = match j.enforced.and_then(|i| self.data_rules.get(i)) {
            Some(r) => {
                let reason = format!("data rule {:?}: {}", r.id, describe(&facts.data_classes));
                match r.action {
                    DataAction::Deny => Decision {
                        revoke: r.revoke.clone(),
                        kernel: r.kernel.clone(),
                        ..Decision::refusal(403, r.id.clone(), reason)
                    },
                    DataAction::Redact => Decision { action: Action::Redact, status: 0, allowed_by: Some(allowed_by), ..Decision::refusal(0, r.id.clone(), reason) },
                    _ => Decision { action: Action::Audit, status: 0, allowed_by: Some(allowed_by), ..Decision::refusal(0, r.id.clone(), reason) },
                }
            }
            None => decision,
        };
        let decision = match j.shadow.and_then(|i| self.data_rules.get(i)).filter(|_| decision.mode == Mode::Enforce && !decision.blocks()) {
            Some(s) => Decision {
                action: match s.action {
                    DataAction::Deny => Action::Deny,
                    DataAction::Redact => Action::Redact,
                    _ => Action::Audit,
                },
                status: 0,
                mode: Mode::Shadow,
                allowed_by: Some(decision.rule.clone()),
                ..Decision::refusal(0, s.id.clone(), format!("shadow data rule {:?} would apply: {}", s.id, describe(&facts.data_classes)))
            },
            None => decision,
        };
        let rewrite = if decision.blocks() { None } else { rewrite };
        Evaluation { decision, facts, rewrite }
    }

    /// Scans a governed request's parsed JSON body against the request-direction data rules.
    /// Called by the body phase for a request the rules let through.
    pub(crate) fn inspect_request_data(&self, eval: Evaluation, value: &Doc<'_>) -> Evaluation {
        if eval.decision.blocks() || !self.watches_data(&eval.facts, Direction::Request) {
            return eval;
        }
        self.inspect_json(eval, value, Direction::Request)
    }

    fn inspect_json<T: JsonTree>(&self, eval: Evaluation, value: &T, direction: Direction) -> Evaluation {
        let Some(detector) = &self.detector else { return eval };
        match detector.scan_json(value) {
            Ok(findings) => self.judge_json_findings(eval, value, &findings, direction),
            Err(e) => self.uninspectable(eval.facts, direction, &format!("{e}")),
        }
    }

    /// Counts what the detectors found into the evaluation and applies the data rules to it.
    fn judge_json_findings<T: JsonTree>(&self, mut eval: Evaluation, value: &T, findings: &crate::detect::JsonFindings, direction: Direction) -> Evaluation {
        eval.facts.data_classes = merge_counts(&eval.facts.data_classes, &findings.summary());
        let j = self.judge_data(&eval.facts, direction, &eval.facts.data_classes);
        if !j.redact.is_empty() && j.enforced.and_then(|i| self.data_rules.get(i)).is_some_and(|r| r.action == DataAction::Redact) {
            match redact(value.to_value(), findings, &j.redact) {
                Some(v) => eval.rewrite = serde_json::to_vec(&v).ok(),
                // A value the engine cannot replace (inside an object key) is refused instead.
                None => {
                    return Evaluation {
                        decision: Decision::refusal(403, eval.decision.rule.clone(), "sensitive value in an object key cannot be redacted"),
                        ..eval
                    };
                }
            }
        }
        self.apply_data(eval, &j)
    }

    /// The verdict for a governed body that cannot be fully inspected: refused (by status for a
    /// request, 403 for a response), or let through as `audit` when the policy says so.
    pub fn uninspectable(&self, facts: Facts, direction: Direction, why: &str) -> Evaluation {
        let reason = format!("cannot inspect the {}: {why}", if direction == Direction::Response { "response" } else { "request" });
        let decision = match self.inspection.on_uninspectable {
            Uninspectable::Deny => Decision::refusal(403, crate::builtin::UNINSPECTABLE, reason),
            Uninspectable::Audit => Decision { action: Action::Audit, status: 0, ..Decision::refusal(0, crate::builtin::UNINSPECTABLE, reason) },
        };
        Evaluation { decision, facts, rewrite: None }
    }

    /// How to inspect the response to a request with these facts.
    pub fn response_plan(&self, facts: &Facts, status: u16, content_type: Option<&str>, content_encoding: Option<&str>) -> ResponsePlan {
        let Some(protocol) = facts.protocol else { return ResponsePlan::Skip };
        let wanted = match protocol {
            Protocol::Openai | Protocol::Anthropic => true,
            // Tool controls look at the answer to a tools/list only: a tools/call answer passes
            // unread unless a data rule watches it.
            Protocol::Mcp => self.tools_control_for(facts).is_some() || self.watches_data(facts, Direction::Response),
            _ => self.watches_data(facts, Direction::Response),
        };
        if !wanted || status == 204 || status == 304 {
            return ResponsePlan::Skip;
        }
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return ResponsePlan::Uninspectable(Box::new(self.uninspectable(facts.clone(), Direction::Response, "content encoding")));
        }
        let media = content_type.and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/json") => ResponsePlan::Buffer { max_bytes: usize::try_from(self.inspection.max_response_bytes).unwrap_or(usize::MAX) },
            Some("text/event-stream") => ResponsePlan::Stream,
            // An error page or empty answer with no body type carries nothing to judge only when
            // the upstream failed; a 2xx of another type cannot be inspected.
            _ if !(200..300).contains(&status) => ResponsePlan::Skip,
            other => ResponsePlan::Uninspectable(Box::new(self.uninspectable(facts.clone(), Direction::Response, &format!("content type {:?}", other.unwrap_or("none"))))),
        }
    }

    /// Decides on a whole buffered governed response. `None` when there is nothing to record
    /// (the response passes as it is); otherwise a decision of its own: 403 replacing the
    /// response, a redaction (`rewrite`), or a record (audit, shadow).
    pub fn on_response_body(&self, facts: &Facts, body: &[u8], store: &mut dyn crate::ratelimit::SharedStore) -> Option<Evaluation> {
        if body.is_empty() {
            return None;
        }
        let depth = usize::try_from(self.inspection.max_json_depth).unwrap_or(32);
        // The response's own evaluation (an allow, no data classes yet), built only where one is
        // returned: most responses pass without one, and the facts are a dozen strings to copy.
        let start = || Evaluation {
            decision: Decision { action: Action::Allow, ..Decision::refusal(0, "response", "response inspected") },
            facts: Facts { data_classes: Vec::new(), ..facts.clone() },
            rewrite: None,
        };
        let not_json = |e: crate::json::JsonError| Some(self.uninspectable(start().facts, Direction::Response, &format!("not strict JSON: {e}")));
        // A model's answer is read from a `Value` (`crate::llm` reads the providers' shapes from
        // one); any other from a `Doc`, which borrows from the body.
        if let Some(provider) = llm_provider(facts) {
            let value = match crate::json::parse_strict(body, depth) {
                Ok(v) => v,
                Err(e) => return not_json(e),
            };
            // A model's proposed tool calls are judged like calls through MCP.
            match crate::llm::parse_response(provider, &value) {
                Ok(resp) if resp.tool_calls.is_empty() => {}
                Ok(resp) => {
                    let judged = start().facts;
                    if let Some(refused) = resp.tool_calls.into_iter().find_map(|call| self.refused_tool_note(&judged, crate::llm::AssemblerNote::ToolCallComplete(call))) {
                        return Some(refused);
                    }
                }
                Err(e) => return Some(self.uninspectable(start().facts, Direction::Response, &format!("{e}"))),
            }
            return self.judge_parsed_response(facts, &value, store, &start);
        }
        match parse_doc(body, depth) {
            Ok(doc) => self.judge_parsed_response(facts, &doc, store, &start),
            Err(e) => not_json(e),
        }
    }

    /// The tool-list controls and the data rules over a parsed governed response.
    fn judge_parsed_response<T: JsonTree>(&self, facts: &Facts, value: &T, store: &mut dyn crate::ratelimit::SharedStore, start: &dyn Fn() -> Evaluation) -> Option<Evaluation> {
        // The answer to a tools/list (alone or in a batch) on a route with tool controls: pins,
        // descriptions, hiding (which rewrites it: a `Value`).
        if let Some(control) = self.tools_control_for(facts)
            && let Some(eval) = self.judge_tools_list(facts, &value.to_value(), control, store) {
                return Some(eval);
            }
        // Nothing watches the data, or nothing was found: the response stands as it is, an allow
        // that is not recorded (every data rule needs at least one value, `min_count` >= 1).
        let detector = self.detector.as_ref().filter(|_| self.watches_data(facts, Direction::Response))?;
        let findings = match detector.scan_json(value) {
            Ok(f) if f.is_empty() => return None,
            Ok(f) => f,
            Err(e) => return Some(self.uninspectable(start().facts, Direction::Response, &format!("{e}"))),
        };
        let eval = self.judge_json_findings(start(), value, &findings, Direction::Response);
        let recorded = eval.decision.action != Action::Allow || eval.decision.mode == Mode::Shadow || eval.rewrite.is_some();
        recorded.then_some(eval)
    }

    /// Judges a tool call a model proposed, with the agent's MCP tool grants and denies (and not
    /// with the HTTP grant that let it call the model).
    pub fn judge_tool_call(&self, facts: &Facts, tool: &str, arguments: Option<&Doc<'_>>) -> Decision {
        if !crate::jsonrpc::is_valid_tool_name(tool) {
            return Decision::refusal(403, crate::builtin::INVALID_TOOL_CALL, format!("tool name {:?} is not a valid tool name", tool.chars().take(64).collect::<String>()));
        }
        self.tool_call_decision(facts, tool, arguments)
    }
}

/// Bytes of later text a frame's text waits for before it is delivered, when a `redact` rule
/// watches a streamed model answer: a value that starts in a frame and ends in a later one is
/// then seen whole while every frame it touches is still held, and is replaced in each of them.
/// It covers every bounded pattern (the longest, an Anthropic key, is 108 bytes), IBANs, cards,
/// SSNs and addresses of up to 128 bytes; a longer value split across frames (a JWT, a PEM block)
/// may have started to leave, and then the stream is stopped instead.
pub const REDACT_HOLD_BYTES: u64 = 128;

/// Text scanned at once while frames are held for redaction (instead of the scanner's whole
/// window again for every frame): a frame may wait for up to this much more text.
const REDACT_SCAN_STEP: u64 = 128;

/// The state of one streamed governed response (`text/event-stream`): frames are parsed as they
/// arrive; a frame is delivered only once judged, and the frames of a tool call whose name is not
/// yet complete are held back, so no fragment of a forbidden call reaches the agent.
pub struct ResponseStream {
    parser: crate::sse::SseParser,
    assembler: Option<crate::llm::ToolCallAssembler>,
    scanner: Option<crate::detect::StreamScanner>,
    /// Bytes received and not yet delivered, starting at stream offset `base`.
    pending: Vec<u8>,
    base: u64,
    /// Stream offset from which frames are held back (a tool call's name is pending).
    hold_from: Option<u64>,
    /// End offset of the last complete, judged frame.
    judged_to: u64,
    found: Vec<DataClass>,
    blocked: bool,
    /// In-frame redaction of a model's streamed answer, when a `redact` rule watches it.
    redaction: Option<StreamRedaction>,
    /// The last data decision that let the stream go on (a redaction, an audit), to record.
    outcome: Option<Evaluation>,
    /// Frames rewritten whole (`start`, `end`, new bytes) outside in-frame redaction: a tool
    /// list with tools hidden.
    splices: std::collections::VecDeque<(u64, u64, Vec<u8>)>,
}

impl ResponseStream {
    /// The data decision to record for a stream that was not stopped: the last redaction (or
    /// audit) with the classes and counts found, never the values. `None` when nothing was found
    /// that a rule acts on.
    pub fn outcome(&self) -> Option<&Evaluation> {
        self.outcome.as_ref()
    }
}

/// A JSON lexer's state, enough to tell whether a byte of a call's arguments lies inside a
/// string literal.
#[derive(Debug, Clone, Copy, Default)]
struct JsonLex {
    in_string: bool,
    /// 0: none; `AFTER_BACKSLASH`; 1..=4: hex digits of a `\u` escape still to come.
    escape: u8,
}

const AFTER_BACKSLASH: u8 = 10;

impl JsonLex {
    fn step(&mut self, b: u8) {
        if !self.in_string {
            self.in_string = b == b'"';
        } else if self.escape == AFTER_BACKSLASH {
            self.escape = if b == b'u' { 4 } else { 0 };
        } else if self.escape > 0 {
            self.escape -= 1;
        } else if b == b'\\' {
            self.escape = AFTER_BACKSLASH;
        } else if b == b'"' {
            self.in_string = false;
        }
    }

    fn clean_in_string(self) -> bool {
        self.in_string && self.escape == 0
    }
}

/// One string of a held frame that went into the stream's text.
#[derive(Debug)]
struct Segment {
    pointer: String,
    kind: crate::llm::TextKind,
    text: String,
    /// Offset of the string's first byte in the stream's text.
    at: u64,
    /// Arguments: the lexer's state before the fragment.
    lex: JsonLex,
}

impl Segment {
    fn end(&self) -> u64 {
        self.at.saturating_add(self.text.len() as u64)
    }
}

/// A replacement inside one segment: `range` of its text becomes the class's marker (or nothing,
/// for the later parts of a value split across strings).
#[derive(Debug, Clone)]
struct Edit {
    segment: usize,
    range: std::ops::Range<usize>,
    marker: Option<DataClass>,
}

/// A judged frame not yet delivered that carries text, or is to be rewritten.
#[derive(Debug)]
struct HeldFrame {
    start: u64,
    end: u64,
    event: Option<String>,
    id: Option<String>,
    data: String,
    segments: Vec<Segment>,
    edits: Vec<Edit>,
    /// The whole frame rewritten (a snapshot event redacted as a whole).
    replacement: Option<Vec<u8>>,
    /// `data` differs from the frame as received (tools hidden from a tool list).
    rewritten: bool,
}

#[derive(Debug, Default)]
struct StreamRedaction {
    frames: std::collections::VecDeque<HeldFrame>,
    /// Bytes of text given to the scanner so far.
    text_end: u64,
    lex: std::collections::BTreeMap<(usize, usize), JsonLex>,
    /// Findings in held text not (yet) redacted, in text offsets.
    held: Vec<(DataClass, std::ops::Range<u64>)>,
    /// Text ranges replaced so far, by class.
    redacted: Vec<(DataClass, std::ops::Range<u64>)>,
    /// Redacted values that reached the end of the text seen: a later frame may continue them.
    open: Vec<(DataClass, std::ops::Range<u64>)>,
    /// Classes of which a value left unredacted.
    left: Vec<DataClass>,
    /// Not a model's answer: each event's data is judged whole and leaves at once (an MCP server
    /// may keep its stream open after the answer, so nothing waits for later text).
    whole_events: bool,
}

impl StreamRedaction {
    /// Text offset of the first byte still held.
    fn held_text_from(&self) -> u64 {
        self.frames.iter().flat_map(|f| f.segments.iter().map(|s| s.at)).min().unwrap_or(self.text_end)
    }

    /// Replaces the text range of a value of `class`, in every held string it touches; `false`
    /// when that cannot be done (part of it left already, or it is not inside a string literal
    /// of a call's arguments).
    fn redact(&mut self, class: DataClass, range: std::ops::Range<u64>, marker: bool) -> bool {
        // Only what is not already replaced for this class.
        let mut start = range.start;
        let mut first = marker;
        for (c, r) in &self.redacted {
            if *c == class && r.start <= start && start < r.end {
                start = r.end;
                first = false;
            }
        }
        if start >= range.end {
            return true;
        }
        if start < self.held_text_from() {
            return false;
        }
        let mut edits: Vec<(usize, Edit)> = Vec::new();
        for (fi, frame) in self.frames.iter().enumerate() {
            for (si, seg) in frame.segments.iter().enumerate() {
                let (a, b) = (start.max(seg.at), range.end.min(seg.end()));
                if a >= b {
                    continue;
                }
                let (Ok(la), Ok(lb)) = (usize::try_from(a - seg.at), usize::try_from(b - seg.at)) else { return false };
                if !seg.text.is_char_boundary(la) || !seg.text.is_char_boundary(lb) {
                    return false;
                }
                if matches!(seg.kind, crate::llm::TextKind::Arguments { .. } | crate::llm::TextKind::Json) {
                    let mut lex = seg.lex;
                    let bytes = seg.text.as_bytes();
                    bytes.get(..la).unwrap_or_default().iter().for_each(|&c| lex.step(c));
                    if !lex.clean_in_string() {
                        return false;
                    }
                    for &c in bytes.get(la..lb).unwrap_or_default() {
                        lex.step(c);
                        if !lex.in_string {
                            return false;
                        }
                    }
                    if lex.escape != 0 {
                        return false;
                    }
                }
                edits.push((fi, Edit { segment: si, range: la..lb, marker: first.then_some(class) }));
                first = false;
            }
        }
        for (fi, edit) in edits {
            if let Some(frame) = self.frames.get_mut(fi) {
                frame.edits.push(edit);
            }
        }
        self.redacted.push((class, start..range.end));
        true
    }

    /// The held text from `from` to the end.
    fn text_from(&self, from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seg in self.frames.iter().flat_map(|f| f.segments.iter()) {
            if seg.end() <= from {
                continue;
            }
            let skip = usize::try_from(from.saturating_sub(seg.at)).unwrap_or(usize::MAX);
            out.extend_from_slice(seg.text.as_bytes().get(skip..).unwrap_or_default());
        }
        out
    }

    /// Stream offset from which frames wait for more text: the first frame whose text is not yet
    /// scanned or within [`REDACT_HOLD_BYTES`] of the end of the scanned text, or holds the start
    /// of a value that may go on.
    fn hold_from(&self, scanned_to: u64) -> Option<u64> {
        if self.whole_events {
            return None;
        }
        let limit = scanned_to.min(self.text_end).saturating_sub(REDACT_HOLD_BYTES);
        self.frames
            .iter()
            .find(|f| f.segments.iter().any(|s| s.end() > limit || self.open.iter().any(|(_, r)| s.end() > r.start)))
            .map(|f| f.start)
    }
}

/// The bytes of a frame with its edits applied (`None` when it has none).
fn render_frame(frame: &HeldFrame) -> Result<Option<Vec<u8>>, String> {
    if let Some(r) = &frame.replacement {
        return Ok(Some(r.clone()));
    }
    if frame.edits.is_empty() {
        return Ok(frame.rewritten.then(|| sse_frame(frame.event.as_deref(), frame.id.as_deref(), &frame.data)));
    }
    // The whole data (a stream that is not a model's answer), or strings inside its JSON.
    let whole = frame.segments.iter().all(|seg| seg.pointer.is_empty());
    let mut value = if whole { Value::Null } else { crate::json::parse_strict(frame.data.as_bytes(), crate::llm::MAX_JSON_DEPTH).map_err(|e| e.to_string())? };
    let mut data = None;
    for (si, seg) in frame.segments.iter().enumerate() {
        let mut edits: Vec<&Edit> = frame.edits.iter().filter(|e| e.segment == si).collect();
        if edits.is_empty() {
            continue;
        }
        edits.sort_by_key(|e| e.range.start);
        let mut text = String::with_capacity(seg.text.len());
        let mut at = 0;
        for e in edits {
            let from = e.range.start.max(at);
            text.push_str(seg.text.get(at..from).ok_or("edit off a character boundary")?);
            if let Some(class) = e.marker {
                text.push_str(&format!("[REDACTED:{}]", class.as_str()));
            }
            at = at.max(e.range.end);
        }
        text.push_str(seg.text.get(at..).ok_or("edit off a character boundary")?);
        if whole {
            data = Some(text);
            continue;
        }
        match value.pointer_mut(&seg.pointer) {
            Some(Value::String(s)) if *s == seg.text => *s = text,
            _ => return Err("the redacted string is not where the frame had it".into()),
        }
    }
    let data = data.unwrap_or_else(|| value.to_string());
    Ok(Some(sse_frame(frame.event.as_deref(), frame.id.as_deref(), &data)))
}

/// `raw`, delivered from stream offset `from`, with the frames rewritten whole in it replaced.
fn apply_splices(raw: Vec<u8>, from: u64, splices: &mut std::collections::VecDeque<(u64, u64, Vec<u8>)>) -> Result<Vec<u8>, String> {
    let to = from.saturating_add(raw.len() as u64);
    if !splices.iter().any(|(start, _, _)| *start < to) {
        return Ok(raw);
    }
    let local = |x: u64| usize::try_from(x.saturating_sub(from)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0usize;
    while let Some((start, end, bytes)) = splices.pop_front_if(|(start, _, _)| *start < to) {
        if start < from || end > to {
            return Err("a rewritten frame is not on a frame boundary".into());
        }
        out.extend_from_slice(raw.get(at..local(start)).ok_or("a rewritten frame is not on a frame boundary")?);
        out.extend_from_slice(&bytes);
        at = local(end);
    }
    out.extend_from_slice(raw.get(at..).ok_or("a rewritten frame is not on a frame boundary")?);
    Ok(out)
}

fn sse_frame(event: Option<&str>, id: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = String::new();
    if let Some(e) = event {
        out.push_str(&format!("event: {e}\n"));
    }
    if let Some(i) = id {
        out.push_str(&format!("id: {i}\n"));
    }
    for line in data.split('\n') {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out.into_bytes()
}

/// What to do with the bytes of a streamed response so far.
#[derive(Debug)]
pub enum StreamStep {
    /// Deliver these bytes (possibly none: the rest is held until judged).
    Deliver(Vec<u8>),
    /// Stop: deliver nothing more of the upstream's stream; the decision is recorded and the
    /// stream ends with an error frame ([`stream_error_frame`]).
    Block(Box<Evaluation>),
}

/// The SSE frame that ends a blocked stream.
pub fn stream_error_frame(eval: &Evaluation, decision_id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "error": {
            "type": "interlock_policy",
            "message": "stream stopped by Interlock policy",
            "rule": eval.decision.rule,
            "decision_id": decision_id,
            "reason": eval.decision.reason,
        }
    });
    format!("event: error\ndata: {body}\n\n").into_bytes()
}

/// What the data rules make of a stream's findings so far.
enum StreamVerdict {
    Pass,
    Redact(DataJudgement),
    Stop(Box<Evaluation>),
}

impl Engine {
    /// Starts inspecting a streamed response to a request with these facts.
    pub fn response_stream(&self, facts: &Facts) -> ResponseStream {
        let assembler = llm_provider(facts).map(crate::llm::ToolCallAssembler::new);
        let scanner = self.watches_data(facts, Direction::Response).then(crate::detect::StreamScanner::default);
        let redacts = self.data_rules_for(facts, Direction::Response).any(|(_, r)| r.action == DataAction::Redact && r.mode == Mode::Enforce);
        ResponseStream {
            parser: crate::sse::SseParser::new(),
            redaction: (scanner.is_some() && redacts).then(|| StreamRedaction { whole_events: assembler.is_none(), ..StreamRedaction::default() }),
            assembler,
            scanner,
            pending: Vec::new(),
            base: 0,
            hold_from: None,
            judged_to: 0,
            found: Vec::new(),
            blocked: false,
            outcome: None,
            splices: std::collections::VecDeque::new(),
        }
    }

    /// The data rules' verdict with these class counts.
    fn stream_verdict(&self, facts: &Facts, counts: Vec<ClassCount>, can_redact: bool) -> StreamVerdict {
        let mut f = facts.clone();
        f.data_classes = counts;
        let j = self.judge_data(&f, Direction::Response, &f.data_classes);
        let action = j.enforced.and_then(|i| self.data_rules.get(i)).map(|r| r.action);
        let start = Evaluation { decision: Decision { action: Action::Allow, ..Decision::refusal(0, "response", String::new()) }, facts: f, rewrite: None };
        match action {
            Some(DataAction::Redact) if can_redact => StreamVerdict::Redact(j),
            // Without in-frame redaction a value cannot be taken back: redact stops the stream.
            Some(DataAction::Deny | DataAction::Redact) => {
                let eval = self.apply_data(start, &j);
                let eval = if eval.decision.blocks() { eval } else { Evaluation { decision: Decision { action: Action::Deny, status: 403, ..eval.decision }, ..eval } };
                StreamVerdict::Stop(Box::new(eval))
            }
            _ => StreamVerdict::Pass,
        }
    }

    /// The stream's decision to record once it has been redacted (or audited).
    fn stream_outcome(&self, facts: &Facts, counts: Vec<ClassCount>, j: &DataJudgement) -> Evaluation {
        let mut f = facts.clone();
        f.data_classes = counts;
        let start = Evaluation { decision: Decision { action: Action::Allow, ..Decision::refusal(0, "response", "response inspected") }, facts: f, rewrite: None };
        self.apply_data(start, j)
    }

    /// A stream stopped because a value of a class to redact cannot be redacted in its frame.
    fn unredactable(&self, facts: &Facts, counts: Vec<ClassCount>, j: &DataJudgement) -> Evaluation {
        let eval = self.stream_outcome(facts, counts, j);
        let reason = format!("{}; a value split across frames already partly delivered cannot be redacted", eval.decision.reason);
        Evaluation { decision: Decision { action: Action::Deny, status: 403, reason: reason.into(), ..eval.decision }, ..eval }
    }

    /// Feeds the next chunk of a streamed response (`end` on the last); says what may go out.
    /// `store` is the shared data where tool pins are kept.
    pub fn feed_response_stream(&self, s: &mut ResponseStream, facts: &Facts, chunk: &[u8], end: bool, store: &mut dyn crate::ratelimit::SharedStore) -> StreamStep {
        if s.blocked {
            return StreamStep::Deliver(Vec::new());
        }
        s.pending.extend_from_slice(chunk);
        let mut events = match s.parser.feed(chunk) {
            Ok(e) => e,
            Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("event stream: {e}"))),
        };
        if end {
            match s.parser.finish() {
                Ok(more) => events.extend(more),
                Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("event stream: {e}"))),
            }
        }
        for event in events {
            if let Err(step) = self.judge_stream_event(s, facts, event, store) {
                return step;
            }
        }
        if end && s.redaction.is_some() && let (Some(scanner), Some(detector)) = (s.scanner.as_mut(), self.detector.as_ref()) {
            let findings = match scanner.flush(detector) {
                Ok(f) => f,
                Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}"))),
            };
            if let Err(step) = self.judge_findings(s, facts, &findings) {
                return step;
            }
        }
        if end {
            let notes = match s.assembler.as_mut().map(crate::llm::ToolCallAssembler::finish).transpose() {
                Ok(n) => n.unwrap_or_default(),
                Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}"))),
            };
            for note in notes {
                if let Some(refused) = self.refused_tool_note(facts, note) {
                    return self.block_stream(s, refused);
                }
            }
            s.hold_from = None;
            if let Some(r) = s.redaction.as_mut() {
                r.open.clear();
            }
        }
        let mut release_to = s.hold_from.map_or(s.judged_to, |h| h.min(s.judged_to));
        let scanned_to = s.scanner.as_ref().map_or(0, crate::detect::StreamScanner::scanned_up_to);
        if !end && let Some(h) = s.redaction.as_ref().and_then(|r| r.hold_from(scanned_to)) {
            release_to = release_to.min(h);
        }
        let release_to = if end && s.hold_from.is_none() { s.base.saturating_add(s.pending.len() as u64) } else { release_to };
        match self.release(s, release_to) {
            Ok(out) => StreamStep::Deliver(out),
            Err(e) => self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &e)),
        }
    }

    /// Judges one complete event: its tool calls, and the data in its text.
    fn judge_stream_event(&self, s: &mut ResponseStream, facts: &Facts, mut event: crate::sse::SseEvent, store: &mut dyn crate::ratelimit::SharedStore) -> Result<(), StreamStep> {
        let rewritten = self.judge_streamed_tools_list(s, facts, &mut event, store)?;
        let mut texts: Vec<crate::llm::TextSpan> = Vec::new();
        let mut snapshot = false;
        if let Some(assembler) = s.assembler.as_mut() {
            let was_pending = assembler.pending_tool_call();
            let notes = match assembler.feed(&event) {
                Ok(n) => n,
                Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}")))),
            };
            if !was_pending && assembler.pending_tool_call() {
                s.hold_from = Some(event.start);
            }
            for note in notes {
                match note {
                    crate::llm::AssemblerNote::Text(t) => texts.push(t),
                    crate::llm::AssemblerNote::Snapshot => snapshot = true,
                    note => {
                        if let Some(refused) = self.refused_tool_note(facts, note) {
                            return Err(self.block_stream(s, refused));
                        }
                    }
                }
            }
            if !assembler.pending_tool_call() {
                s.hold_from = None;
            }
        } else {
            // Not a model's answer: the data is scanned whole; a JSON text is redacted only inside
            // its strings, any other text anywhere.
            let json = event.data.trim_start().starts_with(['{', '[', '"']);
            let kind = if json { crate::llm::TextKind::Json } else { crate::llm::TextKind::Content };
            texts.push(crate::llm::TextSpan { text: event.data.clone(), pointer: String::new(), kind });
        }
        let (Some(scanner), Some(detector)) = (s.scanner.as_mut(), self.detector.as_ref()) else {
            s.judged_to = event.end;
            return Ok(());
        };
        let mut findings = Vec::new();
        let event_end = event.end;
        let mut frame = HeldFrame { start: event.start, end: event.end, event: event.event, id: event.id, data: event.data, segments: Vec::new(), edits: Vec::new(), replacement: None, rewritten };
        for t in texts {
            match scanner.push(detector, t.text.as_bytes()) {
                Ok(f) => findings.extend(f),
                Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}")))),
            }
            if let Some(r) = s.redaction.as_mut() {
                let mut lex = JsonLex::default();
                if let crate::llm::TextKind::Arguments { choice, index } = t.kind {
                    let state = r.lex.entry((choice, index)).or_default();
                    lex = *state;
                    t.text.bytes().for_each(|b| state.step(b));
                }
                frame.segments.push(Segment { pointer: t.pointer, kind: t.kind, at: r.text_end, text: t.text, lex });
                r.text_end = r.text_end.saturating_add(frame.segments.last().map_or(0, |x| x.text.len() as u64));
            }
        }
        // Frames wait for their text to be scanned: when they are held for redaction anyway, the
        // scan can wait for a batch of text instead of rescanning the window for every frame.
        let batch = s.redaction.as_ref().map_or(0, |r| r.text_end.saturating_sub(scanner.scanned_up_to()));
        if s.redaction.as_ref().is_none_or(|r| r.whole_events) || batch >= REDACT_SCAN_STEP || snapshot {
            match scanner.flush(detector) {
                Ok(f) => findings.extend(f),
                Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}")))),
            }
        }
        let (frame_event, frame_id, frame_data) = if s.redaction.is_some() { (None, None, String::new()) } else { (frame.event.take(), frame.id.take(), std::mem::take(&mut frame.data)) };
        if let Some(r) = s.redaction.as_mut() {
            r.frames.push_back(frame);
            // Redacted values the last frames may have continued: replace the rest of them too.
            let open = std::mem::take(&mut r.open);
            for (class, range) in open {
                if r.text_end <= range.end {
                    r.open.push((class, range));
                    continue;
                }
                let text = r.text_from(range.start);
                let longer = match detector.scan_bytes(&text) {
                    Ok(found) => found.iter().filter(|f| f.class == class && f.range.start == 0).map(|f| range.start.saturating_add(f.range.end as u64)).max().unwrap_or(range.end),
                    Err(_) => range.end,
                };
                if longer > range.end && !r.redact(class, range.end..longer, false) {
                    let counts = crate::detect::summarize(s.found.iter().copied());
                    let j = DataJudgement { redact: vec![class], ..DataJudgement::default() };
                    return Err(self.block_stream(s, self.unredactable(facts, counts, &j)));
                }
                // A value can go on after a character that ends it for now ("a@b.example" and
                // ".net"): it stays open until the hold's worth of text followed it.
                if r.text_end < longer.saturating_add(REDACT_HOLD_BYTES) {
                    r.open.push((class, range.start..longer.max(range.end)));
                }
            }
        }
        self.judge_findings(s, facts, &findings)?;
        if snapshot {
            let (event_name, id, data) = match s.redaction.as_ref().and_then(|r| r.frames.back()) {
                Some(f) => (f.event.clone(), f.id.clone(), f.data.clone()),
                None => (frame_event, frame_id, frame_data),
            };
            let replacement = self.judge_snapshot(s, facts, event_name.as_deref(), id.as_deref(), &data)?;
            if let Some(f) = s.redaction.as_mut().and_then(|r| r.frames.back_mut()) {
                f.replacement = replacement;
            }
        }
        s.judged_to = event_end;
        Ok(())
    }

    /// An MCP server may answer a tools/list with an event stream: each event of it is judged by
    /// the route's tool controls before it leaves, like a buffered answer. Returns whether the
    /// event's data was rewritten (tools hidden); the rewritten frame replaces the received one.
    fn judge_streamed_tools_list(&self, s: &mut ResponseStream, facts: &Facts, event: &mut crate::sse::SseEvent, store: &mut dyn crate::ratelimit::SharedStore) -> Result<bool, StreamStep> {
        let Some(control) = self.tools_control_for(facts) else { return Ok(false) };
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let value = match crate::json::parse_strict(event.data.as_bytes(), crate::llm::MAX_JSON_DEPTH) {
            Ok(v) => v,
            Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("event data: {e}")))),
        };
        let Some(mut eval) = self.judge_tools_list(facts, &value, control, store) else { return Ok(false) };
        if eval.decision.blocks() {
            return Err(self.block_stream(s, eval));
        }
        let rewrite = eval.rewrite.take();
        s.outcome = Some(eval);
        let Some(data) = rewrite.and_then(|b| String::from_utf8(b).ok()) else { return Ok(false) };
        if s.redaction.is_none() {
            s.splices.push_back((event.start, event.end, sse_frame(event.event.as_deref(), event.id.as_deref(), &data)));
        }
        event.data = data;
        Ok(true)
    }

    /// Judges what the stream's scan found: stops the stream, or redacts in the held frames.
    fn judge_findings(&self, s: &mut ResponseStream, facts: &Facts, findings: &[crate::detect::StreamFinding]) -> Result<(), StreamStep> {
        if !findings.is_empty() {
            s.found.extend(findings.iter().map(|f| f.class));
            let counts = crate::detect::summarize(s.found.iter().copied());
            match self.stream_verdict(facts, counts.clone(), s.redaction.is_some()) {
                StreamVerdict::Stop(eval) => return Err(self.block_stream(s, *eval)),
                StreamVerdict::Pass => {
                    if let Some(r) = s.redaction.as_mut() {
                        r.held.extend(findings.iter().map(|f| (f.class, f.range.clone())));
                    }
                }
                StreamVerdict::Redact(j) => {
                    let Some(r) = s.redaction.as_mut() else {
                        return Err(self.block_stream(s, self.unredactable(facts, counts, &j)));
                    };
                    let mut all: Vec<(DataClass, std::ops::Range<u64>)> = std::mem::take(&mut r.held);
                    all.extend(findings.iter().map(|f| (f.class, f.range.clone())));
                    let mut ok = !r.left.iter().any(|c| j.redact.contains(c));
                    for (class, range) in all {
                        if !j.redact.contains(&class) {
                            r.held.push((class, range));
                            continue;
                        }
                        ok = ok && r.redact(class, range.clone(), true);
                        if !r.whole_events && r.text_end < range.end.saturating_add(REDACT_HOLD_BYTES) {
                            r.open.push((class, range));
                        }
                    }
                    if !ok {
                        return Err(self.block_stream(s, self.unredactable(facts, counts, &j)));
                    }
                    s.outcome = Some(self.stream_outcome(facts, counts, &j));
                }
            }
        }
        Ok(())
    }

    /// Judges an event whose data repeats or sums up content (an
    /// [`AssemblerNote::Snapshot`](crate::llm::AssemblerNote::Snapshot)) on its own: its counts
    /// weigh as much as the stream's, not on top of them, and a redaction rewrites the whole
    /// frame. Returns the frame's replacement, if any.
    fn judge_snapshot(&self, s: &mut ResponseStream, facts: &Facts, event: Option<&str>, id: Option<&str>, data: &str) -> Result<Option<Vec<u8>>, StreamStep> {
        let Some(detector) = self.detector.as_ref() else { return Ok(None) };
        let value = match crate::json::parse_strict(data.as_bytes(), crate::llm::MAX_JSON_DEPTH) {
            Ok(v) => v,
            Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("event data: {e}")))),
        };
        let findings = match detector.scan_json(&value) {
            Ok(f) => f,
            Err(e) => return Err(self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}")))),
        };
        if findings.is_empty() {
            return Ok(None);
        }
        let stream = crate::detect::summarize(s.found.iter().copied());
        let mut counts = findings.summary();
        for c in &mut counts {
            if let Some(x) = stream.iter().find(|x| x.class == c.class) {
                c.count = c.count.max(x.count);
            }
        }
        counts.extend(stream.iter().filter(|x| !counts.iter().any(|c| c.class == x.class)).copied().collect::<Vec<_>>());
        counts.sort_by_key(|c| c.class);
        match self.stream_verdict(facts, counts.clone(), s.redaction.is_some()) {
            StreamVerdict::Pass => Ok(None),
            StreamVerdict::Stop(eval) => Err(self.block_stream(s, *eval)),
            StreamVerdict::Redact(j) => match redact(value.clone(), &findings, &j.redact) {
                Some(v) => {
                    s.outcome = Some(self.stream_outcome(facts, counts, &j));
                    Ok((v != value).then(|| sse_frame(event, id, &v.to_string())))
                }
                None => {
                    let eval = Evaluation {
                        decision: Decision::refusal(403, "response", "sensitive value in an object key cannot be redacted"),
                        ..self.stream_outcome(facts, counts, &j)
                    };
                    Err(self.block_stream(s, eval))
                }
            },
        }
    }

    /// Takes the pending bytes up to `release_to` (a frame boundary), with held frames rewritten
    /// where they were redacted.
    fn release(&self, s: &mut ResponseStream, release_to: u64) -> Result<Vec<u8>, String> {
        let n = usize::try_from(release_to.saturating_sub(s.base)).unwrap_or(0).min(s.pending.len());
        let raw: Vec<u8> = s.pending.drain(..n).collect();
        let from = s.base;
        s.base = s.base.saturating_add(n as u64);
        let Some(r) = s.redaction.as_mut() else { return apply_splices(raw, from, &mut s.splices) };
        let local = |x: u64| usize::try_from(x.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(raw.len());
        let mut at = 0usize;
        while r.frames.front().is_some_and(|f| f.end <= s.base) {
            let Some(frame) = r.frames.pop_front() else { break };
            let (a, b) = (local(frame.start), local(frame.end));
            out.extend_from_slice(raw.get(at..a).ok_or("a held frame is not on a frame boundary")?);
            match render_frame(&frame)? {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => out.extend_from_slice(raw.get(a..b).ok_or("a held frame is not on a frame boundary")?),
            }
            at = b;
        }
        out.extend_from_slice(raw.get(at..).ok_or("a held frame is not on a frame boundary")?);
        // What was found and not redacted in the frames just delivered has left.
        let held_from = r.held_text_from();
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut r.held).into_iter().partition(|(_, range)| range.start < held_from);
        r.held = kept;
        for (class, _) in gone {
            if !r.left.contains(&class) {
                r.left.push(class);
            }
        }
        r.redacted.retain(|(_, range)| range.end >= held_from);
        Ok(out)
    }
    /// The refusal of a tool call the assembler completed (its name, or later its arguments, which
    /// a deny on an argument value can need), if the agent may not make it.
    fn refused_tool_note(&self, facts: &Facts, note: crate::llm::AssemblerNote) -> Option<Evaluation> {
        let (name, args) = match note {
            crate::llm::AssemblerNote::ToolNameComplete { name, .. } => (name, None),
            crate::llm::AssemblerNote::ToolCallComplete(call) => (call.name, call.arguments),
            _ => return None,
        };
        let decision = self.judge_tool_call(facts, &name, args.as_ref().map(Doc::borrowing).as_ref());
        decision.blocks().then(|| {
            let mut facts = facts.clone();
            facts.calls.push(crate::decision::RpcCall { method: "llm/tool_call".into(), tool: Some(name), has_id: true });
            Evaluation { decision, facts, rewrite: None }
        })
    }

    fn block_stream(&self, s: &mut ResponseStream, eval: Evaluation) -> StreamStep {
        s.blocked = true;
        s.pending.clear();
        StreamStep::Block(Box::new(eval))
    }
}

fn llm_provider(facts: &Facts) -> Option<crate::llm::Provider> {
    match facts.protocol {
        Some(Protocol::Openai) => Some(crate::llm::Provider::OpenAi),
        Some(Protocol::Anthropic) => Some(crate::llm::Provider::Anthropic),
        _ => None,
    }
}

fn describe(classes: &[ClassCount]) -> String {
    if classes.is_empty() {
        return "nothing found".into();
    }
    classes.iter().map(|c| format!("{} x{}", c.class, c.count)).collect::<Vec<_>>().join(", ")
}

fn merge_counts(a: &[ClassCount], b: &[ClassCount]) -> Vec<ClassCount> {
    crate::detect::summarize(a.iter().chain(b).flat_map(|c| std::iter::repeat_n(c.class, usize::try_from(c.count).unwrap_or(0))))
}

/// `value` with every finding of `classes` replaced by `[REDACTED:<class>]` inside its string;
/// `None` when one sits in an object key (renaming keys could collide; the caller refuses).
pub(crate) fn redact(mut out: Value, findings: &JsonFindings, classes: &[DataClass]) -> Option<Value> {
    let mut by_pointer: std::collections::BTreeMap<&str, Vec<(std::ops::Range<usize>, DataClass)>> = std::collections::BTreeMap::new();
    for f in findings.iter().filter(|f| classes.contains(&f.class)) {
        if f.in_key {
            return None;
        }
        by_pointer.entry(f.pointer.as_str()).or_default().push((f.range.clone(), f.class));
    }
    for (pointer, mut ranges) in by_pointer {
        let Some(Value::String(s)) = out.pointer_mut(pointer) else { return None };
        ranges.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let mut last_start = usize::MAX;
        for (r, class) in ranges {
            // Overlapping findings: the outer replacement already covers them.
            if r.end > last_start || !s.is_char_boundary(r.start) || !s.is_char_boundary(r.end) || r.end > s.len() {
                continue;
            }
            s.replace_range(r.clone(), &format!("[REDACTED:{}]", class.as_str()));
            last_start = r.start;
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
