//! One choice's generation: engine token stream → text deltas, with metrics and cleanup.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use switchyard_engines::{EngineError, EngineStream};
use switchyard_postprocess::PostProcessor;
use switchyard_protocol::{
    ApiError, FinishReason, OutputLogprobs, PreprocessedRequest, StopConditions, TokenId,
};
use switchyard_router::LoadGuard;
use switchyard_runtime::WorkerId;

use crate::metrics::Endpoint;
use crate::pipeline::ModelPipeline;

/// Text produced by one step; borrows the postprocessor's buffer.
#[derive(Debug)]
pub struct TextDelta<'a> {
    pub text: &'a str,
    /// Set on the last delta.
    pub finish_reason: Option<FinishReason>,
    /// The tokens generated since the previous delta with their logprobs, when the request
    /// asked for them (tokens whose text is still held back arrive with a later delta).
    pub logprobs: &'a [(TokenId, OutputLogprobs)],
}

/// The model's tokenizer, for naming tokens in logprobs.
#[derive(Clone)]
pub struct TokenTexts(Arc<ModelPipeline>);

impl TokenTexts {
    /// A token's text as logprobs report it: the token decoded alone, special tokens kept (a
    /// byte-level piece of a multi-byte character decodes to U+FFFD, as in vLLM).
    pub fn text(&self, token: TokenId) -> String {
        self.0
            .card()
            .tokenizer
            .decode(&[token], false)
            .unwrap_or_default()
    }
}

/// A whole generation, for unary responses.
#[derive(Debug)]
pub struct Collected {
    pub text: String,
    /// The OpenAI finish reason (`stop` if the engine gave none).
    pub finish: &'static str,
    /// Every generated token with its logprobs, when the request asked for them.
    pub logprobs: Vec<(TokenId, OutputLogprobs)>,
}

/// What a generation needs to resume on another worker when its stream breaks.
pub(crate) struct Resume {
    /// The request as first sent.
    pub(crate) request: PreprocessedRequest,
    /// Tokens received so far, in order: the resumed request's prompt ends with them.
    pub(crate) generated: Vec<TokenId>,
    pub(crate) migrations_left: u32,
    /// Workers that failed this request; it does not go back to them.
    pub(crate) failed: Vec<WorkerId>,
}

impl Resume {
    /// The request that continues where the broken stream stopped: prompt + output so far,
    /// with the output limits reduced by what was already generated.
    fn continuation(&self) -> PreprocessedRequest {
        let mut request = self.request.clone();
        let done = self.generated.len() as u32;
        request.token_ids.extend_from_slice(&self.generated);
        request.resumed_output_tokens += done;
        request.stop.max_tokens = request.stop.max_tokens.saturating_sub(done);
        request.stop.min_tokens = request.stop.min_tokens.saturating_sub(done);
        request
    }
}

/// A running generation. Dropping it before it finished cancels the request on the worker (the
/// engine stream is dropped), releases the router load (the guard is dropped) and counts a
/// client disconnect.
pub struct Generation {
    pipeline: Arc<ModelPipeline>,
    stream: Option<EngineStream>,
    guard: Option<LoadGuard>,
    /// The current worker has not produced a token yet (its prefill is still pending).
    awaiting_first_token: bool,
    /// Set when the request may migrate (`--migration-limit` > 0).
    resume: Option<Resume>,
    post: PostProcessor,
    prompt_tokens: u32,
    cached_tokens: Option<u32>,
    endpoint: Endpoint,
    arrived: Instant,
    last_token_at: Option<Instant>,
    finished: bool,
    /// Tokens with logprobs not yet handed out with a delta.
    pending_logprobs: Vec<(TokenId, OutputLogprobs)>,
    /// The prompt's last few tokens (does the template end inside a think block?).
    prompt_tail: Vec<TokenId>,
}

impl Generation {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pipeline: Arc<ModelPipeline>,
        guard: LoadGuard,
        stream: EngineStream,
        resume: Option<Resume>,
        stop: &StopConditions,
        skip_special_tokens: bool,
        prompt_tail: Vec<TokenId>,
        prompt_tokens: u32,
        endpoint: Endpoint,
        arrived: Instant,
    ) -> Result<Self, ApiError> {
        let post = PostProcessor::with_prompt_tail(
            pipeline.card().tokenizer.shared(),
            stop,
            skip_special_tokens,
            &prompt_tail,
        )
        .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))?;
        Ok(Generation {
            pipeline,
            stream: Some(stream),
            guard: Some(guard),
            awaiting_first_token: true,
            resume,
            post,
            prompt_tokens,
            cached_tokens: None,
            endpoint,
            arrived,
            last_token_at: None,
            finished: false,
            pending_logprobs: Vec::new(),
            prompt_tail,
        })
    }

    /// The prompt's last few tokens as text, special tokens kept.
    pub fn prompt_tail_text(&self) -> String {
        self.pipeline
            .card()
            .tokenizer
            .decode(&self.prompt_tail, false)
            .unwrap_or_default()
    }

    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    pub fn completion_tokens(&self) -> u32 {
        self.post.completion_tokens()
    }

    pub fn cached_tokens(&self) -> Option<u32> {
        self.cached_tokens
    }

    /// The worker serving this generation, while it runs.
    pub fn worker(&self) -> Option<&switchyard_runtime::WorkerInstance> {
        self.guard.as_ref().map(|g| g.worker())
    }

    /// Runs the generation to its end: the whole text and the OpenAI finish reason (`stop` if the
    /// engine gave none). For unary responses of every front door.
    pub async fn collect_text(&mut self) -> Result<(String, &'static str), ApiError> {
        let collected = self.collect().await?;
        Ok((collected.text, collected.finish))
    }

    /// Runs the generation to its end, keeping the logprobs too.
    pub async fn collect(&mut self) -> Result<Collected, ApiError> {
        let mut collected = Collected {
            text: String::new(),
            finish: "stop",
            logprobs: Vec::new(),
        };
        while let Some(delta) = self.next().await {
            let delta = delta?;
            collected.text.push_str(delta.text);
            collected.logprobs.extend_from_slice(delta.logprobs);
            if let Some(reason) = delta.finish_reason {
                collected.finish = reason.as_openai_str();
            }
        }
        Ok(collected)
    }

    /// Turns token ids into the texts logprobs report (usable while a delta is borrowed).
    pub fn token_texts(&self) -> TokenTexts {
        TokenTexts(self.pipeline.clone())
    }

    /// The next non-empty delta, or the final one. `None` once finished.
    pub async fn next(&mut self) -> Option<Result<TextDelta<'_>, ApiError>> {
        self.pending_logprobs.clear();
        loop {
            if self.finished {
                return None;
            }
            let stream = self.stream.as_mut()?;
            let item = stream.next().await;
            let output = match item {
                Some(Ok(output)) => output,
                Some(Err(e)) => {
                    // A failed worker (or a lost connection) may be replaced; a request the
                    // engine refuses would be refused anywhere.
                    let migratable = matches!(e, EngineError::Failed(_));
                    let error = engine_error(e);
                    let outcome = if migratable {
                        self.migrate(error).await
                    } else {
                        Err(error)
                    };
                    if let Err(e) = outcome {
                        self.finish();
                        return Some(Err(e));
                    }
                    continue;
                }
                None => {
                    let error =
                        ApiError::internal("the worker's stream ended before the request finished");
                    if let Err(e) = self.migrate(error).await {
                        self.finish();
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            if !output.token_ids.is_empty() {
                let now = Instant::now();
                let metrics = self.pipeline.metrics();
                if let Some(resume) = self.resume.as_mut() {
                    resume.generated.extend_from_slice(&output.token_ids);
                }
                if self.awaiting_first_token {
                    self.awaiting_first_token = false;
                    if let Some(guard) = self.guard.as_mut() {
                        guard.prefill_done();
                    }
                }
                match self.last_token_at {
                    None => {
                        metrics
                            .ttft
                            .observe(now.duration_since(self.arrived).as_secs_f64());
                    }
                    Some(prev) => {
                        let gap =
                            now.duration_since(prev).as_secs_f64() / output.token_ids.len() as f64;
                        for _ in 0..output.token_ids.len() {
                            metrics.itl.observe(gap);
                        }
                    }
                }
                self.last_token_at = Some(now);
            }
            if output.cached_tokens.is_some() {
                self.cached_tokens = output.cached_tokens;
            }
            // An engine that sends logprobs sends one per token; anything else is ignored
            // rather than misattributed.
            if !output.logprobs.is_empty() && output.logprobs.len() == output.token_ids.len() {
                self.pending_logprobs.extend(
                    output
                        .token_ids
                        .iter()
                        .copied()
                        .zip(output.logprobs.iter().cloned()),
                );
            }
            let (has_text, finish_reason) = match self.post.on_output(&output) {
                Ok(delta) => (!delta.text.is_empty(), delta.finish_reason),
                Err(e) => {
                    self.finish();
                    return Some(Err(ApiError::internal(format!(
                        "could not decode the model's output: {e}"
                    ))));
                }
            };
            if finish_reason.is_some() {
                // Stop string, length cap or the engine's own end: cancel the engine (if it is
                // still running) and release the worker now, not when the client is done.
                self.finish();
            }
            if finish_reason.is_some() || has_text {
                return Some(Ok(TextDelta {
                    text: self.post.last_text(),
                    finish_reason,
                    logprobs: &self.pending_logprobs,
                }));
            }
        }
    }

    /// Moves the request to another worker after its stream broke with `error`: returns
    /// `error` (or why no worker can take it) when no migration is left.
    async fn migrate(&mut self, error: ApiError) -> Result<(), ApiError> {
        let metrics = self.pipeline.metrics();
        let Some(resume) = self.resume.as_mut().filter(|r| r.migrations_left > 0) else {
            metrics.migrations_exhausted.inc();
            return Err(error);
        };
        resume.migrations_left -= 1;
        if let Some(guard) = self.guard.take() {
            resume.failed.push(guard.worker().id);
            tracing::warn!(
                worker = %guard.worker().id,
                generated = resume.generated.len(),
                migrations_left = resume.migrations_left,
                error = %error.message,
                "worker stream broke; resuming the request on another worker"
            );
        }
        // The broken stream goes first: whatever the worker still does for it is cancelled.
        self.stream = None;
        let request = resume.continuation();
        let mut failed = std::mem::take(&mut resume.failed);
        let opened = self.pipeline.open(request, &mut failed).await;
        if let Some(resume) = self.resume.as_mut() {
            resume.failed = failed;
        }
        let (guard, stream) = opened?;
        metrics.migrations.inc();
        self.guard = Some(guard);
        self.stream = Some(stream);
        self.awaiting_first_token = true;
        Ok(())
    }

    fn finish(&mut self) {
        self.finished = true;
        self.stream = None;
        self.guard = None;
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        let metrics = self.pipeline.metrics();
        metrics
            .output_tokens
            .observe(self.post.completion_tokens() as f64);
        if !self.finished {
            metrics.disconnects(self.endpoint).inc();
        }
    }
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::InvalidRequest(m) => ApiError::invalid(m),
        EngineError::Overloaded(m) => ApiError::unavailable(m),
        EngineError::Failed(m) => ApiError::internal(format!("the worker failed: {m}")),
    }
}
