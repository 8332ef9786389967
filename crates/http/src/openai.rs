//! OpenAI request handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::de::DeserializeOwned;
use switchyard_frontend::{Endpoint, ModelPipeline, RequestRecord};
use switchyard_protocol::openai::{
    ChatCompletionRequest, CommonParams, CompletionRequest, ModelList, ModelObject,
};
use switchyard_protocol::{ApiError, ErrorKind, PreprocessedRequest};

use crate::error::HttpError;
use crate::responses::{self, ResponseContext};
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

fn fail(mut record: RequestRecord, error: ApiError) -> Response {
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
    let id = new_id(R::ID_PREFIX);
    let preprocessed = req.preprocess(&pipeline, &id).await?;
    let mut generations = Vec::with_capacity(preprocessed.len());
    for request in preprocessed {
        generations.push(pipeline.generate(request, R::ENDPOINT, arrived).await?);
    }
    let ctx = ResponseContext::new(
        id,
        pipeline.name().to_string(),
        R::ENDPOINT,
        include_usage,
        std::mem::replace(record, RequestRecord::detached(service.metrics.clone())),
        ticket,
    );
    if stream {
        Ok(responses::stream(ctx, generations))
    } else {
        responses::unary(ctx, generations).await
    }
}

pub(crate) async fn models(State(service): State<Arc<HttpService>>) -> Response {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let list = ModelList {
        object: "list".into(),
        data: service
            .manager
            .served_models()
            .iter()
            .map(|p| ModelObject {
                id: p.name().to_string(),
                object: "model".into(),
                created,
                owned_by: "switchyard".into(),
            })
            .collect(),
    };
    (StatusCode::OK, axum::Json(list)).into_response()
}

/// Parses a JSON body, turning every failure into a 400 (or 413 for an oversized body).
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
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
