//! `switchyard bench load`: a lean load generator for OpenAI-compatible servers.
//!
//! - [`LoadArgs`]: the command-line options (a `clap::Args`, embeddable as a subcommand).
//! - [`run_load`]: runs one measured phase per `--concurrency` value on its own small tokio
//!   runtime (one thread by default, because it shares the machine with the server it measures)
//!   and returns a [`LoadReport`] with one [`PhaseReport`] per phase.
//! - Inside: each simulated client ([`client`]) owns one keep-alive HTTP/1.1 connection
//!   (`hyper::client::conn::http1`), sends bodies pre-serialized by [`prompt::BodyTemplate`]
//!   (every prompt starts with a run-wide counter, so no two are equal), and splits the SSE
//!   stream with [`sse::SseParser`], looking at each chunk only through
//!   [`sse::classify_chunk`]. Samples are merged per phase into [`stats::Percentiles`].
//!
//! Examples: `load` (this generator without the `switchyard` binary) and `stub_server` (an
//! instant SSE server for measuring generators themselves).
//!
//! Timed phases end like wrk's: requests in flight at the deadline are abandoned and counted
//! neither as successes nor as errors. An HTTP error status, an SSE error event, or a stream
//! that ends without `data: [DONE]` is an error.

pub mod args;
pub mod client;
pub mod prompt;
pub mod replay;
pub mod report;
pub mod sse;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{HOST, HeaderValue};
use tokio::sync::{Barrier, watch};

pub use args::{Endpoint, LoadArgs, PhaseLimit};
pub use replay::{ReplayArgs, ReplayReport, run_replay};
pub use report::{CpuUsage, LoadReport, PhaseReport, ServerMemory};

use client::{Shared, StopRule, Target};
use prompt::{BodySpec, BodyTemplate};
use stats::{ClientStats, Percentiles};

/// Runs the load described by `args` on a dedicated thread and runtime (so the caller's runtime
/// does not decide how many threads the generator uses) and returns what it measured.
pub async fn run_load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    args.validate()?;
    let args = args.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-load".to_string())
        .spawn(move || {
            let _ = done_tx.send(run_load_blocking(&args));
        })
        .context("start the load generator thread")?;
    done_rx
        .await
        .context("the load generator thread stopped without a result")?
}

/// [`run_load`] for callers outside any tokio runtime (it panics inside one, as `block_on` does).
pub fn run_load_blocking(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    args.validate()?;
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("build the load generator runtime")?;
    runtime.block_on(drive(args))
}

async fn drive(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let base = BaseUrl::parse(&args.url).await?;
    if let Some(pid) = args.server_pid {
        read_server_memory(pid)
            .with_context(|| format!("--server-pid {pid}: cannot read /proc/{pid}/status"))?;
    }
    let model = match &args.model {
        Some(model) => model.clone(),
        None => discover_model(&base).await?,
    };
    let template = BodyTemplate::new(&BodySpec {
        endpoint: args.endpoint,
        model: &model,
        max_tokens: args.max_tokens,
        stream: args.streaming(),
        ignore_eos: args.sends_ignore_eos(),
        prompt_tokens: args.prompt_tokens,
        run_tag: rand::random(),
    })?;
    let path = base.route(args.endpoint.path());
    let url = format!("http://{}{}", base.authority, path);
    let shared = Arc::new(Shared {
        target: Arc::new(Target {
            addr: base.addr,
            host_header: base.host_header.clone(),
            path,
        }),
        template,
        stream: args.streaming(),
        request_timeout: args.request_timeout(),
        next_counter: AtomicU64::new(0),
    });

    let limit = args.phase_limit();
    let mut phases = Vec::with_capacity(args.concurrency.len());
    for &concurrency in &args.concurrency {
        phases.push(run_phase(&shared, concurrency, args.warmup_requests, limit).await?);
    }

    let server = args.server_pid.map(|pid| match read_server_memory(pid) {
        Ok((peak_rss_kib, rss_kib)) => ServerMemory {
            pid,
            peak_rss_kib,
            rss_kib,
            error: None,
        },
        Err(err) => ServerMemory {
            pid,
            peak_rss_kib: None,
            rss_kib: None,
            error: Some(err.to_string()),
        },
    });
    Ok(LoadReport {
        url,
        endpoint: args.endpoint,
        model,
        stream: args.streaming(),
        ignore_eos: args.sends_ignore_eos(),
        prompt_tokens_target: args.prompt_tokens,
        max_tokens: args.max_tokens,
        generator_threads: args.threads,
        warmup_requests_per_client: args.warmup_requests,
        phase_limit: match limit {
            PhaseLimit::Requests(n) => format!("{n} requests per phase"),
            PhaseLimit::Duration(d) => format!("{}s per phase", d.as_secs_f64()),
        },
        phases,
        generator_peak_rss_kib: cpu_times().map(|t| t.max_rss_kib).unwrap_or(0),
        server,
    })
}

async fn run_phase(
    shared: &Arc<Shared>,
    concurrency: usize,
    warmup: u32,
    limit: PhaseLimit,
) -> anyhow::Result<PhaseReport> {
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let budget = match limit {
        PhaseLimit::Requests(n) => Some(Arc::new(AtomicU64::new(n))),
        PhaseLimit::Duration(_) => None,
    };
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let rule = match &budget {
                Some(budget) => StopRule::Budget(Arc::clone(budget)),
                None => StopRule::Signal(stop_rx.clone()),
            };
            tokio::spawn(client::run_client(
                Arc::clone(shared),
                warmup,
                Arc::clone(&barrier),
                rule,
            ))
        })
        .collect();

    barrier.wait().await;
    let cpu_start = cpu_times()?;
    let started = Instant::now();
    let mut measured_end = None;
    if let PhaseLimit::Duration(duration) = limit {
        tokio::time::sleep(duration).await;
        // Receivers may all be gone if every client has already exited; nothing to stop then.
        let _ = stop_tx.send(true);
        measured_end = Some((started.elapsed(), cpu_times()?));
    }
    let mut total = ClientStats::default();
    for client in clients {
        total.merge(client.await.context("a load client task failed")?);
    }
    let (elapsed, cpu_end) = match measured_end {
        Some(end) => end,
        None => (started.elapsed(), cpu_times()?),
    };
    debug_assert_eq!(budget.map_or(0, |b| b.load(Ordering::Relaxed)), 0);

    let seconds = elapsed.as_secs_f64().max(1e-9);
    let user_s = cpu_end.user_s - cpu_start.user_s;
    let sys_s = cpu_end.sys_s - cpu_start.sys_s;
    Ok(PhaseReport {
        concurrency,
        elapsed_s: seconds,
        requests_ok: total.ok,
        errors: total.errors,
        first_error: total.first_error.take(),
        abandoned_in_flight: total.abandoned,
        requests_per_s: total.ok as f64 / seconds,
        output_tokens: total.output_tokens,
        output_tokens_per_s: total.output_tokens as f64 / seconds,
        mean_prompt_tokens: (total.requests_with_prompt_usage > 0)
            .then(|| total.prompt_tokens as f64 / total.requests_with_prompt_usage as f64),
        requests_without_usage: total.requests_without_usage,
        ttft: Percentiles::from_micros(&mut total.ttft_us),
        itl: Percentiles::from_micros(&mut total.itl_us),
        e2e: Percentiles::from_micros(&mut total.e2e_us),
        generator_cpu: CpuUsage {
            user_s,
            sys_s,
            percent_of_one_core: (user_s + sys_s) / seconds * 100.0,
        },
    })
}

/// The server's address, resolved once; routes are appended to its path.
struct BaseUrl {
    addr: std::net::SocketAddr,
    authority: String,
    host_header: HeaderValue,
    base_path: String,
}

impl BaseUrl {
    async fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                anyhow::bail!("--url {url:?}: scheme {other} is not supported, use http")
            }
            None => anyhow::bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8000"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--url {url:?} has no host"))?;
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let addr =
            tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
                .await
                .with_context(|| format!("resolve {host}"))?
                .next()
                .with_context(|| format!("{host} resolves to no address"))?;
        Ok(Self {
            addr,
            authority: authority.to_string(),
            host_header: HeaderValue::from_str(authority.as_str())?,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    fn route(&self, route: &str) -> String {
        format!("{}{route}", self.base_path)
    }
}

/// `GET <base><route>`: status and whole body, on a connection of its own.
async fn http_get(
    base: &BaseUrl,
    route: &str,
) -> anyhow::Result<(hyper::StatusCode, bytes::Bytes)> {
    let url = format!("http://{}{}", base.authority, base.route(route));
    let target = Target {
        addr: base.addr,
        host_header: base.host_header.clone(),
        path: base.route(route),
    };
    let mut sender = client::connect(&target)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let request = Request::get(target.path.as_str())
        .header(HOST, target.host_header.clone())
        .body(Full::default())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {url}: body"))?
        .to_bytes();
    Ok((status, body))
}

/// The first model `GET /v1/models` lists.
async fn discover_model(base: &BaseUrl) -> anyhow::Result<String> {
    let models_url = format!("http://{}{}", base.authority, base.route("/v1/models"));
    let (status, body) = http_get(base, "/v1/models").await?;
    anyhow::ensure!(
        status.is_success(),
        "GET {models_url} answered {status}; pass --model"
    );
    let listing: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("GET {models_url} did not return JSON"))?;
    listing
        .get("data")
        .and_then(|d| d.get(0))
        .and_then(|m| m.get("id"))
        .and_then(|id| id.as_str())
        .map(str::to_string)
        .with_context(|| format!("GET {models_url} lists no model; pass --model"))
}

struct CpuTimes {
    user_s: f64,
    sys_s: f64,
    max_rss_kib: u64,
}

/// CPU time and peak RSS of this whole process (`getrusage(RUSAGE_SELF)`).
fn cpu_times() -> anyhow::Result<CpuTimes> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(CpuTimes {
        user_s: seconds(usage.user_time()),
        sys_s: seconds(usage.system_time()),
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
    })
}

/// `(VmHWM, VmRSS)` in KiB from `/proc/<pid>/status`.
fn read_server_memory(pid: u32) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((status_kib(&status, "VmHWM:"), status_kib(&status, "VmRSS:")))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status_lines() {
        let status = "Name:\tx\nVmHWM:\t  123456 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(123_456));
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let (peak, _) = read_server_memory(std::process::id()).unwrap();
        assert!(peak.unwrap() > 0);
    }

    #[test]
    fn process_cpu_time_is_readable() {
        let times = cpu_times().unwrap();
        assert!(times.user_s >= 0.0 && times.sys_s >= 0.0 && times.max_rss_kib > 0);
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let base = BaseUrl::parse("http://127.0.0.1:9/prefix/").await.unwrap();
        assert_eq!(base.route("/v1/models"), "/prefix/v1/models");
        assert_eq!(base.addr.port(), 9);
        let v6 = BaseUrl::parse("http://[::1]:8000").await.unwrap();
        assert!(v6.addr.is_ipv6());
        for bad in ["https://127.0.0.1", "127.0.0.1:8000", "http://"] {
            assert!(BaseUrl::parse(bad).await.is_err(), "{bad}");
        }
    }
}
