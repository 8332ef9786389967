//! Shared state, routes, listener and graceful drain.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use switchyard_frontend::{ActiveTicket, Admission, Metrics, ModelManager, ModelPipeline};
use switchyard_protocol::{ApiError, ErrorKind};
use switchyard_router::WorkerLoadSnapshot;
use switchyard_runtime::discovery::DiscoveryHealth;

use crate::error::HttpError;
use crate::{openai, openapi, responses_api, tokenize};

/// Certificate and key, both PEM.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsConfig>,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// How long a drain waits for in-flight requests before closing anyway.
    pub drain_timeout: Duration,
}

/// What every handler shares.
pub struct HttpService {
    pub manager: Arc<ModelManager>,
    pub metrics: Arc<Metrics>,
    /// The process's drain gate (shared with the other front doors).
    pub admission: Arc<Admission>,
}

impl HttpService {
    pub fn new(manager: Arc<ModelManager>) -> Arc<Self> {
        Self::with_admission(manager, Admission::new())
    }

    /// A service whose drain is shared with other front doors of the same process.
    pub fn with_admission(manager: Arc<ModelManager>, admission: Arc<Admission>) -> Arc<Self> {
        Arc::new(HttpService {
            metrics: manager.metrics().clone(),
            manager,
            admission,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.admission.is_draining()
    }

    /// Stops admitting inference requests; health turns 503.
    pub fn start_draining(&self) {
        self.admission.start_draining();
    }

    /// Admits one inference request, or refuses it while draining. The ticket is held until
    /// the response (including a stream) is complete.
    pub(crate) fn admit(&self) -> Result<ActiveTicket, ApiError> {
        self.admission.admit()
    }

    /// Waits until no admitted request is in flight.
    pub async fn wait_idle(&self) {
        self.admission.wait_idle().await;
    }
}

/// One route of the API: [`router`] serves it and the OpenAPI document must describe it.
pub(crate) struct ApiRoute {
    /// axum's path syntax (`{*id}` captures the rest of the path).
    pub path: &'static str,
    pub method: Method,
    handler: MethodRouter<Arc<HttpService>>,
}

fn get_route<H, T>(path: &'static str, handler: H) -> ApiRoute
where
    H: Handler<T, Arc<HttpService>>,
    T: 'static,
{
    ApiRoute {
        path,
        method: Method::GET,
        handler: get(handler),
    }
}

fn post_route<H, T>(path: &'static str, handler: H) -> ApiRoute
where
    H: Handler<T, Arc<HttpService>>,
    T: 'static,
{
    ApiRoute {
        path,
        method: Method::POST,
        handler: post(handler),
    }
}

/// Every route [`router`] serves, in one list so none can be served undocumented.
pub(crate) fn api_routes() -> Vec<ApiRoute> {
    vec![
        post_route("/v1/chat/completions", openai::chat_completions),
        post_route("/v1/completions", openai::completions),
        get_route("/v1/models", openai::models),
        get_route("/v1/models/{*id}", openai::model),
        post_route("/v1/responses", responses_api::responses),
        post_route("/tokenize", tokenize::tokenize),
        post_route("/detokenize", tokenize::detokenize),
        get_route("/health", health),
        get_route("/live", live),
        get_route("/metrics", metrics),
        get_route("/openapi.json", openapi::openapi_json),
    ]
}

/// The axum application.
pub fn router(service: Arc<HttpService>, body_limit_bytes: usize) -> Router {
    api_routes()
        .into_iter()
        .fold(Router::new(), |app, route| {
            app.route(route.path, route.handler)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .with_state(service)
}

/// Only `/health`, `/live` and `/metrics`: the listener for deployments that expose gRPC only.
pub fn observability_router(service: Arc<HttpService>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/live", get(live))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service)
}

async fn not_found() -> HttpError {
    ApiError::new(ErrorKind::NotFound, "route not found")
        .with_code("not_found")
        .into()
}

async fn method_not_allowed() -> HttpError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method not allowed for this route",
    )
    .with_code("method_not_allowed")
    .into()
}

async fn health(State(service): State<Arc<HttpService>>) -> Response {
    let models: Vec<_> = service
        .manager
        .served_models()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let (status, state) = if service.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if models.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no_workers")
    } else {
        (StatusCode::OK, "ready")
    };
    let mut body = serde_json::json!({"status": state, "models": models});
    // Known workers keep serving while discovery is down, so this informs; it does not fail.
    match service.manager.discovery_health() {
        Some(DiscoveryHealth::Healthy) => {
            body["discovery"] = serde_json::json!({"state": "connected"});
        }
        Some(DiscoveryHealth::Degraded { reason }) => {
            body["discovery"] = serde_json::json!({"state": "reconnecting", "reason": reason});
        }
        None => {}
    }
    (status, axum::Json(body)).into_response()
}

async fn live(State(service): State<Arc<HttpService>>) -> Response {
    if service.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "draining"})),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "live"})),
        )
            .into_response()
    }
}

/// Name, Prometheus type, help, and how to read it off a worker's load.
type WorkerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerLoadSnapshot) -> u64,
);
/// Name, help, and how to read it off a model (gauges).
type ModelMetric = (&'static str, &'static str, fn(&ModelPipeline) -> usize);

async fn metrics(State(service): State<Arc<HttpService>>) -> Response {
    let mut out = String::with_capacity(8192);
    service.metrics.encode(&mut out);
    // Router state is read live from the routers rather than mirrored into gauges, so it can
    // never drift from what the router actually uses.
    let models = service.manager.all_models();
    let per_worker: [WorkerMetric; 7] = [
        (
            "switchyard_worker_active_requests",
            "gauge",
            "Requests the router has in flight on each worker.",
            |l| l.active_requests,
        ),
        (
            "switchyard_worker_active_prompt_tokens",
            "gauge",
            "Prompt tokens of the requests in flight on each worker.",
            |l| l.active_prompt_tokens,
        ),
        (
            "switchyard_worker_pending_prefill_tokens",
            "gauge",
            "Prompt tokens routed to each worker whose prefill has not finished.",
            |l| l.pending_prefill_tokens,
        ),
        (
            "switchyard_worker_active_blocks",
            "gauge",
            "KV blocks of the requests in flight on each worker, as the router accounts them.",
            |l| l.active_blocks,
        ),
        (
            "switchyard_router_decisions_total",
            "counter",
            "Routing decisions per worker.",
            |l| l.decisions,
        ),
        (
            "switchyard_router_routed_blocks_total",
            "counter",
            "Prompt blocks routed to each worker.",
            |l| l.routed_blocks,
        ),
        (
            "switchyard_router_overlap_blocks_total",
            "counter",
            "Routed prompt blocks the router believed the chosen worker already cached (hit ratio = overlap / routed).",
            |l| l.overlap_blocks,
        ),
    ];
    let loads: Vec<_> = models.iter().map(|m| (m, m.router().loads())).collect();
    for (name, kind, help, value) in per_worker {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (model, loads) in &loads {
            for load in loads {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\",worker=\"{}\",mode=\"{}\"}} {}",
                    model.name(),
                    load.worker,
                    model.router().mode().as_str(),
                    value(load)
                );
            }
        }
    }
    let per_model: [ModelMetric; 3] = [
        (
            "switchyard_model_workers",
            "Workers serving each model.",
            |m| m.router().worker_count(),
        ),
        (
            "switchyard_router_index_blocks",
            "Blocks in the router's KV index.",
            |m| m.router().index_blocks(),
        ),
        (
            "switchyard_router_index_bytes",
            "Estimated heap bytes of the router's KV index.",
            |m| m.router().index_memory_bytes(),
        ),
    ];
    for (name, help, value) in per_model {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for model in &models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", model.name(), value(model));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Binds the listener (so callers learn the port before serving), then serves until
/// `shutdown` resolves, drains, and returns.
pub async fn serve(
    config: HttpConfig,
    service: Arc<HttpService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), std::io::Error> {
    let app = router(service.clone(), config.body_limit_bytes);
    serve_app(
        config,
        service,
        app,
        ("HTTP", "listening on"),
        shutdown,
        on_bound,
    )
    .await
}

/// Serves [`observability_router`] over plain HTTP on `host:port` until `shutdown` resolves
/// and the drain of the process (shared through the service's admission) is over.
pub async fn serve_observability(
    host: String,
    port: u16,
    service: Arc<HttpService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), std::io::Error> {
    let config = HttpConfig {
        host,
        port,
        tls: None,
        body_limit_bytes: 64 * 1024,
        drain_timeout: Duration::from_secs(30),
    };
    let app = observability_router(service.clone());
    serve_app(
        config,
        service,
        app,
        ("metrics HTTP", "metrics and health on"),
        shutdown,
        on_bound,
    )
    .await
}

async fn serve_app(
    config: HttpConfig,
    service: Arc<HttpService>,
    app: Router,
    // (name in bind errors, start of the "serving" log line tests and scripts read)
    (what, log_prefix): (&str, &str),
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), std::io::Error> {
    let listener = switchyard_frontend::bind_listener(&config.host, config.port, what)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::<SocketAddr>::new();
    let drain_handle = handle.clone();
    let drain_service = service.clone();
    let drain_timeout = config.drain_timeout;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        drain_service.start_draining();
        if tokio::time::timeout(drain_timeout, drain_service.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain_timeout,
                "drain timed out; closing remaining requests"
            );
        }
        drain_handle.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    let rustls_config = match &config.tls {
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_path, &tls.key_path)
                    .await
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!(
                                "cannot load TLS certificate {} / key {}: {e}",
                                tls.cert_path.display(),
                                tls.key_path.display()
                            ),
                        )
                    })?,
            )
        }
        None => None,
    };
    let scheme = if rustls_config.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("{log_prefix} {scheme}://{addr}");
    on_bound(addr);
    match rustls_config {
        Some(rustls_config) => {
            // Streams write one small SSE chunk per token: without TCP_NODELAY, Nagle's
            // algorithm and delayed ACKs stall keep-alive connections ~40 ms per response.
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .acceptor(axum_server::accept::NoDelayAcceptor::new())
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    }
}
