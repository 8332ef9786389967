//! Drives the real `switchyard serve` binary over 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, http_request, metric_values};

#[test]
fn health_models_and_unary_echo() {
    let server = Server::start(&["--engine", "echo", "--workers", "2"], &[]);
    let (status, body) = http_request(server.port, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_request(server.port, "GET", "/live", None);
    assert_eq!(status, 200);
    let (status, body) = http_request(server.port, "GET", "/v1/models", None);
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "echo-model");

    let req = json!({"model": "echo-model", "prompt": "Hello, wörld! 你好 🚀", "max_tokens": 100});
    let (status, body) = http_request(server.port, "POST", "/v1/completions", Some(&req));
    assert_eq!(status, 200, "{body}");
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["choices"][0]["text"], "Hello, wörld! 你好 🚀");
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    assert!(resp["id"].as_str().unwrap().starts_with("cmpl-"));
    let usage = &resp["usage"];
    assert_eq!(
        usage["prompt_tokens"], usage["completion_tokens"],
        "echo generates the prompt's tokens: {usage}"
    );
}

#[test]
fn streamed_chat_has_role_first_and_done_last() {
    let server = Server::start(&["--engine", "echo"], &[]);
    let req = json!({
        "model": "echo-model",
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "skip_special_tokens": false
    });
    let (status, body) = http_request(server.port, "POST", "/v1/chat/completions", Some(&req));
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
    assert!(usage_chunk["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // The whole templated prompt comes back, end-of-turn tokens included.
    assert_eq!(
        text,
        "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
    );
    let finishes: Vec<_> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
}

#[test]
fn errors_have_openai_shape_and_status() {
    let server = Server::start(&["--engine", "echo"], &[]);
    let cases: Vec<(&str, &str, Option<Value>, u16)> = vec![
        (
            "POST",
            "/v1/completions",
            Some(json!({"model": "nope", "prompt": "x"})),
            404,
        ),
        (
            "POST",
            "/v1/completions",
            Some(json!({"model": "echo-model", "prompt": "x", "temperature": 3})),
            400,
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "echo-model", "messages": []})),
            400,
        ),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "echo-model", "messages": [{"role": "robot", "content": "x"}]})),
            400,
        ),
        ("GET", "/v1/completions", None, 405),
        ("GET", "/v1/nothing", None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, text) = http_request(server.port, method, path, body.as_ref());
        assert_eq!(status, expected, "{method} {path} {body:?}: {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert!(err["error"]["message"].is_string(), "{text}");
        assert!(err["error"]["type"].is_string(), "{text}");
    }
    let (status, text) = support::raw_post(server.port, "/v1/completions", b"{not json");
    assert_eq!(status, 400, "{text}");
    // The server is still fine.
    let (status, _) = http_request(server.port, "GET", "/health", None);
    assert_eq!(status, 200);
}

#[test]
fn no_workers_means_503_and_not_ready() {
    let server = Server::start(&["--engine", "echo", "--workers", "0"], &[]);
    let (status, _) = http_request(server.port, "GET", "/health", None);
    assert_eq!(status, 503);
    let req = json!({"model": "echo-model", "prompt": "x"});
    let (status, body) = http_request(server.port, "POST", "/v1/completions", Some(&req));
    assert_eq!(status, 503, "{body}");
}

#[test]
fn client_disconnect_frees_the_worker_load() {
    let server = Server::start(&["--engine", "echo", "--echo-delay-ms", "20"], &[]);
    let req = json!({"model": "echo-model", "prompt": "word ".repeat(200), "stream": true});
    let mut stream = support::open_stream(server.port, "/v1/completions", &req);
    support::read_some(&mut stream, 3);
    let busy = metric_values(server.port, "switchyard_worker_active_requests");
    assert_eq!(
        busy.iter().sum::<f64>(),
        1.0,
        "one request in flight: {busy:?}"
    );
    drop(stream);
    support::wait_until_disconnect_released(server.port);
}

#[test]
fn sigterm_drains_in_flight_streams_then_exits() {
    let mut server = Server::start(&["--engine", "echo", "--echo-delay-ms", "10"], &[]);
    let req = json!({"model": "echo-model", "prompt": "one two three four five six seven eight nine ten", "stream": true});
    let mut stream = support::open_stream(server.port, "/v1/completions", &req);
    support::read_some(&mut stream, 1);
    server.sigterm();
    std::thread::sleep(Duration::from_millis(30));
    let (status, _) = http_request(server.port, "GET", "/health", None);
    assert_eq!(status, 503, "health must fail while draining");
    let rest = support::read_to_end(&mut stream);
    assert!(rest.contains("data: [DONE]"), "stream must finish: {rest}");
    let code = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

#[test]
fn invalid_flags_fail_at_start_with_a_message() {
    let out = support::run_to_exit(&["serve", "--tls-cert-path", "/tmp/c.pem"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key-path"), "{err}");
    let out = support::run_to_exit(&["serve", "--model-path", "/nonexistent-model"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn chat_content_parts_and_continue_final_message_render_like_transformers() {
    let server = Server::start(&["--engine", "echo"], &[]);
    let chat = |body: Value| {
        let (status, text) = http_request(server.port, "POST", "/v1/chat/completions", Some(&body));
        assert_eq!(status, 200, "{text}");
        let resp: Value = serde_json::from_str(&text).unwrap();
        resp["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let parts = chat(json!({
        "model": "echo-model",
        "skip_special_tokens": false,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}]
    }));
    assert_eq!(
        parts,
        "<|im_start|>user\npart one\npart two<|im_end|>\n<|im_start|>assistant\n"
    );
    let continued = chat(json!({
        "model": "echo-model",
        "skip_special_tokens": false,
        "continue_final_message": true,
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "Hello, I am"}]
    }));
    assert!(
        continued.ends_with("Hello, I am"),
        "the prompt must end inside the final message: {continued:?}"
    );
}

#[test]
fn kv_routing_sends_a_repeated_prefix_to_the_worker_that_cached_it() {
    let server = Server::start(
        &[
            "--engine",
            "mocker",
            "--speedup-ratio",
            "0",
            "--workers",
            "3",
            "--router-mode",
            "kv",
            "--block-size",
            "16",
        ],
        &[],
    );
    let shared = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let mut cached = Vec::new();
    for i in 0..4 {
        let req = json!({"model": "echo-model", "prompt": format!("{shared} question {i}"), "max_tokens": 4});
        let (status, body) = http_request(server.port, "POST", "/v1/completions", Some(&req));
        assert_eq!(status, 200, "{body}");
        let resp: Value = serde_json::from_str(&body).unwrap();
        cached.push(
            resp["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        );
        // KV events reach the router asynchronously; wait until the first prompt's blocks are
        // indexed so the test checks routing, not a race.
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric_values(server.port, "switchyard_router_index_blocks")
            .iter()
            .sum::<f64>()
            < 20.0
        {
            assert!(
                Instant::now() < deadline,
                "KV events never reached the router"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(
        cached[0], 0,
        "first request finds nothing cached: {cached:?}"
    );
    assert!(
        cached[1..].iter().all(|&c| c >= 320),
        "later requests reuse the shared prefix on the worker that holds it: {cached:?}"
    );
    let decisions = metric_values(server.port, "switchyard_router_decisions_total");
    assert_eq!(
        decisions.iter().filter(|&&d| d > 0.0).count(),
        1,
        "all four went to one worker: {decisions:?}"
    );
    let overlap: f64 = metric_values(server.port, "switchyard_router_overlap_blocks_total")
        .iter()
        .sum();
    assert!(overlap >= 60.0, "router saw the overlap: {overlap}");

    // A cache salt isolates: the same prompt under a new salt finds nothing, then finds its own.
    let salted_cached = |question: &str| {
        let req = json!({"model": "echo-model", "prompt": format!("{shared} {question}"),
                         "max_tokens": 4, "cache_salt": "tenant-a"});
        let (status, body) = http_request(server.port, "POST", "/v1/completions", Some(&req));
        assert_eq!(status, 200, "{body}");
        let resp: Value = serde_json::from_str(&body).unwrap();
        resp["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(
        salted_cached("question 0"),
        0,
        "a new salt shares no blocks"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let hit = salted_cached("question 1");
        if hit >= 320 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the salted prefix was never reused under its own salt (last hit {hit})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
