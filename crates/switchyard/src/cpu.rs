//! `--engine cpu`: its flags and how a worker gets one (the model is loaded once per process,
//! off the reactor, and shared by every in-process worker).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use switchyard_engine_cpu::{CpuEngine, CpuEngineConfig, LlamaModel, WeightFormat};
use switchyard_engines::EngineEventSink;

use crate::cli::EngineArgs;

/// Flags of the CPU engine (the shared `--block-size`, `--max-num-seqs` and
/// `--no-enable-prefix-caching` apply to it too).
#[derive(Args, Debug, Clone)]
pub struct CpuArgs {
    /// CPU engine: compute threads (default: the physical cores). The process re-executes
    /// itself once with CANDLE_NUM_THREADS set, which candle reads at its first use.
    #[arg(long, env = "SWITCHYARD_CPU_THREADS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cpu_threads: Option<u32>,

    /// CPU engine: prefix cache size, in KV blocks of --block-size tokens.
    #[arg(
        long,
        env = "SWITCHYARD_CPU_PREFIX_CACHE_BLOCKS",
        default_value_t = 512
    )]
    pub cpu_prefix_cache_blocks: usize,

    /// CPU engine: most tokens one step computes (one per decoding sequence, then prefill
    /// chunks); bounds how long a new request or a cancellation waits.
    #[arg(long, env = "SWITCHYARD_CPU_STEP_TOKENS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub cpu_step_tokens: u32,

    /// CPU engine: how weights are held: `f32` (dequantized at load; exact, the reference's
    /// logits), `q8_0` (re-quantized at load; faster decode, 8-bit activations) or `native`
    /// (as stored, candle's kernels for that format).
    #[arg(long, env = "SWITCHYARD_CPU_WEIGHTS", default_value = "f32",
          value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<WeightFormat>()))]
    pub cpu_weights: WeightFormat,
}

/// Loads the GGUF model behind `--model-path` on a blocking thread.
pub async fn load_model(path: &Path, format: WeightFormat) -> anyhow::Result<Arc<LlamaModel>> {
    let owned = path.to_path_buf();
    let started = std::time::Instant::now();
    let model =
        tokio::task::spawn_blocking(move || switchyard_engine_cpu::load_model(&owned, format))
            .await
            .context("model loader failed")?
            .with_context(|| {
                format!(
                    "cannot load the cpu engine's model from `{}`",
                    path.display()
                )
            })?;
    let c = model.config();
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        architecture = %c.architecture,
        weights = ?format,
        layers = c.n_layer,
        hidden = c.hidden,
        vocab = c.vocab_size,
        context_length = c.context_length,
        "cpu engine model loaded"
    );
    Ok(model)
}

pub fn build(
    args: &EngineArgs,
    model: Arc<LlamaModel>,
    events: Option<Arc<dyn EngineEventSink>>,
) -> anyhow::Result<CpuEngine> {
    Ok(CpuEngine::new(
        model,
        CpuEngineConfig {
            block_size: args.block_size,
            prefix_cache_blocks: args.cpu.cpu_prefix_cache_blocks,
            enable_prefix_caching: !args.no_enable_prefix_caching,
            max_num_seqs: args.max_num_seqs.max(1),
            max_step_tokens: args.cpu.cpu_step_tokens as usize,
            events,
            ..CpuEngineConfig::default()
        },
    )?)
}

/// With `--cpu-threads N`, makes sure candle sees `CANDLE_NUM_THREADS=N`: candle sizes its
/// thread pool from the environment at first use, and the environment cannot be changed
/// safely in a running process, so the process replaces itself once with the variable set.
#[cfg(unix)]
pub fn apply_thread_count(threads: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(threads) = threads else {
        return Ok(());
    };
    let want = threads.to_string();
    if std::env::var("CANDLE_NUM_THREADS").ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let err = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("CANDLE_NUM_THREADS", &want)
        .env("RAYON_NUM_THREADS", &want)
        .exec();
    Err(err)
}

#[cfg(not(unix))]
pub fn apply_thread_count(_threads: Option<u32>) -> std::io::Result<()> {
    Ok(())
}
