//! Switchyard's `KvIndex` against Dynamo 1.6.1's single-threaded `RadixTree`
//! (`dynamo_kv_router::RadixTree`) on the same replay of the Mooncake conversation trace, in
//! the same process, one thread, configurations interleaved so machine noise hits both alike.
//!
//! From the repository root:
//!
//! cargo run --release --manifest-path bench/kv-index-vs-dynamo/Cargo.toml -- \
//!     --trace data/mooncake/conversation_trace.jsonl --workers 8,64 \
//!     --cache-blocks 16384,262144 --block-tokens 64 --choice cost,overlap --repeat 3
//!
//! The replay driver (`workload.rs`) is the one of `switchyard-kv-index`'s `replay_bench`
//! example, included by path so both programs measure exactly the same thing. Memory is
//! measured for both with a counting allocator (live heap bytes the index releases when
//! dropped, plus `KvIndex::mapped_bytes`, its block map's own mapping once large) next to
//! `KvIndex::memory_bytes`'s estimate.

#[path = "../../../crates/kv-index/examples/replay_bench/workload.rs"]
mod workload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dynamo_kv_router::RadixTree;
use dynamo_kv_router::protocols::{
    ExternalSequenceBlockHash, KvCacheEvent, KvCacheEventData, KvCacheRemoveData, KvCacheStoreData,
    KvCacheStoredBlockData, LocalBlockHash, OverlapScores, RouterEvent,
};
use workload::{Args, Choice, ReplayIndex, ReplayReport, Request, Switchyard, best, replay};

/// Counts live heap bytes so each index's footprint is measured the same way.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Dynamo's `RadixTree`: lookups by the blocks' content ("local") hashes, events carrying both
/// hashes, one dp rank.
struct Dynamo {
    tree: RadixTree,
    last: Option<OverlapScores>,
}

impl ReplayIndex for Dynamo {
    type Query = Vec<LocalBlockHash>;
    type Event = RouterEvent;

    fn name(&self) -> &'static str {
        "dynamo RadixTree"
    }
    fn query(&self, req: &Request) -> Vec<LocalBlockHash> {
        req.content.iter().map(|&c| LocalBlockHash(c)).collect()
    }
    fn lookup(&mut self, _req: &Request, query: Vec<LocalBlockHash>) {
        // early_exit = false: exact depth for every worker, as KvIndex reports.
        self.last = Some(self.tree.find_matches(query, false));
    }
    fn scores(&mut self, scores: &mut [u32]) {
        // Taken (and dropped) outside the timed lookup.
        if let Some(last) = self.last.take() {
            for (w, &s) in &last.scores {
                scores[w.worker_id as usize] = s;
            }
        }
    }
    fn stored_event(
        &self,
        worker: u64,
        event_id: u64,
        parent: Option<u64>,
        req: &Request,
        range: std::ops::Range<usize>,
    ) -> RouterEvent {
        let blocks = range
            .map(|i| KvCacheStoredBlockData {
                block_hash: ExternalSequenceBlockHash(req.sequence[i]),
                tokens_hash: LocalBlockHash(req.content[i]),
                mm_extra_info: None,
            })
            .collect();
        RouterEvent::new(
            worker,
            KvCacheEvent {
                event_id,
                data: KvCacheEventData::Stored(KvCacheStoreData {
                    parent_hash: parent.map(ExternalSequenceBlockHash),
                    start_position: None,
                    blocks,
                }),
                dp_rank: 0,
            },
        )
    }
    fn removed_event(&self, worker: u64, event_id: u64, hashes: &[u64]) -> RouterEvent {
        RouterEvent::new(
            worker,
            KvCacheEvent {
                event_id,
                data: KvCacheEventData::Removed(KvCacheRemoveData {
                    block_hashes: hashes
                        .iter()
                        .map(|&h| ExternalSequenceBlockHash(h))
                        .collect(),
                }),
                dp_rank: 0,
            },
        )
    }
    fn apply(&mut self, _worker: u64, event: RouterEvent) -> bool {
        self.tree.apply_event(event).is_err()
    }
    fn memory_estimate(&self) -> Option<usize> {
        None
    }
}

struct Measured {
    report: ReplayReport,
    /// Heap bytes released when the index was dropped after the last run, plus the bytes it
    /// held in memory mappings.
    heap_bytes: isize,
    estimate: Option<usize>,
}

fn measure<I: ReplayIndex>(
    make: impl Fn() -> I,
    args: &Args,
    requests: &[Request],
    workers: usize,
    cache: usize,
    choice: Choice,
) -> Measured {
    let mut runs = Vec::new();
    let mut heap_bytes = 0;
    let mut estimate = None;
    let mut distinct = 0;
    for _ in 0..args.repeat {
        let mut index = make();
        let run = replay(
            &mut index,
            requests,
            workers,
            cache,
            choice,
            args.capacity_hint,
        );
        estimate = run.memory_estimate;
        distinct = run.final_distinct_blocks;
        // Mapped memory (KvIndex's large block map) bypasses the allocator; count it too.
        let mapped = index.mapped_bytes() as isize;
        let before = LIVE.load(Ordering::Relaxed);
        drop(index);
        heap_bytes = before - LIVE.load(Ordering::Relaxed) + mapped;
        runs.push(run);
    }
    let mut report = best(runs);
    report.final_distinct_blocks = distinct;
    Measured {
        report,
        heap_bytes,
        estimate,
    }
}

/// The run with the least index time (see `workload::best`), keeping its memory figures.
fn best_measured(runs: Vec<Measured>) -> Measured {
    runs.into_iter()
        .min_by_key(|m| m.report.lookup_ns + m.report.event_ns)
        .expect("at least one repeat")
}

fn main() {
    let (args, requests) = workload::setup("kv-index-vs-dynamo", "per index and configuration");
    println!(
        "{:>7} {:>7} {:>7} {:<18} {:>9} {:>9} {:>11} {:>7} {:>7} {:>7} {:>7} {:>14} {:>6} {:>8} {:>8} {:>8}",
        "choice",
        "workers",
        "cache",
        "index",
        "req/s",
        "events/s",
        "blk ops/s",
        "look s",
        "event s",
        "p50 µs",
        "p99 µs",
        "decide p50/p99",
        "hit",
        "blocks",
        "MB/1M",
        "est MB/1M"
    );
    for &choice in &args.choices {
        for &workers in &args.workers {
            for &cache in &args.cache_blocks {
                // Repeats alternate ours / theirs, so machine drift hits both alike; the ratio of
                // each pair is kept and their median printed beside the best-of ratio.
                let mut ours_runs = Vec::new();
                let mut theirs_runs = Vec::new();
                let mut pair_ratios = Vec::new();
                for _ in 0..args.repeat {
                    let once = Args {
                        repeat: 1,
                        ..args.clone()
                    };
                    let a = measure(Switchyard::new, &once, &requests, workers, cache, choice);
                    let b = measure(
                        || Dynamo {
                            tree: RadixTree::new(),
                            last: None,
                        },
                        &once,
                        &requests,
                        workers,
                        cache,
                        choice,
                    );
                    pair_ratios.push(a.report.block_ops_per_s() / b.report.block_ops_per_s());
                    ours_runs.push(a);
                    theirs_runs.push(b);
                }
                pair_ratios.sort_by(f64::total_cmp);
                let ours = best_measured(ours_runs);
                let theirs = best_measured(theirs_runs);
                println!(
                    "{:>25} per-pair ratios (sorted): {}; median {:.2}x",
                    "",
                    pair_ratios
                        .iter()
                        .map(|r| format!("{r:.2}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    pair_ratios[pair_ratios.len() / 2]
                );
                for (name, mut m) in [("switchyard KvIndex", ours), ("dynamo RadixTree", theirs)] {
                    let distinct = m.report.final_distinct_blocks.max(1) as f64;
                    println!(
                        "{:>7} {:>7} {:>7} {:<18} {:>9.0} {:>9.0} {:>11.3e} {:>7.3} {:>7.3} {:>7.2} {:>7.2} {:>14} {:>6.3} {:>8} {:>8.1} {:>8}",
                        choice.name(),
                        workers,
                        cache,
                        name,
                        m.report.requests_per_s(),
                        m.report.events_per_s(),
                        m.report.block_ops_per_s(),
                        m.report.lookup_ns as f64 / 1e9,
                        m.report.event_ns as f64 / 1e9,
                        m.report.percentile_us(0.50),
                        m.report.percentile_us(0.99),
                        format!("{:.2}/{:.2}", m.report.decision_percentile_us(0.50), m.report.decision_percentile_us(0.99)),
                        m.report.hit_rate(),
                        m.report.final_distinct_blocks,
                        m.heap_bytes as f64 / distinct,
                        m.estimate
                            .map_or("-".to_string(), |e| format!("{:.1}", e as f64 / distinct)),
                    );
                    if m.report.inconsistent_events > 0 {
                        println!(
                            "{:>25} {name}: {} events reported inconsistent",
                            "", m.report.inconsistent_events
                        );
                    }
                    if name.starts_with("switchyard") {
                        // Stash for the ratio line.
                        RATIO.with(|r| {
                            *r.borrow_mut() = (m.report.block_ops_per_s(), m.report.hit_blocks)
                        });
                    } else {
                        let (ours_ops, ours_hits) = RATIO.with(|r| *r.borrow());
                        println!(
                            "{:>25} throughput ratio switchyard / dynamo: {:.2}x{}",
                            "",
                            ours_ops / m.report.block_ops_per_s(),
                            if ours_hits == m.report.hit_blocks {
                                " (identical routing: same overlap on every request)".to_string()
                            } else {
                                format!(
                                    " (routing differed: {} vs {} hit blocks)",
                                    ours_hits, m.report.hit_blocks
                                )
                            }
                        );
                    }
                }
            }
        }
    }
}

thread_local! {
    static RATIO: std::cell::RefCell<(f64, u64)> = const { std::cell::RefCell::new((0.0, 0)) };
}
