//! Tool-call and reasoning parsers: model output text → OpenAI `content`,
//! `reasoning_content` and `tool_calls`, streamed delta by delta or parsed whole. Pure and
//! synchronous: no I/O, no tokenizer (markers are matched as text, so they may be split across
//! deltas anywhere).
//!
//! - [`ToolCallParser`] for the formats of [`ToolParserKind`] (`--tool-call-parser`), see
//!   [`tool`] for the rules.
//! - [`ReasoningParser`] for [`ReasoningParserKind`] (`--reasoning-parser`), see [`reasoning`].
//! - [`OutputParser`] chains them per choice: reasoning first, tool calls on the content.
//! - [`guess_tool_parser`] / [`guess_reasoning_parser`] pick parsers from a chat template or a
//!   model name; [`ToolChoice`] and [`declared_function_names`] cover the request side.
//!
//! Every parser has `push(&mut self, &str) -> Delta<'_>` and `finish(&mut self) -> Delta<'static>`;
//! `parse_complete` runs the same machine over a whole text, so any way of cutting a text into
//! pushes gives the same content, reasoning and calls as the unary parse.

mod calls;
mod choice;
mod delta;
mod detect;
pub mod forced;
mod ids;
mod json;
mod output;
mod python;
pub mod reasoning;
pub mod tool;

pub use choice::{ToolChoice, declared_function_names};
pub use delta::{Delta, ParsedOutput, ToolCall, ToolCallDelta};
pub use detect::{guess_reasoning_parser, guess_tool_parser};
pub use forced::{ForcedCall, ForcedCallParser, forced_call_schema};
pub use output::OutputParser;
pub use reasoning::{ReasoningParser, ReasoningParserKind};
pub use tool::{MAX_UNCOMMITTED, ToolCallParser, ToolParserKind};

/// Configuration and request errors (parsing model output never fails: what is not a call is
/// content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParserError {
    #[error("unknown tool call parser '{name}' (known: {known})")]
    UnknownToolParser { name: String, known: String },
    #[error("unknown reasoning parser '{name}' (known: {known})")]
    UnknownReasoningParser { name: String, known: String },
    #[error("invalid tool_choice: {0}")]
    InvalidToolChoice(String),
}
