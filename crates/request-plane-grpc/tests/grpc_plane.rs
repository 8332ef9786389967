//! The gRPC request plane over real sockets on 127.0.0.1: a `WorkerServer` with a real engine,
//! a `GrpcRequestPlane` calling it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_engines::{Engine, EngineError, EngineInfo, EngineStream};
use switchyard_protocol::{EngineOutput, FinishReason, PreprocessedRequest, StopConditions};
use switchyard_request_plane_grpc::pb;
use switchyard_request_plane_grpc::{
    GrpcPlaneConfig, GrpcRequestPlane, WorkerServer, is_connection_lost,
};
use switchyard_runtime::request_plane::RequestPlane;
use switchyard_runtime::{Endpoint, RuntimeError, WorkerId, WorkerInstance};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Guards every wait so a broken build fails instead of hanging; never a measurement.
const GUARD: Duration = Duration::from_secs(10);

type Item = Result<EngineOutput, EngineError>;

struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_server(engine: Arc<dyn Engine>) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let (addr, serving) = WorkerServer::new(engine)
        .serve(listener, async {
            let _ = rx.await;
        })
        .unwrap();
    RunningServer {
        addr,
        shutdown: Some(tx),
        task: tokio::spawn(serving),
    }
}

fn worker_at(address: impl Into<String>) -> WorkerInstance {
    WorkerInstance {
        capabilities: Default::default(),
        id: WorkerId(7),
        namespace: "test".into(),
        model_name: "m".into(),
        model_path: "/nowhere".into(),
        endpoint: Endpoint::Grpc {
            address: address.into(),
        },
        engine: "echo".into(),
        kv_block_size: None,
        kv_total_blocks: None,
        context_length: None,
        limits: Default::default(),
    }
}

fn prompt(tokens: &[u32], stop: StopConditions) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: "r".into(),
        model: "m".into(),
        token_ids: tokens.to_vec(),
        stop,
        ..Default::default()
    }
}

fn max_tokens(n: u32) -> StopConditions {
    StopConditions {
        max_tokens: n,
        ..Default::default()
    }
}

async fn collect(stream: EngineStream) -> Vec<Item> {
    tokio::time::timeout(GUARD, stream.collect::<Vec<_>>())
        .await
        .expect("stream did not end")
}

async fn next(stream: &mut EngineStream) -> Option<Item> {
    tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("no item in time")
}

/// Replays a fixed list of items for every request.
struct ScriptEngine(Vec<Item>);

impl Engine for ScriptEngine {
    fn generate(&self, _request: PreprocessedRequest) -> EngineStream {
        Box::pin(stream::iter(self.0.clone()))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            capabilities: Default::default(),
            kind: "script",
            kv_block_size: None,
            kv_total_blocks: None,
        }
    }
}

/// An echo engine whose streams report, when dropped, how many items they had yielded.
struct DropRecordingEngine {
    echo: EchoEngine,
    dropped: mpsc::UnboundedSender<usize>,
}

struct RecordedStream {
    inner: EngineStream,
    yielded: usize,
    dropped: mpsc::UnboundedSender<usize>,
}

impl Stream for RecordedStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.yielded += 1;
        }
        polled
    }
}

impl Drop for RecordedStream {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.yielded);
    }
}

impl Engine for DropRecordingEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        Box::pin(RecordedStream {
            inner: self.echo.generate(request),
            yielded: 0,
            dropped: self.dropped.clone(),
        })
    }

    fn info(&self) -> EngineInfo {
        self.echo.info()
    }
}

fn slow_echo(token_delay_ms: u64) -> EchoEngine {
    EchoEngine::new(EchoConfig {
        token_delay: Duration::from_millis(token_delay_ms),
    })
}

/// A TCP relay that counts the connections it accepts.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // Relayed small frames must not wait for Nagle's algorithm either.
                let _ = inbound.set_nodelay(true);
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn echo_over_grpc_gives_exactly_the_in_process_items() {
    let echo = EchoEngine::default();
    let server = start_server(Arc::new(echo.clone())).await;
    let plane = GrpcRequestPlane::default();
    let worker = worker_at(server.addr.to_string());
    let long: Vec<u32> = (0..300).map(|i| i * 1000).collect();
    let requests = [
        prompt(&[1, 2, 3, 4, 5], max_tokens(100)),
        prompt(&[1, 2, 3, 4, 5], max_tokens(3)),
        prompt(&long, max_tokens(1000)),
        prompt(
            &[4, 5, 6],
            StopConditions {
                max_tokens: 10,
                ignore_eos: true,
                ..Default::default()
            },
        ),
        prompt(
            &[1, 9, 2],
            StopConditions {
                max_tokens: 10,
                stop_token_ids: vec![9],
                ..Default::default()
            },
        ),
        prompt(&[1, 2], max_tokens(0)),
        prompt(&[], max_tokens(5)),
    ];
    for request in requests {
        let expected = collect(echo.generate(request.clone())).await;
        let got = collect(plane.generate(&worker, request).await.unwrap()).await;
        assert_eq!(got, expected);
        assert!(
            expected
                .last()
                .unwrap()
                .as_ref()
                .unwrap()
                .finish_reason
                .is_some()
        );
    }
    assert_eq!(plane.cached_channels(), 1);
}

#[tokio::test]
async fn finish_reasons_and_cached_tokens_are_carried() {
    let mut first = EngineOutput::token(11);
    first.cached_tokens = Some(96);
    let mut last = EngineOutput::default().finished(FinishReason::Cancelled);
    last.token_ids.extend([12, 13, 14, 15, 16]);
    let script = vec![Ok(first), Ok(EngineOutput::token(u32::MAX)), Ok(last)];
    let server = start_server(Arc::new(ScriptEngine(script.clone()))).await;
    let plane = GrpcRequestPlane::default();
    // A scheme in the address is accepted too.
    let worker = worker_at(format!("http://{}", server.addr));
    let got = collect(
        plane
            .generate(&worker, PreprocessedRequest::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got, script);
}

#[tokio::test]
async fn engine_errors_keep_their_kind_and_are_not_connection_loss() {
    for error in [
        EngineError::InvalidRequest("prompt too long".into()),
        EngineError::Overloaded("queue full".into()),
        EngineError::Failed("device lost".into()),
    ] {
        let script = vec![Ok(EngineOutput::token(1)), Err(error.clone())];
        let server = start_server(Arc::new(ScriptEngine(script.clone()))).await;
        let plane = GrpcRequestPlane::default();
        let got = collect(
            plane
                .generate(
                    &worker_at(server.addr.to_string()),
                    PreprocessedRequest::default(),
                )
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, script);
        assert!(!is_connection_lost(&error));
    }
}

#[tokio::test]
async fn malformed_request_is_refused_in_the_stream() {
    let server = start_server(Arc::new(EchoEngine::default())).await;
    let mut client = pb::worker_client::WorkerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let request = pb::GenerateRequest {
        token_ids: vec![1, 2],
        ..Default::default()
    };
    let mut responses = client.generate(request).await.unwrap().into_inner();
    let first = responses.message().await.unwrap().unwrap();
    match first.kind {
        Some(pb::generate_response::Kind::Error(e)) => {
            assert_eq!(e.kind, pb::ErrorKind::InvalidRequest as i32);
            assert!(
                e.message.contains("GenerateRequest.sampling is missing"),
                "{}",
                e.message
            );
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    // Then a clean end (status OK).
    assert!(responses.message().await.unwrap().is_none());
}

/// A worker that breaks the protocol: its answer has a finish reason no version defines.
struct BadWorker;

#[tonic::async_trait]
impl pb::worker_server::Worker for BadWorker {
    type GenerateStream =
        Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, tonic::Status>> + Send>>;

    async fn generate(
        &self,
        _request: tonic::Request<pb::GenerateRequest>,
    ) -> Result<tonic::Response<Self::GenerateStream>, tonic::Status> {
        let bad = pb::GenerateResponse {
            kind: Some(pb::generate_response::Kind::Output(pb::Output {
                token_ids: vec![1],
                finish_reason: 42,
                cached_tokens: None,
                logprobs: Vec::new(),
            })),
        };
        Ok(tonic::Response::new(Box::pin(stream::iter([Ok(bad)]))))
    }
}

#[tokio::test]
async fn invalid_response_from_a_worker_is_an_error_item() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::worker_server::WorkerServer::new(BadWorker))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let plane = GrpcRequestPlane::default();
    let got = collect(
        plane
            .generate(&worker_at(addr.to_string()), PreprocessedRequest::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        got,
        vec![Err(EngineError::Failed(
            "worker sent an invalid response: Output.finish_reason has unknown value 42".into()
        ))]
    );
}

#[tokio::test]
async fn dropping_the_client_stream_cancels_on_the_worker() {
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    let engine = DropRecordingEngine {
        echo: slow_echo(5),
        dropped: dropped_tx,
    };
    let server = start_server(Arc::new(engine)).await;
    let plane = GrpcRequestPlane::default();
    let request = prompt(
        &[1, 2, 3],
        StopConditions {
            max_tokens: 100_000,
            ignore_eos: true,
            ..Default::default()
        },
    );
    let mut stream = plane
        .generate(&worker_at(server.addr.to_string()), request)
        .await
        .unwrap();
    for expected in [1, 2, 3] {
        let item = next(&mut stream).await.unwrap().unwrap();
        assert_eq!(item.token_ids.as_slice(), &[expected]);
    }
    drop(stream);
    let yielded = tokio::time::timeout(GUARD, dropped_rx.recv())
        .await
        .expect("the worker never dropped the engine stream")
        .unwrap();
    assert!(yielded < 100_000, "engine ran to completion: {yielded}");
    // The connection survives a cancelled call.
    let again = collect(
        plane
            .generate(
                &worker_at(server.addr.to_string()),
                prompt(&[8], max_tokens(4)),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        again,
        vec![Ok(EngineOutput::token(8).finished(FinishReason::Stop))]
    );
}

#[tokio::test]
async fn killed_worker_mid_stream_yields_connection_lost() {
    // The worker gets its own runtime so that shutting it down kills the listener and every
    // connection task at once, as a dying process would.
    let worker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = {
        let _entered = worker_runtime.enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(std_listener).unwrap();
        let (addr, serving) = WorkerServer::new(Arc::new(slow_echo(10)))
            .serve(listener, futures::future::pending())
            .unwrap();
        worker_runtime.spawn(serving);
        addr
    };
    let plane = GrpcRequestPlane::default();
    let request = prompt(
        &[5, 6],
        StopConditions {
            max_tokens: 100_000,
            ignore_eos: true,
            ..Default::default()
        },
    );
    let mut stream = plane
        .generate(&worker_at(addr.to_string()), request)
        .await
        .unwrap();
    assert!(next(&mut stream).await.unwrap().is_ok());
    assert!(next(&mut stream).await.unwrap().is_ok());
    worker_runtime.shutdown_background();
    // Items already in flight may still arrive; then the loss, never a clean end.
    let error = loop {
        match next(&mut stream).await {
            Some(Ok(output)) => assert!(output.finish_reason.is_none()),
            Some(Err(e)) => break e,
            None => panic!("stream ended cleanly after the worker died"),
        }
    };
    assert!(is_connection_lost(&error), "{error}");
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let plane = GrpcRequestPlane::default();
    let result = tokio::time::timeout(
        GUARD,
        plane.generate(
            &worker_at(format!("127.0.0.1:{port}")),
            PreprocessedRequest::default(),
        ),
    )
    .await
    .expect("connect not bounded");
    match result {
        Err(RuntimeError::Unreachable(id, reason)) => {
            assert_eq!(id, WorkerId(7));
            assert!(reason.contains("cannot connect"), "{reason}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    // A failed connect is not cached: the next call tries again.
    assert!(
        plane
            .generate(
                &worker_at(format!("127.0.0.1:{port}")),
                PreprocessedRequest::default()
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn silent_peer_is_unreachable_after_the_connect_timeout() {
    // Accepts TCP (the kernel's backlog does) but never speaks HTTP/2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plane = GrpcRequestPlane::new(GrpcPlaneConfig {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let result = tokio::time::timeout(
        GUARD,
        plane.generate(
            &worker_at(silent.local_addr().unwrap().to_string()),
            PreprocessedRequest::default(),
        ),
    )
    .await
    .expect("connect not bounded");
    assert!(matches!(result, Err(RuntimeError::Unreachable(..))));
}

#[tokio::test]
async fn in_process_endpoint_is_refused() {
    let plane = GrpcRequestPlane::default();
    let mut worker = worker_at("unused");
    worker.endpoint = Endpoint::InProcess;
    let result = plane
        .generate(&worker, PreprocessedRequest::default())
        .await;
    assert!(matches!(result, Err(RuntimeError::Unreachable(..))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_streams_share_one_connection() {
    let echo = EchoEngine::new(EchoConfig {
        token_delay: Duration::from_millis(1),
    });
    let server = start_server(Arc::new(echo)).await;
    let (relay, connections) = counting_relay(server.addr).await;
    let plane = GrpcRequestPlane::default();
    let worker = worker_at(relay.to_string());
    let calls = (0..64u32).map(|i| {
        let plane = plane.clone();
        let worker = worker.clone();
        async move {
            let tokens: Vec<u32> = (0..20).map(|t| i * 100 + t).collect();
            let stream = plane
                .generate(&worker, prompt(&tokens, max_tokens(50)))
                .await
                .unwrap();
            let items = collect(stream).await;
            let got: Vec<u32> = items
                .iter()
                .flat_map(|item| item.as_ref().unwrap().token_ids.clone())
                .collect();
            assert_eq!(got, tokens);
            assert_eq!(
                items.last().unwrap().as_ref().unwrap().finish_reason,
                Some(FinishReason::Stop)
            );
        }
    });
    futures::future::join_all(calls).await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // A forgotten worker gets a new connection on its next call.
    plane.forget(&relay.to_string());
    assert_eq!(plane.cached_channels(), 0);
    collect(
        plane
            .generate(&worker, prompt(&[1], max_tokens(2)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_in_flight() {
    let mut server = start_server(Arc::new(slow_echo(10))).await;
    let plane = GrpcRequestPlane::default();
    let worker = worker_at(server.addr.to_string());
    let mut stream = plane
        .generate(&worker, prompt(&[1, 2, 3, 4, 5, 6], max_tokens(100)))
        .await
        .unwrap();
    assert!(next(&mut stream).await.unwrap().is_ok());
    server.shutdown.take().unwrap().send(()).unwrap();
    let rest = collect(stream).await;
    let rest: Vec<EngineOutput> = rest.into_iter().map(Result::unwrap).collect();
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[4].finish_reason, Some(FinishReason::Stop));
    tokio::time::timeout(GUARD, &mut server.task)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
    // Nobody listens any more: the next call cannot start.
    let after = plane.generate(&worker, prompt(&[1], max_tokens(1))).await;
    assert!(matches!(after, Err(RuntimeError::Unreachable(..))));
}

/// Churn on one connection: h2 counts frames arriving for streams it reset and forgot as
/// protocol errors and closes the connection after 1024 of them. Before the client read the
/// trailers of finished calls, 3000 back-to-back calls of the release-built example hit that;
/// this debug-built test is a guard (it did not reproduce the race without the fix), checking
/// that thousands of finished and cancelled calls keep working on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_finished_and_cancelled_calls_keep_the_connection() {
    let server = start_server(Arc::new(EchoEngine::default())).await;
    let (relay, connections) = counting_relay(server.addr).await;
    let plane = GrpcRequestPlane::default();
    let worker = worker_at(relay.to_string());
    for i in 0..2000u32 {
        let mut stream = plane
            .generate(&worker, prompt(&[i, i + 1], max_tokens(8)))
            .await
            .unwrap();
        // Stop at the final item, as the frontend does, without polling for the end.
        assert_eq!(
            next(&mut stream)
                .await
                .unwrap()
                .unwrap()
                .token_ids
                .as_slice(),
            &[i]
        );
        let last = next(&mut stream).await.unwrap().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    }
    let endless = StopConditions {
        max_tokens: u32::MAX,
        ignore_eos: true,
        ..Default::default()
    };
    for _ in 0..500 {
        let mut stream = plane
            .generate(&worker, prompt(&[3, 4], endless.clone()))
            .await
            .unwrap();
        assert!(next(&mut stream).await.unwrap().is_ok());
    }
    let got = collect(
        plane
            .generate(&worker, prompt(&[9], max_tokens(4)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        got,
        vec![Ok(EngineOutput::token(9).finished(FinishReason::Stop))]
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
