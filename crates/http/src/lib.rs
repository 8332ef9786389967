//! The OpenAI-compatible HTTP front door (axum).
//!
//! - [`HttpService`]: the shared state of all handlers: the [`ModelManager`], the
//!   [`Metrics`], and the drain state.
//! - [`router`]: the axum routes (`/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
//!   `/v1/models`, `/tokenize`, `/detokenize`, `/health`, `/live`, `/metrics`,
//!   `/openapi.json`) with OpenAI-shaped 404/405/413 fallbacks.
//! - [`serve`]: binds HTTP or HTTPS and runs until shutdown, then drains: `/health` and
//!   `/live` answer 503 and new requests are refused while in-flight responses finish.
//! - [`serve_observability`]: `/health`, `/live` and `/metrics` alone on another port (for
//!   deployments that expose only the gRPC front door).
//! - `openai`: chat and completion handlers; `responses`: their unary JSON bodies and SSE
//!   streams; `logprobs`: engine logprobs in OpenAI's shapes; `responses_api`: the Responses
//!   API on the chat pipeline; `tokenize`: `/tokenize` and `/detokenize`; `openapi`: the
//!   OpenAPI 3.1 document of every route, its schemas derived from the protocol types.
//!
//! Invariant: this crate knows nothing about engines or workers; it talks to the
//! [`switchyard_frontend`] pipeline only.

mod error;
mod logprobs;
mod openai;
mod openapi;
mod responses;
mod responses_api;
mod server;
mod tokenize;

pub use server::{
    HttpConfig, HttpService, TlsConfig, observability_router, router, serve, serve_observability,
};
pub use switchyard_frontend::{Metrics, ModelManager};
