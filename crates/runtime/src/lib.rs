//! The seams between frontends and workers: discovery, request plane, event plane.
//!
//! - [`discovery::Discovery`]: workers [`register`](discovery::Discovery::register) a
//!   [`WorkerInstance`] (kept while the returned [`discovery::Registration`] lives); frontends
//!   [`watch`](discovery::Discovery::watch) a snapshot of all live instances.
//!   [`discovery::MemDiscovery`] is the in-process implementation used by `serve`.
//! - [`request_plane::RequestPlane`]: the frontend opens a token stream on a chosen worker;
//!   dropping the stream cancels the request there. [`request_plane::InProcessRequestPlane`]
//!   calls the engine directly.
//! - [`event_plane::EventPlane`]: workers publish [`event_plane::WorkerEvent`]s (load reports,
//!   KV events) that every frontend replica receives.
//!   [`event_plane::InProcessEventPlane`] is a broadcast channel.
//!
//! Network implementations plug in behind the same traits: `switchyard-discovery-etcd`,
//! `switchyard-request-plane-grpc` and `switchyard-event-plane-nats`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_protocol::EngineCapabilities;

pub mod discovery;
pub mod event_plane;
pub mod request_plane;

/// A worker's identity, unique within a discovery domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub u64);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// How a frontend reaches a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Endpoint {
    /// Same process; served by [`request_plane::InProcessRequestPlane`].
    InProcess,
    /// A gRPC request-plane server (`switchyard-request-plane-grpc`), `host:port`.
    Grpc { address: String },
}

/// What a worker announces about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInstance {
    pub id: WorkerId,
    pub namespace: String,
    /// The served model name clients ask for.
    pub model_name: String,
    /// Where the model's tokenizer and chat template live (a model folder).
    pub model_path: String,
    pub endpoint: Endpoint,
    /// Engine kind, for logs and metrics.
    pub engine: String,
    /// KV cache block size in tokens, when the engine has a paged cache.
    pub kv_block_size: Option<u32>,
    /// KV cache capacity in blocks, when known: the router sizes its index for all workers'.
    #[serde(default)]
    pub kv_total_blocks: Option<u64>,
    /// The model's context length in tokens, as the worker loaded it.
    #[serde(default)]
    pub context_length: Option<u32>,
    /// The engine's batching limits, when it has them.
    #[serde(default)]
    pub limits: EngineLimits,
    /// What the engine honours beyond plain sampling (`logit_bias`, structured output).
    #[serde(default)]
    pub capabilities: EngineCapabilities,
}

/// What one engine runs at once (vLLM's `--max-num-seqs`, `--max-num-batched-tokens`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineLimits {
    #[serde(default)]
    pub max_num_seqs: Option<u32>,
    #[serde(default)]
    pub max_num_batched_tokens: Option<u32>,
}

/// A set of live instances, shared cheaply between watchers.
pub type InstanceSnapshot = Arc<Vec<WorkerInstance>>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("worker {0} is already registered")]
    DuplicateWorker(WorkerId),
    #[error("worker {0} is not reachable: {1}")]
    Unreachable(WorkerId, String),
    /// A networked discovery backend failed (bad address, store unreachable, shut down).
    #[error("discovery: {0}")]
    Discovery(String),
    /// The event plane's transport failed (server unreachable, bad address, connection lost).
    #[error("event plane: {0}")]
    EventPlane(String),
}
