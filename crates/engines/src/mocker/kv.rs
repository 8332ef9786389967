//! The mocker's paged KV cache: a fixed pool of blocks, prefix caching, LRU eviction and the
//! KV events a real engine (vLLM) would publish about them.
//!
//! A block holds `block_size` tokens of one sequence. Each sequence owns a [`KvAllocation`]
//! (its block table). Blocks are in one of three states:
//!
//! - **free**: no content; handed out first;
//! - **in use** (`refcount > 0`): in some block table. Once full and computed, a block is
//!   *registered* in the prefix cache under its sequence hash (which identifies the block and
//!   everything before it), and other sequences whose prompt starts the same way share it;
//! - **evictable** (`refcount == 0`, registered): still cached, in an LRU list. When the free
//!   list is empty, the least recently released one is evicted (its hash leaves the cache).
//!
//! Like vLLM, a sequence releases its blocks last-first, so a sequence's tail is evicted before
//! its head, and a block's descendants are always evicted before it (no orphaned blocks). When
//! two sequences compute the same block concurrently, the second one to finish it switches to
//! the registered copy and frees its own, so each hash is cached at most once and the event
//! stream describes the cache exactly.
//!
//! Events ([`KvCacheEventData`]) are recorded only when asked for ([`KvManager::new`]'s
//! `record_events`): `Stored` when blocks are registered (consecutive blocks of one sequence in
//! one event, parented on the block before them), `Removed` on eviction (consecutive evictions
//! in one event), `Cleared` on [`KvManager::reset_prefix_cache`]. The scheduler drains them
//! after each step and numbers them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use switchyard_protocol::TokenId;
use switchyard_protocol::kv::{KvCacheEventData, SequenceHash, StoredBlock};

/// Index of a block in the pool.
type BlockId = u32;

/// End of the intrusive LRU list.
const NIL: BlockId = BlockId::MAX;

/// Sequence hashes are already uniformly distributed (XXH3 output): mixing them again would
/// only cost time, so the map folds them with one multiply.
#[derive(Default)]
struct SequenceHashHasher(u64);

impl Hasher for SequenceHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `SequenceHash` keys; stay correct for anything else.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

type HashToBlock = HashMap<SequenceHash, BlockId, BuildHasherDefault<SequenceHashHasher>>;

/// What the prefix cache knows about a registered block.
#[derive(Clone, Copy, Debug)]
struct Registered {
    block: StoredBlock,
    parent: Option<SequenceHash>,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    refcount: u32,
    registered: Option<Registered>,
    /// Neighbours in the LRU list while evictable.
    lru_prev: BlockId,
    lru_next: BlockId,
}

/// The blocks one sequence holds, in token order. Deliberately not `Clone`: exactly one owner.
#[derive(Debug, Default)]
pub struct KvAllocation {
    blocks: Vec<BlockId>,
    /// Leading blocks already offered to the prefix cache (registered, or found registered).
    registered: usize,
}

impl KvAllocation {
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }
}

/// The engine's pool of KV blocks and its prefix cache.
#[derive(Debug)]
pub struct KvManager {
    block_size: usize,
    prefix_caching: bool,
    pool: Vec<Block>,
    /// Blocks with no content.
    free: Vec<BlockId>,
    /// Evictable blocks, least recently released at the head.
    lru_head: BlockId,
    lru_tail: BlockId,
    evictable: usize,
    /// Blocks with `refcount > 0`.
    used: usize,
    cached: HashToBlock,
    /// Events not yet drained; `None` when nobody listens.
    events: Option<Vec<KvCacheEventData>>,
    /// Token ids of the blocks in the recorded `Stored` events, in event order (`block_size`
    /// per block); `None` unless asked for with [`KvManager::record_block_tokens`].
    event_tokens: Option<Vec<TokenId>>,
}

impl KvManager {
    /// `block_size` and `total_blocks` are validated by the engine config (non-zero, at most
    /// `u32::MAX - 1` blocks).
    pub fn new(
        block_size: usize,
        total_blocks: usize,
        prefix_caching: bool,
        record_events: bool,
    ) -> Self {
        let total = total_blocks.min(NIL as usize);
        KvManager {
            block_size: block_size.max(1),
            prefix_caching,
            pool: vec![
                Block {
                    refcount: 0,
                    registered: None,
                    lru_prev: NIL,
                    lru_next: NIL,
                };
                total
            ],
            // Popped from the end: block 0 is handed out first.
            free: (0..total as BlockId).rev().collect(),
            lru_head: NIL,
            lru_tail: NIL,
            evictable: 0,
            used: 0,
            cached: HashToBlock::default(),
            events: record_events.then(Vec::new),
            event_tokens: None,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn prefix_caching(&self) -> bool {
        self.prefix_caching
    }

    pub fn total_blocks(&self) -> usize {
        self.pool.len()
    }

    /// Blocks held by at least one sequence.
    pub fn used_blocks(&self) -> usize {
        self.used
    }

    /// Blocks registered in the prefix cache, in use or evictable.
    pub fn cached_blocks(&self) -> usize {
        self.cached.len()
    }

    /// Blocks a new allocation can take: free plus evictable.
    pub fn available_blocks(&self) -> usize {
        self.free.len() + self.evictable
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// How many leading blocks of `hashes` are in the prefix cache (0 without prefix caching).
    pub fn cached_prefix_len(&self, hashes: &[StoredBlock]) -> usize {
        if !self.prefix_caching {
            return 0;
        }
        hashes
            .iter()
            .take_while(|b| self.cached.contains_key(&b.sequence_hash))
            .count()
    }

    /// Starts an empty allocation: shares the cached blocks of `hit` (a prefix found by
    /// [`Self::cached_prefix_len`]) and adds fresh blocks up to `tokens` tokens. Returns false,
    /// changing nothing, when the pool lacks the blocks.
    pub fn allocate_with_prefix(
        &mut self,
        alloc: &mut KvAllocation,
        hit: &[StoredBlock],
        tokens: usize,
    ) -> bool {
        debug_assert!(alloc.blocks.is_empty());
        let needed = self.blocks_for(tokens).saturating_sub(hit.len());
        // Hit blocks that are evictable now stop being available once shared.
        let hit_evictable = hit
            .iter()
            .filter(|b| {
                self.cached
                    .get(&b.sequence_hash)
                    .is_some_and(|&id| self.pool[id as usize].refcount == 0)
            })
            .count();
        if needed + hit_evictable > self.available_blocks() {
            return false;
        }
        for b in hit {
            match self.cached.get(&b.sequence_hash) {
                Some(&id) => {
                    self.acquire(id);
                    alloc.blocks.push(id);
                }
                // The caller looked the prefix up just before; a miss means a caller bug. Stop
                // sharing there and let the rest be computed.
                None => break,
            }
        }
        alloc.registered = alloc.blocks.len();
        let tokens = tokens.max(alloc.blocks.len() * self.block_size);
        self.grow(alloc, tokens)
    }

    /// Grows `alloc` to cover `tokens` tokens, evicting least recently used cached blocks if
    /// the free list runs out. Returns false, changing nothing, when the pool lacks the blocks.
    pub fn grow(&mut self, alloc: &mut KvAllocation, tokens: usize) -> bool {
        let needed = self.blocks_for(tokens).saturating_sub(alloc.blocks.len());
        if needed > self.available_blocks() {
            return false;
        }
        for _ in 0..needed {
            let id = match self.free.pop() {
                Some(id) => id,
                None => self.evict_lru(),
            };
            self.acquire(id);
            alloc.blocks.push(id);
        }
        true
    }

    /// Also records the token ids of stored blocks (for a sink that publishes vLLM's wire
    /// format); only takes effect while events are recorded.
    pub fn record_block_tokens(&mut self) {
        if self.events.is_some() {
            self.event_tokens = Some(Vec::new());
        }
    }

    /// Registers the blocks of `alloc` that `computed_tokens` completed, identified by
    /// `hashes` (one per full block of the sequence, in order; blocks beyond `hashes` wait).
    #[cfg(test)]
    pub fn register_full_blocks(
        &mut self,
        alloc: &mut KvAllocation,
        hashes: &[StoredBlock],
        computed_tokens: usize,
    ) {
        self.register_full_blocks_of(alloc, hashes, computed_tokens, &[]);
    }

    /// [`Self::register_full_blocks`] for a sequence whose tokens are `tokens` (recorded with
    /// the events if [`Self::record_block_tokens`] asked for them).
    pub fn register_full_blocks_of(
        &mut self,
        alloc: &mut KvAllocation,
        hashes: &[StoredBlock],
        computed_tokens: usize,
        tokens: &[TokenId],
    ) {
        if !self.prefix_caching {
            return;
        }
        let full = (computed_tokens / self.block_size)
            .min(hashes.len())
            .min(alloc.blocks.len());
        // Index in `events` of the Stored event the current run extends.
        let mut run: Option<usize> = None;
        for i in alloc.registered..full {
            let block = hashes[i];
            let mine = alloc.blocks[i];
            if let Some(&existing) = self.cached.get(&block.sequence_hash) {
                if existing != mine {
                    // Computed concurrently by another sequence: share its copy, free ours.
                    self.acquire(existing);
                    alloc.blocks[i] = existing;
                    self.release_one(mine);
                }
                run = None;
                continue;
            }
            let parent = i.checked_sub(1).map(|p| hashes[p].sequence_hash);
            self.pool[mine as usize].registered = Some(Registered { block, parent });
            self.cached.insert(block.sequence_hash, mine);
            if let Some(recorded) = &mut self.event_tokens {
                let block = &tokens[(i * self.block_size).min(tokens.len())
                    ..((i + 1) * self.block_size).min(tokens.len())];
                recorded.extend_from_slice(block);
            }
            if let Some(events) = &mut self.events {
                match run.and_then(|at| events.get_mut(at)) {
                    Some(KvCacheEventData::Stored { blocks, .. }) => blocks.push(block),
                    _ => {
                        run = Some(events.len());
                        events.push(KvCacheEventData::Stored {
                            parent,
                            blocks: vec![block],
                        });
                    }
                }
            }
        }
        alloc.registered = alloc.registered.max(full);
    }

    /// Returns every block of `alloc`, last first (so a sequence's tail is evicted before its
    /// head). Registered blocks stay cached until evicted.
    pub fn release(&mut self, alloc: &mut KvAllocation) {
        while let Some(id) = alloc.blocks.pop() {
            self.release_one(id);
        }
        alloc.registered = 0;
    }

    /// Drops every cached block, as vLLM's `reset_prefix_cache`: only possible while no
    /// sequence holds blocks (returns false, changing nothing, otherwise). Records `Cleared`.
    pub fn reset_prefix_cache(&mut self) -> bool {
        if self.used > 0 {
            return false;
        }
        while self.lru_head != NIL {
            let id = self.lru_head;
            self.lru_unlink(id);
            self.pool[id as usize].registered = None;
            self.free.push(id);
        }
        self.cached.clear();
        if let Some(events) = &mut self.events {
            events.push(KvCacheEventData::Cleared);
        }
        true
    }

    /// Moves the recorded events into `out`, oldest first.
    pub fn drain_events(&mut self, out: &mut Vec<KvCacheEventData>) {
        if let Some(events) = &mut self.events {
            out.append(events);
        }
    }

    /// Moves the token ids recorded with the drained `Stored` events into `out`.
    pub fn drain_event_tokens(&mut self, out: &mut Vec<TokenId>) {
        if let Some(tokens) = &mut self.event_tokens {
            out.append(tokens);
        }
    }

    /// `Stored` events describing everything cached now, each parented on a block stored by an
    /// earlier one (or `None`): replayed into an empty index they rebuild the cache's contents.
    pub fn cache_state(&self) -> Vec<KvCacheEventData> {
        // Children of each cached block (key: parent hash, `None` for roots or for blocks whose
        // parent is not cached, which eviction order makes impossible but costs nothing).
        let mut children: HashMap<Option<SequenceHash>, Vec<Registered>> = HashMap::new();
        for &id in self.cached.values() {
            if let Some(reg) = self.pool[id as usize].registered {
                let parent = reg.parent.filter(|p| self.cached.contains_key(p));
                children.entry(parent).or_default().push(reg);
            }
        }
        for list in children.values_mut() {
            // Deterministic output.
            list.sort_unstable_by_key(|r| r.block.sequence_hash);
        }
        let mut events = Vec::new();
        // Depth-first: each stack entry starts a run after `parent`; a run continues while its
        // last block has exactly one child.
        let mut stack: Vec<(Option<SequenceHash>, Registered)> = children
            .get(&None)
            .map(|roots| roots.iter().rev().map(|&r| (None, r)).collect())
            .unwrap_or_default();
        while let Some((parent, first)) = stack.pop() {
            let mut blocks = vec![first.block];
            let mut last = first.block.sequence_hash;
            loop {
                match children.get(&Some(last)).map(Vec::as_slice) {
                    Some([only]) => {
                        blocks.push(only.block);
                        last = only.block.sequence_hash;
                    }
                    Some(many) => {
                        stack.extend(many.iter().rev().map(|&r| (Some(last), r)));
                        break;
                    }
                    None => break,
                }
            }
            events.push(KvCacheEventData::Stored { parent, blocks });
        }
        events
    }

    fn acquire(&mut self, id: BlockId) {
        let refcount = self.pool[id as usize].refcount;
        if refcount == 0 {
            if self.pool[id as usize].registered.is_some() {
                self.lru_unlink(id);
            }
            self.used += 1;
        }
        self.pool[id as usize].refcount = refcount + 1;
    }

    fn release_one(&mut self, id: BlockId) {
        let block = &mut self.pool[id as usize];
        debug_assert!(block.refcount > 0);
        block.refcount = block.refcount.saturating_sub(1);
        if block.refcount > 0 {
            return;
        }
        self.used -= 1;
        if block.registered.is_some() {
            self.lru_push_tail(id);
        } else {
            self.free.push(id);
        }
    }

    /// Takes the least recently released cached block out of the cache. The caller checked
    /// that one exists.
    fn evict_lru(&mut self) -> BlockId {
        let id = self.lru_head;
        debug_assert_ne!(id, NIL, "grow checked availability");
        self.lru_unlink(id);
        if let Some(reg) = self.pool[id as usize].registered.take() {
            self.cached.remove(&reg.block.sequence_hash);
            if let Some(events) = &mut self.events {
                match events.last_mut() {
                    Some(KvCacheEventData::Removed { sequence_hashes }) => {
                        sequence_hashes.push(reg.block.sequence_hash);
                    }
                    _ => events.push(KvCacheEventData::Removed {
                        sequence_hashes: vec![reg.block.sequence_hash],
                    }),
                }
            }
        }
        id
    }

    fn lru_push_tail(&mut self, id: BlockId) {
        let tail = self.lru_tail;
        {
            let block = &mut self.pool[id as usize];
            block.lru_prev = tail;
            block.lru_next = NIL;
        }
        if tail == NIL {
            self.lru_head = id;
        } else {
            self.pool[tail as usize].lru_next = id;
        }
        self.lru_tail = id;
        self.evictable += 1;
    }

    fn lru_unlink(&mut self, id: BlockId) {
        let Block {
            lru_prev, lru_next, ..
        } = self.pool[id as usize];
        if lru_prev == NIL {
            self.lru_head = lru_next;
        } else {
            self.pool[lru_prev as usize].lru_next = lru_next;
        }
        if lru_next == NIL {
            self.lru_tail = lru_prev;
        } else {
            self.pool[lru_next as usize].lru_prev = lru_prev;
        }
        let block = &mut self.pool[id as usize];
        block.lru_prev = NIL;
        block.lru_next = NIL;
        self.evictable -= 1;
    }

    /// Sequence hashes currently cached (tests compare them with replayed events).
    #[cfg(test)]
    pub fn cached_hashes(&self) -> std::collections::HashSet<SequenceHash> {
        self.cached.keys().copied().collect()
    }

    /// Sharers of the cached block `hash`, if cached.
    #[cfg(test)]
    pub fn refcount(&self, hash: SequenceHash) -> Option<u32> {
        self.cached
            .get(&hash)
            .map(|&id| self.pool[id as usize].refcount)
    }

    /// Checks the counters against the blocks (tests).
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let used = self.pool.iter().filter(|b| b.refcount > 0).count();
        assert_eq!(used, self.used, "used count");
        let evictable = self
            .pool
            .iter()
            .filter(|b| b.refcount == 0 && b.registered.is_some())
            .count();
        assert_eq!(evictable, self.evictable, "evictable count");
        assert_eq!(
            self.free.len() + self.evictable + self.used,
            self.pool.len(),
            "every block is free, evictable or used"
        );
        let registered = self.pool.iter().filter(|b| b.registered.is_some()).count();
        assert_eq!(registered, self.cached.len(), "registered blocks vs map");
        for (&hash, &id) in &self.cached {
            let reg = self.pool[id as usize]
                .registered
                .expect("mapped block is registered");
            assert_eq!(reg.block.sequence_hash, hash);
            if let Some(parent) = reg.parent {
                assert!(self.cached.contains_key(&parent), "orphaned cached block");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Test hashes: block `i` of chain `c` (distinct per chain and position, chained by
    /// construction).
    fn chain(c: u64, n: usize) -> Vec<StoredBlock> {
        (0..n as u64)
            .map(|i| StoredBlock {
                sequence_hash: c * 1000 + i + 1,
                content_hash: c * 7 + i,
            })
            .collect()
    }

    fn events(kv: &mut KvManager) -> Vec<KvCacheEventData> {
        let mut out = Vec::new();
        kv.drain_events(&mut out);
        out
    }

    #[test]
    fn grows_by_whole_blocks_and_releases() {
        let mut kv = KvManager::new(16, 4, true, false);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 1));
        assert_eq!((a.blocks(), kv.used_blocks()), (1, 1));
        assert!(kv.grow(&mut a, 16));
        assert_eq!(a.blocks(), 1, "16 tokens still fit one block");
        assert!(kv.grow(&mut a, 17));
        assert_eq!((a.blocks(), kv.available_blocks()), (2, 2));
        kv.release(&mut a);
        assert_eq!((a.blocks(), kv.used_blocks()), (0, 0));
        kv.check_invariants();
    }

    #[test]
    fn refuses_when_pool_is_short_without_partial_allocation() {
        let mut kv = KvManager::new(4, 3, true, false);
        let mut a = KvAllocation::default();
        let mut b = KvAllocation::default();
        assert!(kv.grow(&mut a, 8));
        assert!(!kv.grow(&mut b, 8), "needs 2 blocks, 1 free");
        assert_eq!((b.blocks(), kv.used_blocks()), (0, 2));
        assert!(kv.grow(&mut b, 4));
        assert_eq!(kv.available_blocks(), 0);
        kv.check_invariants();
    }

    #[test]
    fn full_blocks_are_registered_once_and_stored_as_one_run() {
        let mut kv = KvManager::new(4, 8, true, true);
        let h = chain(1, 3);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 10));
        // 10 tokens computed: 2 full blocks.
        kv.register_full_blocks(&mut a, &h, 10);
        kv.register_full_blocks(&mut a, &h, 10);
        assert_eq!(
            events(&mut kv),
            vec![KvCacheEventData::Stored {
                parent: None,
                blocks: h[..2].to_vec()
            }]
        );
        assert!(kv.grow(&mut a, 12));
        kv.register_full_blocks(&mut a, &h, 12);
        assert_eq!(
            events(&mut kv),
            vec![KvCacheEventData::Stored {
                parent: Some(h[1].sequence_hash),
                blocks: h[2..].to_vec()
            }]
        );
        assert_eq!(kv.cached_blocks(), 3);
        kv.check_invariants();
    }

    #[test]
    fn prefix_hit_shares_blocks_with_refcounts() {
        let mut kv = KvManager::new(4, 8, true, false);
        let h = chain(1, 2);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 9));
        kv.register_full_blocks(&mut a, &h, 9);
        assert_eq!(kv.cached_prefix_len(&h), 2);
        let mut b = KvAllocation::default();
        assert!(kv.allocate_with_prefix(&mut b, &h, 10));
        assert_eq!(b.blocks(), 3, "two shared, one new");
        assert_eq!(kv.used_blocks(), 4, "shared blocks count once");
        assert_eq!(kv.refcount(h[0].sequence_hash), Some(2));
        kv.release(&mut a);
        assert_eq!(kv.refcount(h[1].sequence_hash), Some(1));
        kv.release(&mut b);
        assert_eq!(
            kv.refcount(h[0].sequence_hash),
            Some(0),
            "released but cached"
        );
        assert_eq!((kv.used_blocks(), kv.cached_blocks()), (0, 2));
        kv.check_invariants();
    }

    #[test]
    fn prefix_hit_counts_evictable_hits_against_capacity() {
        // 3 blocks; a 2-block prefix cached and evictable, 1 free. A request sharing the prefix
        // and needing 2 more blocks must not fit (it would have to evict its own prefix).
        let mut kv = KvManager::new(4, 3, true, false);
        let h = chain(1, 2);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 8));
        kv.register_full_blocks(&mut a, &h, 8);
        kv.release(&mut a);
        let mut b = KvAllocation::default();
        assert!(!kv.allocate_with_prefix(&mut b, &h, 16));
        assert_eq!(
            (b.blocks(), kv.used_blocks(), kv.cached_blocks()),
            (0, 0, 2)
        );
        assert!(kv.allocate_with_prefix(&mut b, &h, 12));
        assert_eq!(kv.available_blocks(), 0);
        kv.check_invariants();
    }

    #[test]
    fn eviction_is_least_recently_released_first_tail_before_head() {
        let mut kv = KvManager::new(4, 4, true, true);
        let (x, y) = (chain(1, 2), chain(2, 2));
        for h in [&x, &y] {
            let mut a = KvAllocation::default();
            assert!(kv.grow(&mut a, 8));
            kv.register_full_blocks(&mut a, h, 8);
            kv.release(&mut a);
        }
        // Touch x again (a prefix hit), release: y is now the least recently used.
        let mut a = KvAllocation::default();
        assert!(kv.allocate_with_prefix(&mut a, &x, 8));
        kv.release(&mut a);
        events(&mut kv);
        let mut big = KvAllocation::default();
        assert!(kv.grow(&mut big, 4));
        assert!(kv.grow(&mut big, 8));
        assert!(kv.grow(&mut big, 12));
        assert_eq!(
            events(&mut kv),
            vec![KvCacheEventData::Removed {
                sequence_hashes: vec![y[1].sequence_hash, y[0].sequence_hash, x[1].sequence_hash]
            }],
            "y's tail, y's head, then x's tail; consecutive evictions in one event"
        );
        assert_eq!(kv.cached_hashes(), HashSet::from([x[0].sequence_hash]));
        kv.check_invariants();
    }

    #[test]
    fn concurrent_duplicate_block_is_deduplicated() {
        let mut kv = KvManager::new(4, 8, true, true);
        let h = chain(1, 3);
        let (mut a, mut b) = (KvAllocation::default(), KvAllocation::default());
        assert!(kv.grow(&mut a, 8));
        assert!(kv.grow(&mut b, 12));
        kv.register_full_blocks(&mut a, &h, 8);
        assert_eq!(kv.used_blocks(), 5);
        kv.register_full_blocks(&mut b, &h, 12);
        assert_eq!(
            kv.used_blocks(),
            3,
            "b's copies of blocks 0 and 1 were freed"
        );
        assert_eq!(kv.refcount(h[1].sequence_hash), Some(2));
        assert_eq!(
            events(&mut kv),
            vec![
                KvCacheEventData::Stored {
                    parent: None,
                    blocks: h[..2].to_vec()
                },
                KvCacheEventData::Stored {
                    parent: Some(h[1].sequence_hash),
                    blocks: h[2..].to_vec()
                },
            ]
        );
        kv.check_invariants();
    }

    #[test]
    fn no_prefix_caching_means_no_hits_no_events() {
        let mut kv = KvManager::new(4, 8, false, true);
        let h = chain(1, 2);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 8));
        kv.register_full_blocks(&mut a, &h, 8);
        kv.release(&mut a);
        assert_eq!(kv.cached_prefix_len(&h), 0);
        assert_eq!(kv.cached_blocks(), 0);
        assert!(events(&mut kv).is_empty());
        kv.check_invariants();
    }

    #[test]
    fn reset_clears_only_when_idle() {
        let mut kv = KvManager::new(4, 8, true, true);
        let h = chain(1, 2);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 8));
        kv.register_full_blocks(&mut a, &h, 8);
        assert!(!kv.reset_prefix_cache());
        kv.release(&mut a);
        events(&mut kv);
        assert!(kv.reset_prefix_cache());
        assert_eq!(events(&mut kv), vec![KvCacheEventData::Cleared]);
        assert_eq!((kv.cached_blocks(), kv.available_blocks()), (0, 8));
        kv.check_invariants();
    }

    #[test]
    fn cache_state_rebuilds_a_branching_tree() {
        let mut kv = KvManager::new(4, 16, true, false);
        let trunk = chain(1, 3);
        // A branch sharing trunk[0..2] then diverging.
        let mut branch = trunk[..2].to_vec();
        branch.extend(chain(2, 2).iter().map(|b| StoredBlock {
            sequence_hash: b.sequence_hash + 50,
            ..*b
        }));
        let other = chain(3, 1);
        for h in [&trunk, &branch, &other] {
            let mut a = KvAllocation::default();
            assert!(kv.grow(&mut a, h.len() * 4));
            kv.register_full_blocks(&mut a, h, h.len() * 4);
            kv.release(&mut a);
        }
        let state = kv.cache_state();
        let mut seen: HashSet<SequenceHash> = HashSet::new();
        for event in &state {
            let KvCacheEventData::Stored { parent, blocks } = event else {
                panic!("dump has only Stored events: {event:?}");
            };
            if let Some(p) = parent {
                assert!(seen.contains(p), "parent stored earlier");
            }
            seen.extend(blocks.iter().map(|b| b.sequence_hash));
        }
        assert_eq!(seen, kv.cached_hashes());
        assert_eq!(seen.len(), 3 + 2 + 1);
        // trunk[0..2] one run, then the two branches, and the other root.
        assert_eq!(state.len(), 4);
        assert!(state.contains(&KvCacheEventData::Stored {
            parent: None,
            blocks: trunk[..2].to_vec()
        }));
    }
}
