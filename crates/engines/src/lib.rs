//! Engines: token ids in, a cancellable stream of token deltas out.
//!
//! - [`Engine`]: the one trait every engine implements; it knows nothing about HTTP, routing or
//!   tokenization.
//! - [`echo::EchoEngine`] (configured by [`echo::EchoConfig`]): replays the prompt's tokens, one
//!   per step (conformance tests). Its stream does all work in `poll_next`: no task, no channel.
//! - [`mocker::MockerEngine`] (configured by [`mocker::MockerConfig`]): a simulated GPU engine.
//!   One scheduler task per engine batches requests, runs a paged KV cache with prefix caching
//!   ([`mocker::kv::KvManager`]), times each step ([`mocker::TimingModel`]), and feeds each
//!   request's bounded channel.
//! - [`EngineEventSink`]: where an engine with a KV cache publishes [`EngineEvent`]s: KV cache
//!   events ([`KvCacheEvent`], vLLM's semantics with Switchyard's block hashes) and load reports
//!   ([`EngineLoad`]). The mocker takes one in [`mocker::MockerConfig::events`].
//!
//! Cancellation contract: dropping the [`EngineStream`] cancels the request. An engine must stop
//! its work for that request promptly (within one step) and release everything it held.

use std::pin::Pin;

use futures::Stream;
use switchyard_protocol::kv::KvCacheEvent;
use switchyard_protocol::{EngineCapabilities, EngineOutput, PreprocessedRequest, TokenId};

pub mod echo;
pub mod mocker;

/// A request's token stream. Ends after the item carrying a `finish_reason`, or after an error.
pub type EngineStream = Pin<Box<dyn Stream<Item = Result<EngineOutput, EngineError>> + Send>>;

/// Why an engine could not serve (part of) a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request can never be served by this engine (e.g. prompt longer than its context).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The engine is full right now; another worker may take it.
    #[error("engine overloaded: {0}")]
    Overloaded(String),
    /// The engine failed while serving; the request may be retried elsewhere.
    #[error("engine failed: {0}")]
    Failed(String),
}

/// Static facts about an engine that routing and discovery need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// Short engine kind name (`echo`, `mocker`, ...), for logs and metrics.
    pub kind: &'static str,
    /// KV cache block size in tokens, if the engine has a paged cache.
    pub kv_block_size: Option<u32>,
    /// KV cache capacity in blocks, if the engine has a paged cache: routers size their index
    /// from it.
    pub kv_total_blocks: Option<u64>,
    /// What the engine honours beyond plain sampling; announced with the worker.
    pub capabilities: EngineCapabilities,
}

/// An LLM engine.
pub trait Engine: Send + Sync + 'static {
    /// Starts generating for `request`. Never blocks: work happens when the stream is polled or
    /// on the engine's own tasks.
    fn generate(&self, request: PreprocessedRequest) -> EngineStream;

    fn info(&self) -> EngineInfo;
}

/// An engine's load, as it measures it after a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineLoad {
    /// Sequences in the running batch.
    pub active_requests: u32,
    /// Requests accepted and not running (queued or preempted).
    pub waiting_requests: u32,
    /// KV blocks held by running sequences (a block shared by several counts once).
    pub kv_used_blocks: u64,
    /// KV cache capacity in blocks.
    pub kv_total_blocks: u64,
    /// Blocks in the prefix cache (held or evictable): what the engine's KV events describe.
    pub kv_cached_blocks: u64,
}

/// Something an engine reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// A change to the prefix cache; `event_id`s of one engine increase by one per event.
    Kv(KvCacheEvent),
    Load(EngineLoad),
}

/// Receives an engine's events. `publish` is called from the engine's scheduler between steps
/// and must never block or wait: queue, forward or drop, but return at once.
pub trait EngineEventSink: Send + Sync + 'static {
    fn publish(&self, event: EngineEvent);

    /// Whether this sink wants the token ids of stored blocks ([`Self::publish_kv_with_tokens`]):
    /// one that re-publishes events in an engine's wire format (vLLM's `BlockStored` carries
    /// them) does. Engines ask once, when they start; collecting tokens costs a copy per block.
    fn wants_block_tokens(&self) -> bool {
        false
    }

    /// A KV event with the token ids of its stored blocks (`block_size` per block, in order),
    /// for sinks that [want them](Self::wants_block_tokens). The default drops the tokens.
    fn publish_kv_with_tokens(&self, event: KvCacheEvent, token_ids: &[TokenId]) {
        let _ = token_ids;
        self.publish(EngineEvent::Kv(event));
    }
}
