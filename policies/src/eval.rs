//! Evaluating a request against a compiled [`Engine`]: a pure function of the policy and the
//! request view.
//!
//! Semantics, in order (the first step that decides, decides):
//! 1. Ambiguity is refused: a duplicated security header (400 `duplicate-header`).
//! 2. Identity: the agent comes from verified sources only (JWT claims `jwt_authn` verified, the
//!    mTLS peer principal); none where one is required is 401 `identity-required`; a JWT and a
//!    peer certificate naming different agents is 403 `identity-conflict`.
//! 3. The path must be canonical (400 `malformed-path`); the decision is made on that path.
//! 4. Rules: among the rules in scope (every-agent rules and the agent's own) whose clauses all
//!    match, an enforcing **deny** wins (the first in document order), else an enforcing **allow**
//!    (grant), else `default_action`. HTTP clauses are checked on the headers; MCP/A2A clauses on
//!    each JSON-RPC call of a governed body, and a batch is allowed only if every call is.
//! 5. Shadow rules never change the outcome: when the request is allowed and a shadow deny rule
//!    matches, the decision records that rule with `mode: shadow` and the rule that let it
//!    through (`allowed_by`).
//! 6. On a governed route the body must be fully inspected first: a content encoding (415), a
//!    content type other than JSON (415), a body over the limit (413), a missing body (400), or
//!    a body that is not strict JSON / JSON-RPC (400) is refused, never allowed uninspected.

use std::borrow::Cow;

use crate::builtin;
use crate::decision::{Action, Decision, Evaluation, Facts, RpcCall};
use crate::engine::{ArgKind, ArgMatcher, CompiledRule, Engine, HttpClause, RpcClause, Scope, Tables};
use crate::glob::glob_match;
use crate::json_doc::{Doc, parse_doc};
use crate::jsonrpc;
use crate::path::{canonical_path, segments};
use crate::request::HttpRequest;
use crate::revocation::RevocationSet;
use crate::ratelimit::BucketSpec;
use crate::schema::{DefaultAction, Effect, LimitKey, Mode, Protocol};
use crate::template::{PathTemplate, Segment};
use crate::text::Text;
use crate::traceparent;

/// The outcome of the headers phase.
#[derive(Debug, Clone)]
pub enum HeadersVerdict {
    /// Decided on the headers alone.
    Decided(Evaluation),
    /// A governed route: buffer the whole body (at most [`PendingBody::max_body_bytes`]) and call
    /// [`Engine::on_request_body`]. Nothing of the body may pass before that decision.
    NeedBody(PendingBody),
}

/// What the headers phase established, carried to the body phase.
#[derive(Debug, Clone)]
pub struct PendingBody {
    facts: Facts,
    plan: BodyPlan,
}

impl PendingBody {
    /// The most body bytes the engine inspects; more is a 413.
    pub fn max_body_bytes(&self) -> usize {
        self.plan.max_body_bytes
    }
    /// Facts established so far (identity, path, route).
    pub fn facts(&self) -> &Facts {
        &self.facts
    }
}

/// One bucket a passing request must take a token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    /// The rate limit's id.
    pub limit: String,
    /// The bucket's key within the limit.
    pub key: String,
    pub spec: BucketSpec,
    pub mode: Mode,
}

/// One JSON-RPC call, as the rules see it.
struct Call<'a> {
    protocol: Protocol,
    method: &'a str,
    /// A2A methods in canonical form.
    canonical: Option<&'static str>,
    tool: Option<&'a str>,
    arguments: Option<&'a Doc<'a>>,
}

/// The request line as the rules see it. Built once per request without a segment list: the
/// tries and templates split the canonical path as they walk it.
struct Line<'a> {
    method: &'a str,
    /// [`method_bit`] of `method`, for the clauses' [`crate::engine::Methods`].
    method_bit: u16,
    host: &'a str,
    /// The canonical path (`/` and the segments joined by `/`).
    path: &'a str,
    /// The same, lower-cased, for the case-folding deny tables; borrowed when there is no upper
    /// case in it (the common case), so folding costs nothing then.
    folded: Cow<'a, str>,
}

impl<'a> Line<'a> {
    fn new(method: &'a str, host: &'a str, path: &'a str) -> Self {
        let folded = if path.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(path.to_ascii_lowercase()) } else { Cow::Borrowed(path) };
        Self { method, method_bit: method_bit(method), host, path, folded }
    }
}

/// The matching rules, reduced to what decides.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    enforce_deny: Option<usize>,
    enforce_allow: Option<usize>,
    shadow_deny: Option<usize>,
}

impl Outcome {
    fn add(&mut self, rule: &CompiledRule, idx: usize) {
        let slot = match (rule.mode, rule.effect) {
            (Mode::Enforce, Effect::Deny) => &mut self.enforce_deny,
            (Mode::Enforce, Effect::Allow) => &mut self.enforce_allow,
            (Mode::Shadow, Effect::Deny) => &mut self.shadow_deny,
            // A shadow grant cannot change an outcome that is recorded anyway: the request is
            // either allowed by an enforcing rule or denied, and a shadow allow on a denied
            // request is reported by replay, not per request.
            (Mode::Shadow, Effect::Allow) => return,
        };
        *slot = Some(slot.map_or(idx, |cur| cur.min(idx)));
    }
}

/// What the headers phase decided. The facts it established are written in place, so the
/// decision does not carry them through every return (a `Facts` is a few hundred bytes).
enum Phase {
    Decided(Decision),
    NeedBody(BodyPlan),
}

/// What the body phase needs besides the facts: the headers phase returns it, and
/// [`PendingBody`] carries it with the facts.
#[derive(Debug, Clone)]
struct BodyPlan {
    /// The canonical path the headers were decided on.
    path: String,
    /// What the rules with an HTTP clause alone (no RPC clause) decided on the request line.
    http_outcome: Outcome,
    protocol: Protocol,
    max_body_bytes: usize,
    mcp_method_header: Option<String>,
    mcp_name_header: Option<String>,
    /// A refusal already decided (401 on a JSON-RPC route): the body is read only to echo the
    /// request's id in the JSON-RPC error, never to change the decision.
    deferred: Option<Decision>,
}

impl BodyPlan {
    fn with(self, facts: Facts) -> PendingBody {
        PendingBody { facts, plan: self }
    }
}

impl Engine {
    /// Decides what it can from the headers: a verdict, or that the body must be inspected.
    pub fn on_request_headers(&self, req: &HttpRequest) -> HeadersVerdict {
        self.headers_verdict(req, None, 0)
    }

    /// [`Engine::on_request_headers`] with the live revocations at `now_ms` (host clock): a
    /// revoked agent, user, session or trace is refused (403 `revoked`) before anything else is
    /// looked at.
    pub fn on_request_headers_live(&self, req: &HttpRequest, revocations: &RevocationSet, now_ms: u64) -> HeadersVerdict {
        self.headers_verdict(req, Some(revocations), now_ms)
    }

    /// The headers phase's verdict, built where it is returned, as [`Engine::evaluate`] builds
    /// its `Evaluation`: the facts are written in place in the decided verdict, which most
    /// requests get, instead of being built in a local and moved into a new verdict (a few
    /// hundred bytes copied per request). A body to inspect moves them once, into the
    /// `PendingBody`.
    fn headers_verdict(&self, req: &HttpRequest, revocations: Option<&RevocationSet>, now_ms: u64) -> HeadersVerdict {
        let mut verdict = HeadersVerdict::Decided(Evaluation { decision: Decision::refusal(0, Text::Static(""), Text::Static("")), facts: Facts::default(), rewrite: None });
        if let HeadersVerdict::Decided(eval) = &mut verdict {
            match self.headers_phase(req, revocations, now_ms, &mut eval.facts) {
                Phase::Decided(decision) => eval.decision = decision,
                Phase::NeedBody(plan) => {
                    let facts = std::mem::take(&mut eval.facts);
                    verdict = HeadersVerdict::NeedBody(plan.with(facts));
                }
            }
        }
        verdict
    }

    /// The headers phase, on facts the caller owns (left at their default on entry).
    fn headers_phase(&self, req: &HttpRequest, revocations: Option<&RevocationSet>, now_ms: u64, facts: &mut Facts) -> Phase {
        facts.method = method_text(&req.method);
        facts.authority = normalize_host(&req.authority);

        if repeats_a_name(&req.headers)
            && let Some(name) = builtin::SECURITY_HEADERS.iter().find(|h| req.header_values(h).nth(1).is_some())
        {
            return Phase::Decided(Decision::refusal(400, builtin::DUPLICATE_HEADER, format!("header {name:?} appears more than once")));
        }
        facts.trace = req.header_values("traceparent").next().and_then(traceparent::trace_id);
        facts.user_agent = req.header_values("user-agent").next().map(|ua| {
            // Usually short printable ASCII, kept as is (one copy instead of a push per char).
            if ua.len() <= 256 && ua.bytes().all(|b| (0x20..0x7F).contains(&b)) {
                ua.to_owned()
            } else {
                ua.chars().filter(|c| !c.is_control()).take(256).collect()
            }
        });

        // Identity, from verified sources only.
        let id = &req.identity;
        fn usable(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control))
        }
        let jwt_agent = usable(&id.jwt_agent);
        let mtls_agent = id.peer_principal.as_ref().and_then(|p| self.identity.mtls_agents.get(p)).map(String::as_str);
        facts.user = usable(&id.jwt_user).map(str::to_owned);
        facts.session = usable(&id.jwt_session).map(str::to_owned);
        let agent_scope = match (jwt_agent, mtls_agent) {
            (Some(a), Some(b)) if a != b => {
                facts.agent = Some(self.agent(a).0);
                return Phase::Decided(Decision::refusal(403, builtin::IDENTITY_CONFLICT, format!("the JWT names agent {a:?} but the peer certificate names {b:?}")));
            }
            (Some(a), _) | (None, Some(a)) => {
                let (name, scope) = self.agent(a);
                facts.agent = Some(name);
                scope
            }
            (None, None) => None,
        };
        if facts.agent.is_none() && self.identity.required {
            return self.unauthenticated(req, facts);
        }
        if let Some(r) = revocations.and_then(|revs| revs.check(facts, now_ms)) {
            let reason = format!("{} {:?} is revoked ({}{})", r.kind.as_str(), r.value, r.id, r.reason.as_ref().map(|x| format!(": {x}")).unwrap_or_default());
            return Phase::Decided(Decision::refusal(403, builtin::REVOKED, reason));
        }

        let path = match canonical_path(&req.path) {
            Ok(p) => p,
            Err(e) => return Phase::Decided(Decision::refusal(400, builtin::MALFORMED_PATH, format!("path refused: {e}"))),
        };
        // The line borrows the host and the path, which the facts own in the end: taken out of
        // the facts while the line lives, put back after (no copies per request).
        let host = std::mem::take(&mut facts.authority);
        let phase = self.decide_line(req, facts, agent_scope, &Line::new(&req.method, &host, &path));
        facts.authority = host;
        match phase {
            Phase::Decided(d) => {
                facts.path = Some(path);
                Phase::Decided(d)
            }
            Phase::NeedBody(mut p) => {
                facts.path = Some(path.clone());
                p.path = path;
                Phase::NeedBody(p)
            }
        }
    }

    /// The headers phase once the path is canonical: rules on the request line, the governed
    /// route, what the body needs. The caller fills in the facts' authority and path.
    fn decide_line(&self, req: &HttpRequest, facts: &mut Facts, agent_scope: Option<&Scope>, line: &Line<'_>) -> Phase {
        // The outcome keeps the lowest index per slot, so candidates are added as the tables
        // yield them, in any order and with repeats (a rule indexed by its path and its method),
        // and no candidate list is built.
        let mut outcome = Outcome::default();
        for scope in [Some(&self.global), agent_scope].into_iter().flatten() {
            for (tables, path) in [(&scope.allow, line.path), (&scope.deny, &*line.folded)] {
                // A rule the path trie yields matched the path through one of its templates: the
                // trie walks the same segments with the same case folding (`deny` tables hold
                // folded templates and are walked with the folded path, as `template_matches`
                // folds for a deny rule), so only its methods and hosts are left to check
                // (the second walk of the template, with the rest of `rule_matches`, was ~2% of a REST
                // decision in perf).
                tables.http_paths.lookup_path(path, &mut |&i| {
                    let i = i as usize;
                    if let Some(r) = self.rules.get(i).filter(|r| rule_matches_but_paths(r, line)) {
                        debug_assert!(self.rule_matches(r, line, None), "the trie and the templates agree");
                        outcome.add(r, i);
                    }
                });
                // The other tables hold rules without a path clause.
                let mut consider = |i: u32| {
                    let i = i as usize;
                    if let Some(r) = self.rules.get(i).filter(|r| self.rule_matches(r, line, None)) {
                        outcome.add(r, i);
                    }
                };
                if let Some(other) = tables.other.as_deref() {
                    for v in [other.http_hosts.get(line.host), other.http_methods.get(line.method)].into_iter().flatten() {
                        v.iter().for_each(|&i| consider(i));
                    }
                    other.http_any.iter().for_each(|&i| consider(i));
                }
            }
        }

        let route = self.governed_route(line);
        if let Some(r) = route.and_then(|r| self.governed.get(r)) {
            facts.governed = Some(Text::from(&r.id));
            facts.protocol = Some(r.protocol);
            facts.route = Some(Text::from(&r.template.text));
            facts.jsonrpc = matches!(r.protocol, Protocol::Mcp | Protocol::A2a);
        }

        // An enforcing deny on the request line needs no body.
        if outcome.enforce_deny.is_some() {
            return Phase::Decided(self.decide(facts, line, outcome));
        }

        let (Some(_), Some(protocol)) = (route, facts.protocol) else {
            return Phase::Decided(self.decide(facts, line, outcome));
        };
        if req.end_of_stream {
            if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
                return Phase::Decided(Decision::refusal(400, builtin::BODY_REQUIRED, "a governed route needs a body to inspect"));
            }
            return Phase::Decided(self.decide(facts, line, outcome));
        }
        if let Some(enc) = req.header_values("content-encoding").next()
            && !enc.trim().eq_ignore_ascii_case("identity") {
                return Phase::Decided(Decision::refusal(415, builtin::UNSUPPORTED_ENCODING, "content encodings are not inspected on governed routes"));
            }
        match req.header_values("content-type").next() {
            Some(ct) if is_json_content_type(ct) => {}
            _ => return Phase::Decided(Decision::refusal(415, builtin::UNSUPPORTED_CONTENT_TYPE, "governed routes accept application/json (charset utf-8) only")),
        }
        let max_body_bytes = usize::try_from(self.inspection.max_body_bytes).unwrap_or(usize::MAX);
        if let Some(len) = req.header_values("content-length").next() {
            match len.trim().parse::<u64>() {
                Ok(n) if usize::try_from(n).map_or(true, |n| n > max_body_bytes) => {
                    return Phase::Decided(Decision::refusal(413, builtin::BODY_TOO_LARGE, format!("body of {n} bytes exceeds the inspection limit of {max_body_bytes}")));
                }
                Ok(_) => {}
                Err(_) => return Phase::Decided(Decision::refusal(400, builtin::MALFORMED_HEADER, "content-length is not a number")),
            }
        }
        Phase::NeedBody(BodyPlan {
            // Filled in by the caller.
            path: String::new(),
            http_outcome: outcome,
            protocol,
            max_body_bytes,
            mcp_method_header: req.header_values("mcp-method").next().map(str::to_owned),
            mcp_name_header: req.header_values("mcp-name").next().map(str::to_owned),
            deferred: None,
        })
    }

    /// The refusal of a caller without identity (401). On a governed JSON-RPC route whose body
    /// can be read within the limits, the decision waits for the body so the JSON-RPC error can
    /// carry the request's id; otherwise it is final now. Either way the outcome is the same.
    fn unauthenticated(&self, req: &HttpRequest, facts: &mut Facts) -> Phase {
        let refusal = Decision::refusal(401, builtin::IDENTITY_REQUIRED, "no verified agent identity");
        let max_body_bytes = usize::try_from(self.inspection.max_body_bytes).unwrap_or(usize::MAX);
        let route = canonical_path(&req.path).ok().and_then(|c| {
            let line = Line::new(&req.method, &facts.authority, &c);
            self.governed_route(&line).and_then(|r| self.governed.get(r)).map(|r| (r, c))
        });
        let readable = !req.end_of_stream
            && req.header_values("content-encoding").next().is_none()
            && req.header_values("content-type").next().is_some_and(is_json_content_type)
            && req.header_values("content-length").next().is_none_or(|l| l.trim().parse::<usize>().is_ok_and(|n| n <= max_body_bytes));
        match route {
            Some((r, c)) if readable && matches!(r.protocol, Protocol::Mcp | Protocol::A2a) => {
                facts.governed = Some(Text::from(&r.id));
                facts.protocol = Some(r.protocol);
                facts.route = Some(Text::from(&r.template.text));
                facts.path = Some(c.clone());
                facts.jsonrpc = true;
                Phase::NeedBody(BodyPlan {
                    path: c,
                    http_outcome: Outcome::default(),
                    protocol: r.protocol,
                    max_body_bytes,
                    mcp_method_header: None,
                    mcp_name_header: None,
                    deferred: Some(refusal),
                })
            }
            _ => Phase::Decided(refusal),
        }
    }

    /// The verdict for a governed body that exceeded [`PendingBody::max_body_bytes`].
    pub fn body_too_large(&self, pending: PendingBody) -> Evaluation {
        if let Some(decision) = pending.plan.deferred {
            return Evaluation { decision, facts: pending.facts, rewrite: None };
        }
        let max = pending.plan.max_body_bytes;
        self.refusal(pending.facts, 413, builtin::BODY_TOO_LARGE, format!("body exceeds the inspection limit of {max} bytes"))
    }

    /// Decides on the whole body of a governed request.
    pub fn on_request_body(&self, pending: PendingBody, body: &[u8]) -> Evaluation {
        let PendingBody { mut facts, plan: BodyPlan { path, http_outcome, protocol, max_body_bytes, mcp_method_header, mcp_name_header, deferred } } = pending;
        if let Some(decision) = deferred {
            let max_batch = usize::try_from(self.inspection.max_batch).unwrap_or(32);
            let depth = usize::try_from(self.inspection.max_json_depth).unwrap_or(32);
            facts.rpc_id = parse_doc(body, depth).ok().and_then(|v| {
                jsonrpc::parse_messages(&v, max_batch).ok().and_then(|(m, batch)| if batch { None } else { m.into_iter().next().and_then(|m| m.id) })
            });
            return Evaluation { decision, facts, rewrite: None };
        }
        if body.len() > max_body_bytes {
            return self.refusal(facts, 413, builtin::BODY_TOO_LARGE, format!("body exceeds the inspection limit of {max_body_bytes} bytes"));
        }
        let depth = usize::try_from(self.inspection.max_json_depth).unwrap_or(32);
        let value = match parse_doc(body, depth) {
            Ok(v) => v,
            Err(e) => return self.refusal(facts, 400, builtin::MALFORMED_BODY, format!("body is not strict JSON: {e}")),
        };
        let method = facts.method.clone();
        let host = facts.authority.clone();
        let line = Line::new(&method, &host, &path);

        if !matches!(protocol, Protocol::Mcp | Protocol::A2a) {
            let mut eval = self.finish(facts, &line, http_outcome);
            if eval.decision.blocks() {
                return eval;
            }
            if let Some(provider) = match protocol {
                Protocol::Openai => Some(crate::llm::Provider::OpenAi),
                Protocol::Anthropic => Some(crate::llm::Provider::Anthropic),
                _ => None,
            } {
                // Tools offered to the model, or forced on it, must be tools this agent may call.
                // The model providers' request shapes are read from a `Value` (`crate::llm`).
                let body = value.to_value();
                let req = match crate::llm::parse_request(provider, &body) {
                    Ok(r) => r,
                    Err(e) => return self.refusal(eval.facts, 400, builtin::INVALID_LLM_REQUEST, format!("{e}")),
                };
                eval.facts.model = req.model.as_ref().map(|m| m.chars().filter(|c| !c.is_control()).take(128).collect());
                for tool in req.declared_tools.iter().chain(req.forced_tool.iter()) {
                    let d = self.judge_tool_call(&eval.facts, tool, None);
                    if d.blocks() {
                        let reason = format!("tool {tool:?} offered to the model: {}", d.reason);
                        return Evaluation { decision: Decision { reason: reason.into(), ..d }, facts: eval.facts, rewrite: None };
                    }
                }
            }
            return self.inspect_request_data(eval, &value);
        }

        let max_batch = usize::try_from(self.inspection.max_batch).unwrap_or(32);
        let (messages, is_batch) = match jsonrpc::parse_messages(&value, max_batch) {
            Ok(m) => m,
            Err(e) => return self.refusal(facts, 400, builtin::INVALID_JSONRPC, format!("{e}")),
        };
        if !is_batch {
            facts.rpc_id = messages.first().and_then(|m| m.id.clone());
        }
        let mut calls = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let at = if is_batch { format!("batch element {i}: ") } else { String::new() };
            let mut call = Call { protocol, method: m.method, canonical: None, tool: None, arguments: None };
            match protocol {
                Protocol::A2a => match jsonrpc::canonical_a2a_method(m.method) {
                    Some(c) => call.canonical = Some(c),
                    None => return self.refusal(facts, 400, builtin::INVALID_JSONRPC, format!("{at}unknown A2A method {:?}", m.method)),
                },
                _ => {
                    if m.method == "initialize" {
                        let info = m.params.and_then(|p| p.get("clientInfo"));
                        let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Doc::as_str).map(|v| v.chars().filter(|c| !c.is_control()).take(64).collect::<String>());
                        facts.client = field("name").map(|n| match field("version") {
                            Some(v) => format!("{n}/{v}"),
                            None => n,
                        });
                    }
                    if m.method == "tools/call" {
                        match jsonrpc::mcp_tool_name(m.params) {
                            Ok(t) => call.tool = Some(t),
                            Err(e) => return self.refusal(facts, 400, builtin::INVALID_JSONRPC, format!("{at}{e}")),
                        }
                        call.arguments = jsonrpc::tool_arguments(m.params);
                    }
                }
            }
            facts.calls.push(RpcCall {
                method: call.canonical.unwrap_or(m.method).to_owned(),
                tool: call.tool.map(str::to_owned),
                has_id: m.id.is_some(),
            });
            calls.push(call);
        }

        if (mcp_method_header.is_some() || mcp_name_header.is_some())
            && let Err(why) = check_mcp_headers(&messages, mcp_method_header.as_deref(), mcp_name_header.as_deref(), is_batch) {
                return self.refusal(facts, 400, builtin::HEADER_BODY_MISMATCH, why);
            }

        // Every call must be allowed; the first refused call decides for the whole body.
        let scopes = self.scopes(facts.agent.as_deref());
        let mut first_shadow: Option<Outcome> = None;
        let mut first_allow: Option<Outcome> = None;
        let mut candidates = Vec::new();
        for call in &calls {
            let mut outcome = http_outcome;
            candidates.clear();
            for scope in scopes.into_iter().flatten() {
                call_candidates(&scope.allow, call, false, &mut candidates);
                call_candidates(&scope.deny, call, true, &mut candidates);
            }
            for &i in &candidates {
                let i = i as usize;
                if let Some(rule) = self.rules.get(i)
                    && self.rule_matches(rule, &line, Some(call)) {
                        outcome.add(rule, i);
                    }
            }
            let allowed = outcome.enforce_deny.is_none() && (outcome.enforce_allow.is_some() || self.default_action == DefaultAction::Allow);
            if !allowed {
                return self.finish(facts, &line, outcome);
            }
            if outcome.shadow_deny.is_some() && first_shadow.is_none() {
                first_shadow = Some(outcome);
            }
            first_allow = first_allow.or(Some(outcome));
        }
        let outcome = first_shadow.or(first_allow).unwrap_or_default();
        let eval = self.finish(facts, &line, outcome);
        self.inspect_request_data(eval, &value)
    }

    /// A tool call judged with the MCP tool rules of the caller's scopes alone.
    pub(crate) fn tool_call_decision(&self, facts: &Facts, tool: &str, arguments: Option<&Doc<'_>>) -> Decision {
        let line = Line::new(&facts.method, &facts.authority, facts.path.as_deref().unwrap_or("/"));
        let call = Call { protocol: Protocol::Mcp, method: "tools/call", canonical: None, tool: Some(tool), arguments };
        let mut candidates = Vec::new();
        for scope in self.scopes(facts.agent.as_deref()).into_iter().flatten() {
            call_candidates(&scope.allow, &call, false, &mut candidates);
            call_candidates(&scope.deny, &call, true, &mut candidates);
        }
        let mut outcome = Outcome::default();
        for i in candidates {
            let i = i as usize;
            if let Some(rule) = self.rules.get(i).filter(|r| self.rule_matches(r, &line, Some(&call))) {
                outcome.add(rule, i);
            }
        }
        let mut facts = facts.clone();
        facts.route = None;
        self.finish(facts, &line, outcome).decision
    }

    /// Both phases at once, as a host that already has the whole request would call them.
    pub fn evaluate(&self, req: &HttpRequest, body: Option<&[u8]>) -> Evaluation {
        // Built where it is returned: the headers phase fills its facts in place.
        let mut eval = Evaluation { decision: Decision::refusal(0, Text::Static(""), Text::Static("")), facts: Facts::default(), rewrite: None };
        // The one value returned on every path, so it is built in the caller's slot rather than
        // copied there (a `match` returning it from one arm cost a 632-byte copy).
        match self.headers_phase(req, None, 0, &mut eval.facts) {
            Phase::Decided(decision) => eval.decision = decision,
            Phase::NeedBody(plan) => {
                let p = plan.with(std::mem::take(&mut eval.facts));
                let body = body.unwrap_or_default();
                eval = if body.len() > p.max_body_bytes() { self.body_too_large(p) } else { self.on_request_body(p, body) };
            }
        }
        eval
    }

    /// The buckets a request that passes the rules must take a token from: one per rate limit
    /// that applies to the agent and whose key components the request has (a `tool` limit takes
    /// one token per tool call). Empty for refused requests.
    pub fn rate_limit_checks(&self, eval: &Evaluation) -> Vec<LimitCheck> {
        let f = &eval.facts;
        if eval.decision.blocks() || self.rate_limits.is_empty() {
            return Vec::new();
        }
        let mut checks = Vec::new();
        for l in &self.rate_limits {
            if let Some(agents) = &l.agents
                && !f.agent.as_deref().is_some_and(|a| agents.iter().any(|x| x == a)) {
                    continue;
                }
            let mut base = String::new();
            let mut complete = true;
            for k in &l.key {
                let v = match k {
                    LimitKey::Agent => f.agent.as_deref(),
                    LimitKey::User => f.user.as_deref(),
                    LimitKey::Session => f.session.as_deref(),
                    LimitKey::Tool => continue,
                };
                match v {
                    // Length-prefixed so components can never run into each other.
                    Some(v) => base.push_str(&format!("{}:{v}|", v.len())),
                    None => complete = false,
                }
            }
            if !complete {
                continue;
            }
            if l.key.contains(&LimitKey::Tool) {
                for tool in f.calls.iter().filter_map(|c| c.tool.as_deref()) {
                    checks.push(LimitCheck { limit: l.id.clone(), key: format!("{base}{}:{tool}", tool.len()), spec: l.spec, mode: l.mode });
                }
            } else {
                checks.push(LimitCheck { limit: l.id.clone(), key: base, spec: l.spec, mode: l.mode });
            }
        }
        checks
    }

    /// The verdict for a request over a limit: 429 with `retry-after`, or, for a shadow limit,
    /// the request still passes and the decision records the limit (unless a shadow verdict is
    /// already recorded).
    pub fn rate_limited(&self, eval: Evaluation, check: &LimitCheck, retry_after_ms: u64) -> Evaluation {
        let retry = u32::try_from(retry_after_ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX);
        let reason = format!("rate limit {:?} exceeded: {} requests per {} s", check.limit, check.spec.capacity, check.spec.refill_ms / 1000);
        let Evaluation { decision, facts, rewrite } = eval;
        let decision = match check.mode {
            Mode::Enforce => Decision { retry_after_secs: Some(retry), ..Decision::refusal(429, check.limit.clone(), reason) },
            Mode::Shadow if decision.mode == Mode::Enforce => Decision {
                status: 0,
                mode: Mode::Shadow,
                allowed_by: Some(decision.rule.clone()),
                retry_after_secs: Some(retry),
                ..Decision::refusal(0, check.limit.clone(), format!("shadow: {reason}"))
            },
            Mode::Shadow => decision,
        };
        // A refused request forwards nothing, so a rewrite of its body no longer applies.
        let rewrite = if decision.blocks() { None } else { rewrite };
        Evaluation { decision, facts, rewrite }
    }

    /// The verdict when the shared bucket table stayed contended through every retry: refuse
    /// (429) rather than admit unmetered.
    pub fn rate_limit_contention(&self, eval: Evaluation) -> Evaluation {
        let reason = "rate-limit state contended; refused rather than admitted unmetered";
        Evaluation {
            decision: Decision { retry_after_secs: Some(1), ..Decision::refusal(429, builtin::RATE_LIMIT_CONTENTION, reason) },
            facts: eval.facts,
            rewrite: None,
        }
    }

    /// An agent's name as the facts hold it, and its rule scope, in one lookup: the name is shared
    /// with the policy when the policy declares the agent (always, for a scoped caller), else a
    /// copy.
    fn agent(&self, agent: &str) -> (Text, Option<&Scope>) {
        match self.agents.get_key_value(agent) {
            Some((name, &i)) => (Text::from(name), self.scopes.get(i as usize)),
            None => (Text::Owned(agent.to_owned()), None),
        }
    }

    /// The rule scopes of a caller: every agent's, then its own (no list built per request).
    fn scopes(&self, agent: Option<&str>) -> [Option<&Scope>; 2] {
        [Some(&self.global), agent.and_then(|a| self.scope_of(a))]
    }

    /// The rules scoped to one agent.
    pub(crate) fn scope_of(&self, agent: &str) -> Option<&Scope> {
        self.agents.get(agent).and_then(|&i| self.scopes.get(i as usize))
    }

    fn governed_route(&self, line: &Line<'_>) -> Option<usize> {
        let mut best: Option<usize> = None;
        self.governed_trie.lookup_path(line.path, &mut |i| {
            let host_ok = self
                .governed
                .get(*i)
                .is_some_and(|r| r.hosts.as_ref().is_none_or(|hs| hs.iter().any(|h| h.matches(line.host))));
            if host_ok {
                best = Some(best.map_or(*i, |b| b.min(*i)));
            }
        });
        best
    }

    fn rule_matches(&self, rule: &CompiledRule, line: &Line<'_>, call: Option<&Call<'_>>) -> bool {
        let fold = rule.effect == Effect::Deny;
        if let Some(h) = &rule.http
            && !http_matches(h, line, fold) {
                return false;
            }
        match (rule.rpc.as_deref(), call) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(RpcClause::Mcp { methods, tools, arguments }), Some(c)) if c.protocol == Protocol::Mcp => {
                let eq = |a: &str, b: &str| if fold { a.eq_ignore_ascii_case(b) } else { a == b };
                let method_ok = match methods {
                    Some(ms) => ms.iter().any(|m| eq(m, c.method)),
                    None => tools.is_none() || c.method == "tools/call",
                };
                let tool_ok = match (tools, c.tool) {
                    (None, _) => true,
                    (Some(ts), Some(t)) => ts.iter().any(|x| eq(x, t)),
                    (Some(_), None) => false,
                };
                method_ok && tool_ok && arguments.iter().all(|a| argument_matches(a, c.arguments, fold))
            }
            (Some(RpcClause::A2a { methods }), Some(c)) if c.protocol == Protocol::A2a => {
                methods.as_ref().is_none_or(|ms| c.canonical.is_some_and(|m| ms.contains(&m)))
            }
            _ => false,
        }
    }

    /// The decision the outcome `o` makes. Every rule in `o` matched `line`.
    fn finish(&self, mut facts: Facts, line: &Line<'_>, o: Outcome) -> Evaluation {
        let decision = self.decide(&mut facts, line, o);
        Evaluation { decision, facts, rewrite: None }
    }

    /// [`Engine::finish`]'s decision, noting the route in facts the caller keeps.
    fn decide(&self, facts: &mut Facts, line: &Line<'_>, o: Outcome) -> Decision {
        let rule = |i: usize| self.rules.get(i);
        if let Some(r) = o.enforce_deny.and_then(rule) {
            self.note_route(facts, r, line);
            Decision {
                kernel: r.consequences.as_ref().and_then(|c| c.kernel.clone()),
                revoke: r.consequences.as_ref().and_then(|c| c.revoke.clone()),
                ..Decision::refusal(403, &r.id, &r.reason)
            }
        } else if let Some((allow, reason)) = o.enforce_allow.and_then(rule).map(|r| (Text::from(&r.id), Text::from(&r.reason))).or_else(|| {
            (self.default_action == DefaultAction::Allow).then_some((Text::Static(builtin::DEFAULT_ALLOW), Text::Static(DEFAULT_ALLOW_REASON)))
        }) {
            if let Some(r) = o.enforce_allow.and_then(rule) {
                self.note_route(facts, r, line);
            }
            match o.shadow_deny.and_then(rule) {
                Some(s) => {
                    let reason = format!("shadow rule {:?} would deny; allowed by {allow:?}", s.id);
                    Decision { status: 0, mode: Mode::Shadow, allowed_by: Some(allow), ..Decision::refusal(0, &s.id, reason) }
                }
                None => Decision { action: Action::Allow, ..Decision::refusal(0, allow, reason) },
            }
        } else {
            Decision::refusal(
                403,
                builtin::DEFAULT_DENY,
                match &facts.agent {
                    Some(a) => Text::Owned(format!("no rule grants this to agent {a:?}")),
                    None => Text::Static("no rule grants this to an anonymous caller"),
                },
            )
        }
    }

    /// Records the deciding rule's path template as the route, unless a governed route did.
    fn note_route(&self, facts: &mut Facts, rule: &CompiledRule, line: &Line<'_>) {
        if facts.route.is_some() {
            return;
        }
        let fold = rule.effect == Effect::Deny;
        let matched = rule.http.as_ref().and_then(|h| h.paths.as_ref()).and_then(|ps| match &**ps {
            // The deciding rule matched this line, its path clause included, so a lone template
            // is the one that matched: not walked a second time.
            [only] => {
                debug_assert!(template_matches(only, line, fold), "the deciding rule matches the line");
                Some(only)
            }
            many => many.iter().find(|t| template_matches(t, line, fold)),
        });
        if let Some(t) = matched {
            facts.route = Some(Text::from(&t.text));
        }
    }

    fn refusal(&self, facts: Facts, status: u16, rule: &'static str, reason: impl Into<Text>) -> Evaluation {
        Evaluation {
            decision: Decision::refusal(status, rule, reason),
            facts,
            rewrite: None,
        }
    }
}

/// The reason of a decision by `default_action: allow` (what [`rule_reason`] gives the built-in).
const DEFAULT_ALLOW_REASON: &str = "allowed by \"default-allow\"";

/// What a rule says when it decides alone, formatted when the policy is compiled
/// ([`CompiledRule::reason`]).
pub(crate) fn rule_reason(effect: Effect, id: &str) -> String {
    match effect {
        Effect::Deny => format!("denied by rule {id:?}"),
        Effect::Allow => format!("allowed by {id:?}"),
    }
}

fn call_candidates(t: &Tables, call: &Call<'_>, fold: bool, out: &mut Vec<u32>) {
    // Folded only when there is upper case to fold: no allocation for the usual lower-case names.
    fn key(s: &str, fold: bool) -> Cow<'_, str> {
        if fold && s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
    }
    match call.protocol {
        Protocol::Mcp => {
            if let Some(tool) = call.tool
                && let Some(v) = t.mcp_tools.get(&*key(tool, fold)) {
                    out.extend_from_slice(v);
                }
            if let Some(o) = t.other.as_deref() {
                if let Some(v) = o.mcp_methods.get(&*key(call.method, fold)) {
                    out.extend_from_slice(v);
                }
                out.extend_from_slice(&o.mcp_any);
            }
        }
        Protocol::A2a => {
            if let Some(o) = t.other.as_deref() {
                if let Some(v) = call.canonical.and_then(|m| o.a2a_methods.get(m)) {
                    out.extend_from_slice(v);
                }
                out.extend_from_slice(&o.a2a_any);
            }
        }
        _ => {}
    }
}

/// [`Engine::rule_matches`] without a call, for a rule already known to match the line's path:
/// a rule in a path trie has an HTTP clause with paths and no RPC clause ([`crate::engine`]'s
/// `index_rule`), so this checks the clause's methods and hosts.
fn rule_matches_but_paths(rule: &CompiledRule, line: &Line<'_>) -> bool {
    rule.rpc.is_none()
        && rule.http.as_ref().is_none_or(|h| {
            h.methods.as_ref().is_none_or(|ms| ms.contains(line.method, line.method_bit))
                && h.hosts.as_ref().is_none_or(|hs| hs.iter().any(|p| p.matches(line.host)))
        })
}

fn http_matches(h: &HttpClause, line: &Line<'_>, fold: bool) -> bool {
    h.methods.as_ref().is_none_or(|ms| ms.contains(line.method, line.method_bit))
        && h.hosts.as_ref().is_none_or(|hs| hs.iter().any(|p| p.matches(line.host)))
        && h.paths.as_ref().is_none_or(|ps| ps.iter().any(|t| template_matches(t, line, fold)))
}

fn template_matches(t: &PathTemplate, line: &Line<'_>, fold: bool) -> bool {
    // Folding compares the request's segment case-insensitively: the same as comparing its
    // folded form, without walking the folded path too.
    let mut segs = segments(line.path);
    for seg in t.segments() {
        match seg {
            Segment::Tail => return true,
            Segment::One => {
                if segs.next().is_none() {
                    return false;
                }
            }
            Segment::Literal(l) => match segs.next() {
                Some(exact) => {
                    let ok = if fold { l.eq_ignore_ascii_case(exact) } else { l == exact };
                    if !ok {
                        return false;
                    }
                }
                None => return false,
            },
        }
    }
    segs.next().is_none()
}

/// Does one argument condition hold? An allow needs a string that matches. A deny also matches
/// an argument that is present but not a string: the engine cannot show it is harmless, and an
/// upstream may coerce it.
fn argument_matches(a: &ArgMatcher, args: Option<&Doc<'_>>, fold: bool) -> bool {
    let Some(v) = args.and_then(|args| args.pointer(&a.pointer)) else { return false };
    let Some(s) = v.as_str() else { return fold };
    match &a.kind {
        ArgKind::Exact(x) => s == &**x,
        ArgKind::Prefix(x) => s.starts_with(&**x) || (fold && normalize_rel_path(s).starts_with(&**x)),
        ArgKind::Glob(g) => glob_match(g, s) || glob_match(g, &normalize_rel_path(s)),
    }
}

/// Lexically normalizes a relative path argument (`./config//.env`, `docs/../config/.env` →
/// `config/.env`) so a glob over paths cannot be dodged by spelling.
fn normalize_rel_path(s: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = s.starts_with('/');
    for seg in s.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

fn check_mcp_headers(messages: &[jsonrpc::RpcMessage<'_>], method: Option<&str>, name: Option<&str>, is_batch: bool) -> Result<(), String> {
    let single = match (is_batch, messages) {
        (false, [m]) => m,
        _ => return Err("Mcp-Method/Mcp-Name headers cannot describe a batch".into()),
    };
    if let Some(h) = method
        && h != single.method {
            return Err(format!("Mcp-Method header {h:?} disagrees with the body's method {:?}", single.method));
        }
    if let Some(h) = name {
        let body_name = match single.method {
            "tools/call" | "prompts/get" => single.params.and_then(|p| p.get("name")).and_then(Doc::as_str),
            "resources/read" => single.params.and_then(|p| p.get("uri")).and_then(Doc::as_str),
            _ => None,
        };
        if body_name != Some(h) {
            return Err(format!("Mcp-Name header {h:?} disagrees with the body"));
        }
    }
    Ok(())
}

fn is_json_content_type(ct: &str) -> bool {
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim();
        p.is_empty() || p.eq_ignore_ascii_case("charset=utf-8") || p.eq_ignore_ascii_case("charset=\"utf-8\"")
    })
}

/// Whether two headers may share a name: a short list is compared pair by pair, which for the
/// few headers a request usually carries costs fewer comparisons than looking up each of the
/// twelve [`builtin::SECURITY_HEADERS`] in it (profiled: 36 name comparisons for 3 headers, where
/// this makes 3). A longer list is assumed to, and the lookup decides.
fn repeats_a_name(headers: &[(String, String)]) -> bool {
    const PAIRWISE_UP_TO: usize = 8;
    headers.len() > PAIRWISE_UP_TO || headers.iter().enumerate().any(|(i, (k, _))| headers.iter().skip(i.saturating_add(1)).any(|(other, _)| other == k))
}

/// The methods of RFC 9110 §9 and PATCH (RFC 5789), the ones requests carry nearly always.
pub(crate) const STANDARD_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// A standard method's bit (its place in [`STANDARD_METHODS`]); 0 for any other method.
pub(crate) fn method_bit(method: &str) -> u16 {
    STANDARD_METHODS.iter().position(|m| *m == method).map_or(0, |i| 1 << i)
}

/// `:method` as the facts hold it: a standard method as static text, any other as a copy.
fn method_text(method: &str) -> Text {
    STANDARD_METHODS.iter().find(|m| **m == method).map_or_else(|| Text::Owned(method.to_owned()), |m| Text::Static(m))
}

/// Host in lower case without the port or a trailing dot (`API.Example.com.:443` → `api.example.com`).
fn normalize_host(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority })
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
