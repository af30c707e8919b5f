//! What one decision costs, and whether that cost grows with the policy.
//!
//! Groups:
//! - `demo`: the demo policy (`examples/demo.json`) on four representative requests, and
//!   `mcp_response_1k_clean`: the answer to the allowed `tools/call` (about 1 KB of text, nothing
//!   sensitive in it) judged with `on_response_body`, as the filter judges a governed response.
//! - `rest_by_rules`, `mcp_by_rules`: generated policies of 10, 1,000 and 100,000 rules, the same
//!   request each time, the rule count as the parameter. The engine claims lookups are indexed
//!   (`engine.rs`, `Tables`), so these lines should be flat.
//! - `compile`: `Engine::from_json` (parse, validate, index) of generated policies, what
//!   `on_configure` pays once per policy update.
//!
//! Every engine is built outside the timed loop, and every benchmarked request is checked first
//! for the decision it must get, so a bench cannot quietly time a 400 or a 401.
//!
//! Run: `cargo bench -p interlock-policies --bench engine` (add `-- --quick` for a short run).

// Benchmark setup must stop loudly when a policy fails to compile or a request gets the wrong
// decision; none of this is on the data path.
#![allow(clippy::expect_used, clippy::panic)]

// criterion is a dev-dependency for native targets only; on wasm this bench is empty so that
// `--all-targets` builds for wasm still work.
#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::BTreeMap;
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{BenchmarkId, Criterion, SamplingMode};
    use interlock_policies::corpus::CaseRequest;
    use interlock_policies::ratelimit::NoSharedData;
    use interlock_policies::schema::{
        AgentPolicy, ArgumentMatch, Effect, GovernedRoute, Grant, HttpMatch, McpMatch, Mode, PolicyDocument, Protocol,
        Rule,
    };
    use interlock_policies::{Action, Engine, HttpRequest};
    use serde_json::json;

    const DEMO_POLICY: &str = include_str!("../examples/demo.json");

    /// Rule counts of the generated policies.
    const SIZES: [usize; 3] = [10, 1_000, 100_000];

    /// Rules per generated unit (see [`generated_policy`]).
    const RULES_PER_UNIT: usize = 5;

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        targets = demo, rest_by_rules, mcp_by_rules, compile
    }

    /// A request with the decision it must get.
    struct Bench {
        name: &'static str,
        request: HttpRequest,
        body: Option<Vec<u8>>,
        expect: (Action, u16, String),
    }

    impl Bench {
        /// Built the way the corpus (and so the filter) builds requests: `content-type` and
        /// `content-length` for a JSON body, `end_of_stream` when there is none.
        fn new(name: &'static str, case: serde_json::Value, expect: (Action, u16, &str)) -> Self {
            let case: CaseRequest = serde_json::from_value(case).expect("bench request is a corpus request");
            Self {
                name,
                request: case.to_http_request(),
                body: case.body_bytes(),
                expect: (expect.0, expect.1, expect.2.to_owned()),
            }
        }

        /// Outside the timing: the engine decides this request as expected.
        fn check(&self, engine: &Engine, label: &str) {
            let d = engine.evaluate(&self.request, self.body.as_deref()).decision;
            let got = (d.action, d.status, d.rule.to_string());
            assert_eq!(got, self.expect, "{label}/{}: wrong decision ({})", self.name, d.reason);
        }

        fn run(&self, engine: &Engine) -> interlock_policies::Evaluation {
            black_box(engine).evaluate(black_box(&self.request), black_box(self.body.as_deref()))
        }
    }

    /// Headers every agent request carries in the demo (trace context, client headers).
    fn agent_headers() -> serde_json::Value {
        json!([
            ["accept", "application/json, text/event-stream"],
            ["user-agent", "interlock-bench/1"],
            ["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        ])
    }

    /// About 1 KB of JSON-RPC: a `tools/call` whose arguments carry a comment text.
    fn mcp_call(tool: &str, arguments: serde_json::Value) -> serde_json::Value {
        json!({ "jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": { "name": tool, "arguments": arguments } })
    }

    fn comment_text() -> String {
        "The crash reproduces on the second retry after the cache is warmed; see the attached trace. ".repeat(10)
    }

    fn demo(c: &mut Criterion) {
        let engine = Engine::from_json(DEMO_POLICY).expect("examples/demo.json compiles");
        let triage = json!({ "agent": "triage-bot", "user": "alice", "session": "s-1" });
        let benches = [
            Bench::new(
                "rest_get_allowed",
                json!({ "method": "GET", "path": "/api/customers/42?fields=name", "identity": triage, "headers": agent_headers() }),
                (Action::Allow, 0, "triage-crm-lookup"),
            ),
            Bench::new(
                "mcp_tools_call_1k_allowed",
                json!({
                    "method": "POST", "path": "/mcp", "identity": triage, "headers": agent_headers(),
                    "body": mcp_call("create_comment", json!({ "repo": "acme/api", "issue": 7, "body": comment_text() })),
                }),
                (Action::Allow, 0, "triage-mcp-tools"),
            ),
            Bench::new(
                "mcp_delete_repository_denied",
                json!({
                    "method": "POST", "path": "/mcp", "identity": triage, "headers": agent_headers(),
                    "body": mcp_call("delete_repository", json!({ "repo": "acme/api" })),
                }),
                (Action::Deny, 403, "deny-delete-repository"),
            ),
            Bench::new(
                "anonymous_401",
                json!({ "method": "GET", "path": "/api/customers/42", "headers": agent_headers() }),
                (Action::Deny, 401, "identity-required"),
            ),
        ];
        if let Some(b) = benches.get(1) {
            let len = b.body.as_ref().map_or(0, Vec::len);
            assert!((900..=1400).contains(&len), "the MCP body should be about 1 KB, is {len} bytes");
        }
        let mut group = c.benchmark_group("demo");
        for b in &benches {
            b.check(&engine, "demo");
            group.bench_function(b.name, |bench| bench.iter(|| b.run(&engine)));
        }
        if let Some(call) = benches.get(1) {
            let facts = call.run(&engine).facts;
            let answer = json!({ "jsonrpc": "2.0", "id": 42, "result": { "content": [{ "type": "text", "text": comment_text() }] } }).to_string();
            assert!(engine.on_response_body(&facts, answer.as_bytes(), &mut NoSharedData).is_none(), "a clean answer passes unrecorded");
            group.bench_function("mcp_response_1k_clean", |bench| {
                bench.iter(|| black_box(&engine).on_response_body(black_box(&facts), black_box(answer.as_bytes()), &mut NoSharedData));
            });
        }
        // `make bench`'s `llm16k` mix: its 16 KB chat completion judged on the model route (the
        // proposed tool calls read, every string scanned).
        let chat = Bench::new(
            "llm_request",
            json!({
                "method": "POST", "path": "/v1/chat/completions", "identity": triage, "headers": agent_headers(),
                "body": { "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Summarize the incident." }] },
            }),
            (Action::Allow, 0, ""),
        );
        let facts = chat.run(&engine).facts;
        let answer: &[u8] = include_bytes!("../../envoy-config/bench/llm16k-response.json");
        assert!(engine.on_response_body(&facts, answer, &mut NoSharedData).is_none(), "the bench's answer passes unrecorded");
        group.bench_function("llm_response_16k_clean", |bench| {
            bench.iter(|| black_box(&engine).on_response_body(black_box(&facts), black_box(answer), &mut NoSharedData));
        });
        group.finish();
    }

    /// A policy of `rules` rules (a multiple of [`RULES_PER_UNIT`]). Unit `i` is:
    /// - agent `agent-{i}` with two grants: `rest-{i}` (GET `/svc{i}/items/{id}`) and `mcp-{i}`
    ///   (tool `tool_{i}`);
    /// - `deny-admin-{i}`: deny `/svc{i}/admin/**` to every agent (the global deny trie);
    /// - `deny-danger-{i}`: deny tool `danger_{i}` to `agent-{i}` (an agent-scoped rule);
    /// - `shadow-secrets-{i}`: shadow-deny `tool_{i}` when `/path` matches `secrets/**` (a
    ///   candidate that is checked, argument glob included, on every call of `tool_{i}`).
    ///
    /// Document rules precede grants in precedence order, so the grants the benchmarked requests
    /// hit come after every deny rule: an engine that scanned would pay for all of them.
    fn generated_policy(rules: usize) -> String {
        assert_eq!(rules % RULES_PER_UNIT, 0, "rule count must be a multiple of {RULES_PER_UNIT}");
        let units = rules / RULES_PER_UNIT;
        let mut agents = BTreeMap::new();
        let mut doc_rules = Vec::with_capacity(units.saturating_mul(3));
        for i in 0..units {
            let agent = format!("agent-{i}");
            let grant = |id: String, http: Option<HttpMatch>, mcp: Option<McpMatch>| Grant {
                id,
                description: None,
                mode: Mode::Enforce,
                http,
                mcp,
                a2a: None,
            };
            agents.insert(
                agent.clone(),
                AgentPolicy {
                    description: None,
                    grants: vec![
                        grant(
                            format!("rest-{i}"),
                            Some(HttpMatch {
                                methods: Some(vec!["GET".into()]),
                                hosts: None,
                                paths: Some(vec![format!("/svc{i}/items/{{id}}")]),
                            }),
                            None,
                        ),
                        grant(format!("mcp-{i}"), None, Some(McpMatch { tools: Some(vec![format!("tool_{i}")]), ..McpMatch::default() })),
                    ],
                },
            );
            let rule = |id: String, mode: Mode, agents: Option<Vec<String>>, http: Option<HttpMatch>, mcp: Option<McpMatch>| Rule {
                id,
                description: None,
                effect: Effect::Deny,
                mode,
                agents,
                http,
                mcp,
                a2a: None,
                kernel: None,
                revoke: None,
            };
            doc_rules.push(rule(
                format!("deny-admin-{i}"),
                Mode::Enforce,
                None,
                Some(HttpMatch { paths: Some(vec![format!("/svc{i}/admin/**")]), ..HttpMatch::default() }),
                None,
            ));
            doc_rules.push(rule(
                format!("deny-danger-{i}"),
                Mode::Enforce,
                Some(vec![agent]),
                None,
                Some(McpMatch { tools: Some(vec![format!("danger_{i}")]), ..McpMatch::default() }),
            ));
            doc_rules.push(rule(
                format!("shadow-secrets-{i}"),
                Mode::Shadow,
                None,
                None,
                Some(McpMatch {
                    tools: Some(vec![format!("tool_{i}")]),
                    arguments: Some(vec![ArgumentMatch {
                        pointer: "/path".into(),
                        exact: None,
                        prefix: None,
                        glob: Some("secrets/**".into()),
                    }]),
                    ..McpMatch::default()
                }),
            ));
        }
        let doc = PolicyDocument {
            schema: None,
            version: format!("bench-{rules}"),
            identity: Default::default(),
            inspection: Default::default(),
            governed: vec![GovernedRoute { id: "mcp".into(), path: "/mcp".into(), hosts: None, protocol: Protocol::Mcp, tools: None }],
            default_action: Default::default(),
            agents,
            rules: doc_rules,
            rate_limits: Vec::new(),
            data_rules: Vec::new(),
        };
        serde_json::to_string(&doc).expect("a policy document serializes")
    }

    fn generated_engine(rules: usize) -> Engine {
        let engine = Engine::from_json(&generated_policy(rules)).unwrap_or_else(|e| panic!("generated policy of {rules} rules: {e}"));
        assert_eq!(engine.rule_count(), rules, "generated policy size");
        engine
    }

    /// The same request against every size: agent 0 exists in all of them.
    fn rest_request() -> Bench {
        Bench::new(
            "rest",
            json!({
                "method": "GET", "path": "/svc0/items/42", "headers": agent_headers(),
                "identity": { "agent": "agent-0", "user": "alice", "session": "s-1" },
            }),
            (Action::Allow, 0, "rest-0"),
        )
    }

    fn mcp_request() -> Bench {
        Bench::new(
            "mcp",
            json!({
                "method": "POST", "path": "/mcp", "headers": agent_headers(),
                "identity": { "agent": "agent-0", "user": "alice", "session": "s-1" },
                "body": mcp_call("tool_0", json!({ "path": "docs/readme.md", "note": comment_text() })),
            }),
            (Action::Allow, 0, "mcp-0"),
        )
    }

    /// Extra checks on the largest policy, outside timing: the generated rules really decide (a
    /// deny at the far end of the document, an agent-scoped deny, the shadow glob).
    fn check_generated(engine: &Engine, rules: usize) {
        let last = rules / RULES_PER_UNIT - 1;
        let who = json!({ "agent": format!("agent-{last}") });
        for (name, case, expect) in [
            (
                "last agent's grant",
                json!({ "method": "GET", "path": format!("/svc{last}/items/7"), "identity": who }),
                (Action::Allow, 0, format!("rest-{last}")),
            ),
            (
                "global path deny",
                json!({ "method": "GET", "path": format!("/svc{last}/admin/users"), "identity": who }),
                (Action::Deny, 403, format!("deny-admin-{last}")),
            ),
            (
                "agent-scoped tool deny",
                json!({ "method": "POST", "path": "/mcp", "identity": who, "body": mcp_call(&format!("danger_{last}"), json!({})) }),
                (Action::Deny, 403, format!("deny-danger-{last}")),
            ),
            (
                "shadow glob",
                json!({ "method": "POST", "path": "/mcp", "identity": who, "body": mcp_call(&format!("tool_{last}"), json!({ "path": "secrets/key" })) }),
                (Action::Deny, 0, format!("shadow-secrets-{last}")),
            ),
            (
                "another agent's grant",
                json!({ "method": "GET", "path": "/svc0/items/7", "identity": who }),
                (Action::Deny, 403, "default-deny".to_owned()),
            ),
        ] {
            let case: CaseRequest = serde_json::from_value(case).expect("check request");
            let d = engine.evaluate(&case.to_http_request(), case.body_bytes().as_deref()).decision;
            assert_eq!((d.action, d.status, d.rule.to_string()), expect, "{rules} rules: {name}: {}", d.reason);
        }
    }

    fn by_rules(c: &mut Criterion, group_name: &str, request: &Bench) {
        let mut group = c.benchmark_group(group_name);
        for rules in SIZES {
            let engine = generated_engine(rules);
            request.check(&engine, &format!("{group_name}/{rules}"));
            check_generated(&engine, rules);
            group.bench_with_input(BenchmarkId::from_parameter(rules), &engine, |b, engine| b.iter(|| request.run(engine)));
        }
        group.finish();
    }

    fn rest_by_rules(c: &mut Criterion) {
        by_rules(c, "rest_by_rules", &rest_request());
    }

    fn mcp_by_rules(c: &mut Criterion) {
        by_rules(c, "mcp_by_rules", &mcp_request());
    }

    fn compile(c: &mut Criterion) {
        let mut group = c.benchmark_group("compile");
        // One compile of 100,000 rules takes about half a second, so criterion's linear sampling
        // (1+2+...+10 iterations) would stretch the run; flat sampling times 10 equal samples,
        // and 8 s fits ten of them without criterion warning that it ran over.
        group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(8));
        for rules in [1_000, 100_000] {
            let text = generated_policy(rules);
            assert_eq!(Engine::from_json(&text).map(|e| e.rule_count()).ok(), Some(rules), "generated policy compiles");
            group.bench_with_input(BenchmarkId::from_parameter(rules), &text, |b, text| {
                // The engine is dropped outside the timing: this measures building it.
                b.iter_with_large_drop(|| Engine::from_json(black_box(text)))
            });
        }
        group.finish();
    }
}
