//! Listener, TLS, HTTP/2 settings and graceful drain of the gRPC server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::pb::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::service::KserveService;

/// Certificate and key, both PEM.
#[derive(Clone, Debug)]
pub struct GrpcTls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct GrpcConfig {
    pub host: String,
    pub port: u16,
    pub tls: Option<GrpcTls>,
    /// Largest request or response message.
    pub max_message_bytes: usize,
    /// HTTP/2 flow-control windows (`None`: the library's defaults).
    pub initial_connection_window_size: Option<u32>,
    pub initial_stream_window_size: Option<u32>,
    /// How long a drain waits for in-flight requests before closing anyway.
    pub drain_timeout: Duration,
}

/// Time connections get to close after the drain before the server stops regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Binds the listener (so callers learn the port before serving), then serves until
/// `shutdown` resolves, drains, and returns. The drain refuses new requests (UNAVAILABLE),
/// waits for admitted ones (up to `drain_timeout`), then ends open streams.
pub async fn serve(
    config: GrpcConfig,
    service: KserveService,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), std::io::Error> {
    let listener = switchyard_frontend::bind_listener(&config.host, config.port, "gRPC")?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(tokio::net::TcpListener::from_std(listener)?)
        // Streams send one small message per chunk: no Nagle delays.
        .with_nodelay(Some(true));

    let mut builder = Server::builder()
        .initial_connection_window_size(config.initial_connection_window_size)
        .initial_stream_window_size(config.initial_stream_window_size);
    if let Some(tls) = &config.tls {
        let cert = tokio::fs::read(&tls.cert_path).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot read TLS certificate {}: {e}",
                    tls.cert_path.display()
                ),
            )
        })?;
        let key = tokio::fs::read(&tls.key_path).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read TLS key {}: {e}", tls.key_path.display()),
            )
        })?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(|e| std::io::Error::other(format!("invalid TLS configuration: {e}")))?;
    }
    let grpc = GrpcInferenceServiceServer::new(service.clone())
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let drained = tokio_util::sync::CancellationToken::new();
    let drain = {
        let drained = drained.clone();
        let service = service.clone();
        let drain_timeout = config.drain_timeout;
        async move {
            shutdown.await;
            tracing::info!("gRPC: shutting down, draining in-flight requests");
            let admission = service.admission();
            admission.start_draining();
            if tokio::time::timeout(drain_timeout, admission.wait_idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    ?drain_timeout,
                    "gRPC drain timed out; closing remaining requests"
                );
            }
            service.close_streams();
            drained.cancel();
        }
    };
    let tls = if config.tls.is_some() { "on" } else { "off" };
    tracing::info!("KServe gRPC listening on {addr} (TLS {tls})");
    on_bound(addr);
    let server = builder
        .add_service(grpc)
        .serve_with_incoming_shutdown(incoming, drain);
    tokio::select! {
        result = server => result.map_err(|e| std::io::Error::other(format!("gRPC server failed: {e}"))),
        // Clients may keep idle connections open; they do not hold up the exit.
        _ = async {
            drained.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => Ok(()),
    }
}
