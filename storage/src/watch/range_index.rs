//! Which watchers a key concerns. A write must cost time in proportion to the watchers it
//! matches, not to every watcher the node holds (etcd keeps an interval tree for the same
//! reason), so watchers are indexed by their key range: single keys in a hash map, ranges in a
//! treap ordered by first key whose every node knows the largest end below it. A point query
//! visits only subtrees that can hold a range containing the key: O(log n + matches).
//!
//! Priorities come from a hash of the watcher's id mixed with a seed drawn when the index is
//! made, so no client can choose the shape of the tree (a chain would make it slow and its
//! recursion deep).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::mvcc::key_value::KeyRange;

/// Where a range stops. `Unbounded` (etcd's range end of one zero byte) sorts above every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Before(Arc<[u8]>),
    Unbounded,
}

impl End {
    fn of(range: &KeyRange) -> End {
        match range.upper() {
            Some(end) => End::Before(end.into()),
            None => End::Unbounded,
        }
    }

    /// Whether a range ending here can still contain `key`.
    fn above(&self, key: &[u8]) -> bool {
        match self {
            End::Before(end) => key < &end[..],
            End::Unbounded => true,
        }
    }
}

#[derive(Debug)]
struct Node {
    start: Vec<u8>,
    end: End,
    id: u64,
    priority: u64,
    /// The largest `end` in this subtree.
    max_end: End,
    left: Tree,
    right: Tree,
}

type Tree = Option<Box<Node>>;

impl Node {
    fn order(&self, start: &[u8], id: u64) -> Ordering {
        (self.start.as_slice(), self.id).cmp(&(start, id))
    }

    fn update(&mut self) {
        let mut max = self.end.clone();
        for child in [&self.left, &self.right].into_iter().flatten() {
            if child.max_end > max {
                max = child.max_end.clone();
            }
        }
        self.max_end = max;
    }
}

/// A scrambling of the seeded id (splitmix64's finaliser).
fn priority(seed: u64, id: u64) -> u64 {
    let mut z = (id ^ seed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Splits `tree` into the nodes for which `left` holds (a prefix of the order) and the rest.
fn split(tree: Tree, left: &impl Fn(&Node) -> bool) -> (Tree, Tree) {
    let Some(mut node) = tree else {
        return (None, None);
    };
    if left(&node) {
        let (l, r) = split(node.right.take(), left);
        node.right = l;
        node.update();
        (Some(node), r)
    } else {
        let (l, r) = split(node.left.take(), left);
        node.left = r;
        node.update();
        (l, Some(node))
    }
}

/// Joins two treaps, every node of `a` ordered before every node of `b`.
fn merge(a: Tree, b: Tree) -> Tree {
    match (a, b) {
        (None, t) | (t, None) => t,
        (Some(mut a), Some(mut b)) => {
            if a.priority >= b.priority {
                a.right = merge(a.right.take(), Some(b));
                a.update();
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                b.update();
                Some(b)
            }
        }
    }
}

fn stab(tree: &Tree, key: &[u8], found: &mut impl FnMut(u64)) {
    let Some(node) = tree else {
        return;
    };
    if !node.max_end.above(key) {
        return;
    }
    stab(&node.left, key, found);
    if node.start.as_slice() <= key {
        if node.end.above(key) {
            found(node.id);
        }
        // Only ranges starting at or before `key` can contain it.
        stab(&node.right, key, found);
    }
}

#[derive(Debug)]
pub(crate) struct RangeIndex {
    /// A set per key: many watchers of one key must not make each removal a scan.
    single: HashMap<Vec<u8>, HashSet<u64>>,
    ranges: Tree,
    seed: u64,
}

impl Default for RangeIndex {
    fn default() -> Self {
        RangeIndex {
            single: HashMap::new(),
            ranges: None,
            seed: rand::random(),
        }
    }
}

impl RangeIndex {
    pub fn insert(&mut self, id: u64, range: &KeyRange) {
        if range.is_single() {
            self.single.entry(range.key.clone()).or_default().insert(id);
            return;
        }
        let end = End::of(range);
        let node = Box::new(Node {
            start: range.key.clone(),
            max_end: end.clone(),
            end,
            id,
            priority: priority(self.seed, id),
            left: None,
            right: None,
        });
        let (l, r) = split(self.ranges.take(), &|n| {
            n.order(&range.key, id) == Ordering::Less
        });
        self.ranges = merge(merge(l, Some(node)), r);
    }

    /// Removes a watcher inserted with the same id and range.
    pub fn remove(&mut self, id: u64, range: &KeyRange) {
        if range.is_single() {
            if let Some(ids) = self.single.get_mut(&range.key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.single.remove(&range.key);
                }
            }
            return;
        }
        let (l, rest) = split(self.ranges.take(), &|n| {
            n.order(&range.key, id) == Ordering::Less
        });
        let (_removed, r) = split(rest, &|n| n.order(&range.key, id) == Ordering::Equal);
        self.ranges = merge(l, r);
    }

    /// Calls `found` with every watcher whose range contains `key` (once each).
    pub fn matching(&self, key: &[u8], mut found: impl FnMut(u64)) {
        if let Some(ids) = self.single.get(key) {
            ids.iter().for_each(|&id| found(id));
        }
        stab(&self.ranges, key, &mut found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(index: &RangeIndex, key: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        index.matching(key, |id| out.push(id));
        out.sort_unstable();
        out
    }

    #[test]
    fn single_keys_prefixes_and_open_ranges() {
        let mut index = RangeIndex::default();
        index.insert(1, &KeyRange::new("a/b", ""));
        index.insert(2, &KeyRange::prefix("a/"));
        index.insert(3, &KeyRange::new("b", vec![0]));
        index.insert(4, &KeyRange::new(vec![0], vec![0]));
        index.insert(5, &KeyRange::new("a/b", ""));
        assert_eq!(matches(&index, b"a/b"), vec![1, 2, 4, 5]);
        assert_eq!(matches(&index, b"a/c"), vec![2, 4]);
        assert_eq!(matches(&index, b"zz"), vec![3, 4]);
        index.remove(2, &KeyRange::prefix("a/"));
        index.remove(1, &KeyRange::new("a/b", ""));
        assert_eq!(matches(&index, b"a/b"), vec![4, 5]);
        index.remove(4, &KeyRange::new(vec![0], vec![0]));
        assert_eq!(matches(&index, b"a/c"), Vec::<u64>::new());
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 0..4)
    }

    proptest! {
        /// The index answers as a scan of every range would, through inserts and removals.
        #[test]
        fn agrees_with_a_scan(
            ranges in proptest::collection::vec((key(), prop_oneof![
                Just(Vec::new()), Just(vec![0u8]), key()
            ]), 1..40),
            removed in proptest::collection::vec(any::<bool>(), 40),
            probes in proptest::collection::vec(key(), 1..20),
        ) {
            let ranges: Vec<KeyRange> = ranges
                .into_iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, e)| KeyRange::new(k, e))
                .collect();
            let mut index = RangeIndex::default();
            for (id, r) in ranges.iter().enumerate() {
                index.insert(id as u64, r);
            }
            for (id, r) in ranges.iter().enumerate() {
                if removed[id] {
                    index.remove(id as u64, r);
                }
            }
            for probe in probes.iter().filter(|p| !p.is_empty()) {
                let want: Vec<u64> = ranges
                    .iter()
                    .enumerate()
                    .filter(|(id, r)| !removed[*id] && r.contains(probe))
                    .map(|(id, _)| id as u64)
                    .collect();
                prop_assert_eq!(matches(&index, probe), want);
            }
        }
    }
}
