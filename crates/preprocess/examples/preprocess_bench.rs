//! Measures chat-template rendering and tokenizer encoding on one thread.
//!
//!     scripts/fetch-test-models.sh qwen3
//!     cargo run --release -p switchyard-preprocess --example preprocess_bench [MODEL_DIR]
//!
//! MODEL_DIR defaults to `models/qwen3`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_preprocess::{ChatTemplateInput, ModelCard};

const PARAGRAPH: &str = "The router keeps a prefix tree of KV-cache blocks for every worker; \
each request's tokens are hashed in blocks of 16 and matched against it. Latency matters: \
p99 under 10 µs per lookup (see RFC-42, §3.1). Mixed text follows — naïve café, 日本語, 🎉.\n\
fn score(overlap: u32, load: f64) -> f64 { overlap as f64 * 1.5 - load }\n\n";

fn time_per_iter(iterations: u32, mut f: impl FnMut()) -> Duration {
    // Warm caches and lazy statics first.
    for _ in 0..iterations.div_ceil(10) {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/qwen3"));

    let start = Instant::now();
    let card = ModelCard::load(&dir)?;
    println!(
        "load {}: {:.1} ms",
        card.name,
        start.elapsed().as_secs_f64() * 1e3
    );

    let source = card
        .chat_template
        .clone()
        .ok_or("the model has no chat template")?;
    let start = Instant::now();
    let template = card.compile_chat_template()?.ok_or("no template")?;
    println!(
        "compile chat template ({} bytes): {:.1} µs",
        source.len(),
        start.elapsed().as_secs_f64() * 1e6
    );

    let messages = [
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "What is the capital of France?"}),
    ];
    let input = ChatTemplateInput {
        messages: &messages,
        tools: None,
        add_generation_prompt: true,
        extra: None,
    };
    let per_render = time_per_iter(20_000, || {
        black_box(template.render(black_box(&input)).unwrap());
    });
    println!(
        "render 2-message chat: {:.2} µs",
        per_render.as_secs_f64() * 1e6
    );

    let mut text = String::new();
    while card.tokenizer.encode(&text, false)?.len() < 1_000 {
        text.push_str(PARAGRAPH);
    }
    let tokens = card.tokenizer.encode(&text, false)?.len();
    let per_encode = time_per_iter(500, || {
        black_box(card.tokenizer.encode(black_box(&text), false).unwrap());
    });
    println!(
        "encode {} bytes -> {tokens} tokens: {:.1} µs per call, {:.2} M tokens/s (one thread)",
        text.len(),
        per_encode.as_secs_f64() * 1e6,
        tokens as f64 / per_encode.as_secs_f64() / 1e6
    );

    let prompt = template.render(&input)?;
    let per_prompt = time_per_iter(20_000, || {
        let rendered = template.render(black_box(&input)).unwrap();
        black_box(card.tokenizer.encode(&rendered, false).unwrap());
    });
    println!(
        "render + encode 2-message chat ({} tokens): {:.2} µs",
        card.tokenizer.encode(&prompt, false)?.len(),
        per_prompt.as_secs_f64() * 1e6
    );
    Ok(())
}
