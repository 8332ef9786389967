//! Mocker engine: a simulated GPU engine for studying routing and load without a GPU.
//!
//! [`MockerEngine`] owns one background Tokio task running a vLLM-like scheduler loop:
//!
//! - `scheduler`: waiting queue → running batch (≤ `max_num_seqs`), a token budget per step
//!   (`max_num_batched_tokens`), chunked prefill, prefix-cache lookup on admission, preemption
//!   (recompute) when even eviction cannot make room.
//! - [`kv`]: the paged KV cache: `num_gpu_blocks` blocks of `block_size` tokens, full blocks
//!   registered under Switchyard's block hashes (`switchyard_kv_index::hashing`), shared by
//!   reference count, evicted LRU once unreferenced; it records vLLM-style KV events.
//! - [`timing`]: how long a step takes ([`TimingModel`]: new prefill tokens, their attention to
//!   cached context, decoding sequences and their context), divided by `speedup_ratio`.
//! - `sequence`: per-request state and deterministic pseudo-random output tokens.
//!
//! `generate` validates the request, hashes the prompt's full blocks, hands it to the task over
//! a channel and returns the receiving half of a small bounded per-request channel as the
//! [`EngineStream`]. Dropping that stream closes the channel; the scheduler sees it at its next
//! step and releases the slot and the blocks (which stay cached). Output tokens are never EOS; a
//! request ends with `Length` at `max_tokens`, or `Stop` if it happens to sample one of its
//! `stop_token_ids`. The first output carries `cached_tokens`: prompt tokens found in the cache.
//!
//! With [`MockerConfig::events`] set, the engine publishes
//! [`EngineEvent::Kv`](crate::EngineEvent::Kv) after each step that changed the cache (ids 1, 2,
//! 3, ...) and [`EngineEvent::Load`](crate::EngineEvent::Load) when its load changed (at most
//! every 10 ms of simulated time, and when it goes idle).
//! [`MockerEngine::dump_cache_state`] describes the whole cache for a router that starts late.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream;
use switchyard_kv_index::hashing::BlockHasher;
use switchyard_protocol::kv::KvCacheEvent;
use switchyard_protocol::{EngineCapabilities, EngineOutput, FinishReason, PreprocessedRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Engine, EngineError, EngineEventSink, EngineInfo, EngineStream};

pub mod kv;
mod scheduler;
mod sequence;
pub mod timing;

pub use timing::{StepShape, TimingModel};

use scheduler::{BatchLimits, Command, Counters, Scheduler};
use sequence::{Sequence, TokenSampler};

/// Items buffered per request between the scheduler and the client. Small on purpose: when a
/// client lags, the scheduler merges further tokens into one pending item instead.
const OUTPUT_CHANNEL_CAPACITY: usize = 16;

/// Configuration of a [`MockerEngine`].
#[derive(Clone)]
pub struct MockerConfig {
    /// Simulated time is divided by this; 0 means no simulated delay at all.
    pub speedup_ratio: f64,
    /// KV cache block size in tokens.
    pub block_size: u32,
    /// KV cache capacity in blocks.
    pub num_gpu_blocks: usize,
    /// Most sequences in the running batch.
    pub max_num_seqs: usize,
    /// Most tokens computed in one step (prefill chunks plus one per decoding sequence).
    pub max_num_batched_tokens: u32,
    /// Reuse cached prompt prefixes (and publish KV events about them), as vLLM's
    /// `--enable-prefix-caching`.
    pub enable_prefix_caching: bool,
    /// Most requests queued before `generate` answers `Overloaded`.
    pub max_waiting_requests: usize,
    /// Output token ids are drawn from `[0, vocab_size)`.
    pub vocab_size: u32,
    pub timing: TimingModel,
    /// Where KV events and load reports go; `None`: nowhere (and none are recorded).
    pub events: Option<Arc<dyn EngineEventSink>>,
}

impl fmt::Debug for MockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockerConfig")
            .field("speedup_ratio", &self.speedup_ratio)
            .field("block_size", &self.block_size)
            .field("num_gpu_blocks", &self.num_gpu_blocks)
            .field("max_num_seqs", &self.max_num_seqs)
            .field("max_num_batched_tokens", &self.max_num_batched_tokens)
            .field("enable_prefix_caching", &self.enable_prefix_caching)
            .field("max_waiting_requests", &self.max_waiting_requests)
            .field("vocab_size", &self.vocab_size)
            .field("timing", &self.timing)
            .field("events", &self.events.as_ref().map(|_| "EngineEventSink"))
            .finish()
    }
}

impl Default for MockerConfig {
    fn default() -> Self {
        MockerConfig {
            speedup_ratio: 1.0,
            block_size: 16,
            num_gpu_blocks: 16_384,
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            enable_prefix_caching: true,
            max_waiting_requests: 65_536,
            vocab_size: 32_000,
            timing: TimingModel::default(),
            events: None,
        }
    }
}

/// Block ids are `u32` with one value reserved.
const MAX_GPU_BLOCKS: usize = u32::MAX as usize - 1;

impl MockerConfig {
    /// Checks every field; the message names the field and the accepted range.
    pub fn validate(&self) -> Result<(), MockerConfigError> {
        let fail = |msg: String| Err(MockerConfigError(msg));
        if !self.speedup_ratio.is_finite() || self.speedup_ratio < 0.0 {
            return fail(format!(
                "speedup_ratio must be a finite number >= 0 (0 = no simulated delay), got {}",
                self.speedup_ratio
            ));
        }
        for (name, value) in [
            ("block_size", self.block_size as usize),
            ("num_gpu_blocks", self.num_gpu_blocks),
            ("max_num_seqs", self.max_num_seqs),
            (
                "max_num_batched_tokens",
                self.max_num_batched_tokens as usize,
            ),
            ("max_waiting_requests", self.max_waiting_requests),
            ("vocab_size", self.vocab_size as usize),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        if self.num_gpu_blocks > MAX_GPU_BLOCKS {
            return fail(format!(
                "num_gpu_blocks must be at most {MAX_GPU_BLOCKS}, got {}",
                self.num_gpu_blocks
            ));
        }
        self.timing.validate().map_err(MockerConfigError)
    }
}

/// A [`MockerConfig`] that cannot run, or no Tokio runtime to run it on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mocker engine: {0}")]
pub struct MockerConfigError(String);

/// The simulated engine. Dropping it lets the scheduler task finish the requests it holds and
/// exit.
pub struct MockerEngine {
    /// With prefix caching on, prompts are hashed on the caller's task, by their cache key.
    config: MockerConfig,
    intake: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
}

impl MockerEngine {
    /// Validates `config` and starts the scheduler task on the current Tokio runtime.
    pub fn new(config: MockerConfig) -> Result<Self, MockerConfigError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| MockerConfigError("must be created inside a Tokio runtime".to_owned()))?;
        let counters = Arc::new(Counters::default());
        let kv = kv::KvManager::new(
            config.block_size as usize,
            config.num_gpu_blocks,
            config.enable_prefix_caching,
            config.events.is_some(),
        );
        let scheduler = Scheduler::new(
            BatchLimits {
                max_num_seqs: config.max_num_seqs,
                max_num_batched_tokens: config.max_num_batched_tokens as usize,
            },
            kv,
            config.timing,
            counters.clone(),
            config.events.clone(),
        );
        let (intake, intake_rx) = mpsc::unbounded_channel();
        runtime.spawn(scheduler::run(scheduler, intake_rx, config.speedup_ratio));
        Ok(MockerEngine {
            config,
            intake,
            counters,
        })
    }

    pub fn config(&self) -> &MockerConfig {
        &self.config
    }

    /// Sequences in the running batch (prefilling or decoding).
    pub fn active_requests(&self) -> usize {
        self.counters.active.load(Ordering::Relaxed)
    }

    /// Requests accepted but not yet running (including preempted ones).
    pub fn waiting_requests(&self) -> usize {
        self.counters.waiting.load(Ordering::Relaxed)
    }

    /// KV blocks held by running sequences (a shared block counts once).
    pub fn kv_used_blocks(&self) -> usize {
        self.counters.kv_used_blocks.load(Ordering::Relaxed)
    }

    /// Blocks in the prefix cache, held or evictable.
    pub fn kv_cached_blocks(&self) -> usize {
        self.counters.kv_cached_blocks.load(Ordering::Relaxed)
    }

    /// Sequences preempted for recomputation since start.
    pub fn preemptions(&self) -> usize {
        self.counters.preemptions.load(Ordering::Relaxed)
    }

    /// `Stored` events describing everything cached now, parents before children, so a router
    /// that starts late can rebuild this engine's cache. Every event carries the id of the last
    /// KV event published before the snapshot (0: none yet): apply the dump, then the live
    /// events with larger ids. Answered between two scheduler steps.
    pub async fn dump_cache_state(&self) -> Result<Vec<KvCacheEvent>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::DumpCacheState(tx))?;
        rx.await.map_err(|_| scheduler_gone())
    }

    /// Drops every cached block and publishes `Cleared`, as vLLM's `reset_prefix_cache`. Like
    /// vLLM it refuses (`Ok(false)`) while running sequences hold blocks.
    pub async fn reset_prefix_cache(&self) -> Result<bool, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::ResetPrefixCache(tx))?;
        rx.await.map_err(|_| scheduler_gone())
    }

    fn command(&self, command: Command) -> Result<(), EngineError> {
        self.intake.send(command).map_err(|_| scheduler_gone())
    }

    /// KV cache capacity in blocks.
    pub fn kv_total_blocks(&self) -> usize {
        self.config.num_gpu_blocks
    }

    fn check(&self, request: &PreprocessedRequest) -> Result<(), EngineError> {
        let prompt_len = request.token_ids.len();
        if prompt_len == 0 {
            return Err(EngineError::InvalidRequest(
                "the prompt has no tokens".to_owned(),
            ));
        }
        let block_size = self.config.block_size as usize;
        let blocks = prompt_len.div_ceil(block_size);
        if blocks > self.config.num_gpu_blocks {
            return Err(EngineError::InvalidRequest(format!(
                "a prompt of {prompt_len} tokens needs {blocks} KV blocks of {block_size} tokens; \
                 this engine has {}",
                self.config.num_gpu_blocks
            )));
        }
        let waiting = self.waiting_requests();
        if waiting >= self.config.max_waiting_requests {
            return Err(EngineError::Overloaded(format!(
                "{waiting} requests already waiting"
            )));
        }
        Ok(())
    }
}

fn scheduler_gone() -> EngineError {
    EngineError::Failed("mocker scheduler task is not running".to_owned())
}

fn single_item(item: Result<EngineOutput, EngineError>) -> EngineStream {
    Box::pin(stream::once(futures::future::ready(item)))
}

impl Engine for MockerEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        if request.stop.max_tokens == 0 {
            return single_item(Ok(EngineOutput::default().finished(FinishReason::Length)));
        }
        if let Err(error) = self.check(&request) {
            return single_item(Err(error));
        }
        let (tx, rx) = mpsc::channel(OUTPUT_CHANNEL_CAPACITY);
        let seed = TokenSampler::seed_for(request.sampling.seed, &request.token_ids);
        // Hashed here, on the caller's task, so many callers hash in parallel.
        let hasher = self
            .config
            .enable_prefix_caching
            .then(|| BlockHasher::for_cache_key(self.config.block_size, &request.cache_key));
        let hashes = hasher
            .map(|h| h.hash_blocks(&request.token_ids))
            .unwrap_or_default();
        let sequence = Sequence::new(
            request.request_id,
            request.token_ids,
            hasher,
            hashes,
            request.stop,
            TokenSampler::new(seed, self.config.vocab_size)
                .with_logprobs(request.sampling.logprobs),
            tx,
        );
        // Counted before sending so the scheduler's decrement can never run first.
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        if self.command(Command::Generate(sequence)).is_err() {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
            return single_item(Err(scheduler_gone()));
        }
        Box::pin(ReceiverStream::new(rx))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "mocker",
            kv_block_size: Some(self.config.block_size),
            kv_total_blocks: Some(self.config.num_gpu_blocks as u64),
            capabilities: EngineCapabilities::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        assert!(MockerConfig::default().validate().is_ok());
        let cases = [
            MockerConfig {
                speedup_ratio: -1.0,
                ..Default::default()
            },
            MockerConfig {
                speedup_ratio: f64::INFINITY,
                ..Default::default()
            },
            MockerConfig {
                block_size: 0,
                ..Default::default()
            },
            MockerConfig {
                vocab_size: 0,
                ..Default::default()
            },
            MockerConfig {
                num_gpu_blocks: usize::MAX,
                ..Default::default()
            },
        ];
        let fields = [
            "speedup_ratio",
            "speedup_ratio",
            "block_size",
            "vocab_size",
            "num_gpu_blocks",
        ];
        for (config, field) in cases.iter().zip(fields) {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn new_outside_runtime_is_an_error_not_a_panic() {
        let err = MockerEngine::new(MockerConfig::default()).err().unwrap();
        assert!(err.to_string().contains("Tokio runtime"));
    }
}
