//! The mocker's scheduler: a waiting queue, a running batch, and one step at a time.
//!
//! Each step (vLLM v1 style, chunked prefill always on):
//! 1. sequences whose client went away leave the batch and free their blocks;
//! 2. running sequences, oldest first, get the tokens they still need (1 when decoding, the rest
//!    of the prompt when prefilling) within the step's token budget; when the KV pool cannot
//!    grow, the newest running sequence is preempted (its KV dropped, recomputed later);
//! 3. if nothing was preempted, waiting sequences are admitted in arrival order while there are
//!    batch slots, budget and blocks (the head waits if it does not fit: strict FCFS);
//! 4. the step runs: every scheduled sequence computes its tokens, samples one if it caught up,
//!    and hands its output to its channel; finished sequences free their blocks.
//!
//! [`Scheduler::begin_step`] (1–3) and [`Scheduler::complete_step`] (4) are synchronous; [`run`]
//! owns the clock and sleeps the step's simulated duration between them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_protocol::FinishReason;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::kv::KvManager;
use super::sequence::{Delivery, Sequence};
use super::timing::{StepShape, TimingModel};

/// Live numbers shared between the scheduler task and the engine handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests accepted by `generate` and not yet in the running batch.
    pub waiting: AtomicUsize,
    /// Sequences in the running batch.
    pub active: AtomicUsize,
    /// KV blocks held by running sequences.
    pub kv_used_blocks: AtomicUsize,
}

/// Batch limits of the simulated engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

pub(crate) struct Scheduler {
    limits: BatchLimits,
    kv: KvManager,
    waiting: VecDeque<Sequence>,
    /// In admission order: the last one is the newest, the first to be preempted.
    running: Vec<Sequence>,
    counters: Arc<Counters>,
}

impl Scheduler {
    pub fn new(limits: BatchLimits, kv: KvManager, counters: Arc<Counters>) -> Self {
        Scheduler {
            limits,
            kv,
            waiting: VecDeque::new(),
            running: Vec::with_capacity(limits.max_num_seqs),
            counters,
        }
    }

    /// Queues a sequence; `generate` already counted it in `counters.waiting`.
    pub fn enqueue(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Decides what the next step computes; returns its shape, for the timing model. The step's
    /// results appear only at [`Self::complete_step`], after the simulated time has passed.
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
                shape.decode_seqs += 1;
            } else {
                shape.prefill_tokens += seq.scheduled;
            }
        }
        shape
    }

    /// Applies the step begun by [`Self::begin_step`]: samples tokens, delivers output, and
    /// retires finished and cancelled sequences.
    pub fn complete_step(&mut self) {
        let kv = &mut self.kv;
        self.running.retain_mut(|seq| {
            seq.run_scheduled();
            let delivery = seq.deliver();
            if seq.is_finished() || delivery == Delivery::Cancelled {
                kv.release(&mut seq.kv);
                false
            } else {
                true
            }
        });
        self.publish_counters();
    }

    /// A whole step without the clock.
    #[cfg(test)]
    pub fn step(&mut self) -> StepShape {
        let shape = self.begin_step();
        self.complete_step();
        shape
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
        self.kv.release(&mut victim.kv);
        victim.reset_for_recompute();
        if victim.deliver() == Delivery::Cancelled {
            return;
        }
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        self.waiting.push_front(victim);
    }

    fn admit_waiting(&mut self, budget: &mut usize) {
        while self.running.len() < self.limits.max_num_seqs && *budget > 0 {
            let Some(head) = self.waiting.front_mut() else {
                break;
            };
            let tokens = head.uncomputed().min(*budget);
            if !self.kv.grow(&mut head.kv, tokens) {
                if self.running.is_empty() {
                    // The whole pool is free and the chunk still does not fit: it never will.
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
            // No prefix cache yet: nothing of the prompt is ever cached.
            seq.note_cached_tokens(0);
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
    }
}

/// The scheduler task: runs steps back to back while there is work, sleeping each step's
/// simulated duration (or just yielding when `speedup_ratio` is 0), and parks on the intake
/// channel when idle. When the engine handle is dropped the intake closes; the task finishes
/// the requests it holds and exits.
pub(crate) async fn run(
    mut scheduler: Scheduler,
    mut intake: mpsc::UnboundedReceiver<Sequence>,
    timing: TimingModel,
    speedup_ratio: f64,
) {
    let mut intake_open = true;
    loop {
        if !scheduler.has_work() {
            if !intake_open {
                break;
            }
            match intake.recv().await {
                Some(seq) => scheduler.enqueue(seq),
                None => break,
            }
        }
        while intake_open {
            match intake.try_recv() {
                Ok(seq) => scheduler.enqueue(seq),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => intake_open = false,
            }
        }
        let started = tokio::time::Instant::now();
        let shape = scheduler.begin_step();
        let duration = timing.step_duration(shape, speedup_ratio);
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
    use switchyard_protocol::{EngineOutput, StopConditions, TokenId};

    use super::super::sequence::TokenSampler;
    use super::*;
    use crate::EngineError;

    type Rx = mpsc::Receiver<Result<EngineOutput, EngineError>>;

    fn scheduler(
        max_num_seqs: usize,
        budget: usize,
        block_size: usize,
        blocks: usize,
    ) -> Scheduler {
        Scheduler::new(
            BatchLimits {
                max_num_seqs,
                max_num_batched_tokens: budget,
            },
            KvManager::new(block_size, blocks),
            Arc::default(),
        )
    }

    fn submit(s: &mut Scheduler, prompt_len: usize, max_tokens: u32) -> Rx {
        let (tx, rx) = mpsc::channel(1024);
        let prompt: Vec<TokenId> = (0..prompt_len as TokenId).collect();
        let stop = StopConditions {
            max_tokens,
            ..Default::default()
        };
        s.counters.waiting.fetch_add(1, Ordering::Relaxed);
        s.enqueue(Sequence::new(
            format!("r{prompt_len}"),
            prompt,
            stop,
            TokenSampler::new(1, 100),
            tx,
        ));
        rx
    }

    fn tokens_received(rx: &mut Rx) -> (usize, Option<FinishReason>) {
        let mut n = 0;
        let mut finish = None;
        while let Ok(item) = rx.try_recv() {
            let out = item.unwrap();
            n += out.token_ids.len();
            finish = finish.or(out.finish_reason);
        }
        (n, finish)
    }

    #[test]
    fn chunked_prefill_respects_token_budget() {
        let mut s = scheduler(8, 100, 16, 1000);
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
        assert_eq!(
            s.step(),
            StepShape {
                prefill_tokens: 0,
                decode_seqs: 1
            }
        );
        s.step();
        assert_eq!(tokens_received(&mut rx), (2, Some(FinishReason::Length)));
        assert!(!s.has_work());
        assert_eq!(s.kv.used_blocks(), 0);
    }

    #[test]
    fn decode_comes_before_new_prefill_and_batch_is_capped() {
        let mut s = scheduler(2, 64, 16, 1000);
        let _a = submit(&mut s, 10, 100);
        let _b = submit(&mut s, 10, 100);
        let _c = submit(&mut s, 10, 100);
        assert_eq!(s.step().prefill_tokens, 20, "two slots");
        assert_eq!(s.counters.active.load(Ordering::Relaxed), 2);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 1);
        assert_eq!(
            s.step(),
            StepShape {
                prefill_tokens: 0,
                decode_seqs: 2
            }
        );
    }

    #[test]
    fn kv_pressure_preempts_newest_and_everything_still_completes() {
        // 4 blocks of 4 tokens; two sequences of 6 prompt + 6 generated need 3 blocks each.
        let mut s = scheduler(8, 64, 4, 4);
        let mut a = submit(&mut s, 6, 6);
        let mut b = submit(&mut s, 6, 6);
        let mut saw_preemption = false;
        for _ in 0..100 {
            if !s.has_work() {
                break;
            }
            s.step();
            assert!(s.kv.used_blocks() <= 4);
            if s.counters.waiting.load(Ordering::Relaxed) == 1 && s.running.len() == 1 {
                saw_preemption = true;
            }
        }
        assert!(saw_preemption);
        assert_eq!(tokens_received(&mut a), (6, Some(FinishReason::Length)));
        assert_eq!(tokens_received(&mut b), (6, Some(FinishReason::Length)));
        assert_eq!(s.kv.used_blocks(), 0);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn sequence_outgrowing_the_cache_finishes_with_length() {
        let mut s = scheduler(8, 64, 4, 2);
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
    fn cancelled_sequences_leave_batch_and_queue() {
        let mut s = scheduler(1, 64, 16, 100);
        let a = submit(&mut s, 20, 100);
        let b = submit(&mut s, 20, 100);
        s.step();
        assert_eq!(s.kv.used_blocks(), 2);
        drop(a);
        drop(b);
        s.step();
        assert!(!s.has_work());
        assert_eq!(s.kv.used_blocks(), 0);
        assert_eq!(s.counters.active.load(Ordering::Relaxed), 0);
        assert_eq!(s.counters.waiting.load(Ordering::Relaxed), 0);
    }
}
