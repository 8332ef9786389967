//! Flags. Every flag can also come from the environment as `SWITCHYARD_<FLAG>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "LLM inference frontend and KV-cache-aware router"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the frontend and in-process workers in one process.
    Serve(ServeArgs),
    /// Measure a running server.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Closed-loop load against an OpenAI endpoint: requests/s, tokens/s, TTFT, ITL.
    Load(switchyard_bench::LoadArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// Returns the prompt's tokens as output (conformance tests).
    Echo,
    /// A simulated GPU engine with a timing model.
    Mocker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterModeArg {
    RoundRobin,
    Random,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address the HTTP server binds.
    #[arg(long, env = "SWITCHYARD_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: String,

    /// Port of the HTTP server.
    #[arg(long, env = "SWITCHYARD_HTTP_PORT", default_value_t = 8000)]
    pub http_port: u16,

    /// TLS certificate (PEM); needs --tls-key-path too.
    #[arg(long, env = "SWITCHYARD_TLS_CERT_PATH")]
    pub tls_cert_path: Option<PathBuf>,

    /// TLS private key (PEM); needs --tls-cert-path too.
    #[arg(long, env = "SWITCHYARD_TLS_KEY_PATH")]
    pub tls_key_path: Option<PathBuf>,

    /// How requests are spread over workers.
    #[arg(
        long,
        env = "SWITCHYARD_ROUTER_MODE",
        value_enum,
        default_value = "round-robin"
    )]
    pub router_mode: RouterModeArg,

    /// Scope of discovery and events.
    #[arg(long, env = "SWITCHYARD_NAMESPACE", default_value = "switchyard")]
    pub namespace: String,

    /// How many times a request may move to another worker when its worker fails (0 = off).
    #[arg(long, env = "SWITCHYARD_MIGRATION_LIMIT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub migration_limit: u32,

    /// Engine of the in-process workers.
    #[arg(long, env = "SWITCHYARD_ENGINE", value_enum, default_value = "mocker")]
    pub engine: EngineKind,

    /// Number of in-process workers.
    #[arg(long, env = "SWITCHYARD_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub workers: u32,

    /// Per-token delay of the echo engine, in milliseconds.
    #[arg(long, env = "SWITCHYARD_ECHO_DELAY_MS", default_value_t = 0)]
    pub echo_delay_ms: u64,

    /// Mocker: divides every simulated duration (0 = no simulated delay at all).
    #[arg(long, env = "SWITCHYARD_SPEEDUP_RATIO", default_value_t = 1.0)]
    pub speedup_ratio: f64,

    /// Hugging Face style model folder (tokenizer.json, tokenizer_config.json, ...).
    #[arg(long, env = "SWITCHYARD_MODEL_PATH", default_value = "models/qwen3")]
    pub model_path: PathBuf,

    /// Name clients use for the model (default: the model folder's name).
    #[arg(long, env = "SWITCHYARD_MODEL_NAME")]
    pub model_name: Option<String>,
}

impl ServeArgs {
    /// Checks combinations clap cannot express; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert_path, &self.tls_key_path) {
            (Some(_), None) => {
                return Err("--tls-cert-path was given without --tls-key-path: HTTPS needs both (or neither, for plain HTTP)".into());
            }
            (None, Some(_)) => {
                return Err("--tls-key-path was given without --tls-cert-path: HTTPS needs both (or neither, for plain HTTP)".into());
            }
            _ => {}
        }
        if !self.speedup_ratio.is_finite() || self.speedup_ratio < 0.0 {
            return Err(format!(
                "--speedup-ratio must be a finite number >= 0 (0 disables simulated delays), got {}",
                self.speedup_ratio
            ));
        }
        Ok(())
    }
}

/// The request body limit, from `SWITCHYARD_HTTP_BODY_LIMIT_MB` (default 45).
pub fn body_limit_bytes() -> Result<usize, String> {
    match std::env::var("SWITCHYARD_HTTP_BODY_LIMIT_MB") {
        Err(_) => Ok(45 * 1024 * 1024),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(mb) if mb > 0 && mb <= 4096 => Ok(mb * 1024 * 1024),
            _ => Err(format!(
                "SWITCHYARD_HTTP_BODY_LIMIT_MB must be a whole number of megabytes between 1 and 4096, got `{v}`"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServeArgs, String> {
        let mut argv = vec!["switchyard", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Serve(serve) = cli.command else {
            return Err("not serve".into());
        };
        serve.validate()?;
        Ok(serve)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.http_host, "0.0.0.0");
        assert_eq!(args.http_port, 8000);
        assert_eq!(args.workers, 2);
        assert_eq!(args.engine, EngineKind::Mocker);
        assert_eq!(args.router_mode, RouterModeArg::RoundRobin);
    }

    #[test]
    fn tls_needs_both_paths() {
        let err = parse(&["--tls-cert-path", "c.pem"]).unwrap_err();
        assert!(err.contains("--tls-key-path"), "{err}");
        let err = parse(&["--tls-key-path", "k.pem"]).unwrap_err();
        assert!(err.contains("--tls-cert-path"), "{err}");
        assert!(parse(&["--tls-key-path", "k.pem", "--tls-cert-path", "c.pem"]).is_ok());
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(parse(&["--migration-limit", "5000"]).is_err());
        assert!(parse(&["--migration-limit", "-1"]).is_err());
        assert!(parse(&["--speedup-ratio", "-2"]).is_err());
        assert!(parse(&["--router-mode", "telepathy"]).is_err());
        assert!(parse(&["--http-port", "70000"]).is_err());
    }
}
