//! `switchyard frontend` and `switchyard worker`: the two halves of `serve` as separate
//! processes, meeting in etcd (discovery), NATS (events) and gRPC (requests).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_discovery_etcd::{EtcdConfig, EtcdDiscovery};
use switchyard_engines::EngineEventSink;
use switchyard_event_plane_nats::{KvDumpFn, NatsEventPlane, NatsPlaneOptions};
use switchyard_frontend::{CpuPool, Metrics, ModelManager};
use switchyard_request_plane_grpc::{GrpcPlaneConfig, GrpcRequestPlane, WorkerServer};
use switchyard_router::replica::{DecisionSink, ReplicaMessage};
use switchyard_runtime::discovery::Discovery;
use switchyard_runtime::event_plane::{EngineEventPublisher, EventPlane};
use switchyard_runtime::{Endpoint, InstanceSnapshot, WorkerId, WorkerInstance};
use tokio::sync::watch;

use crate::cli::{ClusterArgs, FrontendProcessArgs, WorkerProcessArgs};
use crate::external;
use crate::serve::{
    BuiltEngine, EngineModel, FrontDoorSettings, engine_limits, load_card, router_config,
    serve_front_doors, shutdown_token,
};

async fn connect_discovery(cluster: &ClusterArgs) -> anyhow::Result<EtcdDiscovery> {
    let mut config = EtcdConfig::from_url(&cluster.discovery).map_err(anyhow::Error::msg)?;
    config.lease_ttl = Duration::from_secs(cluster.lease_ttl);
    EtcdDiscovery::connect(config)
        .await
        .with_context(|| format!("cannot reach etcd at {}", cluster.discovery))
}

async fn connect_events(
    cluster: &ClusterArgs,
    namespace: &str,
    subscribe: bool,
) -> anyhow::Result<Option<NatsEventPlane>> {
    match &cluster.event_plane {
        None => Ok(None),
        Some(url) => Ok(Some(
            NatsEventPlane::connect_with(
                url,
                namespace,
                NatsPlaneOptions {
                    subscribe,
                    ..NatsPlaneOptions::default()
                },
            )
            .await
            .with_context(|| format!("cannot reach NATS at {url}"))?,
        )),
    }
}

pub async fn run_worker(args: WorkerProcessArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let (model_path, card) = load_card(&args.engine.model_path).await?;
    let model = EngineModel::load(&args.engine, &card).await?;
    let tokenizer = external::tokenizer_of(&card);
    drop(card);
    let model_name = model.name.clone();
    let context_length = model.context_length;
    // Random and never 0: two workers of one namespace must not collide.
    let id = WorkerId(rand::random::<u64>() | 1);
    let discovery = connect_discovery(&args.cluster).await?;
    // A worker only publishes: it does not need every other worker's events.
    let events = connect_events(&args.cluster, &args.namespace, false).await?;
    let sink = events.clone().map(|plane| {
        Arc::new(EngineEventPublisher { plane, worker: id }) as Arc<dyn EngineEventSink>
    });
    let (engine, _kv_subscriber) =
        external::build_worker_engine(&args.engine, 0, &model, &tokenizer, sink).await?;
    // Frontends that start late, or lost events, ask for the whole cache (not when the
    // mocker's events travel over ZMQ: their ids are the subscriber's, not the mocker's).
    let _dump_server = match (&events, &engine) {
        (Some(plane), BuiltEngine::Mocker(mocker))
            if args.engine.external.kv_events_publish.is_none() =>
        {
            let mocker = mocker.clone();
            let runtime = tokio::runtime::Handle::current();
            // Runs on a blocking thread: waiting for the scheduler's answer there is fine.
            let dump: KvDumpFn = Arc::new(move || {
                runtime
                    .block_on(mocker.dump_cache_state())
                    .unwrap_or_default()
            });
            Some(plane.serve_kv_dump(id, dump).await?)
        }
        (Some(plane), BuiltEngine::Cpu(cpu)) => {
            let cpu = cpu.clone();
            let runtime = tokio::runtime::Handle::current();
            let dump: KvDumpFn =
                Arc::new(move || runtime.block_on(cpu.dump_cache_state()).unwrap_or_default());
            Some(plane.serve_kv_dump(id, dump).await?)
        }
        _ => None,
    };
    let info = engine.info();
    let listener = tokio::net::TcpListener::bind((args.worker_host.as_str(), args.worker_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} for the request plane",
                args.worker_host, args.worker_port
            )
        })?;
    let shutdown = shutdown_token();
    let (address, server) = WorkerServer::new(engine.as_engine())
        .serve(listener, shutdown.clone().cancelled_owned())?;
    let server = tokio::spawn(server);
    let registration = discovery.register(WorkerInstance {
        id,
        namespace: args.namespace.clone(),
        model_name: model_name.clone(),
        model_path: model_path.display().to_string(),
        endpoint: Endpoint::Grpc {
            address: address.to_string(),
        },
        engine: info.kind.to_string(),
        kv_block_size: info.kv_block_size,
        kv_total_blocks: info.kv_total_blocks,
        capabilities: info.capabilities,
        context_length: Some(context_length),
        limits: engine_limits(&args.engine),
    })?;
    discovery.flush().await?;
    tracing::info!(worker = %id, %address, model = %model_name, engine = info.kind, "worker registered");
    shutdown.cancelled().await;
    // Leave discovery first so frontends stop sending new requests, then drain.
    drop(registration);
    if let Err(e) = discovery.shutdown().await {
        tracing::warn!(error = %e, "could not revoke the discovery lease; it will expire");
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "request plane server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "request plane server task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}

pub async fn run_frontend(args: FrontendProcessArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let doors = FrontDoorSettings::from_env()?;
    let namespace = args.frontend.namespace.clone();
    let discovery = Arc::new(connect_discovery(&args.cluster).await?);
    let events = connect_events(&args.cluster, &namespace, true).await?;
    let request_plane = GrpcRequestPlane::new(GrpcPlaneConfig::default());
    let manager = Arc::new(
        ModelManager::new(
            router_config(&args.frontend),
            Arc::new(request_plane.clone()),
            CpuPool::per_core(),
            Arc::new(Metrics::new()),
        )
        .with_migration_limit(args.frontend.migration_limit)
        .with_output_parsing(args.frontend.output_parsing()),
    );
    manager.set_discovery(discovery.clone());
    if let Some(plane) = &events {
        tokio::spawn(manager.clone().follow_events(plane.subscribe()));
    }
    if args.router_replica_sync
        && let Some(plane) = &events
    {
        manager.set_replica_sink(Arc::new(ReplicaSync {
            plane: plane.clone(),
        }));
        tokio::spawn(follow_replicas(manager.clone(), plane.subscribe_sync()));
    }
    let watch = discovery.watch(&namespace);
    tokio::spawn(follow_discovery(
        manager.clone(),
        watch,
        events.clone(),
        request_plane,
    ));
    if let Some(plane) = events.clone() {
        tokio::spawn(redump_after_reconnects(manager.clone(), plane));
    }
    tracing::info!(discovery = %args.cluster.discovery, namespace = %namespace, "frontend started");
    let shutdown = shutdown_token();
    serve_front_doors(&args.frontend, &doors, manager, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Applies discovery snapshots; every worker that appears gets its KV cache dump requested, so
/// a frontend that starts late (or a worker whose first events raced its registration) routes
/// from the worker's whole cache.
async fn follow_discovery(
    manager: Arc<ModelManager>,
    mut rx: watch::Receiver<InstanceSnapshot>,
    events: Option<NatsEventPlane>,
    request_plane: GrpcRequestPlane,
) {
    let mut known: Vec<WorkerInstance> = Vec::new();
    loop {
        let snapshot = rx.borrow_and_update().clone();
        manager.apply_snapshot(&snapshot).await;
        let fresh: Vec<WorkerId> = snapshot
            .iter()
            .filter(|i| !known.iter().any(|k| k.id == i.id))
            .map(|i| i.id)
            .collect();
        // A worker that left takes its connection with it (the channel cache stays bounded by
        // the live workers).
        for gone in known
            .iter()
            .filter(|k| !snapshot.iter().any(|i| i.id == k.id))
        {
            if let Endpoint::Grpc { address } = &gone.endpoint
                && !snapshot.iter().any(|i| i.endpoint == gone.endpoint)
            {
                request_plane.forget(address);
            }
        }
        known = snapshot.to_vec();
        if let Some(plane) = &events {
            for worker in fresh {
                tokio::spawn(load_dump(manager.clone(), plane.clone(), worker));
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn load_dump(manager: Arc<ModelManager>, plane: NatsEventPlane, worker: WorkerId) {
    if !manager.wants_kv_dumps() {
        return;
    }
    // After a NATS outage the worker may reconnect later than this frontend: retry a few
    // times before giving up (live events still flow; the dump only fills what was missed).
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=5 {
        match plane.request_kv_dump(worker).await {
            Ok(events) => {
                manager.apply_kv_dump(worker, &events);
                return;
            }
            // Engines without a cache (echo) never answer.
            Err(e) => tracing::debug!(%worker, attempt, error = %e, "no KV cache dump yet"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// After the event plane reconnected, events may have been lost: reload every worker's cache.
async fn redump_after_reconnects(manager: Arc<ModelManager>, plane: NatsEventPlane) {
    let mut reconnects = plane.reconnects();
    while reconnects.changed().await.is_ok() {
        tracing::info!("event plane reconnected; reloading worker caches");
        for worker in manager.worker_ids() {
            tokio::spawn(load_dump(manager.clone(), plane.clone(), worker));
        }
    }
}

/// Publishes this frontend's routing decisions for the other replicas.
struct ReplicaSync {
    plane: NatsEventPlane,
}

impl DecisionSink for ReplicaSync {
    fn send(&self, message: ReplicaMessage) {
        match serde_json::to_vec(&message) {
            Ok(bytes) => self.plane.publish_sync(bytes.into()),
            Err(e) => tracing::warn!(error = %e, "cannot encode a replica message"),
        }
    }
}

/// Applies the other replicas' routing decisions until the event plane closes.
async fn follow_replicas(
    manager: Arc<ModelManager>,
    mut rx: tokio::sync::broadcast::Receiver<(String, bytes::Bytes)>,
) {
    loop {
        match rx.recv().await {
            Ok((sender, payload)) => match serde_json::from_slice::<ReplicaMessage>(&payload) {
                Ok(message) => manager.apply_replica_message(&sender, &message),
                Err(e) => tracing::warn!(%sender, error = %e, "malformed replica message skipped"),
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "replica sync receiver lagged; decisions lost");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
