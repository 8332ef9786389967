//! One request inside the mocker: its progress, its KV blocks, its output channel.

use switchyard_kv_index::hashing::BlockHasher;
use switchyard_protocol::kv::StoredBlock;
use switchyard_protocol::{
    EngineOutput, FinishReason, OutputLogprobs, StopConditions, TokenId, TokenLogprob,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::kv::KvAllocation;
use crate::EngineError;

pub(crate) type OutputSender = mpsc::Sender<Result<EngineOutput, EngineError>>;

/// Deterministic pseudo-random token ids (SplitMix64), seeded per request.
#[derive(Debug)]
pub(crate) struct TokenSampler {
    state: u64,
    vocab_size: u32,
    /// Alternatives per token to report, when the request asked for logprobs.
    logprobs: Option<u32>,
}

impl TokenSampler {
    /// `vocab_size` is validated non-zero by the engine config.
    pub fn new(seed: u64, vocab_size: u32) -> Self {
        TokenSampler {
            state: seed,
            vocab_size: vocab_size.max(1),
            logprobs: None,
        }
    }

    /// Reports logprobs with `top` alternatives per token (`None`: none).
    pub fn with_logprobs(mut self, top: Option<u32>) -> Self {
        self.logprobs = top;
        self
    }

    /// The simulated model's distribution at the step that produced `token` (call right after
    /// [`Self::next_token`]), if logprobs were asked for. The chosen token gets probability
    /// p in [0.4, 0.95); the alternatives (other ids, not EOS) share 1 − p, halving one to the
    /// next, so the list is sorted, each value is a log-probability and they sum to at most 1.
    /// Drawn from a side stream: asking for logprobs never changes the tokens.
    pub fn logprobs(&self, token: TokenId, avoid: &[TokenId]) -> Option<OutputLogprobs> {
        let k = self.logprobs?;
        let draw = splitmix(self.state ^ 0x6c6f_6770_726f_6273);
        let p = 0.4 + 0.55 * ((draw >> 11) as f64 / (1u64 << 53) as f64);
        let chosen = p.ln() as f32;
        let mut top = Vec::with_capacity(k as usize);
        if k > 0 {
            top.push(TokenLogprob {
                token_id: token,
                logprob: chosen,
            });
        }
        let mut share = (1.0 - p) / 2.0;
        let mut id = token;
        let stride = (draw as u32 % self.vocab_size.max(2)).max(1);
        // At most vocab_size tries: the walk visits other ids until enough alternatives.
        for _ in 0..self.vocab_size {
            if top.len() >= k as usize {
                break;
            }
            id = ((u64::from(id) + u64::from(stride)) % u64::from(self.vocab_size)) as TokenId;
            if id == token || avoid.contains(&id) || top.iter().any(|t| t.token_id == id) {
                id = (id + 1) % self.vocab_size;
                continue;
            }
            top.push(TokenLogprob {
                token_id: id,
                logprob: share.ln() as f32,
            });
            share /= 2.0;
        }
        Some(OutputLogprobs {
            logprob: chosen,
            top,
        })
    }

    /// Seed for a request: its sampling seed if it has one, else a hash of its prompt, so equal
    /// prompts get equal answers (like greedy decoding).
    pub fn seed_for(sampling_seed: Option<u64>, prompt: &[TokenId]) -> u64 {
        if let Some(seed) = sampling_seed {
            return splitmix(seed);
        }
        prompt.iter().fold(0x51_7c_c1_b7_27_22_0a_95, |h, &t| {
            splitmix(h ^ u64::from(t))
        })
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.state)
    }

    /// A token in `[0, vocab_size)` that is not in `avoid` (the EOS ids), unless every id is.
    pub fn next_token(&mut self, avoid: &[TokenId]) -> TokenId {
        let vocab = self.vocab_size;
        // Multiply-shift maps 32 random bits onto the vocabulary without a division.
        let mut token = (((self.next_u64() >> 32) * u64::from(vocab)) >> 32) as TokenId;
        // Walking forward past at most `avoid.len()` ids reaches a free one if any exists.
        for _ in 0..avoid.len() {
            if !avoid.contains(&token) {
                break;
            }
            token = (token + 1) % vocab;
        }
        token
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Outcome of pushing a sequence's pending output to its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Sent, or kept for the next step because the channel was full.
    Alive,
    /// The receiver is gone: the client cancelled.
    Cancelled,
}

/// A request as the scheduler sees it.
///
/// Token accounting follows vLLM: the sequence knows `prompt_len + generated` tokens, of which
/// `computed` have KV in the cache. A step computes some of the rest; when all are computed the
/// step samples one new token. Prefill is the first such catch-up, decode is catching up by one,
/// and recomputation after preemption is another prefill.
#[derive(Debug)]
pub(crate) struct Sequence {
    pub request_id: String,
    /// Prompt then generated tokens: the prefix cache hashes every full block of them.
    pub tokens: Vec<TokenId>,
    /// Hashes of the first full blocks of `tokens`, extended as blocks fill (empty without
    /// prefix caching).
    pub hashes: Vec<StoredBlock>,
    /// Hashes this request's blocks (seeded by its LoRA / cache salt); `None` without prefix
    /// caching.
    hasher: Option<BlockHasher>,
    pub generated: usize,
    pub computed: usize,
    /// Tokens to compute in the step being built.
    pub scheduled: usize,
    pub kv: KvAllocation,
    stop: StopConditions,
    sampler: TokenSampler,
    /// Output not yet handed to the channel: normally one token, more if the client lags.
    pending: EngineOutput,
    finish: Option<FinishReason>,
    tx: OutputSender,
    /// Whether `cached_tokens` has been attached to an output yet.
    reported_cached: bool,
}

impl Sequence {
    /// `hashes` are the prompt's full-block hashes by `hasher` if the engine caches prefixes.
    pub fn new(
        request_id: String,
        prompt: Vec<TokenId>,
        hasher: Option<BlockHasher>,
        hashes: Vec<StoredBlock>,
        stop: StopConditions,
        sampler: TokenSampler,
        tx: OutputSender,
    ) -> Self {
        Sequence {
            request_id,
            tokens: prompt,
            hashes,
            hasher,
            generated: 0,
            computed: 0,
            scheduled: 0,
            kv: KvAllocation::default(),
            stop,
            sampler,
            pending: EngineOutput::default(),
            finish: None,
            tx,
            reported_cached: false,
        }
    }

    /// Tokens the sequence knows: prompt plus generated.
    pub fn total_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Extends `hashes` over the first `blocks` full blocks of the known tokens (fewer if fewer
    /// are full). Hashes only blocks not hashed yet; nothing without prefix caching.
    pub fn extend_hashes(&mut self, blocks: usize) {
        let Some(hasher) = self.hasher else {
            return;
        };
        let block_size = hasher.block_size() as usize;
        let blocks = blocks.min(self.tokens.len() / block_size);
        while self.hashes.len() < blocks {
            let start = self.hashes.len() * block_size;
            let content_hash = hasher.content_hash(&self.tokens[start..start + block_size]);
            let parent = self.hashes.last().map(|b| b.sequence_hash);
            self.hashes.push(StoredBlock {
                sequence_hash: hasher.sequence_hash(parent, content_hash),
                content_hash,
            });
        }
    }

    /// Tokens still to compute before the next token can be sampled.
    pub fn uncomputed(&self) -> usize {
        self.total_tokens() - self.computed
    }

    /// Whether the scheduled work is a plain one-token decode (as opposed to prefill).
    pub fn is_decoding(&self) -> bool {
        self.generated > 0 && self.uncomputed() == 1
    }

    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    pub fn client_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// Records how many prompt tokens came from the prefix cache; reported once, with the first
    /// output.
    pub fn note_cached_tokens(&mut self, cached: u32) {
        if !self.reported_cached {
            self.reported_cached = true;
            self.pending.cached_tokens = Some(cached);
        }
    }

    /// Applies the scheduled work; samples a token if the sequence caught up.
    pub fn run_scheduled(&mut self) {
        if self.scheduled == 0 {
            return;
        }
        self.computed += self.scheduled;
        self.scheduled = 0;
        if self.computed == self.total_tokens() && self.finish.is_none() {
            self.sample();
        }
    }

    fn sample(&mut self) {
        let token = self.sampler.next_token(&self.stop.eos_token_ids);
        self.generated += 1;
        self.tokens.push(token);
        self.pending.token_ids.push(token);
        if let Some(logprobs) = self.sampler.logprobs(token, &self.stop.eos_token_ids) {
            self.pending.logprobs.push(logprobs);
        }
        let generated = u32::try_from(self.generated).unwrap_or(u32::MAX);
        if self.stop.is_stop_token(token, generated) {
            self.finish = Some(FinishReason::Stop);
        } else if generated >= self.stop.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
    }

    /// Ends the sequence without another token (e.g. its context no longer fits the cache).
    pub fn finish_now(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
    }

    /// Forgets computed KV (the blocks are released by the caller), for recomputation later.
    pub fn reset_for_recompute(&mut self) {
        debug_assert_eq!(self.kv.blocks(), 0);
        self.computed = 0;
        self.scheduled = 0;
    }

    /// Hands pending output to the channel without waiting. A full channel keeps it for the next
    /// step (more tokens are appended to the same item), except the final item, which is sent by
    /// a small task so the sequence can leave the batch now.
    pub fn deliver(&mut self) -> Delivery {
        self.pending.finish_reason = self.finish;
        if self.pending.token_ids.is_empty() && self.pending.finish_reason.is_none() {
            return Delivery::Alive;
        }
        let output = std::mem::take(&mut self.pending);
        match self.tx.try_send(Ok(output)) {
            Ok(()) => Delivery::Alive,
            Err(TrySendError::Closed(_)) => Delivery::Cancelled,
            Err(TrySendError::Full(item)) => {
                if self.finish.is_some() {
                    send_in_background(self.tx.clone(), item);
                } else if let Ok(output) = item {
                    self.pending = output;
                }
                Delivery::Alive
            }
        }
    }
}

fn send_in_background(tx: OutputSender, item: Result<EngineOutput, EngineError>) {
    // Only reachable from the scheduler task, so a runtime is present.
    tokio::spawn(async move {
        let _ = tx.send(item).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(
        prompt_len: usize,
        stop: StopConditions,
    ) -> (Sequence, mpsc::Receiver<Result<EngineOutput, EngineError>>) {
        let (tx, rx) = mpsc::channel(2);
        let prompt: Vec<TokenId> = (0..prompt_len as TokenId).collect();
        let sampler = TokenSampler::new(TokenSampler::seed_for(None, &prompt), 1000);
        (
            Sequence::new("r".into(), prompt, None, Vec::new(), stop, sampler, tx),
            rx,
        )
    }

    #[test]
    fn sampler_is_deterministic_in_range_and_avoids_eos() {
        let seed = TokenSampler::seed_for(None, &[1, 2, 3]);
        let mut a = TokenSampler::new(seed, 50);
        let mut b = TokenSampler::new(seed, 50);
        let eos = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        for _ in 0..10_000 {
            let t = a.next_token(&eos);
            assert_eq!(t, b.next_token(&eos));
            assert!((10..50).contains(&t), "token {t}");
        }
        assert_ne!(seed, TokenSampler::seed_for(None, &[1, 2, 4]));
        assert_ne!(
            TokenSampler::seed_for(Some(1), &[1]),
            TokenSampler::seed_for(Some(2), &[1])
        );
    }

    #[test]
    fn vocabulary_of_only_eos_still_yields_a_token() {
        let mut s = TokenSampler::new(7, 2);
        assert!(s.next_token(&[0, 1]) < 2);
    }

    #[test]
    fn prefill_then_decode_accounting() {
        let stop = StopConditions {
            max_tokens: 2,
            ..Default::default()
        };
        let (mut seq, mut rx) = sequence(5, stop);
        seq.note_cached_tokens(0);
        seq.scheduled = 3;
        seq.run_scheduled();
        assert_eq!((seq.computed, seq.generated), (3, 0));
        assert_eq!(seq.deliver(), Delivery::Alive);
        assert!(rx.try_recv().is_err(), "nothing to deliver mid-prefill");
        seq.scheduled = 2;
        assert!(!seq.is_decoding());
        seq.run_scheduled();
        assert_eq!((seq.generated, seq.uncomputed()), (1, 1));
        assert!(seq.is_decoding());
        seq.deliver();
        let first = rx.try_recv().unwrap().unwrap();
        assert_eq!(first.token_ids.len(), 1);
        assert_eq!(first.cached_tokens, Some(0));
        seq.scheduled = 1;
        seq.run_scheduled();
        assert!(seq.is_finished());
        seq.deliver();
        let last = rx.try_recv().unwrap().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::Length));
        assert_eq!(last.cached_tokens, None);
    }

    #[test]
    fn full_channel_coalesces_tokens_into_one_item() {
        let stop = StopConditions {
            max_tokens: 100,
            ..Default::default()
        };
        let (mut seq, mut rx) = sequence(1, stop);
        for _ in 0..5 {
            seq.scheduled = seq.uncomputed();
            seq.run_scheduled();
            assert_eq!(seq.deliver(), Delivery::Alive);
        }
        // Capacity 2: two single-token items, then three tokens waiting in one item.
        assert_eq!(rx.try_recv().unwrap().unwrap().token_ids.len(), 1);
        assert_eq!(rx.try_recv().unwrap().unwrap().token_ids.len(), 1);
        seq.deliver();
        assert_eq!(rx.try_recv().unwrap().unwrap().token_ids.len(), 3);
        drop(rx);
        seq.scheduled = 1;
        seq.run_scheduled();
        assert!(seq.client_gone());
        assert_eq!(seq.deliver(), Delivery::Cancelled);
    }

    #[test]
    fn stop_token_honoured_after_min_tokens() {
        // Find which token the sampler produces second, then make it a stop token.
        let (mut probe, _rx) = sequence(
            3,
            StopConditions {
                max_tokens: 10,
                ..Default::default()
            },
        );
        probe.scheduled = 3;
        probe.run_scheduled();
        probe.scheduled = 1;
        probe.run_scheduled();
        let second = probe.pending.token_ids[1];

        let run_two = |min_tokens| {
            let stop = StopConditions {
                max_tokens: 10,
                min_tokens,
                stop_token_ids: vec![second],
                ..Default::default()
            };
            let (mut seq, _rx) = sequence(3, stop);
            seq.scheduled = 3;
            seq.run_scheduled();
            seq.scheduled = 1;
            seq.run_scheduled();
            (seq.finish, seq.generated)
        };
        assert_eq!(run_two(1), (Some(FinishReason::Stop), 2));
        assert_eq!(
            run_two(2),
            (None, 2),
            "min_tokens 2 suppresses a stop at token 2"
        );
    }
}
