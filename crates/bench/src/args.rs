//! Command-line arguments of `switchyard bench load`.

use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};

/// Which OpenAI route to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions` with one user message.
    Chat,
    /// `POST /v1/completions` with a string prompt.
    Completions,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

/// Load generator options: one measured phase per `--concurrency` value.
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// Server base URL (http only); routes are appended to its path.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,

    /// OpenAI route to drive.
    #[arg(long, value_enum, default_value_t = Endpoint::Completions)]
    pub endpoint: Endpoint,

    /// Model name; default: the first model `GET /v1/models` lists.
    #[arg(long)]
    pub model: Option<String>,

    /// Concurrent clients per phase, comma separated; phases run in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,

    /// Measured requests per phase (instead of a duration).
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<u64>,

    /// Measured seconds per phase [default: 10]. Requests still in flight at the end are
    /// abandoned and not counted, as wrk does.
    #[arg(long)]
    pub duration: Option<f64>,

    /// Unmeasured requests each client sends before a phase's clock starts.
    #[arg(long, default_value_t = 2)]
    pub warmup_requests: u32,

    /// Approximate prompt length in tokens (common English words, about one token each).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,

    /// `max_tokens` of every request.
    #[arg(long, default_value_t = 100)]
    pub max_tokens: u32,

    /// Send `"ignore_eos": true` so every request generates `max_tokens` (the default).
    #[arg(long, overrides_with = "no_ignore_eos")]
    pub ignore_eos: bool,

    /// Do not send `ignore_eos`.
    #[arg(long, overrides_with = "ignore_eos")]
    pub no_ignore_eos: bool,

    /// Stream responses as SSE (the default).
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,

    /// Unary responses: one JSON body per request (no TTFT / ITL).
    #[arg(long, overrides_with = "stream")]
    pub no_stream: bool,

    /// Print one JSON object for the whole run instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Generator runtime threads; 1 runs everything on one thread.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Seconds before one request counts as failed.
    #[arg(long, default_value_t = 300.0)]
    pub request_timeout: f64,

    /// Server process to report peak RSS (VmHWM) for at the end.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl Default for LoadArgs {
    fn default() -> Self {
        Self::try_parse_from_iter(["load"]).expect("defaults parse")
    }
}

impl LoadArgs {
    /// Parses arguments as if given on the command line (first item: program name).
    pub fn try_parse_from_iter<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("load"));
        let matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    pub fn streaming(&self) -> bool {
        !self.no_stream
    }

    pub fn sends_ignore_eos(&self) -> bool {
        !self.no_ignore_eos
    }

    /// Checks ranges; every later step relies on these.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.concurrency.is_empty(),
            "--concurrency needs at least one value"
        );
        anyhow::ensure!(
            self.concurrency.iter().all(|&c| c > 0),
            "--concurrency values must be at least 1"
        );
        if let Some(requests) = self.requests {
            anyhow::ensure!(requests > 0, "--requests must be at least 1");
        }
        if let Some(duration) = self.duration {
            anyhow::ensure!(
                duration.is_finite() && duration > 0.0 && duration < 1e7,
                "--duration must be a positive number of seconds"
            );
        }
        anyhow::ensure!(
            self.request_timeout.is_finite()
                && self.request_timeout > 0.0
                && self.request_timeout < 1e7,
            "--request-timeout must be a positive number of seconds"
        );
        anyhow::ensure!(
            (1..=256).contains(&self.threads),
            "--threads must be between 1 and 256"
        );
        anyhow::ensure!(self.max_tokens > 0, "--max-tokens must be at least 1");
        anyhow::ensure!(
            self.prompt_tokens <= 10_000_000,
            "--prompt-tokens must be at most 10,000,000"
        );
        Ok(())
    }

    /// How each phase ends.
    pub fn phase_limit(&self) -> PhaseLimit {
        match (self.requests, self.duration) {
            (Some(requests), _) => PhaseLimit::Requests(requests),
            (None, Some(seconds)) => PhaseLimit::Duration(Duration::from_secs_f64(seconds)),
            (None, None) => PhaseLimit::Duration(Duration::from_secs(10)),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }
}

/// A phase ends after this many measured requests, or after this long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PhaseLimit {
    Requests(u64),
    Duration(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = LoadArgs::default();
        assert_eq!(args.url, "http://127.0.0.1:8000");
        assert_eq!(args.endpoint, Endpoint::Completions);
        assert_eq!(args.concurrency, vec![1, 16, 64]);
        assert_eq!(args.max_tokens, 100);
        assert!(args.streaming() && args.sends_ignore_eos());
        assert_eq!(
            args.phase_limit(),
            PhaseLimit::Duration(Duration::from_secs(10))
        );
        args.validate().unwrap();
    }

    #[test]
    fn flags_parse_and_last_switch_wins() {
        let args = LoadArgs::try_parse_from_iter([
            "load",
            "--concurrency",
            "4,8",
            "--requests",
            "50",
            "--no-stream",
            "--no-ignore-eos",
            "--endpoint",
            "chat",
        ])
        .unwrap();
        assert_eq!(args.concurrency, vec![4, 8]);
        assert_eq!(args.phase_limit(), PhaseLimit::Requests(50));
        assert!(!args.streaming() && !args.sends_ignore_eos());
        assert_eq!(args.endpoint.path(), "/v1/chat/completions");
        let args = LoadArgs::try_parse_from_iter(["load", "--no-stream", "--stream"]).unwrap();
        assert!(args.streaming());
    }

    #[test]
    fn bad_values_are_rejected_with_a_message() {
        assert!(
            LoadArgs::try_parse_from_iter(["load", "--requests", "5", "--duration", "1"]).is_err()
        );
        let zero = LoadArgs::try_parse_from_iter(["load", "--concurrency", "0"]).unwrap();
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("--concurrency"), "{err}");
        let negative = LoadArgs::try_parse_from_iter(["load", "--duration=-1"]).unwrap();
        assert!(negative.validate().is_err());
    }
}
