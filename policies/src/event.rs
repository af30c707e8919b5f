//! The decision event: one per decision, sent by the filter to the enforcer, appended to its log.
//! Shared by the filter (which builds it), the enforcer (which stores it) and the tests.

use serde::{Deserialize, Serialize};

use crate::decision::{Action, Evaluation, RpcCall};
use crate::schema::{KernelAction, Mode, Protocol, RevokeAction};

/// One decision, as recorded. Field names are a contract with log consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    /// Unique id, also in the local reply and the access log.
    pub decision_id: String,
    /// Milliseconds since the Unix epoch, from the host clock.
    pub time_unix_ms: u64,
    /// `version` of the policy that decided.
    pub policy_version: String,
    /// The rule that decided.
    pub rule: String,
    /// What the rule does (with `mode: shadow`, what it would have done).
    pub action: Action,
    /// Status of the local reply, 0 when forwarded.
    pub status: u16,
    /// `enforce` or `shadow`.
    pub mode: Mode,
    /// Why.
    pub reason: String,
    /// With `mode: shadow`, the rule that let the request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
    /// Who.
    pub identity: EventIdentity,
    /// What was called.
    pub request: EventRequest,
    /// Sensitive-data classes seen (names and counts only, never values).
    #[serde(default)]
    pub data_classes: Vec<DataClassCount>,
    /// Kernel enforcement asked of the enforcer (from the deciding rule), for enforced denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelAction>,
    /// Revocation asked of the enforcer (from the deciding rule), for enforced denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<RevokeAction>,
    /// Downstream (caller) address, `ip:port`: the caller's end of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<String>,
    /// The address the caller connected to (the proxy's listener), `ip:port`: with `downstream`,
    /// the 4-tuple the enforcer uses to find the caller's socket, process and cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Upstream address, when known at decision time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Which proxy worker decided (`<node id>/<vm instance>`).
    pub worker: String,
    /// `request`, or `response` for a decision about the response of an allowed request.
    #[serde(default)]
    pub phase: Phase,
    /// With `phase: response`: the decision id of the request it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_decision_id: Option<String>,
}

/// Identity of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// What was called.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRequest {
    pub method: String,
    pub authority: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RpcCall>,
    /// The caller's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// MCP `clientInfo` (`name/version`) of an `initialize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The model an LLM request names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Which phase of a request a decision is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The request (one per request).
    #[default]
    Request,
    /// Its response (only when the response was refused, redacted or recorded).
    Response,
}

impl Phase {
    /// The lower-case name used in events (serde's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// A data class and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataClassCount {
    pub class: String,
    pub count: u32,
}

/// Host facts the engine cannot know.
#[derive(Debug, Clone, Default)]
pub struct HostFacts<'a> {
    pub phase: Phase,
    pub request_decision_id: Option<&'a str>,
    pub decision_id: &'a str,
    pub time_unix_ms: u64,
    pub downstream: Option<String>,
    pub destination: Option<String>,
    pub upstream: Option<String>,
    pub worker: &'a str,
}

/// A [`DecisionEvent`] as the filter writes it, borrowed from the evaluation and the host facts
/// instead of copied (the filter serializes one per decision, and inside the proxy every copied
/// string costs). Its JSON deserializes as a [`DecisionEvent`] (tested), field for field.
#[derive(Debug, Serialize)]
pub struct DecisionEventRef<'a> {
    decision_id: &'a str,
    time_unix_ms: u64,
    policy_version: &'a str,
    rule: &'a str,
    action: Action,
    status: u16,
    mode: Mode,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_by: Option<&'a str>,
    identity: EventIdentityRef<'a>,
    request: EventRequestRef<'a>,
    data_classes: Vec<DataClassCountRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<&'a KernelAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoke: Option<&'a RevokeAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    downstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    worker: &'a str,
    phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_decision_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EventIdentityRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EventRequestRef<'a> {
    method: &'a str,
    authority: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    governed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "<[RpcCall]>::is_empty")]
    calls: &'a [RpcCall],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct DataClassCountRef<'a> {
    class: &'a str,
    count: u32,
}

impl<'a> DecisionEventRef<'a> {
    /// The event for an evaluation, borrowing from it and from the host facts.
    pub fn new(eval: &'a Evaluation, policy_version: &'a str, host: &'a HostFacts<'a>) -> Self {
        let d = &eval.decision;
        let f = &eval.facts;
        Self {
            decision_id: host.decision_id,
            time_unix_ms: host.time_unix_ms,
            policy_version,
            rule: &d.rule,
            action: d.action,
            status: d.status,
            mode: d.mode,
            reason: &d.reason,
            allowed_by: d.allowed_by.as_deref(),
            identity: EventIdentityRef { agent: f.agent.as_deref(), user: f.user.as_deref(), session: f.session.as_deref(), trace: f.trace.as_deref() },
            request: EventRequestRef {
                method: &f.method,
                authority: &f.authority,
                path: f.path.as_deref(),
                route: f.route.as_deref(),
                governed: f.governed.as_deref(),
                protocol: f.protocol,
                calls: &f.calls,
                user_agent: f.user_agent.as_deref(),
                client: f.client.as_deref(),
                model: f.model.as_deref(),
            },
            data_classes: f.data_classes.iter().map(|c| DataClassCountRef { class: c.class.as_str(), count: c.count }).collect(),
            kernel: d.kernel.as_ref(),
            revoke: d.revoke.as_ref(),
            downstream: host.downstream.as_deref(),
            destination: host.destination.as_deref(),
            upstream: host.upstream.as_deref(),
            worker: host.worker,
            phase: host.phase,
            request_decision_id: host.request_decision_id,
        }
    }
}

impl DecisionEventRef<'_> {
    /// Appends the event's JSON, byte for byte what `serde_json` writes for it (tested against
    /// it), without going through serde. The filter writes one per decision inside the VM, where
    /// serde_json's generic field machinery (each key escaped, each value through a trait
    /// object) was the largest piece of pure computation on an allowed request (bench/PROFILE.md,
    /// session 7). Optional fields are skipped exactly as the derive's `skip_serializing_if` does;
    /// the rare structured ones (kernel, revoke) still go through serde_json.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(b"{\"decision_id\":");
        json_str(out, self.decision_id);
        out.extend_from_slice(b",\"time_unix_ms\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.time_unix_ms).as_bytes());
        out.extend_from_slice(b",\"policy_version\":");
        json_str(out, self.policy_version);
        out.extend_from_slice(b",\"rule\":");
        json_str(out, self.rule);
        out.extend_from_slice(b",\"action\":");
        json_str(out, self.action.as_str());
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"mode\":");
        json_str(out, self.mode.as_str());
        out.extend_from_slice(b",\"reason\":");
        json_str(out, self.reason);
        opt_str(out, b",\"allowed_by\":", self.allowed_by);

        let id = &self.identity;
        out.extend_from_slice(b",\"identity\":{");
        let mut first = true;
        for (key, value) in [("agent", id.agent), ("user", id.user), ("session", id.session), ("trace", id.trace)] {
            if let Some(v) = value {
                member(out, &mut first, key);
                json_str(out, v);
            }
        }

        let r = &self.request;
        out.extend_from_slice(b"},\"request\":{\"method\":");
        json_str(out, r.method);
        out.extend_from_slice(b",\"authority\":");
        json_str(out, r.authority);
        opt_str(out, b",\"path\":", r.path);
        opt_str(out, b",\"route\":", r.route);
        opt_str(out, b",\"governed\":", r.governed);
        opt_str(out, b",\"protocol\":", r.protocol.map(Protocol::as_str));
        // Every JSON-RPC decision has calls (an MCP event is most events on an agent's route).
        if !r.calls.is_empty() {
            out.extend_from_slice(b",\"calls\":[");
            for (i, c) in r.calls.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b"{\"method\":" } else { b",{\"method\":" });
                json_str(out, &c.method);
                opt_str(out, b",\"tool\":", c.tool.as_deref());
                out.extend_from_slice(if c.has_id { b",\"has_id\":true}" } else { b",\"has_id\":false}" });
            }
            out.push(b']');
        }
        opt_str(out, b",\"user_agent\":", r.user_agent);
        opt_str(out, b",\"client\":", r.client);
        opt_str(out, b",\"model\":", r.model);

        out.extend_from_slice(b"},\"data_classes\":[");
        for (i, c) in self.data_classes.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"{\"class\":" } else { b",{\"class\":" });
            json_str(out, c.class);
            out.extend_from_slice(b",\"count\":");
            out.extend_from_slice(itoa::Buffer::new().format(c.count).as_bytes());
            out.push(b'}');
        }
        out.push(b']');
        if let Some(k) = self.kernel {
            out.extend_from_slice(b",\"kernel\":");
            serde_json::to_writer(&mut *out, k)?;
        }
        if let Some(v) = self.revoke {
            out.extend_from_slice(b",\"revoke\":");
            serde_json::to_writer(&mut *out, v)?;
        }
        opt_str(out, b",\"downstream\":", self.downstream);
        opt_str(out, b",\"destination\":", self.destination);
        opt_str(out, b",\"upstream\":", self.upstream);
        out.extend_from_slice(b",\"worker\":");
        json_str(out, self.worker);
        out.extend_from_slice(b",\"phase\":");
        json_str(out, self.phase.as_str());
        opt_str(out, b",\"request_decision_id\":", self.request_decision_id);
        out.push(b'}');
        Ok(())
    }
}

fn opt_str(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(v) = value {
        out.extend_from_slice(key);
        json_str(out, v);
    }
}

fn member(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"` and `\` with a backslash, the
/// control characters below 0x20 as `\b \t \n \f \r` or `\u00XX` (lower-case hex), everything
/// else (DEL and non-ASCII included) as it is. Runs without an escape are copied whole.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (hi, lo) = (HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'), HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, Facts};
    use crate::detect::{ClassCount, DataClass};

    fn host(phase: Phase, full: bool) -> HostFacts<'static> {
        HostFacts {
            phase,
            request_decision_id: full.then_some("01abc"),
            decision_id: "0123456789ab0123456789abcdef",
            time_unix_ms: 1_763_758_135_123,
            downstream: Some("127.0.0.1:51234".into()),
            destination: full.then(|| "127.0.0.1:10000".into()),
            upstream: full.then(|| "127.0.0.1:18080".into()),
            worker: "envoy/abcd1234",
        }
    }

    #[test]
    fn the_borrowed_event_is_the_event_contract() {
        let sparse = Evaluation { decision: Decision::refusal(401, "anonymous", "no verified identity"), facts: Facts { method: "GET".into(), authority: "api".into(), ..Facts::default() }, rewrite: None };
        let json = serde_json::to_string(&DecisionEventRef::new(&sparse, "v1", &host(Phase::Request, false))).unwrap();
        assert_eq!(
            json,
            r#"{"decision_id":"0123456789ab0123456789abcdef","time_unix_ms":1763758135123,"policy_version":"v1","rule":"anonymous","action":"deny","status":401,"mode":"enforce","reason":"no verified identity","identity":{},"request":{"method":"GET","authority":"api"},"data_classes":[],"downstream":"127.0.0.1:51234","worker":"envoy/abcd1234","phase":"request"}"#
        );

        let full = Evaluation {
            decision: Decision { allowed_by: Some("grant-x".into()), mode: Mode::Shadow, ..Decision::refusal(403, "deny-x", "a \"quoted\" reason\nwith a line") },
            facts: Facts {
                agent: Some("triage-bot".into()),
                user: Some("u1".into()),
                session: Some("s1".into()),
                trace: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                method: "POST".into(),
                authority: "api.example.com".into(),
                path: Some("/mcp".into()),
                route: Some("/mcp".into()),
                governed: Some("mcp".into()),
                protocol: Some(Protocol::Mcp),
                calls: vec![RpcCall { method: "tools/call".into(), tool: Some("delete_repository".into()), has_id: true }, RpcCall { method: "ping".into(), tool: None, has_id: false }],
                user_agent: Some("agent/1.0 (ünïcode)".into()),
                client: Some("claude-code/1.2".into()),
                model: Some("gpt-4o".into()),
                data_classes: vec![ClassCount { class: DataClass::AwsAccessKey, count: 2 }],
                ..Facts::default()
            },
            rewrite: None,
        };
        let facts = host(Phase::Response, true);
        let back: DecisionEvent = serde_json::from_str(&serde_json::to_string(&DecisionEventRef::new(&full, "v1", &facts)).unwrap()).unwrap();
        let (d, f) = (&full.decision, &full.facts);
        assert_eq!((back.decision_id.as_str(), back.time_unix_ms, back.policy_version.as_str()), (facts.decision_id, facts.time_unix_ms, "v1"));
        assert_eq!(
            (back.rule.as_str(), back.action, back.status, back.mode, back.reason.as_str(), back.allowed_by.as_deref()),
            (d.rule.as_str(), d.action, d.status, d.mode, d.reason.as_str(), d.allowed_by.as_deref())
        );
        assert_eq!(back.identity, EventIdentity { agent: f.agent.clone().map(String::from), user: f.user.clone(), session: f.session.clone(), trace: f.trace.clone() });
        assert_eq!(
            back.request,
            EventRequest {
                method: f.method.to_string(),
                authority: f.authority.clone(),
                path: f.path.clone(),
                route: f.route.clone().map(String::from),
                governed: f.governed.clone().map(String::from),
                protocol: f.protocol,
                calls: f.calls.clone(),
                user_agent: f.user_agent.clone(),
                client: f.client.clone(),
                model: f.model.clone(),
            }
        );
        assert_eq!(back.data_classes, [DataClassCount { class: "secret.aws_access_key".into(), count: 2 }]);
        assert_eq!((back.kernel, back.revoke), (None, None));
        assert_eq!((back.downstream, back.destination, back.upstream), (facts.downstream.clone(), facts.destination.clone(), facts.upstream.clone()));
        assert_eq!((back.worker, back.phase, back.request_decision_id), (facts.worker.to_owned(), Phase::Response, facts.request_decision_id.map(str::to_owned)));
    }

    /// Deterministic xorshift64 so the property test needs no extra dependency and replays exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[(self.next() % xs.len() as u64) as usize]
        }
        fn text(&mut self, pieces: &[&str]) -> String {
            let n = self.next() % 4;
            (0..n).map(|_| self.pick(pieces)).collect()
        }
    }

    #[test]
    fn the_hand_written_line_is_what_serde_writes() {
        use crate::schema::{Principal, Quarantine, QuarantineBlock, TerminateScope};
        // Every ASCII byte (the controls, `"`, `\`, DEL), non-ASCII of each UTF-8 length.
        let every: String = (0u8..0x80).map(char::from).chain("é✓𝄞".chars()).collect();
        let pieces = ["", "a", "\"", "\\", "\n", "\r\t", "\u{8}\u{c}", "\u{1}", "\u{1f}", "\u{7f}", "é", "triage-bot", "/api/customers/42", every.as_str()];
        let kernel = KernelAction { terminate: Some(TerminateScope::Workload), quarantine: Some(Quarantine { duration_secs: 30, block: QuarantineBlock::All, allow: vec!["10.0.0.1:53".into()] }) };
        let revoke = RevokeAction { principal: Principal::Session, ttl_secs: Some(60) };
        let calls = [RpcCall { method: "tools/call".into(), tool: Some("x\"y".into()), has_id: true }, RpcCall { method: "ping".into(), tool: None, has_id: false }];
        let actions = [Action::Allow, Action::Deny, Action::Redact, Action::Audit];
        let protocols = [None, Some(Protocol::Mcp), Some(Protocol::A2a), Some(Protocol::Openai), Some(Protocol::Anthropic), Some(Protocol::Json)];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut line = Vec::new();
        for _ in 0..20_000 {
            let t: Vec<String> = (0..12).map(|_| rng.text(&pieces)).collect();
            let some = |rng: &mut Rng, i: usize| (!rng.next().is_multiple_of(3)).then(|| t[i].as_str());
            let event = DecisionEventRef {
                decision_id: &t[0],
                time_unix_ms: rng.next() >> (rng.next() % 64),
                policy_version: &t[1],
                rule: &t[2],
                action: rng.pick(&actions),
                status: rng.next() as u16,
                mode: rng.pick(&[Mode::Enforce, Mode::Shadow]),
                reason: &t[3],
                allowed_by: some(&mut rng, 4),
                identity: EventIdentityRef { agent: some(&mut rng, 5), user: some(&mut rng, 6), session: some(&mut rng, 7), trace: some(&mut rng, 8) },
                request: EventRequestRef {
                    method: &t[9],
                    authority: &t[10],
                    path: some(&mut rng, 11),
                    route: some(&mut rng, 0),
                    governed: some(&mut rng, 1),
                    protocol: rng.pick(&protocols),
                    calls: if rng.next().is_multiple_of(2) { &calls } else { &[] },
                    user_agent: some(&mut rng, 2),
                    client: some(&mut rng, 3),
                    model: some(&mut rng, 4),
                },
                data_classes: (0..rng.next() % 3).map(|i| DataClassCountRef { class: &t[i as usize], count: rng.next() as u32 }).collect(),
                kernel: rng.next().is_multiple_of(4).then_some(&kernel),
                revoke: rng.next().is_multiple_of(4).then_some(&revoke),
                downstream: some(&mut rng, 5),
                destination: some(&mut rng, 6),
                upstream: some(&mut rng, 7),
                worker: &t[8],
                phase: rng.pick(&[Phase::Request, Phase::Response]),
                request_decision_id: some(&mut rng, 9),
            };
            line.clear();
            event.write_json(&mut line).unwrap();
            assert_eq!(std::str::from_utf8(&line).unwrap(), serde_json::to_string(&event).unwrap(), "{event:?}");
        }
    }
}
