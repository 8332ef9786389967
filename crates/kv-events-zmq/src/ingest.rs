//! Engine events → Switchyard's [`KvCacheEvent`]s for one worker, with the sequence bookkeeping.
//!
//! Routing hashes are recomputed from each `BlockStored`'s `token_ids` with the router's own
//! [`BlockHasher`], chained on the parent's routing hash; the engine's hashes only link events
//! together (engine hash → routing hash map). So routing never depends on the engine's hash
//! algorithm, and an engine that changes it keeps routing exact.
//!
//! Per data-parallel rank the ingest tracks the last batch sequence number:
//! - the next one: applied;
//! - a jump ahead: a gap, reported by [`KvEventIngest::check_sequence`] so the caller can replay
//!   the missing batches first (what cannot be replayed is lost, and counted);
//! - the same or an older one right after a replay: a duplicate (the live socket delivers what
//!   the replay already did), dropped;
//! - an older one otherwise: the engine restarted (its counter starts again at 0), so everything
//!   known about that rank is dropped (`Cleared` when it is the only rank).
//!
//! Blocks held by several ranks of one engine count once: a routing hash leaves the worker's
//! index only when no rank holds it. The engine hash map is capped (`max_blocks`); when full, the
//! oldest entries go and their blocks are reported removed, so the router never keeps a block it
//! could no longer remove.

use std::collections::{HashMap, VecDeque};

use switchyard_kv_index::hashing::BlockHasher;
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, SequenceHash, StoredBlock};
use switchyard_protocol::llm::CacheKey;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::wire::{EngineBatch, EngineHash, EngineKvEvent, RemovedEvent, StoredEvent};

/// What [`KvEventIngest::check_sequence`] says about a batch's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Apply it.
    Next,
    /// The first batch seen from this rank: apply it (after replaying what came before, if the
    /// engine still has it).
    First,
    /// Batches `from..seq` are missing: replay them, then apply this one.
    Gap { from: u64 },
    /// Already applied: drop it.
    Duplicate,
    /// The engine restarted: [`KvEventIngest::restart`], then apply it.
    Restart,
}

/// Counters of everything the ingest saw; anomalies are counted, never fatal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub batches: u64,
    pub engine_events: u64,
    /// Switchyard events emitted.
    pub events_out: u64,
    pub blocks_stored: u64,
    pub blocks_removed: u64,
    pub gaps: u64,
    /// Batches a gap lost for good (the engine's replay buffer no longer had them).
    pub batches_lost: u64,
    pub duplicates: u64,
    pub restarts: u64,
    /// Stored events skipped: parent unknown (evicted from the map, or never seen).
    pub unknown_parents: u64,
    /// Removals of blocks the map does not know.
    pub unknown_removals: u64,
    /// Stored events skipped because `token_ids` does not fill `block_hashes` blocks exactly or
    /// the block size differs from the worker's.
    pub malformed_events: u64,
    /// Events of another storage tier, KV cache group or an unnamed LoRA, or an unknown type.
    pub ignored_events: u64,
    /// Map entries dropped to stay under `max_blocks`.
    pub evictions: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct RankState {
    last_seq: Option<u64>,
    /// After a replay up to here, older live batches are duplicates, not a restart.
    replayed_up_to: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Mapped {
    routing: SequenceHash,
    generation: u64,
}

/// Key of one engine block: (DP rank, engine hash).
type BlockKey = (u32, EngineHash);

/// XXH3 instead of SipHash: the keys come from one engine, not from clients, and hashing is most
/// of the ingest's cost.
type FastMap<K, V> = HashMap<K, V, Xxh3DefaultBuilder>;

/// One worker's ingest state. Synchronous and I/O free.
pub struct KvEventIngest {
    block_size: u32,
    max_blocks: usize,
    ranks: FastMap<u32, RankState>,
    blocks: FastMap<BlockKey, Mapped>,
    /// Insertion order of `blocks` for eviction; entries whose generation no longer matches are
    /// stale and skipped.
    order: VecDeque<(BlockKey, u64)>,
    /// How many ranks hold each routing hash.
    holders: FastMap<SequenceHash, u32>,
    next_generation: u64,
    last_event_id: u64,
    stats: IngestStats,
}

impl KvEventIngest {
    /// `block_size`: the worker's (and router's) block size; events of another size are refused.
    /// `max_blocks`: cap of the engine hash map (at least 1).
    pub fn new(block_size: u32, max_blocks: usize) -> Self {
        KvEventIngest {
            block_size: block_size.max(1),
            max_blocks: max_blocks.max(1),
            ranks: FastMap::default(),
            blocks: FastMap::default(),
            order: VecDeque::new(),
            holders: FastMap::default(),
            next_generation: 0,
            last_event_id: 0,
            stats: IngestStats::default(),
        }
    }

    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// Engine blocks currently mapped.
    pub fn mapped_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Classifies batch `seq` of `rank` (from a live socket; replayed batches go straight to
    /// [`Self::apply_batch`]).
    pub fn check_sequence(&mut self, rank: u32, seq: u64) -> SequenceCheck {
        let state = self.ranks.entry(rank).or_default();
        let Some(last) = state.last_seq else {
            return SequenceCheck::First;
        };
        if seq == last.wrapping_add(1) {
            state.replayed_up_to = None;
            return SequenceCheck::Next;
        }
        if seq > last {
            self.stats.gaps += 1;
            return SequenceCheck::Gap { from: last + 1 };
        }
        if state.replayed_up_to.is_some_and(|r| seq <= r) || seq == last {
            self.stats.duplicates += 1;
            return SequenceCheck::Duplicate;
        }
        self.stats.restarts += 1;
        SequenceCheck::Restart
    }

    /// Records that a replay delivered batches up to `seq` (so the live copies are duplicates).
    pub fn mark_replayed(&mut self, rank: u32, seq: u64) {
        let state = self.ranks.entry(rank).or_default();
        state.replayed_up_to = Some(state.replayed_up_to.map_or(seq, |r| r.max(seq)));
    }

    /// Counts batches a gap lost for good.
    pub fn count_lost(&mut self, batches: u64) {
        self.stats.batches_lost += batches;
    }

    /// Whether batch `seq` of `rank` is already applied (replays may repeat what the live socket
    /// delivered).
    pub fn is_applied(&self, rank: u32, seq: u64) -> bool {
        self.ranks
            .get(&rank)
            .and_then(|s| s.last_seq)
            .is_some_and(|last| seq <= last)
    }

    /// The engine (rank) restarted: drops what it held; its sequence starts over.
    pub fn restart(&mut self, rank: u32, out: &mut Vec<KvCacheEvent>) {
        self.clear_rank(rank, out);
        self.ranks.insert(rank, RankState::default());
    }

    /// Applies batch `seq` (live or replayed); the events to publish are appended to `out`.
    pub fn apply_batch(&mut self, seq: u64, batch: &EngineBatch, out: &mut Vec<KvCacheEvent>) {
        let rank = batch.dp_rank.unwrap_or(0);
        self.stats.batches += 1;
        for event in &batch.events {
            self.stats.engine_events += 1;
            match event {
                EngineKvEvent::Stored(e) => self.stored(rank, e, out),
                EngineKvEvent::Removed(e) => self.removed(rank, e, out),
                EngineKvEvent::Cleared => self.clear_rank(rank, out),
                EngineKvEvent::Unknown(_) => self.stats.ignored_events += 1,
            }
        }
        let state = self.ranks.entry(rank).or_default();
        state.last_seq = Some(state.last_seq.map_or(seq, |l| l.max(seq)));
    }

    fn push(&mut self, data: KvCacheEventData, out: &mut Vec<KvCacheEvent>) {
        self.last_event_id += 1;
        self.stats.events_out += 1;
        out.push(KvCacheEvent {
            event_id: self.last_event_id,
            data,
        });
    }

    fn main_tier(medium: &Option<String>, group_idx: Option<i64>) -> bool {
        let gpu = medium
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case("GPU"));
        gpu && group_idx.is_none_or(|g| g == 0)
    }

    fn stored(&mut self, rank: u32, e: &StoredEvent, out: &mut Vec<KvCacheEvent>) {
        if !Self::main_tier(&e.medium, e.group_idx) {
            self.stats.ignored_events += 1;
            return;
        }
        // A LoRA known only by its engine-internal id cannot be matched to a request's name.
        if e.lora_id.is_some() && e.lora_name.is_none() {
            self.stats.ignored_events += 1;
            return;
        }
        let n = e.block_hashes.len();
        if e.block_size != self.block_size || e.token_ids.len() != n * self.block_size as usize {
            self.stats.malformed_events += 1;
            tracing::debug!(
                blocks = n,
                tokens = e.token_ids.len(),
                block_size = e.block_size,
                expected_block_size = self.block_size,
                "kv events: BlockStored does not fit the worker's block size; skipped"
            );
            return;
        }
        let mut parent = match e.parent_block_hash {
            None => None,
            Some(h) => match self.blocks.get(&(rank, h)) {
                Some(m) => Some(m.routing),
                None => {
                    self.stats.unknown_parents += 1;
                    return;
                }
            },
        };
        let key = CacheKey {
            lora_name: e.lora_name.clone(),
            cache_salt: e.cache_salt.clone(),
        };
        let hasher = BlockHasher::for_cache_key(self.block_size, &key);
        let mut run = Vec::with_capacity(n);
        // Parent of the current run's first block.
        let mut run_parent = parent;
        for (engine_hash, tokens) in e
            .block_hashes
            .iter()
            .zip(e.token_ids.chunks_exact(self.block_size as usize))
        {
            let content_hash = hasher.content_hash(tokens);
            let sequence_hash = hasher.sequence_hash(parent, content_hash);
            if self.map_block((rank, *engine_hash), sequence_hash, out) {
                if run.is_empty() {
                    run_parent = parent;
                }
                run.push(StoredBlock {
                    sequence_hash,
                    content_hash,
                });
            } else if !run.is_empty() {
                // Runs are split around blocks the worker already holds, each with its true
                // parent.
                self.flush_run(run_parent, &mut run, out);
            }
            parent = Some(sequence_hash);
        }
        self.flush_run(run_parent, &mut run, out);
        self.enforce_cap(out);
    }

    fn flush_run(
        &mut self,
        parent: Option<SequenceHash>,
        run: &mut Vec<StoredBlock>,
        out: &mut Vec<KvCacheEvent>,
    ) {
        if run.is_empty() {
            return;
        }
        self.stats.blocks_stored += run.len() as u64;
        let blocks = std::mem::take(run);
        self.push(KvCacheEventData::Stored { parent, blocks }, out);
    }

    /// Maps an engine block to its routing hash; true if no rank held that hash before.
    fn map_block(
        &mut self,
        key: BlockKey,
        routing: SequenceHash,
        out: &mut Vec<KvCacheEvent>,
    ) -> bool {
        if let Some(existing) = self.blocks.get(&key) {
            if existing.routing == routing {
                return false;
            }
            // The engine reused a hash for other content: the old block is gone.
            self.unmap_block(key, out);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.blocks.insert(
            key,
            Mapped {
                routing,
                generation,
            },
        );
        self.order.push_back((key, generation));
        let holders = self.holders.entry(routing).or_insert(0);
        *holders += 1;
        *holders == 1
    }

    /// Unmaps an engine block; emits `Removed` if no rank holds its routing hash any more.
    fn unmap_block(&mut self, key: BlockKey, out: &mut Vec<KvCacheEvent>) -> bool {
        let Some(mapped) = self.blocks.remove(&key) else {
            return false;
        };
        if self.release_holder(mapped.routing) {
            self.stats.blocks_removed += 1;
            self.push(
                KvCacheEventData::Removed {
                    sequence_hashes: vec![mapped.routing],
                },
                out,
            );
        }
        true
    }

    fn release_holder(&mut self, routing: SequenceHash) -> bool {
        match self.holders.get_mut(&routing) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.holders.remove(&routing);
                true
            }
            None => false,
        }
    }

    fn removed(&mut self, rank: u32, e: &RemovedEvent, out: &mut Vec<KvCacheEvent>) {
        if !Self::main_tier(&e.medium, e.group_idx) {
            self.stats.ignored_events += 1;
            return;
        }
        let mut gone = Vec::with_capacity(e.block_hashes.len());
        for h in &e.block_hashes {
            match self.blocks.remove(&(rank, *h)) {
                Some(mapped) => {
                    if self.release_holder(mapped.routing) {
                        gone.push(mapped.routing);
                    }
                }
                None => self.stats.unknown_removals += 1,
            }
        }
        self.emit_removed(gone, out);
    }

    /// Reports the routing hashes no rank holds any more, then tidies the eviction order.
    fn emit_removed(&mut self, gone: Vec<u64>, out: &mut Vec<KvCacheEvent>) {
        if !gone.is_empty() {
            self.stats.blocks_removed += gone.len() as u64;
            self.push(
                KvCacheEventData::Removed {
                    sequence_hashes: gone,
                },
                out,
            );
        }
        self.compact_order();
    }

    /// Drops everything `rank` holds: `Cleared` if it is the only rank with blocks, else
    /// `Removed` for the hashes no other rank holds.
    fn clear_rank(&mut self, rank: u32, out: &mut Vec<KvCacheEvent>) {
        let only_rank = self.blocks.keys().all(|(r, _)| *r == rank);
        if only_rank {
            self.blocks.clear();
            self.order.clear();
            self.holders.clear();
            self.push(KvCacheEventData::Cleared, out);
            return;
        }
        let keys: Vec<BlockKey> = self
            .blocks
            .keys()
            .filter(|(r, _)| *r == rank)
            .copied()
            .collect();
        let mut gone = Vec::new();
        for key in keys {
            if let Some(mapped) = self.blocks.remove(&key)
                && self.release_holder(mapped.routing)
            {
                gone.push(mapped.routing);
            }
        }
        self.emit_removed(gone, out);
    }

    fn enforce_cap(&mut self, out: &mut Vec<KvCacheEvent>) {
        while self.blocks.len() > self.max_blocks {
            let Some((key, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .blocks
                .get(&key)
                .is_some_and(|m| m.generation == generation)
            {
                self.stats.evictions += 1;
                self.unmap_block(key, out);
            }
        }
        self.compact_order();
    }

    /// Drops stale order entries once they outnumber the live ones, keeping memory bounded.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.blocks.len() + 1024 {
            let blocks = &self.blocks;
            self.order.retain(|(key, generation)| {
                blocks.get(key).is_some_and(|m| m.generation == *generation)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(hashes: &[u64], parent: Option<u64>, tokens: std::ops::Range<u32>) -> EngineKvEvent {
        EngineKvEvent::Stored(StoredEvent {
            block_hashes: hashes.to_vec(),
            parent_block_hash: parent,
            token_ids: tokens.collect(),
            block_size: 4,
            ..StoredEvent::default()
        })
    }

    fn batch(rank: Option<u32>, events: Vec<EngineKvEvent>) -> EngineBatch {
        EngineBatch {
            ts: 0.0,
            dp_rank: rank,
            events,
        }
    }

    #[test]
    fn routing_hashes_come_from_tokens_not_engine_hashes() {
        let hasher = BlockHasher::new(4, None);
        let expected = hasher.hash_blocks(&(0..12).collect::<Vec<_>>());
        // Two engines with unrelated hash algorithms store the same tokens.
        for (a, b, c) in [(1u64, 2, 3), (0xdead, 0xbeef, 0xf00d)] {
            let mut ingest = KvEventIngest::new(4, 100);
            let mut out = Vec::new();
            ingest.apply_batch(0, &batch(None, vec![stored(&[a, b], None, 0..8)]), &mut out);
            ingest.apply_batch(
                1,
                &batch(None, vec![stored(&[c], Some(b), 8..12)]),
                &mut out,
            );
            assert_eq!(
                out,
                vec![
                    KvCacheEvent {
                        event_id: 1,
                        data: KvCacheEventData::Stored {
                            parent: None,
                            blocks: expected[..2].to_vec(),
                        },
                    },
                    KvCacheEvent {
                        event_id: 2,
                        data: KvCacheEventData::Stored {
                            parent: Some(expected[1].sequence_hash),
                            blocks: expected[2..].to_vec(),
                        },
                    },
                ]
            );
        }
    }

    #[test]
    fn removals_translate_and_unknown_ones_are_counted() {
        let hasher = BlockHasher::new(4, None);
        let expected = hasher.hash_blocks(&(0..8).collect::<Vec<_>>());
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        ingest.apply_batch(0, &batch(None, vec![stored(&[7, 8], None, 0..8)]), &mut out);
        out.clear();
        ingest.apply_batch(
            1,
            &batch(
                None,
                vec![EngineKvEvent::Removed(RemovedEvent {
                    block_hashes: vec![8, 99],
                    ..RemovedEvent::default()
                })],
            ),
            &mut out,
        );
        assert_eq!(
            out[0].data,
            KvCacheEventData::Removed {
                sequence_hashes: vec![expected[1].sequence_hash]
            }
        );
        assert_eq!(ingest.stats().unknown_removals, 1);
        assert_eq!(ingest.mapped_blocks(), 1);
    }

    #[test]
    fn sequence_checks_gap_duplicate_restart() {
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        assert_eq!(ingest.check_sequence(0, 5), SequenceCheck::First);
        ingest.apply_batch(5, &batch(None, vec![]), &mut out);
        assert_eq!(ingest.check_sequence(0, 6), SequenceCheck::Next);
        ingest.apply_batch(6, &batch(None, vec![]), &mut out);
        assert_eq!(ingest.check_sequence(0, 9), SequenceCheck::Gap { from: 7 });
        // Replay delivered 7..=9; the live copy of 9 (and older) are duplicates.
        for seq in 7..=9 {
            ingest.apply_batch(seq, &batch(None, vec![]), &mut out);
        }
        ingest.mark_replayed(0, 9);
        assert_eq!(ingest.check_sequence(0, 8), SequenceCheck::Duplicate);
        assert_eq!(ingest.check_sequence(0, 10), SequenceCheck::Next);
        ingest.apply_batch(10, &batch(None, vec![]), &mut out);
        // Other ranks have their own counters.
        assert_eq!(ingest.check_sequence(1, 0), SequenceCheck::First);
        // Back to 0 on rank 0, no replay in between: a restart.
        assert_eq!(ingest.check_sequence(0, 0), SequenceCheck::Restart);
        ingest.restart(0, &mut out);
        assert_eq!(ingest.check_sequence(0, 0), SequenceCheck::First);
        assert_eq!(ingest.stats().restarts, 1);
        assert_eq!(ingest.stats().gaps, 1);
    }

    #[test]
    fn restart_of_the_only_rank_clears_the_worker() {
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        ingest.apply_batch(0, &batch(None, vec![stored(&[1], None, 0..4)]), &mut out);
        out.clear();
        ingest.restart(0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, KvCacheEventData::Cleared);
        assert_eq!(ingest.mapped_blocks(), 0);
    }

    #[test]
    fn ranks_share_blocks_and_clear_independently() {
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        ingest.apply_batch(0, &batch(Some(0), vec![stored(&[1], None, 0..4)]), &mut out);
        ingest.apply_batch(
            0,
            &batch(Some(1), vec![stored(&[50], None, 0..4)]),
            &mut out,
        );
        ingest.apply_batch(
            1,
            &batch(Some(1), vec![stored(&[51], Some(50), 4..8)]),
            &mut out,
        );
        // The shared first block is stored once.
        assert_eq!(out.len(), 2, "{out:?}");
        out.clear();
        ingest.apply_batch(2, &batch(Some(1), vec![EngineKvEvent::Cleared]), &mut out);
        let hasher = BlockHasher::new(4, None);
        let expected = hasher.hash_blocks(&(0..8).collect::<Vec<_>>());
        // Rank 0 still holds block 0: only rank 1's second block goes.
        assert_eq!(
            out.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
            vec![KvCacheEventData::Removed {
                sequence_hashes: vec![expected[1].sequence_hash]
            }]
        );
    }

    #[test]
    fn cap_evicts_oldest_and_reports_them_removed() {
        let mut ingest = KvEventIngest::new(4, 2);
        let mut out = Vec::new();
        ingest.apply_batch(
            0,
            &batch(None, vec![stored(&[1, 2, 3], None, 0..12)]),
            &mut out,
        );
        assert_eq!(ingest.mapped_blocks(), 2);
        assert_eq!(ingest.stats().evictions, 1);
        let hasher = BlockHasher::new(4, None);
        let expected = hasher.hash_blocks(&(0..12).collect::<Vec<_>>());
        assert_eq!(
            out.last().unwrap().data,
            KvCacheEventData::Removed {
                sequence_hashes: vec![expected[0].sequence_hash]
            }
        );
        // A child of an evicted block cannot be placed: counted, skipped.
        out.clear();
        ingest.apply_batch(
            1,
            &batch(None, vec![stored(&[9], Some(77), 0..4)]),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(ingest.stats().unknown_parents, 1);
        // Many stores and removals keep the order queue bounded.
        for i in 0..10_000u64 {
            ingest.apply_batch(
                2 + i,
                &batch(
                    None,
                    vec![
                        stored(&[1000 + i], None, 0..4),
                        EngineKvEvent::Removed(RemovedEvent {
                            block_hashes: vec![1000 + i],
                            ..RemovedEvent::default()
                        }),
                    ],
                ),
                &mut out,
            );
        }
        assert!(ingest.order.len() <= 2 * ingest.blocks.len() + 1025);
    }

    #[test]
    fn wrong_block_size_and_other_tiers_are_skipped() {
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        let mut e = StoredEvent {
            block_hashes: vec![1],
            token_ids: (0..3).collect(),
            block_size: 4,
            ..StoredEvent::default()
        };
        ingest.apply_batch(
            0,
            &batch(None, vec![EngineKvEvent::Stored(e.clone())]),
            &mut out,
        );
        e.token_ids = (0..4).collect();
        e.medium = Some("CPU".into());
        ingest.apply_batch(
            1,
            &batch(None, vec![EngineKvEvent::Stored(e.clone())]),
            &mut out,
        );
        e.medium = Some("GPU".into());
        e.block_size = 2;
        ingest.apply_batch(2, &batch(None, vec![EngineKvEvent::Stored(e)]), &mut out);
        assert!(out.is_empty());
        assert_eq!(ingest.stats().malformed_events, 2);
        assert_eq!(ingest.stats().ignored_events, 1);
    }

    #[test]
    fn salted_blocks_hash_with_the_routers_cache_key() {
        let mut ingest = KvEventIngest::new(4, 100);
        let mut out = Vec::new();
        let e = StoredEvent {
            block_hashes: vec![1],
            token_ids: (0..4).collect(),
            block_size: 4,
            cache_salt: Some("tenant".into()),
            ..StoredEvent::default()
        };
        ingest.apply_batch(0, &batch(None, vec![EngineKvEvent::Stored(e)]), &mut out);
        let key = CacheKey {
            lora_name: None,
            cache_salt: Some("tenant".into()),
        };
        let expected = BlockHasher::for_cache_key(4, &key).hash_blocks(&[0, 1, 2, 3]);
        assert_eq!(
            out[0].data,
            KvCacheEventData::Stored {
                parent: None,
                blocks: expected
            }
        );
    }
}
