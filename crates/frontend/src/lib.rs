//! The request pipeline shared by every front door (OpenAI HTTP, KServe gRPC):
//! preprocess → route → stream → postprocess.
//!
//! - [`ModelManager`]: the served models, kept in step with discovery; looks up a
//!   [`ModelPipeline`] by name and answers readiness.
//! - [`ModelPipeline`]: one model's tokenizer, chat template, [`switchyard_router::Router`] and
//!   request plane. [`ModelPipeline::preprocess_chat`] / [`ModelPipeline::preprocess_completion`]
//!   turn OpenAI requests into [`switchyard_protocol::PreprocessedRequest`]s (CPU work runs on
//!   the [`CpuPool`], never on the reactor); [`ModelPipeline::generate`] routes one and returns a
//!   [`Generation`].
//! - [`Generation`]: one choice's stream of text deltas. Dropping it cancels the request on the
//!   worker and releases the router's load accounting (through the router's `LoadGuard`).
//! - [`Metrics`]: the Prometheus registry every front door records into; [`RequestRecord`]
//!   counts one request (protocol, endpoint, outcome) when dropped.
//! - [`Admission`]: the process-wide drain gate every front door admits requests through.

mod admission;
mod cpu_pool;
mod generation;
mod listener;
mod manager;
mod metrics;
mod pipeline;

pub use admission::{ActiveTicket, Admission};
pub use cpu_pool::CpuPool;
pub use generation::{Collected, Generation, TextDelta, TokenTexts};
pub use listener::bind_listener;
pub use manager::{ModelManager, load_model_card};
pub use metrics::{Endpoint, Metrics, ModelMetrics, RequestRecord};
pub use pipeline::{ChatOutputParsing, ModelPipeline, OutputParsing, ToolParserChoice};
pub use switchyard_parsers;
