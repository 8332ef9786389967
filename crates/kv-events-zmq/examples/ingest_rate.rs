//! KV event ingestion figures: decode cost per event (both layouts), decode + ingest cost, and
//! the rate a subscriber takes events from a ZMQ PUB socket on loopback.
//!
//! cargo run --release -p switchyard-kv-events-zmq --example ingest_rate [-- BATCHES]
//!
//! Each batch is what a busy vLLM step sends: 8 events, 6 `BlockStored` of 4 blocks of 16
//! tokens (chained on the previous event's last block) and 2 `BlockRemoved` of 2 blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard_engines::{EngineEvent, EngineEventSink};
use switchyard_kv_events_zmq::encode::{Layout, encode_batch};
use switchyard_kv_events_zmq::wire::{EngineKvEvent, RemovedEvent, StoredEvent};
use switchyard_kv_events_zmq::{KvEventIngest, KvEventSubscriber, SubscriberConfig, decode_batch};
use switchyard_protocol::kv::KvCacheEventData;
use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};

const BLOCK: u32 = 16;
const EVENTS_PER_BATCH: usize = 8;
const BLOCKS_PER_STORE: usize = 4;

fn batches(n: usize) -> Vec<Vec<EngineKvEvent>> {
    let mut next_hash = 1u64;
    let mut out = Vec::with_capacity(n);
    for b in 0..n {
        let mut events = Vec::with_capacity(EVENTS_PER_BATCH);
        let mut parent = None;
        for e in 0..6 {
            let hashes: Vec<u64> = (0..BLOCKS_PER_STORE as u64)
                .map(|i| next_hash + i)
                .collect();
            next_hash += BLOCKS_PER_STORE as u64;
            let base = ((b * 6 + e) * BLOCKS_PER_STORE * BLOCK as usize) as u32;
            events.push(EngineKvEvent::Stored(StoredEvent {
                block_hashes: hashes.clone(),
                parent_block_hash: parent,
                token_ids: (base..base + BLOCKS_PER_STORE as u32 * BLOCK).collect(),
                block_size: BLOCK,
                medium: Some("GPU".into()),
                ..StoredEvent::default()
            }));
            parent = hashes.last().copied();
        }
        for _ in 0..2 {
            // Remove the oldest blocks stored two batches ago (leaves of their chains are gone
            // already in a real engine; the ingest does not care about order).
            let h = next_hash.saturating_sub(100);
            events.push(EngineKvEvent::Removed(RemovedEvent {
                block_hashes: vec![h, h + 1],
                medium: Some("GPU".into()),
                group_idx: None,
            }));
        }
        out.push(events);
    }
    out
}

struct Counting {
    events: AtomicU64,
    blocks: AtomicU64,
}

impl EngineEventSink for Counting {
    fn publish(&self, event: EngineEvent) {
        if let EngineEvent::Kv(kv) = event {
            self.events.fetch_add(1, Ordering::Relaxed);
            if let KvCacheEventData::Stored { blocks, .. } = kv.data {
                self.blocks
                    .fetch_add(blocks.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let events = batches(n);
    let total_events = (n * EVENTS_PER_BATCH) as f64;
    let stored_blocks = (n * 6 * BLOCKS_PER_STORE) as f64;
    println!(
        "{n} batches, {total_events} engine events, {stored_blocks} stored blocks of {BLOCK} tokens"
    );

    for layout in [Layout::Positional, Layout::Map] {
        let payloads: Vec<Vec<u8>> = events
            .iter()
            .enumerate()
            .map(|(i, e)| encode_batch(layout, i as f64, Some(0), e))
            .collect();
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        let mut best_decode = f64::MAX;
        let mut best_ingest = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut decoded = 0usize;
            for p in &payloads {
                decoded += decode_batch(p).unwrap().events.len();
            }
            assert_eq!(decoded as f64, total_events);
            best_decode = best_decode.min(t.elapsed().as_secs_f64());

            let mut ingest = KvEventIngest::new(BLOCK, 1 << 20);
            let mut out = Vec::new();
            let t = Instant::now();
            for (seq, p) in payloads.iter().enumerate() {
                let batch = decode_batch(p).unwrap();
                ingest.apply_batch(seq as u64, &batch, &mut out);
                out.clear();
            }
            best_ingest = best_ingest.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{layout:?}: {:.1} MB, decode {:.0} ns/event ({:.0} MB/s); decode + ingest (re-hash tokens, map hashes) {:.0} ns/event, {:.2} M events/s, {:.2} M blocks/s",
            bytes as f64 / 1e6,
            best_decode / total_events * 1e9,
            bytes as f64 / best_decode / 1e6,
            best_ingest / total_events * 1e9,
            total_events / best_ingest / 1e6,
            stored_blocks / best_ingest / 1e6,
        );
    }

    // Over ZMQ on loopback: a PUB socket sending pre-encoded batches as fast as it can, the
    // subscriber task decoding, ingesting and publishing into a counting sink.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut socket = PubSocket::new();
        let endpoint = socket.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let sink = Arc::new(Counting {
            events: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
        });
        let subscriber = KvEventSubscriber::spawn(SubscriberConfig::new(endpoint, BLOCK), sink.clone());
        // Wait for the subscription with probe batches (AllBlocksCleared).
        let probe = Bytes::from(encode_batch(Layout::Positional, 0.0, Some(0), &[EngineKvEvent::Cleared]));
        let mut seq = 0u64;
        while sink.events.load(Ordering::Relaxed) == 0 {
            send(&mut socket, seq, probe.clone()).await;
            seq += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let payloads: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(encode_batch(Layout::Positional, 0.0, Some(0), e)))
            .collect();
        let before_events = sink.events.load(Ordering::Relaxed);
        let before_blocks = sink.blocks.load(Ordering::Relaxed);
        let start = Instant::now();
        for p in &payloads {
            send(&mut socket, seq, p.clone()).await;
            seq += 1;
        }
        let sent = start.elapsed();
        // Until the subscriber is idle.
        let mut last = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let batches = subscriber.stats().ingest.batches;
            if batches != last.0 {
                last = (batches, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        let took = last.1.duration_since(start).as_secs_f64();
        let stats = subscriber.stats();
        let out_events = sink.events.load(Ordering::Relaxed) - before_events;
        let blocks = sink.blocks.load(Ordering::Relaxed) - before_blocks;
        let received = stats.ingest.batches - 1;
        println!(
            "ZMQ loopback: sent {n} batches in {:.2} s; subscriber took {received} ({} lost to the PUB high-water mark, counted as gaps: {}), {:.2} M engine events/s, {:.2} M stored blocks/s ({out_events} router events, {blocks} blocks) in {took:.2} s",
            sent.as_secs_f64(),
            n as u64 - received,
            stats.ingest.gaps,
            (received as f64 * EVENTS_PER_BATCH as f64) / took / 1e6,
            blocks as f64 / took / 1e6,
        );
        subscriber.shutdown().await;
    });
}

async fn send(socket: &mut PubSocket, seq: u64, payload: Bytes) {
    let message = ZmqMessage::try_from(vec![
        Bytes::new(),
        Bytes::copy_from_slice(&seq.to_be_bytes()),
        payload,
    ])
    .unwrap();
    socket.send(message).await.unwrap();
}
