//! One HTTP stream: fill the engine's request view, apply its decision, record the event.
//!
//! Blocking decisions are answered with a local reply before anything of the body passes, and
//! their event is queued at once. Decisions that let the request through are recorded when the
//! stream ends (`on_log`), so the event can name the upstream that served it. Either way each
//! decision is exactly one event and one counter.

use std::rc::Rc;

use interlock_policies::event::{DecisionEventRef, HostFacts, Phase};
use interlock_policies::inspect::{ResponsePlan, ResponseStream, StreamStep, stream_error_frame};
use interlock_policies::ratelimit::Outcome;
use interlock_policies::schema::Mode;
use interlock_policies::{Engine, Evaluation, HeadersVerdict, HttpRequest, PendingBody, VerifiedIdentity};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::config::AccessLogState;
use crate::host;
use crate::live::Snapshot;
use crate::state::{self, Shared};

pub struct Stream {
    shared: Rc<Shared>,
    /// The policy and revocations this stream started with: an update never changes a decision
    /// mid-stream, and no decision mixes two versions.
    snapshot: Option<Snapshot>,
    pending: Option<PendingBody>,
    /// A decision that let the request through, recorded at `on_log`.
    passed: Option<(String, Evaluation)>,
    body_size: usize,
    /// An event asking the enforcer to act, sent at `on_log` (once the local reply is out) ahead
    /// of the batch, on the root's next tick.
    urgent: Option<Vec<u8>>,
    /// How the response is inspected.
    response: Inspecting,
    /// The request headers already went upstream (the body is still held): they can no longer
    /// be changed.
    headers_sent: bool,
    /// The host clock when the request arrived, in Unix milliseconds: one clock read serves the
    /// request's decision, its id and its event.
    now_ms: u64,
}

/// Response inspection state.
enum Inspecting {
    None,
    /// Whole body held until the end (`headers_held`: its headers have not left yet).
    Buffer { max_bytes: usize, headers_held: bool },
    /// Frame by frame.
    Stream(Box<ResponseStream>),
    /// Refused mid-stream: nothing more of the upstream's body goes out.
    Cut,
}

impl Stream {
    pub fn new(shared: Rc<Shared>) -> Self {
        Self { shared, snapshot: None, pending: None, passed: None, body_size: 0, urgent: None, response: Inspecting::None, headers_sent: false, now_ms: 0 }
    }

    fn request_view(&self, engine: &Engine, end_of_stream: bool) -> Result<HttpRequest, host::HostError> {
        let mut req = HttpRequest { end_of_stream, ..HttpRequest::default() };
        for (name, value) in host::request_headers()? {
            // Header names are validated by Envoy's codecs; values may hold any byte. Lossy
            // decoding cannot widen a decision: a mangled security header fails its own parse.
            let value = String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            match name.as_str() {
                ":method" => req.method = value,
                ":path" => req.path = value,
                ":authority" => req.authority = value,
                n if n.starts_with(':') => {}
                _ => req.headers.push((name, value)),
            }
        }
        let jwt = engine.jwt_identity();
        let [jwt_agent, jwt_user, jwt_session] =
            host::jwt_claims(&["metadata", "filter_metadata", &jwt.metadata_namespace, &jwt.payload_key], [&jwt.agent_claim, &jwt.user_claim, &jwt.session_claim]);
        req.identity = VerifiedIdentity {
            jwt_agent,
            jwt_user,
            jwt_session,
            // The verified peer certificate of this connection, never x-forwarded-client-cert.
            peer_principal: if engine.uses_peer_identity() {
                host::property_str(&["connection", "uri_san_peer_certificate"]).filter(|s| !s.is_empty())
            } else {
                None
            },
        };
        Ok(req)
    }

    /// Takes a token from every bucket a passing request must (shared data, across workers, or
    /// this worker's lease of it); over a limit the decision becomes a 429.
    fn meter(&self, engine: &Engine, mut eval: Evaluation) -> Evaluation {
        let checks = engine.rate_limit_checks(&eval);
        if checks.is_empty() {
            return eval;
        }
        let now = self.now_ms;
        let mut metrics = self.shared.metrics.borrow_mut();
        let mut leases = self.shared.leases.borrow_mut();
        for check in &checks {
            match leases.take(&mut host::HostStore, &check.limit, &check.key, check.spec, now) {
                Ok(t) => {
                    if t.evicted {
                        metrics.add(state::RATELIMIT_EVICTIONS, 1);
                    }
                    match t.outcome {
                        Outcome::Admitted { .. } => {}
                        Outcome::Limited { retry_after_ms } => {
                            eval = engine.rate_limited(eval, check, retry_after_ms);
                            if eval.decision.blocks() {
                                return eval;
                            }
                        }
                        Outcome::Contention => {
                            metrics.add(state::RATELIMIT_CONTENTION, 1);
                            return engine.rate_limit_contention(eval);
                        }
                    }
                }
                Err(e) => {
                    metrics.add(state::HOST_ERRORS, 1);
                    host::log(LogLevel::Error, &format!("interlock: rate-limit state unavailable ({e}); refusing"));
                    return engine.rate_limit_contention(eval);
                }
            }
        }
        eval
    }

    /// Applies a final decision. Returns the action for the current callback.
    fn apply(&mut self, eval: Evaluation, resume: Action) -> Action {
        let eval = match self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)) {
            Some(engine) => self.meter(&engine, eval),
            None => eval,
        };
        let id = self.shared.ids.borrow_mut().next_id(self.now_ms);
        let d = &eval.decision;
        self.set_filter_state(&id, &eval);
        if d.blocks() {
            let body = eval.reply_body(&id);
            let status = u32::from(d.status);
            let retry_after = d.retry_after_secs.map(|s| s.to_string());
            let mut headers = vec![
                ("content-type", "application/json"),
                ("x-interlock-decision-id", id.as_str()),
                ("x-interlock-rule", d.rule.as_str()),
            ];
            if let Some(r) = &retry_after {
                headers.push(("retry-after", r.as_str()));
            }
            if let Err(e) = host::send_response(status, &headers, body.as_bytes()) {
                // Cannot answer: reset rather than let the request through.
                host::log(LogLevel::Error, &format!("interlock: decision {id}: local reply failed ({e}); resetting the stream"));
                let _ = host::reset_request();
            }
            self.record(&id, &eval);
            Action::Pause
        } else {
            // The upstream learns the decision id (for its own logs); client copies of our
            // headers were removed when the request arrived. Only while the headers are still
            // ours to change: once they went upstream (Istio mode) the host would refuse it.
            if !self.headers_sent {
                let _ = host::set_request_header("x-interlock-decision-id", &id);
            }
            self.passed = Some((id, eval));
            resume
        }
    }

    fn record(&mut self, id: &str, eval: &Evaluation) {
        // A decision about the response of a request that passed names that request's decision.
        let request_decision_id = self.passed.as_ref().map(|(rid, _)| rid.as_str()).filter(|rid| *rid != id);
        let phase = if request_decision_id.is_some() { Phase::Response } else { Phase::Request };
        let Some(engine) = self.snapshot.as_ref().map(|s| &s.engine) else { return };
        let d = &eval.decision;
        let outcome = match (d.mode, d.action) {
            (Mode::Shadow, interlock_policies::Action::Allow) => "shadow_allow",
            (Mode::Shadow, interlock_policies::Action::Deny) => "shadow_deny",
            (Mode::Shadow, interlock_policies::Action::Redact) => "shadow_redact",
            (Mode::Shadow, interlock_policies::Action::Audit) => "shadow_audit",
            (Mode::Enforce, a) => a.as_str(),
        };
        let upstream = if d.blocks() { None } else { host::property_str_at(host::UPSTREAM_ADDRESS).filter(|s| !s.is_empty()) };
        let worker = self.shared.worker.borrow();
        let facts = HostFacts {
            phase,
            request_decision_id,
            decision_id: id,
            time_unix_ms: if phase == Phase::Request { self.now_ms } else { host::now_ms() },
            downstream: host::property_str_at(host::SOURCE_ADDRESS),
            // Only the enforcer's kernel actions need the 4-tuple's other half.
            destination: d.kernel.as_ref().and_then(|_| host::property_str_at(host::DESTINATION_ADDRESS)),
            upstream,
            worker: &worker,
        };
        let event = DecisionEventRef::new(eval, engine.version(), &facts);
        let mut metrics = self.shared.metrics.borrow_mut();
        metrics.count_decision(outcome, &d.rule);
        let urgent = d.blocks() && (d.kernel.is_some() || d.revoke.is_some());
        if urgent {
            // Held until `on_log`, once the local reply is out (rare: kernel and revoke denies).
            let mut line = Vec::new();
            match event.write_json(&mut line) {
                Ok(()) => self.urgent = Some(line),
                Err(_) => metrics.add(state::EVENTS_DROPPED, 1),
            }
        } else {
            // Serialized straight into the batch it will be posted in.
            let limits = self.shared.enforcer.borrow().limits();
            let mut events = self.shared.events.borrow_mut();
            metrics.add(state::EVENTS_DROPPED, events.push_with(|buf| event.write_json(buf).is_ok(), limits));
            // A full batch leaves now (the root's next tick in a millisecond) rather than up to
            // a flush interval later: the buffer stays about one batch deep under load.
            if events.wants_flush(limits) && !self.shared.fast_tick.get() && host::set_tick_period(std::time::Duration::from_millis(1)).is_ok() {
                self.shared.fast_tick.set(true);
            }
        }
        // Refusals are logged at info; the rest only when the host logs debug (formatting a line
        // the host then drops costs microseconds per request).
        if d.blocks() || self.shared.debug_logs.get() {
            let level = if d.blocks() { LogLevel::Info } else { LogLevel::Debug };
            host::log(level, &format!("interlock: decision {id}: {} {} by rule {:?} ({:?}): {}", d.action.as_str(), d.status, d.rule, d.mode, d.reason));
        }
    }

    /// The decision as filter state, for the access log: one key,
    /// `%FILTER_STATE(wasm.interlock.decision:PLAIN)%` = `decision=<id> action=<a> rule=<r>
    /// mode=<m> agent=<agent>` (each `set_property` costs about half a microsecond inside Envoy),
    /// and with `access_log_state: full` the five keys `wasm.interlock.decision_id`, `.action`,
    /// `.rule`, `.mode`, `.agent` too. A later decision about the response overwrites the request's.
    fn set_filter_state(&self, id: &str, eval: &Evaluation) {
        let d = &eval.decision;
        let mode = d.mode.as_str();
        let agent = eval.facts.agent.as_deref().unwrap_or("-");
        let combined = format!("decision={id} action={} rule={} mode={mode} agent={agent}", d.action.as_str(), d.rule);
        let mut failed = u64::from(host::set_filter_state("interlock.decision", &combined).is_err());
        if self.shared.access_log_state.get() == AccessLogState::Full {
            for (k, v) in [
                ("interlock.decision_id", id),
                ("interlock.action", d.action.as_str()),
                ("interlock.rule", d.rule.as_str()),
                ("interlock.mode", mode),
                ("interlock.agent", agent),
            ] {
                failed += u64::from(host::set_filter_state(k, v).is_err());
            }
        }
        self.shared.metrics.borrow_mut().add(state::HOST_ERRORS, failed);
    }

    /// Applies a decision about a response: replace it with the local reply when it blocks and
    /// its headers have not left (else reset it), record anything that is not a clean pass.
    fn judge_response(&mut self, eval: Evaluation, resume: Action) -> Action {
        let id = self.shared.ids.borrow_mut().next_id(host::now_ms());
        self.set_filter_state(&id, &eval);
        let d = &eval.decision;
        if d.blocks() {
            let headers_left = matches!(self.response, Inspecting::Buffer { headers_held: false, .. } | Inspecting::Stream(_));
            let body = eval.reply_body(&id);
            let headers = [("content-type", "application/json"), ("x-interlock-decision-id", id.as_str()), ("x-interlock-rule", d.rule.as_str())];
            if headers_left || host::send_response(u32::from(d.status), &headers, body.as_bytes()).is_err() {
                let _ = host::reset_response();
            }
            self.response = Inspecting::Cut;
            self.record(&id, &eval);
            return Action::Pause;
        }
        self.record(&id, &eval);
        resume
    }

    /// Fail closed when the host itself fails us.
    fn host_failure(&mut self, e: &host::HostError) -> Action {
        self.shared.metrics.borrow_mut().add(state::HOST_ERRORS, 1);
        host::log(LogLevel::Error, &format!("interlock: {e}; refusing the request"));
        let body = r#"{"error":"Interlock could not inspect this request","rule":"host-error","status":503}"#;
        if host::send_response(503, &[("content-type", "application/json")], body.as_bytes()).is_err() {
            let _ = host::reset_request();
        }
        Action::Pause
    }

    fn decide_body(&mut self, end_of_stream: bool) -> Action {
        let (Some(engine), Some(pending)) = (self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)), self.pending.take()) else {
            return Action::Continue;
        };
        if self.body_size > pending.max_body_bytes() {
            return self.apply(engine.body_too_large(pending), Action::Continue);
        }
        if !end_of_stream {
            self.pending = Some(pending);
            // StopIterationAndBuffer: nothing of the body moves until the decision.
            return Action::Pause;
        }
        // A body can take long to arrive: decide it (and meter it) at the time it is complete.
        self.now_ms = host::now_ms();
        let body = match host::request_body(self.body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => return self.host_failure(&e),
        };
        let mut eval = engine.on_request_body(pending, &body);
        if let Some(rewrite) = eval.rewrite.take().filter(|_| !eval.decision.blocks()) {
            // Redacted: the upstream gets the rewritten body. Its length changes, so the header
            // goes (it can still change: the headers are held); without held headers a rewrite
            // would not match the length already sent, so it is refused instead.
            let held = *self.shared.hold_headers.borrow();
            if !held || host::remove_request_header("content-length").is_err() || host::set_request_body(self.body_size, &rewrite).is_err() {
                let refused = engine.uninspectable(eval.facts, interlock_policies::schema::Direction::Request, "cannot rewrite the request body");
                return self.apply(refused, Action::Continue);
            }
        }
        self.apply(eval, Action::Continue)
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.now_ms = host::now_ms();
        let snapshot = {
            let mut metrics = self.shared.metrics.borrow_mut();
            let now = self.now_ms;
            self.shared.live.borrow_mut().as_mut().map(|l| l.sync_at(now, &mut metrics))
        };
        let Some(snapshot) = snapshot else {
            return self.host_failure(&host::HostError::Status { call: "policy", status: proxy_wasm::types::Status::NotFound });
        };
        let engine = Rc::clone(&snapshot.engine);
        let revocations = Rc::clone(&snapshot.revocations);
        self.snapshot = Some(snapshot);
        let req = match self.request_view(&engine, end_of_stream) {
            Ok(r) => r,
            Err(e) => return self.host_failure(&e),
        };
        // Our own headers are ours to set: drop client-supplied copies before anything else.
        for (name, _) in &req.headers {
            if name.starts_with("x-interlock-") {
                let _ = host::remove_request_header(name);
            }
        }
        match engine.on_request_headers_live(&req, &revocations, self.now_ms) {
            HeadersVerdict::Decided(eval) => self.apply(eval, Action::Continue),
            HeadersVerdict::NeedBody(pending) => {
                self.pending = Some(pending);
                if *self.shared.hold_headers.borrow() {
                    Action::Pause
                } else {
                    self.headers_sent = true;
                    Action::Continue
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        self.decide_body(end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: decide on what was buffered.
        if self.pending.is_some() {
            return self.decide_body(true);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // The caller can quote the decision id of an allowed call too (support, audits).
        let Some((id, eval)) = &self.passed else { return Action::Continue };
        let _ = host::set_response_header("x-interlock-decision-id", id);
        if end_of_stream {
            // No body: nothing to inspect.
            return Action::Continue;
        }
        let Some(engine) = self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)) else { return Action::Continue };
        if !may_inspect_response(&engine, &eval.facts) {
            // Nothing in the policy looks at this response: not even its headers are read.
            return Action::Continue;
        }
        let [status, content_type, content_encoding] = host::response_headers([":status", "content-type", "content-encoding"]);
        let status = status.and_then(|s| s.parse().ok()).unwrap_or(0);
        let plan = engine.response_plan(&eval.facts, status, content_type.as_deref(), content_encoding.as_deref());
        match plan {
            ResponsePlan::Skip => Action::Continue,
            ResponsePlan::Uninspectable(eval) => self.judge_response(*eval, Action::Continue),
            ResponsePlan::Buffer { max_bytes } => {
                // The body may be replaced or rewritten: its length is for Envoy to set.
                let _ = host::remove_response_header("content-length");
                let held = *self.shared.hold_headers.borrow();
                self.response = Inspecting::Buffer { max_bytes, headers_held: held };
                if held { Action::Pause } else { Action::Continue }
            }
            ResponsePlan::Stream => {
                let _ = host::remove_response_header("content-length");
                self.response = Inspecting::Stream(Box::new(engine.response_stream(&eval.facts)));
                Action::Continue
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if matches!(self.response, Inspecting::None) {
            return Action::Continue;
        }
        let Some(engine) = self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)) else { return Action::Continue };
        // Borrowed, not cloned, for every chunk: owned copies only where a refusal is built.
        let Some((_, passed)) = &self.passed else { return Action::Continue };
        let facts = &passed.facts;
        match &mut self.response {
            Inspecting::None => Action::Continue,
            Inspecting::Cut => {
                let _ = host::set_response_body(body_size, b"");
                Action::Continue
            }
            Inspecting::Buffer { max_bytes, .. } if body_size > *max_bytes => {
                let eval = engine.uninspectable(facts.clone(), interlock_policies::schema::Direction::Response, "body over the inspection limit");
                self.judge_response(eval, Action::Continue)
            }
            Inspecting::Buffer { .. } if !end_of_stream => Action::Pause,
            Inspecting::Buffer { .. } => {
                let body = match host::response_body(body_size) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(e) => {
                        let eval = engine.uninspectable(facts.clone(), interlock_policies::schema::Direction::Response, &e.to_string());
                        return self.judge_response(eval, Action::Continue);
                    }
                };
                match engine.on_response_body(facts, &body, &mut host::HostStore) {
                    None => Action::Continue,
                    Some(eval) => {
                        if eval.rewrite.as_ref().is_some_and(|r| host::set_response_body(body_size, r).is_err()) {
                            let refused = engine.uninspectable(facts.clone(), interlock_policies::schema::Direction::Response, "cannot rewrite the body");
                            return self.judge_response(refused, Action::Continue);
                        }
                        self.judge_response(eval, Action::Continue)
                    }
                }
            }
            Inspecting::Stream(stream) => {
                let chunk = host::response_body(body_size).ok().flatten().unwrap_or_default();
                match engine.feed_response_stream(stream, facts, &chunk, end_of_stream, &mut host::HostStore) {
                    StreamStep::Deliver(bytes) => {
                        if bytes != chunk && host::set_response_body(body_size, &bytes).is_err() {
                            let _ = host::reset_response();
                        }
                        if end_of_stream {
                            // A stream that went on after a redaction (or an audit) is one more
                            // decision, about the response: recorded once, at its end, with the
                            // classes and counts found.
                            let outcome = stream.outcome().cloned();
                            self.response = Inspecting::None;
                            if let Some(eval) = outcome {
                                let id = self.shared.ids.borrow_mut().next_id(host::now_ms());
                                self.set_filter_state(&id, &eval);
                                self.record(&id, &eval);
                            }
                        }
                        Action::Continue
                    }
                    StreamStep::Block(eval) => {
                        let id = self.shared.ids.borrow_mut().next_id(host::now_ms());
                        self.set_filter_state(&id, &eval);
                        if host::set_response_body(body_size, &stream_error_frame(&eval, &id)).is_err() {
                            let _ = host::reset_response();
                        }
                        self.response = Inspecting::Cut;
                        self.record(&id, &eval);
                        Action::Continue
                    }
                }
            }
        }
    }

    fn on_log(&mut self) {
        if let Some(line) = self.urgent.take() {
            // First in line, and the root's next tick in a millisecond: a stream's own callout
            // would answer to this stream, which is about to be gone.
            let limits = self.shared.enforcer.borrow().limits();
            let dropped = self.shared.events.borrow_mut().push_front(&line, limits);
            self.shared.metrics.borrow_mut().add(state::EVENTS_DROPPED, dropped);
            if host::set_tick_period(std::time::Duration::from_millis(1)).is_ok() {
                self.shared.fast_tick.set(true);
            }
        }
        if let Some((id, eval)) = self.passed.take() {
            self.record(&id, &eval);
        }
    }
}

/// Whether the policy can look at the response to a request with these facts, before any of its
/// headers is read. [`Engine::response_plan`] skips a plain `200 application/json` answer only
/// when nothing in the policy watches the response (no data rule for it, no governed tools, not
/// an LLM route): then it skips every answer, whatever its status, type or encoding (the tests
/// below check this over every kind of answer and request of the demo policy).
fn may_inspect_response(engine: &Engine, facts: &interlock_policies::Facts) -> bool {
    !matches!(engine.response_plan(facts, 200, Some("application/json"), None), ResponsePlan::Skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [u16; 7] = [200, 201, 204, 304, 403, 500, 502];
    const TYPES: [Option<&str>; 6] = [None, Some("application/json"), Some("text/event-stream"), Some("text/plain"), Some("text/html; charset=utf-8"), Some("APPLICATION/JSON")];
    const ENCODINGS: [Option<&str>; 3] = [None, Some("gzip"), Some("identity")];

    fn facts_of(engine: &Engine, method: &str, path: &str, agent: &str, body: Option<&str>) -> interlock_policies::Facts {
        let req = HttpRequest {
            method: method.into(),
            path: path.into(),
            authority: "api.example.com".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            identity: VerifiedIdentity { jwt_agent: Some(agent.into()), jwt_user: Some("u".into()), jwt_session: Some("s".into()), peer_principal: None },
            end_of_stream: body.is_none(),
        };
        engine.evaluate(&req, body.map(str::as_bytes)).facts
    }

    #[test]
    fn a_skipped_probe_means_every_answer_is_skipped() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/examples/demo.json")).unwrap();
        let engine = Engine::from_json(&text).unwrap();
        let call = |tool: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#);
        let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let cases = [
            ("GET", "/api/customers/42", "triage-bot", None),
            ("GET", "/api/customers/42", "billing-agent", None),
            ("GET", "/api/customers", "billing-agent", None),
            ("GET", "/files/config/.env", "triage-bot", None),
            ("POST", "/mcp", "triage-bot", Some(call("create_comment"))),
            ("POST", "/mcp", "triage-bot", Some(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned())),
            ("POST", "/mcp", "billing-agent", Some(call("export_customers"))),
            ("POST", "/v1/chat/completions", "triage-bot", Some(chat.to_owned())),
            ("POST", "/a2a", "triage-bot", Some(r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}"#.to_owned())),
        ];
        let (mut skipped, mut watched) = (0, 0);
        for (method, path, agent, body) in cases {
            let facts = facts_of(&engine, method, path, agent, body.as_deref());
            if may_inspect_response(&engine, &facts) {
                watched += 1;
                continue;
            }
            skipped += 1;
            for status in STATUSES {
                for ct in TYPES {
                    for ce in ENCODINGS {
                        assert!(
                            matches!(engine.response_plan(&facts, status, ct, ce), ResponsePlan::Skip),
                            "{method} {path} as {agent}: {status} {ct:?} {ce:?} must be skipped too"
                        );
                    }
                }
            }
        }
        // Both kinds occur in the demo policy, so both branches are exercised.
        assert!(skipped > 0 && watched > 0, "skipped {skipped}, watched {watched}");
    }
}
