//! What a run measured, as a table for people or JSON for scripts.

use serde::Serialize;

use crate::args::Endpoint;
use crate::stats::Percentiles;

/// A whole `bench load` run: its settings and one [`PhaseReport`] per concurrency value.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Full URL of the driven route.
    pub url: String,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub ignore_eos: bool,
    /// The `--prompt-tokens` target (see each phase's `mean_prompt_tokens` for what the server
    /// counted).
    pub prompt_tokens_target: usize,
    pub max_tokens: u32,
    pub generator_threads: usize,
    pub warmup_requests_per_client: u32,
    /// `"10s per phase"` or `"500 requests per phase"`.
    pub phase_limit: String,
    pub phases: Vec<PhaseReport>,
    /// Peak RSS of this generator process, KiB.
    pub generator_peak_rss_kib: u64,
    /// Memory of `--server-pid`, read after the last phase.
    pub server: Option<ServerMemory>,
}

/// One measured phase at a fixed number of concurrent clients.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub concurrency: usize,
    /// Length of the measured window, seconds.
    pub elapsed_s: f64,
    pub requests_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Requests still in flight when a timed phase ended (not counted either way).
    pub abandoned_in_flight: u64,
    pub requests_per_s: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    /// Prompt tokens per request as the server's `usage` counted them.
    pub mean_prompt_tokens: Option<f64>,
    /// Successful requests whose output was counted from content chunks (no `usage`).
    pub requests_without_usage: u64,
    pub ttft: Percentiles,
    pub itl: Percentiles,
    pub e2e: Percentiles,
    pub generator_cpu: CpuUsage,
}

/// CPU time this process spent during a phase's measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUsage {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / wall time × 100: 100 means one core fully busy.
    pub percent_of_one_core: f64,
}

/// `VmHWM` / `VmRSS` of the measured server process.
#[derive(Clone, Debug, Serialize)]
pub struct ServerMemory {
    pub pid: u32,
    pub peak_rss_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    /// Why the numbers are missing (e.g. the process exited).
    pub error: Option<String>,
}

impl LoadReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|err| serde_json::json!({ "error": err.to_string() }))
    }

    /// Prints JSON (one object) or the human table.
    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.to_json());
        } else {
            self.print_human();
        }
    }

    pub fn print_human(&self) {
        print!("{}", self.human_text());
    }

    /// The table [`LoadReport::print_human`] prints.
    pub fn human_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {}  model {}  {}{}prompt ~{} tok  max_tokens {}  {}  warmup {}/client  {} generator thread(s)",
            match self.endpoint {
                Endpoint::Chat => "chat",
                Endpoint::Completions => "completions",
            },
            self.url,
            self.model,
            if self.stream { "stream  " } else { "unary  " },
            if self.ignore_eos { "ignore_eos  " } else { "" },
            self.prompt_tokens_target,
            self.max_tokens,
            self.phase_limit,
            self.warmup_requests_per_client,
            self.generator_threads,
        );
        let _ = writeln!(
            out,
            "{:>5} {:>9} {:>10} {:>8} {:>6} {:>23} {:>15} {:>15} {:>18}",
            "conc",
            "req/s",
            "out tok/s",
            "ok",
            "err",
            "TTFT p50/p90/p99 ms",
            "ITL p50/p99 ms",
            "E2E p50/p99 ms",
            "gen CPU s (%core)",
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "{:>5} {:>9.1} {:>10.1} {:>8} {:>6} {:>23} {:>15} {:>15} {:>18}",
                phase.concurrency,
                phase.requests_per_s,
                phase.output_tokens_per_s,
                phase.requests_ok,
                phase.errors,
                format!(
                    "{}/{}/{}",
                    ms(phase.ttft.p50_ms),
                    ms(phase.ttft.p90_ms),
                    ms(phase.ttft.p99_ms)
                ),
                format!("{}/{}", ms(phase.itl.p50_ms), ms(phase.itl.p99_ms)),
                format!("{}/{}", ms(phase.e2e.p50_ms), ms(phase.e2e.p99_ms)),
                format!(
                    "{:.2} ({:.0}%)",
                    phase.generator_cpu.user_s + phase.generator_cpu.sys_s,
                    phase.generator_cpu.percent_of_one_core
                ),
            );
        }
        for phase in &self.phases {
            if let Some(error) = &phase.first_error {
                let _ = writeln!(
                    out,
                    "concurrency {}: {} errors, first: {}",
                    phase.concurrency, phase.errors, error
                );
            }
            if phase.requests_without_usage > 0 {
                let _ = writeln!(
                    out,
                    "concurrency {}: {} responses had no usage; their output tokens are content chunk counts",
                    phase.concurrency, phase.requests_without_usage
                );
            }
        }
        let prompt: Vec<String> = self
            .phases
            .iter()
            .filter_map(|p| p.mean_prompt_tokens.map(|t| format!("{t:.0}")))
            .collect();
        if !prompt.is_empty() {
            let _ = writeln!(
                out,
                "server-counted prompt tokens per request: {}",
                prompt.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "generator peak RSS {:.1} MiB",
            self.generator_peak_rss_kib as f64 / 1024.0
        );
        if let Some(server) = &self.server {
            match (&server.error, server.peak_rss_kib) {
                (None, Some(peak)) => {
                    let _ = writeln!(
                        out,
                        "server pid {} peak RSS {:.1} MiB (now {:.1} MiB)",
                        server.pid,
                        peak as f64 / 1024.0,
                        server.rss_kib.unwrap_or(0) as f64 / 1024.0
                    );
                }
                (error, _) => {
                    let _ = writeln!(
                        out,
                        "server pid {}: memory unknown ({})",
                        server.pid,
                        error.as_deref().unwrap_or("no VmHWM line")
                    );
                }
            }
        }
        out
    }
}

/// Milliseconds with precision that suits their size; `-` when there is no sample.
pub(crate) fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoadReport {
        LoadReport {
            url: "http://h/v1/completions".into(),
            endpoint: Endpoint::Completions,
            model: "m".into(),
            stream: true,
            ignore_eos: true,
            prompt_tokens_target: 128,
            max_tokens: 10,
            generator_threads: 1,
            warmup_requests_per_client: 2,
            phase_limit: "10s per phase".into(),
            phases: vec![PhaseReport {
                concurrency: 4,
                elapsed_s: 2.0,
                requests_ok: 10,
                errors: 1,
                first_error: Some("HTTP 500".into()),
                abandoned_in_flight: 0,
                requests_per_s: 5.0,
                output_tokens: 100,
                output_tokens_per_s: 50.0,
                mean_prompt_tokens: Some(130.0),
                requests_without_usage: 0,
                ttft: Percentiles::from_micros(&mut [1000, 2000]),
                itl: Percentiles::default(),
                e2e: Percentiles::from_micros(&mut [250_000]),
                generator_cpu: CpuUsage::default(),
            }],
            generator_peak_rss_kib: 2048,
            server: Some(ServerMemory {
                pid: 7,
                peak_rss_kib: Some(4096),
                rss_kib: Some(1024),
                error: None,
            }),
        }
    }

    #[test]
    fn json_carries_every_phase_figure() {
        let json = report().to_json();
        assert_eq!(json["phases"][0]["requests_ok"], 10);
        assert_eq!(json["phases"][0]["ttft"]["p50_ms"], 1.0);
        assert!(json["phases"][0]["itl"]["p50_ms"].is_null());
        assert_eq!(json["endpoint"], "completions");
        assert_eq!(json["server"]["peak_rss_kib"], 4096);
    }

    #[test]
    fn human_table_shows_errors_and_memory() {
        let text = report().human_text();
        assert!(text.contains("1 errors, first: HTTP 500"), "{text}");
        assert!(text.contains("1.00/2.00/2.00"), "{text}");
        assert!(text.contains("server pid 7 peak RSS 4.0 MiB"), "{text}");
        assert!(text.contains("prompt tokens per request: 130"), "{text}");
    }
}
