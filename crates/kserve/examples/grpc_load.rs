//! Closed-loop load against a KServe gRPC front door: N clients, each on its own HTTP/2
//! connection, send requests back to back for a fixed time and report requests/s (and, when
//! streaming, responses/s and time to first response). Prompts are the same synthetic text
//! `switchyard bench load` sends, so the two can be compared against one server.
//!
//! ```sh
//! cargo run --release -p switchyard-kserve --example grpc_load -- \
//!   --url http://127.0.0.1:8001 --model qwen3 --concurrency 1,16,64 --duration 10 --stream
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchyard_kserve::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use switchyard_kserve::pb::infer_parameter::ParameterChoice;
use switchyard_kserve::pb::model_infer_request::InferInputTensor;
use switchyard_kserve::pb::{InferParameter, InferTensorContents, ModelInferRequest};
use tokio::sync::{Barrier, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
struct Args {
    /// The gRPC server.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    #[arg(long, default_value = "qwen3")]
    model: String,
    /// Client counts to run, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unary requests per client before a phase is timed.
    #[arg(long, default_value_t = 2)]
    warmup_requests: u32,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 100)]
    max_tokens: i64,
    /// ModelStreamInfer with one response per chunk (each client keeps one stream open and
    /// sends its requests on it one after another) instead of unary ModelInfer.
    #[arg(long)]
    stream: bool,
}

#[derive(Default)]
struct Totals {
    requests: u64,
    responses: u64,
    errors: u64,
    latency: Duration,
    first_response: Duration,
}

impl Totals {
    fn merge(&mut self, other: Totals) {
        self.requests += other.requests;
        self.responses += other.responses;
        self.errors += other.errors;
        self.latency += other.latency;
        self.first_response += other.first_response;
    }
}

fn request(args: &Args, client: usize, counter: u64) -> ModelInferRequest {
    let prompt = format!(
        "{client} {counter}{}",
        switchyard_bench::prompt::synthetic_text(args.prompt_tokens, 0x6b73)
    );
    let parameter = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    ModelInferRequest {
        model_name: args.model.clone(),
        inputs: vec![InferInputTensor {
            name: "text_input".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                bytes_contents: vec![prompt.into_bytes()],
                ..Default::default()
            }),
        }],
        parameters: [
            (
                "max_tokens".to_string(),
                parameter(ParameterChoice::Int64Param(args.max_tokens)),
            ),
            (
                "stream".to_string(),
                parameter(ParameterChoice::BoolParam(args.stream)),
            ),
        ]
        .into(),
        ..Default::default()
    }
}

fn is_final(response: &switchyard_kserve::pb::ModelInferResponse) -> bool {
    response.outputs.iter().any(|o| o.name == "finish_reason")
}

async fn run_client(
    args: &Args,
    index: usize,
    channel: Channel,
    barrier: Arc<Barrier>,
) -> anyhow::Result<Totals> {
    let mut client = GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    for i in 0..args.warmup_requests {
        client
            .model_infer(request(args, index, u64::from(i)))
            .await
            .context("warmup request failed")?;
    }
    // Every client is connected and warm before the phase is timed.
    barrier.wait().await;
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut totals = Totals::default();
    let mut counter = 1_000_000u64;
    if !args.stream {
        while Instant::now() < deadline {
            counter += 1;
            let started = Instant::now();
            match client.model_infer(request(args, index, counter)).await {
                Ok(_) => {
                    totals.requests += 1;
                    totals.responses += 1;
                    totals.latency += started.elapsed();
                    totals.first_response += started.elapsed();
                }
                Err(_) => totals.errors += 1,
            }
        }
        return Ok(totals);
    }
    let (tx, rx) = mpsc::channel(1);
    let mut responses = client
        .model_stream_infer(ReceiverStream::new(rx))
        .await
        .context("cannot open ModelStreamInfer")?
        .into_inner();
    while Instant::now() < deadline {
        counter += 1;
        let started = Instant::now();
        tx.send(request(args, index, counter))
            .await
            .context("stream closed")?;
        let mut first = true;
        loop {
            let message = responses
                .message()
                .await
                .context("stream failed")?
                .context("stream ended")?;
            if !message.error_message.is_empty() {
                totals.errors += 1;
                break;
            }
            totals.responses += 1;
            if first {
                totals.first_response += started.elapsed();
                first = false;
            }
            if message.infer_response.as_ref().is_some_and(is_final) {
                totals.requests += 1;
                totals.latency += started.elapsed();
                break;
            }
        }
    }
    Ok(totals)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: &'static Args = Box::leak(Box::new(Args::parse()));
    println!(
        "grpc {}  model {}  {}  prompt ~{} tok  max_tokens {}  {} s/phase",
        args.url,
        args.model,
        if args.stream { "stream" } else { "unary" },
        args.prompt_tokens,
        args.max_tokens,
        args.duration
    );
    println!(
        "{:>5} {:>9} {:>12} {:>7} {:>14} {:>14}",
        "conc", "req/s", "responses/s", "errors", "mean e2e ms", "mean first ms"
    );
    for &concurrency in &args.concurrency {
        let mut channels = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            // One HTTP/2 connection per client, as `bench load` uses one HTTP/1.1 connection each.
            channels.push(
                Channel::from_shared(args.url.clone())?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {}", args.url))?,
            );
        }
        let barrier = Arc::new(Barrier::new(concurrency + 1));
        let tasks: Vec<_> = channels
            .into_iter()
            .enumerate()
            .map(|(i, channel)| tokio::spawn(run_client(args, i, channel, barrier.clone())))
            .collect();
        barrier.wait().await;
        let start = Instant::now();
        let mut totals = Totals::default();
        for task in tasks {
            totals.merge(task.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let mean_ms = |d: Duration| {
            if totals.requests == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1000.0 / totals.requests as f64
            }
        };
        println!(
            "{:>5} {:>9.1} {:>12.1} {:>7} {:>14.2} {:>14.2}",
            concurrency,
            totals.requests as f64 / elapsed,
            totals.responses as f64 / elapsed,
            totals.errors,
            mean_ms(totals.latency),
            mean_ms(totals.first_response)
        );
    }
    Ok(())
}
