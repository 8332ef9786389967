//! How engine failures reach clients: a failure before the first token is an HTTP error; a
//! failure mid-stream is an SSE `event: error` and the stream ends without `[DONE]`. The engine
//! here is a scripted test double (allowed inside one component's test); the HTTP side is the
//! real server on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use switchyard_engines::{Engine, EngineError, EngineInfo, EngineStream};
use switchyard_frontend::{CpuPool, Metrics, ModelManager, load_model_card};
use switchyard_http::{HttpConfig, HttpService};
use switchyard_protocol::{EngineOutput, FinishReason, PreprocessedRequest};
use switchyard_router::{RouterConfig, RouterMode};
use switchyard_runtime::request_plane::InProcessRequestPlane;
use switchyard_runtime::{Endpoint, WorkerId, WorkerInstance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Emits the first prompt token, then behaves as the prompt's second token says.
struct ScriptedEngine;

const FAIL_AFTER_ONE: u32 = 1;
const END_WITHOUT_FINISH: u32 = 2;

impl Engine for ScriptedEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        let first = request.token_ids[0];
        let mode = request.token_ids.get(1).copied();
        let items: Vec<Result<EngineOutput, EngineError>> = match mode {
            Some(FAIL_AFTER_ONE) => vec![
                Ok(EngineOutput::token(first)),
                Err(EngineError::Failed("GPU fell off the bus".into())),
            ],
            Some(END_WITHOUT_FINISH) => vec![Ok(EngineOutput::token(first))],
            _ => vec![Ok(EngineOutput::token(first).finished(FinishReason::Stop))],
        };
        Box::pin(stream::iter(items))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            capabilities: Default::default(),
            kind: "scripted",
            kv_block_size: None,
            kv_total_blocks: None,
        }
    }
}

async fn start() -> u16 {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/qwen3");
    assert!(
        model.join("tokenizer.json").is_file(),
        "run scripts/fetch-test-models.sh first"
    );
    let card = tokio::task::spawn_blocking({
        let model = model.clone();
        move || load_model_card(&model)
    })
    .await
    .unwrap()
    .unwrap();
    let plane = InProcessRequestPlane::new();
    plane.insert(WorkerId(1), Arc::new(ScriptedEngine));
    let manager = Arc::new(ModelManager::new(
        RouterConfig::new(RouterMode::RoundRobin),
        Arc::new(plane),
        CpuPool::new(1),
        Arc::new(Metrics::new()),
    ));
    manager.add_model("m", Arc::new(card)).unwrap();
    manager
        .apply_snapshot(&[WorkerInstance {
            capabilities: Default::default(),
            id: WorkerId(1),
            namespace: "t".into(),
            model_name: "m".into(),
            model_path: model.display().to_string(),
            endpoint: Endpoint::InProcess,
            engine: "scripted".into(),
            kv_block_size: None,
            kv_total_blocks: None,
            context_length: None,
            limits: Default::default(),
        }])
        .await;
    let config = HttpConfig {
        host: "127.0.0.1".into(),
        port: 0,
        tls: None,
        body_limit_bytes: 1 << 20,
        drain_timeout: Duration::from_secs(1),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let service = HttpService::new(manager);
    tokio::spawn(switchyard_http::serve(
        config,
        service,
        std::future::pending(),
        move |addr| {
            let _ = tx.send(addr.port());
        },
    ));
    rx.await.unwrap()
}

async fn post(port: u16, body: serde_json::Value) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = serde_json::to_vec(&body).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn mid_stream_failure_is_an_sse_error_event_without_done() {
    let port = start().await;
    for mode in [FAIL_AFTER_ONE, END_WITHOUT_FINISH] {
        let (status, text) = post(
            port,
            serde_json::json!({"model": "m", "prompt": [100, mode], "stream": true}),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("event: error"), "mode {mode}: {text}");
        assert!(text.contains("\"error\":{"), "mode {mode}: {text}");
        assert!(!text.contains("[DONE]"), "mode {mode}: {text}");
    }
    let (status, text) = post(
        port,
        serde_json::json!({"model": "m", "prompt": [100, 3], "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn unary_failure_is_an_error_response() {
    let port = start().await;
    let (status, text) = post(
        port,
        serde_json::json!({"model": "m", "prompt": [100, FAIL_AFTER_ONE]}),
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert!(text.contains("GPU fell off the bus"), "{text}");
}
