//! The core shared by [`crate::KvIndex`] and [`crate::ApproxIndex`]: which worker slots hold
//! which blocks, and the leading-prefix match over it.
//!
//! A sequence hash identifies a block *and* its whole prefix, so the radix tree needs no
//! explicit edges: a flat hash map from sequence hash to its holders is the tree. To keep
//! lookups short on long prompts the map points into *runs* (compressed edges): consecutive
//! blocks with the same holders, stored contiguously. A lookup probes the map once per run and
//! compares the following request hashes against the run's array, stopping at the first block
//! no remaining candidate holds.
//!
//! Workers get dense slots (lowest free first) and holder sets are bitsets over slots, one
//! inline word for up to 64 workers.

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;
use switchyard_protocol::kv::SequenceHash;

use crate::block_map::{BlockKeys, BlockMap, Loc, MAX_BLOCKS, MAX_RUN_BLOCKS, POS_MASK};

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

/// Holder slots as a bitset: word `k` bit `b` ⇔ slot `64k + b`. Inline for up to 64 slots.
type Holders = SmallVec<[u64; 1]>;

fn holds(h: &Holders, slot: u32) -> bool {
    h.get((slot / 64) as usize)
        .is_some_and(|w| w & (1 << (slot % 64)) != 0)
}

fn set_holder(h: &mut Holders, slot: u32) {
    let word = (slot / 64) as usize;
    if h.len() <= word {
        h.resize(word + 1, 0);
    }
    h[word] |= 1 << (slot % 64);
}

fn clear_holder(h: &mut Holders, slot: u32) {
    if let Some(w) = h.get_mut((slot / 64) as usize) {
        *w &= !(1 << (slot % 64));
    }
}

fn no_holders(h: &Holders) -> bool {
    h.iter().all(|&w| w == 0)
}

fn same_holders(a: &Holders, b: &Holders) -> bool {
    let n = a.len().max(b.len());
    (0..n).all(|i| a.get(i).copied().unwrap_or(0) == b.get(i).copied().unwrap_or(0))
}

fn only_holder(h: &Holders, slot: u32) -> bool {
    let word = (slot / 64) as usize;
    let bit = 1u64 << (slot % 64);
    h.iter()
        .enumerate()
        .all(|(i, &w)| if i == word { w == bit } else { w == 0 })
        && h.len() > word
}

/// Consecutive blocks (as they appeared in a stored sequence) that all have the same holders.
///
/// Map entries hold positions relative to `base` (modulo 2^18, see `block_map::POS_BITS`), so
/// cutting blocks off the front or prepending blocks only moves `base` and the array, not the
/// other blocks' map entries. A run holds at most [`MAX_RUN_BLOCKS`] blocks.
#[derive(Default)]
struct Run {
    base: u32,
    blocks: Vec<SequenceHash>,
    holders: Holders,
}

impl Run {
    #[inline]
    fn index(&self, loc: Loc) -> usize {
        (loc.pos.wrapping_sub(self.base) & POS_MASK) as usize
    }
    #[inline]
    fn pos(&self, index: usize) -> u32 {
        self.base.wrapping_add(index as u32) & POS_MASK
    }
    /// Where the block at `index` is in the map.
    #[inline]
    fn loc(&self, id: u32, index: usize) -> Loc {
        Loc {
            run: id,
            pos: self.pos(index),
        }
    }
}

/// The map keeps locations only; the runs' arrays hold the keys.
impl BlockKeys for [Run] {
    #[inline]
    fn key_at(&self, loc: Loc) -> Option<SequenceHash> {
        let run = self.get(loc.run as usize)?;
        run.blocks.get(run.index(loc)).copied()
    }

    fn for_each_block(&self, mut f: impl FnMut(SequenceHash, Loc)) {
        for (id, run) in self.iter().enumerate() {
            for (i, &hash) in run.blocks.iter().enumerate() {
                f(hash, run.loc(id as u32, i));
            }
        }
    }
}

impl BlockKeys for Vec<Run> {
    #[inline]
    fn key_at(&self, loc: Loc) -> Option<SequenceHash> {
        self.as_slice().key_at(loc)
    }
    fn for_each_block(&self, f: impl FnMut(SequenceHash, Loc)) {
        self.as_slice().for_each_block(f)
    }
}

/// What a `store` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Blocks newly held.
    pub added: usize,
    /// Blocks the slot already held.
    pub duplicates: usize,
    /// Blocks not recorded because the index holds [`MAX_BLOCKS`] already.
    pub refused: usize,
    /// Whether the slot held the parent.
    pub parent_held: bool,
}

/// The set bits of a word, lowest first.
struct SetBits(u64);

impl Iterator for SetBits {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(bit)
    }
    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for SetBits {}

/// Length of the common prefix of two hash arrays, eight at a time while they agree (the
/// OR of the lanes' XORs compiles to a few vector instructions, no `memcmp` call).
#[inline]
fn common_prefix(a: &[SequenceHash], b: &[SequenceHash]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = x.iter().zip(y).fold(0, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            break;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn alloc_run(
    runs: &mut Vec<Run>,
    free_runs: &mut Vec<u32>,
    blocks: Vec<SequenceHash>,
    holders: Holders,
) -> u32 {
    let run = Run {
        base: 0,
        blocks,
        holders,
    };
    match free_runs.pop() {
        Some(id) => {
            runs[id as usize] = run;
            id
        }
        None => {
            runs.push(run);
            (runs.len() - 1) as u32
        }
    }
}

/// Blocks → holder slots, plus the worker ↔ slot registry.
///
/// Blocks are grouped in runs: consecutive blocks of a sequence with identical holders. The
/// map gives any block's run and offset, so a lookup probes the map once per run and then
/// compares the request's following hashes with the run's array (equal sequence hash ⇔ same
/// block, so a matching hash has the run's holders). The only invariant is that every block of
/// a run has the run's holders; grouping blocks that are not chained would cost speed, never
/// correctness. Events split runs where holders change and merge a run into its predecessor
/// when a store makes their holders equal again.
#[derive(Default)]
pub(crate) struct BlockTable {
    map: BlockMap,
    runs: Vec<Run>,
    free_runs: Vec<u32>,
    slot_of: IntMap<WorkerKey, u32>,
    /// Worker key per slot (stale for free slots).
    keys: Vec<WorkerKey>,
    free: BinaryHeap<std::cmp::Reverse<u32>>,
    /// Registered slots ≥ 64; while 0 every holder set is one word and lookups take the
    /// single-word path.
    high_slots: usize,
    /// Blocks the map keeps room for even when emptier (see [`BlockTable::expect_blocks`]).
    expected_blocks: usize,
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
        self.map.len()
    }

    /// Where block `hash` is, if anyone holds it.
    #[inline]
    fn locate(&self, hash: &SequenceHash) -> Option<Loc> {
        self.map.get(hash, &self.runs)
    }

    pub(crate) fn contains(&self, hash: SequenceHash, slot: u32) -> bool {
        self.locate(&hash)
            .is_some_and(|loc| holds(&self.runs[loc.run as usize].holders, slot))
    }

    /// Marks `slot` as holding the chain `blocks` (in order, after `parent`; `hash_of` reads a
    /// block's sequence hash).
    pub(crate) fn store<B>(
        &mut self,
        slot: u32,
        parent: Option<SequenceHash>,
        blocks: &[B],
        hash_of: impl Fn(&B) -> SequenceHash,
    ) -> Stored {
        let (mut added, mut duplicate, mut refused) = (0, 0, 0);
        // Room for every block now, so nothing below grows the map: a new block costs one
        // probe.
        self.map
            .reserve(blocks.len().min(MAX_BLOCKS - self.map.len()), &self.runs);
        // Touch every block's slot first: the loads are independent, so their cache misses
        // overlap instead of serialising inside the loop.
        self.map
            .touch(parent.into_iter().chain(blocks.iter().map(&hash_of)));
        let parent_loc = parent.and_then(|p| self.locate(&p));
        let parent_held =
            parent_loc.is_some_and(|loc| holds(&self.runs[loc.run as usize].holders, slot));
        // The last block handled (`parent` at first) and where it is now.
        let mut prev_hash = parent;
        let mut prev = parent_loc;
        let mut i = 0;
        while i < blocks.len() {
            let hash = hash_of(&blocks[i]);
            let loc = match self.locate(&hash) {
                Some(loc) => loc,
                None => {
                    let room = MAX_BLOCKS - self.map.len();
                    if room == 0 {
                        refused += blocks.len() - i;
                        break;
                    }
                    // New blocks from here on: they append to the run ending in `prev` when
                    // `slot` alone holds it, else start a run of their own, and go into the
                    // map in one tight loop until a block turns out to be known already.
                    let append = prev.filter(|loc| {
                        let run = &self.runs[loc.run as usize];
                        run.index(*loc) + 1 == run.blocks.len()
                            && run.blocks.len() < MAX_RUN_BLOCKS
                            && only_holder(&run.holders, slot)
                    });
                    let id = match append {
                        Some(loc) => loc.run,
                        None => {
                            let mut holders = Holders::new();
                            set_holder(&mut holders, slot);
                            alloc_run(&mut self.runs, &mut self.free_runs, Vec::new(), holders)
                        }
                    };
                    let run = &self.runs[id as usize];
                    let held = run.blocks.len();
                    let first_pos = run.pos(held);
                    let rest = &blocks[i..];
                    let rest = &rest[..rest.len().min(MAX_RUN_BLOCKS - held).min(room)];
                    let n = self
                        .map
                        .insert_absent(rest, &hash_of, id, first_pos, &self.runs);
                    debug_assert!(n > 0, "the first block was absent");
                    let run = &mut self.runs[id as usize];
                    run.blocks.extend(rest[..n].iter().map(&hash_of));
                    added += n;
                    i += n;
                    prev_hash = Some(hash_of(&rest[n - 1]));
                    prev = Some(run.loc(id, held + n - 1));
                    continue;
                }
            };
            let run = &self.runs[loc.run as usize];
            if holds(&run.holders, slot) {
                duplicate += 1;
                prev_hash = Some(hash);
                prev = Some(loc);
                i += 1;
                continue;
            }
            // The stretch of the event that continues along this run.
            let off = run.index(loc);
            let len = 1 + run.blocks[off + 1..]
                .iter()
                .zip(&blocks[i + 1..])
                .take_while(|(a, b)| **a == hash_of(b))
                .count();
            let id = self.isolate(loc.run, off, len);
            set_holder(&mut self.runs[id as usize].holders, slot);
            let last = hash_of(&blocks[i + len - 1]);
            if let Some(p) = prev_hash {
                self.merge_after(p, id);
            }
            added += len;
            i += len;
            // `isolate` and `merge_after` may have moved it.
            prev_hash = Some(last);
            prev = self.locate(&last);
        }
        Stored {
            added,
            duplicates: duplicate,
            refused,
            parent_held,
        }
    }

    /// Unmarks `slot` as holding each of `hashes`. Returns (blocks removed, blocks `slot` did
    /// not hold). A block nobody holds any more leaves the table.
    pub(crate) fn remove(&mut self, slot: u32, hashes: &[SequenceHash]) -> (usize, usize) {
        let (mut removed, mut unknown) = (0, 0);
        // Touch every entry first so the misses overlap (see `store`).
        self.map.touch(hashes.iter().copied());
        let mut i = 0;
        while i < hashes.len() {
            let Some(loc) = self.locate(&hashes[i]) else {
                unknown += 1;
                i += 1;
                continue;
            };
            let run = &self.runs[loc.run as usize];
            if !holds(&run.holders, slot) {
                unknown += 1;
                i += 1;
                continue;
            }
            // The stretch of the event that walks along this run, tail first or head first.
            let at = run.index(loc);
            let rest = &hashes[i + 1..];
            let back = rest
                .iter()
                .zip(run.blocks[..at].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let forward = if back == 0 {
                rest.iter()
                    .zip(&run.blocks[at + 1..])
                    .take_while(|(a, b)| a == b)
                    .count()
            } else {
                0
            };
            let (lo, len) = (at - back, 1 + back + forward);
            let j = i + len;
            if only_holder(&run.holders, slot) {
                // The blocks leave the table: drop them without re-pointing them first.
                self.delete_range(loc.run, lo, len);
            } else {
                let id = self.isolate(loc.run, lo, len);
                clear_holder(&mut self.runs[id as usize].holders, slot);
            }
            removed += len;
            i = j;
        }
        (removed, unknown)
    }

    /// Removes `slot` from every block (O(runs): clears and worker removals are rare).
    /// Returns how many blocks it held.
    pub(crate) fn clear_slot(&mut self, slot: u32) -> usize {
        let mut held = 0;
        let mut emptied = Vec::new();
        for (id, run) in self.runs.iter_mut().enumerate() {
            if holds(&run.holders, slot) {
                held += run.blocks.len();
                clear_holder(&mut run.holders, slot);
                if no_holders(&run.holders) {
                    emptied.push(id as u32);
                }
            }
        }
        for id in emptied {
            self.delete_run(id);
        }
        self.maybe_shrink();
        held
    }

    /// Gives memory back once most blocks are gone (hash maps never shrink by themselves),
    /// never below the expected size.
    pub(crate) fn maybe_shrink(&mut self) {
        let floor = self.expected_blocks.max(4096);
        if self.map.capacity() > floor && self.map.len() * 4 < self.map.capacity() {
            self.map
                .shrink_to((self.map.len() * 2).max(self.expected_blocks), &self.runs);
        }
    }

    /// Expects up to `blocks` distinct blocks. Nothing is reserved now: a map sized for the
    /// hint while few blocks are live (workers sharing one prefix set) spreads them over a
    /// table much larger than the cache. Once the map holds a quarter of the hint its next
    /// growth makes room for all of it (skipping the rehashes in between), and it keeps that
    /// room when it empties again. Lowering the hint lets the map shrink later.
    pub(crate) fn expect_blocks(&mut self, blocks: usize) {
        self.expected_blocks = blocks;
        self.map.expect(blocks);
        self.maybe_shrink();
    }

    /// A run holding exactly `runs[run].blocks[off..off + len]`, splitting `run` as needed.
    /// The largest piece keeps the run (its map entries stay); the others are re-pointed.
    fn isolate(&mut self, run: u32, off: usize, len: usize) -> u32 {
        let total = self.runs[run as usize].blocks.len();
        let (before, after) = (off, total - off - len);
        if before == 0 && after == 0 {
            return run;
        }
        let holders = self.runs[run as usize].holders.clone();
        // Where the pieces' blocks are in the map before they move.
        let was = |r: &Run, index: usize| r.loc(run, index);
        if after >= len && after >= before {
            // Keep the tail in place.
            let r = &mut self.runs[run as usize];
            let (head_at, middle_at) = (was(r, 0), was(r, off));
            let mut head: Vec<_> = r.blocks.drain(..off + len).collect();
            r.base = r.base.wrapping_add((off + len) as u32);
            let middle = head.split_off(off);
            if !head.is_empty() {
                self.new_run(head, head_at, holders.clone());
            }
            self.new_run(middle, middle_at, holders)
        } else if before >= len {
            // Keep the head in place.
            let r = &mut self.runs[run as usize];
            let (middle_at, tail_at) = (was(r, off), was(r, off + len));
            let tail = r.blocks.split_off(off + len);
            let middle = r.blocks.split_off(off);
            if !tail.is_empty() {
                self.new_run(tail, tail_at, holders.clone());
            }
            self.new_run(middle, middle_at, holders)
        } else {
            // Keep the middle in place.
            let r = &mut self.runs[run as usize];
            let (head_at, tail_at) = (was(r, 0), was(r, off + len));
            let tail = r.blocks.split_off(off + len);
            let head: Vec<_> = r.blocks.drain(..off).collect();
            r.base = r.base.wrapping_add(off as u32);
            if !tail.is_empty() {
                self.new_run(tail, tail_at, holders.clone());
            }
            if !head.is_empty() {
                self.new_run(head, head_at, holders);
            }
            run
        }
    }

    /// Removes `runs[run].blocks[off..off + len]` from the table; the pieces before and after
    /// stay runs (the larger one in place). Tail-first eviction makes this a truncation.
    fn delete_range(&mut self, run: u32, off: usize, len: usize) {
        let total = self.runs[run as usize].blocks.len();
        let (before, after) = (off, total - off - len);
        let r = &self.runs[run as usize];
        self.map.remove_all(
            r.blocks[off..off + len]
                .iter()
                .enumerate()
                .map(|(i, &hash)| (hash, r.loc(run, off + i))),
        );
        let r = &mut self.runs[run as usize];
        if after > before {
            let head_at = r.loc(run, 0);
            let head: Vec<_> = r.blocks.drain(..off + len).take(off).collect();
            r.base = r.base.wrapping_add((off + len) as u32);
            if !head.is_empty() {
                let holders = self.runs[run as usize].holders.clone();
                self.new_run(head, head_at, holders);
            }
        } else {
            let tail_at = r.loc(run, off + len);
            let tail = r.blocks.split_off(off + len);
            r.blocks.truncate(off);
            if !tail.is_empty() {
                let holders = self.runs[run as usize].holders.clone();
                self.new_run(tail, tail_at, holders);
            }
            if off == 0 {
                self.runs[run as usize] = Run::default();
                self.free_runs.push(run);
            }
        }
    }

    /// Joins run `id` to the run ending in `prev` when their holders are equal (and the joined
    /// run is not too long), moving the shorter one's blocks.
    fn merge_after(&mut self, prev: SequenceHash, id: u32) {
        let Some(loc) = self.locate(&prev) else {
            return;
        };
        let target = loc.run;
        if target == id {
            return;
        }
        let (t, r) = (&self.runs[target as usize], &self.runs[id as usize]);
        if t.index(loc) + 1 != t.blocks.len()
            || !same_holders(&t.holders, &r.holders)
            || t.blocks.len() + r.blocks.len() > MAX_RUN_BLOCKS
        {
            return;
        }
        if t.blocks.len() >= r.blocks.len() {
            let from = std::mem::take(&mut self.runs[id as usize]);
            let t = &mut self.runs[target as usize];
            let start = t.blocks.len();
            t.blocks.extend_from_slice(&from.blocks);
            for (i, &hash) in from.blocks.iter().enumerate() {
                self.map
                    .repoint(hash, from.loc(id, i), t.loc(target, start + i));
            }
            self.free_runs.push(id);
        } else {
            let from = std::mem::take(&mut self.runs[target as usize]);
            let r = &mut self.runs[id as usize];
            r.base = r.base.wrapping_sub(from.blocks.len() as u32);
            r.blocks.splice(0..0, from.blocks.iter().copied());
            for (i, &hash) in from.blocks.iter().enumerate() {
                self.map.repoint(hash, from.loc(target, i), r.loc(id, i));
            }
            self.free_runs.push(target);
        }
    }

    /// A run of blocks already in the map, the first at `was` and the others after it
    /// (re-pointed to the new run).
    fn new_run(&mut self, blocks: Vec<SequenceHash>, was: Loc, holders: Holders) -> u32 {
        let id = alloc_run(&mut self.runs, &mut self.free_runs, Vec::new(), holders);
        let run = &self.runs[id as usize];
        for (i, &hash) in blocks.iter().enumerate() {
            let old = Loc {
                run: was.run,
                pos: was.pos.wrapping_add(i as u32) & POS_MASK,
            };
            self.map.repoint(hash, old, run.loc(id, i));
        }
        self.runs[id as usize].blocks = blocks;
        id
    }

    fn delete_run(&mut self, id: u32) {
        let run = std::mem::take(&mut self.runs[id as usize]);
        self.map.remove_all(
            run.blocks
                .iter()
                .enumerate()
                .map(|(i, &hash)| (hash, run.loc(id, i))),
        );
        self.free_runs.push(id);
    }

    /// Per worker, the number of leading `blocks` it holds. Stops at the first block no
    /// remaining candidate holds.
    pub(crate) fn find_matches_into(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        out.clear();
        out.tree_blocks = self.map.len();
        if self.high_slots == 0 {
            self.find_single_word(blocks, out);
        } else {
            self.find_general(blocks, out);
        }
    }

    /// How many blocks from `i` on the request shares with `run` from `off`, and the run.
    #[inline]
    fn stretch(&self, loc: Loc, blocks: &[SequenceHash], i: usize) -> (usize, &Run) {
        let run = &self.runs[loc.run as usize];
        let rest = &run.blocks[run.index(loc) + 1..];
        // A request that follows the run to its end probes the map next at the block after
        // it: start that load now, so its miss overlaps the one reading the run's array.
        if let Some(&next) = blocks.get(i + 1 + rest.len()) {
            self.map.touch(std::iter::once(next));
        }
        (1 + common_prefix(rest, &blocks[i + 1..]), run)
    }

    #[inline]
    fn find_single_word(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        let Some(loc) = blocks.first().and_then(|h| self.locate(h)) else {
            return;
        };
        let (len, run) = self.stretch(loc, blocks, 0);
        let mut active = run.holders.first().copied().unwrap_or(0);
        let mut i = len;
        while i < blocks.len() {
            let Some(loc) = self.locate(&blocks[i]) else {
                break;
            };
            let (len, run) = self.stretch(loc, blocks, i);
            let bits = run.holders.first().copied().unwrap_or(0);
            let dropped = active & !bits;
            if dropped != 0 {
                self.emit(dropped, 0, i as u32, out);
                active &= bits;
                if active == 0 {
                    return;
                }
            }
            i += len;
        }
        self.emit(active, 0, i as u32, out);
    }

    fn find_general(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        let words = self.keys.len().div_ceil(64);
        let mut active: SmallVec<[u64; 8]> = SmallVec::from_elem(0, words);
        let mut i = 0;
        while i < blocks.len() {
            let Some(loc) = self.locate(&blocks[i]) else {
                break;
            };
            let (len, run) = self.stretch(loc, blocks, i);
            let word = |k: usize| run.holders.get(k).copied().unwrap_or(0);
            if i == 0 {
                for (k, a) in active.iter_mut().enumerate() {
                    *a = word(k);
                }
            } else {
                for (k, a) in active.iter_mut().enumerate() {
                    let dropped = *a & !word(k);
                    if dropped != 0 {
                        self.emit(dropped, k as u32, i as u32, out);
                        *a &= word(k);
                    }
                }
                if active.iter().all(|&a| a == 0) {
                    return;
                }
            }
            i += len;
        }
        for (k, &a) in active.iter().enumerate() {
            self.emit(a, k as u32, i as u32, out);
        }
    }

    #[inline]
    fn emit(&self, bits: u64, word: u32, depth: u32, out: &mut OverlapScores) {
        // An exact-size iterator, so the result grows once per call, not once per worker.
        out.scores.extend(SetBits(bits).map(|bit| WorkerOverlap {
            worker: self.keys[(word * 64 + bit) as usize],
            blocks: depth,
        }));
    }

    /// Blocks `slot` holds (O(runs)).
    pub(crate) fn blocks_of(&self, slot: u32) -> usize {
        self.runs
            .iter()
            .filter(|r| holds(&r.holders, slot))
            .map(|r| r.blocks.len())
            .sum()
    }

    /// Runs currently in use (a lookup costs one map probe per run it crosses).
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len() - self.free_runs.len()
    }

    /// Estimated heap bytes: map buckets (entry + control byte), runs and their arrays.
    pub(crate) fn memory_bytes(&self) -> usize {
        fn map_bytes<K, V, S>(map: &HashMap<K, V, S>) -> usize {
            if map.capacity() == 0 {
                return 0;
            }
            let buckets = (map.capacity() * 8 / 7).next_power_of_two();
            buckets * (size_of::<(K, V)>() + 1)
        }
        let run_arrays: usize = self
            .runs
            .iter()
            .map(|r| {
                r.blocks.capacity() * 8
                    + if r.holders.spilled() {
                        r.holders.capacity() * 8
                    } else {
                        0
                    }
            })
            .sum();
        self.map.memory_bytes()
            + self.runs.capacity() * size_of::<Run>()
            + run_arrays
            + self.free_runs.capacity() * 4
            + map_bytes(&self.slot_of)
            + self.keys.capacity() * 8
            + self.free.capacity() * 4
    }

    /// Bytes of [`BlockTable::memory_bytes`] outside the heap (the map's own mapping).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.map.mapped_bytes()
    }

    /// Panics when the structure's invariants do not hold (for tests).
    pub(crate) fn check(&self) {
        let mut blocks = 0;
        for (id, run) in self.runs.iter().enumerate() {
            if self.free_runs.contains(&(id as u32)) {
                assert!(run.blocks.is_empty());
                continue;
            }
            assert!(!run.blocks.is_empty(), "live run {id} empty");
            assert!(!no_holders(&run.holders), "run {id} held by nobody");
            for (off, h) in run.blocks.iter().enumerate() {
                assert_eq!(self.locate(h), Some(run.loc(id as u32, off)));
            }
            blocks += run.blocks.len();
        }
        assert_eq!(blocks, self.map.len());
    }
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
        // Worker 0 holds 3 blocks, worker 100 holds 2, worker 149 holds 1.
        for (w, n) in [(0u64, 3u64), (100, 2), (149, 1)] {
            let slot = t.slot(w).unwrap();
            let chain: Vec<u64> = (1..=n).collect();
            assert_eq!(
                t.store(slot, None, &chain, |h| *h),
                Stored {
                    added: n as usize,
                    ..Stored::default()
                }
            );
            t.check();
        }
        let mut out = OverlapScores::default();
        t.find_matches_into(&[1, 2, 3, 4], &mut out);
        assert_eq!((out.get(0), out.get(100), out.get(149)), (3, 2, 1));
        assert_eq!(out.scores.len(), 3);
        assert_eq!(out.tree_blocks, 3);

        assert_eq!(t.remove(t.slot(100).unwrap(), &[2]), (1, 0));
        assert_eq!(t.remove(t.slot(100).unwrap(), &[2]), (0, 1));
        t.check();
        t.find_matches_into(&[1, 2, 3], &mut out);
        assert_eq!((out.get(0), out.get(100), out.get(149)), (3, 1, 1));

        assert_eq!(t.clear_slot(t.slot(0).unwrap()), 3);
        assert_eq!(t.len(), 1);
        t.unregister(100);
        t.unregister(149);
        assert_eq!(t.len(), 0);
        assert_eq!(t.high_slots, 84);
        t.check();
    }

    #[test]
    fn runs_split_where_holders_differ_and_merge_back() {
        let mut t = BlockTable::default();
        let (a, b) = (t.register(1), t.register(2));
        let chain: Vec<u64> = (1..=10).collect();
        t.store(a, None, &chain, |h| *h);
        assert_eq!(t.run_count(), 1);
        // b takes the first 6: split into [1..=6]{a,b} and [7..=10]{a}.
        t.store(b, None, &chain[..6], |h| *h);
        assert_eq!(t.run_count(), 2);
        t.check();
        // a evicts its tail 10, 9 (tail first) and then 3 (a hole).
        assert_eq!(t.remove(a, &[10, 9]), (2, 0));
        assert_eq!(t.remove(a, &[3]), (1, 0));
        t.check();
        let mut out = OverlapScores::default();
        t.find_matches_into(&chain, &mut out);
        assert_eq!((out.get(1), out.get(2)), (2, 6));
        // a stores 3 again: [3] merges into [1, 2] (their holders are equal again).
        t.store(a, Some(2), &[3], |h| *h);
        t.check();
        t.find_matches_into(&chain, &mut out);
        assert_eq!((out.get(1), out.get(2)), (8, 6));
        // b re-stores 7, 8: they join its run.
        t.store(b, Some(6), &[7, 8], |h| *h);
        t.check();
        t.find_matches_into(&chain, &mut out);
        assert_eq!((out.get(1), out.get(2)), (8, 8));
        assert_eq!(t.run_count(), 2, "[1..=3] + [4..=8] after merges");
        // A new branch off the middle appends to nothing shared: its own run.
        t.store(b, Some(4), &[40, 41], |h| *h);
        t.check();
        t.find_matches_into(&[1, 2, 3, 4, 40, 41], &mut out);
        assert_eq!((out.get(1), out.get(2)), (4, 6));
    }
}
