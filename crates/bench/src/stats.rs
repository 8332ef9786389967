//! Per-client sample collection and per-phase summaries.

use serde::Serialize;

use crate::client::{RequestOutcome, micros};

/// Samples one client gathered during a measured phase (microseconds).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Requests in flight when a timed phase ended; neither success nor error.
    pub abandoned: u64,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub requests_with_prompt_usage: u64,
    /// Sum of `cached_tokens` and the prompt tokens of the requests that reported it.
    pub cached_tokens: u64,
    pub prompt_tokens_with_cache_info: u64,
    pub requests_without_usage: u64,
    pub ttft_us: Vec<u32>,
    pub itl_us: Vec<u32>,
    pub e2e_us: Vec<u32>,
}

impl ClientStats {
    pub fn record(&mut self, outcome: &RequestOutcome, itl_us: &[u32]) {
        if let Some(error) = &outcome.error {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(error.clone());
            }
            return;
        }
        self.ok += 1;
        match outcome.usage_completion_tokens {
            Some(tokens) => self.output_tokens += tokens,
            None => {
                self.requests_without_usage += 1;
                self.output_tokens += outcome.content_chunks;
            }
        }
        if let Some(tokens) = outcome.usage_prompt_tokens {
            self.prompt_tokens += tokens;
            self.requests_with_prompt_usage += 1;
            if let Some(cached) = outcome.usage_cached_tokens {
                self.cached_tokens += cached;
                self.prompt_tokens_with_cache_info += tokens;
            }
        }
        if let Some(ttft) = outcome.ttft {
            self.ttft_us.push(micros(ttft));
        }
        self.itl_us.extend_from_slice(itl_us);
        self.e2e_us.push(micros(outcome.e2e));
    }

    /// Folds `other` in; the first error seen in client order wins.
    pub fn merge(&mut self, mut other: ClientStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error.take();
        }
        self.abandoned += other.abandoned;
        self.output_tokens += other.output_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.requests_with_prompt_usage += other.requests_with_prompt_usage;
        self.cached_tokens += other.cached_tokens;
        self.prompt_tokens_with_cache_info += other.prompt_tokens_with_cache_info;
        self.requests_without_usage += other.requests_without_usage;
        self.ttft_us.append(&mut other.ttft_us);
        self.itl_us.append(&mut other.itl_us);
        self.e2e_us.append(&mut other.e2e_us);
    }
}

/// Latency percentiles in milliseconds; `None` when there were no samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles; sorts `samples_us` in place.
    pub fn from_micros(samples_us: &mut [u32]) -> Self {
        samples_us.sort_unstable();
        let n = samples_us.len();
        let pick = |q: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            Some(f64::from(samples_us[rank - 1]) / 1000.0)
        };
        Self {
            samples: n,
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let p = Percentiles::from_micros(&mut samples);
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50_ms, Some(50.0));
        assert_eq!(p.p90_ms, Some(90.0));
        assert_eq!(p.p99_ms, Some(99.0));
        assert_eq!(p.max_ms, Some(100.0));
        let one = Percentiles::from_micros(&mut [1500]);
        assert_eq!(one.p50_ms, Some(1.5));
        assert_eq!(one.p99_ms, Some(1.5));
        assert_eq!(Percentiles::from_micros(&mut []).p50_ms, None);
    }

    #[test]
    fn usage_wins_over_chunk_count_and_errors_are_kept_apart() {
        let mut stats = ClientStats::default();
        let ok = RequestOutcome {
            ttft: Some(Duration::from_millis(3)),
            e2e: Duration::from_millis(10),
            content_chunks: 4,
            usage_completion_tokens: Some(8),
            usage_prompt_tokens: Some(100),
            usage_cached_tokens: Some(64),
            ..RequestOutcome::default()
        };
        stats.record(&ok, &[100, 200, 300]);
        let no_usage = RequestOutcome {
            content_chunks: 4,
            ..RequestOutcome::default()
        };
        stats.record(&no_usage, &[]);
        let failed = RequestOutcome {
            error: Some("boom".into()),
            content_chunks: 2,
            ..RequestOutcome::default()
        };
        stats.record(&failed, &[5]);
        assert_eq!((stats.ok, stats.errors), (2, 1));
        assert_eq!(stats.output_tokens, 12);
        assert_eq!(stats.requests_without_usage, 1);
        assert_eq!(stats.itl_us, vec![100, 200, 300]);
        assert_eq!(stats.ttft_us, vec![3000]);
        assert_eq!(
            (stats.cached_tokens, stats.prompt_tokens_with_cache_info),
            (64, 100)
        );

        let mut total = ClientStats::default();
        total.merge(stats);
        let mut second = ClientStats::default();
        second.record(
            &RequestOutcome {
                error: Some("later".into()),
                ..RequestOutcome::default()
            },
            &[],
        );
        total.merge(second);
        assert_eq!(total.errors, 2);
        assert_eq!(total.first_error.as_deref(), Some("boom"));
        assert_eq!(total.e2e_us.len(), 2);
    }
}
