//! Figures for the NATS event plane on this machine: publish → receive latency of a KV stored
//! event of 32 blocks, and how many such events one publisher pushes through one nats-server.
//!
//! `cargo run --release -p switchyard-event-plane-nats --example nats_figures`

use std::time::{Duration, Instant};

use switchyard_event_plane_nats::{NatsEventPlane, NatsPlaneOptions, wire};
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, StoredBlock};
use switchyard_runtime::WorkerId;
use switchyard_runtime::event_plane::{EventPlane, WorkerEvent, WorkerEventKind};
use switchyard_test_servers::NatsServer;

const BLOCKS: u64 = 32;
const LATENCY_SAMPLES: usize = 5_000;
const THROUGHPUT_EVENTS: u64 = 100 * BATCH;
/// Events in flight: below the publish queue (8192) and the broadcast capacity (4096).
const BATCH: u64 = 2_048;

/// A stored event with realistic (full-width) hashes.
fn stored_event(event_id: u64) -> WorkerEvent {
    let mut state = event_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    WorkerEvent {
        worker: WorkerId(0x5eed),
        kind: WorkerEventKind::Kv(KvCacheEvent {
            event_id,
            data: KvCacheEventData::Stored {
                parent: Some(next()),
                blocks: (0..BLOCKS)
                    .map(|_| StoredBlock {
                        sequence_hash: next(),
                        content_hash: next(),
                    })
                    .collect(),
            },
        }),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let server = tokio::task::spawn_blocking(NatsServer::start).await??;
    let publisher_options = NatsPlaneOptions {
        subscribe: false,
        ..Default::default()
    };
    let worker = NatsEventPlane::connect_with(&server.url(), "figures", publisher_options).await?;
    let frontend = NatsEventPlane::connect(&server.url(), "figures").await?;
    let mut events = frontend.subscribe();
    let size = wire::encode_event(&stored_event(0))?.len();
    println!("stored event of {BLOCKS} blocks: {size} bytes on the wire");

    // Latency: one event in flight at a time.
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for id in 0..LATENCY_SAMPLES as u64 {
        let event = stored_event(id);
        let start = Instant::now();
        worker.publish(event);
        let got = tokio::time::timeout(Duration::from_secs(5), events.recv()).await??;
        latencies.push(start.elapsed());
        assert_eq!(got, stored_event(id));
    }
    latencies.sort();
    println!(
        "publish -> receive latency over {LATENCY_SAMPLES} events: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );

    let prepared: Vec<WorkerEvent> = (0..1024).map(stored_event).collect();

    // Push: one publisher as fast as it goes, flushing every batch so its queue never
    // overflows; nobody subscribes to this namespace, so the server only takes them in.
    let pusher = NatsEventPlane::connect_with(
        &server.url(),
        "push-only",
        NatsPlaneOptions {
            subscribe: false,
            ..Default::default()
        },
    )
    .await?;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < THROUGHPUT_EVENTS {
        for _ in 0..BATCH {
            pusher.publish(prepared[(sent % 1024) as usize].clone());
            sent += 1;
        }
        pusher.flush().await?;
    }
    let pushed_in = start.elapsed();
    let stats = pusher.stats();
    println!(
        "one publisher into nats-server: {} events in {pushed_in:.2?} = {:.0} events/s ({:.1} MB/s), dropped {}",
        stats.published,
        sent as f64 / pushed_in.as_secs_f64(),
        sent as f64 * size as f64 / pushed_in.as_secs_f64() / 1e6,
        stats.dropped,
    );

    // Delivered: the same publisher to one subscribing frontend, one batch in flight at a
    // time, so the subscriber is never overrun and nothing is lost.
    let start = Instant::now();
    let mut delivered = 0u64;
    while delivered < THROUGHPUT_EVENTS {
        for i in 0..BATCH {
            worker.publish(prepared[(i % 1024) as usize].clone());
        }
        for _ in 0..BATCH {
            tokio::time::timeout(Duration::from_secs(5), events.recv()).await??;
            delivered += 1;
        }
    }
    let delivered_in = start.elapsed();
    let stats = frontend.stats();
    println!(
        "one publisher to one frontend: {delivered} events in {delivered_in:.2?} = {:.0} events/s delivered (lost {}, malformed {})",
        delivered as f64 / delivered_in.as_secs_f64(),
        stats.lost,
        stats.malformed,
    );

    // What one subscriber task can decode, without the network.
    let subject = wire::event_subject("figures", WorkerId(0x5eed));
    let payloads: Vec<Vec<u8>> = prepared
        .iter()
        .map(wire::encode_event)
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let rounds = 50;
    for _ in 0..rounds {
        for payload in &payloads {
            std::hint::black_box(wire::decode_event(&subject, payload)?);
        }
    }
    let decode = start.elapsed() / (rounds * payloads.len() as u32);
    let start = Instant::now();
    for _ in 0..rounds {
        for event in &prepared {
            std::hint::black_box(wire::encode_event(event)?);
        }
    }
    let encode = start.elapsed() / (rounds * prepared.len() as u32);
    println!("encode {encode:?}/event, decode {decode:?}/event (one core)");
    Ok(())
}
