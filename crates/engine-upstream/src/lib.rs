//! An engine that forwards token-id requests to an OpenAI-compatible server (vLLM, SGLang...).
//!
//! Each request becomes one streamed `POST {upstream}/v1/completions` whose `prompt` is the
//! request's token ids, with the sampling and token-level stop fields mapped (`max_tokens`,
//! `min_tokens`, `ignore_eos`, `stop_token_ids`, `seed`, `temperature`, `top_p`, `top_k`,
//! `min_p`, penalties, `cache_salt`; a LoRA adapter goes in `model`, as vLLM expects). Stop
//! strings stay with the frontend, which sees the text and cancels the stream when one matches.
//!
//! The SSE stream is mapped back to token deltas: `choices[0].token_ids` when the server returns
//! them (vLLM's `return_token_ids`, always asked for), or `logprobs.tokens` written as
//! `token_id:N` (older vLLM with `--return-tokens-as-token-ids`); otherwise the text is
//! re-tokenized incrementally with the model's tokenizer ([`retokenize`]), which is exact for
//! byte-level BPE tokenizers but costs a tokenizer call per chunk.
//!
//! Failures are [`EngineError`]s that say what happened: the upstream unreachable (connection
//! refused, timeout), its status and error message (4xx → `InvalidRequest`, 429/503 →
//! `Overloaded`, other → `Failed`), a malformed chunk, a stream that ends without a
//! `finish_reason`. Dropping the stream drops the HTTP response, which closes the connection,
//! so the upstream aborts the request. [`UpstreamEngine::check_health`] probes `GET /health`
//! and `GET /v1/models`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;
use serde::Serialize;
use smallvec::SmallVec;
use switchyard_engines::{Engine, EngineError, EngineInfo, EngineStream};
use switchyard_protocol::{
    EngineCapabilities, EngineOutput, FinishReason, GuidedDecoding, PreprocessedRequest,
};

pub mod chunk;
pub mod retokenize;
pub mod sse;

use chunk::{ChunkDelta, error_message, parse_chunk};
use retokenize::Retokenizer;
pub use retokenize::TextTokenizer;
use sse::SseParser;

/// Largest SSE event accepted from an upstream.
const MAX_EVENT_BYTES: usize = 16 << 20;
/// Largest error body read from an upstream.
const MAX_ERROR_BODY: usize = 64 << 10;

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// `http://host:port` (a trailing `/` or `/v1` is fine).
    pub url: String,
    /// Model name sent upstream; `None`: the first of its `/v1/models` (asked by
    /// [`UpstreamEngine::check_health`]), else the request's model.
    pub model: Option<String>,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers and between two chunks.
    pub response_timeout: Duration,
    /// The upstream's KV block size and capacity, when its KV events are consumed.
    pub kv_block_size: Option<u32>,
    pub kv_total_blocks: Option<u64>,
}

impl UpstreamConfig {
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamConfig {
            url: url.into(),
            model: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(120),
            kv_block_size: None,
            kv_total_blocks: None,
        }
    }
}

/// A bad `--upstream` URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("upstream URL `{url}`: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` plus any path prefix, without a trailing `/`.
    base: String,
    config: UpstreamConfig,
    model: RwLock<Option<String>>,
    tokenizer: Option<Arc<dyn TextTokenizer>>,
}

#[derive(Clone)]
pub struct UpstreamEngine {
    inner: Arc<Inner>,
}

impl UpstreamEngine {
    /// `tokenizer` re-tokenizes text for upstreams that return no token ids.
    pub fn new(
        config: UpstreamConfig,
        tokenizer: Option<Arc<dyn TextTokenizer>>,
    ) -> Result<Self, UrlError> {
        let base = normalize_base(&config.url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(UpstreamEngine {
            inner: Arc::new(Inner {
                client,
                base,
                model: RwLock::new(config.model.clone()),
                config,
                tokenizer,
            }),
        })
    }

    /// The upstream's base URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// `GET /health` (200), then `GET /v1/models` (learning the model name if none was
    /// configured). Returns the model name sent upstream.
    pub async fn check_health(&self) -> Result<String, String> {
        let inner = &self.inner;
        let (status, _) = inner.get("/health").await?;
        if status != StatusCode::OK && status != StatusCode::NOT_FOUND {
            return Err(format!("{}/health answered {status}", inner.base));
        }
        let (status, body) = inner.get("/v1/models").await?;
        if !status.is_success() {
            return Err(format!("{}/v1/models answered {status}", inner.base));
        }
        let models: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{}/v1/models is not JSON: {e}", inner.base))?;
        let first = models["data"][0]["id"].as_str().map(str::to_string);
        let mut model = inner.model.write();
        if model.is_none() {
            *model = first.clone();
        }
        model
            .clone()
            .ok_or_else(|| format!("{}/v1/models lists no model", inner.base))
    }
}

fn normalize_base(url: &str) -> Result<String, UrlError> {
    let err = |reason: &str| UrlError {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| err("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(err(
                "https is not supported; use http:// (or a local TLS proxy)",
            ));
        }
        _ => return Err(err("expected http://host:port")),
    }
    let authority = uri.authority().ok_or_else(|| err("no host"))?;
    let path = uri.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path);
    Ok(format!("http://{authority}{path}"))
}

/// An error and every cause under it ("client error (Connect): tcp connect error: Connection
/// refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Inner {
    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), String> {
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let timeout = self.config.response_timeout;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
            .map_err(|e| format!("cannot reach {url}: {}", error_chain(&e)))?;
        let status = response.status();
        let body = tokio::time::timeout(
            timeout,
            Limited::new(response.into_body(), MAX_EVENT_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("{url}: body not complete within {timeout:?}"))?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
        Ok((status, body))
    }

    fn body(&self, request: &PreprocessedRequest) -> Result<Bytes, EngineError> {
        let configured = self.model.read().clone();
        let model = request
            .cache_key
            .lora_name
            .clone()
            .or(configured)
            .unwrap_or_else(|| request.model.clone());
        let s = &request.sampling;
        let body = CompletionBody {
            model: &model,
            prompt: &request.token_ids,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens: request.stop.max_tokens,
            min_tokens: request.stop.min_tokens,
            ignore_eos: request.stop.ignore_eos,
            stop_token_ids: &request.stop.stop_token_ids,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            seed: s.seed,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            repetition_penalty: s.repetition_penalty,
            cache_salt: request.cache_key.cache_salt.as_deref(),
            // Specials stay in the text so re-tokenizing it gives them back; the frontend
            // hides them as the client asked.
            skip_special_tokens: false,
            return_token_ids: true,
            logit_bias: (!s.logit_bias.is_empty()).then(|| {
                s.logit_bias
                    .iter()
                    .map(|(token, bias)| (token.to_string(), *bias))
                    .collect()
            }),
            response_format: s
                .guided
                .as_ref()
                .map(upstream_response_format)
                .transpose()?,
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| EngineError::Failed(format!("cannot encode the upstream request: {e}")))
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct CompletionBody<'a> {
    model: &'a str,
    prompt: &'a [u32],
    stream: bool,
    stream_options: StreamOptions,
    max_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    min_tokens: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ignore_eos: bool,
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    stop_token_ids: &'a [u32],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repetition_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_salt: Option<&'a str>,
    skip_special_tokens: bool,
    return_token_ids: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<std::collections::BTreeMap<String, f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
}

/// The `response_format` vLLM and SGLang take on `/v1/completions` for a constraint.
fn upstream_response_format(guided: &GuidedDecoding) -> Result<serde_json::Value, EngineError> {
    Ok(match guided {
        GuidedDecoding::JsonObject => serde_json::json!({"type": "json_object"}),
        GuidedDecoding::JsonSchema(schema) => {
            let schema: serde_json::Value = serde_json::from_str(schema).map_err(|e| {
                EngineError::InvalidRequest(format!("the JSON schema is not JSON: {e}"))
            })?;
            serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            })
        }
    })
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Engine for UpstreamEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        let state = State::Start {
            inner: self.inner.clone(),
            request: Box::new(request),
        };
        Box::pin(futures::stream::unfold(state, State::step))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "openai",
            kv_block_size: self.inner.config.kv_block_size,
            kv_total_blocks: self.inner.config.kv_total_blocks,
            // vLLM and SGLang honour both on `/v1/completions`.
            capabilities: EngineCapabilities {
                logit_bias: true,
                structured_output: true,
                json_schema_subset: false,
            },
        }
    }
}

type Item = Result<EngineOutput, EngineError>;

enum State {
    Start {
        inner: Arc<Inner>,
        request: Box<PreprocessedRequest>,
    },
    Streaming(Box<Streaming>),
    Done,
}

struct Streaming {
    inner: Arc<Inner>,
    body: Incoming,
    parser: SseParser,
    /// Outputs ready to yield.
    ready: VecDeque<Item>,
    /// SSE event payloads of the last frame, reused.
    events: Vec<String>,
    retokenizer: Option<Retokenizer>,
    finish: Option<FinishReason>,
    cached_tokens: Option<u32>,
    ended: bool,
    tokens: Vec<u32>,
}

impl State {
    async fn step(self) -> Option<(Item, State)> {
        let mut streaming = match self {
            State::Done => return None,
            State::Start { inner, request } => match start(inner, &request).await {
                Ok(s) => s,
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Streaming(s) => s,
        };
        loop {
            if let Some(item) = streaming.ready.pop_front() {
                let next = if item.is_err() {
                    State::Done
                } else {
                    State::Streaming(streaming)
                };
                return Some((item, next));
            }
            if streaming.ended {
                return None;
            }
            streaming.read_more().await;
        }
    }
}

async fn start(
    inner: Arc<Inner>,
    request: &PreprocessedRequest,
) -> Result<Box<Streaming>, EngineError> {
    let url = format!("{}/v1/completions", inner.base);
    let body = inner.body(request)?;
    let http = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Full::new(body))
        .map_err(|e| EngineError::Failed(format!("{url}: {e}")))?;
    let timeout = inner.config.response_timeout;
    let response = tokio::time::timeout(timeout, inner.client.request(http))
        .await
        .map_err(|_| {
            EngineError::Failed(format!(
                "upstream {url} sent no response within {timeout:?}"
            ))
        })?
        .map_err(|e| {
            EngineError::Failed(format!("cannot reach upstream {url}: {}", error_chain(&e)))
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = tokio::time::timeout(
            timeout,
            Limited::new(response.into_body(), MAX_ERROR_BODY).collect(),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
        let message = error_message(&body)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned());
        let text = format!("upstream {url} answered {status}: {message}");
        return Err(match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                EngineError::Overloaded(text)
            }
            s if s.is_client_error() => EngineError::InvalidRequest(text),
            _ => EngineError::Failed(text),
        });
    }
    let retokenizer = inner.tokenizer.is_some().then(Retokenizer::new);
    Ok(Box::new(Streaming {
        inner,
        body: response.into_body(),
        parser: SseParser::new(MAX_EVENT_BYTES),
        ready: VecDeque::new(),
        events: Vec::new(),
        retokenizer,
        finish: None,
        cached_tokens: None,
        ended: false,
        tokens: Vec::new(),
    }))
}

impl Streaming {
    fn fail(&mut self, message: String) {
        self.ready.push_back(Err(EngineError::Failed(message)));
        self.ended = true;
    }

    async fn read_more(&mut self) {
        let timeout = self.inner.config.response_timeout;
        let frame = match tokio::time::timeout(timeout, self.body.frame()).await {
            Err(_) => {
                return self.fail(format!("upstream sent nothing for {timeout:?}"));
            }
            Ok(None) => {
                if self.finish.is_some() {
                    return self.finish_stream();
                }
                return self.fail("upstream closed the stream before a finish_reason".into());
            }
            Ok(Some(Err(e))) => {
                return self.fail(format!("upstream stream broke: {}", error_chain(&e)));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            return; // trailers
        };
        let events = &mut self.events;
        events.clear();
        if let Err(e) = self
            .parser
            .feed(&data, &mut |event| events.push(event.to_string()))
        {
            return self.fail(format!("malformed SSE from upstream: {e}"));
        }
        let events = std::mem::take(&mut self.events);
        for event in &events {
            if self.ended {
                break;
            }
            self.on_event(event);
        }
        self.events = events;
    }

    fn on_event(&mut self, data: &str) {
        if data.trim() == "[DONE]" {
            if self.finish.is_none() {
                return self.fail("upstream sent [DONE] without a finish_reason".into());
            }
            return self.finish_stream();
        }
        let delta = match parse_chunk(data) {
            Ok(d) => d,
            Err(e) => return self.fail(e),
        };
        let ChunkDelta {
            token_ids,
            text,
            finish_reason,
            cached_tokens,
            has_usage,
        } = delta;
        if has_usage {
            self.cached_tokens = cached_tokens;
        }
        self.tokens.clear();
        match token_ids {
            Some(ids) => self.tokens = ids,
            None if !text.is_empty() => {
                let (Some(tokenizer), Some(retokenizer)) =
                    (self.inner.tokenizer.as_deref(), self.retokenizer.as_mut())
                else {
                    return self.fail(
                        "upstream streams text without token ids and no tokenizer is configured"
                            .into(),
                    );
                };
                if let Err(e) = retokenizer.push(tokenizer, &text, &mut self.tokens) {
                    return self.fail(format!("cannot re-tokenize the upstream's text: {e}"));
                }
            }
            None => {}
        }
        if let Some(reason) = finish_reason {
            self.finish = Some(match reason.as_str() {
                "stop" => FinishReason::Stop,
                "length" => FinishReason::Length,
                other => {
                    return self.fail(format!(
                        "upstream ended the request: finish_reason `{other}`"
                    ));
                }
            });
        }
        if !self.tokens.is_empty() {
            let output = EngineOutput {
                token_ids: SmallVec::from_slice(&self.tokens),
                ..EngineOutput::default()
            };
            self.ready.push_back(Ok(output));
        }
    }

    /// The last output: what re-tokenization still holds, the finish reason, cached tokens.
    fn finish_stream(&mut self) {
        self.tokens.clear();
        if let (Some(tokenizer), Some(retokenizer)) =
            (self.inner.tokenizer.as_deref(), self.retokenizer.as_mut())
            && let Err(e) = retokenizer.finish(tokenizer, &mut self.tokens)
        {
            return self.fail(format!("cannot re-tokenize the upstream's text: {e}"));
        }
        // `..` keeps this compiling as `EngineOutput` gains fields (logprobs).
        #[allow(clippy::needless_update)]
        let output = EngineOutput {
            token_ids: SmallVec::from_slice(&self.tokens),
            finish_reason: self.finish,
            cached_tokens: self.cached_tokens,
            ..EngineOutput::default()
        };
        self.ready.push_back(Ok(output));
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_normalized_or_refused() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(normalize_base("http://h:1/v1/").unwrap(), "http://h:1");
        assert_eq!(
            normalize_base("http://h:1/prefix/v1").unwrap(),
            "http://h:1/prefix"
        );
        assert!(
            normalize_base("https://h:1")
                .unwrap_err()
                .reason
                .contains("https")
        );
        assert!(normalize_base("h:1").is_err());
        assert!(normalize_base("").is_err());
    }

    #[test]
    fn request_body_maps_sampling_and_stop_fields() {
        let engine = UpstreamEngine::new(UpstreamConfig::new("http://127.0.0.1:1"), None).unwrap();
        let mut request = PreprocessedRequest {
            model: "m".into(),
            token_ids: vec![1, 2, 3],
            ..PreprocessedRequest::default()
        };
        request.stop.max_tokens = 7;
        request.stop.min_tokens = 2;
        request.stop.ignore_eos = true;
        request.stop.stop_token_ids = vec![9];
        request.stop.stop_strings = vec!["never sent".into()];
        request.sampling.seed = Some(5);
        request.sampling.temperature = Some(0.5);
        request.sampling.top_k = Some(3);
        request.cache_key.cache_salt = Some("s".into());
        let body: serde_json::Value =
            serde_json::from_slice(&engine.inner.body(&request).unwrap()).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["prompt"], serde_json::json!([1, 2, 3]));
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["min_tokens"], 2);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stop_token_ids"], serde_json::json!([9]));
        assert_eq!(body["seed"], 5);
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["top_k"], 3);
        assert_eq!(body["cache_salt"], "s");
        assert_eq!(body["return_token_ids"], true);
        assert!(body.get("stop").is_none());
        assert!(body.get("top_p").is_none());
        assert!(body.get("logit_bias").is_none());
        assert!(body.get("response_format").is_none());
        request.sampling.logit_bias = vec![(4, -100.0), (17, 2.5)];
        request.sampling.guided = Some(GuidedDecoding::JsonSchema(r#"{"type":"object"}"#.into()));
        let body: serde_json::Value =
            serde_json::from_slice(&engine.inner.body(&request).unwrap()).unwrap();
        assert_eq!(
            body["logit_bias"],
            serde_json::json!({"4": -100.0, "17": 2.5})
        );
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            serde_json::json!({"type": "object"})
        );
        request.sampling.guided = Some(GuidedDecoding::JsonObject);
        let body: serde_json::Value =
            serde_json::from_slice(&engine.inner.body(&request).unwrap()).unwrap();
        assert_eq!(
            body["response_format"],
            serde_json::json!({"type": "json_object"})
        );
        request.cache_key.lora_name = Some("adapter".into());
        let body: serde_json::Value =
            serde_json::from_slice(&engine.inner.body(&request).unwrap()).unwrap();
        assert_eq!(body["model"], "adapter");
    }
}
