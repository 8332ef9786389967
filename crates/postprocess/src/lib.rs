//! Postprocessing: an engine's token stream back into client text, exactly and incrementally.
//!
//! - [`IncrementalDetokenizer`]: token ids in, newly complete text out, exactly as a full
//!   `Tokenizer::decode` would produce it. Byte-level BPE tokenizers (Qwen, Llama 3) take a fast
//!   path: token bytes from a table built once per tokenizer, streamed through UTF-8 conversion.
//!   Other tokenizers (SentencePiece with `▁` and byte fallback) decode a small sliding window of
//!   recent tokens (the prefix/read offset technique). Either way a multi-byte character split
//!   across tokens is held until complete, and the cost per token is bounded.
//! - [`StopStringMatcher`]: text in, text out; holds back ("jails") any tail that could still
//!   become a stop string, and reports the earliest match.
//! - [`PostProcessor`]: one choice of one request. Feeds each [`EngineOutput`] token through the
//!   detokenizer and the stop matcher, hides stop / EOS tokens, enforces `max_tokens`, counts
//!   completion tokens, and returns a [`Delta`] (text to send now + finish reason).
//!
//! Data flow: `EngineOutput` → [`PostProcessor::on_output`] → per token:
//! stop-token check → [`IncrementalDetokenizer::push`] → [`StopStringMatcher::push`] → [`Delta`].
//!
//! [`EngineOutput`]: switchyard_protocol::EngineOutput

mod byte_level;
mod detokenizer;
mod processor;
mod stop;

#[cfg(test)]
mod test_tokenizers;

pub use detokenizer::IncrementalDetokenizer;
pub use processor::{Delta, PostProcessor, StopReason};
pub use stop::{StopOutput, StopStringMatcher};

use switchyard_protocol::ApiError;

/// Why postprocessing could not turn an engine's output into text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PostprocessError {
    /// The engine produced a token id the tokenizer does not know (a model/tokenizer mismatch or a
    /// misbehaving engine).
    #[error("token id {token} is not in the tokenizer's vocabulary")]
    UnknownToken { token: u32 },
    /// The tokenizer's decoder failed.
    #[error("detokenization failed: {0}")]
    Decode(String),
    /// [`PostProcessor::on_output`] was called after it had already reported a finish reason.
    #[error("engine output received after the stream finished")]
    AfterFinish,
}

impl From<PostprocessError> for ApiError {
    /// Every postprocessing failure is ours or the engine's, never the client's.
    fn from(err: PostprocessError) -> Self {
        ApiError::internal(err.to_string())
    }
}
