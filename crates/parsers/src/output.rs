//! [`OutputParser`]: reasoning first, then tool calls on the content, per choice.

use std::borrow::Cow;

use crate::delta::{Delta, ParsedOutput};
use crate::forced::ForcedCallParser;
use crate::reasoning::ReasoningParser;
use crate::tool::ToolCallParser;

/// The parsers one choice's output goes through. With neither, text passes through borrowed.
#[derive(Debug, Default)]
pub struct OutputParser {
    reasoning: Option<ReasoningParser>,
    tools: Option<ToolCallParser>,
    /// `tool_choice` forced calls: all content is call JSON (replaces `tools`).
    forced: Option<ForcedCallParser>,
}

impl OutputParser {
    pub fn new(reasoning: Option<ReasoningParser>, tools: Option<ToolCallParser>) -> Self {
        OutputParser {
            reasoning,
            tools,
            forced: None,
        }
    }

    /// Reasoning, then content that is forced tool calls' JSON (see [`crate::forced`]).
    pub fn forced(reasoning: Option<ReasoningParser>, forced: ForcedCallParser) -> Self {
        OutputParser {
            reasoning,
            tools: None,
            forced: Some(forced),
        }
    }

    /// Neither reasoning nor tool parsing: `push` returns its input as content.
    pub fn is_passthrough(&self) -> bool {
        self.reasoning.is_none() && self.tools.is_none() && self.forced.is_none()
    }

    /// Tool calls announced so far (`finish_reason: "tool_calls"` when non-zero at the end).
    pub fn calls_emitted(&self) -> usize {
        match &self.forced {
            Some(forced) => forced.calls_emitted(),
            None => self.tools.as_ref().map_or(0, ToolCallParser::calls_emitted),
        }
    }

    /// Whether `finish_reason` becomes `tool_calls` (a forced named call keeps `stop`).
    pub fn finishes_with_tool_calls(&self) -> bool {
        match &self.forced {
            Some(forced) => forced.finishes_with_tool_calls(),
            None => self.calls_emitted() > 0,
        }
    }

    pub fn push<'a>(&mut self, text: &'a str) -> Delta<'a> {
        let Delta {
            content, reasoning, ..
        } = match &mut self.reasoning {
            Some(parser) => parser.push(text),
            None => Delta::content(text),
        };
        if let Some(forced) = &mut self.forced {
            let calls = forced.push(&content);
            return Delta {
                content: Cow::Borrowed(""),
                reasoning,
                tool_calls: calls.tool_calls,
            };
        }
        let Some(tools) = &mut self.tools else {
            return Delta {
                content,
                reasoning,
                tool_calls: Vec::new(),
            };
        };
        if content.is_empty() {
            return Delta {
                content,
                reasoning,
                tool_calls: Vec::new(),
            };
        }
        let parsed = match content {
            Cow::Borrowed(content) => tools.push(content),
            Cow::Owned(content) => tools.push(&content).into_owned(),
        };
        Delta {
            content: parsed.content,
            reasoning,
            tool_calls: parsed.tool_calls,
        }
    }

    pub fn finish(&mut self) -> Delta<'static> {
        let mut out = match &mut self.reasoning {
            Some(parser) => parser.finish(),
            None => Delta::default(),
        };
        if let Some(forced) = &mut self.forced {
            let content = std::mem::take(&mut out.content);
            let mut calls = forced.push(&content);
            calls.append(forced.finish());
            out.tool_calls = calls.tool_calls;
        } else if let Some(tools) = &mut self.tools {
            let content = std::mem::take(&mut out.content);
            let mut parsed = tools.push(&content).into_owned();
            parsed.append(tools.finish());
            out.content = parsed.content;
            out.tool_calls = parsed.tool_calls;
        }
        out
    }

    /// Parses a whole output with these parsers (which should be fresh).
    pub fn parse_complete(mut self, text: &str) -> ParsedOutput {
        let mut parsed = ParsedOutput::default();
        parsed.push_delta(&self.push(text));
        parsed.push_delta(&self.finish());
        parsed
    }
}
