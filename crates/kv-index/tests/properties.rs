//! Property tests: `KvIndex` and `ApproxIndex` against naive reference models.
//!
//! Blocks come from a small random forest of sequence hashes (each hash has at most one
//! parent), so stored events are realistic chains, yet malformed events (unknown parents,
//! duplicate stores, removals of blocks not held, stale or skipped event ids) are frequent.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use switchyard_kv_index::{ApproxConfig, ApproxIndex, IndexError, KvIndex, OverlapScores};
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, StoredBlock};

/// Hashes are 1..=UNIVERSE; parent[h] < h or none.
const UNIVERSE: u64 = 40;

fn forest() -> impl Strategy<Value = Vec<Option<u64>>> {
    // parent_choice[i] picks the parent of hash i+1 among 0..=i (0 = root).
    prop::collection::vec(any::<prop::sample::Index>(), UNIVERSE as usize).prop_map(|choices| {
        let mut parents = vec![None; UNIVERSE as usize + 1];
        for (i, c) in choices.into_iter().enumerate() {
            let h = i as u64 + 1;
            let p = c.index(h as usize) as u64; // 0..h
            parents[h as usize] = (p != 0).then_some(p);
        }
        parents
    })
}

/// The chain root → `h`.
fn chain(parents: &[Option<u64>], h: u64) -> Vec<u64> {
    let mut out = vec![h];
    let mut cur = h;
    while let Some(p) = parents[cur as usize] {
        out.push(p);
        cur = p;
    }
    out.reverse();
    out
}

#[derive(Clone, Debug)]
enum Op {
    /// Store the last `len` blocks of the chain to `leaf`, parented on the block before them
    /// (or on `bogus_parent` when set).
    Store {
        worker: usize,
        leaf: u64,
        len: usize,
        bogus_parent: Option<u64>,
        id_delta: i8,
    },
    Remove {
        worker: usize,
        hashes: Vec<u64>,
        id_delta: i8,
    },
    Clear {
        worker: usize,
        id_delta: i8,
    },
    RemoveWorker {
        worker: usize,
    },
    ClearWorker {
        worker: usize,
    },
    Lookup {
        leaf: u64,
        garbage_at: Option<usize>,
    },
}

/// Mostly +1; sometimes a duplicate (0), a reorder (-2) or a gap (+3).
fn id_delta() -> impl Strategy<Value = i8> {
    prop_oneof![8 => Just(1i8), 1 => Just(0i8), 1 => Just(-2i8), 1 => Just(3i8)]
}

fn op(workers: usize) -> impl Strategy<Value = Op> {
    let w = 0..workers;
    prop_oneof![
        6 => (w.clone(), 1..=UNIVERSE, 1usize..6, prop::option::weighted(0.1, 1..=UNIVERSE + 3), id_delta())
            .prop_map(|(worker, leaf, len, bogus_parent, id_delta)| Op::Store { worker, leaf, len, bogus_parent, id_delta }),
        3 => (w.clone(), prop::collection::vec(1..=UNIVERSE + 3, 0..6), id_delta())
            .prop_map(|(worker, hashes, id_delta)| Op::Remove { worker, hashes, id_delta }),
        1 => (w.clone(), id_delta()).prop_map(|(worker, id_delta)| Op::Clear { worker, id_delta }),
        1 => w.clone().prop_map(|worker| Op::RemoveWorker { worker }),
        1 => w.prop_map(|worker| Op::ClearWorker { worker }),
        4 => (1..=UNIVERSE, prop::option::weighted(0.2, 0usize..8))
            .prop_map(|(leaf, garbage_at)| Op::Lookup { leaf, garbage_at }),
    ]
}

#[derive(Default, Debug)]
struct ModelWorker {
    blocks: HashSet<u64>,
    last_id: Option<u64>,
}

/// The naive reference: per worker a set of blocks and its last event id.
#[derive(Default)]
struct Model {
    workers: HashMap<u64, ModelWorker>,
    next_id: HashMap<u64, u64>,
    unknown_parents: u64,
    duplicate_blocks: u64,
    unknown_removals: u64,
    stale: u64,
}

impl Model {
    fn apply(&mut self, worker: u64, event: &KvCacheEvent) -> Result<(), ()> {
        let w = self.workers.entry(worker).or_default();
        if let Some(last) = w.last_id
            && event.event_id <= last
        {
            self.stale += 1;
            return Err(());
        }
        w.last_id = Some(event.event_id);
        let mut anomaly = false;
        match &event.data {
            KvCacheEventData::Stored { parent, blocks } => {
                if let Some(p) = parent
                    && !w.blocks.contains(p)
                {
                    self.unknown_parents += 1;
                    anomaly = true;
                }
                for b in blocks {
                    if !w.blocks.insert(b.sequence_hash) {
                        self.duplicate_blocks += 1;
                        anomaly = true;
                    }
                }
            }
            KvCacheEventData::Removed { sequence_hashes } => {
                for h in sequence_hashes {
                    if !w.blocks.remove(h) {
                        self.unknown_removals += 1;
                        anomaly = true;
                    }
                }
            }
            KvCacheEventData::Cleared => w.blocks.clear(),
        }
        if anomaly { Err(()) } else { Ok(()) }
    }

    fn overlap(&self, worker: u64, request: &[u64]) -> u32 {
        self.workers.get(&worker).map_or(0, |w| {
            request.iter().take_while(|h| w.blocks.contains(h)).count() as u32
        })
    }

    fn union(&self) -> usize {
        self.workers
            .values()
            .flat_map(|w| w.blocks.iter())
            .collect::<HashSet<_>>()
            .len()
    }

    /// The id the next event of `worker` carries, drifting by `delta` from the expected one.
    fn event_id(&mut self, worker: u64, delta: i8) -> u64 {
        let next = self.next_id.entry(worker).or_insert(0);
        let id = (*next as i64 + i64::from(delta) - 1).max(0) as u64;
        *next = (*next).max(id + 1);
        id
    }
}

fn check_scores(scores: &OverlapScores, expected: &HashMap<u64, u32>, union: usize) {
    let mut seen = HashSet::new();
    for s in &scores.scores {
        assert!(seen.insert(s.worker), "worker {} twice", s.worker);
        assert!(s.blocks > 0, "zero score listed for {}", s.worker);
        assert_eq!(
            Some(&s.blocks),
            expected.get(&s.worker),
            "worker {}",
            s.worker
        );
    }
    for (w, &e) in expected {
        if e > 0 {
            assert!(seen.contains(w), "worker {w} missing (expected {e})");
        }
    }
    assert_eq!(scores.tree_blocks, union);
}

fn run_exact(parents: Vec<Option<u64>>, ops: Vec<Op>, workers: usize) {
    // Worker keys far apart so slots and keys differ.
    let key = |w: usize| 1000 + 7 * w as u64;
    let mut idx = KvIndex::new();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Store {
                worker,
                leaf,
                len,
                bogus_parent,
                id_delta,
            } => {
                let c = chain(&parents, leaf);
                let start = c.len().saturating_sub(len);
                let parent = bogus_parent.or_else(|| start.checked_sub(1).map(|i| c[i]));
                let blocks = c[start..]
                    .iter()
                    .map(|&h| StoredBlock {
                        sequence_hash: h,
                        content_hash: h.wrapping_mul(31),
                    })
                    .collect();
                let w = key(worker);
                let event = KvCacheEvent {
                    event_id: model.event_id(w, id_delta),
                    data: KvCacheEventData::Stored { parent, blocks },
                };
                let got = idx.apply_event(w, &event);
                let want = model.apply(w, &event);
                assert_eq!(got.is_ok(), want.is_ok(), "{event:?}: {got:?}");
            }
            Op::Remove {
                worker,
                hashes,
                id_delta,
            } => {
                let w = key(worker);
                let event = KvCacheEvent {
                    event_id: model.event_id(w, id_delta),
                    data: KvCacheEventData::Removed {
                        sequence_hashes: hashes,
                    },
                };
                let got = idx.apply_event(w, &event);
                let want = model.apply(w, &event);
                assert_eq!(got.is_ok(), want.is_ok(), "{event:?}: {got:?}");
            }
            Op::Clear { worker, id_delta } => {
                let w = key(worker);
                let event = KvCacheEvent {
                    event_id: model.event_id(w, id_delta),
                    data: KvCacheEventData::Cleared,
                };
                let got = idx.apply_event(w, &event);
                let want = model.apply(w, &event);
                assert_eq!(got.is_ok(), want.is_ok(), "{event:?}: {got:?}");
                if let Err(IndexError::Inconsistent { .. }) = got {
                    panic!("a clear is never inconsistent");
                }
            }
            Op::RemoveWorker { worker } => {
                let w = key(worker);
                idx.remove_worker(w);
                model.workers.remove(&w);
                model.next_id.remove(&w);
            }
            Op::ClearWorker { worker } => {
                let w = key(worker);
                idx.clear_worker(w);
                if let Some(mw) = model.workers.get_mut(&w) {
                    mw.blocks.clear();
                }
            }
            Op::Lookup { leaf, garbage_at } => {
                let mut request = chain(&parents, leaf);
                if let Some(at) = garbage_at {
                    let at = at.min(request.len());
                    request.insert(at, UNIVERSE + 100);
                }
                let expected: HashMap<u64, u32> = model
                    .workers
                    .keys()
                    .map(|&w| (w, model.overlap(w, &request)))
                    .collect();
                check_scores(&idx.find_matches(&request), &expected, model.union());
            }
        }
        idx.assert_consistent();
        assert_eq!(idx.block_count(), model.union());
        for (&w, mw) in &model.workers {
            assert_eq!(idx.worker_block_count(w), mw.blocks.len(), "worker {w}");
        }
    }
    let s = idx.stats();
    assert_eq!(s.unknown_parents, model.unknown_parents);
    assert_eq!(s.duplicate_blocks, model.duplicate_blocks);
    assert_eq!(s.unknown_removals, model.unknown_removals);
    assert_eq!(s.duplicate_events + s.out_of_order_events, model.stale);
    // Removing everyone empties the index.
    for w in 0..workers {
        idx.remove_worker(key(w));
    }
    assert_eq!(idx.block_count(), 0);
    assert_eq!(idx.find_matches(&chain(&parents, UNIVERSE)).scores.len(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn exact_index_matches_the_reference_with_few_workers(
        parents in forest(),
        ops in prop::collection::vec(op(4), 1..120),
    ) {
        run_exact(parents, ops, 4);
    }

    /// More than 64 workers exercises the slots beyond the inline bitset.
    #[test]
    fn exact_index_matches_the_reference_with_many_workers(
        parents in forest(),
        ops in prop::collection::vec(op(70), 1..300),
    ) {
        run_exact(parents, ops, 70);
    }

    /// Arbitrary events (any hashes, any ids) never panic and keep counts consistent.
    #[test]
    fn arbitrary_events_never_panic(
        events in prop::collection::vec(
            (0u64..3, any::<u64>(), prop_oneof![
                (prop::option::of(0u64..8), prop::collection::vec(0u64..8, 0..5)).prop_map(|(parent, hs)| KvCacheEventData::Stored {
                    parent,
                    blocks: hs.into_iter().map(|h| StoredBlock { sequence_hash: h, content_hash: h }).collect(),
                }),
                prop::collection::vec(0u64..8, 0..5).prop_map(|sequence_hashes| KvCacheEventData::Removed { sequence_hashes }),
                Just(KvCacheEventData::Cleared),
            ]),
            0..60,
        ),
        request in prop::collection::vec(0u64..8, 0..10),
    ) {
        let mut idx = KvIndex::new();
        for (worker, event_id, data) in events {
            let _ = idx.apply_event(worker, &KvCacheEvent { event_id, data });
        }
        let scores = idx.find_matches(&request);
        prop_assert!(scores.scores.iter().all(|s| s.blocks as usize <= request.len()));
        let total: usize = (0..3).map(|w| idx.worker_block_count(w)).sum();
        prop_assert!(idx.block_count() <= total);
        prop_assert!(idx.block_count() <= 8);
    }
}

#[derive(Clone, Debug)]
enum ApproxOp {
    Record { worker: u64, leaf: u64, dt: u64 },
    Expire { dt: u64 },
    RemoveWorker { worker: u64 },
    Lookup { leaf: u64 },
}

fn approx_op() -> impl Strategy<Value = ApproxOp> {
    prop_oneof![
        6 => (0u64..4, 1..=UNIVERSE, 0u64..40).prop_map(|(worker, leaf, dt)| ApproxOp::Record { worker, leaf, dt }),
        1 => (0u64..120).prop_map(|dt| ApproxOp::Expire { dt }),
        1 => (0u64..4).prop_map(|worker| ApproxOp::RemoveWorker { worker }),
        3 => (1..=UNIVERSE).prop_map(|leaf| ApproxOp::Lookup { leaf }),
    ]
}

/// Reference for the approximate index: (worker, block) → (time, order), expired and pruned
/// by sorting.
#[derive(Default)]
struct ApproxModel {
    entries: HashMap<(u64, u64), (u64, u64)>,
    seq: u64,
    now: u64,
}

impl ApproxModel {
    fn expire(&mut self, ttl: u64) {
        let now = self.now;
        self.entries.retain(|_, &mut (t, _)| t + ttl > now);
    }

    fn record(&mut self, worker: u64, blocks: &[u64], cfg: &ApproxConfig) {
        for &h in blocks.iter().rev() {
            self.seq += 1;
            let (now, seq) = (self.now, self.seq);
            self.entries
                .entry((worker, h))
                .and_modify(|e| {
                    // Recorded again at the same instant keeps its place in the order.
                    if e.0 != now {
                        *e = (now, seq);
                    }
                })
                .or_insert((now, seq));
        }
        self.expire(cfg.ttl.as_millis() as u64);
        if self.entries.len() > cfg.max_tree_size {
            let target = (cfg.max_tree_size as f64 * cfg.prune_target_ratio) as usize;
            let mut order: Vec<_> = self.entries.iter().map(|(k, v)| (*v, *k)).collect();
            order.sort();
            for (_, k) in order.into_iter().take(self.entries.len() - target) {
                self.entries.remove(&k);
            }
        }
    }

    fn overlap(&self, worker: u64, request: &[u64]) -> u32 {
        request
            .iter()
            .take_while(|&&h| self.entries.contains_key(&(worker, h)))
            .count() as u32
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn approx_index_matches_the_reference(
        parents in forest(),
        ops in prop::collection::vec(approx_op(), 1..150),
        ttl in 20u64..200,
        max in 1usize..40,
        ratio in prop_oneof![Just(0.8), Just(0.5), Just(0.0), Just(1.0)],
    ) {
        let cfg = ApproxConfig { ttl: Duration::from_millis(ttl), max_tree_size: max, prune_target_ratio: ratio };
        let mut idx = ApproxIndex::new(cfg);
        let mut model = ApproxModel::default();
        for op in ops {
            match op {
                ApproxOp::Record { worker, leaf, dt } => {
                    model.now += dt;
                    let blocks = chain(&parents, leaf);
                    idx.record(worker, &blocks, model.now);
                    model.record(worker, &blocks, &cfg);
                }
                ApproxOp::Expire { dt } => {
                    model.now += dt;
                    idx.expire(model.now);
                    model.expire(ttl);
                }
                ApproxOp::RemoveWorker { worker } => {
                    idx.remove_worker(worker);
                    model.entries.retain(|&(w, _), _| w != worker);
                }
                ApproxOp::Lookup { leaf } => {
                    let request = chain(&parents, leaf);
                    let expected: HashMap<u64, u32> =
                        (0..4).map(|w| (w, model.overlap(w, &request))).collect();
                    let union = model.entries.keys().map(|&(_, h)| h).collect::<HashSet<_>>().len();
                    check_scores(&idx.find_matches(&request), &expected, union);
                }
            }
            prop_assert_eq!(idx.entry_count(), model.entries.len());
            prop_assert!(idx.entry_count() <= max);
            let union = model.entries.keys().map(|&(_, h)| h).collect::<HashSet<_>>().len();
            prop_assert_eq!(idx.block_count(), union);
        }
    }
}
