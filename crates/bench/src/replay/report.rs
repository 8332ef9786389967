//! What a replay measured: JSON for scripts, a summary for people.

use serde::Serialize;

use crate::report::ms;
use crate::stats::Percentiles;

/// A whole replay. Latencies are wall clock; with `--speedup X` the simulated engine ran X times
/// faster than the trace's, so `trace_time` multiplies them back by X.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Requests sent.
    pub requests: u64,
    pub requests_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub ttft_ms: Quantiles,
    pub itl_ms: Quantiles,
    pub e2e_ms: Quantiles,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    /// Sum of `cached_tokens` over sum of prompt tokens, as the engines reported them; `None`
    /// when no response carried `prompt_tokens_details`.
    pub cache_hit_rate: Option<f64>,
    /// Fraction of routing decisions per worker during the replay (same order as `worker_ids`);
    /// empty when the server exposes no `switchyard_router_decisions_total`.
    pub worker_share: Vec<f64>,
    pub worker_ids: Vec<String>,
    /// The latencies above multiplied by the speed-up: what the original trace's clock would show.
    pub trace_time: TraceTime,
    pub speedup: f64,
    /// The trace's request rate was multiplied by this on top of the speed-up.
    pub load_scale: f64,
    /// `None` when replaying against `--url`.
    pub router_mode: Option<String>,
    pub workers: Option<u32>,
    pub url: String,
    pub model: String,
    pub trace: String,
    pub elapsed_s: f64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Latest a request was sent after its scheduled time, and how many were over 100 ms late.
    pub max_send_lag_ms: f64,
    pub requests_late_over_100ms: u64,
    /// Generator process CPU over the run, percent of one core.
    pub generator_cpu_percent: f64,
    /// Server and machine CPU over the run.
    pub cpu: super::cpu::CpuUse,
    /// Whether the machine's CPU (not the simulated engines) limited the run: the machine was
    /// at least 90% busy; `None` when `/proc/stat` was unreadable.
    pub machine_bound: Option<bool>,
}

/// p50 / p90 / p99 in milliseconds (`None` without samples).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub samples: usize,
}

impl Quantiles {
    pub fn from_percentiles(p: &Percentiles) -> Self {
        Self {
            p50: p.p50_ms,
            p90: p.p90_ms,
            p99: p.p99_ms,
            samples: p.samples,
        }
    }

    fn scaled(&self, factor: f64) -> Self {
        let scale = |v: Option<f64>| v.map(|v| v * factor);
        Self {
            p50: scale(self.p50),
            p90: scale(self.p90),
            p99: scale(self.p99),
            samples: self.samples,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TraceTime {
    pub ttft_ms: Quantiles,
    pub itl_ms: Quantiles,
    pub e2e_ms: Quantiles,
}

impl TraceTime {
    pub fn new(ttft: &Quantiles, itl: &Quantiles, e2e: &Quantiles, speedup: f64) -> Self {
        Self {
            ttft_ms: ttft.scaled(speedup),
            itl_ms: itl.scaled(speedup),
            e2e_ms: e2e.scaled(speedup),
        }
    }
}

impl ReplayReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|err| serde_json::json!({ "error": err.to_string() }))
    }

    pub fn human_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "replay {}  {} requests ({} ok, {} errors) in {:.1} s  model {}  {}",
            self.trace,
            self.requests,
            self.requests_ok,
            self.errors,
            self.elapsed_s,
            self.model,
            match (&self.router_mode, self.workers) {
                (Some(mode), Some(workers)) => {
                    format!("serve: {workers} mocker workers, router {mode}")
                }
                _ => format!("server {}", self.url),
            },
        );
        let x = self.speedup;
        let _ = writeln!(
            out,
            "wall clock (the simulated engines run {x}x faster than the trace's clock):"
        );
        write_latencies(&mut out, &self.ttft_ms, &self.itl_ms, &self.e2e_ms);
        let _ = writeln!(out, "trace time (wall clock x {x}):");
        write_latencies(
            &mut out,
            &self.trace_time.ttft_ms,
            &self.trace_time.itl_ms,
            &self.trace_time.e2e_ms,
        );
        let _ = writeln!(
            out,
            "  throughput      {:.2} requests/s, {:.0} output tokens/s (wall clock)",
            self.requests_per_s, self.output_tokens_per_s
        );
        let _ = writeln!(
            out,
            "  cache hit rate  {}",
            match self.cache_hit_rate {
                Some(rate) => format!(
                    "{rate:.3} of {} prompt tokens (cached_tokens reported by the engines)",
                    self.prompt_tokens
                ),
                None => "unknown (responses carried no prompt_tokens_details)".to_string(),
            }
        );
        if self.worker_share.is_empty() {
            let _ = writeln!(
                out,
                "  worker share    unknown (no switchyard_router_decisions_total in /metrics)"
            );
        } else {
            let shares: Vec<String> = self
                .worker_ids
                .iter()
                .zip(&self.worker_share)
                .map(|(id, share)| format!("{id}:{:.1}%", share * 100.0))
                .collect();
            let _ = writeln!(out, "  worker share    {}", shares.join(" "));
        }
        let _ = writeln!(
            out,
            "  sender          max lag {:.0} ms behind schedule, {} requests over 100 ms late; generator CPU {:.0}% of one core",
            self.max_send_lag_ms, self.requests_late_over_100ms, self.generator_cpu_percent
        );
        let percent = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}%"));
        let _ = writeln!(
            out,
            "  CPU             server {} of one core; machine {} busy over {} cores: {}",
            percent(self.cpu.server_percent),
            percent(self.cpu.machine_busy_percent),
            self.cpu.cores,
            match self.machine_bound {
                Some(true) => "bound by this machine's CPU, not by the simulated engines",
                Some(false) => "CPU to spare: latencies are the simulated engines'",
                None => "unknown",
            }
        );
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "  first error     {error}");
        }
        out
    }
}

fn write_latencies(out: &mut String, ttft: &Quantiles, itl: &Quantiles, e2e: &Quantiles) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "  TTFT ms         p50 {}  p90 {}  p99 {}",
        ms(ttft.p50),
        ms(ttft.p90),
        ms(ttft.p99)
    );
    let _ = writeln!(
        out,
        "  ITL ms          p50 {}  p99 {}",
        ms(itl.p50),
        ms(itl.p99)
    );
    let _ = writeln!(
        out,
        "  end-to-end ms   p50 {}  p99 {}",
        ms(e2e.p50),
        ms(e2e.p99)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_shape_and_trace_time_is_scaled() {
        let ttft = Quantiles::from_percentiles(&Percentiles::from_micros(&mut [1000, 3000]));
        let itl = Quantiles::default();
        let e2e = Quantiles::from_percentiles(&Percentiles::from_micros(&mut [10_000]));
        let report = ReplayReport {
            requests: 2,
            requests_ok: 2,
            errors: 0,
            first_error: None,
            trace_time: TraceTime::new(&ttft, &itl, &e2e, 4.0),
            ttft_ms: ttft,
            itl_ms: itl,
            e2e_ms: e2e,
            requests_per_s: 1.0,
            output_tokens_per_s: 10.0,
            cache_hit_rate: Some(0.25),
            worker_share: vec![0.5, 0.5],
            worker_ids: vec!["0".into(), "1".into()],
            speedup: 4.0,
            load_scale: 1.0,
            router_mode: Some("kv".into()),
            workers: Some(2),
            url: "http://x".into(),
            model: "m".into(),
            trace: "t".into(),
            elapsed_s: 2.0,
            prompt_tokens: 100,
            output_tokens: 20,
            max_send_lag_ms: 0.5,
            requests_late_over_100ms: 0,
            generator_cpu_percent: 3.0,
            cpu: super::super::cpu::CpuUse {
                server_percent: Some(50.0),
                machine_busy_percent: Some(95.0),
                cores: 2,
            },
            machine_bound: Some(true),
        };
        let json = report.to_json();
        assert_eq!(json["requests"], 2);
        assert_eq!(json["ttft_ms"]["p50"], 1.0);
        assert_eq!(json["ttft_ms"]["p90"], 3.0);
        assert!(json["itl_ms"]["p50"].is_null());
        assert_eq!(json["e2e_ms"]["p99"], 10.0);
        assert_eq!(json["trace_time"]["e2e_ms"]["p99"], 40.0);
        assert_eq!(json["cache_hit_rate"], 0.25);
        assert_eq!(json["worker_share"][1], 0.5);
        let text = report.human_text();
        assert!(text.contains("x 4"), "{text}");
        assert!(text.contains("p99 40.0"), "{text}");
        assert!(text.contains("1:50.0%"), "{text}");
        assert!(text.contains("bound by this machine's CPU"), "{text}");
        assert_eq!(json["machine_bound"], true);
        assert_eq!(json["cpu"]["machine_busy_percent"], 95.0);
    }
}
