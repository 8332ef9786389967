//! Approximate mode (`--no-kv-events`): the router's own decisions stand in for KV events.
//!
//! After routing a request to a worker, the router [`ApproxIndex::record`]s the request's
//! blocks for that worker: it predicts the worker will cache them. A prediction lives for the
//! TTL (`--router-ttl`, 120 s) after it was last recorded; recording a block again refreshes it.
//! The index also caps its size: when it holds more than `max_tree_size` (worker, block)
//! entries, it drops the least recently recorded ones until `prune_target_ratio × max` remain.
//! Within one `record` call the deepest blocks count as the oldest, so pruning trims sequences
//! from their tails and never leaves a tail without its prefix.
//!
//! Time is passed in as milliseconds on any monotonic clock the caller chooses (tests use plain
//! numbers); a time earlier than one already seen is treated as that later time.

use std::collections::VecDeque;
use std::time::Duration;

use switchyard_protocol::kv::SequenceHash;

use crate::table::{BlockTable, IntMap, OverlapScores, WorkerKey};

/// Approximate-mode limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApproxConfig {
    /// How long a recorded block is assumed cached after it was last recorded.
    pub ttl: Duration,
    /// Prune when more (worker, block) entries than this are recorded.
    pub max_tree_size: usize,
    /// Prune down to this fraction of `max_tree_size` (clamped to 0..=1).
    pub prune_target_ratio: f64,
}

impl Default for ApproxConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(120),
            max_tree_size: 1 << 20,
            prune_target_ratio: 0.8,
        }
    }
}

/// Counters of the approximate index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApproxStats {
    /// (worker, block) entries newly recorded.
    pub recorded: u64,
    /// Entries recorded again before they expired (TTL refreshed).
    pub refreshed: u64,
    /// Entries dropped because their TTL ran out.
    pub expired: u64,
    /// Entries dropped by size pruning.
    pub pruned: u64,
}

/// Predicted cache contents per worker, from the router's own routing decisions.
pub struct ApproxIndex {
    config: ApproxConfig,
    table: BlockTable,
    /// (slot, block) → time last recorded (ms).
    touched: IntMap<(u32, SequenceHash), u64>,
    /// Entries in recording order; an element is stale (skipped) when the entry was recorded
    /// again later or removed.
    queue: VecDeque<(u64, u32, SequenceHash)>,
    now_ms: u64,
    stats: ApproxStats,
}

impl Default for ApproxIndex {
    fn default() -> Self {
        Self::new(ApproxConfig::default())
    }
}

impl ApproxIndex {
    pub fn new(config: ApproxConfig) -> Self {
        Self {
            config,
            table: BlockTable::default(),
            touched: IntMap::default(),
            queue: VecDeque::new(),
            now_ms: 0,
            stats: ApproxStats::default(),
        }
    }

    pub fn config(&self) -> ApproxConfig {
        self.config
    }

    /// Records that `worker` was sent a request made of `blocks` (sequence hashes, in order)
    /// at `now_ms`; expires and prunes as needed.
    pub fn record(&mut self, worker: WorkerKey, blocks: &[SequenceHash], now_ms: u64) {
        let now = self.advance(now_ms);
        let slot = self.table.register(worker);
        // Deepest first: among entries recorded at the same time, a tail is older than its
        // prefix, so pruning takes tails first.
        self.table.store(slot, None, blocks, |h| *h);
        for &hash in blocks.iter().rev() {
            match self.touched.insert((slot, hash), now) {
                Some(_) => self.stats.refreshed += 1,
                None => self.stats.recorded += 1,
            }
            self.queue.push_back((now, slot, hash));
        }
        self.expire_until(now);
        self.prune();
        self.compact_queue();
    }

    /// Drops every entry whose TTL ran out by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let now = self.advance(now_ms);
        self.expire_until(now);
        self.compact_queue();
    }

    /// Expires as of `now_ms`, then looks up.
    pub fn find_matches_at(&mut self, blocks: &[SequenceHash], now_ms: u64) -> OverlapScores {
        self.expire(now_ms);
        self.find_matches(blocks)
    }

    /// Per worker, how many leading `blocks` it is predicted to hold, as of the last
    /// `record`/`expire` (call [`Self::expire`] or use [`Self::find_matches_at`] to apply the
    /// clock first).
    pub fn find_matches(&self, blocks: &[SequenceHash]) -> OverlapScores {
        let mut out = OverlapScores::default();
        self.table.find_matches_into(blocks, &mut out);
        out
    }

    pub fn find_matches_into(&self, blocks: &[SequenceHash], out: &mut OverlapScores) {
        self.table.find_matches_into(blocks, out);
    }

    /// Forgets a worker and its predictions.
    pub fn remove_worker(&mut self, worker: WorkerKey) {
        if let Some(slot) = self.table.unregister(worker) {
            self.touched.retain(|&(s, _), _| s != slot);
            self.queue.retain(|&(_, s, _)| s != slot);
        }
    }

    /// Whether `worker` is predicted to hold `hash`.
    pub fn holds(&self, worker: WorkerKey, hash: SequenceHash) -> bool {
        self.table
            .slot(worker)
            .is_some_and(|slot| self.table.contains(hash, slot))
    }

    /// (worker, block) entries recorded (what `max_tree_size` bounds).
    pub fn entry_count(&self) -> usize {
        self.touched.len()
    }

    /// Distinct blocks predicted held by at least one worker.
    pub fn block_count(&self) -> usize {
        self.table.len()
    }

    pub fn stats(&self) -> ApproxStats {
        self.stats
    }

    pub fn memory_bytes(&self) -> usize {
        let touched_buckets = (self.touched.capacity() * 8 / 7).next_power_of_two();
        self.table.memory_bytes()
            + touched_buckets * (size_of::<((u32, u64), u64)>() + 1)
            + self.queue.capacity() * size_of::<(u64, u32, u64)>()
    }

    fn advance(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn expire_until(&mut self, now: u64) {
        let ttl = self.ttl_ms();
        while let Some(&(at, slot, hash)) = self.queue.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.queue.pop_front();
            if self.drop_if_current(at, slot, hash) {
                self.stats.expired += 1;
            }
        }
    }

    fn prune(&mut self) {
        if self.touched.len() <= self.config.max_tree_size {
            return;
        }
        let ratio = self.config.prune_target_ratio.clamp(0.0, 1.0);
        let target = (self.config.max_tree_size as f64 * ratio) as usize;
        while self.touched.len() > target {
            let Some((at, slot, hash)) = self.queue.pop_front() else {
                break;
            };
            if self.drop_if_current(at, slot, hash) {
                self.stats.pruned += 1;
            }
        }
        tracing::debug!(
            entries = self.touched.len(),
            target,
            "approximate kv index pruned"
        );
    }

    /// Removes the entry if this queue element is its latest recording.
    fn drop_if_current(&mut self, at: u64, slot: u32, hash: SequenceHash) -> bool {
        if self.touched.get(&(slot, hash)) != Some(&at) {
            return false;
        }
        self.touched.remove(&(slot, hash));
        self.table.remove(slot, &[hash]);
        true
    }

    /// Keeps refreshed entries from growing the queue without bound.
    fn compact_queue(&mut self) {
        if self.queue.len() > 2 * self.touched.len() + 1024 {
            let touched = &self.touched;
            // Keep one element per entry: the first one carrying its latest time.
            let mut seen = IntMap::<(u32, SequenceHash), ()>::default();
            self.queue.retain(|&(at, slot, hash)| {
                touched.get(&(slot, hash)) == Some(&at) && seen.insert((slot, hash), ()).is_none()
            });
            self.table.maybe_shrink();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ttl_ms: u64, max: usize, ratio: f64) -> ApproxConfig {
        ApproxConfig {
            ttl: Duration::from_millis(ttl_ms),
            max_tree_size: max,
            prune_target_ratio: ratio,
        }
    }

    #[test]
    fn recorded_blocks_match_until_the_ttl_runs_out() {
        let mut idx = ApproxIndex::new(config(1000, 100, 0.8));
        idx.record(1, &[1, 2, 3], 0);
        idx.record(2, &[1, 5], 10);
        let s = idx.find_matches(&[1, 2, 3, 4]);
        assert_eq!((s.get(1), s.get(2)), (3, 1));
        assert_eq!(idx.find_matches_at(&[1, 2], 999).get(1), 2);
        let s = idx.find_matches_at(&[1, 2], 1000);
        assert_eq!((s.get(1), s.get(2)), (0, 1));
        assert_eq!(idx.block_count(), 2);
        idx.expire(1010);
        assert_eq!(idx.block_count(), 0);
        assert_eq!(idx.stats().expired, 5);
    }

    #[test]
    fn recording_again_refreshes_the_ttl() {
        let mut idx = ApproxIndex::new(config(1000, 100, 0.8));
        idx.record(1, &[1, 2, 3], 0);
        idx.record(1, &[1, 2], 600);
        idx.expire(1200);
        assert_eq!(idx.find_matches(&[1, 2, 3]).get(1), 2);
        assert_eq!(idx.stats().refreshed, 2);
        idx.expire(1600);
        assert_eq!(idx.entry_count(), 0);
    }

    #[test]
    fn pruning_drops_oldest_tails_first_down_to_the_target() {
        let mut idx = ApproxIndex::new(config(1_000_000, 10, 0.5));
        idx.record(1, &[1, 2, 3, 4], 0);
        idx.record(2, &[1, 2, 3, 4], 1);
        idx.record(1, &[1], 2); // refresh worker 1's root
        idx.record(3, &[7, 8, 9], 3); // 11 entries > 10: prune to 5
        assert_eq!(idx.entry_count(), 5);
        assert_eq!(idx.stats().pruned, 6);
        // Oldest: worker 1's 4,3,2 (t=0), then worker 2's 4,3,2 (t=1); its 1 survives.
        let s = idx.find_matches(&[1, 2, 3]);
        assert_eq!((s.get(1), s.get(2)), (1, 1));
        assert_eq!(idx.find_matches(&[7, 8, 9]).get(3), 3);
    }

    #[test]
    fn removing_a_worker_forgets_its_predictions() {
        let mut idx = ApproxIndex::default();
        idx.record(1, &[1, 2], 0);
        idx.record(2, &[1], 0);
        idx.remove_worker(1);
        assert_eq!(idx.entry_count(), 1);
        assert_eq!(idx.find_matches(&[1, 2]).get(1), 0);
        assert_eq!(idx.find_matches(&[1, 2]).get(2), 1);
    }

    #[test]
    fn time_going_backwards_is_clamped() {
        let mut idx = ApproxIndex::new(config(100, 100, 0.8));
        idx.record(1, &[1], 500);
        idx.record(1, &[2], 10); // treated as t=500
        idx.expire(599);
        assert_eq!(idx.entry_count(), 2);
        idx.expire(600);
        assert_eq!(idx.entry_count(), 0);
    }
}
