//! Measures raw engine throughput: tokens per second through the `EngineStream`.
//!
//! `cargo run --release -p switchyard-engines --example engine_throughput`
//!
//! - echo, zero delay, one thread: long streams, and many short requests (per-request cost
//!   included: request clone, boxing the stream).
//! - mocker, speedup 0: 64 concurrent requests of 100 output tokens each, repeated, on a
//!   current-thread runtime and on a 2-worker runtime, without and with prefix caching (which
//!   hashes every full block and registers it in the cache).

use std::time::Instant;

use futures::StreamExt;
use switchyard_engines::Engine;
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_engines::mocker::{MockerConfig, MockerEngine};
use switchyard_protocol::{PreprocessedRequest, StopConditions, TokenId};

fn request(id: usize, prompt_len: usize, max_tokens: u32, ignore_eos: bool) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: format!("bench-{id}"),
        model: "bench".into(),
        token_ids: (0..prompt_len as TokenId)
            .map(|t| (t * 31 + id as TokenId) % 30_000)
            .collect(),
        stop: StopConditions {
            max_tokens,
            ignore_eos,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn drain(engine: &dyn Engine, req: PreprocessedRequest) -> usize {
    let mut stream = engine.generate(req);
    let mut n = 0;
    while let Some(item) = stream.next().await {
        n += item.expect("engine error").token_ids.len();
    }
    n
}

fn echo_bench() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = EchoEngine::new(EchoConfig::default());
        // Long streams: prompt of 1024 replayed to 10M tokens.
        let start = Instant::now();
        let mut tokens = 0;
        for i in 0..10 {
            tokens += drain(&engine, request(i, 1024, 1_000_000, true)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "echo  long streams : {tokens} tokens in {secs:.3} s = {:.1} M tokens/s",
            tokens as f64 / secs / 1e6
        );

        // Many short requests: 100k requests x 100 tokens (request built outside the clock).
        let requests: Vec<_> = (0..100_000).map(|i| request(i, 100, 1000, false)).collect();
        let start = Instant::now();
        let mut tokens = 0;
        for req in requests {
            tokens += drain(&engine, req).await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "echo  100k x 100   : {tokens} tokens in {secs:.3} s = {:.1} M tokens/s, {:.2} M requests/s",
            tokens as f64 / secs / 1e6,
            100_000.0 / secs / 1e6
        );
    });
}

async fn mocker_rounds(rounds: usize, enable_prefix_caching: bool) -> (usize, f64) {
    let engine = std::sync::Arc::new(
        MockerEngine::new(MockerConfig {
            speedup_ratio: 0.0,
            enable_prefix_caching,
            ..MockerConfig::default()
        })
        .expect("mocker config"),
    );
    let start = Instant::now();
    let mut tokens = 0;
    for round in 0..rounds {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let engine = engine.clone();
                let req = request(round * 64 + i, 128, 100, false);
                tokio::spawn(async move { drain(engine.as_ref(), req).await })
            })
            .collect();
        for h in handles {
            tokens += h.await.expect("task");
        }
    }
    (tokens, start.elapsed().as_secs_f64())
}

fn mocker_bench() {
    let rounds = 200;
    for (label, rt) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        ),
        (
            "2 workers     ",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        ),
    ] {
        let rt = rt.expect("runtime");
        for caching in [false, true] {
            let (tokens, secs) = rt.block_on(mocker_rounds(rounds, caching));
            let caching = if caching { "on " } else { "off" };
            println!(
                "mocker {label} prefix caching {caching}: {rounds} rounds x 64 req x 100 tokens = {tokens} tokens in {secs:.3} s = {:.2} M tokens/s",
                tokens as f64 / secs / 1e6
            );
        }
    }
}

fn main() {
    echo_bench();
    mocker_bench();
}
