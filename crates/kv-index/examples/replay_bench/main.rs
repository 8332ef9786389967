//! Replays the Mooncake conversation trace the way a router sees it against `KvIndex` on one
//! thread and prints throughput, lookup latency and memory (see `workload.rs` for the replay).
//!
//! cargo run --release -p switchyard-kv-index --example replay_bench -- \
//!     --trace data/mooncake/conversation_trace.jsonl --workers 8,64 \
//!     --cache-blocks 16384,262144 --block-tokens 64 [--choice cost,overlap] [--repeat 3]
//!     [--max-requests N] [--capacity-hint on|off]

mod workload;

use workload::{Args, Choice, Request, Switchyard, best, replay};

fn main() {
    let (args, requests) = workload::setup("replay_bench", "per configuration");
    println!(
        "{:>7} {:>7} {:>8} {:>10} {:>10} {:>12} {:>7} {:>7} {:>14} {:>6} {:>8} {:>7} {:>7}",
        "choice",
        "workers",
        "cache",
        "req/s",
        "events/s",
        "block ops/s",
        "p50 µs",
        "p99 µs",
        "decide p50/p99",
        "hit",
        "blocks",
        "runs",
        "MB/1M"
    );
    for &choice in &args.choices {
        for &workers in &args.workers {
            for &cache in &args.cache_blocks {
                run_config(&args, &requests, choice, workers, cache);
            }
        }
    }
}

fn run_config(args: &Args, requests: &[Request], choice: Choice, workers: usize, cache: usize) {
    let mut runs = Vec::new();
    let mut memory = 0;
    let mut distinct = 0;
    let mut runs_in_index = 0;
    for _ in 0..args.repeat {
        let mut index = Switchyard::new();
        let run = replay(
            &mut index,
            requests,
            workers,
            cache,
            choice,
            args.capacity_hint,
        );
        runs_in_index = index.index.run_count();
        if index.index.block_count() != run.final_distinct_blocks {
            eprintln!(
                "replay_bench: index holds {} blocks, simulated caches {}",
                index.index.block_count(),
                run.final_distinct_blocks
            );
            std::process::exit(1);
        }
        memory = run.memory_estimate.unwrap_or(0);
        distinct = run.final_distinct_blocks;
        runs.push(run);
    }
    let mut total = best(runs);
    total.final_distinct_blocks = distinct;
    println!(
        "{:>7} {:>7} {:>8} {:>10.0} {:>10.0} {:>12.3e} {:>7.2} {:>7.2} {:>14} {:>6.3} {:>8} {:>7} {:>7.1}",
        choice.name(),
        workers,
        cache,
        total.requests_per_s(),
        total.events_per_s(),
        total.block_ops_per_s(),
        total.percentile_us(0.50),
        total.percentile_us(0.99),
        format!(
            "{:.2}/{:.2}",
            total.decision_percentile_us(0.50),
            total.decision_percentile_us(0.99)
        ),
        total.hit_rate(),
        distinct,
        runs_in_index,
        total.mb_per_million_blocks(memory),
    );
}
