//! The CPU engine: a real language model (GGUF, Llama family) run with candle's quantized CPU
//! kernels, behind the same [`Engine`] trait as the simulated ones.
//!
//! - [`model::LlamaModel`]: the transformer, loaded once and shared (weights are read-only);
//!   its `forward` runs a batch of sequences, each against its own KV cache
//!   ([`model::SeqKv`]).
//! - `scheduler`: one dedicated OS thread per engine (never the async reactor) runs the step
//!   loop: admit waiting requests up to `max_num_seqs`, reuse cached prompt prefixes, build a
//!   step of at most `max_step_tokens` tokens (one per decoding sequence, then prefill chunks),
//!   run it, sample, stream the tokens, store completed blocks in the prefix cache and publish
//!   KV events and load. Matrix work fans out to candle's thread pool (`CANDLE_NUM_THREADS`).
//! - [`prefix::PrefixCache`]: bounded LRU of KV blocks keyed by the same block hashes as the
//!   router's (`switchyard_kv_index::hashing::BlockHasher`, salted by the request's cache key).
//! - [`sampler::Sampler`]: greedy (temperature 0) or seeded temperature / top-k / top-p / min-p
//!   sampling with penalties.
//! - `logit_bias` is added to the logits before sampling; structured output
//!   (`SamplingOptions::guided`) compiles the request's JSON Schema (or any JSON object) on the
//!   engine thread when the sequence is admitted, never on the async reactor
//!   (`switchyard_structured`; an unsupported schema is `InvalidRequest`) and, each
//!   step, sets every token the document cannot continue with to −∞ before sampling, greedy
//!   or seeded (greedy checks the argmax alone first and masks only when it is refused). The
//!   vocabulary's bytes come from the GGUF file's `tokenizer.ggml.*`. A complete document ends
//!   the sequence with `stop`: at once when nothing may follow (a closed object), else when
//!   the sampler picks EOS, the only other token then allowed; `max_tokens` still cuts it
//!   (`length`). Logprobs stay those of the model's raw logits, before bias and mask. A
//!   migrated request (`resumed_output_tokens`) first walks the matcher over the output it
//!   already has, so the document continues rather than starting over.
//!
//! Cancellation: dropping the [`EngineStream`] closes its channel; the scheduler checks every
//! sequence before each step, so a cancelled request costs at most the step in flight.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream;
use switchyard_engines::{Engine, EngineError, EngineEventSink, EngineInfo, EngineStream};
use switchyard_kv_index::hashing::BlockHasher;
use switchyard_protocol::kv::KvCacheEvent;
use switchyard_protocol::{EngineCapabilities, EngineOutput, FinishReason, PreprocessedRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

mod guided;
pub mod model;
pub mod prefix;
pub mod sampler;
mod scheduler;

pub use model::{LlamaConfig, LlamaModel, ModelError, WeightFormat};

/// How a [`CpuEngine`] schedules and caches.
#[derive(Clone)]
pub struct CpuEngineConfig {
    /// Tokens per KV block: the granularity of prefix reuse and of KV events (the router must
    /// hash prompts with the same size).
    pub block_size: u32,
    /// Blocks the prefix cache keeps (each holds `block_size` tokens of every layer's K and V).
    pub prefix_cache_blocks: usize,
    /// Reuse cached prompt prefixes and publish KV events about them.
    pub enable_prefix_caching: bool,
    /// Sequences computed together; more wait.
    pub max_num_seqs: usize,
    /// Most tokens one step computes (decodes first, then prefill chunks): bounds a step's time,
    /// so cancellation and newly arrived requests wait at most that long.
    pub max_step_tokens: usize,
    /// Most requests waiting before `generate` answers `Overloaded`.
    pub max_waiting_requests: usize,
    /// Where KV events and load reports go.
    pub events: Option<Arc<dyn EngineEventSink>>,
}

impl Default for CpuEngineConfig {
    fn default() -> Self {
        CpuEngineConfig {
            block_size: 16,
            prefix_cache_blocks: 512,
            enable_prefix_caching: true,
            max_num_seqs: 8,
            max_step_tokens: 256,
            max_waiting_requests: 1024,
            events: None,
        }
    }
}

impl std::fmt::Debug for CpuEngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuEngineConfig")
            .field("block_size", &self.block_size)
            .field("prefix_cache_blocks", &self.prefix_cache_blocks)
            .field("enable_prefix_caching", &self.enable_prefix_caching)
            .field("max_num_seqs", &self.max_num_seqs)
            .field("max_step_tokens", &self.max_step_tokens)
            .field("max_waiting_requests", &self.max_waiting_requests)
            .field("events", &self.events.as_ref().map(|_| "EngineEventSink"))
            .finish()
    }
}

impl CpuEngineConfig {
    pub fn validate(&self) -> Result<(), CpuEngineError> {
        for (name, value) in [
            ("block_size", self.block_size as usize),
            ("max_num_seqs", self.max_num_seqs),
            ("max_step_tokens", self.max_step_tokens),
            ("max_waiting_requests", self.max_waiting_requests),
        ] {
            if value == 0 {
                return Err(CpuEngineError::Config(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Why a CPU engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum CpuEngineError {
    #[error("cpu engine: {0}")]
    Config(String),
    #[error("cpu engine: {0}")]
    Model(#[from] ModelError),
}

/// Loads a GGUF model: `path` is the file, or a folder holding exactly one `.gguf` file.
/// Blocking (reads the whole file): call it off the async reactor.
pub fn load_model(
    path: &std::path::Path,
    format: WeightFormat,
) -> Result<Arc<LlamaModel>, CpuEngineError> {
    let file = resolve_gguf(path)?;
    Ok(Arc::new(LlamaModel::load(&file, format)?))
}

/// The GGUF file `path` names: itself, or the single `.gguf` file inside the folder.
pub fn resolve_gguf(path: &std::path::Path) -> Result<PathBuf, CpuEngineError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        CpuEngineError::Config(format!(
            "--model-path {}: neither a GGUF file nor a readable folder ({e})",
            path.display()
        ))
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CpuEngineError::Config(format!(
            "folder {} holds no .gguf file (the cpu engine runs GGUF models)",
            path.display()
        ))),
        n => Err(CpuEngineError::Config(format!(
            "folder {} holds {n} .gguf files; pass one of them",
            path.display()
        ))),
    }
}

/// Counters the engine thread updates and callers read.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) waiting: AtomicUsize,
    pub(crate) running: AtomicUsize,
    pub(crate) cached_blocks: AtomicUsize,
}

/// The CPU engine. Dropping it (and every stream it returned) stops its thread.
pub struct CpuEngine {
    config: CpuEngineConfig,
    model_config: LlamaConfig,
    /// The model's vocabulary is readable as bytes, so structured output can be decoded.
    structured_output: bool,
    intake: mpsc::UnboundedSender<scheduler::Command>,
    counters: Arc<Counters>,
}

impl CpuEngine {
    /// Starts an engine on `model` (shareable between engines: the weights are read-only).
    pub fn new(model: Arc<LlamaModel>, config: CpuEngineConfig) -> Result<Self, CpuEngineError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let (intake, intake_rx) = mpsc::unbounded_channel();
        let model_config = model.config().clone();
        let structured_output = model.vocab().is_some();
        let scheduler = scheduler::Scheduler::new(model, config.clone(), counters.clone());
        std::thread::Builder::new()
            .name("cpu-engine".to_string())
            .spawn(move || scheduler.run(intake_rx))
            .map_err(|e| CpuEngineError::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(CpuEngine {
            config,
            model_config,
            structured_output,
            intake,
            counters,
        })
    }

    pub fn model_config(&self) -> &LlamaConfig {
        &self.model_config
    }

    pub fn config(&self) -> &CpuEngineConfig {
        &self.config
    }

    /// Requests accepted and not yet running.
    pub fn waiting_requests(&self) -> usize {
        self.counters.waiting.load(Ordering::Relaxed)
    }

    /// Sequences being computed.
    pub fn active_requests(&self) -> usize {
        self.counters.running.load(Ordering::Relaxed)
    }

    /// Blocks in the prefix cache.
    pub fn cached_blocks(&self) -> usize {
        self.counters.cached_blocks.load(Ordering::Relaxed)
    }

    /// `Stored` events describing the whole prefix cache, parents first, each carrying the id
    /// of the last KV event published before the snapshot (apply it, then later live events).
    pub async fn dump_cache_state(&self) -> Result<Vec<KvCacheEvent>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.intake
            .send(scheduler::Command::Dump(tx))
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())
    }

    fn check(&self, request: &PreprocessedRequest) -> Result<(), EngineError> {
        let prompt = request.token_ids.len();
        if prompt == 0 {
            return Err(EngineError::InvalidRequest(
                "the prompt has no tokens".to_owned(),
            ));
        }
        if prompt >= self.model_config.context_length {
            return Err(EngineError::InvalidRequest(format!(
                "a prompt of {prompt} tokens leaves no room in the context of {} tokens",
                self.model_config.context_length
            )));
        }
        let vocab = self.model_config.vocab_size;
        if let Some(bad) = request.token_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        sampler::validate(&request.sampling).map_err(EngineError::InvalidRequest)?;
        if let Some(&(token, bias)) = request
            .sampling
            .logit_bias
            .iter()
            .find(|&&(t, b)| t as usize >= vocab || !b.is_finite())
        {
            return Err(EngineError::InvalidRequest(format!(
                "logit_bias {bias} for token {token}: the token must be below {vocab} and the bias finite"
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

fn engine_gone() -> EngineError {
    EngineError::Failed("the cpu engine thread is not running".to_owned())
}

fn single_item(item: Result<EngineOutput, EngineError>) -> EngineStream {
    Box::pin(stream::once(futures::future::ready(item)))
}

impl Engine for CpuEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        if request.stop.max_tokens == 0 {
            return single_item(Ok(EngineOutput::default().finished(FinishReason::Length)));
        }
        if let Err(error) = self.check(&request) {
            return single_item(Err(error));
        }
        // Hashed here, on the caller's task, so many callers hash in parallel.
        let hasher = self
            .config
            .enable_prefix_caching
            .then(|| BlockHasher::for_cache_key(self.config.block_size, &request.cache_key));
        let (tx, rx) = mpsc::unbounded_channel();
        let sequence = scheduler::Sequence::new(request, hasher, tx);
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        if self
            .intake
            .send(scheduler::Command::Generate(Box::new(sequence)))
            .is_err()
        {
            self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
            return single_item(Err(engine_gone()));
        }
        Box::pin(UnboundedReceiverStream::new(rx))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "cpu",
            kv_block_size: Some(self.config.block_size),
            kv_total_blocks: Some(self.config.prefix_cache_blocks as u64),
            capabilities: EngineCapabilities {
                logit_bias: true,
                structured_output: self.structured_output,
                json_schema_subset: self.structured_output,
            },
        }
    }
}
