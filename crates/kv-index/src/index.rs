//! The exact KV index: applies workers' KV cache events and answers prefix-overlap lookups.
//!
//! # Event handling
//!
//! Events are applied per worker in `event_id` order. An id equal to the last applied one
//! (a duplicate) or below it (late, out of order) is dropped: applying a stale `stored` could
//! resurrect an evicted block, a stale `removed` could hide a re-stored one. An id that skips
//! ahead is applied and counted as a gap (events were lost; the index may be missing blocks
//! until the worker re-reports them).
//!
//! A `stored` event whose parent this worker does not hold (lost or reordered event, or the
//! parent was evicted first) is **applied**: its blocks are recorded as held. Dynamo drops such
//! events because its tree is keyed by content hash and cannot place a block without its
//! parent's path. Here a block's sequence hash already names its whole prefix, so the block can
//! be recorded exactly where it belongs. This is the more exact choice: the worker does hold
//! those blocks; a lookup still stops at the missing parent (the score counts *leading* blocks
//! held), and once the parent is stored again the worker's score extends through the children
//! instead of under-counting until they are evicted and re-stored.
//!
//! Storing a block already held, or removing one not held, is counted and skipped; the rest of
//! the event is applied. Nothing an event carries can panic or corrupt the index.

use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, SequenceHash};

use crate::block_map::MAX_BLOCKS;
use crate::table::{BlockTable, OverlapScores, WorkerKey};

/// Counters of what the index has seen; every anomaly is counted here and logged at debug.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Events applied (including partly inconsistent ones).
    pub events_applied: u64,
    /// (worker, block) pairs newly recorded by `stored` events.
    pub blocks_stored: u64,
    /// (worker, block) pairs dropped by `removed` events.
    pub blocks_removed: u64,
    /// Events dropped because their id equalled the worker's last applied id.
    pub duplicate_events: u64,
    /// Events dropped because their id was below the worker's last applied id.
    pub out_of_order_events: u64,
    /// Events whose id skipped ahead of the last applied id + 1 (some events were lost).
    pub event_gaps: u64,
    /// `stored` events whose parent the worker did not hold (applied anyway, see module docs).
    pub unknown_parents: u64,
    /// Blocks in `stored` events the worker already held.
    pub duplicate_blocks: u64,
    /// Blocks in `removed` events the worker did not hold.
    pub unknown_removals: u64,
    /// `cleared` events and [`KvIndex::clear_worker`] calls.
    pub clears: u64,
    /// [`KvIndex::remove_worker`] calls for a known worker.
    pub workers_removed: u64,
    /// Cache dumps loaded with [`KvIndex::load_dump`].
    pub dumps_loaded: u64,
    /// Blocks of `stored` events not recorded because the index held
    /// [`KvIndex::MAX_BLOCKS`] blocks already.
    pub blocks_refused: u64,
}

/// Why an event was not applied cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Dropped: the id was not above the worker's last applied id.
    #[error("worker {worker}: stale event {event_id} (last applied {last_event_id}); dropped")]
    StaleEvent {
        worker: WorkerKey,
        event_id: u64,
        last_event_id: u64,
    },
    /// Applied, but it disagreed with what the index knew about the worker.
    #[error(
        "worker {worker}: event {event_id} inconsistent with the index (unknown parent: \
         {unknown_parent}, blocks already held: {duplicate_blocks}, blocks not held: \
         {unknown_blocks}); applied the consistent part"
    )]
    Inconsistent {
        worker: WorkerKey,
        event_id: u64,
        unknown_parent: bool,
        duplicate_blocks: u32,
        unknown_blocks: u32,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct WorkerState {
    last_event_id: Option<u64>,
    blocks: usize,
}

/// Which workers hold which prefix blocks, fed by KV cache events.
///
/// Memory is bounded by the blocks workers hold: a block nobody holds any more is removed, and
/// the maps shrink once most of their entries are gone.
#[derive(Default)]
pub struct KvIndex {
    table: BlockTable,
    /// Indexed by slot.
    state: Vec<WorkerState>,
    stats: IndexStats,
}

impl KvIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event of `worker` (registering the worker on its first event).
    pub fn apply_event(
        &mut self,
        worker: WorkerKey,
        event: &KvCacheEvent,
    ) -> Result<(), IndexError> {
        let slot = self.table.register(worker);
        if self.state.len() <= slot as usize {
            self.state.resize(slot as usize + 1, WorkerState::default());
        }
        let event_id = event.event_id;
        let state = &mut self.state[slot as usize];
        if let Some(last) = state.last_event_id {
            if event_id <= last {
                if event_id == last {
                    self.stats.duplicate_events += 1;
                } else {
                    self.stats.out_of_order_events += 1;
                }
                tracing::debug!(worker, event_id, last, "kv index: dropped stale event");
                return Err(IndexError::StaleEvent {
                    worker,
                    event_id,
                    last_event_id: last,
                });
            }
            if event_id > last + 1 {
                self.stats.event_gaps += 1;
                tracing::debug!(
                    worker,
                    event_id,
                    last,
                    "kv index: events missing before this one"
                );
            }
        }
        state.last_event_id = Some(event_id);
        self.stats.events_applied += 1;

        let mut unknown_parent = false;
        let mut duplicate_blocks = 0u32;
        let mut unknown_blocks = 0u32;
        match &event.data {
            KvCacheEventData::Stored { parent, blocks } => {
                let stored = self.table.store(slot, *parent, blocks, |b| b.sequence_hash);
                if parent.is_some() && !stored.parent_held {
                    unknown_parent = true;
                    self.stats.unknown_parents += 1;
                }
                duplicate_blocks = stored.duplicates as u32;
                self.state[slot as usize].blocks += stored.added;
                self.stats.blocks_stored += stored.added as u64;
                self.stats.duplicate_blocks += stored.duplicates as u64;
                self.count_refused(worker, stored.refused);
            }
            KvCacheEventData::Removed { sequence_hashes } => {
                let (removed, unknown) = self.table.remove(slot, sequence_hashes);
                unknown_blocks = unknown as u32;
                self.state[slot as usize].blocks -= removed;
                self.stats.blocks_removed += removed as u64;
                self.stats.unknown_removals += unknown as u64;
                self.table.maybe_shrink();
            }
            KvCacheEventData::Cleared => {
                self.table.clear_slot(slot);
                self.state[slot as usize].blocks = 0;
                self.stats.clears += 1;
            }
        }
        if unknown_parent || duplicate_blocks > 0 || unknown_blocks > 0 {
            tracing::debug!(
                worker,
                event_id,
                unknown_parent,
                duplicate_blocks,
                unknown_blocks,
                "kv index: event inconsistent with the index"
            );
            return Err(IndexError::Inconsistent {
                worker,
                event_id,
                unknown_parent,
                duplicate_blocks,
                unknown_blocks,
            });
        }
        Ok(())
    }

    /// Per worker, how many leading blocks of `blocks` (a request's sequence hashes) it holds.
    pub fn find_matches(&self, blocks: &[SequenceHash]) -> OverlapScores {
        let mut out = OverlapScores::default();
        self.table.find_matches_into(blocks, &mut out);
        out
    }

    /// [`Self::find_matches`] into a caller-owned result (no allocation once it has grown).
    pub fn find_matches_into(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        self.table.find_matches_into(blocks, out);
    }

    /// Expects about `blocks` distinct blocks (the workers' KV capacity). Nothing is allocated
    /// up front (workers often share most blocks, so far fewer may be live); once the index
    /// holds a quarter of the hint it grows straight to room for all of it instead of
    /// rehashing at every doubling, and it does not shrink below that room. Capped at
    /// [`KvIndex::MAX_EXPECTED_BLOCKS`] so a wrong hint cannot pin unbounded memory; past the
    /// cap the index still grows as needed.
    pub fn expect_blocks(&mut self, blocks: usize) {
        self.table
            .expect_blocks(blocks.min(Self::MAX_EXPECTED_BLOCKS));
    }

    /// Largest hint [`KvIndex::expect_blocks`] honours: 2^20 blocks (32 MB of map once that full).
    pub const MAX_EXPECTED_BLOCKS: usize = 1 << 20;

    /// Replaces what the index knows of `worker` with a dump of its whole cache: `Stored`
    /// events, parents first, each carrying the id of the worker's last live event before the
    /// snapshot (the mocker's `dump_cache_state`). Live events up to that id are then dropped
    /// as stale and later ones apply on top. Live events past the snapshot that arrived before
    /// the dump are lost with the clear: the index may miss those blocks (it under-counts, the
    /// safe side) until the worker stores them again. Returns the blocks recorded.
    pub fn load_dump(&mut self, worker: WorkerKey, events: &[KvCacheEvent]) -> usize {
        let slot = self.table.register(worker);
        if self.state.len() <= slot as usize {
            self.state.resize(slot as usize + 1, WorkerState::default());
        }
        self.table.clear_slot(slot);
        let mut blocks = 0;
        let mut last_event_id = None;
        for event in events {
            last_event_id = last_event_id.max(Some(event.event_id));
            if let KvCacheEventData::Stored {
                parent,
                blocks: stored,
            } = &event.data
            {
                let stored = self.table.store(slot, *parent, stored, |b| b.sequence_hash);
                blocks += stored.added;
                self.count_refused(worker, stored.refused);
            }
        }
        self.state[slot as usize] = WorkerState {
            last_event_id,
            blocks,
        };
        self.stats.dumps_loaded += 1;
        blocks
    }

    fn count_refused(&mut self, worker: WorkerKey, refused: usize) {
        if refused > 0 {
            self.stats.blocks_refused += refused as u64;
            tracing::warn!(
                worker,
                refused,
                "kv index full ({} blocks): blocks not recorded",
                MAX_BLOCKS
            );
        }
    }

    /// Most distinct blocks the index records (2^28 − 1, some 10 GB); blocks stored past it
    /// are not recorded and are counted in [`IndexStats::blocks_refused`].
    pub const MAX_BLOCKS: usize = MAX_BLOCKS;

    /// Forgets a worker entirely (it left): its blocks and its event numbering.
    pub fn remove_worker(&mut self, worker: WorkerKey) {
        if let Some(slot) = self.table.unregister(worker) {
            self.state[slot as usize] = WorkerState::default();
            self.stats.workers_removed += 1;
        }
    }

    /// Drops every block of a worker but keeps it (and its event numbering).
    pub fn clear_worker(&mut self, worker: WorkerKey) {
        if let Some(slot) = self.table.slot(worker) {
            self.table.clear_slot(slot);
            self.state[slot as usize].blocks = 0;
            self.stats.clears += 1;
        }
    }

    /// Whether `worker` holds the block `hash`.
    pub fn holds(&self, worker: WorkerKey, hash: SequenceHash) -> bool {
        self.table
            .slot(worker)
            .is_some_and(|slot| self.table.contains(hash, slot))
    }

    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// Distinct blocks held by at least one worker.
    pub fn block_count(&self) -> usize {
        self.table.len()
    }

    /// Blocks `worker` holds (0 for an unknown worker).
    pub fn worker_block_count(&self, worker: WorkerKey) -> usize {
        self.table
            .slot(worker)
            .map_or(0, |slot| self.state[slot as usize].blocks)
    }

    /// Workers the index knows (in no particular order).
    pub fn workers(&self) -> impl Iterator<Item = WorkerKey> + '_ {
        self.table.workers()
    }

    pub fn worker_count(&self) -> usize {
        self.table.worker_count()
    }

    /// Panics if the internal structure is inconsistent (every block of a run carries the
    /// run's holders, the map and the runs agree, per-worker counts add up). For tests; O(size).
    #[doc(hidden)]
    pub fn assert_consistent(&self) {
        self.table.check();
        for worker in self.table.workers() {
            let slot = self.table.slot(worker).unwrap_or(u32::MAX);
            assert_eq!(
                self.state[slot as usize].blocks,
                self.table.blocks_of(slot),
                "worker {worker}"
            );
        }
    }

    /// Runs (compressed stretches of blocks with equal holders) in the index; a lookup costs
    /// one hash probe per run it crosses.
    pub fn run_count(&self) -> usize {
        self.table.run_count()
    }

    /// Estimated bytes held by the index (heap and mapped).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.state.capacity() * size_of::<WorkerState>()
    }

    /// Of [`KvIndex::memory_bytes`], the bytes in the block map's own memory mapping (a large
    /// map asks for huge pages there) rather than on the heap, so a heap profiler misses them.
    pub fn mapped_bytes(&self) -> usize {
        self.table.mapped_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::kv::StoredBlock;

    fn block(h: u64) -> StoredBlock {
        StoredBlock {
            sequence_hash: h,
            content_hash: h ^ 0xff,
        }
    }

    fn stored(id: u64, parent: Option<u64>, hashes: &[u64]) -> KvCacheEvent {
        KvCacheEvent {
            event_id: id,
            data: KvCacheEventData::Stored {
                parent,
                blocks: hashes.iter().map(|&h| block(h)).collect(),
            },
        }
    }

    fn removed(id: u64, hashes: &[u64]) -> KvCacheEvent {
        KvCacheEvent {
            event_id: id,
            data: KvCacheEventData::Removed {
                sequence_hashes: hashes.to_vec(),
            },
        }
    }

    #[test]
    fn overlap_counts_leading_blocks_per_worker() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(0, None, &[10, 11, 12])).unwrap();
        idx.apply_event(2, &stored(0, None, &[10])).unwrap();
        idx.apply_event(2, &stored(1, Some(10), &[21])).unwrap();
        let s = idx.find_matches(&[10, 11, 12, 13]);
        assert_eq!((s.get(1), s.get(2)), (3, 1));
        assert_eq!(s.tree_blocks, 4);
        let s = idx.find_matches(&[10, 21]);
        assert_eq!((s.get(1), s.get(2)), (1, 2));
        assert!(idx.find_matches(&[99, 10]).scores.is_empty());
        assert!(idx.find_matches(&[]).scores.is_empty());
        assert_eq!(idx.block_count(), 4);
        assert_eq!(idx.worker_block_count(1), 3);
    }

    #[test]
    fn a_dump_replaces_the_workers_view_and_orders_later_events() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(1, None, &[10, 11])).unwrap();
        idx.apply_event(2, &stored(1, None, &[10])).unwrap();
        // Worker 1's snapshot at its event 7: it holds 10, 12 (11 went, 12 came meanwhile).
        let dump = [stored(7, None, &[10]), stored(7, Some(10), &[12])];
        assert_eq!(idx.load_dump(1, &dump), 2);
        assert!(idx.holds(1, 12) && !idx.holds(1, 11) && idx.holds(2, 10));
        // Events up to the snapshot are stale; later ones apply.
        assert!(matches!(
            idx.apply_event(1, &stored(7, Some(10), &[11])),
            Err(IndexError::StaleEvent { .. })
        ));
        idx.apply_event(1, &removed(8, &[12])).unwrap();
        assert!(!idx.holds(1, 12));
        assert_eq!(idx.worker_block_count(1), 1);
        // A worker the index never saw is registered by its dump; an empty dump clears.
        assert_eq!(idx.load_dump(3, &dump), 2);
        assert_eq!(idx.load_dump(3, &[]), 0);
        assert_eq!(idx.worker_block_count(3), 0);
        assert_eq!(idx.stats().dumps_loaded, 3);
        idx.assert_consistent();
    }

    #[test]
    fn expected_blocks_are_reserved_when_filling_kept_then_released() {
        let mut idx = KvIndex::new();
        let empty = idx.memory_bytes();
        idx.expect_blocks(100_000);
        assert_eq!(
            idx.memory_bytes(),
            empty,
            "the hint alone allocates nothing"
        );
        // A few live blocks under a big hint stay in a small map.
        let few: Vec<u64> = (1..=1_000).collect();
        idx.apply_event(1, &stored(0, None, &few)).unwrap();
        assert!(idx.memory_bytes() < 100_000, "{}", idx.memory_bytes());
        // Past a quarter of the hint the map makes room for all of it at once.
        let hashes: Vec<u64> = (1_001..=30_000).collect();
        idx.apply_event(1, &stored(1, Some(1_000), &hashes))
            .unwrap();
        let reserved = idx.memory_bytes();
        assert!(reserved >= empty + 100_000 * 16, "{empty} -> {reserved}");
        idx.apply_event(1, &removed(2, &hashes)).unwrap();
        idx.apply_event(1, &removed(3, &few)).unwrap();
        assert_eq!(idx.block_count(), 0);
        assert!(
            idx.memory_bytes() >= empty + 100_000 * 16,
            "emptying keeps the expected room"
        );
        idx.expect_blocks(0);
        assert!(
            idx.memory_bytes() < reserved / 4,
            "a lower hint lets it shrink"
        );
        // A hint far past the cap pins at most the cap.
        idx.expect_blocks(usize::MAX);
        let all: Vec<u64> = (1..=(KvIndex::MAX_EXPECTED_BLOCKS as u64 / 4 + 1)).collect();
        idx.apply_event(2, &stored(0, None, &all)).unwrap();
        assert!(idx.memory_bytes() < 4 * KvIndex::MAX_EXPECTED_BLOCKS * 24);
        assert_eq!(idx.find_matches(&all[..2]).get(2), 2);
    }

    #[test]
    fn removal_frees_blocks_nobody_holds() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(0, None, &[10, 11])).unwrap();
        idx.apply_event(2, &stored(0, None, &[10])).unwrap();
        idx.apply_event(1, &removed(1, &[11, 10])).unwrap();
        assert_eq!(idx.block_count(), 1);
        assert_eq!(idx.find_matches(&[10, 11]).get(2), 1);
        idx.remove_worker(2);
        assert_eq!(idx.block_count(), 0);
        assert_eq!(idx.workers().count(), 1);
    }

    #[test]
    fn a_hole_stops_the_match_and_filling_it_restores_the_children() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(0, None, &[10, 11, 12])).unwrap();
        idx.apply_event(1, &removed(1, &[11])).unwrap();
        assert_eq!(idx.find_matches(&[10, 11, 12]).get(1), 1);
        idx.apply_event(1, &stored(2, Some(10), &[11])).unwrap();
        assert_eq!(idx.find_matches(&[10, 11, 12]).get(1), 3);
    }

    #[test]
    fn unknown_parent_is_counted_and_applied() {
        let mut idx = KvIndex::new();
        let err = idx
            .apply_event(1, &stored(0, Some(5), &[6, 7]))
            .unwrap_err();
        assert!(matches!(
            err,
            IndexError::Inconsistent {
                unknown_parent: true,
                ..
            }
        ));
        assert_eq!(idx.stats().unknown_parents, 1);
        assert!(idx.holds(1, 6) && idx.holds(1, 7));
        assert_eq!(idx.find_matches(&[5, 6, 7]).get(1), 0);
        idx.apply_event(1, &stored(1, None, &[5])).unwrap();
        assert_eq!(idx.find_matches(&[5, 6, 7]).get(1), 3);
    }

    #[test]
    fn stale_and_duplicate_events_are_dropped_and_gaps_counted() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(5, None, &[10])).unwrap();
        let err = idx.apply_event(1, &removed(5, &[10])).unwrap_err();
        assert_eq!(
            err,
            IndexError::StaleEvent {
                worker: 1,
                event_id: 5,
                last_event_id: 5
            }
        );
        assert!(idx.apply_event(1, &removed(3, &[10])).is_err());
        assert!(idx.holds(1, 10));
        idx.apply_event(1, &stored(9, Some(10), &[11])).unwrap();
        let s = idx.stats();
        assert_eq!(
            (s.duplicate_events, s.out_of_order_events, s.event_gaps),
            (1, 1, 1)
        );
        // Event ids are per worker.
        idx.apply_event(2, &stored(0, None, &[10])).unwrap();
        // A removed worker starts its numbering afresh.
        idx.remove_worker(1);
        idx.apply_event(1, &stored(0, None, &[10])).unwrap();
    }

    #[test]
    fn duplicate_stores_and_unknown_removals_are_counted_not_applied_twice() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(0, None, &[10, 11])).unwrap();
        let err = idx
            .apply_event(1, &stored(1, None, &[10, 11, 12]))
            .unwrap_err();
        assert!(matches!(
            err,
            IndexError::Inconsistent {
                duplicate_blocks: 2,
                ..
            }
        ));
        assert_eq!(idx.worker_block_count(1), 3);
        let err = idx.apply_event(1, &removed(2, &[12, 99, 12])).unwrap_err();
        assert!(matches!(
            err,
            IndexError::Inconsistent {
                unknown_blocks: 2,
                ..
            }
        ));
        assert_eq!(idx.worker_block_count(1), 2);
        assert_eq!(idx.stats().unknown_removals, 2);
        assert_eq!(idx.stats().duplicate_blocks, 2);
    }

    #[test]
    fn cleared_drops_blocks_but_keeps_the_worker() {
        let mut idx = KvIndex::new();
        idx.apply_event(1, &stored(0, None, &[10, 11])).unwrap();
        idx.apply_event(2, &stored(0, None, &[10])).unwrap();
        idx.apply_event(
            1,
            &KvCacheEvent {
                event_id: 1,
                data: KvCacheEventData::Cleared,
            },
        )
        .unwrap();
        assert_eq!(idx.block_count(), 1);
        assert_eq!(idx.workers().count(), 2);
        // Numbering continues after a clear.
        assert!(idx.apply_event(1, &stored(1, None, &[10])).is_err());
        idx.clear_worker(2);
        assert_eq!(idx.block_count(), 0);
        assert_eq!(idx.stats().clears, 2);
    }

    #[test]
    fn memory_grows_with_blocks_and_shrinks_after_removal() {
        let mut idx = KvIndex::new();
        let empty = idx.memory_bytes();
        let hashes: Vec<u64> = (1..=100_000u64).map(|i| i.wrapping_mul(MIX)).collect();
        idx.apply_event(1, &stored(0, None, &hashes)).unwrap();
        let full = idx.memory_bytes();
        assert!(full > empty + 100_000 * 16, "{full}");
        idx.apply_event(1, &removed(1, &hashes)).unwrap();
        assert_eq!(idx.block_count(), 0);
        assert!(idx.memory_bytes() < full / 8, "{}", idx.memory_bytes());
    }

    const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
}
