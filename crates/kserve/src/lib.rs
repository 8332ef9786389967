//! The KServe v2 / Triton gRPC front door (`inference.GRPCInferenceService`) over the shared
//! [`switchyard_frontend`] pipeline.
//!
//! - [`pb`]: the protocol types and the generated server and client, from
//!   `proto/inference.proto` (compiled in `build.rs` with protox: no system `protoc`).
//! - [`KserveService`]: the RPCs. `ModelInfer` answers with the whole text; `ModelStreamInfer`
//!   serves each request on the stream concurrently, one response per generated chunk when the
//!   request asks to stream (the last one carries `finish_reason`).
//! - `tensors`: input tensors and parameters → a generation request (validated), and
//!   responses.
//! - [`serve`]: listener, TLS, HTTP/2 windows, message size limit and graceful drain.
//!
//! Failures map to gRPC codes in one place (`error`): invalid input → INVALID_ARGUMENT,
//! unknown model → NOT_FOUND, no worker or shutting down → UNAVAILABLE. Dropping a call drops
//! its `Generation`, which cancels the request on the worker.

mod error;
mod server;
mod service;
pub mod tensors;

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

pub use error::{code, status};
pub use server::{GrpcConfig, GrpcTls, serve};
pub use service::KserveService;
