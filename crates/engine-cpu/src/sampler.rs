//! Picking the next token from a row of logits: greedy, or temperature / top-k / top-p / min-p
//! sampling with a per-request seeded RNG, after repetition / frequency / presence penalties.
//!
//! One [`Sampler`] per sequence holds the request's options, its RNG and (only when a penalty
//! asks for it) token counts; the candidate buffer is the scheduler's, reused for every token.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard_protocol::{SamplingOptions, TokenId};

pub struct Sampler {
    greedy: bool,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    rng: StdRng,
    /// Generated tokens and their counts (frequency / presence penalties).
    output_counts: HashMap<TokenId, u32>,
    /// Prompt and generated tokens (repetition penalty).
    seen: HashMap<TokenId, ()>,
}

/// Why sampling options are unusable.
pub fn validate(options: &SamplingOptions) -> Result<(), String> {
    let check = |name: &str, value: Option<f32>, ok: fn(f32) -> bool, range: &str| match value {
        Some(v) if !v.is_finite() || !ok(v) => Err(format!("{name} must be {range}, got {v}")),
        _ => Ok(()),
    };
    check("temperature", options.temperature, |v| v >= 0.0, ">= 0")?;
    check("top_p", options.top_p, |v| v > 0.0 && v <= 1.0, "in (0, 1]")?;
    check(
        "min_p",
        options.min_p,
        |v| (0.0..=1.0).contains(&v),
        "in [0, 1]",
    )?;
    check(
        "repetition_penalty",
        options.repetition_penalty,
        |v| v > 0.0,
        "> 0",
    )?;
    check(
        "frequency_penalty",
        options.frequency_penalty,
        |v| (-2.0..=2.0).contains(&v),
        "in [-2, 2]",
    )?;
    check(
        "presence_penalty",
        options.presence_penalty,
        |v| (-2.0..=2.0).contains(&v),
        "in [-2, 2]",
    )?;
    if let Some(k) = options.top_k
        && k < -1
    {
        return Err(format!("top_k must be -1 (off) or at least 1, got {k}"));
    }
    Ok(())
}

impl Sampler {
    /// `prompt` seeds the repetition penalty's set of seen tokens (only when it is on).
    pub fn new(options: &SamplingOptions, prompt: &[TokenId]) -> Self {
        let temperature = options.temperature.unwrap_or(1.0);
        let top_k = match options.top_k {
            Some(k) if k > 0 => k as usize,
            _ => 0,
        };
        let repetition_penalty = options.repetition_penalty.unwrap_or(1.0);
        let seed = options.seed.unwrap_or_else(rand::random);
        let mut seen = HashMap::new();
        if repetition_penalty != 1.0 {
            seen.extend(prompt.iter().map(|&t| (t, ())));
        }
        Sampler {
            greedy: temperature == 0.0 || top_k == 1,
            temperature,
            top_k,
            top_p: options.top_p.unwrap_or(1.0),
            min_p: options.min_p.unwrap_or(0.0),
            repetition_penalty,
            frequency_penalty: options.frequency_penalty.unwrap_or(0.0),
            presence_penalty: options.presence_penalty.unwrap_or(0.0),
            rng: StdRng::seed_from_u64(seed),
            output_counts: HashMap::new(),
            seen,
        }
    }

    /// Greedy with no penalties: the token is the plain argmax of the logits.
    pub fn is_plain_greedy(&self) -> bool {
        self.greedy && !self.penalized()
    }

    fn penalized(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }

    /// Chooses the next token from `logits` (modified in place by penalties). `scratch` is a
    /// reusable candidate buffer.
    pub fn sample(&mut self, logits: &mut [f32], scratch: &mut Vec<(f32, TokenId)>) -> TokenId {
        if self.penalized() {
            self.apply_penalties(logits);
        }
        let token = if self.greedy {
            argmax(logits)
        } else {
            self.sample_random(logits, scratch)
        };
        if self.penalized() {
            *self.output_counts.entry(token).or_insert(0) += 1;
            if self.repetition_penalty != 1.0 {
                self.seen.insert(token, ());
            }
        }
        token
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        if self.repetition_penalty != 1.0 {
            for &token in self.seen.keys() {
                if let Some(l) = logits.get_mut(token as usize) {
                    // As in the CTRL paper and vLLM: shrink positive logits, grow negative ones.
                    *l = if *l > 0.0 {
                        *l / self.repetition_penalty
                    } else {
                        *l * self.repetition_penalty
                    };
                }
            }
        }
        if self.frequency_penalty != 0.0 || self.presence_penalty != 0.0 {
            for (&token, &count) in &self.output_counts {
                if let Some(l) = logits.get_mut(token as usize) {
                    *l -= self.frequency_penalty * count as f32 + self.presence_penalty;
                }
            }
        }
    }

    fn sample_random(&mut self, logits: &[f32], candidates: &mut Vec<(f32, TokenId)>) -> TokenId {
        candidates.clear();
        candidates.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (l / self.temperature, i as TokenId)),
        );
        if candidates.is_empty() {
            return argmax(logits);
        }
        let by_logit_desc = |a: &(f32, TokenId), b: &(f32, TokenId)| b.0.total_cmp(&a.0);
        if self.top_k > 0 && self.top_k < candidates.len() {
            candidates.select_nth_unstable_by(self.top_k - 1, by_logit_desc);
            candidates.truncate(self.top_k);
        }
        candidates.sort_unstable_by(by_logit_desc);
        // Softmax over the survivors, in place: (probability, token).
        let max = candidates[0].0;
        let mut total = 0.0f32;
        for c in candidates.iter_mut() {
            c.0 = (c.0 - max).exp();
            total += c.0;
        }
        for c in candidates.iter_mut() {
            c.0 /= total;
        }
        if self.min_p > 0.0 {
            let floor = self.min_p * candidates[0].0;
            let keep = candidates
                .iter()
                .take_while(|c| c.0 >= floor)
                .count()
                .max(1);
            candidates.truncate(keep);
        }
        if self.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = candidates.len();
            for (i, c) in candidates.iter().enumerate() {
                cumulative += c.0;
                if cumulative >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            candidates.truncate(keep);
        }
        let mass: f32 = candidates.iter().map(|c| c.0).sum();
        let mut draw = self.rng.random::<f32>() * mass;
        for c in candidates.iter() {
            draw -= c.0;
            if draw <= 0.0 {
                return c.1;
            }
        }
        candidates.last().map(|c| c.1).unwrap_or(0)
    }
}

/// The index of the largest logit (the first one on ties); NaNs never win.
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best_value {
            best = i;
            best_value = l;
        }
    }
    best as TokenId
}

/// Log-probabilities under the model's distribution (`log_softmax(logits)`): the chosen token's
/// and the `k` most likely, best first.
///
/// For OpenAI `logprobs`: the scheduler calls this with the logits *before* penalties and
/// temperature (vLLM's default) for every sampled token of a request whose `sampling.logprobs`
/// is `Some(k)`.
pub fn logprobs(
    logits: &[f32],
    chosen: TokenId,
    k: usize,
    scratch: &mut Vec<(f32, TokenId)>,
) -> (f32, Vec<(TokenId, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_total = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    let chosen_logprob = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| l - log_total);
    scratch.clear();
    scratch.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as TokenId)));
    let k = k.min(scratch.len());
    if k == 0 {
        return (chosen_logprob, Vec::new());
    }
    let by_desc = |a: &(f32, TokenId), b: &(f32, TokenId)| b.0.total_cmp(&a.0);
    scratch.select_nth_unstable_by(k - 1, by_desc);
    scratch.truncate(k);
    scratch.sort_unstable_by(by_desc);
    let top = scratch.iter().map(|&(l, t)| (t, l - log_total)).collect();
    (chosen_logprob, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(temperature: f32, seed: u64) -> SamplingOptions {
        SamplingOptions {
            temperature: Some(temperature),
            seed: Some(seed),
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut scratch = Vec::new();
        let mut s = Sampler::new(&options(0.0, 1), &[]);
        let mut logits = vec![0.1, 3.0, f32::NAN, 2.9];
        assert_eq!(s.sample(&mut logits, &mut scratch), 1);
        let mut top1 = Sampler::new(
            &SamplingOptions {
                top_k: Some(1),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(top1.sample(&mut logits, &mut scratch), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_filters_hold() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let draw = |opts: &SamplingOptions| {
            let mut s = Sampler::new(opts, &[]);
            let mut scratch = Vec::new();
            (0..200)
                .map(|_| s.sample(&mut logits.clone(), &mut scratch))
                .collect::<Vec<_>>()
        };
        let a = draw(&options(1.0, 7));
        assert_eq!(a, draw(&options(1.0, 7)));
        assert_ne!(a, draw(&options(1.0, 8)));
        assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 5);

        let mut top3 = options(1.0, 7);
        top3.top_k = Some(3);
        let mut best: Vec<TokenId> = (0..50).collect();
        best.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
        for t in draw(&top3) {
            assert!(best[..3].contains(&t), "{t} outside the top 3");
        }
        let mut nucleus = options(1.0, 7);
        nucleus.top_p = Some(1e-6);
        assert!(draw(&nucleus).iter().all(|&t| t == best[0]));
        let mut min_p = options(1.0, 7);
        min_p.min_p = Some(1.0);
        assert!(draw(&min_p).iter().all(|&t| t == best[0]));
    }

    #[test]
    fn penalties_push_repeats_down() {
        let mut scratch = Vec::new();
        let mut opts = options(0.0, 1);
        opts.frequency_penalty = Some(2.0);
        let mut s = Sampler::new(&opts, &[]);
        let first = s.sample(&mut [1.0, 0.5, 0.0], &mut scratch);
        let second = s.sample(&mut [1.0, 0.5, 0.0], &mut scratch);
        assert_eq!((first, second), (0, 1));

        let mut opts = options(0.0, 1);
        opts.repetition_penalty = Some(4.0);
        let mut s = Sampler::new(&opts, &[0]);
        assert_eq!(s.sample(&mut [1.0, 0.5, 0.0], &mut scratch), 1);
    }

    #[test]
    fn logprobs_are_a_log_softmax() {
        let mut scratch = Vec::new();
        let (chosen, top) = logprobs(&[0.0, (2.0f32).ln(), f32::NEG_INFINITY], 0, 2, &mut scratch);
        assert!((chosen - (1.0f32 / 3.0).ln()).abs() < 1e-6);
        assert_eq!(top[0].0, 1);
        assert!((top[0].1 - (2.0f32 / 3.0).ln()).abs() < 1e-6);
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn bad_options_are_named() {
        let mut o = SamplingOptions {
            temperature: Some(-1.0),
            ..Default::default()
        };
        assert!(validate(&o).unwrap_err().contains("temperature"));
        o.temperature = None;
        o.top_p = Some(0.0);
        assert!(validate(&o).unwrap_err().contains("top_p"));
        o.top_p = None;
        o.top_k = Some(-5);
        assert!(validate(&o).unwrap_err().contains("top_k"));
        assert!(validate(&SamplingOptions::default()).is_ok());
    }
}
