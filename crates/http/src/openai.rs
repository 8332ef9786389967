//! OpenAI request handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::de::DeserializeOwned;
use switchyard_frontend::{ChatOutputParsing, Endpoint, ModelPipeline, RequestRecord};
use switchyard_protocol::openai::{
    ChatCompletionRequest, CommonParams, CompletionRequest, ModelList, ModelObject, PromptInput,
};
use switchyard_protocol::{ApiError, ErrorKind, PreprocessedRequest};

use crate::error::HttpError;
use crate::responses::{self, ResponseContext, ResponseShape};
use crate::server::HttpService;

pub(crate) async fn chat_completions(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle::<ChatCompletionRequest>(service, body).await
}

pub(crate) async fn completions(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle::<CompletionRequest>(service, body).await
}

/// What differs between the OpenAI generation endpoints; everything else is [`serve`].
trait GenerationRequest: DeserializeOwned {
    const ENDPOINT: Endpoint;
    const ID_PREFIX: &'static str;
    fn model(&self) -> &str;
    fn common(&self) -> &CommonParams;
    /// Whether the choices report logprobs.
    fn wants_logprobs(&self) -> bool;
    /// Choices generated per prompt (completions' `best_of` may exceed the `n` returned).
    fn candidates_per_prompt(&self) -> u32 {
        self.common().choices_per_prompt()
    }
    /// Completions' `echo`: the prompts whose text goes before their choices' text.
    fn echo_inputs(&self) -> Option<Vec<PromptInput>> {
        None
    }
    /// Chat: how each choice's text is parsed (tool calls, reasoning).
    fn output_parsing(&self, _pipeline: &ModelPipeline) -> Result<ChatOutputParsing, ApiError> {
        Ok(ChatOutputParsing::none())
    }
    /// Templating/tokenization into one preprocessed request per choice.
    async fn preprocess(
        self,
        pipeline: &ModelPipeline,
        id: &str,
    ) -> Result<Vec<PreprocessedRequest>, ApiError>;
}

impl GenerationRequest for ChatCompletionRequest {
    const ENDPOINT: Endpoint = Endpoint::ChatCompletions;
    const ID_PREFIX: &'static str = "chatcmpl-";
    fn model(&self) -> &str {
        &self.model
    }
    fn common(&self) -> &CommonParams {
        &self.common
    }
    fn wants_logprobs(&self) -> bool {
        self.requested_logprobs().is_some()
    }
    fn output_parsing(&self, pipeline: &ModelPipeline) -> Result<ChatOutputParsing, ApiError> {
        pipeline.chat_output_parsing(self)
    }
    async fn preprocess(
        self,
        pipeline: &ModelPipeline,
        id: &str,
    ) -> Result<Vec<PreprocessedRequest>, ApiError> {
        Ok(vec![pipeline.preprocess_chat(self, id).await?])
    }
}

impl GenerationRequest for CompletionRequest {
    const ENDPOINT: Endpoint = Endpoint::Completions;
    const ID_PREFIX: &'static str = "cmpl-";
    fn model(&self) -> &str {
        &self.model
    }
    fn common(&self) -> &CommonParams {
        &self.common
    }
    fn wants_logprobs(&self) -> bool {
        self.requested_logprobs().is_some()
    }
    fn candidates_per_prompt(&self) -> u32 {
        CompletionRequest::candidates_per_prompt(self)
    }
    fn echo_inputs(&self) -> Option<Vec<PromptInput>> {
        // An invalid prompt is refused by `preprocess`; echo has nothing to add then.
        self.echo
            .then(|| self.prompt.clone().into_inputs().ok())
            .flatten()
    }
    async fn preprocess(
        self,
        pipeline: &ModelPipeline,
        id: &str,
    ) -> Result<Vec<PreprocessedRequest>, ApiError> {
        pipeline.preprocess_completion(self, id).await
    }
}

async fn handle<R: GenerationRequest>(
    service: Arc<HttpService>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let mut record = RequestRecord::new(service.metrics.clone(), R::ENDPOINT);
    match serve::<R>(&service, body, arrived, &mut record).await {
        Ok(response) => response,
        Err(e) => fail(record, e),
    }
}

/// Records the failure and answers it as an OpenAI error (internal ones are logged).
pub(crate) fn fail(mut record: RequestRecord, error: ApiError) -> Response {
    record.set_status(error.kind.error_type());
    if error.kind == ErrorKind::Internal {
        tracing::error!(error = %error.message, "request failed");
    }
    HttpError(error).into_response()
}

async fn serve<R: GenerationRequest>(
    service: &Arc<HttpService>,
    body: Result<Bytes, BytesRejection>,
    arrived: Instant,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let ticket = service.admit()?;
    let req: R = parse_body(body)?;
    let pipeline = service.manager.get(req.model())?;
    record.set_model(pipeline.name());
    let stream = req.common().stream;
    let include_usage = req.common().include_usage();
    let returned_per_prompt = req.common().choices_per_prompt();
    let choices_per_prompt = req.candidates_per_prompt();
    let logprobs = req.wants_logprobs();
    let echo_inputs = req.echo_inputs();
    let parsing = req.output_parsing(&pipeline)?;
    let id = new_id(R::ID_PREFIX);
    let preprocessed = req.preprocess(&pipeline, &id).await?;
    let mut echo = Vec::new();
    for input in echo_inputs.into_iter().flatten() {
        echo.push(match input {
            PromptInput::Text(text) => text,
            PromptInput::Tokens(ids) => pipeline.detokenize(ids).await?,
        });
    }
    let preprocessed = one_request_per_choice(preprocessed, choices_per_prompt);
    let mut generations = Vec::with_capacity(preprocessed.len());
    for request in preprocessed {
        generations.push(pipeline.generate(request, R::ENDPOINT, arrived).await?);
    }
    let ctx = ResponseContext::new(
        id,
        pipeline.name().to_string(),
        R::ENDPOINT,
        ResponseShape {
            include_usage,
            choices_per_prompt,
            returned_per_prompt,
            logprobs,
            echo,
            parsing,
        },
        std::mem::replace(record, RequestRecord::detached(service.metrics.clone())),
        ticket,
    );
    if stream {
        Ok(responses::stream(ctx, generations))
    } else {
        responses::unary(ctx, generations).await
    }
}

/// Expands each prompt's request into `n` engine requests, in OpenAI's choice order (prompt
/// by prompt, `n` choices each). With a seed, choice `j` samples with `seed + j` (as vLLM's
/// parallel sampling does) so the choices differ yet stay reproducible.
fn one_request_per_choice(
    requests: Vec<PreprocessedRequest>,
    choices_per_prompt: u32,
) -> Vec<PreprocessedRequest> {
    if choices_per_prompt <= 1 {
        return requests;
    }
    let mut out = Vec::with_capacity(requests.len() * choices_per_prompt as usize);
    for request in requests {
        for j in 1..choices_per_prompt {
            let mut child = request.clone();
            child.request_id = format!("{}/{j}", request.request_id);
            child.sampling.seed = request.sampling.seed.map(|s| s.wrapping_add(u64::from(j)));
            out.push(child);
        }
        // The first choice keeps the request itself (no clone), placed before its siblings.
        let at = out.len() - (choices_per_prompt as usize - 1);
        out.insert(at, request);
    }
    out
}

pub(crate) async fn models(State(service): State<Arc<HttpService>>) -> Response {
    let created = unix_now();
    let list = ModelList {
        object: "list".into(),
        data: service
            .manager
            .served_models()
            .iter()
            .map(|p| model_object(p, created))
            .collect(),
    };
    (StatusCode::OK, axum::Json(list)).into_response()
}

/// `GET /v1/models/{id}`: one served model, or a 404 `model_not_found` error. Ids may contain
/// slashes (`Qwen/Qwen3-0.6B`), so the route captures the rest of the path.
pub(crate) async fn model(
    State(service): State<Arc<HttpService>>,
    Path(id): Path<String>,
) -> Response {
    match service
        .manager
        .served_models()
        .iter()
        .find(|p| p.name() == id)
    {
        Some(p) => (StatusCode::OK, axum::Json(model_object(p, unix_now()))).into_response(),
        None => HttpError(ApiError::model_not_found(&id)).into_response(),
    }
}

fn model_object(pipeline: &ModelPipeline, created: u64) -> ModelObject {
    ModelObject {
        id: pipeline.name().to_string(),
        object: "model".into(),
        created,
        owned_by: "switchyard".into(),
        max_model_len: Some(pipeline.card().context_length),
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses a JSON body, turning every failure into a 400 (or 413 for an oversized body).
pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the request body is larger than the server accepts (SWITCHYARD_HTTP_BODY_LIMIT_MB)",
            )
            .with_code("request_too_large")
        } else {
            ApiError::invalid(format!("cannot read the request body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")).with_code("invalid_json"))
}

fn new_id(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}{n:032x}")
}
