//! The prefix cache: KV blocks of earlier sequences, keyed by the block's sequence hash (which
//! covers the block and everything before it, salted by the request's cache key), so a new
//! sequence whose prompt starts the same way copies them instead of recomputing.
//!
//! Bounded to `capacity` blocks, evicted least recently used first. A lookup walks from the
//! first block, so every use of a block also touches all its ancestors; ticks are handed out
//! deepest block first, so a block's ancestors always look more recent than it and a chain is
//! evicted from its tail, never leaving a block whose parent is gone.
//!
//! It records the KV events a real engine publishes about its cache: `Stored` for inserted
//! blocks (parented on the block before), `Removed` for evicted ones; the scheduler drains and
//! numbers them.

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor;
use switchyard_protocol::kv::{KvCacheEventData, SequenceHash, StoredBlock};

struct Entry {
    block: StoredBlock,
    parent: Option<SequenceHash>,
    /// `(layers, 2, block_size, kv_dim)`.
    kv: Tensor,
    tick: u64,
}

pub struct PrefixCache {
    capacity: usize,
    entries: HashMap<SequenceHash, Entry>,
    /// `tick -> hash`, oldest first.
    lru: BTreeMap<u64, SequenceHash>,
    next_tick: u64,
    events: Vec<KvCacheEventData>,
}

impl PrefixCache {
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            next_tick: 1,
            events: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The cached KV blocks of the longest cached prefix of `hashes`, marked as just used.
    pub fn lookup(&mut self, hashes: &[StoredBlock]) -> Vec<Tensor> {
        let hit = hashes
            .iter()
            .take_while(|b| self.entries.contains_key(&b.sequence_hash))
            .count();
        self.touch(&hashes[..hit]);
        hashes[..hit]
            .iter()
            .map(|b| self.entries[&b.sequence_hash].kv.clone())
            .collect()
    }

    /// Whether `hash` is cached (without touching it).
    pub fn contains(&self, hash: SequenceHash) -> bool {
        self.entries.contains_key(&hash)
    }

    /// Inserts `block` (whose parent block is `parent`, already cached or `None` for a first
    /// block), evicting the least recently used blocks to make room. A block whose parent is not
    /// cached (evicted meanwhile) is not stored: it could never be found.
    pub fn insert(&mut self, block: StoredBlock, parent: Option<SequenceHash>, kv: Tensor) {
        if self.capacity == 0 || self.entries.contains_key(&block.sequence_hash) {
            return;
        }
        if let Some(p) = parent
            && !self.entries.contains_key(&p)
        {
            return;
        }
        let mut removed = Vec::new();
        while self.entries.len() >= self.capacity {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            if parent == Some(victim) {
                // Never evict the block being extended: put it back as most recent.
                let tick = self.bump();
                self.lru.insert(tick, victim);
                if let Some(e) = self.entries.get_mut(&victim) {
                    e.tick = tick;
                }
                if self.entries.len() == 1 {
                    break;
                }
                continue;
            }
            self.entries.remove(&victim);
            removed.push(victim);
        }
        if !removed.is_empty() {
            self.events.push(KvCacheEventData::Removed {
                sequence_hashes: removed,
            });
        }
        if self.entries.len() >= self.capacity {
            return;
        }
        // Just below its parent: the parent is touched at every use of the child.
        let tick = self.bump();
        self.lru.insert(tick, block.sequence_hash);
        self.entries.insert(
            block.sequence_hash,
            Entry {
                block,
                parent,
                kv,
                tick,
            },
        );
        match self.events.last_mut() {
            Some(KvCacheEventData::Stored { blocks, .. })
                if parent.is_some() && blocks.last().map(|b| b.sequence_hash) == parent =>
            {
                blocks.push(block);
            }
            _ => self.events.push(KvCacheEventData::Stored {
                parent,
                blocks: vec![block],
            }),
        }
        // Every ancestor must stay more recent than its descendants (deepest oldest).
        let mut ancestor = parent;
        while let Some(hash) = ancestor {
            self.retick(hash);
            ancestor = self.entries.get(&hash).and_then(|e| e.parent);
        }
    }

    /// Marks a chain (first block first) as just used, its tail oldest.
    fn touch(&mut self, chain: &[StoredBlock]) {
        for b in chain.iter().rev() {
            self.retick(b.sequence_hash);
        }
    }

    fn retick(&mut self, hash: SequenceHash) {
        let tick = self.bump();
        if let Some(e) = self.entries.get_mut(&hash) {
            self.lru.remove(&e.tick);
            e.tick = tick;
            self.lru.insert(tick, hash);
        }
    }

    fn bump(&mut self) -> u64 {
        let t = self.next_tick;
        self.next_tick += 1;
        t
    }

    /// Events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<KvCacheEventData> {
        std::mem::take(&mut self.events)
    }

    /// `Stored` events describing everything cached now, parents before children.
    pub fn snapshot(&self) -> Vec<KvCacheEventData> {
        let mut children: HashMap<Option<SequenceHash>, Vec<StoredBlock>> = HashMap::new();
        for e in self.entries.values() {
            children.entry(e.parent).or_default().push(e.block);
        }
        let mut out = Vec::new();
        let mut frontier: Vec<Option<SequenceHash>> = vec![None];
        while let Some(parent) = frontier.pop() {
            if let Some(blocks) = children.remove(&parent) {
                frontier.extend(blocks.iter().map(|b| Some(b.sequence_hash)));
                out.push(KvCacheEventData::Stored { parent, blocks });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn block(hash: u64) -> StoredBlock {
        StoredBlock {
            sequence_hash: hash,
            content_hash: hash * 10,
        }
    }

    fn kv(value: f32) -> Tensor {
        Tensor::full(value, (1, 2, 1, 1), &Device::Cpu).unwrap()
    }

    fn value_of(t: &Tensor) -> f32 {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn longest_prefix_and_events() {
        let mut cache = PrefixCache::new(8);
        cache.insert(block(1), None, kv(1.0));
        cache.insert(block(2), Some(1), kv(2.0));
        cache.insert(block(3), Some(2), kv(3.0));
        let events = cache.drain_events();
        assert_eq!(
            events,
            vec![KvCacheEventData::Stored {
                parent: None,
                blocks: vec![block(1), block(2), block(3)],
            }]
        );
        let hit = cache.lookup(&[block(1), block(2), block(9), block(3)]);
        assert_eq!(hit.iter().map(value_of).collect::<Vec<_>>(), vec![1.0, 2.0]);
        assert!(cache.lookup(&[block(2)]).len() == 1);
        assert!(cache.lookup(&[block(7), block(1)]).is_empty());
        // A block whose parent is unknown is not stored.
        cache.insert(block(5), Some(4), kv(5.0));
        assert!(!cache.contains(5));
        assert!(cache.drain_events().is_empty());
    }

    #[test]
    fn evicts_tails_first_and_stays_bounded() {
        let mut cache = PrefixCache::new(3);
        cache.insert(block(1), None, kv(1.0));
        cache.insert(block(2), Some(1), kv(2.0));
        cache.insert(block(3), Some(2), kv(3.0));
        cache.drain_events();
        // A new chain pushes out the old chain's tail, never its head first.
        cache.insert(block(10), None, kv(10.0));
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(1) && cache.contains(2) && !cache.contains(3));
        cache.insert(block(11), Some(10), kv(11.0));
        assert!(cache.contains(1) && !cache.contains(2));
        assert!(cache.contains(10) && cache.contains(11));
        let events = cache.drain_events();
        let removed: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                KvCacheEventData::Removed { sequence_hashes } => Some(sequence_hashes.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(removed, vec![3, 2]);
        // Touching chain 1 makes chain 10 the older one.
        cache.lookup(&[block(1)]);
        cache.insert(block(20), None, kv(20.0));
        assert!(cache.contains(1) && cache.contains(10) && !cache.contains(11));
        for _ in 0..100 {
            let h = cache.next_tick + 1000;
            cache.insert(block(h), None, kv(0.0));
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn snapshot_lists_parents_before_children() {
        let mut cache = PrefixCache::new(8);
        cache.insert(block(1), None, kv(1.0));
        cache.insert(block(2), Some(1), kv(2.0));
        cache.insert(block(3), Some(1), kv(3.0));
        cache.insert(block(4), None, kv(4.0));
        let snapshot = cache.snapshot();
        let mut seen = vec![];
        for e in &snapshot {
            let KvCacheEventData::Stored { parent, blocks } = e else {
                panic!("{e:?}")
            };
            if let Some(p) = parent {
                assert!(seen.contains(p), "parent {p} listed after its child");
            }
            seen.extend(blocks.iter().map(|b| b.sequence_hash));
        }
        seen.sort();
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let capacity_zero = PrefixCache::new(0).snapshot();
        assert!(capacity_zero.is_empty());
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut cache = PrefixCache::new(0);
        cache.insert(block(1), None, kv(1.0));
        assert!(cache.is_empty());
        assert!(cache.drain_events().is_empty());
    }
}
