//! Switchyard's event plane over core NATS (no JetStream): workers publish
//! [`WorkerEvent`]s, every frontend replica receives them all, so all replicas route from the
//! same KV cache state.
//!
//! # Subjects
//!
//! | subject | who publishes | payload |
//! |---|---|---|
//! | `switchyard.{ns}.events.{worker:016x}` | the worker's [`NatsEventPlane::publish`] | one event, `{"v":1,"event":<WorkerEvent>}` |
//! | `switchyard.{ns}.kv_dump.{worker:016x}` | a frontend's [`NatsEventPlane::request_kv_dump`] (request, empty payload); the worker answers on the reply inbox | chunks `{"v":1,"chunk":N,"last":bool,"events":[<KvCacheEvent>...]}` |
//! | `switchyard.{ns}.router_sync` | a frontend's [`NatsEventPlane::publish_sync`] | opaque bytes; header `Switchyard-Sender: <sender id>` |
//!
//! Frontends subscribe to `switchyard.{ns}.events.>` and `switchyard.{ns}.router_sync`.
//!
//! # Encoding
//!
//! JSON through the `serde` shapes of `switchyard-runtime` and `switchyard-protocol` (the only
//! crates that define wire types), wrapped in an envelope whose `v` is the format version;
//! a receiver drops (and counts) payloads of any other version. Hashes and worker ids are JSON
//! integers up to 2^64-1. The event's `worker` must match the subject's. A KV stored event of
//! 32 blocks is 2478 bytes; decoding it (~40 µs on a loaded 2-core machine) is what limits one
//! frontend to ~15k such events/s (`examples/nats_figures.rs`). A binary `v: 2` can follow
//! when that matters; receivers skip versions they do not know.
//!
//! A KV dump may exceed the server's `max_payload` (1 MiB by default), so the worker splits it
//! into chunks of at most half of it; chunks of one reply arrive in order, and the requester
//! checks they are numbered 0, 1, ... up to the one marked `last`.
//!
//! # Delivery
//!
//! Best effort, like the trait says. [`EventPlane::publish`] never blocks: it encodes the event
//! and queues it for a task that hands it to the client, and counts a drop when the queue is
//! full. One task publishes everything of one plane, so a worker's events keep their order
//! (NATS keeps a connection's order). While the connection is down the client reconnects
//! forever; events published meanwhile are buffered up to the queue, later ones dropped.
//! Frontends that missed events learn it from [`NatsEventPlane::reconnects`] (or gaps in
//! `event_id`) and recover with [`NatsEventPlane::request_kv_dump`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr, StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use switchyard_protocol::kv::KvCacheEvent;
use switchyard_runtime::event_plane::{EventPlane, WorkerEvent};
use switchyard_runtime::{RuntimeError, WorkerId};

pub mod wire;

/// A worker's KV cache state as a list of events (engines give `Stored` events).
pub type KvDumpFn = Arc<dyn Fn() -> Vec<KvCacheEvent> + Send + Sync>;

#[derive(Clone, Debug)]
pub struct NatsPlaneOptions {
    /// Subscribe to events and router sync (frontends). A worker that only publishes sets this
    /// to `false` and so does not receive every other worker's events; its
    /// [`EventPlane::subscribe`] and [`NatsEventPlane::subscribe_sync`] then never deliver.
    pub subscribe: bool,
    /// Bound on connecting (TCP, handshake) at start-up.
    pub connect_timeout: Duration,
    /// Bound on a whole KV dump request and on [`NatsEventPlane::flush`].
    pub request_timeout: Duration,
    /// Messages waiting to be handed to the client; more are dropped.
    pub publish_queue: usize,
    /// Capacity of the broadcast channels behind `subscribe` and `subscribe_sync`.
    pub broadcast_capacity: usize,
}

impl Default for NatsPlaneOptions {
    fn default() -> Self {
        NatsPlaneOptions {
            subscribe: true,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            publish_queue: 8192,
            broadcast_capacity: 4096,
        }
    }
}

/// Counters since connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatsPlaneStats {
    /// Messages (events and sync) handed to the client.
    pub published: u64,
    /// Messages dropped: queue full, encoding or client failure.
    pub dropped: u64,
    pub events_received: u64,
    pub sync_received: u64,
    /// Received payloads that could not be decoded, and were skipped.
    pub malformed: u64,
    /// At least this many messages were dropped by the client because a subscription of this
    /// plane fell behind (it decodes more slowly than they arrive): receivers then see gaps
    /// in `event_id`.
    pub lost: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    events_received: AtomicU64,
    sync_received: AtomicU64,
    malformed: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    /// Counts a drop and logs it; rarely, because a full queue drops in bursts.
    fn drop_one(&self, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::warn!(dropped = n, "nats event plane: message dropped: {why}");
        }
    }

    fn malformed_one(&self, subject: &str, why: &str) {
        let n = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::warn!(
                malformed = n,
                "nats event plane: skipped a payload on {subject}: {why}"
            );
        }
    }
}

/// The first few, then ever more rarely: a flood must not turn into a log flood.
fn worth_logging(count: u64) -> bool {
    count <= 10 || count.is_power_of_two()
}

enum Outbound {
    Publish {
        subject: String,
        headers: Option<HeaderMap>,
        payload: Bytes,
    },
    /// Starts a round trip behind everything queued before it.
    Flush(oneshot::Sender<Result<Subscriber, String>>),
}

/// An [`EventPlane`] on a NATS connection. Cheap to clone; the connection's tasks stop when
/// the last clone is dropped (after handing queued messages to the client).
#[derive(Clone)]
pub struct NatsEventPlane {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    namespace: String,
    sender_id: String,
    request_timeout: Duration,
    outbound: mpsc::Sender<Outbound>,
    events: broadcast::Sender<WorkerEvent>,
    sync: broadcast::Sender<(String, Bytes)>,
    reconnects: watch::Receiver<u64>,
    counters: Arc<Counters>,
    forwarders: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.forwarders {
            task.abort();
        }
    }
}

fn plane_error(why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::EventPlane(why.to_string())
}

impl NatsEventPlane {
    /// Connects to `nats://host:port` with [`NatsPlaneOptions::default`].
    pub async fn connect(url: &str, namespace: &str) -> Result<NatsEventPlane, RuntimeError> {
        Self::connect_with(url, namespace, NatsPlaneOptions::default()).await
    }

    pub async fn connect_with(
        url: &str,
        namespace: &str,
        options: NatsPlaneOptions,
    ) -> Result<NatsEventPlane, RuntimeError> {
        wire::check_namespace(namespace).map_err(plane_error)?;
        let address: ServerAddr = url
            .parse()
            .map_err(|e| plane_error(format!("bad NATS address {url:?}: {e}")))?;

        let (reconnect_tx, reconnects) = watch::channel(0u64);
        let reconnect_tx = Arc::new(reconnect_tx);
        let connected_before = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let event_counters = counters.clone();
        let connecting = ConnectOptions::new()
            .name(format!("switchyard-{namespace}"))
            .connection_timeout(options.connect_timeout)
            // Start retrying at once, then back off to at most 2 s: recovery after a server
            // restart should take about as long as the restart.
            .reconnect_delay_callback(|attempts| {
                let exp = attempts.saturating_sub(1).min(16) as u32;
                Duration::from_millis(if attempts <= 1 { 0 } else { 25 << exp })
                    .min(Duration::from_secs(2))
            })
            .event_callback(move |event| {
                let reconnect_tx = reconnect_tx.clone();
                let connected_before = connected_before.clone();
                let counters = event_counters.clone();
                async move { on_client_event(event, &reconnect_tx, &connected_before, &counters) }
            })
            .connect(address);
        // The client bounds each attempt; this also bounds name resolution and the handshake.
        let bound = options.connect_timeout + Duration::from_millis(500);
        let client = match tokio::time::timeout(bound, connecting).await {
            Err(_) => {
                return Err(plane_error(format!(
                    "NATS server {url} did not answer within {bound:?}"
                )));
            }
            Ok(Err(e)) => return Err(plane_error(format!("cannot connect to NATS at {url}: {e}"))),
            Ok(Ok(client)) => client,
        };

        let (events, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let (sync, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let sender_id = format!("{:016x}", rand::random::<u64>());
        let mut forwarders = Vec::new();
        if options.subscribe {
            let subscribe_error = |e| plane_error(format!("cannot subscribe on {url}: {e}"));
            let event_sub = client
                .subscribe(wire::events_wildcard(namespace))
                .await
                .map_err(subscribe_error)?;
            let sync_sub = client
                .subscribe(wire::router_sync_subject(namespace))
                .await
                .map_err(subscribe_error)?;
            // Once the server has echoed this, it has the subscriptions: nothing published
            // after `connect` returns is missed.
            round_trip(&client, options.request_timeout).await?;
            forwarders.push(tokio::spawn(forward_events(
                event_sub,
                events.clone(),
                counters.clone(),
            )));
            forwarders.push(tokio::spawn(forward_sync(
                sync_sub,
                sync.clone(),
                sender_id.clone(),
                counters.clone(),
            )));
        }
        let (outbound, queue) = mpsc::channel(options.publish_queue.max(1));
        tokio::spawn(drain_outbound(client.clone(), queue, counters.clone()));

        Ok(NatsEventPlane {
            inner: Arc::new(Inner {
                client,
                namespace: namespace.to_owned(),
                sender_id,
                request_timeout: options.request_timeout,
                outbound,
                events,
                sync,
                reconnects,
                counters,
                forwarders,
            }),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// This plane's random id on the router sync channel.
    pub fn sender_id(&self) -> &str {
        &self.inner.sender_id
    }

    pub fn stats(&self) -> NatsPlaneStats {
        let c = &self.inner.counters;
        NatsPlaneStats {
            published: c.published.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            events_received: c.events_received.load(Ordering::Relaxed),
            sync_received: c.sync_received.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
        }
    }

    /// How many times the client reconnected after losing the server. It changes on each
    /// reconnection: events may have been missed, so frontends re-request KV dumps.
    pub fn reconnects(&self) -> watch::Receiver<u64> {
        self.inner.reconnects.clone()
    }

    /// Waits until the server has processed (and routed to subscribers) everything this
    /// plane published before the call.
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        let timeout = self.inner.request_timeout;
        let (started, echo) = oneshot::channel();
        let flushing = async {
            let stopped = |_| "the publishing task stopped".to_owned();
            self.inner
                .outbound
                .send(Outbound::Flush(started))
                .await
                .map_err(|_| "the publishing task stopped".to_owned())?;
            let mut echo = echo.await.map_err(stopped)??;
            match echo.next().await {
                Some(_) => Ok(()),
                None => Err("the connection closed".to_owned()),
            }
        };
        match tokio::time::timeout(timeout, flushing).await {
            Err(_) => Err(plane_error(format!("flush took longer than {timeout:?}"))),
            Ok(Err(why)) => Err(plane_error(format!("flush failed: {why}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends `payload` to every other plane of the namespace (router replica sync). Never
    /// blocks; counts a drop when the queue is full.
    pub fn publish_sync(&self, payload: Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(wire::SENDER_HEADER, self.inner.sender_id.as_str());
        self.enqueue(Outbound::Publish {
            subject: wire::router_sync_subject(&self.inner.namespace),
            headers: Some(headers),
            payload,
        });
    }

    /// Router sync messages of the other planes, as `(sender id, payload)`; never this
    /// plane's own.
    pub fn subscribe_sync(&self) -> broadcast::Receiver<(String, Bytes)> {
        self.inner.sync.subscribe()
    }

    /// Answers KV dump requests for `worker` with `dump()` until the returned guard is dropped.
    /// `dump` runs on a blocking thread (it may walk a large cache).
    pub async fn serve_kv_dump(
        &self,
        worker: WorkerId,
        dump: KvDumpFn,
    ) -> Result<KvDumpServer, RuntimeError> {
        let subject = wire::kv_dump_subject(&self.inner.namespace, worker);
        let requests = self
            .inner
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| plane_error(format!("cannot subscribe to {subject}: {e}")))?;
        round_trip(&self.inner.client, self.inner.request_timeout).await?;
        let task = tokio::spawn(answer_dump_requests(
            self.inner.client.clone(),
            requests,
            dump,
        ));
        Ok(KvDumpServer {
            task,
            client: self.inner.client.clone(),
            timeout: self.inner.request_timeout,
        })
    }

    /// Asks `worker` for its KV cache state, bounded by the request timeout. Fails with
    /// [`RuntimeError::Unreachable`] when no worker answers, the answer is incomplete or late.
    pub async fn request_kv_dump(
        &self,
        worker: WorkerId,
    ) -> Result<Vec<KvCacheEvent>, RuntimeError> {
        let timeout = self.inner.request_timeout;
        let subject = wire::kv_dump_subject(&self.inner.namespace, worker);
        match tokio::time::timeout(timeout, fetch_dump(&self.inner.client, subject)).await {
            Err(_) => Err(RuntimeError::Unreachable(
                worker,
                format!("no complete KV dump within {timeout:?}"),
            )),
            Ok(Err(why)) => Err(RuntimeError::Unreachable(worker, format!("KV dump: {why}"))),
            Ok(Ok(events)) => Ok(events),
        }
    }

    fn enqueue(&self, message: Outbound) {
        match self.inner.outbound.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.counters.drop_one("the publish queue is full")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.inner.counters.drop_one("the publishing task stopped")
            }
        }
    }
}

impl EventPlane for NatsEventPlane {
    fn publish(&self, event: WorkerEvent) {
        match wire::encode_event(&event) {
            Ok(payload) => self.enqueue(Outbound::Publish {
                subject: wire::event_subject(&self.inner.namespace, event.worker),
                headers: None,
                payload: payload.into(),
            }),
            Err(e) => self.inner.counters.drop_one(&format!("cannot encode: {e}")),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.inner.events.subscribe()
    }
}

/// Answers KV dump requests while it lives.
pub struct KvDumpServer {
    task: JoinHandle<()>,
    client: Client,
    timeout: Duration,
}

impl KvDumpServer {
    /// Stops answering and waits until the server knows: requests sent after this returns
    /// find no responder.
    pub async fn stop(mut self) -> Result<(), RuntimeError> {
        self.task.abort();
        // The task's end drops its subscription, which queues the unsubscribe.
        let _ = (&mut self.task).await;
        round_trip(&self.client, self.timeout).await
    }
}

impl Drop for KvDumpServer {
    fn drop(&mut self) {
        // Dropping the subscription inside the task unsubscribes.
        self.task.abort();
    }
}

fn on_client_event(
    event: Event,
    reconnect_tx: &watch::Sender<u64>,
    connected_before: &AtomicBool,
    counters: &Counters,
) {
    match event {
        Event::Connected => {
            // The client reports its first connection too; only later ones are reconnections.
            if connected_before.swap(true, Ordering::SeqCst) {
                reconnect_tx.send_modify(|n| *n += 1);
                tracing::info!("nats event plane: reconnected");
            }
        }
        Event::Disconnected => tracing::warn!("nats event plane: disconnected, reconnecting"),
        Event::SlowConsumer(sid) => {
            // The client reports each dropped message (unless its event queue is full).
            let n = counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
            if worth_logging(n) {
                tracing::warn!(
                    sid,
                    lost = n,
                    "nats event plane: subscription fell behind, the client dropped messages"
                );
            }
        }
        other => tracing::info!("nats event plane: {other}"),
    }
}

/// Subscribes to a fresh inbox and publishes to it: the message comes back once the server
/// has processed everything this client sent before. (The client's own `flush` only writes
/// the socket.)
async fn start_round_trip(client: &Client) -> Result<Subscriber, String> {
    let inbox = client.new_inbox();
    let echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(echo)
}

async fn round_trip(client: &Client, timeout: Duration) -> Result<(), RuntimeError> {
    let trip = async {
        let mut echo = start_round_trip(client).await?;
        echo.next()
            .await
            .map(|_| ())
            .ok_or_else(|| "the connection closed".to_owned())
    };
    match tokio::time::timeout(timeout, trip).await {
        Err(_) => Err(plane_error(format!(
            "the NATS server did not answer within {timeout:?}"
        ))),
        Ok(Err(why)) => Err(plane_error(format!("NATS round trip failed: {why}"))),
        Ok(Ok(())) => Ok(()),
    }
}

async fn drain_outbound(
    client: Client,
    mut queue: mpsc::Receiver<Outbound>,
    counters: Arc<Counters>,
) {
    while let Some(message) = queue.recv().await {
        match message {
            Outbound::Publish {
                subject,
                headers,
                payload,
            } => {
                let sent = match headers {
                    Some(headers) => client.publish_with_headers(subject, headers, payload).await,
                    None => client.publish(subject, payload).await,
                };
                match sent {
                    Ok(()) => {
                        counters.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => counters.drop_one(&format!("client refused it: {e}")),
                }
            }
            Outbound::Flush(started) => {
                // Only queue the round trip here: waiting for the server would stall publishing.
                let _ = started.send(start_round_trip(&client).await);
            }
        }
    }
}

async fn forward_events(
    mut subscription: Subscriber,
    events: broadcast::Sender<WorkerEvent>,
    counters: Arc<Counters>,
) {
    while let Some(message) = subscription.next().await {
        match wire::decode_event(message.subject.as_str(), &message.payload) {
            Ok(event) => {
                counters.events_received.fetch_add(1, Ordering::Relaxed);
                // No receiver is fine: nobody routes yet.
                let _ = events.send(event);
            }
            Err(why) => counters.malformed_one(message.subject.as_str(), &why),
        }
    }
}

async fn forward_sync(
    mut subscription: Subscriber,
    sync: broadcast::Sender<(String, Bytes)>,
    own_id: String,
    counters: Arc<Counters>,
) {
    while let Some(message) = subscription.next().await {
        let sender = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(wire::SENDER_HEADER))
            .map(|value| value.as_str().to_owned());
        match sender {
            Some(sender) if sender == own_id => {}
            Some(sender) => {
                counters.sync_received.fetch_add(1, Ordering::Relaxed);
                let _ = sync.send((sender, message.payload));
            }
            None => counters.malformed_one(
                message.subject.as_str(),
                &format!("no {} header", wire::SENDER_HEADER),
            ),
        }
    }
}

async fn answer_dump_requests(client: Client, mut requests: Subscriber, dump: KvDumpFn) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        // Half the server's limit leaves room for the envelope and for events that push a
        // chunk past its budget.
        let budget = (client.server_info().max_payload / 2).max(1024);
        let dump = dump.clone();
        let chunks =
            match tokio::task::spawn_blocking(move || wire::encode_dump_chunks(&dump(), budget))
                .await
            {
                Ok(Ok(chunks)) => chunks,
                Ok(Err(e)) => {
                    tracing::error!("nats event plane: cannot encode a KV dump: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::error!("nats event plane: the KV dump function failed: {e}");
                    continue;
                }
            };
        for chunk in chunks {
            if let Err(e) = client.publish(reply.clone(), chunk.into()).await {
                tracing::warn!("nats event plane: cannot answer a KV dump request: {e}");
                break;
            }
        }
    }
}

async fn fetch_dump(client: &Client, subject: String) -> Result<Vec<KvCacheEvent>, String> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
    client
        .publish_with_reply(subject, inbox, Bytes::new())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut events = Vec::new();
    let mut expected = 0u32;
    while let Some(message) = replies.next().await {
        if message.status == Some(StatusCode::NO_RESPONDERS) {
            return Err("no worker serves KV dumps for this id".into());
        }
        // A chunk may be most of a megabyte of JSON: decode it off the reactor.
        let payload = message.payload;
        let chunk = tokio::task::spawn_blocking(move || wire::decode_dump_chunk(&payload))
            .await
            .map_err(|e| format!("decoding failed: {e}"))?
            .map_err(|e| format!("malformed chunk: {e}"))?;
        if chunk.chunk != expected {
            return Err(format!(
                "chunk {} arrived where {expected} was due (two workers answer for one id?)",
                chunk.chunk
            ));
        }
        events.extend(chunk.events);
        if chunk.last {
            return Ok(events);
        }
        expected += 1;
    }
    Err("the connection closed before the last chunk".into())
}
