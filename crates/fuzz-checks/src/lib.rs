//! Checkers for the fuzz targets in `fuzz/` (libFuzzer, `cargo fuzz`), as plain functions so
//! that the regular test suite runs the committed seeds (`fuzz/seeds/<target>/`) through the
//! very same code without libFuzzer or a nightly toolchain.
//!
//! Each checker takes arbitrary bytes and panics only when it finds a bug: a panic inside the
//! code under test, or a broken invariant it asserts. Errors returned by the code under test are
//! fine: bad input must give a clear error, never a panic or a hang.
//!
//! - [`check_openai_request`]: request bodies → `ChatCompletionRequest` / `CompletionRequest`
//!   parse, `validate`, `Prompt::into_inputs` (crates/protocol).
//! - [`check_chat_template`]: hostile chat messages rendered through the Qwen3 and Gemma 3 chat
//!   templates (crates/preprocess).
//! - [`check_postprocess`]: token id streams through `PostProcessor` over the Qwen3 tokenizer,
//!   compared with a one-shot `decode` (crates/postprocess).
//! - [`check_sse_client`]: the load generator's SSE parser under arbitrary frame splits, and its
//!   chunk classifier (crates/bench).
//! - [`check_kserve_request`]: protobuf `ModelInferRequest` bytes → the KServe tensor mapping and
//!   validation (crates/kserve).
//! - [`check_tool_parsers`]: model output through the tool-call and reasoning parsers, cut into
//!   pushes every way, against the unary parse (crates/parsers).
//! - [`check_structured`]: any bytes (or a generated schema) compiled as a JSON Schema, then
//!   bytes or a walk through the vocabulary mask fed to its matcher (crates/structured).
//! - [`check_kv_events`]: engine KV event batches (msgpack from ZMQ) → the decoder, a re-encode
//!   round trip in both layouts, and the ingest (crates/kv-events-zmq).
//!
//! [`ByteSource`] turns fuzz bytes into structured choices; [`models`] loads the test models
//! (`scripts/fetch-test-models.sh`) once per process; [`TARGETS`] and [`check`] name the checkers
//! for the fuzz binaries and the seed test.

mod bytes;
mod chat_template;
mod kserve_request;
mod kv_events;
pub mod models;
mod openai_request;
mod postprocess;
mod sse_client;
mod structured;
mod tool_parsers;

pub use bytes::ByteSource;
pub use chat_template::check_chat_template;
pub use kserve_request::check_kserve_request;
pub use kv_events::check_kv_events;
pub use openai_request::check_openai_request;
pub use postprocess::check_postprocess;
pub use sse_client::check_sse_client;
pub use structured::check_structured;
pub use tool_parsers::check_tool_parsers;

/// Every fuzz target, by the name of its `fuzz/fuzz_targets/<name>.rs` and `fuzz/seeds/<name>/`.
pub const TARGETS: [&str; 8] = [
    "openai_request",
    "chat_template",
    "postprocess",
    "sse_client",
    "kserve_request",
    "tool_parsers",
    "kv_events",
    "structured",
];

/// Loads what the checker of `target` needs (test models, reference renders) ahead of the first
/// input, so that one-off start-up work does not count against a per-input timeout.
pub fn warm_up(target: &str) {
    match target {
        "chat_template" => chat_template::warm_up(),
        "postprocess" => {
            models::qwen3();
        }
        _ => {}
    }
}

/// Runs the checker of `target` on `data`; `None` if there is no such target.
pub fn check(target: &str, data: &[u8]) -> Option<()> {
    match target {
        "openai_request" => check_openai_request(data),
        "chat_template" => check_chat_template(data),
        "postprocess" => check_postprocess(data),
        "sse_client" => check_sse_client(data),
        "kserve_request" => check_kserve_request(data),
        "tool_parsers" => check_tool_parsers(data),
        "kv_events" => check_kv_events(data),
        "structured" => check_structured(data),
        _ => return None,
    }
    Some(())
}
