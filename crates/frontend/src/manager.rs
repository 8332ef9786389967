//! The set of served models, kept in step with discovery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use switchyard_postprocess::IncrementalDetokenizer;
use switchyard_preprocess::{ModelCard, PreprocessError};
use switchyard_protocol::ApiError;
use switchyard_protocol::kv::KvCacheEvent;
use switchyard_router::RouterConfig;
use switchyard_router::replica::{DecisionSink, ReplicaMessage};
use switchyard_runtime::discovery::{Discovery, DiscoveryHealth};
use switchyard_runtime::event_plane::{WorkerEvent, WorkerEventKind};
use switchyard_runtime::request_plane::RequestPlane;
use switchyard_runtime::{InstanceSnapshot, WorkerId, WorkerInstance};
use tokio::sync::broadcast;
use tokio::sync::watch;

use crate::cpu_pool::CpuPool;
use crate::metrics::Metrics;
use crate::pipeline::{ModelPipeline, OutputParsing};

/// Loads a model folder and builds everything per-tokenizer the hot path needs, so the first
/// request does not pay for it on the reactor. Blocking: call it on a blocking thread.
pub fn load_model_card(path: &Path) -> Result<ModelCard, PreprocessError> {
    let card = ModelCard::load(path)?;
    IncrementalDetokenizer::prepare(&card.tokenizer.shared());
    Ok(card)
}

pub struct ModelManager {
    models: RwLock<HashMap<String, Arc<ModelPipeline>>>,
    router_config: RouterConfig,
    request_plane: Arc<dyn RequestPlane>,
    cpu: CpuPool,
    metrics: Arc<Metrics>,
    migration_limit: u32,
    output_parsing: OutputParsing,
    /// Where workers are found, for `/health`.
    discovery: RwLock<Option<Arc<dyn Discovery>>>,
    /// Where every model's router sends news of its decisions (`--router-replica-sync`).
    replica_sink: RwLock<Option<Arc<dyn DecisionSink>>>,
}

impl ModelManager {
    pub fn new(
        router_config: RouterConfig,
        request_plane: Arc<dyn RequestPlane>,
        cpu: CpuPool,
        metrics: Arc<Metrics>,
    ) -> Self {
        ModelManager {
            models: RwLock::new(HashMap::new()),
            router_config,
            request_plane,
            cpu,
            metrics,
            migration_limit: 0,
            output_parsing: OutputParsing::default(),
            discovery: RwLock::new(None),
            replica_sink: RwLock::new(None),
        }
    }

    /// Shares every model's routing decisions with the other frontend replicas through `sink`
    /// (models added later too).
    pub fn set_replica_sink(&self, sink: Arc<dyn DecisionSink>) {
        for pipeline in self.models.read().values() {
            pipeline.router().set_replica_sink(sink.clone());
        }
        *self.replica_sink.write() = Some(sink);
    }

    /// Applies another replica's routing news to the router of its model.
    pub fn apply_replica_message(&self, sender: &str, message: &ReplicaMessage) {
        if let Some(pipeline) = self.models.read().get(message.model()) {
            pipeline.router().apply_replica_message(sender, message);
        }
    }

    /// The discovery backend whose health `/health` reports.
    pub fn set_discovery(&self, discovery: Arc<dyn Discovery>) {
        *self.discovery.write() = Some(discovery);
    }

    /// The discovery backend's health (`None` before [`ModelManager::set_discovery`]).
    pub fn discovery_health(&self) -> Option<DiscoveryHealth> {
        self.discovery.read().as_ref().map(|d| d.health())
    }

    /// Every model's requests may move to another worker up to `limit` times when a worker's
    /// stream breaks (`--migration-limit`).
    pub fn with_migration_limit(mut self, limit: u32) -> Self {
        self.migration_limit = limit;
        self
    }

    /// How every model's chat answers are parsed (tool calls, reasoning).
    pub fn with_output_parsing(mut self, parsing: OutputParsing) -> Self {
        self.output_parsing = parsing;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves `name` from an already loaded card (before any worker exists, requests get 503).
    pub fn add_model(
        &self,
        name: &str,
        card: Arc<ModelCard>,
    ) -> Result<Arc<ModelPipeline>, ApiError> {
        let pipeline = Arc::new(
            ModelPipeline::new(
                name.to_string(),
                card,
                self.router_config.clone(),
                self.request_plane.clone(),
                self.cpu.clone(),
                self.metrics.for_model(name),
            )?
            .with_migration_limit(self.migration_limit)
            .with_output_parsing(self.output_parsing),
        );
        if let Some(sink) = self.replica_sink.read().clone() {
            pipeline.router().set_replica_sink(sink);
        }
        self.models
            .write()
            .insert(name.to_string(), pipeline.clone());
        Ok(pipeline)
    }

    /// The pipeline of `name`: 404 when unknown.
    pub fn get(&self, name: &str) -> Result<Arc<ModelPipeline>, ApiError> {
        self.models
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(name))
    }

    /// Models that have at least one worker, sorted by name.
    pub fn served_models(&self) -> Vec<Arc<ModelPipeline>> {
        let mut models: Vec<_> = self
            .models
            .read()
            .values()
            .filter(|p| p.router().worker_count() > 0)
            .cloned()
            .collect();
        models.sort_by(|a, b| a.name().cmp(b.name()));
        models
    }

    pub fn all_models(&self) -> Vec<Arc<ModelPipeline>> {
        let mut models: Vec<_> = self.models.read().values().cloned().collect();
        models.sort_by(|a, b| a.name().cmp(b.name()));
        models
    }

    /// Ready when some model has a worker.
    pub fn is_ready(&self) -> bool {
        self.models
            .read()
            .values()
            .any(|p| p.router().worker_count() > 0)
    }

    /// Applies one discovery snapshot: new models get a pipeline (their card is loaded from the
    /// instance's model path on a blocking thread), every router gets its current workers.
    pub async fn apply_snapshot(&self, snapshot: &[WorkerInstance]) {
        let mut by_model: HashMap<&str, Vec<WorkerInstance>> = HashMap::new();
        for instance in snapshot {
            by_model
                .entry(instance.model_name.as_str())
                .or_default()
                .push(instance.clone());
        }
        for (model, instances) in &by_model {
            if self.models.read().contains_key(*model) {
                continue;
            }
            let path = PathBuf::from(&instances[0].model_path);
            let loaded = tokio::task::spawn_blocking(move || load_model_card(&path)).await;
            match loaded {
                Ok(Ok(card)) => {
                    if let Err(e) = self.add_model(model, Arc::new(card)) {
                        tracing::error!(model, error = %e, "cannot serve model");
                    }
                }
                Ok(Err(e)) => tracing::error!(model, error = %e, "cannot load model card"),
                Err(e) => tracing::error!(model, error = %e, "model card loader panicked"),
            }
        }
        let models: Vec<_> = self.models.read().values().cloned().collect();
        for pipeline in models {
            let instances = by_model
                .get(pipeline.name())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let before = pipeline.router().worker_count();
            pipeline.router().set_workers(instances);
            if before != instances.len() {
                tracing::info!(
                    model = pipeline.name(),
                    workers = instances.len(),
                    "workers changed"
                );
            }
        }
    }

    /// Applies worker events (KV cache events, load reports) to the routers until the event
    /// plane closes. A lagging receiver loses events; the index counts the gap and load reports
    /// self-correct with the next one.
    pub async fn follow_events(self: Arc<Self>, mut rx: broadcast::Receiver<WorkerEvent>) {
        loop {
            match rx.recv().await {
                Ok(event) => self.apply_event(&event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "event plane receiver lagged; events lost");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Applies one worker event to the router of the worker's model.
    pub fn apply_event(&self, event: &WorkerEvent) {
        for pipeline in self.models.read().values() {
            match &event.kind {
                WorkerEventKind::Kv(kv) => pipeline.router().apply_kv_event(event.worker, kv),
                WorkerEventKind::Load(load) => pipeline
                    .router()
                    .apply_load_report(event.worker, load.kv_used_blocks),
                _ => {}
            }
        }
    }

    /// Loads a worker's KV cache dump into the router of its model.
    pub fn apply_kv_dump(&self, worker: WorkerId, events: &[KvCacheEvent]) {
        for pipeline in self.models.read().values() {
            pipeline.router().apply_kv_dump(worker, events);
        }
    }

    /// Whether some model routes on KV events (and so wants workers' cache dumps).
    pub fn wants_kv_dumps(&self) -> bool {
        self.models
            .read()
            .values()
            .any(|p| p.router().uses_kv_events())
    }

    /// Every worker of every model.
    pub fn worker_ids(&self) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self
            .models
            .read()
            .values()
            .flat_map(|p| p.router().loads().into_iter().map(|l| l.worker))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Follows discovery until the sender side goes away.
    pub async fn follow(self: Arc<Self>, mut rx: watch::Receiver<InstanceSnapshot>) {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            self.apply_snapshot(&snapshot).await;
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
