//! The index's hash map from sequence hash to block location: open addressing with linear
//! probing over one array of 16-byte slots.
//!
//! Why not `HashMap`: the index is bound by cache misses on a map of millions of random keys.
//! A SwissTable keeps its control bytes and its entries in separate arrays, so a probe touches
//! two cache lines; here key and value share one slot, so a probe that finds its key (or the
//! empty slot ending its search) usually touches one line. Sequence hashes are already uniform,
//! so a multiply is enough to pick the home slot (it only spreads small test keys).
//!
//! Deletion shifts later slots of the cluster back (no tombstones), so probe lengths never
//! degrade under the index's constant insert/remove churn. Events insert and remove whole
//! stretches of blocks in batch loops ([`BlockMap::insert_absent`], [`BlockMap::remove_all`]),
//! after reading ahead the slots they will probe when the table is larger than the L2 cache
//! ([`BlockMap::touch`]); a table of several MB asks for huge pages ([`SlotArray`]).

use std::mem::size_of;

use switchyard_protocol::kv::SequenceHash;

/// Where a block sits: its run and its position (index in the run = `pos - run.base`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Loc {
    pub run: u32,
    pub pos: u32,
}

/// An empty slot has this key; the real key 0 lives in `zero` instead.
const EMPTY: SequenceHash = 0;

/// Entries a table of `slots` slots holds before it grows. A table of up to
/// [`SPARSE_MAX_BYTES`] fits in a core's L2 cache, where probing costs instructions and
/// mispredicted branches rather than misses: it stays at most a quarter full, so a probe
/// usually stops at its first slot. A larger table stays at most half full: there the cost
/// is cache and TLB misses, which a sparser (larger) table would only add to.
#[inline]
fn capacity_of(slots: usize) -> usize {
    if slots * size_of::<Slot>() <= SPARSE_MAX_BYTES {
        slots / 4
    } else {
        slots / 2
    }
}

const SPARSE_MAX_BYTES: usize = 1 << 20;

const MIN_CAPACITY: usize = 16;

/// A key and its packed location. A plain array so a new table is one zeroed allocation
/// (the allocator hands out zero pages) instead of a loop writing every slot.
type Slot = [u64; 2];

/// [`BlockMap::touch`] reads ahead only in tables larger than this.
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
    Heap(Vec<Slot>),
    Mapped(memmap2::MmapMut),
}

impl Default for SlotArray {
    fn default() -> Self {
        SlotArray::Heap(Vec::new())
    }
}

impl SlotArray {
    fn zeroed(slots: usize) -> Self {
        let bytes = slots * size_of::<Slot>();
        if bytes >= HUGE_TABLE_BYTES
            && let Ok(map) = memmap2::MmapOptions::new().len(bytes).map_anon()
        {
            // Only a hint: without huge pages the table works the same, just slower.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            return SlotArray::Mapped(map);
        }
        SlotArray::Heap(vec![[EMPTY, 0]; slots])
    }

    /// Heap or mapped bytes held.
    fn bytes(&self) -> usize {
        match self {
            SlotArray::Heap(v) => v.capacity() * size_of::<Slot>(),
            SlotArray::Mapped(m) => m.len(),
        }
    }
}

impl std::ops::Deref for SlotArray {
    type Target = [Slot];
    #[inline]
    fn deref(&self) -> &[Slot] {
        match self {
            SlotArray::Heap(v) => v,
            // A page-aligned mapping whose length is a multiple of the slot size.
            SlotArray::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }
}

impl std::ops::DerefMut for SlotArray {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Slot] {
        match self {
            SlotArray::Heap(v) => v,
            SlotArray::Mapped(m) => bytemuck::cast_slice_mut(&mut m[..]),
        }
    }
}

#[inline]
fn slot_of(key: SequenceHash, loc: Loc) -> Slot {
    [key, u64::from(loc.run) | (u64::from(loc.pos) << 32)]
}

#[inline]
fn loc_of(slot: &Slot) -> Loc {
    Loc {
        run: slot[1] as u32,
        pos: (slot[1] >> 32) as u32,
    }
}

#[derive(Debug, Default)]
pub(crate) struct BlockMap {
    /// Power-of-two length (or empty before the first insert).
    slots: SlotArray,
    /// Entries in `slots` (not counting `zero`).
    len: usize,
    /// `64 - log2(slots.len())`: the home slot is the top bits of the multiplied key.
    shift: u32,
    zero: Option<Loc>,
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

/// The first slot from `start` on (cyclically) that holds `key` or is empty, and whether it
/// holds `key` (`key` ≠ 0). The table always has an empty slot, so this ends.
#[inline]
fn probe(slots: &[Slot], start: usize, key: SequenceHash) -> (usize, bool) {
    let mask = slots.len() - 1;
    let mut i = start;
    loop {
        let slot_key = slots[i][0];
        if slot_key == key || slot_key == EMPTY {
            return (i, slot_key == key);
        }
        i = (i + 1) & mask;
    }
}

/// Empties slot `hole` and pulls later members of its cluster back into it where the hole
/// lies on their probe path (between their home and where they sit), so every key stays
/// reachable from its home without tombstones. The move is a select, not a branch.
#[inline]
fn shift_back(slots: &mut [Slot], mut hole: usize, shift: u32) {
    let mask = slots.len() - 1;
    let mut next = (hole + 1) & mask;
    loop {
        let slot = slots[next];
        if slot[0] == EMPTY {
            break;
        }
        let home = home_slot(slot[0], shift, mask);
        // Distance from home to `next` vs to `hole`, cyclically.
        let moves = (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask);
        // Not moving writes the slot back where it is.
        slots[if moves { hole } else { next }] = slot;
        hole = if moves { next } else { hole };
        next = (next + 1) & mask;
    }
    slots[hole] = [EMPTY, 0];
}

impl BlockMap {
    #[inline]
    fn home(&self, key: SequenceHash) -> usize {
        home_slot(key, self.shift, self.mask())
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot holding `key`, if any (`key` ≠ 0).
    #[inline]
    fn find(&self, key: SequenceHash) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let slots = &*self.slots;
        let (i, found) = probe(slots, home_slot(key, self.shift, slots.len() - 1), key);
        found.then_some(i)
    }

    /// Inserts `keys` in order while they are absent, the `k`-th at `{run, pos: first_pos + k}`,
    /// and returns how many it inserted: it stops at the first key already present (left
    /// as it is). The caller reserves room for all of them first. One probe per key, with the
    /// table's fields in registers: this is the loop a stored chain of new blocks spends
    /// its time in.
    #[inline]
    pub fn insert_absent<B>(
        &mut self,
        keys: &[B],
        hash_of: impl Fn(&B) -> SequenceHash,
        run: u32,
        first_pos: u32,
    ) -> usize {
        debug_assert!(
            self.len + keys.len() <= self.capacity(),
            "insert before reserve"
        );
        let shift = self.shift;
        let slots = &mut *self.slots;
        let mask = slots.len().wrapping_sub(1);
        // Inserted, and of those in `slots` (`len` does not count the key 0).
        let (mut inserted, mut filled) = (0, 0);
        for (k, block) in keys.iter().enumerate() {
            let key = hash_of(block);
            let loc = Loc {
                run,
                pos: first_pos.wrapping_add(k as u32),
            };
            if key == EMPTY {
                if self.zero.is_some() {
                    break;
                }
                self.zero = Some(loc);
                inserted += 1;
                continue;
            }
            let (i, present) = probe(slots, home_slot(key, shift, mask), key);
            if present {
                break;
            }
            slots[i] = slot_of(key, loc);
            filled += 1;
            inserted += 1;
        }
        self.len += filled;
        inserted
    }

    /// Removes every key of `keys` that is present (the table's fields stay in registers
    /// across the whole batch). Returns how many were removed.
    #[inline]
    pub fn remove_all(&mut self, keys: &[SequenceHash]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let shift = self.shift;
        let slots = &mut *self.slots;
        let mask = slots.len().wrapping_sub(1);
        // Slot entries removed (`len` does not count the key 0, which lives in `zero`).
        let (mut removed, mut zero) = (0, 0);
        for &key in keys {
            if key == EMPTY {
                zero += usize::from(self.zero.take().is_some());
                continue;
            }
            if mask == usize::MAX {
                continue;
            }
            let (hole, found) = probe(slots, home_slot(key, shift, mask), key);
            if !found {
                continue;
            }
            removed += 1;
            shift_back(slots, hole, shift);
        }
        self.len -= removed;
        removed + zero
    }

    /// Reads the home slot of each key so their cache misses overlap (independent loads run
    /// in parallel) before a loop that probes them one after another.
    /// A table that fits in a core's L2 cache comfortably gains nothing (its loads are short
    /// and overlap anyway), so this does nothing there.
    #[inline]
    pub fn touch(&self, keys: impl Iterator<Item = SequenceHash>) {
        if self.slots.len() * size_of::<Slot>() <= TOUCH_MIN_BYTES {
            return;
        }
        let (slots, shift) = (&*self.slots, self.shift);
        let mask = slots.len() - 1;
        let mut seen = 0;
        for key in keys {
            seen ^= slots[home_slot(key, shift, mask)][0];
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
        self.len + usize::from(self.zero.is_some())
    }

    /// Entries that fit before the map grows (a quarter or half of the slots).
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
        self.slots.bytes()
    }

    #[inline]
    pub fn get(&self, key: &SequenceHash) -> Option<Loc> {
        if *key == EMPTY {
            return self.zero;
        }
        self.find(*key).map(|i| loc_of(&self.slots[i]))
    }

    /// Replaces the location of `key` if it is present.
    #[inline]
    pub fn set(&mut self, key: SequenceHash, loc: Loc) {
        if key == EMPTY {
            if let Some(zero) = self.zero.as_mut() {
                *zero = loc;
            }
        } else if let Some(i) = self.find(key) {
            self.slots[i] = slot_of(key, loc);
        }
    }

    /// Inserts or replaces; returns the previous value (the table uses `insert_absent`).
    #[cfg(test)]
    pub fn insert(&mut self, key: SequenceHash, loc: Loc) -> Option<Loc> {
        if key == EMPTY {
            return self.zero.replace(loc);
        }
        self.reserve(1);
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot[0] == key {
                let old = loc_of(slot);
                *slot = slot_of(key, loc);
                return Some(old);
            }
            if slot[0] == EMPTY {
                *slot = slot_of(key, loc);
                self.len += 1;
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &SequenceHash) -> Option<Loc> {
        if *key == EMPTY {
            return self.zero.take();
        }
        let hole = self.find(*key)?;
        let removed = loc_of(&self.slots[hole]);
        self.len -= 1;
        let shift = self.shift;
        shift_back(&mut self.slots, hole, shift);
        Some(removed)
    }

    /// Makes room for `additional` more entries without growing in between.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed <= self.capacity() {
            return;
        }
        let mut slots = self.slots.len().max(MIN_CAPACITY);
        while capacity_of(slots) < needed {
            slots *= 2;
        }
        if self.expected > needed && needed * 4 >= self.expected {
            slots = slots.max(slots_for(self.expected));
        }
        self.rebuild(slots);
    }

    /// Shrinks to the smallest table that holds `min_entries` (and the current entries).
    pub fn shrink_to(&mut self, min_entries: usize) {
        let slots = slots_for(self.len.max(min_entries));
        if slots < self.slots.len() {
            self.rebuild(slots);
        }
    }

    fn rebuild(&mut self, slot_count: usize) {
        debug_assert!(slot_count.is_power_of_two());
        let old = std::mem::replace(&mut self.slots, SlotArray::zeroed(slot_count));
        self.shift = 64 - slot_count.trailing_zeros();
        let mask = self.mask();
        for &slot in old.iter().filter(|s| s[0] != EMPTY) {
            let mut i = self.home(slot[0]);
            while self.slots[i][0] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// Every entry, in no particular order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (SequenceHash, Loc)> + '_ {
        self.zero.map(|loc| (EMPTY, loc)).into_iter().chain(
            self.slots
                .iter()
                .filter(|s| s[0] != EMPTY)
                .map(|s| (s[0], loc_of(s))),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn loc(v: u32) -> Loc {
        Loc { run: v, pos: !v }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        /// `insert_absent` of a chain, locations `{run, first_pos + k}`.
        InsertChain(Vec<u64>, u32, u32),
        RemoveAll(Vec<u64>),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys (and 0) so operations collide, clusters form and wrap around.
        let key = prop_oneof![Just(0u64), 0u64..48, any::<u64>()];
        prop_oneof![
            4 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => key.clone().prop_map(Op::Remove),
            2 => (proptest::collection::vec(key.clone(), 0..12), any::<u32>(), any::<u32>())
                .prop_map(|(keys, run, pos)| Op::InsertChain(keys, run, pos)),
            2 => proptest::collection::vec(key, 0..12).prop_map(Op::RemoveAll),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut map = BlockMap::default();
            let mut reference = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(map.insert(k, loc(v)), reference.insert(k, loc(v)));
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), reference.remove(&k)),
                    Op::InsertChain(keys, run, first_pos) => {
                        map.reserve(keys.len());
                        let inserted = map.insert_absent(&keys, |k| *k, run, first_pos);
                        // The leading keys up to the first one present (or repeated).
                        let mut expected = 0;
                        for (k, &key) in keys.iter().enumerate() {
                            if reference.contains_key(&key) {
                                break;
                            }
                            let pos = first_pos.wrapping_add(k as u32);
                            reference.insert(key, Loc { run, pos });
                            expected += 1;
                        }
                        prop_assert_eq!(inserted, expected);
                    }
                    Op::RemoveAll(keys) => {
                        let expected = keys.iter().filter(|k| reference.remove(k).is_some()).count();
                        prop_assert_eq!(map.remove_all(&keys), expected);
                    }
                    Op::Shrink => map.shrink_to(0),
                }
                prop_assert_eq!(map.len(), reference.len());
                for (k, v) in &reference {
                    prop_assert_eq!(map.get(k), Some(*v));
                }
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by_key(|e| e.0);
                let mut expected: Vec<_> = reference.iter().map(|(k, v)| (*k, *v)).collect();
                expected.sort_by_key(|e| e.0);
                prop_assert_eq!(entries, expected);
            }
        }
    }

    #[test]
    fn a_table_large_enough_to_be_mapped_behaves_like_a_small_one() {
        let mut map = BlockMap::default();
        let keys: Vec<u64> = (1..=200_000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9))
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(map.insert(k, loc(i as u32)), None);
        }
        assert!(matches!(map.slots, SlotArray::Mapped(_)));
        assert!(map.memory_bytes() >= HUGE_TABLE_BYTES);
        assert_eq!(map.remove_all(&keys[..150_000]), 150_000);
        assert_eq!(map.remove_all(&keys[..10]), 0, "already gone");
        map.shrink_to(0);
        assert!(matches!(map.slots, SlotArray::Heap(_)));
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(
                map.get(&k),
                (i >= 150_000).then(|| loc(i as u32)),
                "key {k}"
            );
        }
        assert_eq!(map.len(), 50_000);
    }

    #[test]
    fn grows_shrinks_and_keeps_every_key_reachable() {
        let mut map = BlockMap::default();
        let keys: Vec<u64> = (1..=10_000u64).map(|k| k * 0x1_0000_0001).collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(map.insert(k, loc(i as u32)), None);
        }
        assert!(map.capacity() >= 10_000 && map.len() == 10_000);
        for &k in keys.iter().step_by(2) {
            assert!(map.remove(&k).is_some());
        }
        map.shrink_to(0);
        assert!(map.capacity() < 10_000 && map.capacity() >= 5_000);
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(map.get(&k).is_some(), i % 2 == 1, "key {k}");
        }
        map.set(keys[1], loc(7));
        assert_eq!(map.get(&keys[1]), Some(loc(7)));
    }
}
