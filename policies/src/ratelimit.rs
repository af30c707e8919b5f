//! Token buckets in a bounded table of shared-data slots, correct across Envoy workers.
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
//! The store is a trait so the same code runs on Envoy's shared data in the filter and on a map in
//! tests (the million-session test below).

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
        // 514 bytes (about 2 MiB of shared data) whatever the number of sessions.
        Self { prefix: "interlock.rl.".into(), slots: 4096, per_slot: 16, max_attempts: 16 }
    }
}

const MILLI: u64 = 1000;
const ENTRY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u64,
    tokens_milli: u64,
    last_ms: u64,
    /// When the bucket is full again if untouched: past that, dropping it loses nothing.
    full_at_ms: u64,
}

impl BucketTable {
    /// The shared-data key and the in-slot hash of a bucket.
    pub fn locate(&self, limit_id: &str, key: &str) -> (String, u64) {
        let hash = fnv1a(limit_id.as_bytes(), key.as_bytes());
        (format!("{}{}", self.prefix, hash % u64::from(self.slots.max(1))), hash)
    }

    /// Takes one token from the bucket of (`limit_id`, `key`) at `now_ms`.
    pub fn take(&self, store: &mut impl SharedStore, limit_id: &str, key: &str, spec: BucketSpec, now_ms: u64) -> Result<Take, StoreError> {
        let (slot_key, hash) = self.locate(limit_id, key);
        let mut attempts = 0;
        while attempts < self.max_attempts {
            attempts += 1;
            let (mut entries, cas) = match store.get(&slot_key)? {
                Some((bytes, cas)) => (decode(&bytes), Some(cas)),
                None => {
                    // Create the slot empty, then CAS against it: two workers racing here both
                    // write the same empty value, so no update is lost.
                    store.set(&slot_key, &[], None)?;
                    continue;
                }
            };
            let (outcome, evicted) = self.apply(&mut entries, hash, spec, now_ms);
            match store.set(&slot_key, &encode(&entries), cas) {
                Ok(()) => return Ok(Take { outcome, evicted, attempts }),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Take { outcome: Outcome::Contention, evicted: false, attempts })
    }

    fn apply(&self, entries: &mut Vec<Entry>, hash: u64, spec: BucketSpec, now_ms: u64) -> (Outcome, bool) {
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
                entries.push(Entry { hash, tokens_milli: full, last_ms: now_ms, full_at_ms: now_ms });
                entries.len().saturating_sub(1)
            }
        };
        let Some(e) = entries.get_mut(pos) else { return (Outcome::Contention, evicted) };
        let elapsed = now_ms.saturating_sub(e.last_ms);
        let refill = u64::try_from(u128::from(elapsed) * u128::from(full) / u128::from(refill_ms)).unwrap_or(u64::MAX);
        e.tokens_milli = e.tokens_milli.saturating_add(refill).min(full);
        e.last_ms = now_ms.max(e.last_ms);
        let outcome = if e.tokens_milli >= MILLI {
            e.tokens_milli -= MILLI;
            Outcome::Admitted { remaining: u32::try_from(e.tokens_milli / MILLI).unwrap_or(u32::MAX) }
        } else {
            let missing = MILLI - e.tokens_milli;
            let retry = u128::from(missing) * u128::from(refill_ms);
            Outcome::Limited { retry_after_ms: u64::try_from(retry.div_ceil(u128::from(full))).unwrap_or(u64::MAX) }
        };
        let deficit = full - e.tokens_milli;
        let to_full = u128::from(deficit) * u128::from(refill_ms) / u128::from(full);
        e.full_at_ms = e.last_ms.saturating_add(u64::try_from(to_full).unwrap_or(u64::MAX));
        (outcome, evicted)
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
        for v in [e.hash, e.tokens_milli, e.last_ms, e.full_at_ms] {
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
            Entry { hash: word(0), tokens_milli: word(1), last_ms: word(2), full_at_ms: word(3) }
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
