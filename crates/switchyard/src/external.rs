//! Engines outside the process: an OpenAI-compatible upstream as a worker's engine
//! (`--engine openai --upstream URL`), an engine's native ZMQ KV events feeding the router
//! (`--kv-events-endpoint`), and the mocker publishing its KV events in that format
//! (`--kv-events-publish`). Flags and wiring only; the work is in `switchyard-engine-upstream`
//! and `switchyard-kv-events-zmq`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchyard_engine_upstream::{TextTokenizer, UpstreamConfig, UpstreamEngine};
use switchyard_engines::EngineEventSink;
use switchyard_kv_events_zmq::encode::Layout;
use switchyard_kv_events_zmq::{
    KvEventSubscriber, PublisherConfig, SubscriberConfig, ZmqKvPublisher, offset_endpoint,
};
use switchyard_preprocess::ModelCard;

use crate::cli::{EngineArgs, EngineKind};
use crate::serve::{BuiltEngine, EngineModel, build_engine};

/// Flags of engines outside the process (flattened into the engine flags).
#[derive(Args, Debug, Clone, Default)]
pub struct ExternalEngineArgs {
    /// `--engine openai`: OpenAI-compatible server(s) the worker forwards token-id requests to
    /// (`http://host:port`, comma-separated; `serve` runs one worker per URL).
    #[arg(long, env = "SWITCHYARD_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<String>,

    /// `--engine openai`: model name sent upstream (default: the first of its /v1/models).
    #[arg(long, env = "SWITCHYARD_UPSTREAM_MODEL")]
    pub upstream_model: Option<String>,

    /// `--engine openai`: seconds to wait for the upstream's response headers and between two
    /// of its chunks.
    #[arg(long, env = "SWITCHYARD_UPSTREAM_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub upstream_timeout_secs: u64,

    /// The engine's ZMQ KV event PUB socket, `tcp://host:port`: its events feed the router
    /// (routing hashes recomputed from their token ids). In `serve`, worker i uses port + i.
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_ENDPOINT")]
    pub kv_events_endpoint: Option<String>,

    /// The engine's ZMQ replay (ROUTER) socket: sequence gaps are filled from it. In `serve`,
    /// worker i uses port + i.
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_REPLAY_ENDPOINT")]
    pub kv_events_replay_endpoint: Option<String>,

    /// ZMQ topic prefix to subscribe to.
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_TOPIC", default_value = "")]
    pub kv_events_topic: String,

    /// Engine blocks remembered per worker to link KV events (engine hash → routing hash).
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_MAX_BLOCKS", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 26)))]
    pub kv_events_max_blocks: u64,

    /// Mocker: publish KV events on a ZMQ PUB socket bound here, in vLLM's wire format, instead
    /// of straight to the router (pair with --kv-events-endpoint to route from them). In
    /// `serve`, worker i binds port + i.
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_PUBLISH")]
    pub kv_events_publish: Option<String>,

    /// Mocker: bind a replay (ROUTER) socket for the published events here (port + i per
    /// worker in `serve`).
    #[arg(long, env = "SWITCHYARD_KV_EVENTS_PUBLISH_REPLAY")]
    pub kv_events_publish_replay: Option<String>,
}

impl ExternalEngineArgs {
    /// `openai`: whether the engine is the upstream one. `mocker`: whether it is the mocker.
    pub fn validate(&self, openai: bool, mocker: bool) -> Result<(), String> {
        if openai && self.upstream.is_empty() {
            return Err("--engine openai needs --upstream http://host:port (the OpenAI-compatible server to forward to)".into());
        }
        if !openai && !self.upstream.is_empty() {
            return Err("--upstream only applies to --engine openai".into());
        }
        for url in &self.upstream {
            if !url.starts_with("http://") {
                return Err(format!("--upstream `{url}`: expected http://host:port"));
            }
        }
        for (flag, value) in [
            ("--kv-events-endpoint", &self.kv_events_endpoint),
            (
                "--kv-events-replay-endpoint",
                &self.kv_events_replay_endpoint,
            ),
            ("--kv-events-publish", &self.kv_events_publish),
            ("--kv-events-publish-replay", &self.kv_events_publish_replay),
        ] {
            if let Some(v) = value {
                offset_endpoint(v, 0).map_err(|e| format!("{flag}: {e}"))?;
            }
        }
        if self.kv_events_replay_endpoint.is_some() && self.kv_events_endpoint.is_none() {
            return Err("--kv-events-replay-endpoint needs --kv-events-endpoint".into());
        }
        if self.kv_events_publish_replay.is_some() && self.kv_events_publish.is_none() {
            return Err("--kv-events-publish-replay needs --kv-events-publish".into());
        }
        if self.kv_events_publish.is_some() && !mocker {
            return Err("--kv-events-publish only applies to --engine mocker".into());
        }
        if mocker && self.kv_events_endpoint.is_some() && self.kv_events_publish.is_none() {
            return Err("--kv-events-endpoint with --engine mocker would count its KV events twice: add --kv-events-publish (the mocker then publishes only over ZMQ)".into());
        }
        Ok(())
    }

    /// `serve` with `--engine openai` runs one worker per upstream URL.
    pub fn upstream_workers(&self) -> Option<u32> {
        (!self.upstream.is_empty()).then_some(self.upstream.len() as u32)
    }
}

/// The model's tokenizer as the upstream engine's re-tokenizer.
struct CardTokenizer(Arc<tokenizers::Tokenizer>);

impl TextTokenizer for CardTokenizer {
    fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize)>, String> {
        let encoding = self.0.encode(text, false).map_err(|e| e.to_string())?;
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .map(|(&id, &(_, end))| (id, end))
            .collect())
    }
}

pub fn tokenizer_of(card: &ModelCard) -> Arc<dyn TextTokenizer> {
    Arc::new(CardTokenizer(card.tokenizer.shared()))
}

/// The upstream engine of worker `index`; its health is probed once (a warning if down: the
/// server may still be starting).
pub async fn build_upstream(
    args: &ExternalEngineArgs,
    index: usize,
    block_size: u32,
    total_blocks: u64,
    tokenizer: Arc<dyn TextTokenizer>,
) -> anyhow::Result<UpstreamEngine> {
    let url = args
        .upstream
        .get(index % args.upstream.len().max(1))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--engine openai needs --upstream"))?;
    let mut config = UpstreamConfig::new(url);
    config.model = args.upstream_model.clone();
    config.response_timeout = Duration::from_secs(args.upstream_timeout_secs);
    if args.kv_events_endpoint.is_some() {
        config.kv_block_size = Some(block_size);
        config.kv_total_blocks = Some(total_blocks);
    }
    let engine = UpstreamEngine::new(config, Some(tokenizer))?;
    // Bounded: a server that accepts connections but never answers must not stall startup.
    let health = tokio::time::timeout(Duration::from_secs(10), engine.check_health())
        .await
        .unwrap_or_else(|_| Err("no answer within 10 s".into()));
    match health {
        Ok(model) => tracing::info!(upstream = engine.url(), %model, "upstream engine is healthy"),
        Err(e) => {
            tracing::warn!(upstream = engine.url(), error = %e, "upstream engine is not healthy yet; requests will fail until it is")
        }
    }
    Ok(engine)
}

/// Worker `index`'s KV event subscriber, if `--kv-events-endpoint` is set.
pub fn spawn_subscriber(
    args: &ExternalEngineArgs,
    index: u16,
    block_size: u32,
    sink: Arc<dyn EngineEventSink>,
) -> anyhow::Result<Option<KvEventSubscriber>> {
    let Some(endpoint) = &args.kv_events_endpoint else {
        return Ok(None);
    };
    let mut config = SubscriberConfig::new(
        offset_endpoint(endpoint, index).map_err(anyhow::Error::msg)?,
        block_size,
    );
    config.replay_endpoint = args
        .kv_events_replay_endpoint
        .as_deref()
        .map(|e| offset_endpoint(e, index))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    config.topic = args.kv_events_topic.clone();
    config.max_blocks = args.kv_events_max_blocks as usize;
    Ok(Some(KvEventSubscriber::spawn(config, sink)))
}

/// Worker `index`'s mocker sink: a ZMQ publisher (load reports still go to `events`) if
/// `--kv-events-publish` is set, else `events` itself.
pub async fn mocker_sink(
    args: &ExternalEngineArgs,
    index: u16,
    block_size: u32,
    events: Option<Arc<dyn EngineEventSink>>,
) -> anyhow::Result<Option<Arc<dyn EngineEventSink>>> {
    let Some(endpoint) = &args.kv_events_publish else {
        return Ok(events);
    };
    let mut config = PublisherConfig::new(
        offset_endpoint(endpoint, index).map_err(anyhow::Error::msg)?,
        block_size,
    );
    config.replay_endpoint = args
        .kv_events_publish_replay
        .as_deref()
        .map(|e| offset_endpoint(e, index))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    config.topic = args.kv_events_topic.clone();
    config.layout = Layout::Positional;
    let publisher = ZmqKvPublisher::bind(config, events)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(publisher)))
}

/// Worker `index`'s engine and, with `--kv-events-endpoint`, the subscriber feeding `events`
/// with the engine's native KV events (keep it alive as long as the worker).
pub async fn build_worker_engine(
    args: &EngineArgs,
    index: u16,
    model: &EngineModel,
    tokenizer: &Arc<dyn TextTokenizer>,
    events: Option<Arc<dyn EngineEventSink>>,
) -> anyhow::Result<(BuiltEngine, Option<KvEventSubscriber>)> {
    let external = &args.external;
    let engine = match args.engine {
        EngineKind::Openai => BuiltEngine::Upstream(Arc::new(
            build_upstream(
                external,
                usize::from(index),
                args.block_size,
                args.num_gpu_blocks as u64,
                tokenizer.clone(),
            )
            .await?,
        )),
        EngineKind::Mocker => {
            let sink = mocker_sink(external, index, args.block_size, events.clone()).await?;
            build_engine(args, model, sink)?
        }
        _ => build_engine(args, model, events.clone())?,
    };
    let subscriber = match events {
        Some(sink) => spawn_subscriber(external, index, args.block_size, sink)?,
        None => {
            if external.kv_events_endpoint.is_some() {
                tracing::warn!(
                    "--kv-events-endpoint without an event plane: the KV events reach no router"
                );
            }
            None
        }
    };
    Ok((engine, subscriber))
}
