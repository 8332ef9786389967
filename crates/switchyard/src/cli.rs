//! Flags. Every flag can also come from the environment as `SWITCHYARD_<FLAG>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use switchyard_frontend::switchyard_parsers::{ParserError, ReasoningParserKind, ToolParserKind};
use switchyard_frontend::{OutputParsing, ToolParserChoice};

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
    /// Run a frontend (HTTP, optional gRPC, router; no engines) that finds workers through
    /// discovery and reaches them over the request plane.
    Frontend(FrontendProcessArgs),
    /// Run one engine as a worker: it registers itself in discovery, serves the request plane
    /// and publishes its KV events and load on the event plane.
    Worker(WorkerProcessArgs),
    /// Measure a server: closed-loop load or a trace replay.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Closed-loop load against an OpenAI endpoint: requests/s, tokens/s, TTFT, ITL.
    Load(switchyard_bench::LoadArgs),
    /// Replay a Mooncake trace against `serve` with mocker workers (started here unless --url):
    /// TTFT, ITL, throughput, cache hit rate, worker share.
    Replay(switchyard_bench::ReplayArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// Returns the prompt's tokens as output (conformance tests).
    Echo,
    /// A simulated GPU engine with a timing model.
    Mocker,
    /// Forwards token-id requests to an OpenAI-compatible server (vLLM, SGLang): --upstream.
    Openai,
    /// A real model (GGUF, Llama family) computed on the CPU.
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterModeArg {
    RoundRobin,
    Random,
    /// Two workers at random, the less loaded one.
    PowerOfTwo,
    /// The worker with the fewest requests in flight.
    LeastLoaded,
    /// KV-cache-aware: prefix overlap against load.
    Kv,
}

/// `serve`: a frontend and its workers in one process.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub frontend: FrontendArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Number of in-process workers.
    #[arg(long, env = "SWITCHYARD_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub workers: u32,
}

/// What every frontend takes: its front doors, the router, migration.
#[derive(Args, Debug, Clone)]
pub struct FrontendArgs {
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

    /// Also serve the KServe v2 / Triton gRPC protocol (`inference.GRPCInferenceService`).
    #[arg(long, env = "SWITCHYARD_KSERVE_GRPC_SERVER")]
    pub kserve_grpc_server: bool,

    /// Address the gRPC server and its metrics listener bind (default: --http-host).
    #[arg(long, env = "SWITCHYARD_GRPC_HOST")]
    pub grpc_host: Option<String>,

    /// Port of the gRPC server (with --kserve-grpc-server).
    #[arg(long, env = "SWITCHYARD_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,

    /// Port of the HTTP listener with /metrics and /health beside the gRPC server.
    #[arg(long, env = "SWITCHYARD_GRPC_METRICS_PORT", default_value_t = 8788)]
    pub grpc_metrics_port: u16,

    /// How requests are spread over workers.
    #[arg(
        long,
        env = "SWITCHYARD_ROUTER_MODE",
        value_enum,
        default_value = "round-robin"
    )]
    pub router_mode: RouterModeArg,

    /// KV block size routing hashes prompts with (default: the workers' own; they must agree).
    #[arg(long, env = "SWITCHYARD_KV_CACHE_BLOCK_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub kv_cache_block_size: Option<u32>,

    /// Weight of the prefill a worker would have to do (what its cache saves) against its decode
    /// load, in --router-mode kv.
    #[arg(
        long,
        env = "SWITCHYARD_KV_OVERLAP_SCORE_WEIGHT",
        default_value_t = 1.0
    )]
    pub kv_overlap_score_weight: f64,

    /// 0: always the cheapest worker; above 0: sample workers by softmax of their cost.
    #[arg(long, env = "SWITCHYARD_ROUTER_TEMPERATURE", default_value_t = 0.0)]
    pub router_temperature: f64,

    /// Approximate mode: predict worker caches from the router's own decisions, not KV events.
    #[arg(long, env = "SWITCHYARD_NO_KV_EVENTS")]
    pub no_kv_events: bool,

    /// Approximate mode: seconds a routed prefix is assumed to stay cached.
    #[arg(long, env = "SWITCHYARD_ROUTER_TTL", default_value_t = 120.0)]
    pub router_ttl: f64,

    /// Approximate mode: blocks the prediction may hold before it is pruned.
    #[arg(long, env = "SWITCHYARD_ROUTER_MAX_TREE_SIZE", default_value_t = 1 << 20)]
    pub router_max_tree_size: usize,

    /// Approximate mode: pruning shrinks the prediction to this fraction of the maximum.
    #[arg(
        long,
        env = "SWITCHYARD_ROUTER_PRUNE_TARGET_RATIO",
        default_value_t = 0.8
    )]
    pub router_prune_target_ratio: f64,

    /// Scope of discovery and events.
    #[arg(long, env = "SWITCHYARD_NAMESPACE", default_value = "switchyard")]
    pub namespace: String,

    /// How many times a request may move to another worker when its worker fails (0 = off).
    #[arg(long, env = "SWITCHYARD_MIGRATION_LIMIT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub migration_limit: u32,

    /// Tool-call format parsed out of chat answers to requests with `tools`: `auto` (guessed
    /// from the chat template or model name), `none`, or hermes, qwen, llama3_json, mistral,
    /// pythonic, deepseek_v3, deepseek_v31.
    #[arg(long, env = "SWITCHYARD_TOOL_CALL_PARSER", default_value = "auto",
          value_parser = parse_tool_call_parser)]
    pub tool_call_parser: ToolParserChoice,

    /// Splits `<think>` reasoning into `reasoning_content`: deepseek_r1 or qwen3 (off unless set).
    #[arg(long, env = "SWITCHYARD_REASONING_PARSER", value_parser = parse_reasoning_parser)]
    pub reasoning_parser: Option<ReasoningParserKind>,
}

impl FrontendArgs {
    pub fn output_parsing(&self) -> OutputParsing {
        OutputParsing {
            tool_parser: self.tool_call_parser,
            reasoning_parser: self.reasoning_parser,
        }
    }
}

/// `auto` guesses per model, `none` turns parsing off.
fn parse_tool_call_parser(name: &str) -> Result<ToolParserChoice, String> {
    match name {
        "auto" => Ok(ToolParserChoice::Auto),
        "none" => Ok(ToolParserChoice::Off),
        _ => name
            .parse::<ToolParserKind>()
            .map(ToolParserChoice::Kind)
            .map_err(|e| format!("{e}, or auto, none")),
    }
}

fn parse_reasoning_parser(name: &str) -> Result<ReasoningParserKind, String> {
    name.parse().map_err(|e: ParserError| e.to_string())
}

/// One engine: its kind, its flags and its model.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Engine of the worker(s).
    #[arg(long, env = "SWITCHYARD_ENGINE", value_enum, default_value = "mocker")]
    pub engine: EngineKind,

    /// Per-token delay of the echo engine, in milliseconds.
    #[arg(long, env = "SWITCHYARD_ECHO_DELAY_MS", default_value_t = 0)]
    pub echo_delay_ms: u64,

    /// Mocker: divides every simulated duration (0 = no simulated delay at all).
    #[arg(long, env = "SWITCHYARD_SPEEDUP_RATIO", default_value_t = 1.0)]
    pub speedup_ratio: f64,

    /// Tokens per KV cache block (the mocker's; an upstream engine's when its KV events are
    /// consumed).
    #[arg(long, env = "SWITCHYARD_BLOCK_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub block_size: u32,

    /// KV cache blocks per worker (the mocker's; an upstream engine's when its KV events are
    /// consumed).
    #[arg(long, env = "SWITCHYARD_NUM_GPU_BLOCKS", default_value_t = 16384)]
    pub num_gpu_blocks: usize,

    /// Mocker: sequences running at once per worker.
    #[arg(long, env = "SWITCHYARD_MAX_NUM_SEQS", default_value_t = 256)]
    pub max_num_seqs: usize,

    /// Mocker: tokens per scheduler step (prefill chunks + decodes).
    #[arg(
        long,
        env = "SWITCHYARD_MAX_NUM_BATCHED_TOKENS",
        default_value_t = 8192
    )]
    pub max_num_batched_tokens: u32,

    /// Mocker: turn off prefix caching (no cache hits, no KV events).
    #[arg(long, env = "SWITCHYARD_NO_ENABLE_PREFIX_CACHING")]
    pub no_enable_prefix_caching: bool,

    #[command(flatten)]
    pub cpu: crate::cpu::CpuArgs,

    /// Hugging Face style model folder (tokenizer.json, tokenizer_config.json, ...), or a GGUF
    /// file (or a folder holding one) whose metadata carries tokenizer and chat template; the
    /// cpu engine runs the GGUF's weights.
    #[arg(long, env = "SWITCHYARD_MODEL_PATH", default_value = "models/qwen3")]
    pub model_path: PathBuf,

    /// Name clients use for the model (default: the model folder's name).
    #[arg(long, env = "SWITCHYARD_MODEL_NAME")]
    pub model_name: Option<String>,

    #[command(flatten)]
    pub external: crate::external::ExternalEngineArgs,
}

/// How processes find and reach each other.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Where workers register and frontends find them: `etcd://host:port[,host:port...]`.
    #[arg(long, env = "SWITCHYARD_DISCOVERY")]
    pub discovery: String,

    /// Where workers publish KV events and load: `nats://host:port`. Without it frontends see
    /// no KV events (use --router-mode kv --no-kv-events, or a load-based mode).
    #[arg(long, env = "SWITCHYARD_EVENT_PLANE")]
    pub event_plane: Option<String>,

    /// How the frontend sends requests to workers.
    #[arg(
        long,
        env = "SWITCHYARD_REQUEST_PLANE",
        value_enum,
        default_value = "grpc"
    )]
    pub request_plane: RequestPlaneArg,

    /// Seconds a worker's discovery lease lives without keep-alive (a killed worker disappears
    /// after at most this long).
    #[arg(long, env = "SWITCHYARD_LEASE_TTL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_ttl: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RequestPlaneArg {
    /// A gRPC server-streaming call per request (the project's `worker.proto`).
    Grpc,
}

/// `frontend`.
#[derive(Args, Debug, Clone)]
pub struct FrontendProcessArgs {
    #[command(flatten)]
    pub frontend: FrontendArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Share in-flight routing decisions with the other frontend replicas over the event
    /// plane, so each accounts the load the others put on workers.
    #[arg(long, env = "SWITCHYARD_ROUTER_REPLICA_SYNC")]
    pub router_replica_sync: bool,
}

/// `worker`.
#[derive(Args, Debug, Clone)]
pub struct WorkerProcessArgs {
    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Scope of discovery and events (frontends of the same namespace use this worker).
    #[arg(long, env = "SWITCHYARD_NAMESPACE", default_value = "switchyard")]
    pub namespace: String,

    /// Address the request-plane server binds; frontends connect to it.
    #[arg(long, env = "SWITCHYARD_WORKER_HOST", default_value = "127.0.0.1")]
    pub worker_host: String,

    /// Port of the request-plane server (0: any free port).
    #[arg(long, env = "SWITCHYARD_WORKER_PORT", default_value_t = 0)]
    pub worker_port: u16,
}

impl ServeArgs {
    /// Checks combinations clap cannot express; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.frontend.validate()?;
        self.engine.validate()
    }
}

impl FrontendProcessArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.frontend.validate()?;
        self.cluster.validate()?;
        if self.router_replica_sync && self.cluster.event_plane.is_none() {
            return Err("--router-replica-sync shares decisions over the event plane: add --event-plane nats://host:port".into());
        }
        Ok(())
    }
}

impl WorkerProcessArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.engine.validate()?;
        self.cluster.validate()
    }
}

impl ClusterArgs {
    pub fn validate(&self) -> Result<(), String> {
        let discovery = self.discovery.trim();
        if discovery == "mem" {
            return Err("--discovery mem only works inside one process (switchyard serve): give frontends and workers --discovery etcd://host:port".into());
        }
        if !discovery.starts_with("etcd://") {
            return Err(format!(
                "--discovery `{discovery}`: expected etcd://host:port[,host:port...]"
            ));
        }
        if let Some(plane) = &self.event_plane
            && !plane.starts_with("nats://")
        {
            return Err(format!(
                "--event-plane `{plane}`: expected nats://host:port"
            ));
        }
        Ok(())
    }
}

impl FrontendArgs {
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
        if self.no_kv_events && self.router_mode != RouterModeArg::Kv {
            return Err("--no-kv-events only applies to --router-mode kv: add --router-mode kv or drop --no-kv-events".into());
        }
        if !self.kv_overlap_score_weight.is_finite() || self.kv_overlap_score_weight < 0.0 {
            return Err(format!(
                "--kv-overlap-score-weight must be a finite number >= 0, got {}",
                self.kv_overlap_score_weight
            ));
        }
        if !self.router_temperature.is_finite() || self.router_temperature < 0.0 {
            return Err(format!(
                "--router-temperature must be a finite number >= 0, got {}",
                self.router_temperature
            ));
        }
        if !self.router_ttl.is_finite() || self.router_ttl <= 0.0 {
            return Err(format!(
                "--router-ttl must be a positive number of seconds, got {}",
                self.router_ttl
            ));
        }
        if self.router_max_tree_size == 0 {
            return Err("--router-max-tree-size must be at least 1".into());
        }
        if !(self.router_prune_target_ratio > 0.0 && self.router_prune_target_ratio <= 1.0) {
            return Err(format!(
                "--router-prune-target-ratio must be in (0, 1], got {}",
                self.router_prune_target_ratio
            ));
        }
        Ok(())
    }
}

impl EngineArgs {
    pub fn validate(&self) -> Result<(), String> {
        if !self.speedup_ratio.is_finite() || self.speedup_ratio < 0.0 {
            return Err(format!(
                "--speedup-ratio must be a finite number >= 0 (0 disables simulated delays), got {}",
                self.speedup_ratio
            ));
        }
        self.external.validate(
            self.engine == EngineKind::Openai,
            self.engine == EngineKind::Mocker,
        )
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

/// An HTTP/2 flow-control window for the gRPC server from the environment (`None`: the
/// library's default). `var` is `SWITCHYARD_GRPC_INITIAL_CONNECTION_WINDOW_SIZE` or
/// `SWITCHYARD_GRPC_INITIAL_STREAM_WINDOW_SIZE`.
pub fn grpc_window_size(var: &str) -> Result<Option<u32>, String> {
    window_size(var, std::env::var(var).ok().as_deref())
}

fn window_size(var: &str, value: Option<&str>) -> Result<Option<u32>, String> {
    // HTTP/2 allows windows up to 2^31 - 1 bytes.
    const MAX: u32 = (1 << 31) - 1;
    match value {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "{var} must be a number of bytes between 1 and {MAX}, got `{v}`"
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
        assert_eq!(args.frontend.http_host, "0.0.0.0");
        assert_eq!(args.frontend.http_port, 8000);
        assert_eq!(args.workers, 2);
        assert_eq!(args.engine.engine, EngineKind::Mocker);
        assert_eq!(args.frontend.router_mode, RouterModeArg::RoundRobin);
        assert!(!args.frontend.kserve_grpc_server);
        assert_eq!(args.frontend.grpc_port, 8001);
        assert_eq!(args.frontend.grpc_metrics_port, 8788);
        assert_eq!(args.frontend.grpc_host, None);
    }

    #[test]
    fn output_parser_flags_parse() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.frontend.tool_call_parser, ToolParserChoice::Auto);
        assert_eq!(args.frontend.reasoning_parser, None);
        let args = parse(&["--tool-call-parser", "qwen", "--reasoning-parser", "qwen3"]).unwrap();
        assert_eq!(
            args.frontend.tool_call_parser,
            ToolParserChoice::Kind(ToolParserKind::Hermes)
        );
        assert_eq!(
            args.frontend.reasoning_parser,
            Some(ReasoningParserKind::Qwen3)
        );
        let args = parse(&["--tool-call-parser", "none"]).unwrap();
        assert_eq!(args.frontend.tool_call_parser, ToolParserChoice::Off);
        let err = parse(&["--tool-call-parser", "xml"]).unwrap_err();
        assert!(err.contains("hermes") && err.contains("auto"), "{err}");
        assert!(parse(&["--reasoning-parser", "o1"]).is_err());
    }

    #[test]
    fn grpc_flags_parse() {
        let args = parse(&[
            "--kserve-grpc-server",
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            "9001",
            "--grpc-metrics-port",
            "9002",
        ])
        .unwrap();
        let args = args.frontend;
        assert!(args.kserve_grpc_server);
        assert_eq!(args.grpc_host.as_deref(), Some("127.0.0.1"));
        assert_eq!((args.grpc_port, args.grpc_metrics_port), (9001, 9002));
        assert!(parse(&["--grpc-port", "70000"]).is_err());
    }

    #[test]
    fn window_sizes_are_checked() {
        assert_eq!(window_size("W", None), Ok(None));
        assert_eq!(window_size("W", Some("1048576")), Ok(Some(1 << 20)));
        assert!(
            window_size("W", Some("0"))
                .unwrap_err()
                .contains("W must be")
        );
        assert!(window_size("W", Some("4294967295")).is_err());
        assert!(window_size("W", Some("big")).is_err());
    }

    #[test]
    fn tls_needs_both_paths() {
        let err = parse(&["--tls-cert-path", "c.pem"]).unwrap_err();
        assert!(err.contains("--tls-key-path"), "{err}");
        let err = parse(&["--tls-key-path", "k.pem"]).unwrap_err();
        assert!(err.contains("--tls-cert-path"), "{err}");
        assert!(parse(&["--tls-key-path", "k.pem", "--tls-cert-path", "c.pem"]).is_ok());
    }

    fn parse_cmd(argv: &[&str]) -> Result<Command, String> {
        let mut full = vec!["switchyard"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        match &cli.command {
            Command::Frontend(a) => a.validate()?,
            Command::Worker(a) => a.validate()?,
            _ => {}
        }
        Ok(cli.command)
    }

    #[test]
    fn frontend_and_worker_need_network_discovery() {
        let Command::Frontend(f) = parse_cmd(&[
            "frontend",
            "--discovery",
            "etcd://127.0.0.1:2379",
            "--event-plane",
            "nats://127.0.0.1:4222",
            "--migration-limit",
            "3",
            "--router-replica-sync",
        ])
        .unwrap() else {
            panic!("not frontend")
        };
        assert_eq!(f.frontend.migration_limit, 3);
        assert_eq!(f.cluster.request_plane, RequestPlaneArg::Grpc);
        assert!(f.router_replica_sync);
        let Command::Worker(w) = parse_cmd(&[
            "worker",
            "--engine",
            "echo",
            "--discovery",
            "etcd://127.0.0.1:2379",
        ])
        .unwrap() else {
            panic!("not worker")
        };
        assert_eq!(w.engine.engine, EngineKind::Echo);
        assert_eq!((w.worker_host.as_str(), w.worker_port), ("127.0.0.1", 0));
        let err = parse_cmd(&["worker", "--discovery", "mem"]).unwrap_err();
        assert!(err.contains("serve"), "{err}");
        let err = parse_cmd(&["frontend", "--discovery", "zk://x"]).unwrap_err();
        assert!(err.contains("etcd://"), "{err}");
        let err = parse_cmd(&[
            "frontend",
            "--discovery",
            "etcd://h:1",
            "--event-plane",
            "kafka://x",
        ])
        .unwrap_err();
        assert!(err.contains("nats://"), "{err}");
        let err = parse_cmd(&[
            "frontend",
            "--discovery",
            "etcd://h:1",
            "--router-replica-sync",
        ])
        .unwrap_err();
        assert!(err.contains("--event-plane"), "{err}");
        assert!(parse_cmd(&["frontend"]).is_err(), "--discovery is required");
    }

    #[test]
    fn external_engine_flags() {
        let args = parse(&[
            "--engine",
            "openai",
            "--upstream",
            "http://127.0.0.1:8001,http://127.0.0.1:8002",
            "--kv-events-endpoint",
            "tcp://127.0.0.1:5557",
            "--kv-events-replay-endpoint",
            "tcp://127.0.0.1:5600",
        ])
        .unwrap();
        assert_eq!(args.engine.engine, EngineKind::Openai);
        assert_eq!(args.engine.external.upstream_workers(), Some(2));
        let err = parse(&["--engine", "openai"]).unwrap_err();
        assert!(err.contains("--upstream"), "{err}");
        let err = parse(&["--upstream", "http://h:1"]).unwrap_err();
        assert!(err.contains("--engine openai"), "{err}");
        let err = parse(&["--engine", "openai", "--upstream", "h:1"]).unwrap_err();
        assert!(err.contains("http://"), "{err}");
        let err = parse(&[
            "--kv-events-endpoint",
            "udp://h:1",
            "--kv-events-publish",
            "tcp://h:1",
        ])
        .unwrap_err();
        assert!(err.contains("tcp://host:port"), "{err}");
        let err = parse(&["--kv-events-replay-endpoint", "tcp://h:1"]).unwrap_err();
        assert!(err.contains("needs --kv-events-endpoint"), "{err}");
        let err = parse(&["--engine", "echo", "--kv-events-publish", "tcp://h:1"]).unwrap_err();
        assert!(err.contains("--engine mocker"), "{err}");
        let err = parse(&["--kv-events-endpoint", "tcp://h:1"]).unwrap_err();
        assert!(err.contains("--kv-events-publish"), "{err}");
        assert!(
            parse(&[
                "--kv-events-endpoint",
                "tcp://h:1",
                "--kv-events-publish",
                "tcp://h:1"
            ])
            .is_ok()
        );
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(parse(&["--migration-limit", "5000"]).is_err());
        assert!(parse(&["--migration-limit", "-1"]).is_err());
        assert!(parse(&["--speedup-ratio", "-2"]).is_err());
        assert!(parse(&["--router-mode", "telepathy"]).is_err());
        assert!(parse(&["--http-port", "70000"]).is_err());
        assert!(
            parse(&["--no-kv-events"])
                .unwrap_err()
                .contains("--router-mode kv")
        );
        assert!(parse(&["--router-mode", "kv", "--no-kv-events"]).is_ok());
        assert!(parse(&["--router-prune-target-ratio", "1.5"]).is_err());
        assert!(parse(&["--router-temperature", "-1"]).is_err());
        assert!(parse(&["--kv-cache-block-size", "0"]).is_err());
    }
}
