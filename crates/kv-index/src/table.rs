//! The core shared by [`crate::KvIndex`] and [`crate::ApproxIndex`]: which worker slots hold
//! which blocks, and the leading-prefix match over it.
//!
//! A sequence hash identifies a block *and* its whole prefix, so the radix tree needs no
//! explicit edges: a flat hash map from sequence hash to the set of holders is the tree, and a
//! lookup is one probe per request block, stopping at the first block no worker holds.
//!
//! Workers get dense slots (lowest free first). Slots 0..64 live inline in the map value as a
//! `u64` bitset, so with up to 64 workers a lookup touches one map bucket per block and does
//! one AND. Slots from 64 up live in a second map consulted only while such slots exist.

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;
use switchyard_protocol::kv::SequenceHash;

/// A worker as the index knows it (an instance id).
pub type WorkerKey = u64;

/// A multiply-rotate hasher for integer keys. Sequence hashes are already uniformly random;
/// the multiply only spreads small test keys over hashbrown's tag bits.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IntHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(26) ^ x).wrapping_mul(MULTIPLIER);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// One worker's overlap with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerOverlap {
    pub worker: WorkerKey,
    /// How many leading blocks of the request this worker holds (≥ 1).
    pub blocks: u32,
}

/// The answer of a lookup: per worker holding at least the first block of the request, how
/// many leading blocks it holds; workers holding none are absent. Inline up to 8 workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlapScores {
    /// Unordered; at most one entry per worker.
    pub scores: SmallVec<[WorkerOverlap; 8]>,
    /// Distinct blocks in the index when the lookup ran.
    pub tree_blocks: usize,
}

impl OverlapScores {
    /// Leading blocks `worker` holds (0 when absent).
    pub fn get(&self, worker: WorkerKey) -> u32 {
        self.scores
            .iter()
            .find(|s| s.worker == worker)
            .map_or(0, |s| s.blocks)
    }

    /// The deepest overlap of any worker (0 when none).
    pub fn max_blocks(&self) -> u32 {
        self.scores.iter().map(|s| s.blocks).max().unwrap_or(0)
    }

    pub fn clear(&mut self) {
        self.scores.clear();
        self.tree_blocks = 0;
    }
}

/// Blocks → holder slots, plus the worker ↔ slot registry.
#[derive(Default)]
pub(crate) struct BlockTable {
    /// Entry present ⇔ some worker holds the block. Bit `s` ⇔ slot `s < 64` holds it.
    low: IntMap<SequenceHash, u64>,
    /// Word `k` bit `b` ⇔ slot `64 * (k + 1) + b` holds the block. Entry present ⇔ some slot
    /// ≥ 64 holds it.
    high: IntMap<SequenceHash, SmallVec<[u64; 2]>>,
    slot_of: IntMap<WorkerKey, u32>,
    /// Worker key per slot (stale for free slots).
    keys: Vec<WorkerKey>,
    free: BinaryHeap<std::cmp::Reverse<u32>>,
    /// Registered slots ≥ 64; while 0 the `high` map is empty and never probed.
    high_slots: usize,
}

impl BlockTable {
    pub(crate) fn slot(&self, worker: WorkerKey) -> Option<u32> {
        self.slot_of.get(&worker).copied()
    }

    /// The worker's slot, allocating the lowest free one for a new worker.
    pub(crate) fn register(&mut self, worker: WorkerKey) -> u32 {
        if let Some(&slot) = self.slot_of.get(&worker) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(std::cmp::Reverse(slot)) => {
                self.keys[slot as usize] = worker;
                slot
            }
            None => {
                self.keys.push(worker);
                (self.keys.len() - 1) as u32
            }
        };
        if slot >= 64 {
            self.high_slots += 1;
        }
        self.slot_of.insert(worker, slot);
        slot
    }

    /// Drops every block of `worker` and frees its slot; returns the slot it had.
    pub(crate) fn unregister(&mut self, worker: WorkerKey) -> Option<u32> {
        let slot = self.slot_of.remove(&worker)?;
        self.clear_slot(slot);
        if slot >= 64 {
            self.high_slots -= 1;
        }
        self.free.push(std::cmp::Reverse(slot));
        Some(slot)
    }

    pub(crate) fn workers(&self) -> impl Iterator<Item = WorkerKey> + '_ {
        self.slot_of.keys().copied()
    }

    pub(crate) fn worker_count(&self) -> usize {
        self.slot_of.len()
    }

    /// Distinct blocks held by anyone.
    pub(crate) fn len(&self) -> usize {
        self.low.len()
    }

    pub(crate) fn contains(&self, hash: SequenceHash, slot: u32) -> bool {
        if slot < 64 {
            self.low.get(&hash).is_some_and(|b| b & (1 << slot) != 0)
        } else {
            let (word, bit) = high_position(slot);
            self.high
                .get(&hash)
                .and_then(|w| w.get(word))
                .is_some_and(|w| w & bit != 0)
        }
    }

    /// Marks `slot` as holding `hash`; false when it already did.
    pub(crate) fn insert(&mut self, hash: SequenceHash, slot: u32) -> bool {
        if slot < 64 {
            let bits = self.low.entry(hash).or_insert(0);
            let was = *bits & (1 << slot) != 0;
            *bits |= 1 << slot;
            return !was;
        }
        self.low.entry(hash).or_insert(0);
        let (word, bit) = high_position(slot);
        let words = self.high.entry(hash).or_default();
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        let was = words[word] & bit != 0;
        words[word] |= bit;
        !was
    }

    /// Unmarks `slot` as holding `hash`; false when it did not. A block nobody holds any more
    /// leaves the table.
    pub(crate) fn remove(&mut self, hash: SequenceHash, slot: u32) -> bool {
        if slot < 64 {
            let Entry::Occupied(mut entry) = self.low.entry(hash) else {
                return false;
            };
            let bits = entry.get_mut();
            if *bits & (1 << slot) == 0 {
                return false;
            }
            *bits &= !(1 << slot);
            if *bits == 0 && (self.high_slots == 0 || !self.high.contains_key(&hash)) {
                entry.remove();
            }
            return true;
        }
        let (word, bit) = high_position(slot);
        let Entry::Occupied(mut entry) = self.high.entry(hash) else {
            return false;
        };
        let words = entry.get_mut();
        if words.get(word).is_none_or(|w| w & bit == 0) {
            return false;
        }
        words[word] &= !bit;
        if words.iter().all(|&w| w == 0) {
            entry.remove();
            if self.low.get(&hash) == Some(&0) {
                self.low.remove(&hash);
            }
        }
        true
    }

    /// Removes `slot` from every block (O(blocks in the table): clears and worker removals
    /// are rare). Returns how many blocks it held.
    pub(crate) fn clear_slot(&mut self, slot: u32) -> usize {
        let mut held = 0;
        if slot < 64 {
            let bit = 1u64 << slot;
            let high = &self.high;
            let check_high = self.high_slots > 0;
            self.low.retain(|hash, bits| {
                if *bits & bit != 0 {
                    held += 1;
                    *bits &= !bit;
                }
                *bits != 0 || (check_high && high.contains_key(hash))
            });
        } else {
            let (word, bit) = high_position(slot);
            let mut emptied = Vec::new();
            self.high.retain(|hash, words| {
                if let Some(w) = words.get_mut(word)
                    && *w & bit != 0
                {
                    held += 1;
                    *w &= !bit;
                }
                let keep = words.iter().any(|&w| w != 0);
                if !keep {
                    emptied.push(*hash);
                }
                keep
            });
            for hash in emptied {
                if self.low.get(&hash) == Some(&0) {
                    self.low.remove(&hash);
                }
            }
        }
        self.maybe_shrink();
        held
    }

    /// Gives memory back once most blocks are gone (hash maps never shrink by themselves).
    pub(crate) fn maybe_shrink(&mut self) {
        if self.low.capacity() > 4096 && self.low.len() * 4 < self.low.capacity() {
            self.low.shrink_to(self.low.len() * 2);
        }
        if self.high.capacity() > 4096 && self.high.len() * 4 < self.high.capacity() {
            self.high.shrink_to(self.high.len() * 2);
        }
    }

    /// Per worker, the number of leading `blocks` it holds. Stops at the first block no
    /// remaining candidate holds.
    pub(crate) fn find_matches_into(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        out.clear();
        out.tree_blocks = self.low.len();
        if self.high_slots == 0 {
            self.find_low(blocks, out);
        } else {
            self.find_general(blocks, out);
        }
    }

    #[inline]
    fn find_low(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        let Some((first, rest)) = blocks.split_first() else {
            return;
        };
        let Some(&bits) = self.low.get(first) else {
            return;
        };
        let mut active = bits;
        let mut depth = 1u32;
        for hash in rest {
            let bits = self.low.get(hash).copied().unwrap_or(0);
            let dropped = active & !bits;
            if dropped != 0 {
                self.emit(dropped, 0, depth, out);
                active &= bits;
                if active == 0 {
                    return;
                }
            }
            depth += 1;
        }
        self.emit(active, 0, depth, out);
    }

    fn find_general(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        // Word 0 = slots 0..64, word k = slots 64k..64(k+1).
        let words = self.keys.len().div_ceil(64);
        let mut active: SmallVec<[u64; 8]> = SmallVec::from_elem(0, words);
        let mut bits: SmallVec<[u64; 8]> = SmallVec::from_elem(0, words);
        let mut depth = 0u32;
        for hash in blocks {
            let Some(&low) = self.low.get(hash) else {
                break;
            };
            bits[0] = low;
            bits[1..].fill(0);
            if let Some(high) = self.high.get(hash) {
                for (dst, &src) in bits[1..].iter_mut().zip(high.iter()) {
                    *dst = src;
                }
            }
            if depth == 0 {
                active.copy_from_slice(&bits);
            } else {
                for (k, (a, &b)) in active.iter_mut().zip(bits.iter()).enumerate() {
                    let dropped = *a & !b;
                    if dropped != 0 {
                        self.emit(dropped, k as u32, depth, out);
                        *a &= b;
                    }
                }
            }
            if active.iter().all(|&a| a == 0) {
                return;
            }
            depth += 1;
        }
        if depth > 0 {
            for (k, &a) in active.iter().enumerate() {
                self.emit(a, k as u32, depth, out);
            }
        }
    }

    #[inline]
    fn emit(&self, mut bits: u64, word: u32, depth: u32, out: &mut OverlapScores) {
        while bits != 0 {
            let slot = word * 64 + bits.trailing_zeros();
            bits &= bits - 1;
            out.scores.push(WorkerOverlap {
                worker: self.keys[slot as usize],
                blocks: depth,
            });
        }
    }

    /// Estimated heap bytes: hash map buckets (entry + control byte) and spilled bitsets.
    pub(crate) fn memory_bytes(&self) -> usize {
        fn map_bytes<K, V, S>(map: &HashMap<K, V, S>) -> usize {
            if map.capacity() == 0 {
                return 0;
            }
            let buckets = (map.capacity() * 8 / 7).next_power_of_two();
            buckets * (size_of::<(K, V)>() + 1)
        }
        let spilled: usize = self
            .high
            .values()
            .filter(|w| w.spilled())
            .map(|w| w.capacity() * 8)
            .sum();
        map_bytes(&self.low)
            + map_bytes(&self.high)
            + spilled
            + map_bytes(&self.slot_of)
            + self.keys.capacity() * 8
            + self.free.capacity() * 4
    }
}

#[inline]
fn high_position(slot: u32) -> (usize, u64) {
    (((slot - 64) / 64) as usize, 1u64 << (slot % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_lowest_first() {
        let mut t = BlockTable::default();
        assert_eq!(t.register(10), 0);
        assert_eq!(t.register(11), 1);
        assert_eq!(t.register(12), 2);
        assert_eq!(t.register(11), 1);
        t.unregister(11);
        t.unregister(10);
        assert_eq!(t.register(13), 0);
        assert_eq!(t.register(14), 1);
        assert_eq!(t.worker_count(), 3);
    }

    #[test]
    fn slots_above_64_match_like_low_ones() {
        let mut t = BlockTable::default();
        for w in 0..150u64 {
            t.register(w);
        }
        // Worker 0 holds 3 blocks, worker 100 holds 2, worker 149 holds 1; block 2 held only
        // by a high slot.
        for (w, n) in [(0u64, 3usize), (100, 2), (149, 1)] {
            let slot = t.slot(w).unwrap();
            for h in 0..n as u64 {
                assert!(t.insert(h + 1, slot));
            }
        }
        let mut out = OverlapScores::default();
        t.find_matches_into(&[1, 2, 3, 4], &mut out);
        assert_eq!((out.get(0), out.get(100), out.get(149)), (3, 2, 1));
        assert_eq!(out.scores.len(), 3);
        assert_eq!(out.tree_blocks, 3);

        assert!(t.remove(2, t.slot(100).unwrap()));
        assert!(!t.remove(2, t.slot(100).unwrap()));
        t.find_matches_into(&[1, 2, 3], &mut out);
        assert_eq!((out.get(0), out.get(100), out.get(149)), (3, 1, 1));

        assert_eq!(t.clear_slot(t.slot(0).unwrap()), 3);
        assert_eq!(t.len(), 1);
        t.unregister(100);
        t.unregister(149);
        assert_eq!(t.len(), 0);
        assert_eq!(t.high_slots, 84);
    }
}
