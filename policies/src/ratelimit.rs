//! Token buckets in a bounded table of shared-data slots, correct across Envoy workers, and a
//! per-worker token lease so that a busy bucket is not a shared-data round trip per request.
//!
//! proxy-wasm shared data is one host-wide key/value map with compare-and-swap and no delete or
//! expiry, so a key per session would grow forever. Instead a bucket's key is hashed into one of a
//! fixed number of slots (`<prefix><n>`); a slot's value holds at most `per_slot` buckets. The
//! number of keys and their sizes are therefore fixed, whatever the number of sessions.
//!
//! Expiry needs no delete: a bucket that has refilled completely carries no information (a fresh
//! bucket is full too), so it is dropped from its slot whenever room is needed. Only when a slot is
//! full of buckets that are all still refilling is one evicted early, which can admit a little more
//! than the limit for that key; it is counted ([`Take::evicted`]) and sized away by the slot count.
//!
//! Every update is read, compute, compare-and-swap, retried a bounded number of times; when the
//! retries run out the caller gets [`Outcome::Contention`] and refuses the request (fail closed).
//!
//! # Leases ([`Leases`])
//!
//! Each take is two shared-data calls under Envoy's host-wide lock (a get that copies the slot and
//! a CAS set). A worker that finds plenty of tokens in a bucket therefore takes several in the same
//! CAS (a *lease*) and spends them locally, without a host call, until they are spent or the
//! lease is [`LEASE_TTL_MS`] old; then its next take for that bucket gives the unspent tokens back
//! in the same CAS that takes the next lease. The rules:
//!
//! - **Never more than one exact bucket admits.** A token is spent only after the CAS that took it
//!   from the shared bucket succeeded, and the tokens out on leases still count against the
//!   bucket's capacity while it refills (`out_*` in the slot entry: the refill stops at
//!   `capacity - out`). The shared tokens plus those the leases still hold therefore never exceed
//!   what a single exact bucket of the same size and rate, debited at each admission, would hold:
//!   giving back, writing off and spending only lower that sum, and its refill stops at the
//!   capacity as the exact bucket's does. So every admission sequence is one the exact bucket
//!   admits as well (the lease tests replay the admissions of several simulated workers through
//!   one).
//! - **Exact near the limit.** A lease is at most `remaining / LEASE_DIVISOR` tokens and
//!   [`LEASE_MAX`], and no more than the worker's own pace calls for ([`Leases`]); below
//!   `2 × LEASE_DIVISOR` remaining tokens it is a single token, spent at once, and the take is
//!   exactly the one-token take of before. The demo's 20 per 10 s never leases.
//! - **Bounded early refusal.** Tokens a worker holds are unavailable to the others. A worker
//!   holds at most `LEASE_MAX - 1` tokens of a bucket, spends them for at most [`LEASE_TTL_MS`],
//!   and gives the unspent ones back on its next take of that bucket. If it does not come back,
//!   they are written off as spent when the lease period after the next begins
//!   ([`LEASE_PERIOD_MS`]: 100 to 200 ms after the lease was taken, whatever the other workers
//!   do). Worst case, for a bucket hit from `W` workers: `W × (LEASE_MAX - 1)` tokens (93 for 4
//!   workers) refused early, until the write-off; a worker strands a lease only when it stops
//!   using the bucket after using it fast (a lease is at most twice what the worker spent of its
//!   previous one within its lifetime, starting from one token); and a lease is only that large
//!   while `LEASE_DIVISOR × LEASE_MAX` tokens remain, so a bucket near its limit is never short
//!   of its last tokens. Leased tokens are also debited when the lease is taken, not when each is
//!   spent: next to an exact bucket that would have been full meanwhile, that costs up to one
//!   lease's worth of refill.
//! - **Figures and failures as before.** `remaining` is the shared bucket's count at the last
//!   take plus what the lease still holds; `retry_after_ms` is computed on the shared bucket,
//!   including the wait for leases to be written off when they hold the last tokens. Contention
//!   and host errors fail closed as before (a lease being given back in a failed take is written
//!   off, never spent). A leased bucket is not dropped from its slot while a lease is out.
//!
//! The store is a trait so the same code runs on Envoy's shared data in the filter and on a map in
//! tests (the million-session test, the simulated workers).

use std::collections::HashMap;

/// A shared key/value store with compare-and-swap, like proxy-wasm's shared data.
pub trait SharedStore {
    /// The value and its CAS token, `None` when the key does not exist.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's CAS token still equals `cas` (`None`: unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first.
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The host refused.
    #[error("shared data: {0}")]
    Host(String),
}

/// A [`SharedStore`] that keeps nothing: every read finds no key, every write is accepted and
/// forgotten. Checked against it a rate limit never trips and a tool definition is never pinned,
/// so it is for benches and tests that exercise neither, never for a host.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSharedData;

impl SharedStore for NoSharedData {
    fn get(&mut self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(None)
    }
    fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A bucket's size and refill time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// Tokens in a full bucket.
    pub capacity: u32,
    /// Milliseconds to refill a whole bucket.
    pub refill_ms: u64,
}

/// What taking one token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub outcome: Outcome,
    /// A refilling bucket of another key was evicted to make room.
    pub evicted: bool,
    /// CAS attempts used.
    pub attempts: u32,
}

/// Admitted or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Admitted { remaining: u32 },
    Limited { retry_after_ms: u64 },
    /// Every CAS attempt lost to another worker: refuse, do not guess.
    Contention,
}

/// The table layout.
#[derive(Debug, Clone)]
pub struct BucketTable {
    pub prefix: String,
    pub slots: u32,
    pub per_slot: usize,
    pub max_attempts: u32,
}

impl Default for BucketTable {
    fn default() -> Self {
        // 4096 slots of 16 buckets: 65,536 concurrently refilling buckets, at most 4096 keys of
        // 782 bytes (about 3 MiB of shared data) whatever the number of sessions. `rl2`: the
        // entry layout with leases (48 bytes); a filter of the 32-byte layout, still running
        // during an upgrade, keeps to its own keys instead of misreading these.
        Self { prefix: "interlock.rl2.".into(), slots: 4096, per_slot: 16, max_attempts: 16 }
    }
}

const MILLI: u64 = 1000;
const ENTRY: usize = 48;

/// How long a worker may spend a lease's tokens locally.
pub const LEASE_TTL_MS: u64 = 50;
/// Leases are accounted per period of this length: a lease is given back within its own period or
/// the next, or written off as spent when the one after starts, i.e. `LEASE_PERIOD_MS` at least
/// after it was taken (at least `LEASE_TTL_MS` after its last spend: slack for clock skew between
/// workers) and `2 × LEASE_PERIOD_MS` at most.
pub const LEASE_PERIOD_MS: u64 = 2 * LEASE_TTL_MS;
/// A lease is at most this many tokens.
pub const LEASE_MAX: u32 = 32;
/// A lease is at most this fraction of the tokens the shared bucket holds: the rest stays for the
/// other workers.
pub const LEASE_DIVISOR: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u64,
    tokens_milli: u64,
    last_ms: u64,
    /// When the bucket is full again if untouched: past that, dropping it loses nothing.
    full_at_ms: u64,
    /// The lease period (`now / LEASE_PERIOD_MS`) of `out_cur`; `out_prev` is the one before.
    epoch: u64,
    /// Tokens out on leases taken in period `epoch`, not yet given back.
    out_cur: u32,
    /// The same for the period before; written off as spent when the next period starts.
    out_prev: u32,
}

impl Entry {
    fn out(&self) -> u64 {
        u64::from(self.out_cur) + u64::from(self.out_prev)
    }
}

/// What a take asks of the shared bucket besides one token.
#[derive(Debug, Clone, Copy, Default)]
struct Ask {
    /// Most tokens to take at once (1: no lease).
    lease_max: u32,
    /// A lease being handed back.
    give_back: Option<GiveBack>,
}

#[derive(Debug, Clone, Copy)]
struct GiveBack {
    epoch: u64,
    /// Tokens the lease added to `out`.
    leased: u32,
    /// Of those, not spent.
    unspent: u32,
}

/// What the shared bucket granted besides the outcome.
#[derive(Debug, Clone, Copy)]
struct Grant {
    /// Tokens taken beyond the one spent now (added to `out`).
    extra: u32,
    epoch: u64,
    /// Whole tokens left in the shared bucket.
    remaining: u32,
}

impl BucketTable {
    /// The shared-data key and the in-slot hash of a bucket.
    pub fn locate(&self, limit_id: &str, key: &str) -> (String, u64) {
        let hash = fnv1a(limit_id.as_bytes(), key.as_bytes());
        (self.slot_key(hash), hash)
    }

    fn slot_key(&self, hash: u64) -> String {
        format!("{}{}", self.prefix, hash % u64::from(self.slots.max(1)))
    }

    /// Takes one token from the bucket of (`limit_id`, `key`) at `now_ms`.
    pub fn take(&self, store: &mut impl SharedStore, limit_id: &str, key: &str, spec: BucketSpec, now_ms: u64) -> Result<Take, StoreError> {
        let (slot_key, hash) = self.locate(limit_id, key);
        self.take_at(store, &slot_key, hash, spec, now_ms, Ask { lease_max: 1, give_back: None }).map(|(t, _)| t)
    }

    fn take_at(
        &self,
        store: &mut impl SharedStore,
        slot_key: &str,
        hash: u64,
        spec: BucketSpec,
        now_ms: u64,
        ask: Ask,
    ) -> Result<(Take, Option<Grant>), StoreError> {
        let mut attempts = 0;
        while attempts < self.max_attempts {
            attempts += 1;
            let (mut entries, cas) = match store.get(slot_key)? {
                Some((bytes, cas)) => (decode(&bytes), Some(cas)),
                None => {
                    // Create the slot empty, then CAS against it: two workers racing here both
                    // write the same empty value, so no update is lost.
                    store.set(slot_key, &[], None)?;
                    continue;
                }
            };
            let (outcome, grant, evicted) = self.apply(&mut entries, hash, spec, now_ms, ask);
            match store.set(slot_key, &encode(&entries), cas) {
                Ok(()) => return Ok((Take { outcome, evicted, attempts }, grant)),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((Take { outcome: Outcome::Contention, evicted: false, attempts }, None))
    }

    fn apply(&self, entries: &mut Vec<Entry>, hash: u64, spec: BucketSpec, now_ms: u64, ask: Ask) -> (Outcome, Option<Grant>, bool) {
        let full = u64::from(spec.capacity.max(1)).saturating_mul(MILLI);
        let refill_ms = spec.refill_ms.max(1);
        let mut evicted = false;
        let pos = match entries.iter().position(|e| e.hash == hash) {
            Some(p) => p,
            None => {
                if entries.len() >= self.per_slot {
                    entries.retain(|e| e.full_at_ms > now_ms);
                }
                if entries.len() >= self.per_slot {
                    // All refilling: evict the one closest to full (least over-admission).
                    if let Some((i, _)) = entries.iter().enumerate().min_by_key(|(_, e)| e.full_at_ms) {
                        entries.swap_remove(i);
                        evicted = true;
                    }
                }
                let epoch = now_ms / LEASE_PERIOD_MS;
                entries.push(Entry { hash, tokens_milli: full, last_ms: now_ms, full_at_ms: now_ms, epoch, out_cur: 0, out_prev: 0 });
                entries.len().saturating_sub(1)
            }
        };
        let Some(e) = entries.get_mut(pos) else { return (Outcome::Contention, None, evicted) };
        // A new lease period: the leases of the one before the last are written off as spent.
        let period = now_ms / LEASE_PERIOD_MS;
        if period > e.epoch {
            e.out_prev = if period == e.epoch + 1 { e.out_cur } else { 0 };
            e.out_cur = 0;
            e.epoch = period;
        }
        // Refill, up to the capacity less the tokens out on leases.
        let cap = |e: &Entry| full.saturating_sub(e.out().saturating_mul(MILLI));
        let elapsed = now_ms.saturating_sub(e.last_ms);
        let refill = u64::try_from(u128::from(elapsed) * u128::from(full) / u128::from(refill_ms)).unwrap_or(u64::MAX);
        e.tokens_milli = e.tokens_milli.saturating_add(refill).min(cap(e)).max(e.tokens_milli.min(full));
        e.last_ms = now_ms.max(e.last_ms);
        // A lease handed back: its unspent tokens return, its spent ones stay spent. A lease of a
        // period already written off is not subtracted again.
        if let Some(g) = ask.give_back {
            let out = if g.epoch == e.epoch {
                Some(&mut e.out_cur)
            } else if g.epoch.saturating_add(1) == e.epoch {
                Some(&mut e.out_prev)
            } else {
                None
            };
            if let Some(out) = out {
                *out = out.saturating_sub(g.leased);
                let back = u64::from(g.unspent.min(g.leased)).saturating_mul(MILLI);
                e.tokens_milli = e.tokens_milli.saturating_add(back).min(cap(e)).max(e.tokens_milli);
            }
        }
        let (outcome, grant) = if e.tokens_milli >= MILLI {
            let whole = e.tokens_milli / MILLI;
            let n = (whole / LEASE_DIVISOR).clamp(1, u64::from(ask.lease_max.max(1)));
            e.tokens_milli -= n * MILLI;
            let extra = u32::try_from(n - 1).unwrap_or(0);
            e.out_cur = e.out_cur.saturating_add(extra);
            let remaining = u32::try_from(e.tokens_milli / MILLI).unwrap_or(u32::MAX);
            (Outcome::Admitted { remaining: remaining.saturating_add(extra) }, Some(Grant { extra, epoch: e.epoch, remaining }))
        } else {
            let missing = MILLI - e.tokens_milli;
            let mut retry = u64::try_from((u128::from(missing) * u128::from(refill_ms)).div_ceil(u128::from(full))).unwrap_or(u64::MAX);
            if cap(e) < MILLI {
                // Leases hold the tokens the refill would need: wait until they are written off.
                retry = retry.saturating_add((e.epoch + 2).saturating_mul(LEASE_PERIOD_MS).saturating_sub(now_ms));
            }
            (Outcome::Limited { retry_after_ms: retry }, None)
        };
        // Full again once the refill covers the deficit, leases included; never while one is out.
        let deficit = full.saturating_sub(e.tokens_milli);
        let to_full = u128::from(deficit) * u128::from(refill_ms) / u128::from(full);
        e.full_at_ms = e.last_ms.saturating_add(u64::try_from(to_full).unwrap_or(u64::MAX));
        let written_off = match (e.out_cur, e.out_prev) {
            (0, 0) => 0,
            (0, _) => e.epoch + 1,
            _ => e.epoch + 2,
        };
        e.full_at_ms = e.full_at_ms.max(written_off.saturating_mul(LEASE_PERIOD_MS));
        (outcome, grant, evicted)
    }
}

/// One worker's leases: bucket hash -> the tokens it may still spend without asking shared data,
/// and how large its next lease of that bucket should be.
///
/// A lease grows with the worker's own pace: the first take of a bucket is one token; a lease
/// used up within [`LEASE_TTL_MS`] makes the next one twice as large (up to [`LEASE_MAX`]); one
/// that expired makes the next as large as what it spent. A worker that sees a bucket now and
/// then therefore takes single tokens, as before, and never strands a lease's worth per request.
///
/// Bounded to `max` buckets; when full, the entries older than a lease go (swept at most once per
/// millisecond: with many sessions the map is full all the time, and a sweep per request would
/// cost more than the host calls saved), else a single-token take's, else a spent lease, else any
/// (a lease dropped so is written off in the shared bucket, never spent).
#[derive(Debug)]
pub struct Leases {
    table: BucketTable,
    map: HashMap<u64, Lease>,
    max: usize,
    swept_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    spec: BucketSpec,
    /// Tokens left to spend.
    tokens: u32,
    /// Tokens the shared take granted: the one spent at once and the `size - 1` added to `out`.
    size: u32,
    epoch: u64,
    taken_ms: u64,
    /// Shared tokens left when the lease was taken (for `remaining`).
    shared_remaining: u32,
}

impl Lease {
    fn live(&self, now_ms: u64) -> bool {
        self.taken_ms <= now_ms && now_ms < self.taken_ms.saturating_add(LEASE_TTL_MS)
    }
}

impl Default for Leases {
    fn default() -> Self {
        Self::new(BucketTable::default(), 256)
    }
}

impl Leases {
    /// Leases over `table`, for at most `max` buckets at a time.
    pub fn new(table: BucketTable, max: usize) -> Self {
        Self { table, map: HashMap::new(), max: max.max(1), swept_ms: 0 }
    }

    /// The table the leases are taken from.
    pub fn table(&self) -> &BucketTable {
        &self.table
    }

    /// Buckets this worker remembers (leases and recent takes).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes one token from the bucket of (`limit_id`, `key`) at `now_ms`: from this worker's
    /// lease when it holds one (no host call: [`Take::attempts`] is 0), else from the shared
    /// bucket, handing back what the last lease did not spend and taking a new lease when the
    /// worker's pace and the bucket's tokens call for one.
    pub fn take(&mut self, store: &mut impl SharedStore, limit_id: &str, key: &str, spec: BucketSpec, now_ms: u64) -> Result<Take, StoreError> {
        let hash = fnv1a(limit_id.as_bytes(), key.as_bytes());
        if let Some(l) = self.map.get_mut(&hash)
            && l.spec == spec
            && l.tokens > 0
            && l.live(now_ms)
        {
            l.tokens -= 1;
            return Ok(Take { outcome: Outcome::Admitted { remaining: l.shared_remaining.saturating_add(l.tokens) }, evicted: false, attempts: 0 });
        }
        // Spent, expired or for another spec: handed back in this take (written off if it fails).
        let last = self.map.remove(&hash);
        let give_back = last.filter(|l| l.size > 1).map(|l| GiveBack { epoch: l.epoch, leased: l.size - 1, unspent: l.tokens });
        let want = match last {
            None => 1,
            Some(l) if l.spec != spec => 1,
            // Used up within its lifetime: the worker is busy on this bucket.
            Some(l) if l.tokens == 0 && l.live(now_ms) => l.size.saturating_mul(2),
            // Expired: as much as it spent.
            Some(l) => l.size.saturating_sub(l.tokens),
        }
        .clamp(1, LEASE_MAX);
        let slot_key = self.table.slot_key(hash);
        let (take, grant) = self.table.take_at(store, &slot_key, hash, spec, now_ms, Ask { lease_max: want, give_back })?;
        if let Some(g) = grant {
            self.make_room(now_ms);
            self.map.insert(hash, Lease { spec, tokens: g.extra, size: g.extra + 1, epoch: g.epoch, taken_ms: now_ms, shared_remaining: g.remaining });
        }
        Ok(take)
    }

    fn make_room(&mut self, now_ms: u64) {
        if self.map.len() < self.max {
            return;
        }
        if self.swept_ms != now_ms {
            self.swept_ms = now_ms;
            self.map.retain(|_, l| l.live(now_ms));
        }
        if self.map.len() >= self.max {
            // The least to lose: a single-token take (only a hint of pace), else a spent lease.
            let single = self.map.iter().find(|(_, l)| l.size == 1).map(|(h, _)| *h);
            let spent = || self.map.iter().find(|(_, l)| l.tokens == 0).map(|(h, _)| *h);
            if let Some(h) = single.or_else(spent).or_else(|| self.map.keys().next().copied()) {
                self.map.remove(&h);
            }
        }
    }
}

/// FNV-1a over `limit \0 key`: stable across VMs and builds (the slot of a key must be the same
/// on every worker), and good enough to spread keys over slots; collisions of the 64-bit value
/// inside a slot are negligible.
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain(std::iter::once(&0u8)).chain(b) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for e in entries {
        let leased = u64::from(e.out_cur) | (u64::from(e.out_prev) << 32);
        for v in [e.hash, e.tokens_milli, e.last_ms, e.full_at_ms, e.epoch, leased] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes a slot; trailing bytes that do not make a whole entry are ignored (a slot is only ever
/// written whole, but never trust shared data to be well formed).
fn decode(bytes: &[u8]) -> Vec<Entry> {
    bytes
        .chunks_exact(ENTRY)
        .map(|c| {
            let word = |i: usize| c.get(i * 8..i * 8 + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes);
            let leased = word(5);
            let (out_cur, out_prev) = ((leased & 0xFFFF_FFFF) as u32, (leased >> 32) as u32);
            Entry { hash: word(0), tokens_milli: word(1), last_ms: word(2), full_at_ms: word(3), epoch: word(4), out_cur, out_prev }
        })
        .collect()
}

/// An in-memory [`SharedStore`] with Envoy's CAS semantics, for tests: every write bumps the key's
/// token, and `interfere` makes another "worker" write a key just before the next writes.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MapStore {
    pub map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    pub interfere: u32,
}

#[cfg(test)]
impl SharedStore for MapStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.map.get(key).cloned())
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if self.interfere > 0 {
            self.interfere -= 1;
            if let Some(e) = self.map.get_mut(key) {
                e.1 += 1;
            }
        }
        let current = self.map.get(key).map(|e| e.1);
        if let (Some(want), Some(have)) = (cas, current)
            && want != have
        {
            return Err(StoreError::CasMismatch);
        }
        self.map.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
