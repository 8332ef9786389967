//! Router decision time per request in `kv` mode: hashing the prompt, the index lookup, the
//! cost over every worker and the load accounting, with N workers whose caches hold many
//! prefixes.
//!
//!     cargo run --release -p switchyard-router --example decision_bench -- [prompt_tokens]

use std::time::Instant;

use switchyard_kv_index::hashing::BlockHasher;
use switchyard_protocol::PreprocessedRequest;
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData};
use switchyard_router::{Router, RouterConfig, RouterMode};
use switchyard_runtime::{Endpoint, WorkerId, WorkerInstance};

const BLOCK: u32 = 64;

fn main() {
    let prompt_tokens: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4096);
    println!("prompt {prompt_tokens} tokens, block {BLOCK}");
    println!("workers  decisions  mean µs  p50 µs  p99 µs  index blocks");
    for workers in [8u64, 64] {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        let instances: Vec<_> = (1..=workers)
            .map(|id| WorkerInstance {
                capabilities: Default::default(),
                id: WorkerId(id),
                namespace: "bench".into(),
                model_name: "m".into(),
                model_path: String::new(),
                endpoint: Endpoint::InProcess,
                engine: "mocker".into(),
                kv_block_size: Some(BLOCK),
                kv_total_blocks: Some(16384),
                context_length: None,
                limits: Default::default(),
            })
            .collect();
        router.set_workers(&instances);
        // Each worker caches 200 distinct 4,096-token prefixes (plus a shared system prompt).
        let hasher = BlockHasher::new(BLOCK, None);
        let prompt = |family: u32, len: u32| -> Vec<u32> {
            (0..len)
                .map(|i| if i < 512 { i } else { family * 100_000 + i })
                .collect()
        };
        for w in 1..=workers {
            for (event_id, family) in (0..200u32).enumerate() {
                let tokens = prompt(w as u32 * 1000 + family, 4096);
                router.apply_kv_event(
                    WorkerId(w),
                    &KvCacheEvent {
                        event_id: event_id as u64 + 1,
                        data: KvCacheEventData::Stored {
                            parent: None,
                            blocks: hasher.hash_blocks(&tokens),
                        },
                    },
                );
            }
        }
        let requests: Vec<PreprocessedRequest> = (0..20_000u32)
            .map(|i| PreprocessedRequest {
                token_ids: prompt((i % workers as u32 + 1) * 1000 + i % 400, prompt_tokens),
                ..Default::default()
            })
            .collect();
        let mut times = Vec::with_capacity(requests.len());
        for request in &requests {
            let start = Instant::now();
            let guard = router.select(request).expect("workers exist");
            times.push(start.elapsed().as_nanos() as f64 / 1000.0);
            drop(guard);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "{workers:>7}  {:>9}  {mean:>7.2}  {:>6.2}  {:>6.2}  {:>12}",
            times.len(),
            pct(0.5),
            pct(0.99),
            router.index_blocks()
        );
    }
}
