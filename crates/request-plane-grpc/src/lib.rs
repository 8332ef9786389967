//! The gRPC request plane: frontends call workers over `switchyard.worker.v1.Worker/Generate`
//! (`proto/worker.proto`, compiled in `build.rs` with protox: no system `protoc`).
//!
//! # Protocol
//!
//! One server-streaming call per request. The `GenerateRequest` carries every field of a
//! [`PreprocessedRequest`](switchyard_protocol::PreprocessedRequest): packed prompt token ids,
//! sampling knobs as `optional` scalars (unset means engine default), stop conditions, output
//! options and the cache key. The worker answers one `GenerateResponse` per engine output
//! (token ids, finish reason, cached tokens) as soon as the engine yields it: nothing is
//! batched. The stream ends after the output carrying a finish reason, or after one `Error`
//! message mapped from the engine's
//! [`EngineError`](switchyard_engines::EngineError) (invalid request / overloaded / failed).
//! Engine errors travel as messages with gRPC status OK, so the client can tell them apart
//! from a broken call:
//!
//! - the call fails before the response headers (connect refused or timed out, worker does
//!   not speak this protocol): [`RuntimeError::Unreachable`](switchyard_runtime::RuntimeError),
//!   the request never started;
//! - the call breaks after that (transport error, non-OK status, end before the final
//!   message): one `EngineError::Failed("worker connection lost: …")` item
//!   ([`is_connection_lost`]), so the frontend can migrate the request.
//!
//! Both sides check incoming messages strictly ([`convert`]): a missing required message or
//! an unknown enum value is an error naming the field, never a panic or a default.
//!
//! # Cancellation
//!
//! Dropping the client's `EngineStream` drops the tonic call, which resets the HTTP/2 stream;
//! the worker's HTTP/2 connection then drops the response body, which owns the engine stream,
//! and dropping an engine stream is how engines cancel. A closed connection does the same for
//! every call on it.
//!
//! # Parts
//!
//! - [`WorkerServer`]: serves an [`Engine`](switchyard_engines::Engine) on a listener
//!   (TCP_NODELAY, graceful shutdown).
//! - [`GrpcRequestPlane`]: the [`RequestPlane`](switchyard_runtime::request_plane::RequestPlane)
//!   for `Endpoint::Grpc` workers; one channel (one HTTP/2 connection) per address,
//!   [`GrpcRequestPlane::forget`] for workers that left.

mod client;
pub mod convert;
mod server;

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("switchyard.worker.v1");
}

pub use client::{CONNECTION_LOST, GrpcPlaneConfig, GrpcRequestPlane, is_connection_lost};
pub use convert::ProtoError;
pub use server::{DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_MESSAGE_BYTES, WorkerServer};
