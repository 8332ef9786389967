//! [`ApiError`] → HTTP response: the one place statuses and bodies are decided.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchyard_protocol::ApiError;

/// Wrapper so handlers can `?` an [`ApiError`] into an OpenAI-shaped response.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.body()).unwrap_or_default();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
