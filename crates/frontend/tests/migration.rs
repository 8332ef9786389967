//! Request migration inside the frontend: a worker whose stream breaks mid-generation is
//! replaced and the text continues exactly once; an unreachable worker is skipped; with no
//! migration left the caller gets an error, never a truncated success. The engines are the real
//! echo engine behind a wrapper that breaks its stream on cue (the failure is what is under test).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_engines::{Engine, EngineError, EngineInfo, EngineStream};
use switchyard_frontend::{CpuPool, Endpoint, Metrics, ModelManager};
use switchyard_protocol::{PreprocessedRequest, StopConditions};
use switchyard_router::{RouterConfig, RouterMode};
use switchyard_runtime::request_plane::{InProcessRequestPlane, RequestPlane};
use switchyard_runtime::{RuntimeError, WorkerId, WorkerInstance};

fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/qwen3");
    assert!(
        path.join("tokenizer.json").is_file(),
        "{} missing: run ./scripts/fetch-test-models.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// How a worker's stream breaks.
#[derive(Clone, Copy)]
enum Break {
    Never,
    /// An engine error after this many tokens.
    ErrorAfter(usize),
    /// The stream just ends (a lost connection) after this many tokens.
    EndAfter(usize),
}

struct FlakyEngine {
    echo: EchoEngine,
    fault: Break,
    served: AtomicUsize,
}

impl Engine for FlakyEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        self.served.fetch_add(1, Ordering::Relaxed);
        let stream = self.echo.generate(request);
        match self.fault {
            Break::Never => stream,
            Break::ErrorAfter(n) => Box::pin(stream.take(n).chain(futures::stream::iter([Err(
                EngineError::Failed("worker connection lost: killed".into()),
            )]))),
            Break::EndAfter(n) => Box::pin(stream.take(n)),
        }
    }

    fn info(&self) -> EngineInfo {
        self.echo.info()
    }
}

/// An in-process plane where some workers cannot be reached.
struct PartlyUnreachable {
    inner: InProcessRequestPlane,
    unreachable: Vec<WorkerId>,
}

#[async_trait]
impl RequestPlane for PartlyUnreachable {
    async fn generate(
        &self,
        worker: &WorkerInstance,
        request: PreprocessedRequest,
    ) -> Result<EngineStream, RuntimeError> {
        if self.unreachable.contains(&worker.id) {
            return Err(RuntimeError::Unreachable(
                worker.id,
                "connection refused".into(),
            ));
        }
        self.inner.generate(worker, request).await
    }
}

struct Cluster {
    manager: Arc<ModelManager>,
    engines: Vec<Arc<FlakyEngine>>,
}

impl Cluster {
    /// Round-robin over workers 1..=n (worker i has fault `faults[i - 1]`).
    async fn start(faults: &[Break], unreachable: &[u64], migration_limit: u32) -> Cluster {
        let plane = InProcessRequestPlane::new();
        let mut engines = Vec::new();
        let mut instances = Vec::new();
        for (i, &fault) in faults.iter().enumerate() {
            let id = WorkerId(i as u64 + 1);
            let engine = Arc::new(FlakyEngine {
                echo: EchoEngine::new(EchoConfig {
                    token_delay: Duration::from_millis(1),
                }),
                fault,
                served: AtomicUsize::new(0),
            });
            plane.insert(id, engine.clone());
            engines.push(engine);
            instances.push(WorkerInstance {
                capabilities: Default::default(),
                id,
                namespace: "test".into(),
                model_name: "m".into(),
                model_path: model_path().display().to_string(),
                endpoint: switchyard_runtime::Endpoint::InProcess,
                engine: "echo".into(),
                kv_block_size: None,
                kv_total_blocks: None,
                context_length: None,
                limits: Default::default(),
            });
        }
        let plane = PartlyUnreachable {
            inner: plane,
            unreachable: unreachable.iter().map(|&id| WorkerId(id)).collect(),
        };
        let manager = Arc::new(
            ModelManager::new(
                RouterConfig::new(RouterMode::RoundRobin),
                Arc::new(plane),
                CpuPool::new(1),
                Arc::new(Metrics::new()),
            )
            .with_migration_limit(migration_limit),
        );
        manager.apply_snapshot(&instances).await;
        Cluster { manager, engines }
    }

    fn request(&self, text: &str) -> PreprocessedRequest {
        let pipeline = self.manager.get("m").unwrap();
        let token_ids = pipeline.card().tokenizer.encode(text, false).unwrap();
        PreprocessedRequest {
            request_id: "r".into(),
            model: "m".into(),
            token_ids,
            stop: StopConditions {
                max_tokens: 1000,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn complete(&self, text: &str) -> Result<(String, &'static str), String> {
        let pipeline = self.manager.get("m").unwrap();
        let mut generation = pipeline
            .generate(self.request(text), Endpoint::Completions, Instant::now())
            .await
            .map_err(|e| e.message.clone())?;
        generation
            .collect_text()
            .await
            .map_err(|e| e.message.clone())
    }

    fn metric(&self, outcome: &str) -> f64 {
        let mut text = String::new();
        self.manager.metrics().encode(&mut text);
        text.lines()
            .find(|l| {
                l.starts_with("switchyard_worker_failures_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog, then naps in the sun.";

#[tokio::test]
async fn a_stream_broken_by_an_engine_error_resumes_on_another_worker_exactly_once() {
    let cluster = Cluster::start(&[Break::ErrorAfter(4), Break::Never], &[], 3).await;
    let (text, finish) = cluster.complete(PROMPT).await.unwrap();
    assert_eq!(text, PROMPT, "every token exactly once");
    assert_eq!(finish, "stop");
    assert_eq!(cluster.engines[0].served.load(Ordering::Relaxed), 1);
    assert_eq!(cluster.engines[1].served.load(Ordering::Relaxed), 1);
    assert_eq!(cluster.metric("migrated"), 1.0);
}

#[tokio::test]
async fn a_stream_that_just_ends_is_resumed_too() {
    let cluster = Cluster::start(&[Break::EndAfter(6), Break::Never], &[], 1).await;
    let (text, _) = cluster.complete(PROMPT).await.unwrap();
    assert_eq!(text, PROMPT);
    assert_eq!(cluster.metric("migrated"), 1.0);
}

#[tokio::test]
async fn with_migration_limit_zero_the_caller_gets_an_error_not_a_truncated_success() {
    let cluster = Cluster::start(&[Break::ErrorAfter(4), Break::Never], &[], 0).await;
    let error = cluster.complete(PROMPT).await.unwrap_err();
    assert!(error.contains("killed"), "{error}");
    assert_eq!(cluster.metric("exhausted"), 1.0);
    assert_eq!(cluster.engines[1].served.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn each_migration_uses_one_unit_of_the_limit() {
    // Three workers that all break: two migrations are allowed, the third break is an error.
    let faults = [
        Break::ErrorAfter(3),
        Break::ErrorAfter(3),
        Break::ErrorAfter(3),
    ];
    let cluster = Cluster::start(&faults, &[], 2).await;
    let error = cluster.complete(PROMPT).await.unwrap_err();
    assert!(error.contains("killed"), "{error}");
    assert_eq!(cluster.metric("migrated"), 2.0);
    assert_eq!(cluster.metric("exhausted"), 1.0);
    // Every worker served exactly one leg: a failed worker is not chosen again.
    for engine in &cluster.engines {
        assert_eq!(engine.served.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test]
async fn a_migration_with_no_other_worker_left_is_an_error() {
    let cluster = Cluster::start(&[Break::ErrorAfter(3)], &[], 3).await;
    let error = cluster.complete(PROMPT).await.unwrap_err();
    assert!(error.contains("no other worker"), "{error}");
}

#[tokio::test]
async fn an_unreachable_worker_is_skipped_before_the_first_token() {
    // Round robin picks worker 1 first; it cannot be reached, so worker 2 serves, with no
    // migration needed (limit 0).
    let cluster = Cluster::start(&[Break::Never, Break::Never], &[1], 0).await;
    for _ in 0..3 {
        let (text, _) = cluster.complete(PROMPT).await.unwrap();
        assert_eq!(text, PROMPT);
    }
    assert_eq!(cluster.engines[1].served.load(Ordering::Relaxed), 3);
    assert!(cluster.metric("retried") >= 1.0);
    let only = Cluster::start(&[Break::Never], &[1], 0).await;
    let error = only.complete(PROMPT).await.unwrap_err();
    assert!(error.contains("no reachable worker"), "{error}");
}
