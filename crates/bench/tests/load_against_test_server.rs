//! Runs `run_load` against an in-test axum server that streams a known number of chunks.
//!
//! Each route prefix selects one server behaviour: `/ok` streams CHUNKS content chunks plus a
//! usage chunk (or a unary body), `/sse-error` fails mid-stream with an SSE error event,
//! `/http500` answers 500, `/truncated` ends the stream without `[DONE]`, `/no-usage` omits the
//! usage chunk, `/slow` paces its chunks so a timed phase ends with requests in flight.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_bench::{LoadArgs, run_load};

const CHUNKS: u64 = 5;
const PROMPT_TOKENS_REPORTED: u64 = 42;

#[derive(Default)]
struct Seen {
    /// First word of every prompt received (the per-request counter).
    counters: Vec<String>,
    bodies: Vec<Value>,
}

type Shared = Arc<Mutex<Seen>>;

async fn start_server() -> (String, Shared) {
    let seen = Shared::default();
    let app = Router::new()
        .route(
            "/{mode}/v1/models",
            get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "test-model"}]})) }),
        )
        .route("/{mode}/v1/completions", post(generate))
        .route("/{mode}/v1/chat/completions", post(generate))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn prompt_of(body: &Value) -> String {
    body.get("prompt")
        .or_else(|| body["messages"][0].get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn generate(Path(mode): Path<String>, State(seen): State<Shared>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let counter = prompt_of(&request)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    {
        let mut seen = seen.lock().unwrap();
        seen.counters.push(counter);
        seen.bodies.push(request.clone());
    }
    if mode == "http500" {
        let error = json!({"error": {"message": "kaput", "type": "internal_error", "code": 500}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response();
    }
    let chat = request.get("messages").is_some();
    let content = |text: &str| {
        if chat {
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
        } else {
            json!({"object": "text_completion", "choices": [{"index": 0, "text": text}]})
        }
    };
    let usage = json!({"prompt_tokens": PROMPT_TOKENS_REPORTED, "completion_tokens": CHUNKS, "total_tokens": PROMPT_TOKENS_REPORTED + CHUNKS});
    if request["stream"] != true {
        let mut answer = content(" a b c d e");
        answer["usage"] = usage;
        return axum::Json(answer).into_response();
    }

    let mut events: Vec<String> = Vec::new();
    if chat {
        // A role-only first chunk carries no content and must not count as the first token.
        events.push(format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        ));
    }
    let content_chunks = if mode == "ok" || mode == "slow" || mode == "no-usage" {
        CHUNKS
    } else {
        2
    };
    for i in 0..content_chunks {
        events.push(format!("data: {}\n\n", content(&format!(" t{i}"))));
    }
    match mode.as_str() {
        "sse-error" => events.push(
            "event: error\ndata: {\"error\":{\"message\":\"engine died\",\"type\":\"internal_error\"}}\n\n"
                .to_string(),
        ),
        "truncated" => {}
        "no-usage" => events.push("data: [DONE]\n\n".to_string()),
        _ => {
            events.push(format!("data: {}\n\n", json!({"choices": [], "usage": usage})));
            events.push("data: [DONE]\n\n".to_string());
        }
    }
    let pace = if mode == "slow" {
        Duration::from_millis(30)
    } else {
        Duration::ZERO
    };
    let frames = futures::stream::iter(events).then(move |event| async move {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        Ok::<_, Infallible>(Bytes::from(event))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(frames))
        .unwrap()
}

fn args(url: &str, extra: &[&str]) -> LoadArgs {
    let mut argv = vec!["load", "--url", url];
    argv.extend_from_slice(extra);
    LoadArgs::try_parse_from_iter(argv).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phases_count_every_request_and_token() {
    let (base, seen) = start_server().await;
    let url = format!("{base}/ok");
    let load = args(
        &url,
        &[
            "--concurrency",
            "1,4",
            "--requests",
            "12",
            "--warmup-requests",
            "1",
            "--max-tokens",
            "5",
        ],
    );
    let report = run_load(&load).await.unwrap();

    assert_eq!(report.model, "test-model", "model comes from /v1/models");
    assert_eq!(report.phases.len(), 2);
    for (phase, concurrency) in report.phases.iter().zip([1, 4]) {
        assert_eq!(phase.concurrency, concurrency);
        assert_eq!(phase.requests_ok, 12);
        assert_eq!(phase.errors, 0, "{:?}", phase.first_error);
        assert_eq!(phase.output_tokens, 12 * CHUNKS);
        assert_eq!(phase.requests_without_usage, 0);
        assert_eq!(
            phase.mean_prompt_tokens,
            Some(PROMPT_TOKENS_REPORTED as f64)
        );
        assert_eq!(phase.ttft.samples, 12);
        assert_eq!(phase.e2e.samples, 12);
        assert_eq!(phase.itl.samples as u64, 12 * (CHUNKS - 1));
        assert!(phase.requests_per_s > 0.0);
    }

    let seen = seen.lock().unwrap();
    // Warmup (1 + 4 clients × 1) plus 2 × 12 measured requests, every prompt unique.
    assert_eq!(seen.counters.len(), 5 + 24);
    let mut unique = seen.counters.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.counters.len(), "prompts repeat");
    assert!(unique.iter().all(|c| c.parse::<u64>().is_ok()));
    let body = &seen.bodies[0];
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["ignore_eos"], true);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert!(body.get("prompt").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_role_chunk_is_not_content_and_unary_reads_usage() {
    let (base, seen) = start_server().await;
    let url = format!("{base}/ok");
    let chat = args(
        &url,
        &[
            "--endpoint",
            "chat",
            "--concurrency",
            "2",
            "--requests",
            "6",
        ],
    );
    let report = run_load(&chat).await.unwrap();
    let phase = &report.phases[0];
    assert_eq!((phase.requests_ok, phase.errors), (6, 0));
    assert_eq!(phase.output_tokens, 6 * CHUNKS);
    assert_eq!(phase.itl.samples as u64, 6 * (CHUNKS - 1));
    assert!(seen.lock().unwrap().bodies[0]["messages"][0]["content"].is_string());

    let unary = args(
        &url,
        &[
            "--no-stream",
            "--concurrency",
            "2",
            "--requests",
            "4",
            "--warmup-requests",
            "0",
        ],
    );
    let report = run_load(&unary).await.unwrap();
    let phase = &report.phases[0];
    assert_eq!((phase.requests_ok, phase.errors), (4, 0));
    assert_eq!(phase.output_tokens, 4 * CHUNKS);
    assert_eq!(
        phase.ttft.samples, 0,
        "unary responses have no first token time"
    );
    assert_eq!(phase.e2e.samples, 4);
    let last = seen.lock().unwrap().bodies.last().cloned().unwrap();
    assert_eq!(last["stream"], false);
    assert!(last.get("stream_options").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_errors_never_successes() {
    let (base, _seen) = start_server().await;
    let cases = [
        ("sse-error", "engine died"),
        ("http500", "HTTP 500"),
        ("truncated", "[DONE]"),
    ];
    for (mode, message) in cases {
        let url = format!("{base}/{mode}");
        let load = args(
            &url,
            &["--model", "m", "--concurrency", "1,3", "--requests", "5"],
        );
        let report = run_load(&load).await.unwrap();
        for phase in &report.phases {
            assert_eq!(phase.requests_ok, 0, "{mode}");
            assert_eq!(phase.errors, 5, "{mode}");
            assert_eq!(phase.output_tokens, 0, "{mode}");
            let first = phase.first_error.as_deref().unwrap_or_default();
            assert!(first.contains(message), "{mode}: {first}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_usage_falls_back_to_chunk_count() {
    let (base, _seen) = start_server().await;
    let url = format!("{base}/no-usage");
    let load = args(&url, &["--concurrency", "2", "--requests", "3"]);
    let report = run_load(&load).await.unwrap();
    let phase = &report.phases[0];
    assert_eq!((phase.requests_ok, phase.errors), (3, 0));
    assert_eq!(phase.requests_without_usage, 3);
    assert_eq!(phase.output_tokens, 3 * CHUNKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_phase_abandons_in_flight_requests_without_errors() {
    let (base, seen) = start_server().await;
    let url = format!("{base}/slow");
    let load = args(
        &url,
        &[
            "--concurrency",
            "3",
            "--duration",
            "0.5",
            "--warmup-requests",
            "0",
        ],
    );
    let report = run_load(&load).await.unwrap();
    let phase = &report.phases[0];
    assert_eq!(phase.errors, 0, "{:?}", phase.first_error);
    // Every client is mid-request when the phase ends: each response takes
    // (CHUNKS + 2) × 30 ms and the clients never stop on their own.
    assert_eq!(phase.abandoned_in_flight, 3);
    assert_eq!(phase.output_tokens, phase.requests_ok * CHUNKS);
    // An abandoned request may or may not have reached the handler before it was dropped.
    let handled = seen.lock().unwrap().counters.len() as u64;
    assert!(
        (phase.requests_ok..=phase.requests_ok + 3).contains(&handled),
        "{handled} handled, {} ok",
        phase.requests_ok
    );
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let load = args(&format!("http://127.0.0.1:{port}"), &["--requests", "1"]);
    let err = run_load(&load).await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot reach"), "{err:#}");
}
