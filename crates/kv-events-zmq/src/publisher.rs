//! Publishes an engine's KV events in the engines' ZMQ wire format (what vLLM's
//! `ZmqEventPublisher` sends), so the mocker can stand in for a real engine end to end.
//!
//! [`ZmqKvPublisher`] is an [`EngineEventSink`]: `publish` never blocks (events go into a
//! bounded queue; when it is full they are dropped and counted, and the subscriber sees a gap it
//! can replay). One task batches what is queued, numbers batches from 0, sends
//! `[topic, seq, payload]` on a PUB socket and keeps the last `buffer_steps` batches for the
//! ROUTER replay socket. Load reports are not part of that format: they go to `load_sink`.
//!
//! Stored blocks carry token ids (the sink asks for them with
//! [`EngineEventSink::wants_block_tokens`]); the engine hashes sent are the engine's own
//! sequence hashes, which subscribers use only to link events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use switchyard_engines::{EngineEvent, EngineEventSink};
use switchyard_protocol::TokenId;
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::REPLAY_END;
use crate::encode::{Layout, encode_batch_into};
use crate::wire::{EngineKvEvent, RemovedEvent, StoredEvent};

#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Where the PUB socket binds, `tcp://host:port` (port 0: any free port).
    pub endpoint: String,
    /// Where the ROUTER replay socket binds, if wanted.
    pub replay_endpoint: Option<String>,
    pub topic: String,
    pub layout: Layout,
    /// Block size of the engine (tokens per stored block).
    pub block_size: u32,
    /// Batches kept for replay.
    pub buffer_steps: usize,
    /// Events queued between the engine and the socket task before dropping.
    pub queue_capacity: usize,
    pub dp_rank: Option<u32>,
}

impl PublisherConfig {
    pub fn new(endpoint: impl Into<String>, block_size: u32) -> Self {
        PublisherConfig {
            endpoint: endpoint.into(),
            replay_endpoint: None,
            topic: String::new(),
            layout: Layout::Positional,
            block_size,
            buffer_steps: 10_000,
            queue_capacity: 65_536,
            dp_rank: Some(0),
        }
    }
}

/// The PUB socket's sink. Dropping it (and its clones) ends the socket task.
pub struct ZmqKvPublisher {
    tx: mpsc::Sender<EngineKvEvent>,
    load_sink: Option<Arc<dyn EngineEventSink>>,
    block_size: u32,
    dropped: Arc<AtomicU64>,
    stop: CancellationToken,
    endpoint: String,
    replay_endpoint: Option<String>,
}

impl ZmqKvPublisher {
    /// Binds the sockets and starts the task. `load_sink` receives the engine's load reports.
    pub async fn bind(
        config: PublisherConfig,
        load_sink: Option<Arc<dyn EngineEventSink>>,
    ) -> Result<Self, String> {
        let mut socket = PubSocket::new();
        let endpoint = socket
            .bind(&config.endpoint)
            .await
            .map_err(|e| {
                format!(
                    "cannot bind the KV event PUB socket on {}: {e}",
                    config.endpoint
                )
            })?
            .to_string();
        let (router, replay_endpoint) = match &config.replay_endpoint {
            None => (None, None),
            Some(at) => {
                let mut router = RouterSocket::new();
                let bound = router
                    .bind(at)
                    .await
                    .map_err(|e| format!("cannot bind the KV event replay socket on {at}: {e}"))?;
                (Some(router), Some(bound.to_string()))
            }
        };
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stop = CancellationToken::new();
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(config.clone(), socket, router, rx, stop.clone()));
        tracing::info!(%endpoint, replay = ?replay_endpoint, "kv events: publishing");
        Ok(ZmqKvPublisher {
            tx,
            load_sink,
            block_size: config.block_size,
            dropped,
            stop,
            endpoint,
            replay_endpoint,
        })
    }

    /// The PUB socket's bound address (with the real port).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn replay_endpoint(&self) -> Option<&str> {
        self.replay_endpoint.as_deref()
    }

    /// Events dropped because the queue was full (or the engine sent a Stored without tokens).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn enqueue(&self, event: EngineKvEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ZmqKvPublisher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl EngineEventSink for ZmqKvPublisher {
    fn publish(&self, event: EngineEvent) {
        match event {
            EngineEvent::Load(_) => {
                if let Some(sink) = &self.load_sink {
                    sink.publish(event);
                }
            }
            EngineEvent::Kv(KvCacheEvent { data, .. }) => match data {
                // The wire format needs the blocks' tokens: see `publish_kv_with_tokens`.
                KvCacheEventData::Stored { .. } => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                KvCacheEventData::Removed { sequence_hashes } => {
                    self.enqueue(EngineKvEvent::Removed(RemovedEvent {
                        block_hashes: sequence_hashes,
                        medium: Some("GPU".into()),
                        group_idx: None,
                    }));
                }
                KvCacheEventData::Cleared => self.enqueue(EngineKvEvent::Cleared),
            },
        }
    }

    fn wants_block_tokens(&self) -> bool {
        true
    }

    fn publish_kv_with_tokens(&self, event: KvCacheEvent, token_ids: &[TokenId]) {
        let KvCacheEventData::Stored { parent, blocks } = event.data else {
            self.publish(EngineEvent::Kv(event));
            return;
        };
        if token_ids.len() != blocks.len() * self.block_size as usize {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.enqueue(EngineKvEvent::Stored(StoredEvent {
            block_hashes: blocks.iter().map(|b| b.sequence_hash).collect(),
            parent_block_hash: parent,
            token_ids: token_ids.to_vec(),
            block_size: self.block_size,
            lora_id: None,
            medium: Some("GPU".into()),
            ..StoredEvent::default()
        }));
    }
}

/// Most events folded into one batch (vLLM sends one batch per scheduler step).
const MAX_BATCH_EVENTS: usize = 256;

async fn run(
    config: PublisherConfig,
    mut socket: PubSocket,
    mut router: Option<RouterSocket>,
    mut rx: mpsc::Receiver<EngineKvEvent>,
    stop: CancellationToken,
) {
    let topic = Bytes::from(config.topic.clone().into_bytes());
    let mut buffer: VecDeque<(u64, Bytes)> = VecDeque::new();
    let mut seq: u64 = 0;
    let mut events = Vec::with_capacity(MAX_BATCH_EVENTS);
    let mut payload = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            received = rx.recv_many(&mut events, MAX_BATCH_EVENTS) => {
                if received == 0 {
                    return;
                }
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                encode_batch_into(&mut payload, config.layout, ts, config.dp_rank, &events);
                events.clear();
                let body = Bytes::copy_from_slice(&payload);
                let message = ZmqMessage::try_from(vec![
                    topic.clone(),
                    Bytes::copy_from_slice(&seq.to_be_bytes()),
                    body.clone(),
                ]);
                if let Ok(message) = message
                    && let Err(e) = socket.send(message).await
                {
                    tracing::debug!(error = %e, "kv events: PUB send failed");
                }
                buffer.push_back((seq, body));
                if buffer.len() > config.buffer_steps {
                    buffer.pop_front();
                }
                seq += 1;
            }
            request = recv_replay(&mut router) => {
                if let (Some(router), Ok(request)) = (router.as_mut(), request) {
                    serve_replay(router, request, &buffer).await;
                }
            }
        }
    }
}

async fn recv_replay(router: &mut Option<RouterSocket>) -> zeromq::ZmqResult<ZmqMessage> {
    match router {
        Some(router) => router.recv().await,
        None => std::future::pending().await,
    }
}

/// `[identity, "", start]` → `[identity, "", seq, batch]`... then the end marker.
async fn serve_replay(
    router: &mut RouterSocket,
    request: ZmqMessage,
    buffer: &VecDeque<(u64, Bytes)>,
) {
    let frames = request.into_vec();
    let [identity, _, start] = frames.as_slice() else {
        tracing::debug!(frames = frames.len(), "kv events: bad replay request");
        return;
    };
    let Ok(start) = <[u8; 8]>::try_from(start.as_ref()).map(u64::from_be_bytes) else {
        tracing::debug!("kv events: replay request without an 8-byte sequence");
        return;
    };
    let reply = |seq: Bytes, body: Bytes| {
        ZmqMessage::try_from(vec![identity.clone(), Bytes::new(), seq, body])
    };
    for (seq, body) in buffer.iter().filter(|(seq, _)| *seq >= start) {
        if let Ok(message) = reply(Bytes::copy_from_slice(&seq.to_be_bytes()), body.clone())
            && router.send(message).await.is_err()
        {
            return;
        }
    }
    if let Ok(message) = reply(Bytes::copy_from_slice(&REPLAY_END), Bytes::new()) {
        let _ = tokio::time::timeout(Duration::from_secs(5), router.send(message)).await;
    }
}
