//! Figures of the CPU engine on SmolLM2-135M-Instruct (Q4_1): decode tokens/s for 1 and 4
//! concurrent sequences (batched in one step, and one at a time for comparison), and time to
//! first token for a 500-token prompt cold and with its prefix cached.
//!
//!   scripts/fetch-test-models.sh smollm2
//!   cargo run --release -p switchyard-engine-cpu --example figures [-- --tokens 64]
//!
//! Threads: CANDLE_NUM_THREADS (default: the physical cores). Weights: WEIGHTS=f32 (default),
//! q8_0 or native.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_engine_cpu::{CpuEngine, CpuEngineConfig, LlamaModel, WeightFormat};
use switchyard_engines::Engine;
use switchyard_preprocess::ModelCard;
use switchyard_protocol::{PreprocessedRequest, SamplingOptions, StopConditions, TokenId};

const STORY: &str = "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting \
the one hundred and twelve steps as his father had before him. From the lamp room he could see the \
whole bay: the fishing boats returning with their nets, the gulls wheeling over the harbour, the \
slow lights of the town coming on one by one along the hill. ";

struct Run {
    tokens: usize,
    elapsed: Duration,
    first_token: Duration,
}

async fn generate(engine: &CpuEngine, prompt: Vec<TokenId>, max_tokens: u32) -> Run {
    let started = Instant::now();
    let mut stream = engine.generate(PreprocessedRequest {
        request_id: "bench".into(),
        token_ids: prompt,
        sampling: SamplingOptions {
            temperature: Some(0.0),
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut tokens = 0;
    let mut first_token = None;
    while let Some(item) = stream.next().await {
        let item = item.expect("generation failed");
        tokens += item.token_ids.len();
        first_token.get_or_insert_with(|| started.elapsed());
        if item.finish_reason.is_some() {
            break;
        }
    }
    Run {
        tokens,
        elapsed: started.elapsed(),
        first_token: first_token.unwrap_or_default(),
    }
}

/// Aggregate decode tokens/s of `n` concurrent sequences (prefill of their short prompts
/// included in the wall time, excluded from the count).
async fn throughput(engine: &CpuEngine, prompts: &[Vec<TokenId>], max_tokens: u32) -> f64 {
    let started = Instant::now();
    let runs = futures::future::join_all(
        prompts
            .iter()
            .map(|p| generate(engine, p.clone(), max_tokens)),
    )
    .await;
    let tokens: usize = runs.iter().map(|r| r.tokens).sum();
    tokens as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut max_tokens = 64u32;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--tokens") {
        max_tokens = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--tokens N");
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let load_started = Instant::now();
    let format: WeightFormat = std::env::var("WEIGHTS")
        .ok()
        .map(|w| w.parse().expect("WEIGHTS=f32|q8_0|native"))
        .unwrap_or_default();
    let model: Arc<LlamaModel> =
        switchyard_engine_cpu::load_model(&path, format).expect("load the model");
    let card = ModelCard::load(&path).expect("load the card");
    println!(
        "model: {} ({} layers, width {}), weights {format:?}, loaded in {:.2} s; CANDLE_NUM_THREADS={}",
        path.file_name().unwrap().to_string_lossy(),
        model.config().n_layer,
        model.config().hidden,
        load_started.elapsed().as_secs_f64(),
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "(default)".into())
    );
    let encode = |text: &str| card.tokenizer.encode(text, false).unwrap();
    let prompts: Vec<Vec<TokenId>> = [
        "Once upon a time",
        "The capital of France is",
        "def fibonacci(n):",
        "In the beginning",
    ]
    .iter()
    .map(|t| encode(t))
    .collect();

    let batched = CpuEngine::new(model.clone(), CpuEngineConfig::default()).unwrap();
    let one_at_a_time = CpuEngine::new(
        model.clone(),
        CpuEngineConfig {
            max_num_seqs: 1,
            ..Default::default()
        },
    )
    .unwrap();
    // Warm-up: first-use costs (thread pool start, page faults) out of the figures.
    throughput(&batched, &prompts[..1], 8).await;

    println!("\ndecode, {max_tokens} tokens per sequence, greedy:");
    let solo = throughput(&batched, &prompts[..1], max_tokens).await;
    println!("  1 sequence                      {solo:7.1} tokens/s");
    let four = throughput(&batched, &prompts, max_tokens).await;
    println!("  4 sequences, batched per step   {four:7.1} tokens/s (aggregate)");
    let serial = throughput(&one_at_a_time, &prompts, max_tokens).await;
    println!("  4 sequences, one at a time      {serial:7.1} tokens/s (aggregate)");
    println!("  batching gain at 4 sequences    {:7.2}x", four / serial);

    let mut long_text = String::new();
    while encode(&long_text).len() < 520 {
        long_text.push_str(STORY);
    }
    let mut long_prompt = encode(&long_text);
    long_prompt.truncate(500);
    let mut other_tail = long_prompt.clone();
    other_tail.truncate(480);
    other_tail.extend(encode(" And then, one night, the lamp went out."));

    let cold_engine = CpuEngine::new(model.clone(), CpuEngineConfig::default()).unwrap();
    println!("\ntime to first token, 500-token prompt:");
    let cold = generate(&cold_engine, long_prompt.clone(), 1).await;
    println!(
        "  cold (no cached prefix)                  {:7.1} ms ({:.0} prompt tokens/s)",
        cold.first_token.as_secs_f64() * 1e3,
        500.0 / cold.first_token.as_secs_f64()
    );
    let same = generate(&cold_engine, long_prompt.clone(), 1).await;
    println!(
        "  same prompt again (496 tokens cached)    {:7.1} ms",
        same.first_token.as_secs_f64() * 1e3
    );
    let shared = generate(&cold_engine, other_tail, 1).await;
    println!(
        "  480 shared tokens + new tail (480 cached) {:6.1} ms",
        shared.first_token.as_secs_f64() * 1e3
    );
    let _ = (cold.elapsed, cold.tokens);
}
