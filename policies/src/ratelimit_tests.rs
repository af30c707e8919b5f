use super::*;

const DEMO: BucketSpec = BucketSpec { capacity: 20, refill_ms: 10_000 };

fn admitted(t: Take) -> bool {
    matches!(t.outcome, Outcome::Admitted { .. })
}

#[test]
fn a_burst_gets_exactly_the_capacity() {
    let table = BucketTable::default();
    let mut store = MapStore::default();
    let results: Vec<bool> = (0..25).map(|_| admitted(table.take(&mut store, "per-session", "s1", DEMO, 1_000).unwrap())).collect();
    assert_eq!(results.iter().filter(|a| **a).count(), 20);
    assert!(results[..20].iter().all(|a| *a), "the first 20 pass");
    let t = table.take(&mut store, "per-session", "s1", DEMO, 1_000).unwrap();
    assert_eq!(t.outcome, Outcome::Limited { retry_after_ms: 500 }, "one token refills in 10 s / 20");
}

#[test]
fn tokens_refill_over_time_and_keys_are_independent() {
    let table = BucketTable::default();
    let mut store = MapStore::default();
    for _ in 0..20 {
        assert!(admitted(table.take(&mut store, "l", "s1", DEMO, 0).unwrap()));
    }
    assert!(!admitted(table.take(&mut store, "l", "s1", DEMO, 0).unwrap()));
    assert!(admitted(table.take(&mut store, "l", "s2", DEMO, 0).unwrap()), "another session has its own bucket");
    assert!(admitted(table.take(&mut store, "other-limit", "s1", DEMO, 0).unwrap()), "another limit too");
    assert!(!admitted(table.take(&mut store, "l", "s1", DEMO, 499).unwrap()));
    assert!(admitted(table.take(&mut store, "l", "s1", DEMO, 500).unwrap()));
    let admitted_after_full_refill = (0..25).filter(|_| admitted(table.take(&mut store, "l", "s1", DEMO, 60_000).unwrap())).count();
    assert_eq!(admitted_after_full_refill, 20, "refill stops at the capacity");
}

#[test]
fn lost_races_are_retried_and_exhaustion_is_contention() {
    let table = BucketTable { max_attempts: 4, ..BucketTable::default() };
    let mut store = MapStore::default();
    assert!(admitted(table.take(&mut store, "l", "s", DEMO, 0).unwrap()));
    store.interfere = 2;
    let t = table.take(&mut store, "l", "s", DEMO, 0).unwrap();
    assert!(admitted(t));
    assert_eq!(t.attempts, 3, "two lost CAS rounds, then success");
    store.interfere = 100;
    assert_eq!(table.take(&mut store, "l", "s", DEMO, 0).unwrap().outcome, Outcome::Contention);
}

#[test]
fn interleaved_workers_never_exceed_the_limit() {
    // Two "workers" alternate on one store; each write invalidates the other's CAS token.
    let table = BucketTable::default();
    let mut store = MapStore::default();
    let mut total = 0;
    for i in 0..100 {
        store.interfere = u32::from(i % 3 == 0);
        if admitted(table.take(&mut store, "l", "hot", DEMO, 5_000).unwrap()) {
            total += 1;
        }
    }
    assert_eq!(total, 20);
}

#[test]
fn a_million_sessions_keep_shared_data_bounded() {
    let table = BucketTable::default();
    let mut store = MapStore::default();
    let mut hot_admitted = 0;
    let mut evictions = 0u64;
    for i in 0..1_000_000u64 {
        // 10 new sessions per millisecond, each taking one token; a hot session every 1000th.
        let now = i / 10;
        let t = table.take(&mut store, "per-session", &format!("session-{i}"), DEMO, now).unwrap();
        assert!(admitted(t));
        evictions += u64::from(t.evicted);
        if i % 1000 == 0 && admitted(table.take(&mut store, "per-session", "hot", DEMO, now).unwrap()) {
            hot_admitted += 1;
        }
    }
    let keys = store.map.len();
    let bytes: usize = store.map.iter().map(|(k, (v, _))| k.len() + v.len()).sum();
    assert!(keys <= table.slots as usize, "{keys} keys");
    assert!(bytes <= table.slots as usize * (table.per_slot * ENTRY + 24), "{bytes} bytes");
    // 100,000 ms of traffic: the hot session refills 20 per 10 s, so at most 20 + 200 passes.
    assert!(hot_admitted <= 220, "hot session admitted {hot_admitted}");
    eprintln!("1M sessions: {keys} shared-data keys, {bytes} bytes, {evictions} early evictions");
}

#[test]
fn garbage_in_a_slot_is_not_trusted_into_a_panic() {
    let table = BucketTable::default();
    let mut store = MapStore::default();
    let (key, _) = table.locate("l", "s");
    store.map.insert(key, (vec![0xff; 45], 1));
    assert!(admitted(table.take(&mut store, "l", "s", DEMO, 0).unwrap()));
}

// Leases: several simulated workers (one `Leases` each) on one store, a simulated clock.

/// 1,000 tokens per second: a whole number of milli-tokens per millisecond, so the reference
/// bucket below refills exactly as the shared one whatever the steps it is updated in.
const BUSY: BucketSpec = BucketSpec { capacity: 1_000, refill_ms: 1_000 };

/// A store that counts its calls.
#[derive(Default)]
struct Counting {
    inner: MapStore,
    calls: u64,
}

impl SharedStore for Counting {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.calls += 1;
        self.inner.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.calls += 1;
        self.inner.set(key, value, cas)
    }
}

/// A store whose host refuses everything.
struct Broken;

impl SharedStore for Broken {
    fn get(&mut self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Err(StoreError::Host("down".into()))
    }
    fn set(&mut self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Host("down".into()))
    }
}

/// One exact token bucket, updated at every request: what a request admitted by the leases must
/// also be admitted by.
struct Reference {
    spec: BucketSpec,
    tokens_milli: u64,
    last_ms: u64,
}

impl Reference {
    fn new(spec: BucketSpec, now_ms: u64) -> Self {
        Self { spec, tokens_milli: u64::from(spec.capacity) * MILLI, last_ms: now_ms }
    }
    fn admit(&mut self, now_ms: u64) -> bool {
        let full = u64::from(self.spec.capacity) * MILLI;
        self.tokens_milli = (self.tokens_milli + (now_ms - self.last_ms) * full / self.spec.refill_ms).min(full);
        self.last_ms = now_ms;
        if self.tokens_milli < MILLI {
            return false;
        }
        self.tokens_milli -= MILLI;
        true
    }
}

fn slot_entry(store: &MapStore, table: &BucketTable, limit: &str, key: &str) -> Entry {
    let (slot, hash) = table.locate(limit, key);
    decode(&store.map[&slot].0).into_iter().find(|e| e.hash == hash).unwrap()
}

#[test]
fn a_busy_bucket_is_spent_from_the_lease_without_host_calls() {
    let mut store = Counting::default();
    let mut worker = Leases::default();
    let mut remaining = Vec::new();
    for _ in 0..320 {
        match worker.take(&mut store, "per-session", "s1", BUSY, 1_000).unwrap().outcome {
            Outcome::Admitted { remaining: r } => remaining.push(r),
            other => panic!("{other:?}"),
        }
    }
    // Leases of 1, 2, 4, 8, 16 tokens, then 32 (admissions 32, 64, ..., 320): 15 takes of the
    // shared bucket, 2 calls each, and 2 more that create the slot.
    assert_eq!(store.calls, 2 * 15 + 2, "host calls for 320 requests");
    // One worker, no time passing: `remaining` is exactly the capacity less what was admitted.
    let expected: Vec<u32> = (1..=320).map(|k| 1_000 - k).collect();
    assert_eq!(remaining, expected);
}

#[test]
fn a_bucket_near_its_limit_is_taken_one_token_at_a_time_as_before() {
    // The demo's 20 per 10 s: never more than 20 / 16 tokens, so a lease is one token, spent at once.
    let table = BucketTable::default();
    let mut plain = MapStore::default();
    let mut store = Counting::default();
    let mut workers = [Leases::default(), Leases::default(), Leases::default()];
    for i in 0..40u64 {
        let now = i * 100;
        let before = store.calls;
        let leased = workers[(i % 3) as usize].take(&mut store, "per-session", "s1", DEMO, now).unwrap();
        let single = table.take(&mut plain, "per-session", "s1", DEMO, now).unwrap();
        assert_eq!(leased.outcome, single.outcome, "request {i} at {now} ms");
        assert!(store.calls - before >= 2, "request {i} went to shared data");
    }
    let e = slot_entry(&store.inner, &table, "per-session", "s1");
    assert_eq!((e.out_cur, e.out_prev), (0, 0), "no lease was taken");
    // Also for a bucket drained to near empty: below 2 × LEASE_DIVISOR tokens, single tokens only.
    let mut w = Leases::default();
    let mut s = MapStore::default();
    let spec = BucketSpec { capacity: 100, refill_ms: 100_000 };
    let mut outcomes = Vec::new();
    for _ in 0..110 {
        outcomes.push(w.take(&mut s, "l", "k", spec, 0).unwrap().outcome);
    }
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::Admitted { .. })).count(), 100);
    assert_eq!(slot_entry(&s, w.table(), "l", "k").tokens_milli, 0, "every token was spent, none stranded in the lease");
}

#[test]
fn simulated_workers_never_admit_more_than_one_exact_bucket() {
    // Four workers share each bucket; requests arrive in bursts and lulls, in random order
    // (xorshift: reproducible), some workers fall silent for a while. Every admission, in time
    // order, must be one a single exact bucket would admit too.
    for (spec, seed) in
        [(BUSY, 1u64), (BUSY, 7), (BucketSpec { capacity: 100, refill_ms: 1_000 }, 3), (DEMO, 5), (BucketSpec { capacity: 2_000, refill_ms: 5_000 }, 11)]
    {
        let mut rng = seed;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut store = MapStore::default();
        let mut workers: Vec<Leases> = (0..4).map(|_| Leases::default()).collect();
        let mut reference: Option<Reference> = None;
        // The same requests through one exact bucket, to see what the leases refuse early.
        let mut exact: Option<Reference> = None;
        let mut exact_admitted = 0u64;
        let (mut now, mut admitted, mut refused, mut local) = (0u64, 0u64, 0u64, 0u64);
        for _ in 0..40_000 {
            // Four requests a millisecond (over every limit here) between lulls of up to 2 s
            // (about a request per 1.25 ms on average).
            now += match next() % 1_000 {
                0..=749 => 0,
                750..=998 => 1,
                _ => next() % 2_000,
            };
            let w = (next() % 4) as usize;
            if w == 3 && (now / 1_000) % 2 == 0 {
                continue; // worker 3 is silent every other second, leases and all
            }
            exact_admitted += u64::from(exact.get_or_insert_with(|| Reference::new(spec, now)).admit(now));
            let t = workers[w].take(&mut store, "l", "hot", spec, now).unwrap();
            match t.outcome {
                Outcome::Admitted { .. } => {
                    admitted += 1;
                    local += u64::from(t.attempts == 0);
                    let r = reference.get_or_insert_with(|| Reference::new(spec, now));
                    assert!(r.admit(now), "{spec:?} seed {seed}: admission {admitted} at {now} ms is over the limit");
                }
                Outcome::Limited { retry_after_ms } => {
                    refused += 1;
                    assert!(retry_after_ms >= 1 && retry_after_ms <= spec.refill_ms + 2 * LEASE_TTL_MS, "retry_after {retry_after_ms}");
                }
                Outcome::Contention => panic!("no interference in this test"),
            }
        }
        eprintln!("{spec:?}: {admitted} admitted ({local} from leases; an exact bucket {exact_admitted}), {refused} refused over {now} ms");
        assert!(refused > 0, "the limit was reached");
        // Early refusals: leases written off at each lull (every ~1,000 requests here) and when
        // worker 3 falls silent, each at most LEASE_MAX - 1 tokens per worker. Measured: 0.2-0.3%
        // for 1,000 per s, 3.1% for 2,000 per 5 s, none for the smaller buckets.
        assert!(admitted * 100 >= exact_admitted * 95, "early refusals: {admitted} admitted, {exact_admitted} by an exact bucket");
        if u64::from(spec.capacity) >= 2 * LEASE_DIVISOR {
            assert!(local > 0, "a busy bucket was leased");
        } else {
            assert_eq!(local, 0, "a bucket of fewer than 2 × LEASE_DIVISOR tokens never leases");
        }
    }
}

#[test]
fn early_refusal_is_bounded_and_unspent_tokens_come_back() {
    // 10,000 per 10 s. Workers 1-3 each end up holding a lease; worker 0 drains the rest.
    let spec = BucketSpec { capacity: 10_000, refill_ms: 10_000 };
    let mut store = MapStore::default();
    let mut w: Vec<Leases> = (0..4).map(|_| Leases::default()).collect();
    // 32 requests each: leases of 1, 2, 4, 8, 16, then 32 of which 31 are left.
    for worker in &mut w[1..] {
        for _ in 0..32 {
            assert!(admitted(worker.take(&mut store, "l", "k", spec, 0).unwrap()));
        }
    }
    let held = slot_entry(&store, w[0].table(), "l", "k").out_cur;
    assert_eq!(held, 3 * (LEASE_MAX - 1), "three full leases are out");
    let drained = (0..20_000).filter(|_| admitted(w[0].take(&mut store, "l", "k", spec, 0).unwrap())).count() as u64;
    assert_eq!(drained + 3 * 32 + u64::from(held), 10_000, "only the tokens held by the others are refused early");
    // Worker 1 comes back after its lease expired locally: its 31 unspent tokens return to the
    // bucket, and having spent one of its last lease it takes a single token now.
    assert!(!admitted(w[0].take(&mut store, "l", "k", spec, 0).unwrap()));
    let t = w[1].take(&mut store, "l", "k", spec, LEASE_TTL_MS).unwrap();
    assert_eq!(t.outcome, Outcome::Admitted { remaining: 80 }, "50 refilled over 50 ms + 31 given back - 1");
    let e = slot_entry(&store, w[0].table(), "l", "k");
    assert_eq!((e.out_cur, e.out_prev), (2 * (LEASE_MAX - 1), 0), "workers 2 and 3 still hold theirs");
    // Workers 2 and 3 never come back: their leases (period 0) are written off when period 2
    // starts, not before. (Single-token takes here, so no new lease muddles the count.)
    let table = w[0].table().clone();
    assert!(admitted(table.take(&mut store, "l", "k", spec, 2 * LEASE_PERIOD_MS - 1).unwrap()));
    let e = slot_entry(&store, &table, "l", "k");
    assert_eq!((e.out_cur, e.out_prev), (0, 2 * (LEASE_MAX - 1)), "not before");
    assert!(admitted(table.take(&mut store, "l", "k", spec, 2 * LEASE_PERIOD_MS).unwrap()));
    let before = slot_entry(&store, &table, "l", "k");
    assert_eq!((before.out_cur, before.out_prev), (0, 0), "written off");
    // A late give-back of a written-off lease adds nothing (it was counted as spent).
    let t = w[2].take(&mut store, "l", "k", spec, 2 * LEASE_PERIOD_MS).unwrap();
    assert!(admitted(t) && t.attempts > 0);
    let after = slot_entry(&store, &table, "l", "k");
    assert_eq!(after.tokens_milli, before.tokens_milli - MILLI, "only worker 2's new token was debited");
}

#[test]
fn a_worker_that_sees_a_bucket_now_and_then_takes_single_tokens() {
    let mut store = MapStore::default();
    let mut w = Leases::default();
    for i in 0..100u64 {
        let t = w.take(&mut store, "l", "k", BUSY, i * (LEASE_TTL_MS + 1)).unwrap();
        assert!(admitted(t) && t.attempts > 0, "request {i} went to shared data");
        let e = slot_entry(&store, w.table(), "l", "k");
        assert_eq!((e.out_cur, e.out_prev), (0, 0), "request {i}: nothing stranded in a lease");
    }
    // Busy again: the lease grows back.
    let local = (0..100).filter(|_| w.take(&mut store, "l", "k", BUSY, 10_000).unwrap().attempts == 0).count();
    assert!(local >= 90, "{local} of 100 from leases");
}

#[test]
fn tokens_out_on_a_lease_still_cap_the_refill() {
    // A full bucket; a lease taken at 0 and spent at 49 ms. An exact bucket debited at 49 ms had
    // refilled to full meanwhile (the refill past full is lost); the shared bucket must not gain
    // those 49 ms of refill on the leased tokens, or the burst at 50 ms would pass the limit.
    let mut store = MapStore::default();
    let mut w = Leases::default();
    let mut r = Reference::new(BUSY, 0);
    // Leases of 1 to 16 tokens, then one of 32: 31 held.
    for _ in 0..32 {
        assert!(admitted(w.take(&mut store, "l", "k", BUSY, 0).unwrap()) && r.admit(0));
    }
    for _ in 1..LEASE_MAX {
        let t = w.take(&mut store, "l", "k", BUSY, 49).unwrap();
        assert!(admitted(t) && t.attempts == 0, "spent from the lease");
        assert!(r.admit(49));
    }
    let mut burst = 0;
    while admitted(w.take(&mut store, "l", "k", BUSY, 50).unwrap()) {
        burst += 1;
        assert!(r.admit(50), "admission {burst} of the burst at 50 ms is over the limit");
    }
    // Counting the leased tokens as spent from 0 ms costs at most the one token the exact bucket
    // refilled between 49 and 50 ms.
    let left = (0..).take_while(|_| r.admit(50)).count();
    assert!(left <= 1, "the exact bucket would still admit {left} after {burst}");
}

#[test]
fn contention_and_host_errors_still_fail_closed() {
    let mut store = MapStore::default();
    let mut w = Leases::default();
    // Leases of 1 to 32 tokens, all spent.
    for _ in 0..63 {
        assert!(admitted(w.take(&mut store, "l", "k", BUSY, 0).unwrap()));
    }
    store.interfere = 1_000;
    let t = w.take(&mut store, "l", "k", BUSY, 0).unwrap();
    assert_eq!(t.outcome, Outcome::Contention, "the lease is spent: the next token needs a CAS, which keeps losing");
    assert!(w.is_empty(), "no lease is granted by a failed take");
    assert!(w.take(&mut Broken, "l", "k", BUSY, 0).is_err());
    // A lease whose give-back fails is written off in the shared bucket: counted as spent (its
    // tokens never come back), and after its period gone from the count.
    store.interfere = 0;
    for _ in 0..2 {
        assert!(admitted(w.take(&mut store, "l", "k", BUSY, 1).unwrap()));
    }
    let (table, out) = (w.table().clone(), |s: &MapStore, t: &BucketTable| slot_entry(s, t, "l", "k").out());
    assert_eq!(out(&store, &table), 31 + 1, "the spent 32-lease lost with the contended take, and a lease of 2 holding 1");
    assert!(w.take(&mut Broken, "l", "k", BUSY, 1 + LEASE_TTL_MS).is_err());
    assert!(w.is_empty());
    assert_eq!(out(&store, &table), 32, "not given back");
    assert!(admitted(w.take(&mut store, "l", "k", BUSY, 2 * LEASE_PERIOD_MS).unwrap()));
    assert_eq!(out(&store, &table), 0, "written off two periods on");
}

#[test]
fn the_lease_map_is_bounded() {
    let mut store = MapStore::default();
    let mut w = Leases::new(BucketTable::default(), 4);
    for i in 0..10 {
        for _ in 0..3 {
            assert!(admitted(w.take(&mut store, "l", &format!("s{i}"), BUSY, i).unwrap()));
        }
        assert!(w.len() <= 4, "{} leases", w.len());
    }
    // The newest are kept: s9's lease of 2 was spent by its third request, so the next is 4.
    assert!(w.take(&mut store, "l", "s9", BUSY, 9).unwrap().attempts > 0);
    assert_eq!(w.take(&mut store, "l", "s9", BUSY, 9).unwrap().attempts, 0);
    // A flood of sessions, 50 a millisecond: still bounded, and a busy session still leases.
    let mut w = Leases::new(BucketTable::default(), 256);
    let mut local = 0;
    for i in 0..100_000u64 {
        let now = 1_000 + i / 50;
        assert!(admitted(w.take(&mut store, "flood", &format!("s{i}"), BUSY, now).unwrap()));
        let hot = BucketSpec { capacity: 1_000_000, refill_ms: 1_000 };
        local += u32::from(w.take(&mut store, "flood", "hot", hot, now).unwrap().attempts == 0);
        assert!(w.len() <= 256);
    }
    assert!(local > 90_000, "the hot session's lease survived the flood: {local} of 100000 local");
}

#[test]
fn a_bucket_with_a_lease_out_is_not_dropped_from_its_slot() {
    // One slot of two buckets; a leased bucket refills to full within 32 ms, but its lease is out.
    let table = BucketTable { slots: 1, per_slot: 2, ..BucketTable::default() };
    let fast = BucketSpec { capacity: 1_000, refill_ms: 10 };
    let mut store = MapStore::default();
    let mut w = Leases::new(table.clone(), 16);
    for _ in 0..32 {
        assert!(admitted(w.take(&mut store, "l", "a", fast, 0).unwrap()));
    }
    assert!(admitted(table.take(&mut store, "l", "b", fast, 5).unwrap()));
    let t = table.take(&mut store, "l", "c", fast, 20).unwrap();
    assert!(admitted(t) && !t.evicted, "b was full again and made room");
    let (slot, _) = table.locate("l", "a");
    assert!(decode(&store.map[&slot].0).iter().any(|e| e.hash == table.locate("l", "a").1 && e.out_cur == LEASE_MAX - 1), "a and its lease stayed");
}
