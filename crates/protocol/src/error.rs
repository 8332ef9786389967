//! One error type for everything a client can be told, and its single mapping to HTTP status,
//! OpenAI error `type`, and metrics label (so the three never drift apart).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The class of a client-visible failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: malformed JSON, missing or out-of-range fields, empty messages, prompt too long.
    InvalidRequest,
    /// 404: unknown model or route.
    NotFound,
    /// 405: wrong HTTP method.
    MethodNotAllowed,
    /// 413: request body over the limit.
    PayloadTooLarge,
    /// 503: no worker serves the model, the server is not ready, overloaded or shutting down.
    Unavailable,
    /// 500: a bug or an engine failure.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// OpenAI's `error.type` string; also the `status` label of error metrics.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::Internal => "internal_error",
        }
    }
}

/// A failure to report to a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code, e.g. `model_not_found`.
    pub code: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// 400 naming the offending field.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// The OpenAI error body `{"error": {...}}`.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                message: self.message.clone(),
                r#type: self.kind.error_type().to_string(),
                param: self.param.clone(),
                code: self
                    .code
                    .clone()
                    .map(serde_json::Value::String)
                    .unwrap_or_else(|| serde_json::Value::from(self.kind.http_status())),
            },
        }
    }
}

/// `{"error": {"message", "type", "param", "code"}}` as OpenAI sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub message: String,
    pub r#type: String,
    pub param: Option<String>,
    #[schemars(with = "crate::schema::ErrorCode")]
    pub code: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let err = ApiError::model_not_found("gpt-x");
        let json = serde_json::to_value(err.body()).unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(json["error"]["code"], "model_not_found");
        assert_eq!(json["error"]["param"], "model");
        assert_eq!(err.kind.http_status(), 404);
        let err = ApiError::invalid("bad");
        let json = serde_json::to_value(err.body()).unwrap();
        assert_eq!(json["error"]["code"], 400);
        assert!(json["error"]["param"].is_null());
    }
}
