//! `switchyard serve`: frontend + in-process workers + in-process planes, in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_engines::mocker::{MockerConfig, MockerEngine};
use switchyard_engines::{Engine, EngineEventSink};
use switchyard_frontend::{Admission, CpuPool, Metrics, ModelManager, load_model_card};
use switchyard_http::{HttpConfig, HttpService, TlsConfig};
use switchyard_kserve::{GrpcConfig, GrpcTls, KserveService};
use switchyard_kv_index::ApproxConfig;
use switchyard_preprocess::ModelCard;
use switchyard_router::kv::KvSelectorConfig;
use switchyard_router::{RouterConfig, RouterMode};
use switchyard_runtime::discovery::{Discovery, MemDiscovery};
use switchyard_runtime::event_plane::{EngineEventPublisher, EventPlane, InProcessEventPlane};
use switchyard_runtime::request_plane::InProcessRequestPlane;
use switchyard_runtime::{Endpoint, EngineLimits, WorkerId, WorkerInstance};
use tokio_util::sync::CancellationToken;

use crate::cli::{self, EngineArgs, EngineKind, FrontendArgs, RouterModeArg, ServeArgs};
use crate::external;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let doors = FrontDoorSettings::from_env()?;
    let (model_path, card) = load_card(&args.engine.model_path).await?;
    let model = EngineModel::load(&args.engine, &card).await?;
    let tokenizer = external::tokenizer_of(&card);
    let workers = args
        .engine
        .external
        .upstream_workers()
        .unwrap_or(args.workers);
    let router_config = router_config(&args.frontend);

    let metrics = Arc::new(Metrics::new());
    let request_plane = InProcessRequestPlane::new();
    let discovery = MemDiscovery::new();
    let event_plane = InProcessEventPlane::new(4096);
    // Subscribed before any engine exists, so no event is published unseen.
    let worker_events = event_plane.subscribe();
    let manager = Arc::new(
        ModelManager::new(
            router_config,
            Arc::new(request_plane.clone()),
            CpuPool::per_core(),
            metrics,
        )
        .with_migration_limit(args.frontend.migration_limit)
        .with_output_parsing(args.frontend.output_parsing()),
    );
    manager
        .add_model(&model.name, Arc::new(card))
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;

    let mut registrations = Vec::new();
    let mut kv_subscribers = Vec::new();
    for index in 0..workers {
        let id = WorkerId(u64::from(index) + 1);
        let events: Arc<dyn EngineEventSink> = Arc::new(EngineEventPublisher {
            plane: event_plane.clone(),
            worker: id,
        });
        let (engine, subscriber) = external::build_worker_engine(
            &args.engine,
            index as u16,
            &model,
            &tokenizer,
            Some(events),
        )
        .await?;
        kv_subscribers.extend(subscriber);
        let info = engine.info();
        request_plane.insert(id, engine.as_engine());
        registrations.push(discovery.register(WorkerInstance {
            id,
            namespace: args.frontend.namespace.clone(),
            model_name: model.name.clone(),
            model_path: model_path.display().to_string(),
            endpoint: Endpoint::InProcess,
            engine: info.kind.to_string(),
            kv_block_size: info.kv_block_size,
            kv_total_blocks: info.kv_total_blocks,
            capabilities: info.capabilities,
            context_length: Some(model.context_length),
            limits: engine_limits(&args.engine),
        })?);
    }
    manager.set_discovery(Arc::new(discovery.clone()));
    let watch = discovery.watch(&args.frontend.namespace);
    let initial = watch.borrow().clone();
    manager.apply_snapshot(&initial).await;
    tokio::spawn(manager.clone().follow(watch));
    tokio::spawn(manager.clone().follow_events(worker_events));
    tracing::info!(
        model = %model.name,
        engine = ?args.engine.engine,
        workers,
        router = manager_router_mode(&args.frontend).as_str(),
        "serving"
    );

    let shutdown = shutdown_token();
    serve_front_doors(&args.frontend, &doors, manager, shutdown).await?;
    drop(registrations);
    drop(kv_subscribers);
    tracing::info!("stopped");
    Ok(())
}

/// Front-door settings that come from the environment only.
pub(crate) struct FrontDoorSettings {
    body_limit_bytes: usize,
    grpc_connection_window: Option<u32>,
    grpc_stream_window: Option<u32>,
}

impl FrontDoorSettings {
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        Ok(FrontDoorSettings {
            body_limit_bytes: cli::body_limit_bytes().map_err(anyhow::Error::msg)?,
            grpc_connection_window: cli::grpc_window_size(
                "SWITCHYARD_GRPC_INITIAL_CONNECTION_WINDOW_SIZE",
            )
            .map_err(anyhow::Error::msg)?,
            grpc_stream_window: cli::grpc_window_size("SWITCHYARD_GRPC_INITIAL_STREAM_WINDOW_SIZE")
                .map_err(anyhow::Error::msg)?,
        })
    }
}

/// What a worker's engine and registration need of the model card.
pub(crate) struct EngineModel {
    /// The served name: `--model-name`, else the card's.
    pub(crate) name: String,
    pub(crate) vocab_size: u32,
    pub(crate) context_length: u32,
    /// The cpu engine's weights, loaded once and shared by the process's workers.
    pub(crate) cpu_model: Option<Arc<switchyard_engine_cpu::LlamaModel>>,
}

impl EngineModel {
    /// Reads what the engine needs from the card; loads the weights for `--engine cpu`.
    pub(crate) async fn load(args: &EngineArgs, card: &ModelCard) -> anyhow::Result<Self> {
        let cpu_model = match args.engine {
            EngineKind::Cpu => {
                Some(crate::cpu::load_model(&args.model_path, args.cpu.cpu_weights).await?)
            }
            EngineKind::Echo | EngineKind::Mocker | EngineKind::Openai => None,
        };
        Ok(EngineModel {
            name: args.model_name.clone().unwrap_or_else(|| card.name.clone()),
            vocab_size: card.tokenizer.vocab_size() as u32,
            context_length: card.context_length,
            cpu_model,
        })
    }
}

/// Loads a model folder on a blocking thread: its path and card.
pub(crate) async fn load_card(path: &Path) -> anyhow::Result<(PathBuf, ModelCard)> {
    let model_path = path.to_path_buf();
    let gguf = switchyard_preprocess::is_gguf_file(&model_path)
        || (model_path.is_dir()
            && matches!(
                switchyard_preprocess::single_gguf_in(&model_path),
                Ok(Some(_))
            ));
    if !gguf && !model_path.join("tokenizer.json").is_file() {
        anyhow::bail!(
            "model folder `{}` has no tokenizer.json (nor a GGUF file): run ./scripts/quickstart.sh (it fetches the default model) or pass --model-path DIR|FILE.gguf",
            model_path.display()
        );
    }
    tracing::info!(path = %model_path.display(), "loading model");
    let started = std::time::Instant::now();
    let card = {
        let path = model_path.clone();
        tokio::task::spawn_blocking(move || load_model_card(&path))
            .await
            .context("model loader failed")?
            .with_context(|| format!("cannot load model folder `{}`", model_path.display()))?
    };
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        context_length = card.context_length,
        chat_template = card.chat_template.is_some(),
        "model loaded"
    );
    Ok((model_path, card))
}

fn manager_router_mode(args: &FrontendArgs) -> RouterMode {
    match args.router_mode {
        RouterModeArg::RoundRobin => RouterMode::RoundRobin,
        RouterModeArg::Random => RouterMode::Random,
        RouterModeArg::PowerOfTwo => RouterMode::PowerOfTwo,
        RouterModeArg::LeastLoaded => RouterMode::LeastLoaded,
        RouterModeArg::Kv => RouterMode::Kv,
    }
}

pub(crate) fn router_config(args: &FrontendArgs) -> RouterConfig {
    RouterConfig {
        mode: manager_router_mode(args),
        block_size: args.kv_cache_block_size,
        selector: KvSelectorConfig {
            overlap_score_weight: args.kv_overlap_score_weight,
            temperature: args.router_temperature,
        },
        approximate: args.no_kv_events.then(|| ApproxConfig {
            ttl: Duration::from_secs_f64(args.router_ttl),
            max_tree_size: args.router_max_tree_size,
            prune_target_ratio: args.router_prune_target_ratio,
        }),
    }
}

/// A worker's engine, kept as its concrete kind where the worker needs more than [`Engine`]
/// (the mocker's cache dump).
#[derive(Clone)]
pub(crate) enum BuiltEngine {
    Echo(Arc<EchoEngine>),
    Mocker(Arc<MockerEngine>),
    Upstream(Arc<switchyard_engine_upstream::UpstreamEngine>),
    Cpu(Arc<switchyard_engine_cpu::CpuEngine>),
}

impl BuiltEngine {
    pub(crate) fn as_engine(&self) -> Arc<dyn Engine> {
        match self {
            BuiltEngine::Echo(e) => e.clone(),
            BuiltEngine::Mocker(e) => e.clone(),
            BuiltEngine::Upstream(e) => e.clone(),
            BuiltEngine::Cpu(e) => e.clone(),
        }
    }

    pub(crate) fn info(&self) -> switchyard_engines::EngineInfo {
        self.as_engine().info()
    }
}

pub(crate) fn build_engine(
    args: &EngineArgs,
    model: &EngineModel,
    events: Option<Arc<dyn EngineEventSink>>,
) -> anyhow::Result<BuiltEngine> {
    let vocab_size = model.vocab_size;
    Ok(match args.engine {
        EngineKind::Cpu => {
            let weights = model
                .cpu_model
                .clone()
                .context("the cpu engine's model was not loaded")?;
            BuiltEngine::Cpu(Arc::new(crate::cpu::build(args, weights, events)?))
        }
        EngineKind::Echo => BuiltEngine::Echo(Arc::new(EchoEngine::new(EchoConfig {
            token_delay: Duration::from_millis(args.echo_delay_ms),
        }))),
        EngineKind::Mocker => BuiltEngine::Mocker(Arc::new(MockerEngine::new(MockerConfig {
            speedup_ratio: args.speedup_ratio,
            vocab_size,
            block_size: args.block_size,
            num_gpu_blocks: args.num_gpu_blocks,
            max_num_seqs: args.max_num_seqs,
            max_num_batched_tokens: args.max_num_batched_tokens,
            enable_prefix_caching: !args.no_enable_prefix_caching,
            events,
            ..MockerConfig::default()
        })?)),
        EngineKind::Openai => {
            anyhow::bail!("the upstream engine is built by external::build_worker_engine")
        }
    })
}

/// The batching limits a worker announces (the mocker's; echo has none).
pub(crate) fn engine_limits(args: &EngineArgs) -> EngineLimits {
    match args.engine {
        EngineKind::Echo | EngineKind::Openai => EngineLimits::default(),
        EngineKind::Mocker => EngineLimits {
            max_num_seqs: u32::try_from(args.max_num_seqs).ok(),
            max_num_batched_tokens: Some(args.max_num_batched_tokens),
        },
        EngineKind::Cpu => EngineLimits {
            max_num_seqs: u32::try_from(args.max_num_seqs).ok(),
            max_num_batched_tokens: Some(args.cpu.cpu_step_tokens),
        },
    }
}

/// A token cancelled by the first SIGINT or SIGTERM.
pub(crate) fn shutdown_token() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    shutdown
}

/// Serves HTTP (and, if asked, KServe gRPC with its metrics listener) until `shutdown`, then
/// drains. One signal drains every front door; they share one admission gate, so each waits
/// for the requests of all of them.
pub(crate) async fn serve_front_doors(
    args: &FrontendArgs,
    doors: &FrontDoorSettings,
    manager: Arc<ModelManager>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert_path, &args.tls_key_path) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };
    let drain_timeout = Duration::from_secs(30);
    let config = HttpConfig {
        host: args.http_host.clone(),
        port: args.http_port,
        tls: tls.clone().map(|(cert_path, key_path)| TlsConfig {
            cert_path,
            key_path,
        }),
        body_limit_bytes: doors.body_limit_bytes,
        drain_timeout,
    };
    let admission = Admission::new();
    let service = HttpService::with_admission(manager.clone(), admission.clone());
    let http = switchyard_http::serve(
        config,
        service.clone(),
        shutdown.clone().cancelled_owned(),
        |_| {},
    );
    if args.kserve_grpc_server {
        let grpc_host = args.grpc_host.clone().unwrap_or(args.http_host.clone());
        let grpc_config = GrpcConfig {
            host: grpc_host.clone(),
            port: args.grpc_port,
            tls: tls.map(|(cert_path, key_path)| GrpcTls {
                cert_path,
                key_path,
            }),
            max_message_bytes: doors.body_limit_bytes,
            initial_connection_window_size: doors.grpc_connection_window,
            initial_stream_window_size: doors.grpc_stream_window,
            drain_timeout,
        };
        let grpc = switchyard_kserve::serve(
            grpc_config,
            KserveService::new(manager, admission),
            shutdown.clone().cancelled_owned(),
            |_| {},
        );
        let observability = switchyard_http::serve_observability(
            grpc_host,
            args.grpc_metrics_port,
            service,
            shutdown.clone().cancelled_owned(),
            |_| {},
        );
        tokio::try_join!(http, grpc, observability)?;
    } else {
        http.await?;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
