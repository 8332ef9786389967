//! Command-line arguments of `switchyard bench replay`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};

/// `serve --router-mode` values (spelled as `serve` spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayRouterMode {
    RoundRobin,
    Random,
    PowerOfTwo,
    LeastLoaded,
    Kv,
}

impl ReplayRouterMode {
    pub fn as_flag(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::Random => "random",
            Self::PowerOfTwo => "power-of-two",
            Self::LeastLoaded => "least-loaded",
            Self::Kv => "kv",
        }
    }
}

/// Trace replay options. Without `--url`, `serve` is started with mocker workers and the
/// server flags below; with `--url`, those flags are ignored.
#[derive(Clone, Debug, Args)]
pub struct ReplayArgs {
    /// Mooncake-format trace: one JSON object per line (timestamp ms, input_length,
    /// output_length, hash_ids of 512-token blocks).
    #[arg(long)]
    pub trace: PathBuf,

    /// Replay against this running server instead of starting `serve` (http only).
    #[arg(long)]
    pub url: Option<String>,

    /// Model name to request; default: the first model `GET /v1/models` lists.
    #[arg(long)]
    pub model: Option<String>,

    /// Model folder for `serve`; its tokenizer.json also gives the vocabulary size.
    #[arg(long, default_value = "models/qwen3")]
    pub model_path: PathBuf,

    /// Vocabulary size token ids are drawn below (minus a margin of 1000); default: from the
    /// model folder's tokenizer.json, else 150000.
    #[arg(long)]
    pub vocab_size: Option<u32>,

    /// Mocker workers `serve` starts.
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,

    /// `serve --router-mode`.
    #[arg(long, value_enum, default_value_t = ReplayRouterMode::RoundRobin)]
    pub router_mode: ReplayRouterMode,

    /// `serve --no-kv-events` (approximate KV routing; needs --router-mode kv).
    #[arg(long)]
    pub no_kv_events: bool,

    /// Divides the trace's arrival gaps and (as `serve --speedup-ratio`) the mocker's simulated
    /// durations, so the load level matches the original trace in less wall time.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,

    /// Multiplies the trace's request rate on top of --speedup: arrival gaps are divided by
    /// speedup x load-scale, the mocker's durations by speedup only, so 2 offers the simulated
    /// engines twice the trace's load (to replay near saturation).
    #[arg(long, default_value_t = 1.0)]
    pub load_scale: f64,

    /// Replay only the first K requests of the trace.
    #[arg(long)]
    pub max_requests: Option<usize>,

    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// Mocker: tokens per KV cache block [serve's default].
    #[arg(long)]
    pub block_size: Option<u32>,

    /// Mocker: KV cache blocks per worker [serve's default].
    #[arg(long)]
    pub num_gpu_blocks: Option<usize>,

    /// Mocker: sequences running at once per worker [serve's default].
    #[arg(long)]
    pub max_num_seqs: Option<usize>,

    /// Mocker: tokens per scheduler step [serve's default].
    #[arg(long)]
    pub max_num_batched_tokens: Option<u32>,

    /// Requests in flight at most; past it the sender waits and falls behind schedule.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Seconds before one request counts as failed.
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,

    /// Binary started as `<bin> serve ...` [default: this program].
    #[arg(long, hide = true)]
    pub serve_binary: Option<PathBuf>,
}

impl ReplayArgs {
    /// Parses arguments as if given on the command line (first item: program name).
    pub fn try_parse_from_iter<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("replay"));
        let matches = command.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// Checks what clap cannot; the message says what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.speedup.is_finite() && self.speedup > 0.0,
            "--speedup must be a positive number, got {}",
            self.speedup
        );
        anyhow::ensure!(
            self.load_scale.is_finite() && self.load_scale > 0.0,
            "--load-scale must be a positive number, got {}",
            self.load_scale
        );
        anyhow::ensure!(
            !self.no_kv_events || self.router_mode == ReplayRouterMode::Kv,
            "--no-kv-events only applies to --router-mode kv: add --router-mode kv or drop --no-kv-events"
        );
        anyhow::ensure!(self.max_in_flight > 0, "--max-in-flight must be at least 1");
        anyhow::ensure!(
            self.max_requests != Some(0),
            "--max-requests must be at least 1"
        );
        anyhow::ensure!(
            self.request_timeout.is_finite() && self.request_timeout > 0.0,
            "--request-timeout must be a positive number of seconds, got {}",
            self.request_timeout
        );
        Ok(())
    }

    /// Wall-clock seconds after the replay's start at which a request stamped `timestamp_ms`
    /// in the trace is sent.
    pub fn send_offset_s(&self, timestamp_ms: u64) -> f64 {
        timestamp_ms as f64 / 1000.0 / (self.speedup * self.load_scale)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// Arguments after `serve` for the server this replay starts on `port`.
    pub fn serve_args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.into());
            args.push(value.into());
        };
        push("--engine", "mocker".into());
        push("--http-host", "127.0.0.1".into());
        push("--http-port", port.to_string());
        push("--workers", self.workers.to_string());
        push("--router-mode", self.router_mode.as_flag().into());
        push("--speedup-ratio", self.speedup.to_string());
        if let Some(v) = self.block_size {
            push("--block-size", v.to_string());
        }
        if let Some(v) = self.num_gpu_blocks {
            push("--num-gpu-blocks", v.to_string());
        }
        if let Some(v) = self.max_num_seqs {
            push("--max-num-seqs", v.to_string());
        }
        if let Some(v) = self.max_num_batched_tokens {
            push("--max-num-batched-tokens", v.to_string());
        }
        if self.no_kv_events {
            args.push("--no-kv-events".into());
        }
        args.push("--model-path".into());
        args.push(self.model_path.clone().into_os_string());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_follow_the_replay_flags() {
        let args = ReplayArgs::try_parse_from_iter([
            "replay",
            "--trace",
            "t.jsonl",
            "--router-mode",
            "kv",
            "--no-kv-events",
            "--speedup",
            "4",
            "--block-size",
            "64",
            "--workers",
            "3",
        ])
        .unwrap();
        args.validate().unwrap();
        let serve: Vec<String> = args
            .serve_args(1234)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = serve.join(" ");
        for expected in [
            "--engine mocker",
            "--http-port 1234",
            "--workers 3",
            "--router-mode kv",
            "--speedup-ratio 4",
            "--block-size 64",
            "--no-kv-events",
            "--model-path models/qwen3",
        ] {
            assert!(joined.contains(expected), "{expected} missing: {joined}");
        }
        assert!(!joined.contains("--num-gpu-blocks"), "{joined}");
    }

    #[test]
    fn bad_combinations_are_rejected_with_a_message() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["replay", "--trace", "t"];
            argv.extend_from_slice(extra);
            ReplayArgs::try_parse_from_iter(argv).unwrap()
        };
        let err = parse(&["--no-kv-events"]).validate().unwrap_err();
        assert!(err.to_string().contains("--router-mode kv"), "{err}");
        assert!(parse(&["--speedup", "0"]).validate().is_err());
        assert!(parse(&["--load-scale", "0"]).validate().is_err());
        assert!(parse(&["--load-scale", "NaN"]).validate().is_err());
        let scaled = parse(&["--speedup", "4", "--load-scale", "2.5"]);
        scaled.validate().unwrap();
        assert_eq!(scaled.send_offset_s(10_000), 1.0);
        assert!(
            scaled
                .serve_args(1)
                .windows(2)
                .any(|w| w[0] == "--speedup-ratio" && w[1] == "4"),
            "the engines are sped up by --speedup alone"
        );
        assert!(parse(&["--max-requests", "0"]).validate().is_err());
        assert!(
            ReplayArgs::try_parse_from_iter(["replay"]).is_err(),
            "--trace is required"
        );
        assert!(parse(&[]).validate().is_ok());
    }
}
