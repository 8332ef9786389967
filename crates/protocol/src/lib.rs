//! Types that cross a boundary in Switchyard, and nothing else.
//!
//! - [`openai`]: the OpenAI HTTP request/response bodies (chat, completions, models, errors),
//!   with [`openai::ChatCompletionRequest::validate`] style range checks.
//! - [`llm`]: the pipeline's currency. The frontend turns a client request into a
//!   [`llm::PreprocessedRequest`] (token ids + sampling + stop conditions); an engine answers with
//!   a stream of [`llm::EngineOutput`] token deltas.
//! - [`responses`]: OpenAI's Responses API request, its mapping onto a chat request, and the
//!   response object.
//! - [`kv`]: KV cache events a worker reports about its prefix cache.
//! - [`schema`]: hand-written JSON Schemas for fields looser in Rust than on the wire (the
//!   wire types derive `schemars::JsonSchema`; the HTTP crate builds its OpenAPI document
//!   from them).
//! - [`error`]: [`error::ApiError`], the one mapping from a failure to an HTTP status, an OpenAI
//!   error `type`, and a metrics label.
//!
//! Invariant: only this crate defines wire types; other crates convert, never redefine.

pub mod error;
pub mod integer;
pub mod kv;
pub mod llm;
pub mod openai;
pub mod responses;
pub mod schema;

pub use error::{ApiError, ErrorKind};
pub use llm::{
    CacheKey, EngineCapabilities, EngineOutput, FinishReason, GuidedDecoding,
    MAX_LOGIT_BIAS_ENTRIES, MAX_TOP_LOGPROBS, OutputLogprobs, OutputOptions, PreprocessedRequest,
    SamplingOptions, StopConditions, TokenId, TokenLogprob,
};
