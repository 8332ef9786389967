//! `POST /tokenize` and `POST /detokenize`, vLLM's extensions: the exact token ids the server
//! would send to an engine, and text back from ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchyard_frontend::ModelPipeline;
use switchyard_protocol::ApiError;
use switchyard_protocol::openai::{
    DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse,
};

use crate::error::HttpError;
use crate::openai::parse_body;
use crate::server::HttpService;

pub(crate) async fn tokenize(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run_tokenize(&service, body).await {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => HttpError(e).into_response(),
    }
}

pub(crate) async fn detokenize(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run_detokenize(&service, body).await {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => HttpError(e).into_response(),
    }
}

async fn run_tokenize(
    service: &HttpService,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenizeResponse, ApiError> {
    let mut req: TokenizeRequest = parse_body(body)?;
    req.validate()?;
    let pipeline = pick_model(service, req.model.as_deref())?;
    let return_token_strs = req.return_token_strs;
    let tokens = match req.prompt.take() {
        Some(prompt) => {
            pipeline
                .tokenize_text(prompt, req.add_special_tokens.unwrap_or(true))
                .await?
        }
        None => {
            let add_special_tokens = req.add_special_tokens.unwrap_or(false);
            let chat = req.into_chat_request(pipeline.name().to_string());
            pipeline.tokenize_chat(chat, add_special_tokens).await?
        }
    };
    let token_strs = return_token_strs.then(|| {
        let tokenizer = &pipeline.card().tokenizer;
        tokens
            .iter()
            .map(|&id| tokenizer.id_to_token(id).unwrap_or_default())
            .collect()
    });
    Ok(TokenizeResponse {
        count: tokens.len(),
        max_model_len: pipeline.card().context_length,
        tokens,
        token_strs,
    })
}

async fn run_detokenize(
    service: &HttpService,
    body: Result<Bytes, BytesRejection>,
) -> Result<DetokenizeResponse, ApiError> {
    let req: DetokenizeRequest = parse_body(body)?;
    let pipeline = pick_model(service, req.model.as_deref())?;
    Ok(DetokenizeResponse {
        prompt: pipeline.detokenize(req.tokens).await?,
    })
}

/// The named model, or the only one served when no name is given.
fn pick_model(service: &HttpService, model: Option<&str>) -> Result<Arc<ModelPipeline>, ApiError> {
    if let Some(name) = model {
        return service.manager.get(name);
    }
    let mut served = service.manager.served_models();
    match served.len() {
        1 => Ok(served.remove(0)),
        0 => Err(ApiError::unavailable("no model is being served")),
        _ => Err(ApiError::invalid_param(
            "model",
            "this server serves several models: name one",
        )),
    }
}
