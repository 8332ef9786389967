//! The index's hash map from sequence hash to block location: open addressing with linear
//! probing over one array of 8-byte slots.
//!
//! Why not `HashMap`: the index is bound by cache misses on a map of millions of random keys.
//! A SwissTable keeps its control bytes and its entries in separate arrays, so a probe touches
//! two cache lines; here a slot is one word, eight to a line, so a probe that finds its key
//! (or the empty slot ending its search) nearly always touches one line. Sequence hashes are
//! already uniform, so a multiply is enough to pick the home slot (it only spreads small test
//! keys).
//!
//! A slot does not hold its key: it holds the block's location (run and position, which the
//! runs' arrays turn back into the key, see [`BlockKeys`]), the slot's distance from its home
//! and a 10-bit tag of the key. A probe skips slots whose distance or tag differ without
//! reading anything else; a slot that agrees is confirmed against the run's array (a lookup
//! reads that array next anyway). At the same bytes per block this packs twice the slots of a
//! key + location slot, so the table is half as full and probes and shifts are shorter. A key
//! whose free slot would lie 256 or more slots from its home (a flood of colliding keys) goes
//! to a small ordinary map beside the table instead.
//!
//! Deletion shifts later slots of the cluster back (no tombstones), so probe lengths never
//! degrade under the index's constant insert/remove churn. Events insert whole stretches of
//! blocks in one batch loop ([`BlockMap::insert_absent`]) after reading ahead the slots they
//! will probe when the table is larger than the L2 cache ([`BlockMap::touch`]); a table of
//! several MB asks for huge pages ([`SlotArray`]).

use std::collections::HashMap;
use std::mem::size_of;

use switchyard_protocol::kv::SequenceHash;

/// Bits of a block's position in a slot: a run holds at most [`MAX_RUN_BLOCKS`] blocks.
pub(crate) const POS_BITS: u32 = 18;
pub(crate) const POS_MASK: u32 = (1 << POS_BITS) - 1;
/// Longest run: positions are taken modulo 2^18, so a run's blocks need distinct ones.
pub(crate) const MAX_RUN_BLOCKS: usize = 1 << POS_BITS;
/// Bits of a run id in a slot.
const RUN_BITS: u32 = 28;
/// Most blocks the map holds. Every live run holds a block, so run ids stay below 2^28; at
/// ~40 bytes a block this bound (10 GB) is far past any real fleet, but it is a bound.
pub(crate) const MAX_BLOCKS: usize = (1 << RUN_BITS) - 1;
const TAG_BITS: u32 = 10;
const TAG_SHIFT: u32 = POS_BITS + RUN_BITS;
const DIST_SHIFT: u32 = TAG_SHIFT + TAG_BITS;
/// Largest distance a slot records; a key that would sit farther goes to the overflow map.
const MAX_DIST: usize = (1 << (64 - DIST_SHIFT)) - 1;
const LOC_MASK: u64 = (1 << TAG_SHIFT) - 1;

/// Where a block sits: its run and its position (index in the run = `pos - run.base`, both
/// modulo 2^[`POS_BITS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub run: u32,
    pub pos: u32,
}

/// The keys of the blocks the map points at: the map stores locations, the owner the keys.
pub(crate) trait BlockKeys {
    /// The key of the block at `loc`, if a block is there.
    fn key_at(&self, loc: Loc) -> Option<SequenceHash>;
    /// Every block (key and location); what a resized table is rebuilt from.
    fn for_each_block(&self, f: impl FnMut(SequenceHash, Loc));
}

/// An empty slot; every occupied slot has its tag's top bit set, so it is never 0.
const EMPTY: u64 = 0;

/// Entries a table of `slots` slots holds before it grows. A table under [`SPARSE_MAX_BYTES`]
/// (a core's L2 cache) is mostly cache-resident, where probing costs instructions and
/// mispredicted branches rather than misses: it stays at most an eighth full (64 bytes a
/// block), so a probe almost always stops at its first slot (measured on the replay: a 2 MB
/// table an eighth full beats a 1 MB one a quarter full by ~8% on a single worker's churn). A larger table stays at most a quarter full (32 bytes a
/// block) and one of [`DENSE_MIN_BYTES`] or more half full (16 bytes a block): there the cost
/// is cache and TLB misses, which a sparser (larger) table would only add to.
#[inline]
fn capacity_of(slots: usize) -> usize {
    let bytes = slots * size_of::<u64>();
    if bytes < SPARSE_MAX_BYTES {
        slots / 8
    } else if bytes < DENSE_MIN_BYTES {
        slots / 4
    } else {
        slots / 2
    }
}

const SPARSE_MAX_BYTES: usize = 2 << 20;

/// From this size on a table stays at most half full (16 bytes a block): it is far past the
/// L2 cache, so nearly every probe is a miss however short, and a smaller table misses less.
const DENSE_MIN_BYTES: usize = 8 << 20;

const MIN_CAPACITY: usize = 16;

/// Once the map holds `1 / GROW_TO_EXPECTED` of the expected entries, its next growth goes
/// straight to room for all of them, skipping the rebuilds in between (each costs a fresh
/// table's page faults and a random write per entry). Earlier would pin the whole room for
/// fleets whose workers share most blocks (far fewer live than expected).
const GROW_TO_EXPECTED: usize = 4;

/// Entries a rebuild reads ahead for at a time (see [`BlockMap::rebuild`]).
const REBUILD_BATCH: usize = 64;

/// [`BlockMap::touch`] reads ahead only in tables at least this large.
const TOUCH_MIN_BYTES: usize = 1 << 20;

/// Tables at least this large live in their own mapping with transparent huge pages
/// requested (see [`SlotArray`]).
const HUGE_TABLE_BYTES: usize = 4 << 20;

/// The slot array. Probes are random, so in a table of tens of MB nearly every probe also
/// misses the TLB and pays a page walk on top of its cache miss (with 4 KiB pages the TLB
/// covers a few MB). A large table is therefore its own anonymous mapping (zeroed by the
/// kernel) with huge pages requested, where the kernel grants them (Linux `madvise`
/// mode); if mapping fails it falls back to the heap.
#[derive(Debug)]
enum SlotArray {
    Heap(Vec<u64>),
    Mapped(memmap2::MmapMut),
}

impl Default for SlotArray {
    fn default() -> Self {
        SlotArray::Heap(Vec::new())
    }
}

impl SlotArray {
    fn zeroed(slots: usize) -> Self {
        let bytes = slots * size_of::<u64>();
        if bytes >= HUGE_TABLE_BYTES
            && let Ok(map) = memmap2::MmapOptions::new().len(bytes).map_anon()
        {
            // Only a hint: without huge pages the table works the same, just slower.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            return SlotArray::Mapped(map);
        }
        SlotArray::Heap(vec![EMPTY; slots])
    }

    /// Heap or mapped bytes held.
    fn bytes(&self) -> usize {
        match self {
            SlotArray::Heap(v) => v.capacity() * size_of::<u64>(),
            SlotArray::Mapped(m) => m.len(),
        }
    }
}

impl std::ops::Deref for SlotArray {
    type Target = [u64];
    #[inline]
    fn deref(&self) -> &[u64] {
        match self {
            SlotArray::Heap(v) => v,
            // A page-aligned mapping whose length is a multiple of the slot size.
            SlotArray::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }
}

impl std::ops::DerefMut for SlotArray {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u64] {
        match self {
            SlotArray::Heap(v) => v,
            SlotArray::Mapped(m) => bytemuck::cast_slice_mut(&mut m[..]),
        }
    }
}

/// The key's tag with its top bit set (so no occupied slot is 0), in place in a slot.
#[inline]
fn tag_bits(key: SequenceHash) -> u64 {
    let tag = (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> (64 - TAG_BITS)) | (1 << (TAG_BITS - 1));
    tag << TAG_SHIFT
}

#[inline]
fn loc_bits(loc: Loc) -> u64 {
    debug_assert!(loc.pos <= POS_MASK && (loc.run as u64) < 1 << RUN_BITS);
    u64::from(loc.pos & POS_MASK) | (u64::from(loc.run) << POS_BITS)
}

#[inline]
fn loc_of(slot: u64) -> Loc {
    Loc {
        run: ((slot & LOC_MASK) >> POS_BITS) as u32,
        pos: slot as u32 & POS_MASK,
    }
}

#[inline]
fn dist_of(slot: u64) -> usize {
    (slot >> DIST_SHIFT) as usize
}

/// A slot's distance field for `dist` (≤ [`MAX_DIST`]).
#[inline]
fn dist_bits(dist: usize) -> u64 {
    (dist as u64) << DIST_SHIFT
}

#[derive(Debug, Default)]
pub(crate) struct BlockMap {
    /// Power-of-two length (or empty before the first insert).
    slots: SlotArray,
    /// Entries in `slots` (not counting `overflow`).
    len: usize,
    /// `64 - log2(slots.len())`: the home slot is the top bits of the multiplied key.
    shift: u32,
    /// Keys that found no free slot within [`MAX_DIST`] of their home (normally none).
    overflow: HashMap<SequenceHash, Loc>,
    /// Entries the owner expects at most ([`BlockMap::expect`]); 0 when unknown.
    expected: usize,
}

/// The smallest table (a power of two) that holds `entries`.
fn slots_for(entries: usize) -> usize {
    let mut slots = MIN_CAPACITY;
    while capacity_of(slots) < entries {
        slots *= 2;
    }
    slots
}

/// The home slot of `key` in a table of `2^(64 - shift)` slots: the top bits of the
/// multiplied key.
#[inline]
fn home_slot(key: SequenceHash, shift: u32, mask: usize) -> usize {
    // The mask changes nothing (the shift leaves only in-range bits); it lets the compiler
    // see that `slots[home]` is in bounds.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize & mask
}

/// Walks the probe path of `key` (distance 0, 1, ... up to [`MAX_DIST`]) and returns the
/// first slot that is empty (`Err(slot, distance)`, or `Err(None)` past the last distance)
/// or for which `matches(slot_value)` holds among those with the key's tag and distance
/// (`Ok(slot)`).
#[inline]
fn probe(
    slots: &[u64],
    key: SequenceHash,
    shift: u32,
    mut matches: impl FnMut(u64) -> bool,
) -> Result<usize, Option<(usize, usize)>> {
    let mask = slots.len() - 1;
    let mut i = home_slot(key, shift, mask);
    let tag = tag_bits(key);
    for dist in 0..=MAX_DIST {
        let slot = slots[i];
        if slot == EMPTY {
            return Err(Some((i, dist)));
        }
        if slot & !LOC_MASK == tag | dist_bits(dist) && matches(slot) {
            return Ok(i);
        }
        i = (i + 1) & mask;
    }
    Err(None)
}

/// Empties slot `hole` and pulls later members of its cluster back into it where the hole
/// lies on their probe path (between their home and where they sit), so every key stays
/// reachable from its home without tombstones. The move is a select, not a branch.
#[inline]
fn shift_back(slots: &mut [u64], mut hole: usize) {
    let mask = slots.len() - 1;
    let mut next = (hole + 1) & mask;
    loop {
        let slot = slots[next];
        if slot == EMPTY {
            break;
        }
        let gap = next.wrapping_sub(hole) & mask;
        // Its home is at or before the hole: it moves back by `gap`.
        let moves = dist_of(slot) >= gap;
        // Not moving writes the slot back where it is.
        let moved = slot.wrapping_sub(dist_bits(gap));
        slots[if moves { hole } else { next }] = if moves { moved } else { slot };
        hole = if moves { next } else { hole };
        next = (next + 1) & mask;
    }
    slots[hole] = EMPTY;
}

impl BlockMap {
    /// Where `key` is, if present.
    #[inline]
    pub fn get(&self, key: &SequenceHash, keys: &(impl BlockKeys + ?Sized)) -> Option<Loc> {
        let key = *key;
        if !self.slots.is_empty()
            && let Ok(i) = probe(&self.slots, key, self.shift, |slot| {
                keys.key_at(loc_of(slot)) == Some(key)
            })
        {
            return Some(loc_of(self.slots[i]));
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.get(&key).copied()
        }
    }

    /// The slot holding `key` at `loc` (an exact match: a location has one slot).
    #[inline]
    fn find_at(&self, key: SequenceHash, loc: Loc) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let want = loc_bits(loc);
        probe(&self.slots, key, self.shift, |slot| slot & LOC_MASK == want).ok()
    }

    /// Puts `key` (known absent) at `loc`; the caller reserved room.
    #[inline]
    fn place(&mut self, key: SequenceHash, loc: Loc, free: Option<(usize, usize)>) {
        match free {
            Some((i, dist)) => {
                self.slots[i] = tag_bits(key) | dist_bits(dist) | loc_bits(loc);
                self.len += 1;
            }
            None => {
                self.overflow.insert(key, loc);
            }
        }
    }

    /// Inserts `keys` in order while they are absent, the `k`-th at `{run, pos: first_pos + k}`,
    /// and returns how many it inserted: it stops at the first key already present (left
    /// as it is), including one earlier in `keys`. The caller reserves room for all of them
    /// first and adds them to the run after (`keys` reads the run as it was). One probe per
    /// key, with the table's fields in registers: this is the loop a stored chain of new
    /// blocks spends its time in.
    #[inline]
    pub fn insert_absent<B>(
        &mut self,
        blocks: &[B],
        hash_of: impl Fn(&B) -> SequenceHash,
        run: u32,
        first_pos: u32,
        keys: &(impl BlockKeys + ?Sized),
    ) -> usize {
        debug_assert!(
            self.len() + blocks.len() <= self.capacity(),
            "insert before reserve"
        );
        let shift = self.shift;
        let mut inserted = 0;
        for (k, block) in blocks.iter().enumerate() {
            let key = hash_of(block);
            // A matching slot is confirmed against the run arrays, or against this batch for
            // the slots it placed itself (not in the run yet).
            let confirm = |slot: u64| {
                let loc = loc_of(slot);
                let in_batch = loc.pos.wrapping_sub(first_pos) & POS_MASK;
                if loc.run == run && (in_batch as usize) < k {
                    hash_of(&blocks[in_batch as usize]) == key
                } else {
                    keys.key_at(loc) == Some(key)
                }
            };
            let free = match probe(&self.slots, key, shift, confirm) {
                Ok(_) => break,
                Err(free) => free,
            };
            if !self.overflow.is_empty() && self.overflow.contains_key(&key) {
                break;
            }
            let loc = Loc {
                run,
                pos: first_pos.wrapping_add(k as u32) & POS_MASK,
            };
            self.place(key, loc, free);
            inserted += 1;
        }
        inserted
    }

    /// Removes every `(key, loc)` of `entries` that is present (the table's fields stay in
    /// registers across the whole batch). Returns how many were removed.
    #[inline]
    pub fn remove_all(&mut self, entries: impl IntoIterator<Item = (SequenceHash, Loc)>) -> usize {
        let shift = self.shift;
        let mut removed = 0;
        let mut overflowed = 0;
        for (key, loc) in entries {
            let want = loc_bits(loc);
            let slots = &mut *self.slots;
            if !slots.is_empty()
                && let Ok(hole) = probe(slots, key, shift, |slot| slot & LOC_MASK == want)
            {
                shift_back(slots, hole);
                removed += 1;
            } else if !self.overflow.is_empty() && self.overflow.remove(&key).is_some() {
                overflowed += 1;
            }
        }
        self.len -= removed;
        removed + overflowed
    }

    /// Moves `key` from `old` to `new`; returns whether it was at `old`.
    #[inline]
    pub fn repoint(&mut self, key: SequenceHash, old: Loc, new: Loc) -> bool {
        if let Some(i) = self.find_at(key, old) {
            self.slots[i] = (self.slots[i] & !LOC_MASK) | loc_bits(new);
            return true;
        }
        match self.overflow.get_mut(&key) {
            Some(loc) if *loc == old => {
                *loc = new;
                true
            }
            _ => false,
        }
    }

    /// Reads the home slot of each key so their cache misses overlap (independent loads run
    /// in parallel) before a loop that probes them one after another.
    /// A table that fits in a core's L2 cache comfortably gains nothing (its loads are short
    /// and overlap anyway), so this does nothing there.
    #[inline]
    pub fn touch(&self, keys: impl Iterator<Item = SequenceHash>) {
        if self.slots.len() * size_of::<u64>() < TOUCH_MIN_BYTES {
            return;
        }
        self.touch_always(keys);
    }

    #[inline]
    fn touch_always(&self, keys: impl Iterator<Item = SequenceHash>) {
        let (slots, shift) = (&*self.slots, self.shift);
        let mask = slots.len() - 1;
        let mut seen = 0;
        for key in keys {
            seen ^= slots[home_slot(key, shift, mask)];
        }
        std::hint::black_box(seen);
    }

    /// Expects at most about `entries` entries: once the map holds a quarter of that, its next
    /// growth goes straight to room for all of them (no rehash at every doubling on the way).
    /// Nothing is allocated now, so a generous hint costs nothing while the map is small.
    pub fn expect(&mut self, entries: usize) {
        self.expected = entries;
    }

    pub fn len(&self) -> usize {
        self.len + self.overflow.len()
    }

    /// Entries that fit before the map grows (an eighth, a quarter or half of the slots).
    pub fn capacity(&self) -> usize {
        capacity_of(self.slots.len())
    }

    /// Bytes of [`BlockMap::memory_bytes`] held in a mapping of their own, not the heap.
    pub fn mapped_bytes(&self) -> usize {
        match &self.slots {
            SlotArray::Heap(_) => 0,
            SlotArray::Mapped(m) => m.len(),
        }
    }

    /// Bytes held (heap or mapped).
    pub fn memory_bytes(&self) -> usize {
        let overflow = if self.overflow.capacity() == 0 {
            0
        } else {
            (self.overflow.capacity() * 8 / 7).next_power_of_two() * (size_of::<(u64, Loc)>() + 1)
        };
        self.slots.bytes() + overflow
    }

    /// Makes room for `additional` more entries without growing in between (`keys` has every
    /// entry, to rebuild from).
    pub fn reserve(&mut self, additional: usize, keys: &impl BlockKeys) {
        let needed = self.len() + additional;
        if needed <= self.capacity() {
            return;
        }
        let mut slots = self.slots.len().max(MIN_CAPACITY);
        while capacity_of(slots) < needed {
            slots *= 2;
        }
        if self.expected > needed && needed * GROW_TO_EXPECTED >= self.expected {
            slots = slots.max(slots_for(self.expected));
        }
        self.rebuild(slots, keys);
    }

    /// Shrinks to the smallest table that holds `min_entries` (and the current entries).
    pub fn shrink_to(&mut self, min_entries: usize, keys: &impl BlockKeys) {
        let slots = slots_for(self.len().max(min_entries));
        if slots < self.slots.len() {
            self.rebuild(slots, keys);
        }
    }

    /// A fresh table of `slot_count` slots holding every block of `keys` (which are exactly
    /// the map's entries).
    fn rebuild(&mut self, slot_count: usize, keys: &impl BlockKeys) {
        debug_assert!(slot_count.is_power_of_two());
        self.slots = SlotArray::zeroed(0);
        self.slots = SlotArray::zeroed(slot_count);
        self.shift = 64 - slot_count.trailing_zeros();
        self.len = 0;
        self.overflow = HashMap::new();
        // Entries go in by batches whose home slots are read first, so the misses of a
        // batch overlap (a large table's inserts are random writes, each a miss).
        let mut batch = [(0, Loc::default()); REBUILD_BATCH];
        let mut n = 0;
        keys.for_each_block(|key, loc| {
            batch[n] = (key, loc);
            n += 1;
            if n == REBUILD_BATCH {
                self.place_fresh(&batch);
                n = 0;
            }
        });
        self.place_fresh(&batch[..n]);
    }

    /// Places `entries`, known absent, in a table with room for them.
    fn place_fresh(&mut self, entries: &[(SequenceHash, Loc)]) {
        let shift = self.shift;
        self.touch_always(entries.iter().map(|e| e.0));
        for &(key, loc) in entries {
            let free = probe(&self.slots, key, shift, |_| false).err().flatten();
            self.place(key, loc, free);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// The owner's side in tests: which key is at which location.
    #[derive(Default)]
    struct Keys(HashMap<Loc, SequenceHash>);

    impl BlockKeys for Keys {
        fn key_at(&self, loc: Loc) -> Option<SequenceHash> {
            self.0.get(&loc).copied()
        }
        fn for_each_block(&self, mut f: impl FnMut(SequenceHash, Loc)) {
            for (&loc, &key) in &self.0 {
                f(key, loc);
            }
        }
    }

    /// A map and its keys, kept in step, checked against a plain `HashMap`.
    #[derive(Default)]
    struct Model {
        map: BlockMap,
        keys: Keys,
        reference: HashMap<SequenceHash, Loc>,
        next_run: u32,
    }

    impl Model {
        /// Inserts `chain` in a fresh run (at positions from `first_pos`) the way `store` does.
        fn insert_chain(&mut self, chain: &[u64], first_pos: u32) -> usize {
            let run = self.next_run;
            self.next_run += 1;
            self.map.reserve(chain.len(), &self.keys);
            let n = self
                .map
                .insert_absent(chain, |k| *k, run, first_pos, &self.keys);
            // The leading keys up to the first one present (or repeated).
            let mut expected = 0;
            for (k, &key) in chain.iter().enumerate() {
                if self.reference.contains_key(&key) {
                    break;
                }
                let loc = Loc {
                    run,
                    pos: first_pos.wrapping_add(k as u32) & POS_MASK,
                };
                self.reference.insert(key, loc);
                self.keys.0.insert(loc, key);
                expected += 1;
            }
            assert_eq!(n, expected);
            n
        }

        fn remove(&mut self, key: u64) -> bool {
            match self.reference.remove(&key) {
                Some(loc) => {
                    self.keys.0.remove(&loc);
                    assert_eq!(self.map.remove_all([(key, loc)]), 1);
                    true
                }
                None => false,
            }
        }

        /// Moves `key` to a fresh location.
        fn repoint(&mut self, key: u64) {
            let Some(&old) = self.reference.get(&key) else {
                return;
            };
            let new = Loc {
                run: self.next_run,
                pos: 7,
            };
            self.next_run += 1;
            assert!(self.map.repoint(key, old, new));
            self.keys.0.remove(&old);
            self.keys.0.insert(new, key);
            self.reference.insert(key, new);
        }

        fn check(&self) {
            assert_eq!(self.map.len(), self.reference.len());
            for (k, v) in &self.reference {
                assert_eq!(self.map.get(k, &self.keys), Some(*v), "key {k}");
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// `insert_absent` of a chain, locations `{fresh run, first_pos + k}`.
        InsertChain(Vec<u64>, u32),
        Remove(u64),
        Repoint(u64),
        Get(u64),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys (and 0) so operations collide, clusters form and wrap around.
        let key = prop_oneof![Just(0u64), 0u64..48, any::<u64>()];
        prop_oneof![
            4 => (proptest::collection::vec(key.clone(), 0..12), any::<u32>())
                .prop_map(|(keys, pos)| Op::InsertChain(keys, pos)),
            3 => key.clone().prop_map(Op::Remove),
            1 => key.clone().prop_map(Op::Repoint),
            2 => key.prop_map(Op::Get),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::InsertChain(keys, pos) => {
                        m.insert_chain(&keys, pos);
                    }
                    Op::Remove(k) => {
                        let held = m.reference.contains_key(&k);
                        prop_assert_eq!(m.remove(k), held);
                    }
                    Op::Repoint(k) => m.repoint(k),
                    Op::Get(k) => {
                        prop_assert_eq!(m.map.get(&k, &m.keys), m.reference.get(&k).copied());
                    }
                    Op::Shrink => m.map.shrink_to(0, &m.keys),
                }
                m.check();
            }
        }
    }

    /// Keys whose multiplied value has the same top 32 bits share a home slot in every table
    /// of up to 2^32 slots.
    fn colliding_keys(n: u64) -> Vec<u64> {
        // The inverse of the home multiplier modulo 2^64 (Newton's iteration).
        let m: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut inv = m;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        }
        assert_eq!(m.wrapping_mul(inv), 1);
        (1..=n)
            .map(|i| (0xABCD_1234u64 << 32 | i).wrapping_mul(inv))
            .collect()
    }

    #[test]
    fn keys_too_far_from_home_overflow_and_stay_exact() {
        let mut m = Model::default();
        let keys = colliding_keys(600);
        for chunk in keys.chunks(100) {
            m.insert_chain(chunk, 0);
        }
        m.check();
        assert!(
            m.map.overflow.len() >= 600 - MAX_DIST - 1,
            "{} in overflow",
            m.map.overflow.len()
        );
        // Removing near the home pulls the table's tail back; overflowed keys stay reachable.
        for &k in keys.iter().step_by(3) {
            assert!(m.remove(k));
        }
        m.check();
        for &k in keys.iter().skip(1).step_by(3) {
            m.repoint(k);
        }
        m.check();
        // A rebuild places what fits within reach of home again.
        m.map.shrink_to(0, &m.keys);
        m.check();
        assert_eq!(m.insert_chain(&keys[1..3], 0), 0, "already present");
    }

    #[test]
    fn a_table_large_enough_to_be_mapped_behaves_like_a_small_one() {
        let mut m = Model::default();
        let keys: Vec<u64> = (1..=200_000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9))
            .collect();
        for chunk in keys.chunks(1000) {
            assert_eq!(m.insert_chain(chunk, 0), 1000);
        }
        assert!(matches!(m.map.slots, SlotArray::Mapped(_)));
        assert!(m.map.memory_bytes() >= HUGE_TABLE_BYTES);
        for &k in &keys[..150_000] {
            assert!(m.remove(k));
        }
        assert!(!m.remove(keys[0]), "already gone");
        m.map.shrink_to(0, &m.keys);
        assert!(matches!(m.map.slots, SlotArray::Heap(_)));
        m.check();
        for &k in &keys[..10] {
            assert_eq!(m.map.get(&k, &m.keys), None);
        }
        assert_eq!(m.map.len(), 50_000);
    }

    #[test]
    fn grows_shrinks_and_keeps_every_key_reachable() {
        let mut m = Model::default();
        let keys: Vec<u64> = (1..=10_000u64).map(|k| k * 0x1_0000_0001).collect();
        for chunk in keys.chunks(100) {
            m.insert_chain(chunk, POS_MASK - 50);
        }
        assert!(m.map.capacity() >= 10_000 && m.map.len() == 10_000);
        for &k in keys.iter().step_by(2) {
            assert!(m.remove(k));
        }
        m.map.shrink_to(0, &m.keys);
        assert!(m.map.capacity() < 10_000 && m.map.capacity() >= 5_000);
        m.check();
        m.repoint(keys[1]);
        m.check();
    }

    #[test]
    fn a_repeated_key_in_one_chain_stops_the_insert() {
        let mut m = Model::default();
        assert_eq!(m.insert_chain(&[5, 6, 5, 7], 3), 2);
        m.check();
    }
}
