//! How long one simulated forward pass takes.
//!
//! A step runs every scheduled sequence once: prompt chunks being prefilled and sequences
//! decoding one token each. Its cost is a fixed overhead (weights read once per pass, kernel
//! launches), plus a term linear in the prefill tokens (compute bound), plus a term per decoding
//! sequence (KV reads, sampling). The default constants are in the range of an 8B model on one
//! H100; they are a model, not a measurement.

use std::time::Duration;

/// What one step computed; the input of [`TimingModel::step_duration`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepShape {
    /// Tokens whose KV the step computed for sequences that were prefilling (prompt chunks, or
    /// recomputation after preemption).
    pub prefill_tokens: usize,
    /// Sequences that decoded exactly one token.
    pub decode_seqs: usize,
}

impl StepShape {
    pub fn is_empty(&self) -> bool {
        self.prefill_tokens == 0 && self.decode_seqs == 0
    }
}

/// Step cost model, in milliseconds of simulated GPU time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimingModel {
    /// Fixed cost of any non-empty step.
    pub step_base_ms: f64,
    /// Cost per prefilled token.
    pub prefill_ms_per_token: f64,
    /// Cost per decoding sequence.
    pub decode_ms_per_seq: f64,
}

impl Default for TimingModel {
    fn default() -> Self {
        TimingModel {
            step_base_ms: 8.0,
            prefill_ms_per_token: 0.05,
            decode_ms_per_seq: 0.1,
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
            + self.decode_ms_per_seq * shape.decode_seqs as f64
    }

    /// Wall time of a step: [`Self::step_ms`] divided by `speedup_ratio`. A ratio of zero means
    /// "no simulated delay" and gives zero.
    pub fn step_duration(&self, shape: StepShape, speedup_ratio: f64) -> Duration {
        if speedup_ratio == 0.0 {
            return Duration::ZERO;
        }
        let secs = self.step_ms(shape) / 1000.0 / speedup_ratio;
        // Saturate rather than panic on absurd ratios (validated finite and non-negative).
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("step_base_ms", self.step_base_ms),
            ("prefill_ms_per_token", self.prefill_ms_per_token),
            ("decode_ms_per_seq", self.decode_ms_per_seq),
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
        decode_ms_per_seq: 2.0,
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
    fn mixed_step_adds_prefill_and_decode_terms() {
        let shape = StepShape {
            prefill_tokens: 100,
            decode_seqs: 3,
        };
        assert_eq!(MODEL.step_ms(shape), 10.0 + 50.0 + 6.0);
        let secs = |ratio| MODEL.step_duration(shape, ratio).as_secs_f64();
        assert!((secs(1.0) - 0.066).abs() < 1e-9);
        assert!((secs(2.0) - 0.033).abs() < 1e-9);
        assert_eq!(MODEL.step_duration(shape, 0.0), Duration::ZERO);
    }

    #[test]
    fn tiny_speedup_saturates_instead_of_panicking() {
        let shape = StepShape {
            prefill_tokens: 1,
            decode_seqs: 0,
        };
        assert_eq!(MODEL.step_duration(shape, 1e-300), Duration::MAX);
    }

    #[test]
    fn validate_rejects_negative_and_nan() {
        assert!(MODEL.validate().is_ok());
        let bad = TimingModel {
            decode_ms_per_seq: -1.0,
            ..MODEL
        };
        assert!(bad.validate().unwrap_err().contains("decode_ms_per_seq"));
        let nan = TimingModel {
            step_base_ms: f64::NAN,
            ..MODEL
        };
        assert!(nan.validate().is_err());
    }
}
