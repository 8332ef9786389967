//! One simulated client: a keep-alive HTTP/1.1 connection and the request loop that measures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};

use crate::prompt::BodyTemplate;
use crate::sse::{SseParser, classify_chunk};
use crate::stats::ClientStats;

/// Where requests go, resolved once per run.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: HeaderValue,
    /// Path of the completions/chat route, base path included.
    pub path: String,
}

/// Everything the clients of one run share.
pub struct Shared {
    pub target: Arc<Target>,
    pub template: BodyTemplate,
    pub stream: bool,
    pub request_timeout: Duration,
    /// Next prompt counter; unique over the whole run, warmup included.
    pub next_counter: AtomicU64,
}

/// How a phase tells its clients when to stop.
pub enum StopRule {
    /// Claim measured requests from this budget until it is exhausted.
    Budget(Arc<AtomicU64>),
    /// Run until the watch turns true; a request in flight then is abandoned.
    Signal(watch::Receiver<bool>),
}

/// What one request produced.
#[derive(Debug, Default)]
pub struct RequestOutcome {
    pub error: Option<String>,
    pub ttft: Option<Duration>,
    pub e2e: Duration,
    pub content_chunks: u64,
    pub usage_completion_tokens: Option<u64>,
    pub usage_prompt_tokens: Option<u64>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens the engine found cached.
    pub usage_cached_tokens: Option<u64>,
}

pub async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Runs `warmup` unmeasured requests, waits for every client at `barrier`, then measured ones
/// until `stop` says so.
pub async fn run_client(
    shared: Arc<Shared>,
    warmup: u32,
    barrier: Arc<Barrier>,
    mut stop: StopRule,
) -> ClientStats {
    let mut session = Session::new(
        Arc::clone(&shared.target),
        shared.stream,
        shared.request_timeout,
    );
    let next_body = || {
        let counter = shared.next_counter.fetch_add(1, Ordering::Relaxed);
        shared.template.build(counter)
    };
    for _ in 0..warmup {
        session.send(next_body()).await;
    }
    barrier.wait().await;

    let mut stats = ClientStats::default();
    loop {
        let outcome = match &mut stop {
            StopRule::Budget(budget) => {
                let claimed = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                });
                if claimed.is_err() {
                    break;
                }
                session.send(next_body()).await
            }
            StopRule::Signal(stop) => {
                if *stop.borrow() {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        stats.abandoned += 1;
                        break;
                    }
                    outcome = session.send(next_body()) => outcome,
                }
            }
        };
        stats.record(&outcome, session.itl_us());
    }
    stats
}

/// One keep-alive connection (re-opened when it breaks) and the buffers reused across its
/// requests. The load clients own one each; the trace replay pools them.
pub struct Session {
    target: Arc<Target>,
    stream: bool,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    parser: SseParser,
    /// Inter-token gaps of the last request, in microseconds.
    itl_scratch: Vec<u32>,
}

impl Session {
    /// `stream`: the bodies ask for SSE; `timeout`: how long one whole response may take.
    pub fn new(target: Arc<Target>, stream: bool, timeout: Duration) -> Self {
        Self {
            target,
            stream,
            timeout,
            sender: None,
            parser: SseParser::new(),
            itl_scratch: Vec::new(),
        }
    }

    /// Inter-token gaps (microseconds) of the last request sent.
    pub fn itl_us(&self) -> &[u32] {
        &self.itl_scratch
    }

    /// POSTs `body` to the target route and reads the whole response, measuring it.
    pub async fn send(&mut self, body: Bytes) -> RequestOutcome {
        self.itl_scratch.clear();
        let timeout = self.timeout;
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.request_inner(body, started)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // The response is half read; the connection cannot be reused.
                self.sender = None;
                RequestOutcome {
                    error: Some(format!("no complete response within {timeout:?}")),
                    e2e: started.elapsed(),
                    ..RequestOutcome::default()
                }
            }
        }
    }

    async fn request_inner(&mut self, body: Bytes, started: Instant) -> RequestOutcome {
        let mut outcome = RequestOutcome::default();
        let result = self.exchange(body, started, &mut outcome).await;
        outcome.e2e = started.elapsed();
        if let Err(err) = result {
            self.sender = None;
            if outcome.error.is_none() {
                outcome.error = Some(format!("{err:#}"));
            }
        }
        outcome
    }

    async fn ready_sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            match connect(&self.target).await {
                Ok(sender) => self.sender = Some(sender),
                Err(err) => {
                    // A refused connection fails at once; pausing keeps a dead server from
                    // turning the generator into a busy loop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return Err(err);
                }
            }
        }
        self.sender.as_mut().context("no connection")
    }

    async fn exchange(
        &mut self,
        body: Bytes,
        started: Instant,
        outcome: &mut RequestOutcome,
    ) -> anyhow::Result<()> {
        let stream = self.stream;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.target.path.as_str())
            .header(HOST, self.target.host_header.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                ACCEPT,
                HeaderValue::from_static(if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                }),
            )
            .body(Full::new(body))?;
        let response = self.ready_sender().await?.send_request(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            outcome.error = Some(http_error(status, &bytes));
            return Ok(());
        }
        if !stream {
            let bytes = body.collect().await?.to_bytes();
            read_unary(&bytes, outcome);
            return Ok(());
        }

        self.parser.reset();
        let mut last_content: Option<Instant> = None;
        let mut done = false;
        let itl = &mut self.itl_scratch;
        let mut on_event = |payload: &[u8], error_event: bool, now: Instant| {
            if outcome.error.is_some() {
                return;
            }
            let info = classify_chunk(payload);
            if error_event || info.error {
                outcome.error = Some(sse_error(payload));
                return;
            }
            if info.done {
                done = true;
                return;
            }
            if info.has_content {
                outcome.content_chunks += 1;
                match last_content {
                    None => outcome.ttft = Some(now - started),
                    Some(previous) => itl.push(micros(now - previous)),
                }
                last_content = Some(now);
            }
            if info.completion_tokens.is_some() {
                outcome.usage_completion_tokens = info.completion_tokens;
                outcome.usage_prompt_tokens = info.prompt_tokens;
                outcome.usage_cached_tokens = info.cached_tokens;
            }
        };
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            let now = Instant::now();
            self.parser.feed(&data, &mut |payload, is_error| {
                on_event(payload, is_error, now)
            });
        }
        let now = Instant::now();
        self.parser
            .finish(&mut |payload, is_error| on_event(payload, is_error, now));
        if outcome.error.is_none() && !done {
            outcome.error = Some("stream ended without data: [DONE]".to_string());
        }
        Ok(())
    }
}

fn read_unary(bytes: &[u8], outcome: &mut RequestOutcome) {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(err) => {
            outcome.error = Some(format!("response is not JSON: {err}"));
            return;
        }
    };
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        outcome.error = Some(format!("error response: {}", error_message(error)));
        return;
    }
    let has_choice = value
        .get("choices")
        .and_then(|c| c.as_array())
        .is_some_and(|c| !c.is_empty());
    if !has_choice {
        outcome.error = Some("response has no choices".to_string());
        return;
    }
    outcome.content_chunks = 1;
    let usage = value.get("usage");
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(|t| t.as_u64());
    outcome.usage_completion_tokens = count("completion_tokens");
    outcome.usage_prompt_tokens = count("prompt_tokens");
    outcome.usage_cached_tokens = usage
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens"))
        .and_then(|t| t.as_u64());
}

fn http_error(status: StatusCode, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").map(error_message))
        .unwrap_or_else(|| snippet(body));
    format!("HTTP {status}: {detail}")
}

fn sse_error(payload: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .map(|v| error_message(v.get("error").unwrap_or(&v)))
        .unwrap_or_else(|| snippet(payload));
    format!("SSE error event: {detail}")
}

/// `error.message` when the error is OpenAI-shaped, else the JSON text.
fn error_message(error: &serde_json::Value) -> String {
    match error.get("message").and_then(|m| m.as_str()) {
        Some(message) => message.to_string(),
        None => match error.as_str() {
            Some(text) => text.to_string(),
            None => error.to_string(),
        },
    }
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut = text.len().min(300);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].trim().to_string()
}

pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_bodies_are_read_and_errors_recognised() {
        let mut ok = RequestOutcome::default();
        read_unary(
            br#"{"choices":[{"text":"hi"}],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#,
            &mut ok,
        );
        assert!(ok.error.is_none());
        assert_eq!(ok.usage_completion_tokens, Some(7));
        assert_eq!(ok.usage_prompt_tokens, Some(5));

        let mut err = RequestOutcome::default();
        read_unary(br#"{"error":{"message":"nope"}}"#, &mut err);
        assert_eq!(err.error.as_deref(), Some("error response: nope"));

        let mut empty = RequestOutcome::default();
        read_unary(br#"{"choices":[]}"#, &mut empty);
        assert!(empty.error.is_some());
    }

    #[test]
    fn error_messages_prefer_openai_shape() {
        let msg = http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":{"message":"no worker","type":"x"}}"#,
        );
        assert_eq!(msg, "HTTP 503 Service Unavailable: no worker");
        assert_eq!(
            http_error(StatusCode::INTERNAL_SERVER_ERROR, b"plain text\n"),
            "HTTP 500 Internal Server Error: plain text"
        );
        assert_eq!(
            sse_error(br#"{"error":{"message":"boom"}}"#),
            "SSE error event: boom"
        );
        assert_eq!(sse_error(b"not json"), "SSE error event: not json");
        assert_eq!(snippet("é".repeat(400).as_bytes()).len(), 300);
    }
}
