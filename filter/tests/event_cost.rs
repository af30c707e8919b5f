//! What queueing and posting one decision event costs inside the VM, measured natively: the
//! filter's [`EventQueue`] (each event serialized straight into its NDJSON batch, the batch's
//! buffer posted as it is and reused) against the design it replaced, reproduced here (a `String`
//! per event in a `VecDeque`, up to `max_batch` of them joined for each POST). Allocations are
//! counted with a counting global allocator; time is wall clock, so only a guide (V8 runs the
//! same code slower; bench/profile/run.py measures Envoy's CPU).
//!
//! Run: `cargo test --release -p interlock-filter --test event_cost -- --nocapture`. The
//! assertions are ceilings on allocations, which do not depend on the machine.

// Test helpers stop loudly on a broken fixture.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
// A global allocator is unsafe by definition; this one only forwards to the system allocator
// and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use interlock_filter::events::{EventQueue, Limits};
use interlock_policies::event::{DecisionEventRef, HostFacts, Phase};
use interlock_policies::{Engine, HttpRequest, VerifiedIdentity};

struct Counting;

static COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNT.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        COUNT.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// Fewer in an unoptimized build, where `cargo test --workspace` runs this too: the allocation
// counts are the same, the times mean nothing there.
const EVENTS: usize = if cfg!(debug_assertions) { 10_000 } else { 200_000 };
const ROUNDS: usize = if cfg!(debug_assertions) { 2 } else { 7 };
const LIMITS: Limits = Limits { max_events: 10_000, max_bytes: 4 << 20, max_batch: 500 };

/// The replaced design, as the filter ran it (e3aecf4 `state.rs` and `root.rs`).
#[derive(Default)]
struct OldQueue {
    pending: VecDeque<String>,
}

impl OldQueue {
    fn push(&mut self, event: String, cap: usize) -> u64 {
        self.pending.push_back(event);
        let mut dropped = 0;
        while self.pending.len() > cap {
            self.pending.pop_front();
            dropped += 1;
        }
        dropped
    }
}

/// Allocations per event, ns per event, body bytes posted.
type Cost = (f64, f64, usize);

/// The [`Cost`] of `run`, which queues `EVENTS` events and posts a batch whenever one is full.
fn measure(run: impl FnOnce() -> usize) -> Cost {
    let a0 = COUNT.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let posted = run();
    let ns = t0.elapsed().as_nanos() as f64 / EVENTS as f64;
    let allocs = (COUNT.load(Ordering::Relaxed) - a0) as f64 / EVENTS as f64;
    (allocs, ns, posted)
}

/// Queues `EVENTS` events with `push` and posts each batch as it fills, the way the root does;
/// returns the bytes posted.
fn batched(post: &mut impl FnMut(&[u8]), push: impl Fn(&mut EventQueue) -> u64) -> usize {
    let mut q = EventQueue::default();
    let mut posted = 0;
    for _ in 0..EVENTS {
        push(&mut q);
        if q.ready(LIMITS) {
            let batch = q.take_batch().unwrap();
            post(batch.body());
            posted += batch.body().len();
            q.recycle(batch);
        }
    }
    posted
}

#[test]
fn queueing_an_event_allocates_nothing_and_copies_it_once() {
    // The bench's `rest` decision: triage-bot reads a customer, allowed.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/examples/demo.json")).unwrap();
    let engine = Engine::from_json(&text).unwrap();
    let req = HttpRequest {
        method: "GET".into(),
        path: "/api/customers/42".into(),
        authority: "api.example.com".into(),
        headers: vec![("user-agent".into(), "claude-code/1.2.0 (agent; bench)".into())],
        identity: VerifiedIdentity { jwt_agent: Some("triage-bot".into()), jwt_user: Some("bench".into()), jwt_session: Some("bench-triage-bot".into()), peer_principal: None },
        end_of_stream: true,
    };
    let eval = engine.evaluate(&req, None);
    let host = HostFacts {
        phase: Phase::Request,
        request_decision_id: None,
        decision_id: "019aa6c0b8f1d3c2a7e4b9f01234",
        time_unix_ms: 1_763_758_135_123,
        downstream: Some("127.0.0.1:51234".into()),
        destination: None,
        upstream: Some("127.0.0.1:18080".into()),
        worker: "envoy/abcd1234",
    };
    let event = DecisionEventRef::new(&eval, engine.version(), &host);
    let line = serde_json::to_string(&event).unwrap().len();

    let mut sink = 0usize;
    let mut post = |body: &[u8]| sink = sink.wrapping_add(body.len()).wrapping_add(usize::from(body.first().copied().unwrap_or(0)));
    let mut rows = Vec::new();
    let mut hands = Vec::new();
    for round in 0..ROUNDS {
        let old = measure(|| {
            let mut q = OldQueue::default();
            let mut posted = 0;
            for _ in 0..EVENTS {
                q.push(serde_json::to_string(&event).unwrap(), LIMITS.max_events);
                if q.pending.len() >= LIMITS.max_batch {
                    let batch: Vec<String> = q.pending.drain(..LIMITS.max_batch).collect();
                    let body = batch.join("\n");
                    post(body.as_bytes());
                    posted += body.len();
                }
            }
            posted
        });
        let new = measure(|| batched(&mut post, |q| q.push(&event, LIMITS)));
        // The filter since session 7: the same batches, the line written by hand, not by serde.
        let hand = measure(|| batched(&mut post, |q| q.push_with(|buf| event.write_json(buf).is_ok(), LIMITS)));
        assert_eq!(old.2, new.2, "the same bytes are posted");
        assert_eq!(new.2, hand.2, "the same bytes are posted");
        println!(
            "round {round}: {line}-byte event: String per event {:.2} allocations, {:.0} ns; batch with serde_json {:.3} allocations, {:.0} ns; batch written by hand {:.3} allocations, {:.0} ns per event",
            old.0, old.1, new.0, new.1, hand.0, hand.1
        );
        hands.push(hand.1);
        rows.push((old, new));
    }
    hands.sort_by(f64::total_cmp);
    println!("median of {} rounds, written by hand: {:.0} ns per event", hands.len(), hands[hands.len() / 2]);
    let median = |f: fn(&(Cost, Cost)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("median of {} rounds: before {:.0} ns, after {:.0} ns per event", rows.len(), median(|r| r.0.1), median(|r| r.1.1));
    let (old, new) = rows[rows.len() - 1];
    // serde_json's String starts at 128 bytes and doubles: 4 allocations for this event, plus
    // the join and the batch vector per POST.
    assert!(old.0 >= 4.0, "the replaced design allocated per event: {old:?}");
    // Only a batch's buffer growing, until the spare is reused: nothing per event.
    assert!(new.0 < 0.01, "queueing allocates per event: {new:?}");
    assert!(sink > 0);
}
