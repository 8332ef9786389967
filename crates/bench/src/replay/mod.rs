//! `switchyard bench replay`: replays a Mooncake trace, open loop, against `serve`.
//!
//! - [`ReplayArgs`]: the options; without `--url` a [`server::ServeChild`] runs `serve` with
//!   mocker workers (stopped with SIGTERM at the end, on error and on Ctrl-C).
//! - [`trace`]: reads the trace and expands each hash id into a fixed block of token ids
//!   ([`trace::TokenSynth`]); [`trace::CompletionBodies`] serializes the token-id prompts.
//! - The sender sleeps until each request's arrival time / (`--speedup` x `--load-scale`), then hands the body to a
//!   task of its own (bounded by `--max-in-flight`) that sends it on a pooled
//!   [`crate::client::Session`], the load generator's client and SSE reader.
//! - [`ReplayReport`]: latency quantiles, throughput, the engines' cache hit rate and each
//!   worker's share of routing decisions (from `/metrics`, before vs after).

pub mod args;
pub mod cpu;
pub mod report;
pub mod server;
pub mod trace;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

pub use args::{ReplayArgs, ReplayRouterMode};
pub use report::{Quantiles, ReplayReport, TraceTime};

use crate::client::{Session, Target};
use crate::stats::{ClientStats, Percentiles};
use crate::{BaseUrl, cpu_times, discover_model, http_get};
use server::ServeChild;
use trace::{CompletionBodies, TokenSynth, TraceRequest};

/// Vocabulary size assumed when neither `--vocab-size` nor a readable tokenizer gives one
/// (Qwen3's is 151,669).
pub const DEFAULT_VOCAB_SIZE: u32 = 150_000;

/// A request this late behind its scheduled send time counts as late in the report.
const LATE_THRESHOLD: Duration = Duration::from_millis(100);

/// Runs the replay on a thread and single-threaded runtime of its own (the generator shares the
/// machine with the server it measures) and returns what it measured.
pub async fn run_replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    args.validate()?;
    let args = args.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-replay".to_string())
        .spawn(move || {
            let _ = done_tx.send(run_replay_blocking(&args));
        })
        .context("start the replay thread")?;
    done_rx
        .await
        .context("the replay thread stopped without a result")?
}

/// [`run_replay`] for callers outside any tokio runtime.
pub fn run_replay_blocking(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the replay runtime")?;
    runtime.block_on(drive(args))
}

async fn drive(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let path = args.trace.clone();
    let max = args.max_requests;
    let requests = tokio::task::spawn_blocking(move || trace::read_trace(&path, max))
        .await
        .context("trace reader failed")??;
    let vocab_size = resolve_vocab_size(args).await?;
    let synth = TokenSynth::new(vocab_size)?;

    // Ctrl-C from here on stops the replay and the server cleanly.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let (server, url) = match &args.url {
        Some(url) => (None, url.clone()),
        None => {
            let starting =
                ServeChild::start(args.serve_binary.clone(), |port| args.serve_args(port));
            let server = tokio::select! {
                server = starting => server?,
                _ = &mut interrupted => anyhow::bail!("interrupted while serve was starting"),
            };
            let url = server.url.clone();
            (Some(server), url)
        }
    };
    let server_pid = server.as_ref().and_then(ServeChild::pid);
    let result = tokio::select! {
        report = replay(args, &url, server_pid, &requests, synth) => report,
        _ = &mut interrupted => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(server) = server {
        server.stop().await;
    }
    result
}

async fn resolve_vocab_size(args: &ReplayArgs) -> anyhow::Result<u32> {
    if let Some(size) = args.vocab_size {
        return Ok(size);
    }
    let file = args.model_path.join("tokenizer.json");
    let read = tokio::task::spawn_blocking({
        let file = file.clone();
        move || -> anyhow::Result<u32> {
            let text = std::fs::read_to_string(&file)?;
            trace::vocab_size_from_tokenizer_json(&text)
        }
    })
    .await
    .context("tokenizer reader failed")?;
    match (read, &args.url) {
        (Ok(size), _) => Ok(size),
        // Against a server of unknown make, a missing local tokenizer is not fatal.
        (Err(err), Some(_)) => {
            eprintln!(
                "note: vocabulary size from {} unavailable ({err:#}); using {DEFAULT_VOCAB_SIZE} (set --vocab-size)",
                file.display()
            );
            Ok(DEFAULT_VOCAB_SIZE)
        }
        (Err(err), None) => Err(err.context(format!(
            "cannot read the vocabulary size from {} (pass --model-path or --vocab-size)",
            file.display()
        ))),
    }
}

/// Counters the progress line reads while requests run.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    /// Microseconds the sender is behind schedule right now.
    lag_us: AtomicU64,
}

async fn replay(
    args: &ReplayArgs,
    url: &str,
    server_pid: Option<u32>,
    requests: &[TraceRequest],
    synth: TokenSynth,
) -> anyhow::Result<ReplayReport> {
    let base = BaseUrl::parse(url).await?;
    let model = match &args.model {
        Some(model) => model.clone(),
        None => discover_model(&base).await?,
    };
    let bodies = CompletionBodies::new(&model, synth)?;
    let target = Arc::new(Target {
        addr: base.addr,
        host_header: base.host_header.clone(),
        path: base.route("/v1/completions"),
    });
    let decisions_before = read_decisions(&base).await;

    let speedup = args.speedup;
    let total = requests.len() as u64;
    let trace_span =
        Duration::from_secs_f64(args.send_offset_s(requests.last().map_or(0, |r| r.timestamp)));
    let stats = Arc::new(Mutex::new(ClientStats::default()));
    let sessions: Arc<Mutex<Vec<Session>>> = Arc::default();
    let progress = Arc::new(Progress::default());
    let slots = Arc::new(Semaphore::new(args.max_in_flight));
    let timeout = args.request_timeout();

    let cpu_start = cpu_times()?;
    let machine_start = cpu::CpuSample::take(server_pid);
    let started = Instant::now();
    let reporter = tokio::spawn(report_progress(
        Arc::clone(&progress),
        total,
        started,
        trace_span,
    ));
    let mut max_lag = Duration::ZERO;
    let mut late = 0u64;
    let mut tasks = Vec::with_capacity(requests.len());
    for request in requests {
        // Built before sleeping, so the send itself happens on time.
        let body = bodies.body(request);
        let due = started + Duration::from_secs_f64(args.send_offset_s(request.timestamp));
        tokio::time::sleep_until(due.into()).await;
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .context("request slots closed")?;
        let lag = Instant::now().saturating_duration_since(due);
        max_lag = max_lag.max(lag);
        late += u64::from(lag > LATE_THRESHOLD);
        progress
            .lag_us
            .store(lag.as_micros() as u64, Ordering::Relaxed);
        progress.sent.fetch_add(1, Ordering::Relaxed);

        let (stats, sessions, progress, target) = (
            Arc::clone(&stats),
            Arc::clone(&sessions),
            Arc::clone(&progress),
            Arc::clone(&target),
        );
        tasks.push(tokio::spawn(async move {
            let pooled = sessions.lock().ok().and_then(|mut pool| pool.pop());
            let mut session = pooled.unwrap_or_else(|| Session::new(target, true, timeout));
            let outcome = session.send(body).await;
            if outcome.error.is_some() {
                progress.errors.fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut stats) = stats.lock() {
                stats.record(&outcome, session.itl_us());
            }
            if let Ok(mut pool) = sessions.lock() {
                pool.push(session);
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
            drop(slot);
        }));
    }
    for task in tasks {
        task.await.context("a replay request task failed")?;
    }
    let elapsed = started.elapsed();
    let cpu_end = cpu_times()?;
    let cpu_use = cpu::CpuSample::take(server_pid).since(&machine_start);
    reporter.abort();
    finish_progress_line();

    let decisions_after = read_decisions(&base).await;
    let (worker_ids, worker_share) = worker_shares(&decisions_before, &decisions_after);

    let mut stats = std::mem::take(
        &mut *stats
            .lock()
            .map_err(|_| anyhow::anyhow!("replay statistics lock poisoned"))?,
    );
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ttft = Quantiles::from_percentiles(&Percentiles::from_micros(&mut stats.ttft_us));
    let itl = Quantiles::from_percentiles(&Percentiles::from_micros(&mut stats.itl_us));
    let e2e = Quantiles::from_percentiles(&Percentiles::from_micros(&mut stats.e2e_us));
    let cpu_s = (cpu_end.user_s - cpu_start.user_s) + (cpu_end.sys_s - cpu_start.sys_s);
    let started_server = args.url.is_none();
    Ok(ReplayReport {
        requests: total,
        requests_ok: stats.ok,
        errors: stats.errors,
        first_error: stats.first_error.take(),
        trace_time: TraceTime::new(&ttft, &itl, &e2e, speedup),
        ttft_ms: ttft,
        itl_ms: itl,
        e2e_ms: e2e,
        requests_per_s: stats.ok as f64 / seconds,
        output_tokens_per_s: stats.output_tokens as f64 / seconds,
        cache_hit_rate: (stats.prompt_tokens_with_cache_info > 0)
            .then(|| stats.cached_tokens as f64 / stats.prompt_tokens_with_cache_info as f64),
        worker_share,
        worker_ids,
        speedup,
        load_scale: args.load_scale,
        router_mode: started_server.then(|| {
            let mode = args.router_mode.as_flag();
            if args.no_kv_events {
                format!("{mode} (no kv events)")
            } else {
                mode.to_string()
            }
        }),
        workers: started_server.then_some(args.workers),
        url: url.to_string(),
        model,
        trace: args.trace.display().to_string(),
        elapsed_s: seconds,
        prompt_tokens: stats.prompt_tokens,
        output_tokens: stats.output_tokens,
        max_send_lag_ms: max_lag.as_secs_f64() * 1000.0,
        requests_late_over_100ms: late,
        generator_cpu_percent: cpu_s / seconds * 100.0,
        cpu: cpu_use,
        machine_bound: cpu_use.machine_bound(),
    })
}

/// Redraws one status line on stderr: in place on a terminal, else a line every 5 s.
async fn report_progress(progress: Arc<Progress>, total: u64, started: Instant, span: Duration) {
    let terminal = std::io::stderr().is_terminal();
    let period = Duration::from_millis(if terminal { 250 } else { 5000 });
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let line = progress_line(&progress, total, started.elapsed(), span);
        if terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
}

fn finish_progress_line() {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
}

fn progress_line(progress: &Progress, total: u64, elapsed: Duration, span: Duration) -> String {
    const WIDTH: u64 = 30;
    let sent = progress.sent.load(Ordering::Relaxed);
    let done = progress.done.load(Ordering::Relaxed);
    let errors = progress.errors.load(Ordering::Relaxed);
    let lag_ms = progress.lag_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled.min(WIDTH as usize))
    );
    format!(
        "[{bar}] {done}/{total} done, {} in flight, {errors} errors, {:.0}/{:.0} s, sender lag {lag_ms:.0} ms",
        sent.saturating_sub(done),
        elapsed.as_secs_f64(),
        span.as_secs_f64(),
    )
}

/// `switchyard_router_decisions_total` per worker label, summed over models; `None` when the
/// server has no such metric or `/metrics` cannot be read.
async fn read_decisions(base: &BaseUrl) -> Option<Vec<(String, f64)>> {
    let (status, body) = http_get(base, "/metrics").await.ok()?;
    if !status.is_success() {
        return None;
    }
    let decisions = decisions_by_worker(&String::from_utf8_lossy(&body));
    (!decisions.is_empty()).then_some(decisions)
}

/// Parses Prometheus text for `switchyard_router_decisions_total{...,worker="W",...} V`, sorted
/// by worker (numerically when the labels are numbers).
fn decisions_by_worker(metrics: &str) -> Vec<(String, f64)> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("switchyard_router_decisions_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(worker) = labels
            .split("worker=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        match totals.iter_mut().find(|(w, _)| w == worker) {
            Some((_, total)) => *total += value,
            None => totals.push((worker.to_string(), value)),
        }
    }
    totals.sort_by(|a, b| (a.0.parse::<u64>().ok(), &a.0).cmp(&(b.0.parse::<u64>().ok(), &b.0)));
    totals
}

/// Each worker's fraction of the decisions made between the two readings.
fn worker_shares(
    before: &Option<Vec<(String, f64)>>,
    after: &Option<Vec<(String, f64)>>,
) -> (Vec<String>, Vec<f64>) {
    let Some(after) = after else {
        return (Vec::new(), Vec::new());
    };
    let earlier = |worker: &str| {
        before
            .as_ref()
            .and_then(|b| b.iter().find(|(w, _)| w == worker))
            .map_or(0.0, |(_, v)| *v)
    };
    let deltas: Vec<(String, f64)> = after
        .iter()
        .map(|(w, v)| (w.clone(), (v - earlier(w)).max(0.0)))
        .collect();
    let total: f64 = deltas.iter().map(|(_, d)| d).sum();
    if total <= 0.0 {
        return (Vec::new(), Vec::new());
    }
    deltas.into_iter().map(|(w, d)| (w, d / total)).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP switchyard_router_decisions_total Routing decisions per worker.
# TYPE switchyard_router_decisions_total counter
switchyard_router_decisions_total{model=\"a\",worker=\"10\",mode=\"kv\"} 4
switchyard_router_decisions_total{model=\"a\",worker=\"2\",mode=\"kv\"} 6
switchyard_router_decisions_total{model=\"b\",worker=\"2\",mode=\"kv\"} 1
switchyard_router_decisions_totalish{worker=\"9\"} 100
switchyard_router_routed_blocks_total{model=\"a\",worker=\"2\",mode=\"kv\"} 99
";

    #[test]
    fn decisions_are_summed_per_worker_in_numeric_order() {
        assert_eq!(
            decisions_by_worker(METRICS),
            vec![("2".to_string(), 7.0), ("10".to_string(), 4.0)]
        );
        assert!(decisions_by_worker("garbage{worker=\"1\"} x\n").is_empty());
    }

    #[test]
    fn shares_are_differences_between_readings() {
        let before = Some(vec![("0".to_string(), 10.0), ("1".to_string(), 5.0)]);
        let after = Some(vec![
            ("0".to_string(), 13.0),
            ("1".to_string(), 6.0),
            ("2".to_string(), 4.0),
        ]);
        let (ids, shares) = worker_shares(&before, &after);
        assert_eq!(ids, vec!["0", "1", "2"]);
        assert_eq!(shares, vec![0.375, 0.125, 0.5]);
        let from_zero: f64 = worker_shares(&None, &after).1.iter().sum();
        assert!((from_zero - 1.0).abs() < 1e-12, "{from_zero}");
        assert!(worker_shares(&after, &after).0.is_empty(), "no decisions");
        assert!(worker_shares(&before, &None).0.is_empty());
    }

    #[test]
    fn progress_line_counts_in_flight_and_fills_the_bar() {
        let progress = Progress::default();
        progress.sent.store(30, Ordering::Relaxed);
        progress.done.store(20, Ordering::Relaxed);
        progress.errors.store(1, Ordering::Relaxed);
        let line = progress_line(
            &progress,
            40,
            Duration::from_secs(3),
            Duration::from_secs(9),
        );
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{line}"
        );
        assert!(
            line.contains("20/40 done, 10 in flight, 1 errors, 3/9 s"),
            "{line}"
        );
    }
}
