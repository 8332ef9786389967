//! Cache-aware worker selection: the cost of sending a request to each worker, and the choice.
//!
//! Cost per worker, in blocks (lower is better):
//!
//! ```text
//! cost = overlap_score_weight × prefill_blocks + decode_blocks
//! prefill_blocks = (request blocks the worker lacks) + (prefill still pending on it, in blocks)
//! decode_blocks  = (blocks of the requests it is running) + (this request's blocks)
//! ```
//!
//! The first term is the prefill work the choice would cause (what the cache hit saves), the
//! second the memory/decode load it would add to. At temperature 0 the choice is the argmin,
//! ties broken by fewer active requests, then by the lower worker id, so every router replica
//! with the same state makes the same decision. Above 0 a worker is sampled with probability
//! ∝ exp(−normalized cost / temperature).

use rand::Rng;

/// What the selector knows about one worker for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub worker: u64,
    /// Leading request blocks the worker already holds.
    pub overlap_blocks: u32,
    pub active_requests: u64,
    /// Prompt tokens routed to it whose prefill has not finished yet.
    pub pending_prefill_tokens: u64,
    /// KV blocks of the requests running on it.
    pub active_blocks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvSelectorConfig {
    pub overlap_score_weight: f64,
    pub temperature: f64,
}

impl Default for KvSelectorConfig {
    fn default() -> Self {
        KvSelectorConfig {
            overlap_score_weight: 1.0,
            temperature: 0.0,
        }
    }
}

/// The cost of placing a request of `request_tokens` tokens (`request_blocks` full blocks) on
/// `c`.
pub fn cost(
    config: &KvSelectorConfig,
    c: &Candidate,
    request_tokens: u64,
    request_blocks: u32,
    block_size: u32,
) -> f64 {
    let block_size = f64::from(block_size.max(1));
    let cached_tokens = f64::from(c.overlap_blocks.min(request_blocks)) * block_size;
    let new_prefill_blocks = (request_tokens as f64 - cached_tokens).max(0.0) / block_size;
    let pending_prefill_blocks = c.pending_prefill_tokens as f64 / block_size;
    let decode_blocks = c.active_blocks as f64 + request_tokens as f64 / block_size;
    config.overlap_score_weight * (new_prefill_blocks + pending_prefill_blocks) + decode_blocks
}

/// Index into `candidates` of the chosen worker. `candidates` must not be empty.
pub fn choose(
    config: &KvSelectorConfig,
    candidates: &[Candidate],
    request_tokens: u64,
    request_blocks: u32,
    block_size: u32,
    rng: &mut impl Rng,
) -> usize {
    debug_assert!(!candidates.is_empty());
    let costs = candidates
        .iter()
        .map(|c| cost(config, c, request_tokens, request_blocks, block_size));
    if config.temperature <= 0.0 {
        let mut best = 0;
        let mut best_key = (f64::INFINITY, u64::MAX, u64::MAX);
        for (i, (c, cost)) in candidates.iter().zip(costs).enumerate() {
            let key = (cost, c.active_requests, c.worker);
            if key.0 < best_key.0
                || (key.0 == best_key.0 && (key.1, key.2) < (best_key.1, best_key.2))
            {
                best = i;
                best_key = key;
            }
        }
        return best;
    }
    // Softmax over costs normalized to [0, 1], so the temperature means the same whatever the
    // request size.
    let costs: smallvec::SmallVec<[f64; 16]> = costs.collect();
    let (min, max) = costs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
            (lo.min(c), hi.max(c))
        });
    let span = if max > min { max - min } else { 1.0 };
    let weights: smallvec::SmallVec<[f64; 16]> = costs
        .iter()
        .map(|&c| (-(c - min) / span / config.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut pick = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            return i;
        }
        pick -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(worker: u64, overlap: u32, active: u64, blocks: u64) -> Candidate {
        Candidate {
            worker,
            overlap_blocks: overlap,
            active_requests: active,
            pending_prefill_tokens: 0,
            active_blocks: blocks,
        }
    }

    #[test]
    fn prefers_the_cache_hit_when_load_is_equal() {
        let cfg = KvSelectorConfig::default();
        let cs = [candidate(1, 0, 0, 0), candidate(2, 6, 0, 0)];
        assert_eq!(choose(&cfg, &cs, 640, 10, 64, &mut rand::rng()), 1);
    }

    #[test]
    fn load_outweighs_a_small_hit() {
        let cfg = KvSelectorConfig::default();
        // Worker 2 holds 2 blocks but runs 100 blocks of other requests.
        let cs = [candidate(1, 0, 1, 10), candidate(2, 2, 5, 100)];
        assert_eq!(choose(&cfg, &cs, 640, 10, 64, &mut rand::rng()), 0);
    }

    #[test]
    fn weight_zero_ignores_the_cache() {
        let cfg = KvSelectorConfig {
            overlap_score_weight: 0.0,
            temperature: 0.0,
        };
        let cs = [candidate(1, 10, 0, 5), candidate(2, 0, 0, 4)];
        assert_eq!(choose(&cfg, &cs, 640, 10, 64, &mut rand::rng()), 1);
    }

    #[test]
    fn ties_break_by_active_requests_then_worker_id() {
        let cfg = KvSelectorConfig::default();
        let cs = [
            candidate(3, 0, 2, 0),
            candidate(2, 0, 1, 0),
            candidate(1, 0, 1, 0),
        ];
        assert_eq!(choose(&cfg, &cs, 64, 1, 64, &mut rand::rng()), 2);
    }

    #[test]
    fn temperature_spreads_choices_but_favours_the_cheaper() {
        let cfg = KvSelectorConfig {
            overlap_score_weight: 1.0,
            temperature: 0.5,
        };
        let cs = [candidate(1, 0, 0, 0), candidate(2, 10, 0, 0)];
        let mut counts = [0u32; 2];
        let mut rng = rand::rng();
        for _ in 0..2000 {
            counts[choose(&cfg, &cs, 640, 10, 64, &mut rng)] += 1;
        }
        assert!(counts[1] > counts[0], "{counts:?}");
        assert!(counts[0] > 0, "{counts:?}");
    }
}
