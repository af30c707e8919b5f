//! Deep inspection of governed bodies: sensitive data in both directions (data rules), and what a
//! governed response may carry back (LLM tool calls, MCP answers).
//!
//! Data-rule semantics: the rules that apply (direction, route, agent) are looked at together.
//! `allow` rules first exempt their classes; every other rule fires when at least `min_count`
//! values of its (non-exempt) classes were found in the one body. Among firing `enforce` rules the
//! most severe action wins (deny > redact > audit; the first in document order on a tie), and
//! every firing `redact` rule's classes are redacted. A firing `shadow` rule more severe than what
//! was done is recorded instead, with `mode: shadow`. Events carry class counts, never values.

use serde_json::Value;

use crate::decision::{Action, Decision, Evaluation, Facts};
use crate::detect::{ClassCount, DataClass, JsonFindings};
use crate::engine::{CompiledDataRule, Engine};
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
                && r.routes.as_ref().is_none_or(|rs| route.as_ref().is_some_and(|x| rs.contains(x)))
                && r.agents.as_ref().is_none_or(|ags| agent.as_ref().is_some_and(|a| ags.contains(a)))
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
                        ..Decision::refusal(403, &r.id, reason)
                    },
                    DataAction::Redact => Decision { action: Action::Redact, status: 0, allowed_by: Some(allowed_by), ..Decision::refusal(0, &r.id, reason) },
                    _ => Decision { action: Action::Audit, status: 0, allowed_by: Some(allowed_by), ..Decision::refusal(0, &r.id, reason) },
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
                ..Decision::refusal(0, &s.id, format!("shadow data rule {:?} would apply: {}", s.id, describe(&facts.data_classes)))
            },
            None => decision,
        };
        let rewrite = if decision.blocks() { None } else { rewrite };
        Evaluation { decision, facts, rewrite }
    }

    /// Scans a governed request's parsed JSON body against the request-direction data rules.
    /// Called by the body phase for a request the rules let through.
    pub(crate) fn inspect_request_data(&self, eval: Evaluation, value: &Value) -> Evaluation {
        if eval.decision.blocks() || !self.watches_data(&eval.facts, Direction::Request) {
            return eval;
        }
        self.inspect_json(eval, value, Direction::Request)
    }

    fn inspect_json(&self, mut eval: Evaluation, value: &Value, direction: Direction) -> Evaluation {
        let Some(detector) = &self.detector else { return eval };
        let findings = match detector.scan_json(value) {
            Ok(f) => f,
            Err(e) => return self.uninspectable(eval.facts, direction, &format!("{e}")),
        };
        eval.facts.data_classes = merge_counts(&eval.facts.data_classes, &findings.summary());
        let j = self.judge_data(&eval.facts, direction, &eval.facts.data_classes);
        if !j.redact.is_empty() && j.enforced.and_then(|i| self.data_rules.get(i)).is_some_and(|r| r.action == DataAction::Redact) {
            match redact(value, &findings, &j.redact) {
                Some(v) => eval.rewrite = serde_json::to_vec(&v).ok(),
                // A value the engine cannot replace (inside an object key) is refused instead.
                None => {
                    return Evaluation {
                        decision: Decision::refusal(403, &eval.decision.rule, "sensitive value in an object key cannot be redacted".into()),
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
        let route_tools = facts.governed.as_ref().and_then(|id| self.governed.iter().find(|r| &r.id == id)).and_then(|r| r.tools.as_ref());
        let wanted = match protocol {
            Protocol::Openai | Protocol::Anthropic => true,
            Protocol::Mcp => route_tools.is_some() || self.watches_data(facts, Direction::Response),
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
        let depth = usize::try_from(self.inspection.max_json_depth).unwrap_or(32);
        let start = Evaluation {
            decision: Decision { action: Action::Allow, ..Decision::refusal(0, "response", "response inspected".into()) },
            facts: Facts { data_classes: Vec::new(), ..facts.clone() },
            rewrite: None,
        };
        if body.is_empty() {
            return None;
        }
        let value = match crate::json::parse_strict(body, depth) {
            Ok(v) => v,
            Err(e) => return Some(self.uninspectable(start.facts, Direction::Response, &format!("not strict JSON: {e}"))),
        };
        // A model's proposed tool calls are judged like calls through MCP.
        if let Some(provider) = llm_provider(facts) {
            match crate::llm::parse_response(provider, &value) {
                Ok(resp) => {
                    if let Some(refused) = resp.tool_calls.into_iter().find_map(|call| self.refused_tool_note(&start.facts, crate::llm::AssemblerNote::ToolCallComplete(call))) {
                        return Some(refused);
                    }
                }
                Err(e) => return Some(self.uninspectable(start.facts, Direction::Response, &format!("{e}"))),
            }
        }
        // A tools/list answer on a route with tool controls: pins, descriptions, hiding.
        let control = facts.governed.as_ref().and_then(|id| self.governed.iter().find(|r| &r.id == id)).and_then(|r| r.tools.as_ref());
        if let Some(control) = control.filter(|_| facts.calls.len() == 1 && facts.calls.iter().all(|c| c.method == "tools/list"))
            && let Some(eval) = self.judge_tools_list(facts, &value, control, store) {
                return Some(eval);
            }
        let eval = if self.watches_data(facts, Direction::Response) { self.inspect_json(start, &value, Direction::Response) } else { start };
        let recorded = eval.decision.action != Action::Allow || eval.decision.mode == Mode::Shadow || eval.rewrite.is_some();
        recorded.then_some(eval)
    }

    /// Judges a tool call a model proposed, with the agent's MCP tool grants and denies (and not
    /// with the HTTP grant that let it call the model).
    pub fn judge_tool_call(&self, facts: &Facts, tool: &str, arguments: Option<&Value>) -> Decision {
        if !crate::jsonrpc::is_valid_tool_name(tool) {
            return Decision::refusal(403, crate::builtin::INVALID_TOOL_CALL, format!("tool name {:?} is not a valid tool name", tool.chars().take(64).collect::<String>()));
        }
        self.tool_call_decision(facts, tool, arguments)
    }
}

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

impl Engine {
    /// Starts inspecting a streamed response to a request with these facts.
    pub fn response_stream(&self, facts: &Facts) -> ResponseStream {
        ResponseStream {
            parser: crate::sse::SseParser::new(),
            assembler: llm_provider(facts).map(crate::llm::ToolCallAssembler::new),
            scanner: self.watches_data(facts, Direction::Response).then(crate::detect::StreamScanner::default),
            pending: Vec::new(),
            base: 0,
            hold_from: None,
            judged_to: 0,
            found: Vec::new(),
            blocked: false,
        }
    }

    /// Feeds the next chunk of a streamed response (`end` on the last); says what may go out.
    pub fn feed_response_stream(&self, s: &mut ResponseStream, facts: &Facts, chunk: &[u8], end: bool) -> StreamStep {
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
        for event in &events {
            let mut texts: Vec<String> = Vec::new();
            if let Some(assembler) = s.assembler.as_mut() {
                let was_pending = assembler.pending_tool_call();
                let notes = match assembler.feed(event) {
                    Ok(n) => n,
                    Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}"))),
                };
                if !was_pending && assembler.pending_tool_call() {
                    s.hold_from = Some(event.start);
                }
                for note in notes {
                    if let crate::llm::AssemblerNote::Text(t) = &note {
                        texts.push(t.clone());
                    } else if let Some(refused) = self.refused_tool_note(facts, note) {
                        return self.block_stream(s, refused);
                    }
                }
                if !assembler.pending_tool_call() {
                    s.hold_from = None;
                }
            } else {
                texts.push(event.data.clone());
            }
            if let (Some(scanner), Some(detector)) = (s.scanner.as_mut(), self.detector.as_ref()) {
                let mut findings = Vec::new();
                for t in &texts {
                    match scanner.push(detector, t.as_bytes()) {
                        Ok(f) => findings.extend(f),
                        Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}"))),
                    }
                }
                match scanner.flush(detector) {
                    Ok(f) => findings.extend(f),
                    Err(e) => return self.block_stream(s, self.uninspectable(facts.clone(), Direction::Response, &format!("{e}"))),
                }
                if !findings.is_empty() {
                    s.found.extend(findings.iter().map(|f| f.class));
                    let mut f = facts.clone();
                    f.data_classes = crate::detect::summarize(s.found.iter().copied());
                    let j = self.judge_data(&f, Direction::Response, &f.data_classes);
                    // In a stream a value cannot be taken back: redact stops the stream too.
                    let stops = j.enforced.and_then(|i| self.data_rules.get(i)).is_some_and(|r| matches!(r.action, DataAction::Deny | DataAction::Redact));
                    if stops {
                        let eval = self.apply_data(Evaluation { decision: Decision { action: Action::Allow, ..Decision::refusal(0, "response", String::new()) }, facts: f, rewrite: None }, &j);
                        let eval = if eval.decision.blocks() { eval } else { Evaluation { decision: Decision { action: Action::Deny, status: 403, ..eval.decision }, ..eval } };
                        return self.block_stream(s, eval);
                    }
                }
            }
            s.judged_to = event.end;
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
        }
        let release_to = s.hold_from.map_or(s.judged_to, |h| h.min(s.judged_to));
        let release_to = if end && s.hold_from.is_none() { s.base.saturating_add(s.pending.len() as u64) } else { release_to };
        let n = usize::try_from(release_to.saturating_sub(s.base)).unwrap_or(0).min(s.pending.len());
        let out: Vec<u8> = s.pending.drain(..n).collect();
        s.base = s.base.saturating_add(n as u64);
        StreamStep::Deliver(out)
    }

    /// The refusal of a tool call the assembler completed (its name, or later its arguments, which
    /// a deny on an argument value can need), if the agent may not make it.
    fn refused_tool_note(&self, facts: &Facts, note: crate::llm::AssemblerNote) -> Option<Evaluation> {
        let (name, args) = match note {
            crate::llm::AssemblerNote::ToolNameComplete { name, .. } => (name, None),
            crate::llm::AssemblerNote::ToolCallComplete(call) => (call.name, call.arguments),
            _ => return None,
        };
        let decision = self.judge_tool_call(facts, &name, args.as_ref());
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
pub(crate) fn redact(value: &Value, findings: &JsonFindings, classes: &[DataClass]) -> Option<Value> {
    let mut out = value.clone();
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
