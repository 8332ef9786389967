//! Reasoning parsing: `<think>…</think>` text → `reasoning_content`, the rest → content, streamed
//! (markers may be split across pushes anywhere) or whole.
//!
//! The two parsers follow vLLM's `deepseek_r1` and `qwen3` reasoning parsers:
//! - `deepseek_r1`: the output starts inside reasoning (DeepSeek R1's template, like the
//!   thinking templates of QwQ and Qwen3-2507, ends the prompt with `<think>\n`). A `<think>`
//!   the model writes itself at the start is dropped. Everything up to the first `</think>` is
//!   reasoning, everything after it content; **with no `</think>` the whole output is
//!   reasoning** (vLLM: a cut-off thought).
//! - `qwen3`: reasoning only if the output itself opens with `<think>` (after blank text);
//!   **an output without `<think>` is all content** (vLLM's qwen3 parser needs both markers),
//!   which is what Qwen3 with `enable_thinking=False` produces (its template writes the empty
//!   block `<think>\n\n</think>\n\n` into the prompt). One deliberate difference: vLLM's
//!   non-streaming qwen3 parser calls an output with `<think>` but no `</think>` content, its
//!   streaming one calls it reasoning; here both say reasoning, so streaming and unary agree.
//!
//! [`ReasoningParser::for_prompt`] also reads the rendered prompt: a prompt that ends inside an
//! open `<think>` starts the output in reasoning (whatever the kind), one that ends right after
//! `</think>` (thinking switched off by the template) starts it in content. Later `<think>` /
//! `</think>` text after the reasoning ended is plain content.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::ParserError;
use crate::delta::{Delta, ParsedOutput, append_text};

const THINK_START: &str = "<think>";
const THINK_END: &str = "</think>";
/// Blank text at the start of the output that may still precede a `<think>` (bytes).
const MAX_LEADING_BLANK: usize = 1024;

/// A reasoning format (`--reasoning-parser NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasoningParserKind {
    /// `deepseek_r1`: starts in reasoning, ends at `</think>`.
    DeepseekR1,
    /// `qwen3`: reasoning only inside a `<think>` block the output opens.
    Qwen3,
}

impl ReasoningParserKind {
    pub const ALL: [ReasoningParserKind; 2] =
        [ReasoningParserKind::DeepseekR1, ReasoningParserKind::Qwen3];

    pub fn name(self) -> &'static str {
        match self {
            ReasoningParserKind::DeepseekR1 => "deepseek_r1",
            ReasoningParserKind::Qwen3 => "qwen3",
        }
    }
}

impl fmt::Display for ReasoningParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReasoningParserKind {
    type Err = ParserError;

    fn from_str(name: &str) -> Result<Self, ParserError> {
        match name {
            "deepseek_r1" => Ok(ReasoningParserKind::DeepseekR1),
            "qwen3" => Ok(ReasoningParserKind::Qwen3),
            _ => Err(ParserError::UnknownReasoningParser {
                name: name.to_owned(),
                known: "deepseek_r1, qwen3".to_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Output start, already in reasoning: blank text and a repeated `<think>` are dropped.
    Opening,
    /// Output start, in content unless a `<think>` opens.
    Detect,
    Reasoning,
    Content,
}

/// Streaming reasoning parser for one choice.
#[derive(Debug, Clone)]
pub struct ReasoningParser {
    kind: ReasoningParserKind,
    state: State,
    /// Text that may be part of a marker (at most a marker prefix, or blank text and a
    /// `<think>` prefix at the start).
    held: String,
}

impl ReasoningParser {
    /// vLLM's behaviour for `kind`, knowing nothing about the prompt.
    pub fn new(kind: ReasoningParserKind) -> Self {
        let state = match kind {
            ReasoningParserKind::DeepseekR1 => State::Opening,
            ReasoningParserKind::Qwen3 => State::Detect,
        };
        ReasoningParser {
            kind,
            state,
            held: String::new(),
        }
    }

    /// Like [`ReasoningParser::new`], but a rendered prompt that ends inside an open `<think>`
    /// (only blank text after it) starts in reasoning, and one that ends right after a
    /// `</think>` starts in content (the template switched thinking off).
    pub fn for_prompt(kind: ReasoningParserKind, prompt: &str) -> Self {
        let mut parser = ReasoningParser::new(kind);
        let ends_after = |marker: &str| {
            prompt
                .rfind(marker)
                .is_some_and(|at| prompt[at + marker.len()..].trim().is_empty())
        };
        if ends_after(THINK_START) {
            parser.state = State::Opening;
        } else if ends_after(THINK_END) {
            parser.state = State::Content;
        }
        parser
    }

    pub fn kind(&self) -> ReasoningParserKind {
        self.kind
    }

    /// Whether the output is (so far) inside reasoning.
    pub fn in_reasoning(&self) -> bool {
        matches!(self.state, State::Opening | State::Reasoning)
    }

    /// Feeds the next piece of output: reasoning and content come back borrowed when no marker
    /// is in sight.
    pub fn push<'a>(&mut self, text: &'a str) -> Delta<'a> {
        if self.held.is_empty()
            && matches!(self.state, State::Opening | State::Detect)
            && text
                .as_bytes()
                .first()
                .is_some_and(|&b| b != b'<' && !b.is_ascii_whitespace())
        {
            // The output does not open with `<think>`: decided without holding anything.
            self.state = if self.state == State::Opening {
                State::Reasoning
            } else {
                State::Content
            };
        }
        if self.held.is_empty() {
            match self.state {
                State::Content => return Delta::content(text),
                State::Reasoning => match find(text, THINK_END) {
                    Found::None => {
                        return Delta {
                            reasoning: Cow::Borrowed(text),
                            ..Delta::default()
                        };
                    }
                    Found::At(i) => {
                        self.state = State::Content;
                        return Delta {
                            reasoning: Cow::Borrowed(&text[..i]),
                            content: Cow::Borrowed(&text[i + THINK_END.len()..]),
                            tool_calls: Vec::new(),
                        };
                    }
                    Found::Partial(i) => {
                        self.held.push_str(&text[i..]);
                        return Delta {
                            reasoning: Cow::Borrowed(&text[..i]),
                            ..Delta::default()
                        };
                    }
                },
                State::Opening | State::Detect => {}
            }
        }
        let mut joined = std::mem::take(&mut self.held);
        joined.push_str(text);
        let mut delta = Delta::default();
        self.process(&joined, &mut delta, false);
        delta
    }

    /// Ends the output, releasing held text.
    pub fn finish(&mut self) -> Delta<'static> {
        let held = std::mem::take(&mut self.held);
        let mut delta = Delta::default();
        self.process(&held, &mut delta, true);
        delta
    }

    /// Parses a whole output with this parser (which should be fresh).
    pub fn parse_complete(mut self, text: &str) -> ParsedOutput {
        let mut parsed = ParsedOutput::default();
        parsed.push_delta(&self.push(text));
        parsed.push_delta(&self.finish());
        parsed
    }

    fn process(&mut self, s: &str, out: &mut Delta<'_>, eos: bool) {
        let mut i = 0;
        loop {
            let rest = &s[i..];
            match self.state {
                State::Opening | State::Detect => {
                    // Only blank text and a `<think>` prefix can be held here, from the start.
                    let blank = rest.bytes().take_while(u8::is_ascii_whitespace).count();
                    let decided = if blank > MAX_LEADING_BLANK {
                        Some(false)
                    } else {
                        match lit(&rest[blank..], THINK_START) {
                            Lit::Yes => Some(true),
                            Lit::No => Some(false),
                            Lit::Partial if eos => Some(false),
                            Lit::Partial => None,
                        }
                    };
                    match decided {
                        None => {
                            self.held.push_str(rest);
                            return;
                        }
                        Some(true) => {
                            i += blank + THINK_START.len();
                            self.state = State::Reasoning;
                        }
                        Some(false) => {
                            // Rescan the same text in its new state.
                            self.state = if self.state == State::Opening {
                                State::Reasoning
                            } else {
                                State::Content
                            };
                        }
                    }
                }
                State::Reasoning => match find(rest, THINK_END) {
                    Found::None => {
                        append_text(&mut out.reasoning, rest);
                        return;
                    }
                    Found::At(j) => {
                        append_text(&mut out.reasoning, &rest[..j]);
                        i += j + THINK_END.len();
                        self.state = State::Content;
                    }
                    Found::Partial(j) => {
                        append_text(&mut out.reasoning, &rest[..j]);
                        if eos {
                            append_text(&mut out.reasoning, &rest[j..]);
                        } else {
                            self.held.push_str(&rest[j..]);
                        }
                        return;
                    }
                },
                State::Content => {
                    append_text(&mut out.content, rest);
                    return;
                }
            }
        }
    }
}

enum Found {
    None,
    At(usize),
    /// `s[i..]` is a proper prefix of the marker.
    Partial(usize),
}

fn find(s: &str, marker: &str) -> Found {
    for i in memchr::memchr_iter(b'<', s.as_bytes()) {
        let rest = &s[i..];
        if rest.starts_with(marker) {
            return Found::At(i);
        }
        if marker.starts_with(rest) {
            return Found::Partial(i);
        }
    }
    Found::None
}

enum Lit {
    Yes,
    Partial,
    No,
}

fn lit(s: &str, literal: &str) -> Lit {
    if s.starts_with(literal) {
        Lit::Yes
    } else if literal.starts_with(s) {
        Lit::Partial
    } else {
        Lit::No
    }
}
