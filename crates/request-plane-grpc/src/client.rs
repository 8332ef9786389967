//! The frontend side: a [`RequestPlane`] that calls workers' `Worker.Generate`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use parking_lot::Mutex;
use switchyard_engines::{EngineError, EngineStream};
use switchyard_protocol::{EngineOutput, PreprocessedRequest};
use switchyard_runtime::request_plane::RequestPlane;
use switchyard_runtime::{Endpoint, RuntimeError, WorkerId, WorkerInstance};
use tokio::sync::OnceCell;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::convert::{request_to_proto, response_from_proto};
use crate::pb;
use crate::pb::worker_client::WorkerClient;
use crate::server::DEFAULT_MAX_MESSAGE_BYTES;

/// What every error item for a lost worker starts with (see [`is_connection_lost`]).
pub const CONNECTION_LOST: &str = "worker connection lost";

/// Whether `error` says the connection to the worker broke mid-stream (rather than the
/// worker's engine failing): the request may be migrated to another worker.
pub fn is_connection_lost(error: &EngineError) -> bool {
    matches!(error, EngineError::Failed(m) if m.starts_with(CONNECTION_LOST))
}

#[derive(Clone, Debug)]
pub struct GrpcPlaneConfig {
    /// Bound on connecting to a worker (TCP and HTTP/2 handshake) and, separately, on a call
    /// getting its response headers: past it the worker is unreachable.
    pub connect_timeout: Duration,
    /// HTTP/2 pings on idle and busy connections; a worker that does not answer one within
    /// `keepalive_timeout` is taken for gone and its streams fail.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Largest request sent and response accepted.
    pub max_message_bytes: usize,
}

impl Default for GrpcPlaneConfig {
    fn default() -> Self {
        GrpcPlaneConfig {
            connect_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Sends requests to workers over gRPC: one HTTP/2 connection (tonic `Channel`) per worker
/// address, shared by all of its calls.
#[derive(Clone, Default)]
pub struct GrpcRequestPlane {
    config: GrpcPlaneConfig,
    /// Per address, a cell filled by the first successful connect. Concurrent first calls wait
    /// for one connect instead of racing; a failed connect leaves the cell empty to retry.
    channels: Arc<Mutex<HashMap<String, Arc<OnceCell<Channel>>>>>,
}

impl GrpcRequestPlane {
    pub fn new(config: GrpcPlaneConfig) -> Self {
        GrpcRequestPlane {
            config,
            channels: Arc::default(),
        }
    }

    /// Drops the cached channel to `address` (a worker that left). Calls in flight on it keep
    /// running; the connection closes when the last one ends.
    pub fn forget(&self, address: &str) {
        self.channels.lock().remove(&uri_for(address));
    }

    /// How many worker addresses have a cached (or connecting) channel.
    pub fn cached_channels(&self) -> usize {
        self.channels.lock().len()
    }

    async fn channel(&self, worker: WorkerId, address: &str) -> Result<Channel, RuntimeError> {
        let uri = uri_for(address);
        let cell = self.channels.lock().entry(uri.clone()).or_default().clone();
        let channel = cell.get_or_try_init(|| self.connect(worker, uri)).await?;
        Ok(channel.clone())
    }

    async fn connect(&self, worker: WorkerId, uri: String) -> Result<Channel, RuntimeError> {
        let unreachable = |e: String| RuntimeError::Unreachable(worker, e);
        let endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
            .map_err(|e| unreachable(format!("invalid gRPC address {uri:?}: {e}")))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.config.keepalive_interval)
            .keep_alive_timeout(self.config.keepalive_timeout)
            .keep_alive_while_idle(true)
            .http2_max_concurrent_reset_streams(REMEMBERED_RESETS);
        // The endpoint's own timeout covers TCP; this one also covers the HTTP/2 handshake with
        // a peer that accepts but never answers.
        match tokio::time::timeout(self.config.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(unreachable(format!(
                "cannot connect to {uri}: {}",
                error_chain(&e)
            ))),
            Err(_) => Err(unreachable(format!(
                "cannot connect to {uri}: no answer within {:?}",
                self.config.connect_timeout
            ))),
        }
    }
}

#[async_trait]
impl RequestPlane for GrpcRequestPlane {
    async fn generate(
        &self,
        worker: &WorkerInstance,
        request: PreprocessedRequest,
    ) -> Result<EngineStream, RuntimeError> {
        let address = match &worker.endpoint {
            Endpoint::Grpc { address } => address,
            Endpoint::InProcess => {
                return Err(RuntimeError::Unreachable(
                    worker.id,
                    "in-process worker given to the gRPC request plane".into(),
                ));
            }
        };
        let channel = self.channel(worker.id, address).await?;
        let mut client = WorkerClient::new(channel)
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes);
        let call = client.generate(request_to_proto(request));
        // The worker answers OK before generating anything, so any failure here means the
        // request never started and may safely go elsewhere.
        let responses = match tokio::time::timeout(self.config.connect_timeout, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return Err(RuntimeError::Unreachable(
                    worker.id,
                    format!(
                        "call to {address} failed: {:?}: {}",
                        status.code(),
                        status.message()
                    ),
                ));
            }
            Err(_) => {
                return Err(RuntimeError::Unreachable(
                    worker.id,
                    format!(
                        "call to {address} got no answer within {:?}",
                        self.config.connect_timeout
                    ),
                ));
            }
        };
        Ok(Box::pin(WorkerStream {
            responses: Some(responses),
        }))
    }
}

/// A worker's responses as engine items. Ends after the final item; every other way the call
/// can end becomes one [`CONNECTION_LOST`] error item, so a truncated stream never looks
/// complete.
struct WorkerStream {
    /// `None` once the stream has yielded its last item.
    responses: Option<Streaming<pb::GenerateResponse>>,
}

/// How long a finished call may take to deliver its trailers before it is reset anyway.
const TRAILERS_GRACE: Duration = Duration::from_secs(5);

/// Locally reset streams h2 remembers (default 50, for 1 s): frames the worker had already
/// sent for a stream we reset (a cancelled request) are ignored only while it is remembered;
/// past that each counts as a protocol error, and h2 closes the connection with
/// ENHANCE_YOUR_CALM after 1024 of them, failing every call on it.
const REMEMBERED_RESETS: usize = 16 * 1024;

impl WorkerStream {
    /// Ends the call after its final message without resetting it: reads the trailers now when
    /// they came with that message (the usual case), or lets a task wait for them. Dropping
    /// the call instead would reset a stream the worker is closing anyway, and enough of those
    /// in a second make late frames count against the connection (see [`REMEMBERED_RESETS`]).
    fn finish(&mut self, cx: &mut Context<'_>) {
        let Some(mut rest) = self.responses.take() else {
            return;
        };
        if Pin::new(&mut rest).poll_next(cx).is_pending()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let drain = async { while futures::StreamExt::next(&mut rest).await.is_some() {} };
                let _ = tokio::time::timeout(TRAILERS_GRACE, drain).await;
            });
        }
    }
}

impl Stream for WorkerStream {
    type Item = Result<EngineOutput, EngineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(responses) = self.responses.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(responses).poll_next(cx);
        let item = match futures::ready!(polled) {
            Some(Ok(response)) => match response_from_proto(response) {
                Ok(Ok(output)) => {
                    if output.finish_reason.is_some() {
                        self.finish(cx);
                    }
                    return Poll::Ready(Some(Ok(output)));
                }
                Ok(Err(engine_error)) => {
                    self.finish(cx);
                    return Poll::Ready(Some(Err(engine_error)));
                }
                Err(e) => Err(EngineError::Failed(format!(
                    "worker sent an invalid response: {e}"
                ))),
            },
            Some(Err(status)) => Err(EngineError::Failed(format!(
                "{CONNECTION_LOST}: {:?}: {}",
                status.code(),
                status_detail(&status)
            ))),
            None => Err(EngineError::Failed(format!(
                "{CONNECTION_LOST}: the stream ended before its final item"
            ))),
        };
        self.responses = None;
        Poll::Ready(Some(item))
    }
}

/// Addresses may come with or without a scheme ("127.0.0.1:5123", "http://host:5123").
fn uri_for(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// tonic's top-level transport errors say little ("transport error"); the causes say why.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn status_detail(status: &tonic::Status) -> String {
    use std::error::Error;
    match status.source() {
        Some(source) => format!("{}: {}", status.message(), error_chain(source)),
        None => status.message().to_string(),
    }
}
