//! The mocker's scheduler: a waiting queue, a running batch, and one step at a time.
//!
//! Each step (vLLM v1 style, chunked prefill always on):
//! 1. sequences whose client went away leave the batch and release their blocks;
//! 2. running sequences, oldest first, get the tokens they still need (1 when decoding, the rest
//!    of the prompt when prefilling) within the step's token budget; when the KV pool cannot
//!    grow even by evicting cached blocks, the newest running sequence is preempted (its blocks
//!    released, its tokens recomputed later);
//! 3. if nothing was preempted, waiting sequences are admitted in arrival order while there are
//!    batch slots, budget and blocks (the head waits if it does not fit: strict FCFS). Each
//!    admitted sequence first looks its known tokens up in the prefix cache and shares the
//!    longest cached prefix (vLLM always recomputes at least the last token, whose logits give
//!    the next one), so only the rest is prefilled;
//! 4. the step runs: every scheduled sequence computes its tokens, samples one if it caught up,
//!    registers the blocks it filled in the prefix cache and hands its output to its channel;
//!    finished sequences release their blocks (which stay cached until evicted). KV events
//!    recorded during the step are published, then a load report (rate-limited).
//!
//! [`Scheduler::begin_step`] (1–3) and [`Scheduler::complete_step`] (4) are synchronous; [`run`]
//! owns the clock and sleeps the step's simulated duration between them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData};
use switchyard_protocol::{FinishReason, TokenId};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::kv::KvManager;
use super::sequence::{Delivery, Sequence};
use super::timing::{StepShape, TimingModel};
use crate::{EngineEvent, EngineEventSink, EngineLoad};

/// Load reports go out at most this often, in simulated milliseconds (and whenever the engine
/// goes idle), so a busy engine sends tens per simulated second, not one per step.
const LOAD_REPORT_INTERVAL_MS: f64 = 10.0;

/// Live numbers shared between the scheduler task and the engine handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests accepted by `generate` and not yet in the running batch.
    pub waiting: AtomicUsize,
    /// Sequences in the running batch.
    pub active: AtomicUsize,
    /// KV blocks held by running sequences.
    pub kv_used_blocks: AtomicUsize,
    /// Blocks in the prefix cache.
    pub kv_cached_blocks: AtomicUsize,
    /// Sequences preempted (KV dropped for recomputation) since start.
    pub preemptions: AtomicUsize,
}

/// Batch limits of the simulated engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

/// What the engine handle asks of its scheduler task.
// Nearly every command is `Generate`: boxing it would add an allocation per request to save
// channel slot space for the rare control commands.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Generate(Sequence),
    /// Answer with `Stored` events describing the whole prefix cache.
    DumpCacheState(oneshot::Sender<Vec<KvCacheEvent>>),
    /// Drop every cached block if no sequence holds blocks; answer whether it did.
    ResetPrefixCache(oneshot::Sender<bool>),
}

/// Numbers and publishes the engine's events.
struct Publisher {
    sink: Option<Arc<dyn EngineEventSink>>,
    /// Id of the last published KV event; the first one is 1.
    last_event_id: u64,
    /// Reused between steps so publishing allocates nothing per step.
    scratch: Vec<KvCacheEventData>,
    /// Whether the sink wants stored blocks' token ids, and their buffer (reused).
    wants_tokens: bool,
    token_scratch: Vec<TokenId>,
    last_load: Option<EngineLoad>,
    last_load_ms: f64,
}

pub(crate) struct Scheduler {
    limits: BatchLimits,
    kv: KvManager,
    /// Whether sequences hash their blocks and reuse cached ones.
    prefix_caching: bool,
    timing: TimingModel,
    waiting: VecDeque<Sequence>,
    /// In admission order: the last one is the newest, the first to be preempted.
    running: Vec<Sequence>,
    counters: Arc<Counters>,
    publisher: Publisher,
    /// Simulated time of the step being run, ms (before speed-up).
    step_ms: f64,
    /// Simulated time since start, ms: the sum of step times.
    clock_ms: f64,
}

impl Scheduler {
    /// `kv` records events iff `sink` is present.
    pub fn new(
        limits: BatchLimits,
        kv: KvManager,
        timing: TimingModel,
        counters: Arc<Counters>,
        sink: Option<Arc<dyn EngineEventSink>>,
    ) -> Self {
        let mut kv = kv;
        let wants_tokens = sink.as_ref().is_some_and(|s| s.wants_block_tokens());
        if wants_tokens {
            kv.record_block_tokens();
        }
        let prefix_caching = kv.prefix_caching();
        Scheduler {
            limits,
            kv,
            prefix_caching,
            timing,
            waiting: VecDeque::new(),
            running: Vec::with_capacity(limits.max_num_seqs),
            counters,
            publisher: Publisher {
                sink,
                last_event_id: 0,
                scratch: Vec::new(),
                wants_tokens,
                token_scratch: Vec::new(),
                last_load: None,
                last_load_ms: 0.0,
            },
            step_ms: 0.0,
            clock_ms: 0.0,
        }
    }

    /// Queues a sequence; `generate` already counted it in `counters.waiting`.
    pub fn enqueue(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    pub fn handle(&mut self, command: Command) {
        match command {
            Command::Generate(seq) => self.enqueue(seq),
            Command::DumpCacheState(reply) => {
                let _ = reply.send(self.dump_cache_state());
            }
            Command::ResetPrefixCache(reply) => {
                let _ = reply.send(self.reset_prefix_cache());
            }
        }
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Simulated duration of the step begun last, ms (before speed-up).
    pub fn step_ms(&self) -> f64 {
        self.step_ms
    }

    /// Decides what the next step computes; returns its shape (its simulated time is then
    /// [`Self::step_ms`]). The step's results appear only at [`Self::complete_step`], after the
    /// simulated time has passed.
    pub fn begin_step(&mut self) -> StepShape {
        self.drop_cancelled();
        let mut budget = self.limits.max_num_batched_tokens;
        let preempted = self.schedule_running(&mut budget);
        if !preempted {
            self.admit_waiting(&mut budget);
        }
        self.publish_counters();
        let mut shape = StepShape::default();
        for seq in self.running.iter().filter(|seq| seq.scheduled > 0) {
            if seq.is_decoding() {
                shape.add_decode(seq.total_tokens());
            } else {
                shape.add_prefill(seq.scheduled, seq.computed);
            }
        }
        self.step_ms = self.timing.step_ms(shape);
        shape
    }

    /// Applies the step begun by [`Self::begin_step`]: samples tokens, fills the prefix cache,
    /// delivers output, retires finished and cancelled sequences, publishes events.
    pub fn complete_step(&mut self) {
        let Scheduler {
            kv,
            prefix_caching,
            running,
            ..
        } = self;
        running.retain_mut(|seq| {
            seq.run_scheduled();
            if *prefix_caching {
                seq.extend_hashes(seq.computed / kv.block_size());
                kv.register_full_blocks_of(&mut seq.kv, &seq.hashes, seq.computed, &seq.tokens);
            }
            let delivery = seq.deliver();
            if seq.is_finished() || delivery == Delivery::Cancelled {
                kv.release(&mut seq.kv);
                false
            } else {
                true
            }
        });
        self.clock_ms += self.step_ms;
        self.step_ms = 0.0;
        self.publish_counters();
        self.publish_kv_events();
        self.publish_load(false);
    }

    /// A whole step without the clock.
    #[cfg(test)]
    pub fn step(&mut self) -> StepShape {
        let shape = self.begin_step();
        self.complete_step();
        shape
    }

    /// `Stored` events describing the whole prefix cache. Every event carries the id of the
    /// last KV event published before it (0: none yet): the dump is the state after that event,
    /// so a receiver applies it, then the live events with larger ids.
    pub fn dump_cache_state(&mut self) -> Vec<KvCacheEvent> {
        // Anything recorded but unpublished goes out first, so the id is exact.
        self.publish_kv_events();
        let event_id = self.publisher.last_event_id;
        self.kv
            .cache_state()
            .into_iter()
            .map(|data| KvCacheEvent { event_id, data })
            .collect()
    }

    /// Drops every cached block (publishing `Cleared`) if no sequence holds blocks.
    pub fn reset_prefix_cache(&mut self) -> bool {
        let done = self.kv.reset_prefix_cache();
        self.publish_counters();
        self.publish_kv_events();
        self.publish_load(true);
        done
    }

    /// Publishes a load report if the load changed since the last one and either `now` or the
    /// report interval has passed in simulated time.
    pub fn publish_load(&mut self, now: bool) {
        let Some(sink) = &self.publisher.sink else {
            return;
        };
        let load = EngineLoad {
            active_requests: saturating_u32(self.running.len()),
            waiting_requests: saturating_u32(self.counters.waiting.load(Ordering::Relaxed)),
            kv_used_blocks: self.kv.used_blocks() as u64,
            kv_total_blocks: self.kv.total_blocks() as u64,
            kv_cached_blocks: self.kv.cached_blocks() as u64,
        };
        if self.publisher.last_load == Some(load) {
            return;
        }
        if !now && self.clock_ms - self.publisher.last_load_ms < LOAD_REPORT_INTERVAL_MS {
            return;
        }
        sink.publish(EngineEvent::Load(load));
        self.publisher.last_load = Some(load);
        self.publisher.last_load_ms = self.clock_ms;
    }

    fn publish_kv_events(&mut self) {
        let Publisher {
            sink: Some(sink),
            last_event_id,
            scratch,
            wants_tokens,
            token_scratch,
            ..
        } = &mut self.publisher
        else {
            return;
        };
        self.kv.drain_events(scratch);
        self.kv.drain_event_tokens(token_scratch);
        let block_size = self.kv.block_size();
        let mut tokens_at = 0;
        for data in scratch.drain(..) {
            *last_event_id += 1;
            let tokens = match &data {
                KvCacheEventData::Stored { blocks, .. } if *wants_tokens => {
                    let end = tokens_at + blocks.len() * block_size;
                    let tokens = token_scratch.get(tokens_at..end);
                    tokens_at = end;
                    tokens
                }
                _ => None,
            };
            let event = KvCacheEvent {
                event_id: *last_event_id,
                data,
            };
            match tokens {
                Some(tokens) => sink.publish_kv_with_tokens(event, tokens),
                None => sink.publish(EngineEvent::Kv(event)),
            }
        }
        token_scratch.clear();
    }

    fn drop_cancelled(&mut self) {
        let kv = &mut self.kv;
        self.running.retain_mut(|seq| {
            if seq.client_gone() {
                kv.release(&mut seq.kv);
                false
            } else {
                true
            }
        });
        let before = self.waiting.len();
        // Waiting sequences hold no blocks.
        self.waiting.retain(|seq| !seq.client_gone());
        self.leave_waiting(before - self.waiting.len());
    }

    /// Schedules the running batch; returns whether anything was preempted.
    fn schedule_running(&mut self, budget: &mut usize) -> bool {
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() && *budget > 0 {
            let seq = &self.running[i];
            let tokens = seq.uncomputed().min(*budget);
            let target = seq.computed + tokens;
            loop {
                if self.kv.grow(&mut self.running[i].kv, target) {
                    self.running[i].scheduled = tokens;
                    *budget -= tokens;
                    i += 1;
                    break;
                }
                let newest = self.running.len() - 1;
                if newest == 0 {
                    // Alone with the whole pool and still short: its context outgrew the cache.
                    self.running[i].finish_now(FinishReason::Length);
                    i += 1;
                    break;
                }
                if let Some(victim) = self.running.pop() {
                    self.preempt(victim);
                    preempted = true;
                }
                if newest == i {
                    break; // preempted itself
                }
            }
        }
        preempted
    }

    fn preempt(&mut self, mut victim: Sequence) {
        tracing::debug!(
            request_id = %victim.request_id,
            blocks = victim.kv.blocks(),
            "mocker: KV cache full, preempting newest sequence for recomputation"
        );
        // Its registered blocks stay cached: if nothing evicts them it gets them back on
        // readmission.
        self.kv.release(&mut victim.kv);
        self.counters.preemptions.fetch_add(1, Ordering::Relaxed);
        victim.reset_for_recompute();
        if victim.deliver() == Delivery::Cancelled {
            return;
        }
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        self.waiting.push_front(victim);
    }

    fn admit_waiting(&mut self, budget: &mut usize) {
        let block_size = self.kv.block_size();
        while self.running.len() < self.limits.max_num_seqs && *budget > 0 {
            let Some(head) = self.waiting.front_mut() else {
                break;
            };
            let total = head.total_tokens();
            let mut hit = 0;
            if self.prefix_caching {
                // At least the last token is computed: its logits produce the next token.
                let max_hit = total.saturating_sub(1) / block_size;
                head.extend_hashes(max_hit);
                hit = self.kv.cached_prefix_len(&head.hashes[..max_hit]);
            }
            let cached_tokens = hit * block_size;
            let tokens = (total - cached_tokens).min(*budget);
            let fits = self.kv.allocate_with_prefix(
                &mut head.kv,
                &head.hashes[..hit],
                cached_tokens + tokens,
            );
            if !fits {
                if self.running.is_empty() {
                    // The whole pool is free or evictable and the chunk still does not fit: it
                    // never will.
                    if let Some(mut seq) = self.waiting.pop_front() {
                        self.leave_waiting(1);
                        seq.finish_now(FinishReason::Length);
                        seq.deliver();
                    }
                    continue;
                }
                break;
            }
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            self.leave_waiting(1);
            seq.computed = cached_tokens;
            seq.note_cached_tokens(saturating_u32(cached_tokens));
            seq.scheduled = tokens;
            *budget -= tokens;
            self.running.push(seq);
        }
    }

    fn leave_waiting(&self, n: usize) {
        if n > 0 {
            self.counters.waiting.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn publish_counters(&self) {
        self.counters
            .active
            .store(self.running.len(), Ordering::Relaxed);
        self.counters
            .kv_used_blocks
            .store(self.kv.used_blocks(), Ordering::Relaxed);
        self.counters
            .kv_cached_blocks
            .store(self.kv.cached_blocks(), Ordering::Relaxed);
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The scheduler task: runs steps back to back while there is work, sleeping each step's
/// simulated duration (or just yielding when `speedup_ratio` is 0), and parks on the intake
/// channel when idle. When the engine handle is dropped the intake closes; the task finishes
/// the requests it holds and exits.
pub(crate) async fn run(
    mut scheduler: Scheduler,
    mut intake: mpsc::UnboundedReceiver<Command>,
    speedup_ratio: f64,
) {
    let mut intake_open = true;
    loop {
        if !scheduler.has_work() {
            // The last report of a busy period goes out even inside the rate limit.
            scheduler.publish_load(true);
            if !intake_open {
                break;
            }
            match intake.recv().await {
                Some(command) => scheduler.handle(command),
                None => break,
            }
            continue;
        }
        while intake_open {
            match intake.try_recv() {
                Ok(command) => scheduler.handle(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => intake_open = false,
            }
        }
        let started = tokio::time::Instant::now();
        scheduler.begin_step();
        let duration = TimingModel::wall_duration(scheduler.step_ms(), speedup_ratio);
        if !duration.is_zero() {
            // Tokens appear when the simulated forward pass ends, as on a GPU.
            tokio::time::sleep_until(started + duration).await;
        }
        scheduler.complete_step();
        if duration.is_zero() {
            // Steps run back to back, but other tasks (the clients) must get the thread.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use switchyard_kv_index::hashing::BlockHasher;

    use parking_lot::Mutex;
    use switchyard_protocol::kv::SequenceHash;
    use switchyard_protocol::{EngineOutput, StopConditions, TokenId};

    use super::super::sequence::TokenSampler;
    use super::*;
    use crate::EngineError;

    type Rx = mpsc::Receiver<Result<EngineOutput, EngineError>>;

    #[derive(Default)]
    struct Collect(Mutex<Vec<EngineEvent>>);

    impl EngineEventSink for Collect {
        fn publish(&self, event: EngineEvent) {
            self.0.lock().push(event);
        }
    }

    impl Collect {
        fn take(&self) -> Vec<EngineEvent> {
            std::mem::take(&mut *self.0.lock())
        }
    }

    fn scheduler(
        max_num_seqs: usize,
        budget: usize,
        block_size: usize,
        blocks: usize,
    ) -> (Scheduler, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        let scheduler = Scheduler::new(
            BatchLimits {
                max_num_seqs,
                max_num_batched_tokens: budget,
            },
            KvManager::new(block_size, blocks, true, true),
            TimingModel::default(),
            Arc::default(),
            Some(sink.clone()),
        );
        (scheduler, sink)
    }

    fn submit_tokens(s: &mut Scheduler, prompt: Vec<TokenId>, max_tokens: u32) -> Rx {
        let (tx, rx) = mpsc::channel(1024);
        let stop = StopConditions {
            max_tokens,
            ..Default::default()
        };
        s.counters.waiting.fetch_add(1, Ordering::Relaxed);
        let hasher = s
            .prefix_caching
            .then(|| BlockHasher::new(s.kv.block_size() as u32, None));
        s.enqueue(Sequence::new(
            format!("r{}", prompt.len()),
            prompt,
            hasher,
            Vec::new(),
            stop,
            TokenSampler::new(1, 100),
            tx,
        ));
        rx
    }

    /// A sink that re-publishes in an engine's wire format: it asks for the blocks' tokens.
    #[derive(Default)]
    struct WithTokens(Mutex<Vec<(KvCacheEvent, Vec<TokenId>)>>);

    impl EngineEventSink for WithTokens {
        fn publish(&self, _: EngineEvent) {}

        fn wants_block_tokens(&self) -> bool {
            true
        }

        fn publish_kv_with_tokens(&self, event: KvCacheEvent, token_ids: &[TokenId]) {
            self.0.lock().push((event, token_ids.to_vec()));
        }
    }

    #[test]
    fn stored_events_carry_their_blocks_tokens_for_sinks_that_ask() {
        let sink = Arc::new(WithTokens::default());
        let mut s = Scheduler::new(
            BatchLimits {
                max_num_seqs: 4,
                max_num_batched_tokens: 64,
            },
            KvManager::new(4, 64, true, true),
            TimingModel::default(),
            Arc::default(),
            Some(sink.clone()),
        );
        let prompt: Vec<TokenId> = (100..110).collect();
        let _rx = submit_tokens(&mut s, prompt.clone(), 3);
        for _ in 0..6 {
            s.step();
        }
        let events = sink.0.lock();
        let mut tokens = Vec::new();
        let mut blocks = Vec::new();
        for (event, t) in events.iter() {
            if let KvCacheEventData::Stored { blocks: b, .. } = &event.data {
                assert_eq!(t.len(), b.len() * 4, "{event:?}");
                tokens.extend_from_slice(t);
                blocks.extend_from_slice(b);
            }
        }
        // 10 prompt + 3 generated tokens: three full blocks, their tokens the sequence's.
        assert_eq!(blocks.len(), 3, "{events:?}");
        assert_eq!(&tokens[..10], &prompt[..]);
        assert_eq!(BlockHasher::new(4, None).hash_blocks(&tokens), blocks);
    }

    fn submit(s: &mut Scheduler, prompt_len: usize, max_tokens: u32) -> Rx {
        submit_tokens(s, (0..prompt_len as TokenId).collect(), max_tokens)
    }

    /// Tokens received, finish reason, and the `cached_tokens` of the first item.
    fn received(rx: &mut Rx) -> (usize, Option<FinishReason>, Option<u32>) {
        let mut n = 0;
        let mut finish = None;
        let mut cached = None;
        while let Ok(item) = rx.try_recv() {
            let out = item.unwrap();
            n += out.token_ids.len();
            finish = finish.or(out.finish_reason);
            cached = cached.or(out.cached_tokens);
        }
        (n, finish, cached)
    }

    fn tokens_received(rx: &mut Rx) -> (usize, Option<FinishReason>) {
        let (n, finish, _) = received(rx);
        (n, finish)
    }

    fn run_to_idle(s: &mut Scheduler) {
        for _ in 0..10_000 {
            if !s.has_work() {
                return;
            }
            s.step();
        }
        panic!("scheduler did not go idle");
    }

    /// What a router would know from the events alone: each cached block and its parent.
    #[derive(Default)]
    struct ReplayedCache {
        blocks: HashMap<SequenceHash, Option<SequenceHash>>,
        last_event_id: u64,
        loads: Vec<EngineLoad>,
    }

    impl ReplayedCache {
        /// Applies events, checking ids are consecutive, parents are cached, stored blocks are
        /// new and removed blocks were cached.
        fn apply(&mut self, events: Vec<EngineEvent>) {
            for event in events {
                let event = match event {
                    EngineEvent::Kv(event) => event,
                    EngineEvent::Load(load) => {
                        self.loads.push(load);
                        continue;
                    }
                };
                assert_eq!(event.event_id, self.last_event_id + 1, "consecutive ids");
                self.last_event_id = event.event_id;
                match event.data {
                    KvCacheEventData::Stored { parent, blocks } => {
                        assert!(!blocks.is_empty());
                        if let Some(p) = parent {
                            assert!(self.blocks.contains_key(&p), "parent {p} not cached");
                        }
                        let mut prev = parent;
                        for b in blocks {
                            let fresh = self.blocks.insert(b.sequence_hash, prev).is_none();
                            assert!(fresh, "block {} stored twice", b.sequence_hash);
                            prev = Some(b.sequence_hash);
                        }
                    }
                    KvCacheEventData::Removed { sequence_hashes } => {
                        assert!(!sequence_hashes.is_empty());
                        for h in sequence_hashes {
                            assert!(self.blocks.remove(&h).is_some(), "removed {h} not cached");
                        }
                    }
                    KvCacheEventData::Cleared => self.blocks.clear(),
                }
            }
        }

        fn hashes(&self) -> HashSet<SequenceHash> {
            self.blocks.keys().copied().collect()
        }
    }

    fn replay_dump(dump: Vec<KvCacheEvent>, last_event_id: u64) -> HashSet<SequenceHash> {
        let mut seen = HashSet::new();
        for event in dump {
            assert_eq!(event.event_id, last_event_id);
            let KvCacheEventData::Stored { parent, blocks } = event.data else {
                panic!("dump holds only Stored events");
            };
            if let Some(p) = parent {
                assert!(seen.contains(&p), "dump parent stored earlier");
            }
            for b in blocks {
                assert!(seen.insert(b.sequence_hash));
            }
        }
        seen
    }

    #[test]
    fn chunked_prefill_respects_token_budget() {
        let (mut s, _) = scheduler(8, 100, 16, 1000);
        let mut rx = submit(&mut s, 250, 3);
        assert_eq!(s.step().prefill_tokens, 100);
        assert_eq!(s.step().prefill_tokens, 100);
        assert_eq!(
            tokens_received(&mut rx),
            (0, None),
            "no token before prefill ends"
        );
        assert_eq!(s.step().prefill_tokens, 50);
        assert_eq!(tokens_received(&mut rx).0, 1);
        let decode = s.step();
        assert_eq!((decode.prefill_tokens, decode.decode_seqs), (0, 1));
        assert_eq!(decode.decode_context_tokens, 251);
        s.step();
        assert_eq!(tokens_received(&mut rx), (2, Some(FinishReason::Length)));
        assert!(!s.has_work());
        assert_eq!(s.kv.used_blocks(), 0);
        // 252 tokens of KV computed: 15 full blocks stay cached.
        assert_eq!(s.kv.cached_blocks(), 15);
    }

    #[test]
    fn decode_comes_before_new_prefill_and_batch_is_capped() {
        let (mut s, _) = scheduler(2, 64, 16, 1000);
        let _a = submit(&mut s, 10, 100);
        let _b = submit(&mut s, 10, 100);
        let _c = submit(&mut s, 10, 100);
        assert_eq!(s.step().prefill_tokens, 20, "two slots");
        assert_eq!(s.counters.active.load(Ordering::Relaxed), 2);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 1);
        let shape = s.step();
        assert_eq!((shape.prefill_tokens, shape.decode_seqs), (0, 2));
    }

    #[test]
    fn repeated_prompt_prefills_only_the_uncached_rest() {
        let (mut s, _) = scheduler(8, 8192, 16, 1000);
        let mut a = submit(&mut s, 40, 2);
        assert_eq!(s.step().prefill_tokens, 40);
        run_to_idle(&mut s);
        assert_eq!(received(&mut a).2, Some(0));
        let mut b = submit(&mut s, 40, 2);
        let shape = s.step();
        // Blocks 0 and 1 (32 tokens) are cached; 8 tokens remain, attending to 32 cached.
        assert_eq!(shape.prefill_tokens, 8);
        assert_eq!(shape.prefill_attention_pairs, 8 * 32 + 8 * 9 / 2);
        run_to_idle(&mut s);
        assert_eq!(received(&mut b), (2, Some(FinishReason::Length), Some(32)));
    }

    #[test]
    fn block_aligned_prompt_still_recomputes_its_last_block() {
        // vLLM never serves a whole prompt from cache: the last token must be computed.
        let (mut s, _) = scheduler(8, 8192, 16, 1000);
        let mut a = submit(&mut s, 32, 1);
        run_to_idle(&mut s);
        received(&mut a);
        let mut b = submit(&mut s, 32, 1);
        assert_eq!(s.step().prefill_tokens, 16);
        run_to_idle(&mut s);
        assert_eq!(received(&mut b).2, Some(16));
        assert_eq!(
            s.kv.cached_blocks(),
            2,
            "the recomputed block is not stored twice"
        );
    }

    #[test]
    fn concurrent_sequences_share_cached_prefix_blocks() {
        let (mut s, sink) = scheduler(8, 8192, 4, 100);
        let prompt: Vec<TokenId> = (100..110).collect(); // 2 full blocks + 2 tokens
        let a = submit_tokens(&mut s, prompt.clone(), 1000);
        s.step();
        assert_eq!(s.kv.used_blocks(), 3);
        let mut b = submit_tokens(&mut s, prompt.clone(), 1000);
        s.step();
        assert_eq!(received(&mut b).2, Some(8));
        let first_block = BlockHasher::new(4, None).hash_blocks(&prompt)[0];
        assert_eq!(s.kv.refcount(first_block.sequence_hash), Some(2));
        assert_eq!(s.kv.used_blocks(), 3 + 1, "b added only its own tail block");
        drop(a);
        s.step();
        assert_eq!(s.kv.refcount(first_block.sequence_hash), Some(1));
        drop(b);
        s.step();
        assert_eq!(s.kv.refcount(first_block.sequence_hash), Some(0));
        assert_eq!(s.kv.used_blocks(), 0);
        let mut replay = ReplayedCache::default();
        replay.apply(sink.take());
        assert_eq!(replay.hashes(), s.kv.cached_hashes());
    }

    #[test]
    fn kv_pressure_preempts_newest_and_everything_still_completes() {
        // 4 blocks of 4 tokens; two sequences of 6 prompt + 6 generated need 3 blocks each.
        let (mut s, sink) = scheduler(8, 64, 4, 4);
        let mut a = submit(&mut s, 6, 6);
        let mut b = submit_tokens(&mut s, (50..56).collect(), 6);
        let mut saw_preemption = false;
        let mut replay = ReplayedCache::default();
        for _ in 0..100 {
            if !s.has_work() {
                break;
            }
            s.step();
            assert!(s.kv.used_blocks() <= 4);
            if s.counters.waiting.load(Ordering::Relaxed) == 1 && s.running.len() == 1 {
                saw_preemption = true;
            }
            replay.apply(sink.take());
            assert_eq!(replay.hashes(), s.kv.cached_hashes());
            s.kv.check_invariants();
        }
        assert!(saw_preemption);
        assert_eq!(tokens_received(&mut a), (6, Some(FinishReason::Length)));
        assert_eq!(tokens_received(&mut b), (6, Some(FinishReason::Length)));
        assert_eq!(s.kv.used_blocks(), 0);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn sequence_outgrowing_the_cache_finishes_with_length() {
        let (mut s, _) = scheduler(8, 64, 4, 2);
        let mut rx = submit(&mut s, 6, 100);
        for _ in 0..20 {
            s.step();
        }
        // 8 tokens of KV fit; the ninth computed token does not.
        let (n, finish) = tokens_received(&mut rx);
        assert_eq!(finish, Some(FinishReason::Length));
        assert_eq!(n, 3);
        assert!(!s.has_work());
    }

    #[test]
    fn cancelled_sequences_release_blocks_which_stay_cached() {
        let (mut s, _) = scheduler(1, 64, 16, 100);
        let a = submit(&mut s, 20, 100);
        let b = submit(&mut s, 20, 100);
        s.step();
        assert_eq!(s.kv.used_blocks(), 2);
        assert_eq!(
            s.kv.cached_blocks(),
            1,
            "the full first block is registered"
        );
        drop(a);
        drop(b);
        s.step();
        assert!(!s.has_work());
        assert_eq!(s.kv.used_blocks(), 0);
        assert_eq!(s.kv.cached_blocks(), 1);
        let first = BlockHasher::new(16, None).hash_blocks(&(0..20).collect::<Vec<_>>())[0];
        assert_eq!(s.kv.refcount(first.sequence_hash), Some(0));
        assert_eq!(s.counters.active.load(Ordering::Relaxed), 0);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn load_reports_are_rate_limited_and_end_with_the_idle_state() {
        let (mut s, sink) = scheduler(8, 64, 4, 100);
        let _rx = submit(&mut s, 10, 200);
        run_to_idle(&mut s);
        s.publish_load(true);
        let mut replay = ReplayedCache::default();
        replay.apply(sink.take());
        // ~200 steps of ~6 ms simulated: a report per 10 ms at most.
        assert!(replay.loads.len() > 10, "{}", replay.loads.len());
        assert!(replay.loads.len() < 150, "{}", replay.loads.len());
        let last = replay.loads.last().copied().unwrap();
        assert_eq!(
            last,
            EngineLoad {
                active_requests: 0,
                waiting_requests: 0,
                kv_used_blocks: 0,
                kv_total_blocks: 100,
                kv_cached_blocks: s.kv.cached_blocks() as u64,
            }
        );
        assert_eq!(last.kv_cached_blocks, (10 + 200 - 1) / 4);
    }

    #[test]
    fn reset_prefix_cache_publishes_cleared_only_when_idle() {
        let (mut s, sink) = scheduler(8, 64, 4, 100);
        let _rx = submit(&mut s, 10, 100);
        s.step();
        assert!(!s.reset_prefix_cache());
        run_to_idle(&mut s);
        assert!(s.kv.cached_blocks() > 0);
        assert!(s.reset_prefix_cache());
        assert_eq!(s.kv.cached_blocks(), 0);
        let events = sink.take();
        let kv: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Kv(e) => Some(&e.data),
                EngineEvent::Load(_) => None,
            })
            .collect();
        assert_eq!(kv.last(), Some(&&KvCacheEventData::Cleared));
        let mut replay = ReplayedCache::default();
        replay.apply(events);
        assert!(replay.hashes().is_empty());
        assert!(s.dump_cache_state().is_empty());
    }

    /// A deterministic random workload on a small cache: prompts drawn from a few shared
    /// prefixes, random lengths, random cancellations. After every step the events replayed
    /// into a naive model equal the cache, and so does the state dump.
    #[test]
    fn events_and_dump_track_the_cache_exactly_under_churn() {
        for seed in 0..6u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let (mut s, sink) = scheduler(6, 48, 4, 24);
            let mut replay = ReplayedCache::default();
            let mut clients: Vec<Rx> = Vec::new();
            let mut saw_eviction = false;
            for step in 0..600 {
                if step < 450 && next(3) == 0 {
                    let prefix = next(4) as TokenId * 1000;
                    let len = 1 + next(30) as usize;
                    let mut prompt: Vec<TokenId> =
                        (0..len as TokenId).map(|t| prefix + t).collect();
                    // Some prompts diverge after a shared start.
                    if len > 8 && next(2) == 0 {
                        prompt[8] += 500 + next(3) as TokenId;
                    }
                    clients.push(submit_tokens(&mut s, prompt, 1 + next(20) as u32));
                }
                if !clients.is_empty() && next(10) == 0 {
                    let victim = next(clients.len() as u64) as usize;
                    clients.swap_remove(victim);
                }
                s.step();
                let events = sink.take();
                saw_eviction |= events.iter().any(|e| {
                    matches!(
                        e,
                        EngineEvent::Kv(KvCacheEvent {
                            data: KvCacheEventData::Removed { .. },
                            ..
                        })
                    )
                });
                replay.apply(events);
                s.kv.check_invariants();
                assert_eq!(
                    replay.hashes(),
                    s.kv.cached_hashes(),
                    "seed {seed} step {step}"
                );
                if step % 25 == 0 {
                    let id = replay.last_event_id;
                    assert_eq!(replay_dump(s.dump_cache_state(), id), s.kv.cached_hashes());
                }
                for rx in &mut clients {
                    received(rx);
                }
            }
            run_to_idle(&mut s);
            replay.apply(sink.take());
            assert_eq!(replay.hashes(), s.kv.cached_hashes());
            assert_eq!(s.kv.used_blocks(), 0, "seed {seed}");
            assert!(saw_eviction, "seed {seed}: the workload must evict");
            let preemptions = s.counters.preemptions.load(Ordering::Relaxed);
            assert!(preemptions > 0, "seed {seed}: the workload must preempt");
        }
    }
}
