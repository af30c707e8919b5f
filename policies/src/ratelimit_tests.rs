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
    assert!(bytes <= table.slots as usize * (table.per_slot * 32 + 24), "{bytes} bytes");
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
