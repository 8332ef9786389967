//! What the parsers hand out: [`Delta`]s while streaming, [`ParsedOutput`] for a whole text.

use std::borrow::Cow;

/// One piece of a tool call while streaming, shaped like an OpenAI `tool_calls[]` delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// The call's position among this choice's calls (0, 1, ...).
    pub index: usize,
    /// `call_...` (9 alphanumerics for mistral); only on the call's first delta.
    pub id: Option<String>,
    /// The function name; only on the call's first delta (together with `id`).
    pub name: Option<String>,
    /// The next piece of the arguments JSON text (may be empty on a first delta).
    pub arguments: String,
}

/// What one `push` (or `finish`) produced. Text that needed no parsing is borrowed from the
/// input, so plain text costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta<'a> {
    /// Text for `delta.content`.
    pub content: Cow<'a, str>,
    /// Text for `delta.reasoning_content`.
    pub reasoning: Cow<'a, str>,
    /// Tool call pieces, in order; pieces of one call are merged within one delta.
    pub tool_calls: Vec<ToolCallDelta>,
}

impl<'a> Delta<'a> {
    pub(crate) fn content(text: &'a str) -> Self {
        Delta {
            content: Cow::Borrowed(text),
            ..Delta::default()
        }
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.reasoning.is_empty() && self.tool_calls.is_empty()
    }

    pub fn into_owned(self) -> Delta<'static> {
        Delta {
            content: Cow::Owned(self.content.into_owned()),
            reasoning: Cow::Owned(self.reasoning.into_owned()),
            tool_calls: self.tool_calls,
        }
    }

    /// Appends `later` (which came after `self`).
    pub(crate) fn append(&mut self, later: Delta<'_>) {
        append_text(&mut self.content, &later.content);
        append_text(&mut self.reasoning, &later.reasoning);
        for call in later.tool_calls {
            push_call_delta(&mut self.tool_calls, call);
        }
    }
}

/// A finished tool call, as in an OpenAI `message.tool_calls[]` entry (`type` is always
/// `"function"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, exactly the concatenation of the streamed pieces.
    pub arguments: String,
}

/// A whole output, parsed: what a non-streaming response carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedOutput {
    pub content: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
}

impl ParsedOutput {
    /// Adds one streamed delta (deltas must be added in order).
    pub fn push_delta(&mut self, delta: &Delta<'_>) {
        self.content.push_str(&delta.content);
        self.reasoning.push_str(&delta.reasoning);
        for d in &delta.tool_calls {
            if let (Some(id), Some(name)) = (&d.id, &d.name) {
                self.tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            if let Some(call) = self.tool_calls.get_mut(d.index) {
                call.arguments.push_str(&d.arguments);
            }
        }
    }
}

pub(crate) fn append_text<'a>(cow: &mut Cow<'a, str>, text: &str) {
    if text.is_empty() {
        return;
    }
    if cow.is_empty() {
        *cow = Cow::Owned(text.to_owned());
    } else {
        cow.to_mut().push_str(text);
    }
}

pub(crate) fn push_call_delta(calls: &mut Vec<ToolCallDelta>, delta: ToolCallDelta) {
    match calls.last_mut() {
        Some(last) if last.index == delta.index && delta.id.is_none() => {
            last.arguments.push_str(&delta.arguments);
        }
        _ => calls.push(delta),
    }
}
