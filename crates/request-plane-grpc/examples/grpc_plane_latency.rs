//! What the gRPC request plane adds to the in-process one, with the echo engine: time to first
//! token and inter-token gaps (p50/p99) over sequential requests, and tokens/s with many
//! concurrent streams on one connection. The worker runs on its own runtime (own thread), as a
//! worker process would; the frontend side gets another. Prints figures; asserts nothing.
//!
//! ```sh
//! cargo run --release -p switchyard-request-plane-grpc --example grpc_plane_latency -- \
//!   --requests 3000 --output-tokens 32 --concurrency 32
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use switchyard_engines::Engine;
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_protocol::{PreprocessedRequest, StopConditions};
use switchyard_request_plane_grpc::{GrpcRequestPlane, WorkerServer};
use switchyard_runtime::request_plane::{InProcessRequestPlane, RequestPlane};
use switchyard_runtime::{Endpoint, WorkerId, WorkerInstance};

#[derive(Parser, Debug)]
struct Args {
    /// Sequential requests for the latency figures (after 100 warm-up requests).
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// Tokens each latency request generates (its prompt length; the echo engine replays it).
    #[arg(long, default_value_t = 32)]
    output_tokens: u32,
    /// The echo engine's pause between tokens, in microseconds (0: as fast as it can).
    #[arg(long, default_value_t = 0)]
    token_delay_us: u64,
    /// Concurrent streams for the throughput figure.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests for the throughput figure.
    #[arg(long, default_value_t = 2000)]
    throughput_requests: usize,
    /// Tokens each throughput request generates.
    #[arg(long, default_value_t = 256)]
    throughput_tokens: u32,
    /// Worker threads of each runtime (frontend side, worker side).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn request(tokens: u32) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: "bench".into(),
        model: "echo".into(),
        token_ids: (1000..1000 + tokens).collect(),
        stop: StopConditions {
            max_tokens: tokens,
            ignore_eos: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn worker(endpoint: Endpoint) -> WorkerInstance {
    WorkerInstance {
        capabilities: Default::default(),
        id: WorkerId(1),
        namespace: "bench".into(),
        model_name: "echo".into(),
        model_path: String::new(),
        endpoint,
        engine: "echo".into(),
        kv_block_size: None,
        kv_total_blocks: None,
        context_length: None,
        limits: Default::default(),
    }
}

struct Latencies {
    ttft: Vec<Duration>,
    itl: Vec<Duration>,
}

async fn measure_latency(
    plane: &dyn RequestPlane,
    worker: &WorkerInstance,
    args: &Args,
) -> anyhow::Result<Latencies> {
    let mut ttft = Vec::with_capacity(args.requests);
    let mut itl = Vec::with_capacity(args.requests * args.output_tokens as usize);
    for i in 0..100 + args.requests {
        let start = Instant::now();
        let mut stream = plane.generate(worker, request(args.output_tokens)).await?;
        let mut last = None;
        while let Some(item) = stream.next().await {
            item?;
            let now = Instant::now();
            if i >= 100 {
                match last {
                    None => ttft.push(now - start),
                    Some(previous) => itl.push(now - previous),
                }
            }
            last = Some(now);
        }
    }
    Ok(Latencies { ttft, itl })
}

async fn measure_throughput(
    plane: Arc<dyn RequestPlane>,
    worker: &WorkerInstance,
    args: &Args,
) -> anyhow::Result<f64> {
    let next_request = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let clients = (0..args.concurrency).map(|_| {
        let plane = plane.clone();
        let worker = worker.clone();
        let next_request = next_request.clone();
        let (total, tokens) = (args.throughput_requests, args.throughput_tokens);
        tokio::spawn(async move {
            let mut received = 0usize;
            while next_request.fetch_add(1, Ordering::Relaxed) < total {
                let mut stream = plane.generate(&worker, request(tokens)).await?;
                while let Some(item) = stream.next().await {
                    received += item?.token_ids.len();
                }
            }
            anyhow::Ok(received)
        })
    });
    let mut tokens = 0;
    for client in futures::future::join_all(clients).await {
        tokens += client??;
    }
    Ok(tokens as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let echo = EchoEngine::new(EchoConfig {
        token_delay: Duration::from_micros(args.token_delay_us),
    });

    let worker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let addr = {
        let _entered = worker_runtime.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let (addr, serving) = WorkerServer::new(Arc::new(echo.clone())).serve(
            tokio::net::TcpListener::from_std(listener)?,
            futures::future::pending(),
        )?;
        worker_runtime.spawn(serving);
        addr
    };

    let frontend_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    frontend_runtime.block_on(async {
        let in_process = InProcessRequestPlane::new();
        in_process.insert(WorkerId(1), Arc::new(echo) as Arc<dyn Engine>);
        let planes: [(&str, Arc<dyn RequestPlane>, WorkerInstance); 2] = [
            (
                "in-process",
                Arc::new(in_process),
                worker(Endpoint::InProcess),
            ),
            (
                "gRPC",
                Arc::new(GrpcRequestPlane::default()),
                worker(Endpoint::Grpc {
                    address: addr.to_string(),
                }),
            ),
        ];
        println!(
            "echo engine, token delay {} us; {} sequential requests of {} tokens; \
             {} streams x {} tokens, {} requests; {} thread(s) per side",
            args.token_delay_us,
            args.requests,
            args.output_tokens,
            args.concurrency,
            args.throughput_tokens,
            args.throughput_requests,
            args.threads
        );
        println!(
            "{:<11} {:>13} {:>13} {:>12} {:>12} {:>14}",
            "plane", "TTFT p50 us", "TTFT p99 us", "ITL p50 us", "ITL p99 us", "tokens/s"
        );
        for (name, plane, worker) in planes {
            let Latencies { mut ttft, mut itl } =
                measure_latency(plane.as_ref(), &worker, &args).await?;
            ttft.sort_unstable();
            itl.sort_unstable();
            let tokens_per_s = measure_throughput(plane, &worker, &args).await?;
            println!(
                "{:<11} {:>13} {:>13} {:>12} {:>12} {:>14.0}",
                name,
                micros(percentile(&ttft, 50.0)),
                micros(percentile(&ttft, 99.0)),
                micros(percentile(&itl, 50.0)),
                micros(percentile(&itl, 99.0)),
                tokens_per_s
            );
        }
        anyhow::Ok(())
    })?;
    worker_runtime.shutdown_background();
    Ok(())
}
