//! Microseconds per vocabulary mask, over SmolLM2's 49,152 tokens, in a few matcher states.
//!
//!   scripts/fetch-test-models.sh smollm2
//!   cargo run --release -p switchyard-structured --example mask_speed [path/to/model.gguf]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use switchyard_preprocess::gguf::{GgufMetadata, GgufValue};
use switchyard_structured::{
    GuidedDecoding, JsonGrammar, MaskScratch, Matcher, TokenMask, TokenVocab,
};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        .to_owned()
    });
    let meta = GgufMetadata::read_file(std::path::Path::new(&path))
        .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/fetch-test-models.sh smollm2)"));
    let model = meta
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .expect("tokenizer.ggml.model");
    let tokens: Vec<&str> = meta
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
        .expect("tokenizer.ggml.tokens")
        .iter()
        .map(|t| t.as_str().expect("string tokens"))
        .collect();
    let types: Vec<i64> = meta
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
        .map(|a| a.iter().filter_map(GgufValue::as_i64).collect())
        .unwrap_or_default();
    let started = Instant::now();
    let vocab = TokenVocab::from_gguf(model, tokens.iter().copied(), &types)
        .expect("a supported vocabulary");
    println!(
        "vocabulary: {} tokens, {} trie nodes, built in {:.1} ms",
        vocab.len(),
        vocab.trie_nodes(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let person = JsonGrammar::compile(&GuidedDecoding::JsonSchema(
        json!({"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"},
            "bio": {"type": "string", "maxLength": 200}
        }, "required": ["name", "age", "bio"], "additionalProperties": false})
        .to_string(),
    ))
    .unwrap();
    let any = JsonGrammar::compile(&GuidedDecoding::JsonObject).unwrap();
    let (person, any) = (Arc::new(person), Arc::new(any));
    let states: [(&str, &Arc<JsonGrammar>, &str); 8] = [
        ("json_object: start", &any, ""),
        ("json_object: after `{`", &any, "{"),
        ("json_object: inside a key", &any, "{\"na"),
        (
            "json_object: inside a string value",
            &any,
            "{\"name\": \"Jo",
        ),
        ("json_object: after a value", &any, "{\"a\": 12"),
        ("schema: a declared key", &person, "{\""),
        ("schema: inside a string value", &person, "{\"name\": \"Jo"),
        (
            "schema: inside a maxLength string",
            &person,
            "{\"name\": \"Jo\", \"age\": 3, \"bio\": \"A",
        ),
    ];
    let mut mask = TokenMask::default();
    let mut scratch = MaskScratch::default();
    println!(
        "{:<40} {:>8} {:>10} {:>10}",
        "state", "allowed", "median µs", "max µs"
    );
    for (name, grammar, prefix) in states {
        let mut m = Matcher::new(grammar.clone());
        assert!(m.advance(prefix.as_bytes()), "{prefix}");
        let mut times = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            m.fill_mask(&vocab, &mut mask, &mut scratch);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<40} {:>8} {:>10.0} {:>10.0}",
            mask.count(),
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }

    // Advancing by one token (the greedy fast path: check only the argmax).
    let mut m = Matcher::new(any);
    assert!(m.advance(b"{\"name\": \"Jo"));
    let token = b"hn";
    let t = Instant::now();
    let n = 100_000;
    for _ in 0..n {
        let mut copy = m.clone();
        assert!(copy.advance(token));
    }
    println!(
        "clone + advance by one token: {:.2} µs",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}
