//! The worker side: serves `Worker.Generate` from an [`Engine`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use switchyard_engines::{Engine, EngineError};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::convert::{request_from_proto, response_to_proto};
use crate::pb;
use crate::pb::worker_server::{Worker, WorkerServer as PbWorkerServer};

/// Default bound on one message: a prompt of several hundred thousand tokens fits.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Default bound on concurrent calls per connection (hyper's own default, 200, is below what
/// one frontend may have in flight on one worker).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 4096;

const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;

/// Serves one engine over gRPC.
#[derive(Clone)]
pub struct WorkerServer {
    engine: Arc<dyn Engine>,
    max_message_bytes: usize,
    max_concurrent_streams: u32,
}

impl WorkerServer {
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        WorkerServer {
            engine,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        }
    }

    /// Largest request the server accepts and largest response it sends.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Largest number of concurrent calls on one connection.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// Serves on `listener` until `shutdown` resolves. Returns the bound address and the server
    /// future, which the caller runs (usually spawns).
    ///
    /// On `shutdown` the server stops accepting connections and calls, lets the calls in flight
    /// finish, then resolves. Dropping the future instead stops accepting at once; connections
    /// already open still finish their calls.
    pub fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(
        SocketAddr,
        impl Future<Output = std::io::Result<()>> + Send + 'static,
    )> {
        let addr = listener.local_addr()?;
        // One small message per token: Nagle's algorithm would hold each back for an ACK.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let max_concurrent_streams = self.max_concurrent_streams;
        let service = PbWorkerServer::new(GenerateService {
            engine: self.engine,
        })
        .max_decoding_message_size(self.max_message_bytes)
        .max_encoding_message_size(self.max_message_bytes);
        let server = Server::builder()
            .max_concurrent_streams(max_concurrent_streams)
            // A frontend host that vanished without closing its connections would otherwise
            // keep its requests generating (and holding KV blocks) until TCP gives up.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown);
        tracing::info!("worker request plane (gRPC) listening on {addr}");
        Ok((addr, async move {
            server
                .await
                .map_err(|e| std::io::Error::other(format!("worker gRPC server failed: {e}")))
        }))
    }
}

struct GenerateService {
    engine: Arc<dyn Engine>,
}

#[tonic::async_trait]
impl Worker for GenerateService {
    type GenerateStream = ResponseStream;

    /// Always answers OK and puts the engine's verdict in the stream, so that a non-OK status
    /// on the client side can only mean the call or the connection broke.
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let request = match request_from_proto(request.into_inner()) {
            Ok(request) => request,
            Err(e) => {
                let refusal = response_to_proto(Err(EngineError::InvalidRequest(format!(
                    "malformed GenerateRequest: {e}"
                ))));
                return Ok(Response::new(Box::pin(stream::once(async { Ok(refusal) }))));
            }
        };
        // The engine stream lives inside the response body: when the client cancels the call
        // or the connection closes, hyper drops the body and with it the engine stream, which
        // is how engines learn of cancellation. No task, no channel in between.
        let outputs = self
            .engine
            .generate(request)
            .map(|item| Ok(response_to_proto(item)));
        Ok(Response::new(Box::pin(outputs)))
    }
}
