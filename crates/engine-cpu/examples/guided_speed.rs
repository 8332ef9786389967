//! Decode tokens/s of the CPU engine on SmolLM2-135M-Instruct with and without structured
//! output, on the same chat prompt: free text, `json_object`, and a JSON schema; greedy (the
//! grammar checks the argmax alone and masks only when it is refused) and seeded sampling
//! (a full vocabulary mask every token).
//!
//!   scripts/fetch-test-models.sh smollm2
//!   CANDLE_NUM_THREADS=1 cargo run --release -p switchyard-engine-cpu --example guided_speed [-- --tokens 64]
//!
//! Weights: WEIGHTS=f32 (default), q8_0 or native.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use switchyard_engine_cpu::{CpuEngine, CpuEngineConfig, LlamaModel, WeightFormat};
use switchyard_engines::Engine;
use switchyard_preprocess::{ChatTemplateInput, ModelCard};
use switchyard_protocol::{
    GuidedDecoding, PreprocessedRequest, SamplingOptions, StopConditions, TokenId,
};

/// Tokens after the first, and the seconds they took (prefill left out).
async fn decode(
    engine: &CpuEngine,
    prompt: &[TokenId],
    guided: Option<GuidedDecoding>,
    sampled: bool,
    max_tokens: u32,
) -> (usize, f64) {
    let mut stream = engine.generate(PreprocessedRequest {
        request_id: "bench".into(),
        token_ids: prompt.to_vec(),
        sampling: SamplingOptions {
            temperature: Some(if sampled { 0.8 } else { 0.0 }),
            seed: Some(7),
            guided,
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut tokens = Vec::new();
    let mut first = None;
    while let Some(item) = stream.next().await {
        let item = item.expect("generation failed");
        tokens.extend_from_slice(&item.token_ids);
        first.get_or_insert_with(Instant::now);
        if item.finish_reason.is_some() {
            break;
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    (tokens.len().saturating_sub(1), seconds)
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
    let format: WeightFormat = std::env::var("WEIGHTS")
        .ok()
        .map(|w| w.parse().expect("WEIGHTS=f32|q8_0|native"))
        .unwrap_or_default();
    let model: Arc<LlamaModel> =
        switchyard_engine_cpu::load_model(&path, format).expect("load the model");
    let card = ModelCard::load(&path).expect("load the card");
    let messages = [serde_json::json!({
        "role": "user",
        "content": "Write a long story about a lighthouse keeper, as JSON with a title and the story."
    })];
    let text = card
        .compile_chat_template()
        .unwrap()
        .unwrap()
        .render(&ChatTemplateInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: true,
            extra: None,
        })
        .unwrap();
    let prompt = card.tokenizer.encode(&text, false).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "story": {"type": "string", "maxLength": 2000}
        },
        "required": ["title", "story"],
        "additionalProperties": false
    });
    println!(
        "weights {format:?}, CANDLE_NUM_THREADS={}, up to {max_tokens} tokens, prompt {} tokens",
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "(default)".into()),
        prompt.len()
    );
    let engine = CpuEngine::new(model, CpuEngineConfig::default()).unwrap();
    // Warm-up: first-use costs out of the figures.
    decode(&engine, &prompt, None, false, 4).await;
    let cases = [
        ("free text", None),
        ("json_object", Some(GuidedDecoding::JsonObject)),
        (
            "json_schema",
            Some(GuidedDecoding::JsonSchema(schema.to_string())),
        ),
    ];
    println!(
        "{:<14} {:<8} {:>7} {:>10}",
        "constraint", "decoding", "tokens", "tokens/s"
    );
    for sampled in [false, true] {
        for (name, guided) in &cases {
            let (tokens, seconds) =
                decode(&engine, &prompt, guided.clone(), sampled, max_tokens).await;
            println!(
                "{name:<14} {:<8} {tokens:>7} {:>10.1}",
                if sampled { "T=0.8" } else { "greedy" },
                tokens as f64 / seconds
            );
        }
    }
}
