//! The engine thread's step loop (see the crate docs).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use candle_core::Tensor;
use candle_core::{CpuStorage, Storage};
use switchyard_engines::{EngineError, EngineEvent, EngineLoad};
use switchyard_kv_index::hashing::{BlockHasher, SequenceHashes};
use switchyard_protocol::kv::{KvCacheEvent, StoredBlock};
use switchyard_protocol::{
    EngineOutput, FinishReason, OutputLogprobs, PreprocessedRequest, StopConditions, TokenId,
    TokenLogprob,
};
use tokio::sync::{mpsc, oneshot};

use crate::guided::{self, GuideScratch, Guided, apply_logit_bias};
use crate::model::{BatchEntry, LlamaModel, ModelError, SeqKv};
use crate::prefix::PrefixCache;
use crate::sampler::Sampler;
use crate::{Counters, CpuEngineConfig};

pub(crate) enum Command {
    Generate(Box<Sequence>),
    Dump(oneshot::Sender<Vec<KvCacheEvent>>),
}

type Output = mpsc::UnboundedSender<Result<EngineOutput, EngineError>>;

/// One request's state on the engine thread.
pub(crate) struct Sequence {
    request: PreprocessedRequest,
    /// Prompt then generated tokens; the KV cache holds the first `cache.len()` of them.
    tokens: Vec<TokenId>,
    generated: u32,
    /// Full blocks of `tokens`, hashed by the request's cache key (`None`: no prefix caching).
    hashes: Option<SequenceHashes>,
    /// Leading blocks of `hashes` already in the prefix cache.
    stored_blocks: usize,
    cache: Option<SeqKv>,
    /// Reported once, on the first output.
    cached_tokens: Option<u32>,
    sampler: Option<Sampler>,
    /// The structured-output constraint, if the request has one (compiled at admission).
    guided: Option<Guided>,
    tx: Output,
}

impl Sequence {
    pub(crate) fn new(
        request: PreprocessedRequest,
        hasher: Option<BlockHasher>,
        tx: Output,
    ) -> Self {
        let hashes = hasher.map(|h| SequenceHashes::from_tokens(h, &request.token_ids));
        let mut tokens = Vec::with_capacity(
            request.token_ids.len() + (request.stop.max_tokens as usize).min(1024),
        );
        tokens.extend_from_slice(&request.token_ids);
        Sequence {
            request,
            tokens,
            generated: 0,
            hashes,
            stored_blocks: 0,
            cache: None,
            cached_tokens: None,
            sampler: None,
            guided: None,
            tx,
        }
    }

    fn stop(&self) -> &StopConditions {
        &self.request.stop
    }

    fn computed(&self) -> usize {
        self.cache.as_ref().map_or(0, SeqKv::len)
    }

    /// Tokens still to run through the model.
    fn pending(&self) -> usize {
        self.tokens.len() - self.computed()
    }

    fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }
}

pub(crate) struct Scheduler {
    model: Arc<LlamaModel>,
    config: CpuEngineConfig,
    counters: Arc<Counters>,
    waiting: VecDeque<Box<Sequence>>,
    running: Vec<Sequence>,
    prefix: PrefixCache,
    /// Id of the last KV event published.
    last_event_id: u64,
    last_load: Option<EngineLoad>,
    /// Sampling scratch, reused for every token.
    candidates: Vec<(f32, TokenId)>,
    logits_row: Vec<f32>,
    guide: GuideScratch,
}

impl Scheduler {
    pub(crate) fn new(
        model: Arc<LlamaModel>,
        config: CpuEngineConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let capacity = if config.enable_prefix_caching {
            config.prefix_cache_blocks
        } else {
            0
        };
        Scheduler {
            model,
            counters,
            waiting: VecDeque::new(),
            running: Vec::new(),
            prefix: PrefixCache::new(capacity),
            last_event_id: 0,
            last_load: None,
            candidates: Vec::new(),
            logits_row: Vec::new(),
            guide: GuideScratch::default(),
            config,
        }
    }

    /// Runs until every sender (the engine and its streams' requests) is gone.
    pub(crate) fn run(mut self, mut intake: mpsc::UnboundedReceiver<Command>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish_load();
                match intake.blocking_recv() {
                    Some(command) => self.handle(command),
                    None => return,
                }
            }
            loop {
                match intake.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        if self.running.is_empty() && self.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.step();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Generate(sequence) => self.waiting.push_back(sequence),
            Command::Dump(reply) => {
                let event_id = self.last_event_id;
                let events = self
                    .prefix
                    .snapshot()
                    .into_iter()
                    .map(|data| KvCacheEvent { event_id, data })
                    .collect();
                let _ = reply.send(events);
            }
        }
    }

    /// Drops cancelled sequences, admits waiting ones, runs one model step, emits its tokens.
    fn step(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.cancelled());
        let mut dequeued = before - self.waiting.len();
        self.running.retain(|s| !s.cancelled());

        while self.running.len() < self.config.max_num_seqs {
            let Some(mut sequence) = self.waiting.pop_front() else {
                break;
            };
            dequeued += 1;
            match self.admit(&mut sequence) {
                Ok(()) => self.running.push(*sequence),
                Err(e) => {
                    let _ = sequence.tx.send(Err(e));
                }
            }
        }
        self.counters.waiting.fetch_sub(dequeued, Ordering::Relaxed);
        self.counters
            .running
            .store(self.running.len(), Ordering::Relaxed);
        if self.running.is_empty() {
            return;
        }

        // Decodes first (one token each), then prefill chunks from what is left of the budget.
        let mut budget = self.config.max_step_tokens;
        let mut plan: Vec<usize> = vec![0; self.running.len()];
        for (i, s) in self.running.iter().enumerate() {
            if s.pending() == 1 {
                plan[i] = 1;
                budget = budget.saturating_sub(1);
            }
        }
        for (i, s) in self.running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let pending = s.pending();
            if pending > 1 {
                plan[i] = pending.min(budget);
                budget -= plan[i];
            }
        }

        let result = {
            let mut entries: Vec<BatchEntry<'_>> = Vec::with_capacity(self.running.len());
            for (s, &n) in self.running.iter_mut().zip(&plan) {
                let start = s.computed();
                let want_logits = n > 0 && start + n == s.tokens.len();
                let tokens = &s.tokens[start..start + n];
                let cache = s.cache.as_mut().expect("admitted sequences have a cache");
                entries.push(BatchEntry {
                    tokens,
                    cache,
                    want_logits,
                });
            }
            self.model.forward(&mut entries)
        };
        let logits = match result {
            Ok(logits) => logits,
            Err(e) => {
                tracing::error!(error = %e, "cpu engine step failed; failing its requests");
                for s in self.running.drain(..) {
                    let _ =
                        s.tx.send(Err(EngineError::Failed(format!("model step failed: {e}"))));
                }
                self.counters.running.store(0, Ordering::Relaxed);
                return;
            }
        };

        let mut row = 0;
        let mut finished = Vec::new();
        for (i, &n) in plan.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let sequence = &mut self.running[i];
            if sequence.pending() > 0 {
                // A prefill chunk that does not end the prompt: no token yet.
                continue;
            }
            let Some(logits) = logits.as_ref() else {
                continue;
            };
            match sample_row(
                logits,
                row,
                sequence,
                &mut self.logits_row,
                &mut self.candidates,
                &mut self.guide,
            ) {
                Ok(done) => {
                    if done {
                        finished.push(i);
                    }
                }
                Err(e) => {
                    let _ = sequence
                        .tx
                        .send(Err(EngineError::Failed(format!("sampling failed: {e}"))));
                    finished.push(i);
                }
            }
            row += 1;
        }
        for i in 0..self.running.len() {
            self.store_blocks(i);
        }
        for &i in finished.iter().rev() {
            self.running.swap_remove(i);
        }
        self.counters
            .running
            .store(self.running.len(), Ordering::Relaxed);
        self.publish_kv_events();
        self.publish_load();
    }

    /// Gives a sequence its structured-output state (compiled here, on the engine thread) and
    /// its cache, filled from the prefix cache where its prompt matches.
    fn admit(&mut self, sequence: &mut Sequence) -> Result<(), EngineError> {
        sequence.guided = guided::for_request(
            &sequence.request,
            self.model.vocab(),
            self.model.eos_token(),
        )
        .map_err(EngineError::InvalidRequest)?;
        self.fill_cache(sequence)
            .map_err(|e| EngineError::Failed(e.to_string()))
    }

    /// The sequence's cache, filled from the prefix cache where its prompt matches.
    fn fill_cache(&mut self, sequence: &mut Sequence) -> Result<(), ModelError> {
        let prompt_len = sequence.tokens.len();
        let reserve = prompt_len + (sequence.stop().max_tokens as usize).min(256);
        let mut cache = self.model.new_cache(reserve)?;
        let block_size = self.config.block_size as usize;
        let mut cached = 0;
        if let Some(hashes) = &sequence.hashes {
            let blocks = self.prefix.lookup(hashes.blocks());
            for (i, block) in blocks.iter().enumerate() {
                cache.import(i * block_size, block)?;
            }
            sequence.stored_blocks = blocks.len();
            // The last prompt token is always recomputed: its logits choose the first token.
            cached = (blocks.len() * block_size).min(prompt_len - 1);
            cache.truncate(cached);
        }
        sequence.cached_tokens = Some(cached as u32);
        sequence.sampler = Some(Sampler::new(
            &sequence.request.sampling,
            &sequence.request.token_ids,
        ));
        sequence.cache = Some(cache);
        Ok(())
    }

    /// Offers the sequence's newly computed full blocks to the prefix cache.
    fn store_blocks(&mut self, i: usize) {
        let block_size = self.config.block_size as usize;
        let sequence = &mut self.running[i];
        let Some(hashes) = &sequence.hashes else {
            return;
        };
        let computed = sequence.computed();
        let blocks: &[StoredBlock] = hashes.blocks();
        while sequence.stored_blocks < blocks.len()
            && (sequence.stored_blocks + 1) * block_size <= computed
        {
            let index = sequence.stored_blocks;
            let parent = index.checked_sub(1).map(|p| blocks[p].sequence_hash);
            if !self.prefix.contains(blocks[index].sequence_hash) {
                let cache = sequence
                    .cache
                    .as_ref()
                    .expect("running sequences have a cache");
                match cache.export(index * block_size, block_size) {
                    Ok(kv) => self.prefix.insert(blocks[index], parent, kv),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot copy a KV block into the prefix cache");
                        return;
                    }
                }
            }
            sequence.stored_blocks += 1;
        }
    }

    fn publish_kv_events(&mut self) {
        let events = self.prefix.drain_events();
        self.counters
            .cached_blocks
            .store(self.prefix.len(), Ordering::Relaxed);
        let Some(sink) = &self.config.events else {
            return;
        };
        for data in events {
            self.last_event_id += 1;
            sink.publish(EngineEvent::Kv(KvCacheEvent {
                event_id: self.last_event_id,
                data,
            }));
        }
    }

    fn publish_load(&mut self) {
        let Some(sink) = &self.config.events else {
            return;
        };
        let block_size = self.config.block_size as usize;
        let load = EngineLoad {
            active_requests: self.running.len() as u32,
            waiting_requests: self.waiting.len() as u32,
            kv_used_blocks: self
                .running
                .iter()
                .map(|s| s.computed().div_ceil(block_size) as u64)
                .sum(),
            kv_total_blocks: self.prefix.capacity() as u64,
            kv_cached_blocks: self.prefix.len() as u64,
        };
        if self.last_load != Some(load) {
            self.last_load = Some(load);
            sink.publish(EngineEvent::Load(load));
        }
    }
}

/// Samples the next token of `sequence` from row `row` of `logits`, sends it, and says whether
/// the sequence is finished.
fn sample_row(
    logits: &Tensor,
    row: usize,
    sequence: &mut Sequence,
    scratch_row: &mut Vec<f32>,
    candidates: &mut Vec<(f32, TokenId)>,
    guide: &mut GuideScratch,
) -> Result<bool, String> {
    copy_row(logits, row, scratch_row).map_err(|e| e.to_string())?;
    let sampler = sequence
        .sampler
        .as_mut()
        .expect("admitted sequences have a sampler");
    // Logprobs are of the model's own distribution (vLLM's default): the row as the model gave
    // it, before logit_bias, the grammar's mask, penalties and temperature. Copied only when
    // asked for.
    let wanted = sequence.request.sampling.logprobs;
    let raw_row = wanted.map(|_| scratch_row.clone());
    apply_logit_bias(&sequence.request.sampling.logit_bias, scratch_row);
    let token = match sequence.guided.as_mut() {
        None => sampler.sample(scratch_row, candidates),
        Some(guided) => match guided.choose(scratch_row, sampler, candidates, guide)? {
            Some(token) => token,
            None => {
                // A complete document that nothing may follow: end here, without a token.
                let mut output = EngineOutput::default().finished(FinishReason::Stop);
                output.cached_tokens = sequence.cached_tokens.take();
                let _ = sequence.tx.send(Ok(output));
                return Ok(true);
            }
        },
    };
    let logprobs = match (wanted, raw_row) {
        (Some(k), Some(raw)) => {
            let (logprob, top) = crate::sampler::logprobs(&raw, token, k as usize, candidates);
            Some(OutputLogprobs {
                logprob,
                top: top
                    .into_iter()
                    .map(|(token_id, logprob)| TokenLogprob { token_id, logprob })
                    .collect(),
            })
        }
        _ => None,
    };
    sequence.tokens.push(token);
    sequence.generated += 1;
    if let Some(hashes) = &mut sequence.hashes {
        hashes.push(token);
    }
    let stop = sequence.stop();
    let finish = if stop.is_stop_token(token, sequence.generated)
        || sequence.guided.as_ref().is_some_and(Guided::done)
    {
        Some(FinishReason::Stop)
    } else if sequence.generated >= stop.max_tokens
        || sequence.tokens.len() >= context_limit(sequence)
    {
        Some(FinishReason::Length)
    } else {
        None
    };
    let mut output = EngineOutput::token(token);
    output.logprobs.extend(logprobs);
    if let Some(cached) = sequence.cached_tokens.take() {
        output.cached_tokens = Some(cached);
    }
    if let Some(reason) = finish {
        output = output.finished(reason);
    }
    // A closed channel means the client left; the sequence is dropped at the next step.
    let _ = sequence.tx.send(Ok(output));
    Ok(finish.is_some())
}

/// The context length, as the cache's capacity limit for this sequence.
fn context_limit(sequence: &Sequence) -> usize {
    sequence
        .cache
        .as_ref()
        .map_or(usize::MAX, SeqKv::context_length)
}

/// Copies row `row` of a `(rows, vocab)` f32 tensor into `out` without allocating a new vector.
fn copy_row(logits: &Tensor, row: usize, out: &mut Vec<f32>) -> Result<(), ModelError> {
    let (_, vocab) = logits.dims2()?;
    let row_tensor = logits.get(row)?;
    let (storage, layout) = row_tensor.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return Err(ModelError::Unsupported(
            "logits are not f32 on the CPU".into(),
        ));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(ModelError::Unsupported("logits are not contiguous".into()));
    };
    out.clear();
    out.extend_from_slice(&data[start..end]);
    debug_assert_eq!(out.len(), vocab);
    Ok(())
}
