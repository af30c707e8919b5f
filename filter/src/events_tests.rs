use interlock_policies::event::{DecisionEventRef, HostFacts, Phase};
use interlock_policies::{DecisionEvent, Engine, Evaluation, HttpRequest, VerifiedIdentity};
use serde::Serialize;

use super::*;

const LIMITS: Limits = Limits { max_events: 10_000, max_bytes: 4 << 20, max_batch: 500 };

/// A line of exactly `len` bytes, numbered (`len` >= 12).
#[derive(Serialize)]
struct Sized(String);

fn sized(n: usize, len: usize) -> Sized {
    let text = format!("{n:08}");
    // JSON string: two quotes around the text and its padding.
    Sized(format!("{text}{}", "x".repeat(len - 2 - text.len())))
}

/// The numbers of the events in a body, in order.
fn numbers(body: &[u8]) -> Vec<usize> {
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').map(|line| std::str::from_utf8(&line[1..9]).unwrap().parse().unwrap()).collect()
}

/// Every event waiting, batch by batch, oldest first (the queue is emptied).
fn drain(q: &mut EventQueue) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    while let Some(b) = q.take_batch() {
        assert_eq!(numbers(b.body()).len(), b.len(), "count and lines agree");
        out.push(numbers(b.body()));
    }
    assert_eq!((q.len(), q.bytes()), (0, 0));
    out
}

/// Evaluations of the demo policy, with text that needs escaping in the request.
fn evaluations() -> (Engine, Vec<Evaluation>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/examples/demo.json")).unwrap();
    let engine = Engine::from_json(&text).unwrap();
    let request = |method: &str, path: &str, agent: Option<&str>, body: Option<()>| HttpRequest {
        method: method.into(),
        path: path.into(),
        authority: "api.example.com".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("user-agent".into(), "agent/1.0 (\"quoted\" ünïcode \\ \u{1}) ".into())],
        identity: VerifiedIdentity { jwt_agent: agent.map(Into::into), jwt_user: Some("u\"1".into()), jwt_session: Some("s\n1".into()), peer_principal: None },
        end_of_stream: body.is_none(),
    };
    let call = |tool: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"AKIAIOSFODNN7EXAMPLE"}}}}}}"#);
    let cases = [
        (request("GET", "/api/customers/42?q=%22x%22", Some("triage-bot"), None), None),
        (request("GET", "/api/customers/42", Some("billing-agent"), None), None),
        (request("GET", "/files/config/.env", Some("triage-bot"), None), None),
        (request("GET", "/api/customers", None, None), None),
        (request("POST", "/mcp", Some("triage-bot"), Some(())), Some(call("create_comment"))),
        (request("POST", "/mcp", Some("triage-bot"), Some(())), Some(call("delete_repository"))),
        (
            request("POST", "/v1/chat/completions", Some("triage-bot"), Some(())),
            Some(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"my key is AKIAQ2RTNW7YXKZL5MJD"}]}"#.to_owned()),
        ),
    ];
    let evals = cases.iter().map(|(r, body)| engine.evaluate(r, body.as_deref().map(str::as_bytes))).collect();
    (engine, evals)
}

fn facts(i: usize, full: bool) -> HostFacts<'static> {
    HostFacts {
        phase: if full { Phase::Response } else { Phase::Request },
        request_decision_id: full.then_some("0123456789ab0000000000000000"),
        decision_id: Box::leak(format!("{i:012x}0123456789abcdef").into_boxed_str()),
        time_unix_ms: 1_763_758_135_123 + i as u64,
        downstream: Some("127.0.0.1:51234".into()),
        destination: full.then(|| "[::1]:10000".into()),
        upstream: full.then(|| "10.0.0.7:18080".into()),
        worker: "envoy \"node\"\n/abcd1234",
    }
}

#[test]
fn a_batch_is_the_events_as_the_enforcer_reads_them() {
    let (engine, evals) = evaluations();
    let host: Vec<HostFacts> = (0..evals.len() * 2).map(|i| facts(i, i % 2 == 1)).collect();
    let events: Vec<DecisionEventRef> = host.iter().enumerate().map(|(i, h)| DecisionEventRef::new(&evals[i / 2], engine.version(), h)).collect();
    let mut q = EventQueue::default();
    for e in &events {
        assert_eq!(q.push(e, LIMITS), 0);
    }
    let batch = q.take_batch().unwrap();
    assert_eq!(batch.len(), events.len());
    // Byte for byte what the filter posted before (each event serialized on its own, joined by
    // newlines), so the enforcer and log consumers see no change...
    let before: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    assert_eq!(std::str::from_utf8(batch.body()).unwrap(), before.join("\n"));
    // ... and each line reads back as the event it came from.
    let lines: Vec<&[u8]> = batch.body().split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), events.len());
    for (i, (line, e)) in lines.iter().zip(&events).enumerate() {
        let back: DecisionEvent = serde_json::from_slice(line).unwrap_or_else(|err| panic!("line {i}: {err}"));
        let want: DecisionEvent = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(back, want, "line {i}");
        assert_eq!(back.decision_id, host[i].decision_id);
        assert_eq!(back.worker, host[i].worker);
        assert_eq!(back.request.user_agent, evals[i / 2].facts.user_agent);
        assert!(back.request.user_agent.as_deref().is_some_and(|ua| ua.contains("\"quoted\" ünïcode")));
    }
    // The demo policy's cases decide differently, so the test covers allowed, refused, and
    // data-class events.
    let rules: std::collections::BTreeSet<&str> = evals.iter().map(|e| e.decision.rule.as_str()).collect();
    assert!(rules.len() >= 4, "{rules:?}");
    assert!(evals.iter().any(|e| !e.facts.data_classes.is_empty()), "no data classes seen: {:?}", evals.iter().map(|e| (&e.decision.rule, &e.facts.data_classes)).collect::<Vec<_>>());
}

#[test]
fn batches_hold_at_most_max_batch_events() {
    let mut q = EventQueue::default();
    let limits = Limits { max_batch: 3, ..LIMITS };
    for n in 0..8 {
        q.push(&sized(n, 20), limits);
        assert_eq!(q.ready(limits), n >= 2, "after {n}");
    }
    assert_eq!(q.len(), 8);
    assert_eq!(q.bytes(), 8 * 20 + 2 + 2 + 1, "lines and the newlines between them, per batch");
    assert_eq!(drain(&mut q), [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
}

#[test]
fn the_byte_bound_drops_the_oldest_and_counts_each() {
    // Named cases: (what, max_events, max_bytes, line length, events pushed, events kept).
    for (what, max_events, max_bytes, len, pushed, kept) in [
        ("bytes bind: 10 lines of 100 and 9 newlines = 1009", 1_000, 1_009, 100, 25, 10),
        ("one byte short of that keeps 9", 1_000, 1_008, 100, 25, 9),
        ("the event count binds first", 4, 1_009, 100, 25, 4),
        ("exactly one event fits", 1_000, 100, 100, 3, 1),
    ] {
        let limits = Limits { max_events, max_bytes, max_batch: 100 };
        let mut q = EventQueue::default();
        let mut dropped = 0;
        for n in 0..pushed {
            dropped += q.push(&sized(n, len), limits);
            assert!(q.bytes() <= max_bytes && q.len() <= max_events, "{what}: {} bytes, {} events", q.bytes(), q.len());
        }
        // Every event is either waiting or counted: none is lost silently.
        assert_eq!((q.len(), dropped), (kept, (pushed - kept) as u64), "{what}");
        let waiting: Vec<usize> = drain(&mut q).concat();
        assert_eq!(waiting, (pushed - kept..pushed).collect::<Vec<_>>(), "{what}: the newest are kept, in order");
    }
}

#[test]
fn an_event_larger_than_the_byte_bound_is_dropped_alone() {
    let limits = Limits { max_bytes: 100, ..LIMITS };
    let mut q = EventQueue::default();
    assert_eq!(q.push(&sized(0, 40), limits), 0);
    assert_eq!(q.push(&sized(1, 101), limits), 1, "counted");
    assert_eq!(q.push(&sized(2, 40), limits), 0);
    assert_eq!(q.bytes(), 81);
    assert_eq!(drain(&mut q), [vec![0, 2]], "the others stay");
    assert_eq!(q.push_front(&[b'x'; 101], limits), 1);
    assert!(q.is_empty());
}

#[test]
fn an_unanswered_batch_goes_back_in_front_within_the_bounds() {
    let limits = Limits { max_events: 5, max_bytes: 1 << 20, max_batch: 3 };
    let mut q = EventQueue::default();
    for n in 0..4 {
        q.push(&sized(n, 30), limits);
    }
    let batch = q.take_batch().unwrap();
    assert_eq!(numbers(batch.body()), [0, 1, 2]);
    for n in 4..7 {
        assert_eq!(q.push(&sized(n, 30), limits), 0, "the batch in flight is not counted");
    }
    // 3 back + 4 waiting = 7 > 5: the two oldest go.
    assert_eq!(q.requeue(batch, limits), 2);
    assert_eq!(q.len(), 5);
    assert_eq!(drain(&mut q), [vec![2], vec![3, 4, 5], vec![6]]);
}

#[test]
fn urgent_events_go_first_and_push_out_the_newest() {
    let limits = Limits { max_events: 4, max_bytes: 1 << 20, max_batch: 3 };
    let mut q = EventQueue::default();
    for n in 0..3 {
        q.push(&sized(n, 30), limits);
    }
    let urgent = |n| serde_json::to_vec(&sized(n, 30)).unwrap();
    assert_eq!(q.push_front(&urgent(100), limits), 0);
    assert!(q.ready(limits), "an urgent event leaves at once");
    assert_eq!(q.push_front(&urgent(101), limits), 1, "over 4: the newest (2) is dropped");
    assert_eq!(q.push(&sized(3, 30), limits), 1, "over 4: the oldest that is not urgent (0) is dropped");
    assert_eq!(q.len(), 4);
    // Urgent events in the order they came, in front; the rest after them.
    assert_eq!(drain(&mut q), [vec![100, 101], vec![1, 3]]);
    // Urgent events fill the queue: the newest urgent one, then a normal one, give way.
    let roomy = Limits { max_batch: 10, ..limits };
    for n in 0..5 {
        assert_eq!(q.push_front(&urgent(200 + n), roomy), u64::from(n == 4));
    }
    assert_eq!(q.push(&sized(4, 30), roomy), 1, "not into the urgent batch, and dropped first");
    assert_eq!(drain(&mut q), [vec![200, 201, 202, 203]]);
}

#[test]
fn a_delivered_batch_lends_its_buffer_to_the_next() {
    let mut q = EventQueue::default();
    let limits = Limits { max_batch: 2, ..LIMITS };
    for n in 0..3 {
        q.push(&sized(n, 200), limits);
    }
    let batch = q.take_batch().unwrap();
    let (ptr, cap) = (batch.body().as_ptr(), batch.buf.capacity());
    q.recycle(batch);
    // The batch being filled ([2]) keeps its buffer; the next one takes the spare.
    q.push(&sized(3, 200), limits);
    q.push(&sized(4, 200), limits);
    let _ = q.take_batch().unwrap();
    let next = q.take_batch().unwrap();
    assert_eq!((next.body().as_ptr(), next.buf.capacity()), (ptr, cap));
    assert_eq!(numbers(next.body()), [4]);
}

#[test]
fn dropping_from_the_front_compacts_the_buffer() {
    let limits = Limits { max_events: 3, max_bytes: 1 << 20, max_batch: 100 };
    let mut q = EventQueue::default();
    let mut dropped = 0;
    for n in 0..50 {
        dropped += q.push(&sized(n, 50), limits);
        let front = q.pending.front().unwrap();
        assert!(front.start <= front.buf.len() / 2, "dead lines stay under half the buffer");
    }
    assert_eq!(dropped, 47);
    assert_eq!(q.bytes(), 3 * 50 + 2);
    assert_eq!(drain(&mut q), [vec![47, 48, 49]]);
}

#[test]
fn a_failed_serialization_adds_nothing() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let mut q = EventQueue::default();
    assert_eq!(q.push(&Fails, LIMITS), 1);
    assert!(q.is_empty() && q.pending.is_empty());
    q.push(&sized(0, 20), LIMITS);
    assert_eq!(q.push(&Fails, LIMITS), 1);
    q.push(&sized(1, 20), LIMITS);
    assert_eq!(drain(&mut q), [vec![0, 1]]);
}

#[test]
fn a_failing_enforcer_is_not_asked_on_every_request() {
    let limits = Limits { max_batch: 1, ..LIMITS };
    let mut q = EventQueue::default();
    q.push(&sized(0, 20), limits);
    assert!(q.wants_flush(limits));
    q.retrying = true;
    assert!(!q.wants_flush(limits), "the tick retries");
    q.retrying = false;
    let b = q.take_batch().unwrap();
    q.in_flight = Some((1, b));
    q.push(&sized(1, 20), limits);
    assert!(!q.wants_flush(limits), "the answer sends the next");
}
