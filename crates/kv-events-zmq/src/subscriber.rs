//! The subscriber task: SUB socket → decode → [`KvEventIngest`] → an [`EngineEventSink`].
//!
//! One subscriber serves one worker. It connects (and reconnects: the `zeromq` SUB socket does)
//! to the engine's PUB endpoint; when a rank's sequence skips ahead, or on the first batch of a
//! rank, it asks the replay endpoint (if configured) for the missing batches over a short-lived
//! DEALER socket, applies them in order, then goes on with the live ones. Nothing a publisher
//! sends can stop the task: bad frames and payloads are counted and logged (rate-limited).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use switchyard_engines::{EngineEvent, EngineEventSink};
use switchyard_protocol::kv::KvCacheEvent;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zeromq::{DealerSocket, Socket, SocketEvent, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use crate::REPLAY_END;
use crate::ingest::{IngestStats, KvEventIngest, SequenceCheck};
use crate::wire::decode_batch;

#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The engine's PUB socket, `tcp://host:port`.
    pub endpoint: String,
    /// The engine's ROUTER replay socket, if it has one.
    pub replay_endpoint: Option<String>,
    /// Topic prefix to subscribe to (`""`: everything).
    pub topic: String,
    /// The worker's KV block size (the router's); events of another size are refused.
    pub block_size: u32,
    /// Cap of the engine hash → routing hash map.
    pub max_blocks: usize,
    /// How long one replay may take (connect + all replies).
    pub replay_timeout: Duration,
}

impl SubscriberConfig {
    pub fn new(endpoint: impl Into<String>, block_size: u32) -> Self {
        SubscriberConfig {
            endpoint: endpoint.into(),
            replay_endpoint: None,
            topic: String::new(),
            block_size,
            max_blocks: 1 << 20,
            replay_timeout: Duration::from_secs(5),
        }
    }
}

/// What a subscriber has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub ingest: IngestStats,
    /// Messages that were not `[topic, 8-byte sequence, payload]`.
    pub malformed_frames: u64,
    /// Payloads that did not decode as a batch.
    pub malformed_batches: u64,
    /// Replays asked for, and those that failed (unreachable, timed out, bad replies).
    pub replays: u64,
    pub replay_failures: u64,
    /// Batches applied from replays.
    pub replayed_batches: u64,
    /// Whether the SUB socket is connected.
    pub connected: bool,
    /// Connections made to the publisher (1 + reconnects).
    pub connections: u64,
}

/// A running subscriber; dropping it stops the task.
pub struct KvEventSubscriber {
    stats: Arc<Mutex<SubscriberStats>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl KvEventSubscriber {
    /// Starts the task on the current tokio runtime; events go to `sink`.
    pub fn spawn(config: SubscriberConfig, sink: Arc<dyn EngineEventSink>) -> Self {
        let stats = Arc::new(Mutex::new(SubscriberStats::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stats = stats.clone();
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = run(config, sink, stats) => {}
                }
            }
        });
        KvEventSubscriber {
            stats,
            stop,
            task: Some(task),
        }
    }

    pub fn stats(&self) -> SubscriberStats {
        *self.stats.lock()
    }

    /// Stops the task and waits for it.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KvEventSubscriber {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Logs at most one warning per kind per interval.
struct RateLimitedLog {
    last: Option<Instant>,
}

impl RateLimitedLog {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

struct Worker {
    config: SubscriberConfig,
    sink: Arc<dyn EngineEventSink>,
    stats: Arc<Mutex<SubscriberStats>>,
    ingest: KvEventIngest,
    out: Vec<KvCacheEvent>,
    bad_input_log: RateLimitedLog,
}

async fn run(
    config: SubscriberConfig,
    sink: Arc<dyn EngineEventSink>,
    stats: Arc<Mutex<SubscriberStats>>,
) {
    let mut socket = SubSocket::new();
    let mut monitor = socket.monitor();
    // The first connect waits for the engine; later losses are handled by the socket itself.
    let mut backoff = Duration::from_millis(100);
    loop {
        match socket.connect(&config.endpoint).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(endpoint = %config.endpoint, error = %e, "kv events: cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if let Err(e) = socket.subscribe(&config.topic).await {
        tracing::error!(endpoint = %config.endpoint, error = %e, "kv events: cannot subscribe");
        return;
    }
    {
        let mut stats = stats.lock();
        stats.connected = true;
        stats.connections = 1;
    }
    tracing::info!(endpoint = %config.endpoint, replay = ?config.replay_endpoint, "kv events: subscribed");
    let mut worker = Worker {
        ingest: KvEventIngest::new(config.block_size, config.max_blocks),
        config,
        sink,
        stats,
        out: Vec::new(),
        bad_input_log: RateLimitedLog { last: None },
    };
    // The initial connect already produced its `Connected` event.
    let mut skip_connected = true;
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Ok(message) => worker.on_live(message).await,
                Err(e) => {
                    tracing::warn!(error = %e, "kv events: receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(event) = monitor.next() => match event {
                SocketEvent::Connected(..) if skip_connected => skip_connected = false,
                SocketEvent::Connected(..) => {
                    tracing::info!(endpoint = %worker.config.endpoint, "kv events: reconnected");
                    let mut stats = worker.stats.lock();
                    stats.connected = true;
                    stats.connections += 1;
                }
                SocketEvent::Disconnected(_) => {
                    tracing::info!(endpoint = %worker.config.endpoint, "kv events: publisher disconnected; reconnecting");
                    skip_connected = false;
                    worker.stats.lock().connected = false;
                }
                _ => {}
            },
        }
    }
}

/// `[topic, seq, payload]` (or `[seq, payload]`) → (seq, payload).
fn split_frames(frames: &[Bytes]) -> Option<(i64, &Bytes)> {
    let (seq, payload) = match frames {
        [_topic, seq, payload] => (seq, payload),
        [seq, payload] => (seq, payload),
        _ => return None,
    };
    let seq: [u8; 8] = seq.as_ref().try_into().ok()?;
    Some((i64::from_be_bytes(seq), payload))
}

impl Worker {
    fn bad_input(&mut self, what: &str, detail: &dyn std::fmt::Display) {
        if self.bad_input_log.ready() {
            tracing::warn!(endpoint = %self.config.endpoint, "kv events: {what}: {detail} (counted; further ones logged at most every 10 s)");
        }
    }

    async fn on_live(&mut self, message: ZmqMessage) {
        let frames = message.into_vec();
        let Some((seq, payload)) = split_frames(&frames) else {
            self.stats.lock().malformed_frames += 1;
            let n = frames.len();
            self.bad_input(
                "message is not [topic, sequence, payload]",
                &format!("{n} frames"),
            );
            return;
        };
        let Ok(seq) = u64::try_from(seq) else {
            self.stats.lock().malformed_frames += 1;
            self.bad_input("negative sequence number on the live socket", &seq);
            return;
        };
        let batch = match decode_batch(payload) {
            Ok(batch) => batch,
            Err(e) => {
                self.stats.lock().malformed_batches += 1;
                self.bad_input("undecodable batch", &e);
                return;
            }
        };
        let rank = batch.dp_rank.unwrap_or(0);
        match self.ingest.check_sequence(rank, seq) {
            SequenceCheck::Next => {}
            SequenceCheck::Duplicate => {
                self.publish_stats();
                return;
            }
            SequenceCheck::First => {
                if seq > 0 && self.config.replay_endpoint.is_some() {
                    self.replay(rank, 0, seq).await;
                }
            }
            SequenceCheck::Gap { from } => {
                tracing::info!(rank, from, to = seq, "kv events: sequence gap");
                let filled = if self.config.replay_endpoint.is_some() {
                    self.replay(rank, from, seq).await
                } else {
                    false
                };
                if !filled {
                    self.ingest.count_lost(seq - from);
                }
            }
            SequenceCheck::Restart => {
                tracing::info!(
                    rank,
                    seq,
                    "kv events: sequence went backwards; engine restarted, its cache is cleared"
                );
                self.ingest.restart(rank, &mut self.out);
            }
        }
        if !self.ingest.is_applied(rank, seq) {
            self.ingest.apply_batch(seq, &batch, &mut self.out);
        }
        self.flush();
    }

    /// Replays batches `from..` of `rank` (the live batch `until` is applied by the caller).
    /// True if every missing batch before `until` arrived.
    async fn replay(&mut self, rank: u32, from: u64, until: u64) -> bool {
        let Some(endpoint) = self.config.replay_endpoint.clone() else {
            return false;
        };
        self.stats.lock().replays += 1;
        let timeout = self.config.replay_timeout;
        let result = tokio::time::timeout(timeout, self.replay_inner(&endpoint, rank, from, until))
            .await
            .unwrap_or_else(|_| Err(format!("no end marker within {timeout:?}")));
        match result {
            Ok(complete) => {
                if !complete {
                    tracing::info!(
                        rank,
                        from,
                        until,
                        "kv events: replay buffer no longer has every missing batch"
                    );
                }
                complete
            }
            Err(e) => {
                self.stats.lock().replay_failures += 1;
                tracing::warn!(%endpoint, rank, from, error = %e, "kv events: replay failed");
                false
            }
        }
    }

    async fn replay_inner(
        &mut self,
        endpoint: &str,
        rank: u32,
        from: u64,
        until: u64,
    ) -> Result<bool, String> {
        let mut dealer = DealerSocket::new();
        dealer
            .connect(endpoint)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = ZmqMessage::try_from(vec![
            Bytes::new(),
            Bytes::copy_from_slice(&from.to_be_bytes()),
        ])
        .map_err(|e| format!("request: {e}"))?;
        dealer
            .send(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut next_expected = from;
        let mut complete = true;
        loop {
            let reply = dealer.recv().await.map_err(|e| format!("receive: {e}"))?;
            let mut frames = reply.into_vec();
            // The ROUTER's empty delimiter frame.
            if frames.first().is_some_and(|f| f.is_empty()) {
                frames.remove(0);
            }
            let Some((seq, payload)) = split_frames(&frames) else {
                return Err(format!("reply of {} frames", frames.len()));
            };
            if seq.to_be_bytes() == REPLAY_END {
                break;
            }
            let Ok(seq) = u64::try_from(seq) else {
                return Err(format!("negative sequence {seq} in a reply"));
            };
            let batch = match decode_batch(payload) {
                Ok(b) => b,
                Err(e) => {
                    self.stats.lock().malformed_batches += 1;
                    self.bad_input("undecodable replayed batch", &e);
                    continue;
                }
            };
            if batch.dp_rank.unwrap_or(0) != rank {
                continue;
            }
            if seq > next_expected && seq <= until {
                complete = false;
            }
            next_expected = next_expected.max(seq + 1);
            if !self.ingest.is_applied(rank, seq) {
                self.ingest.apply_batch(seq, &batch, &mut self.out);
                self.stats.lock().replayed_batches += 1;
                self.ingest.mark_replayed(rank, seq);
            }
            // Publish as we go: a long replay should not hold everything in memory.
            self.flush();
        }
        Ok(complete && next_expected >= until)
    }

    fn flush(&mut self) {
        for event in self.out.drain(..) {
            self.sink.publish(EngineEvent::Kv(event));
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        self.stats.lock().ingest = self.ingest.stats();
    }
}
