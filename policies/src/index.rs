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

/// Rule indices by key (a tool, a method, a host).
#[derive(Debug, Clone)]
pub(crate) enum KeyIndex<K> {
    Few(Vec<(K, Vec<usize>)>),
    Many(Box<FastMap<K, Vec<usize>>>),
}

impl<K> KeyIndex<K> {
    /// No entries; no allocation.
    pub(crate) const EMPTY: Self = Self::Few(Vec::new());
}

impl<K> Default for KeyIndex<K> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<K: Borrow<str> + Hash + Eq> KeyIndex<K> {
    /// The rules under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Vec<usize>> {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| Borrow::<str>::borrow(k) == key).map(|(_, l)| l),
            Self::Many(m) => m.get(key),
        }
    }

    /// Adds rule `idx` under `key`.
    pub(crate) fn push(&mut self, key: K, idx: usize) {
        if let Self::Few(v) = self {
            if let Some(pos) = v.iter().position(|(k, _)| k.borrow() == key.borrow()) {
                if let Some((_, list)) = v.get_mut(pos) {
                    push_list(list, idx);
                }
                return;
            }
            if v.len() < FEW {
                v.reserve_exact(1);
                v.push((key, vec![idx]));
                return;
            }
            *self = Self::Many(Box::new(std::mem::take(v).into_iter().collect()));
        }
        if let Self::Many(m) = self {
            push_list(m.entry(key).or_default(), idx);
        }
    }

    /// Gives back growth slack once every rule is in.
    pub(crate) fn shrink_to_fit(&mut self) {
        match self {
            Self::Few(v) => {
                v.shrink_to_fit();
                v.iter_mut().for_each(|(_, l)| l.shrink_to_fit());
            }
            Self::Many(m) => {
                m.shrink_to_fit();
                m.values_mut().for_each(Vec::shrink_to_fit);
            }
        }
    }
}

fn push_list(list: &mut Vec<usize>, idx: usize) {
    if list.len() < SHORT_LIST {
        list.reserve_exact(1);
    }
    list.push(idx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_then_many_keep_every_rule_under_its_key() {
        for keys in [1, FEW, FEW + 1, 100] {
            let mut index: KeyIndex<Box<str>> = KeyIndex::default();
            for round in 0..3 {
                for k in 0..keys {
                    index.push(format!("k{k}").into(), round * 1000 + k);
                }
            }
            index.shrink_to_fit();
            assert_eq!(matches!(index, KeyIndex::Many(_)), keys > FEW, "{keys} keys");
            for k in 0..keys {
                assert_eq!(index.get(&format!("k{k}")), Some(&vec![k, 1000 + k, 2000 + k]), "{keys} keys");
            }
            assert_eq!(index.get("k"), None);
            assert_eq!(index.get(""), None);
        }
    }
}
