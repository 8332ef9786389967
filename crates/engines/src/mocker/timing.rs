//! How long one simulated forward pass takes.
//!
//! A step runs every scheduled sequence once: prompt chunks being prefilled and sequences
//! decoding one token each. Its cost, in milliseconds of GPU time, is
//!
//! ```text
//! step_base_ms                                        weights read once per pass, launches
//! + prefill_ms_per_token        × new prefill tokens  matmuls (compute bound)
//! + attention_ms_per_pair       × attention pairs     each new token × every token before it
//! + decode_ms_per_seq           × decoding sequences  per-row matmul work, sampling
//! + decode_ms_per_context_token × their context       reading their KV (memory bound)
//! ```
//!
//! Only tokens the step actually computes count as prefill: prompt tokens found in the prefix
//! cache are not recomputed, they only make the new tokens' attention longer (the pairs term),
//! which is why a cache hit cuts time to first token.
//!
//! Where the default constants come from (an 8B dense model, fp16 KV, on one H100):
//! - `step_base_ms` 5.74 and `attention_ms_per_pair`: NVIDIA Dynamo's mocker fits decode time
//!   against KV utilisation as `5.74 + 54.0·u − 25.7·u²` ms, and prefill time against new tokens
//!   `t` as `16.5 + 0.0152·t + 4.2e-7·t²` ms. The decode intercept is a pass with an empty cache,
//!   i.e. the fixed cost; the prefill quadratic term is attention among the new tokens
//!   (`t²/2` pairs), hence `8.4e-7` ms per pair.
//! - `prefill_ms_per_token` 0.0152: that fit's linear term.
//! - `decode_ms_per_context_token` 5.2e-5 (0.052 ms per 1000 tokens): Dynamo's linear decode
//!   term (54 ms over a full cache of ~1M tokens), which also matches reading an 8B model's
//!   128 KiB of KV per token at ~2.5 TB/s.
//! - `decode_ms_per_seq` 0.02: the per-row matmul cost that makes a batch of 256 cost ~5 ms more
//!   than a batch of one (2 × 8 GFLOP per token at ~800 TFLOP/s).
//!
//! They are a model, not a measurement; `speedup_ratio` divides every duration.

use std::time::Duration;

/// What one step computed; the input of [`TimingModel::step_duration`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepShape {
    /// Tokens whose KV the step computed for sequences that were prefilling (prompt chunks, or
    /// recomputation after preemption). Cached prompt tokens are not counted.
    pub prefill_tokens: usize,
    /// Query × key pairs of those tokens' attention: a chunk of `n` new tokens after `c` tokens
    /// already in the cache (computed earlier or found cached) adds `n·c + n(n+1)/2`.
    pub prefill_attention_pairs: u64,
    /// Sequences that decoded exactly one token.
    pub decode_seqs: usize,
    /// Total context (tokens of KV read) of the decoding sequences.
    pub decode_context_tokens: usize,
}

impl StepShape {
    pub fn is_empty(&self) -> bool {
        self.prefill_tokens == 0 && self.decode_seqs == 0
    }

    /// Adds a prefill chunk of `new_tokens` after `context` tokens already in the cache.
    pub fn add_prefill(&mut self, new_tokens: usize, context: usize) {
        let n = new_tokens as u64;
        self.prefill_tokens += new_tokens;
        self.prefill_attention_pairs += n * context as u64 + n * (n + 1) / 2;
    }

    /// Adds a sequence decoding one token with `context` tokens of KV (including that token).
    pub fn add_decode(&mut self, context: usize) {
        self.decode_seqs += 1;
        self.decode_context_tokens += context;
    }
}

/// Step cost model, in milliseconds of simulated GPU time. See the module docs for the formula
/// and where the defaults come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimingModel {
    /// Fixed cost of any non-empty step.
    pub step_base_ms: f64,
    /// Cost per prefilled (computed, not cached) token.
    pub prefill_ms_per_token: f64,
    /// Cost per prefill attention pair (new token × a token before it).
    pub attention_ms_per_pair: f64,
    /// Cost per decoding sequence.
    pub decode_ms_per_seq: f64,
    /// Cost per token of context a decoding sequence reads.
    pub decode_ms_per_context_token: f64,
}

impl Default for TimingModel {
    fn default() -> Self {
        TimingModel {
            step_base_ms: 5.74,
            prefill_ms_per_token: 0.0152,
            attention_ms_per_pair: 8.4e-7,
            decode_ms_per_seq: 0.02,
            decode_ms_per_context_token: 5.2e-5,
        }
    }
}

impl TimingModel {
    /// Simulated time of a step, in milliseconds, before any speed-up.
    pub fn step_ms(&self, shape: StepShape) -> f64 {
        if shape.is_empty() {
            return 0.0;
        }
        self.step_base_ms
            + self.prefill_ms_per_token * shape.prefill_tokens as f64
            + self.attention_ms_per_pair * shape.prefill_attention_pairs as f64
            + self.decode_ms_per_seq * shape.decode_seqs as f64
            + self.decode_ms_per_context_token * shape.decode_context_tokens as f64
    }

    /// Wall time of `step_ms` milliseconds divided by `speedup_ratio`. A ratio of zero means
    /// "no simulated delay" and gives zero.
    pub fn wall_duration(step_ms: f64, speedup_ratio: f64) -> Duration {
        if speedup_ratio == 0.0 {
            return Duration::ZERO;
        }
        let secs = step_ms / 1000.0 / speedup_ratio;
        // Saturate rather than panic on absurd ratios (validated finite and non-negative).
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Wall time of a step: [`Self::step_ms`] divided by `speedup_ratio` (0: no delay).
    pub fn step_duration(&self, shape: StepShape, speedup_ratio: f64) -> Duration {
        Self::wall_duration(self.step_ms(shape), speedup_ratio)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("step_base_ms", self.step_base_ms),
            ("prefill_ms_per_token", self.prefill_ms_per_token),
            ("attention_ms_per_pair", self.attention_ms_per_pair),
            ("decode_ms_per_seq", self.decode_ms_per_seq),
            (
                "decode_ms_per_context_token",
                self.decode_ms_per_context_token,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "timing.{name} must be a finite number >= 0, got {value}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: TimingModel = TimingModel {
        step_base_ms: 10.0,
        prefill_ms_per_token: 0.5,
        attention_ms_per_pair: 0.001,
        decode_ms_per_seq: 2.0,
        decode_ms_per_context_token: 0.01,
    };

    #[test]
    fn empty_step_costs_nothing() {
        assert_eq!(MODEL.step_ms(StepShape::default()), 0.0);
        assert_eq!(
            MODEL.step_duration(StepShape::default(), 1.0),
            Duration::ZERO
        );
    }

    #[test]
    fn shape_counts_attention_pairs_and_context() {
        let mut shape = StepShape::default();
        shape.add_prefill(4, 10); // 4·10 + 4·5/2 = 50 pairs
        shape.add_prefill(2, 0); // 3 pairs
        shape.add_decode(100);
        shape.add_decode(50);
        assert_eq!(
            shape,
            StepShape {
                prefill_tokens: 6,
                prefill_attention_pairs: 53,
                decode_seqs: 2,
                decode_context_tokens: 150,
            }
        );
    }

    #[test]
    fn mixed_step_adds_every_term() {
        let mut shape = StepShape::default();
        shape.add_prefill(100, 0); // 5050 pairs
        shape.add_decode(200);
        // 10 + 50 + 5.05 + 2 + 2
        let ms = MODEL.step_ms(shape);
        assert!((ms - 69.05).abs() < 1e-9, "{ms}");
        let secs = |ratio| MODEL.step_duration(shape, ratio).as_secs_f64();
        assert!((secs(1.0) - 0.06905).abs() < 1e-9);
        assert!((secs(2.0) - 0.034525).abs() < 1e-9);
        assert_eq!(MODEL.step_duration(shape, 0.0), Duration::ZERO);
    }

    #[test]
    fn cached_context_costs_less_than_recomputing_it() {
        let model = TimingModel::default();
        let mut cold = StepShape::default();
        cold.add_prefill(4096, 0);
        let mut warm = StepShape::default();
        warm.add_prefill(96, 4000);
        assert!(model.step_ms(warm) < model.step_ms(cold) / 5.0);
        assert!(model.step_ms(warm) > model.step_base_ms);
    }

    #[test]
    fn decode_grows_with_context() {
        let model = TimingModel::default();
        let mut short = StepShape::default();
        let mut long = StepShape::default();
        for _ in 0..64 {
            short.add_decode(100);
            long.add_decode(8000);
        }
        assert!(model.step_ms(long) > model.step_ms(short) + 20.0);
    }

    #[test]
    fn tiny_speedup_saturates_instead_of_panicking() {
        let mut shape = StepShape::default();
        shape.add_prefill(1, 0);
        assert_eq!(MODEL.step_duration(shape, 1e-300), Duration::MAX);
    }

    #[test]
    fn validate_rejects_negative_and_nan() {
        assert!(MODEL.validate().is_ok());
        assert!(TimingModel::default().validate().is_ok());
        let bad = TimingModel {
            decode_ms_per_seq: -1.0,
            ..MODEL
        };
        assert!(bad.validate().unwrap_err().contains("decode_ms_per_seq"));
        let nan = TimingModel {
            attention_ms_per_pair: f64::NAN,
            ..MODEL
        };
        assert!(
            nan.validate()
                .unwrap_err()
                .contains("attention_ms_per_pair")
        );
    }
}
