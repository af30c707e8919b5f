//! Key → rule-list tables of the compiled policy, sized for what policies hold.
//!
//! Most of these tables are one agent's: a tool or two, a method. A hash table of one entry costs
//! four buckets of key and list (about 210 bytes natively, before the key's and the list's own
//! allocations), and every wasm VM keeps it for good (issue 7). So up to [`FEW`] entries sit in an
//! exact-size vector that a lookup scans (a length check rejects most keys before any byte is
//! compared), and beyond that in a hash table: the path trie's children do the same.

use std::borrow::Borrow;
use std::hash::Hash;

use crate::template::FastMap;

/// Entries kept in a scanned vector before the table becomes a hash table.
const FEW: usize = 8;

/// Lists this short grow one element at a time (no slack); longer ones grow by doubling.
const SHORT_LIST: usize = 8;

/// The rules under one key (or at one trie node), by position in the rule list. Nearly every
/// key of a large policy names one rule (a tool, an agent's path), and a vector of one cost a
/// 24-byte header and a heap block for 4 or 8 bytes: one value sits inline instead. Reads as a
/// slice.
#[derive(Debug, Clone)]
pub(crate) enum List<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> List<T> {
    /// No values; no allocation.
    pub(crate) const EMPTY: Self = Self::Many(Vec::new());
}

impl<T> Default for List<T> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }
}

impl<T: Copy> List<T> {
    pub(crate) fn push(&mut self, value: T) {
        match self {
            Self::Many(v) if v.is_empty() => *self = Self::One(value),
            Self::One(first) => *self = Self::Many(vec![*first, value]),
            Self::Many(v) => push_list(v, value),
        }
    }

    /// Gives back growth slack once every value is in.
    pub(crate) fn shrink_to_fit(&mut self) {
        if let Self::Many(v) = self {
            v.shrink_to_fit();
        }
    }
}

/// Rule positions by key (a tool, a method, a host).
#[derive(Debug, Clone)]
pub(crate) enum KeyIndex<K> {
    /// Exact size (a table of a few keys is built once and never grows much).
    Few(Box<[(K, List<u32>)]>),
    Many(Box<FastMap<K, List<u32>>>),
}

/// No entries; no allocation.
impl<K> Default for KeyIndex<K> {
    fn default() -> Self {
        Self::Few(Box::default())
    }
}

impl<K: Borrow<str> + Hash + Eq> KeyIndex<K> {
    /// The rules under `key` (typed as `HashMap::get`, which the tables were and eval.rs calls).
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&[u32]>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| Borrow::<Q>::borrow(k) == key).map(|(_, l)| &**l),
            Self::Many(m) => m.get(key).map(|l| &**l),
        }
    }

    /// Adds rule `idx` under `key`.
    pub(crate) fn push(&mut self, key: K, idx: u32) {
        if let Self::Few(v) = self {
            if let Some((_, list)) = v.iter_mut().find(|(k, _)| k.borrow() == key.borrow()) {
                list.push(idx);
                return;
            }
            if v.len() < FEW {
                let mut grown = std::mem::take(v).into_vec();
                grown.reserve_exact(1);
                grown.push((key, List::One(idx)));
                *v = grown.into_boxed_slice();
                return;
            }
            *self = Self::Many(Box::new(std::mem::take(v).into_vec().into_iter().collect()));
        }
        if let Self::Many(m) = self {
            m.entry(key).or_default().push(idx);
        }
    }

    /// Gives back growth slack once every rule is in.
    pub(crate) fn shrink_to_fit(&mut self) {
        match self {
            Self::Few(v) => v.iter_mut().for_each(|(_, l)| l.shrink_to_fit()),
            Self::Many(m) => {
                m.shrink_to_fit();
                m.values_mut().for_each(List::shrink_to_fit);
            }
        }
    }
}

/// A set of rule ids held as positions in the rule list (4 bytes a slot) rather than as copies
/// of the ids in a hash table (a key and a bucket each): the compiler's duplicate-id check, which
/// lives through the load's peak. Open addressing, linear probing, at most half full.
pub(crate) struct IdSet {
    slots: Vec<u32>,
    len: usize,
}

const VACANT: u32 = u32::MAX;

impl Default for IdSet {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl IdSet {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let slots = n.saturating_mul(2).max(16).checked_next_power_of_two().unwrap_or(usize::MAX);
        Self { slots: vec![VACANT; slots], len: 0 }
    }

    /// The position of the rule whose id is `id`; `id_of` reads the id at a position.
    pub(crate) fn find<'a>(&self, id: &str, id_of: impl Fn(u32) -> Option<&'a str>) -> Option<u32> {
        let mask = self.slots.len().saturating_sub(1);
        let mut at = hash(id) & mask;
        loop {
            match self.slots.get(at).copied() {
                None | Some(VACANT) => return None,
                Some(pos) if id_of(pos) == Some(id) => return Some(pos),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Adds position `pos`, whose id is `id` and not in the set yet.
    pub(crate) fn insert<'a>(&mut self, id: &str, pos: u32, id_of: impl Fn(u32) -> Option<&'a str>) {
        if self.len.saturating_add(1).saturating_mul(2) > self.slots.len() {
            let old = std::mem::replace(self, Self::with_capacity(self.slots.len()));
            for p in old.slots.into_iter().filter(|p| *p != VACANT) {
                if let Some(old_id) = id_of(p) {
                    self.place(old_id, p);
                }
            }
        }
        self.place(id, pos);
    }

    fn place(&mut self, id: &str, pos: u32) {
        let mask = self.slots.len().saturating_sub(1);
        let mut at = hash(id) & mask;
        while let Some(slot) = self.slots.get_mut(at) {
            if *slot == VACANT {
                *slot = pos;
                self.len = self.len.saturating_add(1);
                return;
            }
            at = (at + 1) & mask;
        }
    }
}

fn hash(id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    // Truncated on 32-bit targets: the low bits pick the slot.
    BuildHasherDefault::<crate::template::FxHasher>::default().hash_one(id) as usize
}

fn push_list<T>(list: &mut Vec<T>, idx: T) {
    if list.len() < SHORT_LIST {
        list.reserve_exact(1);
    }
    list.push(idx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_finds_every_id_it_was_given_and_nothing_else() {
        let ids: Vec<String> = (0..1000).map(|i| format!("rule-{i}")).collect();
        let id_of = |p: u32| ids.get(p as usize).map(String::as_str);
        let mut set = IdSet::with_capacity(3);
        for (p, id) in ids.iter().enumerate() {
            assert_eq!(set.find(id, id_of), None);
            set.insert(id, p as u32, id_of);
        }
        for (p, id) in ids.iter().enumerate() {
            assert_eq!(set.find(id, id_of), Some(p as u32));
        }
        assert_eq!(set.find("rule-1000", id_of), None);
        assert_eq!(set.find("", id_of), None);
    }

    #[test]
    fn few_then_many_keep_every_rule_under_its_key() {
        for keys in [1, FEW, FEW + 1, 100] {
            let mut index: KeyIndex<Box<str>> = KeyIndex::default();
            for round in 0..3 {
                for k in 0..keys {
                    index.push(format!("k{k}").into(), (round * 1000 + k) as u32);
                }
            }
            index.shrink_to_fit();
            assert_eq!(matches!(index, KeyIndex::Many(_)), keys > FEW, "{keys} keys");
            for k in 0..keys {
                let want = [k, 1000 + k, 2000 + k].map(|i| i as u32);
                assert_eq!(index.get(format!("k{k}").as_str()), Some(&want[..]), "{keys} keys");
            }
            assert_eq!(index.get("k"), None);
            assert_eq!(index.get(""), None);
        }
    }

    #[test]
    fn a_list_reads_back_what_was_pushed() {
        for n in [0, 1, 2, 3, SHORT_LIST, SHORT_LIST + 1, 100] {
            let mut list = List::default();
            (0..n).for_each(|i| list.push(i));
            list.shrink_to_fit();
            assert_eq!(&*list, (0..n).collect::<Vec<_>>().as_slice());
            assert_eq!(matches!(list, List::One(_)), n == 1);
        }
    }
}
