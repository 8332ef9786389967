//! The upstream engine against small HTTP servers on 127.0.0.1 that answer the way real ones do
//! (vLLM's token ids, usage with cached tokens) and the way broken ones do (malformed chunks,
//! early close, error bodies, silence), plus cancellation: dropping the stream closes the
//! upstream's response.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use switchyard_engine_upstream::{UpstreamConfig, UpstreamEngine};
use switchyard_engines::{Engine, EngineError};
use switchyard_protocol::{FinishReason, PreprocessedRequest};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn sse(chunks: &'static [&'static str]) -> Response {
    let body = futures::stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\n\n")))),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

fn request() -> PreprocessedRequest {
    let mut r = PreprocessedRequest {
        model: "m".into(),
        token_ids: vec![1, 2, 3],
        ..PreprocessedRequest::default()
    };
    r.stop.max_tokens = 8;
    r
}

fn engine(url: &str) -> UpstreamEngine {
    let mut config = UpstreamConfig::new(url);
    config.response_timeout = Duration::from_millis(500);
    UpstreamEngine::new(config, None).unwrap()
}

async fn collect(
    engine: &UpstreamEngine,
) -> Vec<Result<switchyard_protocol::EngineOutput, EngineError>> {
    engine.generate(request()).collect().await
}

#[tokio::test]
async fn token_ids_usage_and_finish_map_to_outputs() {
    let url = serve(Router::new().route(
        "/v1/completions",
        post(|| async {
            sse(&[
                r#"{"choices":[{"index":0,"text":"a","token_ids":[10,11]}]}"#,
                r#"{"choices":[{"index":0,"text":"b","token_ids":[12],"finish_reason":"length"}]}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#,
                "[DONE]",
            ])
        }),
    ))
    .await;
    let outputs: Vec<_> = collect(&engine(&url))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let tokens: Vec<u32> = outputs
        .iter()
        .flat_map(|o| o.token_ids.iter().copied())
        .collect();
    assert_eq!(tokens, vec![10, 11, 12]);
    let last = outputs.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Length));
    assert_eq!(last.cached_tokens, Some(2));
}

#[tokio::test]
async fn broken_upstreams_give_clear_errors() {
    let url = serve(
        Router::new()
            .route(
                "/bad-json/v1/completions",
                post(|| async { sse(&["{nope"]) }),
            )
            .route(
                "/early-close/v1/completions",
                post(|| async { sse(&[r#"{"choices":[{"text":"a","token_ids":[1]}]}"#]) }),
            )
            .route(
                "/text-only/v1/completions",
                post(|| async { sse(&[r#"{"choices":[{"text":"a"}]}"#]) }),
            )
            .route(
                "/rejects/v1/completions",
                post(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":{"message":"prompt too long","type":"BadRequestError"}}"#,
                    )
                        .into_response()
                }),
            )
            .route(
                "/busy/v1/completions",
                post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response() }),
            )
            .route(
                "/silent/v1/completions",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            ),
    )
    .await;
    let first_error = |items: Vec<Result<_, EngineError>>| {
        items
            .into_iter()
            .find_map(Result::err)
            .expect("an error item")
    };
    let e = first_error(collect(&engine(&format!("{url}/bad-json"))).await);
    assert!(
        matches!(&e, EngineError::Failed(m) if m.contains("malformed chunk")),
        "{e}"
    );
    let e = first_error(collect(&engine(&format!("{url}/early-close"))).await);
    assert!(
        matches!(&e, EngineError::Failed(m) if m.contains("before a finish_reason")),
        "{e}"
    );
    let e = first_error(collect(&engine(&format!("{url}/text-only"))).await);
    assert!(
        matches!(&e, EngineError::Failed(m) if m.contains("no tokenizer")),
        "{e}"
    );
    let e = first_error(collect(&engine(&format!("{url}/rejects"))).await);
    assert!(
        matches!(&e, EngineError::InvalidRequest(m) if m.contains("prompt too long")),
        "{e}"
    );
    let e = first_error(collect(&engine(&format!("{url}/busy"))).await);
    assert!(
        matches!(&e, EngineError::Overloaded(m) if m.contains("503")),
        "{e}"
    );
    let e = first_error(collect(&engine(&format!("{url}/silent"))).await);
    assert!(
        matches!(&e, EngineError::Failed(m) if m.contains("no response within")),
        "{e}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = first_error(collect(&engine(&format!("http://127.0.0.1:{closed}"))).await);
    assert!(
        matches!(&e, EngineError::Failed(m) if m.contains("cannot reach upstream") && m.to_lowercase().contains("refused")),
        "{e}"
    );
}

/// Sets its flag when dropped: the server's response body was dropped (the client went away).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_response() {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let url = serve(Router::new().route(
        "/v1/completions",
        post(move || {
            let flag = flag.clone();
            async move {
                let guard = DropFlag(flag);
                let body = futures::stream::unfold((0u32, guard), |(i, guard)| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let chunk = format!(
                        "data: {{\"choices\":[{{\"text\":\"x\",\"token_ids\":[{i}]}}]}}\n\n"
                    );
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (i + 1, guard)))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
        }),
    ))
    .await;
    let engine = engine(&url);
    let mut stream = engine.generate(request());
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert!(!closed.load(Ordering::SeqCst));
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !closed.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream response never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
