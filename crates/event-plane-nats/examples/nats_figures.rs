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
const THROUGHPUT_EVENTS: u64 = 200_000;
/// Published between flushes, so the publish queue never overflows.
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

    // Throughput: one publisher as fast as it goes; the frontend receives everything.
    let prepared: Vec<WorkerEvent> = (0..1024).map(stored_event).collect();
    let receiving = tokio::spawn(async move {
        let mut received = 0u64;
        while received < THROUGHPUT_EVENTS {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(_)) => received += 1,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    println!("subscriber lagged, lost {n}");
                    received += n;
                }
                _ => break,
            }
        }
        (received, Instant::now())
    });
    let before = worker.stats();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < THROUGHPUT_EVENTS {
        for _ in 0..BATCH.min(THROUGHPUT_EVENTS - sent) {
            worker.publish(prepared[(sent % 1024) as usize].clone());
            sent += 1;
        }
        worker.flush().await?;
    }
    let published_in = start.elapsed();
    let (received, done) = receiving.await?;
    let received_in = done - start;
    let after = worker.stats();
    println!(
        "one publisher: {} events in {published_in:.2?} = {:.0} events/s ({:.1} MB/s) published, dropped {}",
        after.published - before.published,
        sent as f64 / published_in.as_secs_f64(),
        sent as f64 * size as f64 / published_in.as_secs_f64() / 1e6,
        after.dropped - before.dropped,
    );
    println!(
        "one subscriber: {received} events in {received_in:.2?} = {:.0} events/s received",
        received as f64 / received_in.as_secs_f64()
    );
    Ok(())
}
