//! Tool-call parsing: model output text → content + OpenAI tool calls, for the formats of
//! [`ToolParserKind`]. One [`ToolCallParser`] per choice; `push` each text delta, `finish` at the
//! end. Whole texts go through the very same machine ([`ToolCallParser::parse_complete`]), so
//! streamed and unary results are the same by construction.
//!
//! How a stream is cut into calls (every rule depends only on the text, never on how it was
//! split into pushes):
//! - Text streams as content until a start marker of the format appears (or, for `llama3_json`
//!   and `pythonic`, a `{` / `[` as the first non-blank character of the output). A possible
//!   marker prefix at the end of a push is held back until the next push decides it.
//! - A call is *committed* (its first delta, with index, id and name, is sent) once it is
//!   certain: for JSON calls when the name is known and the arguments object has its first key
//!   (`{"city"`, or is `{}`; other argument values when complete); for pythonic calls when the
//!   first keyword argument converted. Arguments then stream as they arrive: JSON arguments
//!   verbatim, byte for byte as the model wrote them.
//! - A call that breaks before its commit (bad JSON, no name, a marker followed by something
//!   else, the end of the output) is released as content exactly as it was written. Nothing
//!   before a commit is held longer than [`MAX_UNCOMMITTED`] bytes: past that it is content.
//! - A call that breaks after its commit cannot be taken back: it ends with the arguments sent
//!   so far (for a cut-off stream that is a JSON prefix, as OpenAI sends with
//!   `finish_reason: length`) and the text from the break on is ordinary output again.
//! - Blank text at the very start of the output and right after a call is dropped if a call (or
//!   the end of the output, after a call) follows it, and released otherwise.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::ParserError;
use crate::calls::{ArgsValue, CallObject, CallOut};
use crate::delta::{Delta, ParsedOutput, ToolCallDelta, append_text, push_call_delta};
use crate::ids::{IdStyle, new_call_id};
use crate::json::Scan;
use crate::python::{PyCall, is_ident_start};

/// Longest stretch of text held back while a possible call is not yet certain (bytes); past
/// it the text is released as content.
pub const MAX_UNCOMMITTED: usize = 256 * 1024;
/// Longest run of blank text held back at the start of the output or after a call.
const MAX_HELD_BLANK: usize = 4096;
/// Longest function name in the formats that write it outside JSON.
const MAX_NAME_LEN: usize = 256;

const HERMES_START: &str = "<tool_call>";
const HERMES_END: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const PYTHON_START: &str = "<|python_start|>";
const PYTHON_END: &str = "<|python_end|>";
const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
const DS_SEP: &str = "<｜tool▁sep｜>";

/// A tool-call output format, chosen per model (`--tool-call-parser NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolParserKind {
    /// Hermes / Qwen 2.5 / Qwen 3: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
    /// one block per call. Names: `hermes`, `qwen`.
    Hermes,
    /// Llama 3.1 / 3.2 JSON: `{"name": ..., "parameters": {...}}` (or `"arguments"`) as the
    /// whole output or after `<|python_tag|>`; several calls separated by `;`. Name:
    /// `llama3_json`.
    Llama3Json,
    /// Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (pre-v11 tokenizers),
    /// `[TOOL_CALLS]name{...}` (v11) and `[TOOL_CALLS]name[ARGS]{...}` (v13), one marker per
    /// call in the latter two. Ids are 9 alphanumerics (Mistral templates demand it). Name:
    /// `mistral`.
    Mistral,
    /// Pythonic (Llama 3.2 / Llama 4 pythonic templates): `[f(a=1), g(b="x")]` as the output,
    /// optionally inside `<|python_start|>` ... `<|python_end|>`. Names: `pythonic`,
    /// `llama4_pythonic`.
    Pythonic,
    /// DeepSeek V3 / R1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>`.
    /// Name: `deepseek_v3`.
    DeepseekV3,
    /// DeepSeek V3.1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>`.
    /// Name: `deepseek_v31`.
    DeepseekV31,
}

impl ToolParserKind {
    pub const ALL: [ToolParserKind; 6] = [
        ToolParserKind::Hermes,
        ToolParserKind::Llama3Json,
        ToolParserKind::Mistral,
        ToolParserKind::Pythonic,
        ToolParserKind::DeepseekV3,
        ToolParserKind::DeepseekV31,
    ];

    /// The canonical `--tool-call-parser` name.
    pub fn name(self) -> &'static str {
        match self {
            ToolParserKind::Hermes => "hermes",
            ToolParserKind::Llama3Json => "llama3_json",
            ToolParserKind::Mistral => "mistral",
            ToolParserKind::Pythonic => "pythonic",
            ToolParserKind::DeepseekV3 => "deepseek_v3",
            ToolParserKind::DeepseekV31 => "deepseek_v31",
        }
    }

    /// Every accepted name, canonical ones first (for help texts and errors).
    pub const NAMES: [&'static str; 10] = [
        "hermes",
        "qwen",
        "llama3_json",
        "mistral",
        "pythonic",
        "llama4_pythonic",
        "deepseek_v3",
        "deepseek_v31",
        "deepseekv3",
        "deepseekv31",
    ];

    fn spec(self) -> Spec {
        match self {
            ToolParserKind::Hermes => Spec {
                markers: &[HERMES_START],
                first: b'<',
                ids: IdStyle::OpenAi,
            },
            ToolParserKind::Llama3Json => Spec {
                markers: &[PYTHON_TAG],
                first: b'<',
                ids: IdStyle::OpenAi,
            },
            ToolParserKind::Mistral => Spec {
                markers: &[MISTRAL_CALLS],
                first: b'[',
                ids: IdStyle::Mistral,
            },
            ToolParserKind::Pythonic => Spec {
                markers: &[],
                first: 0,
                ids: IdStyle::OpenAi,
            },
            ToolParserKind::DeepseekV3 | ToolParserKind::DeepseekV31 => Spec {
                markers: &[DS_CALLS_BEGIN, DS_CALL_BEGIN],
                first: b'<',
                ids: IdStyle::OpenAi,
            },
        }
    }

    /// The region a start marker (`markers[which]`) opens.
    fn region_after_marker(self, which: usize) -> R {
        match self {
            ToolParserKind::Hermes => R::HermesOpen,
            ToolParserKind::Llama3Json => R::LlamaOpen {
                require_args: false,
            },
            ToolParserKind::Mistral => R::MistralOpen,
            ToolParserKind::Pythonic => R::PyStart,
            ToolParserKind::DeepseekV3 | ToolParserKind::DeepseekV31 => {
                if which == 0 {
                    R::DsCalls
                } else {
                    self.deepseek_head()
                }
            }
        }
    }

    fn deepseek_head(self) -> R {
        if self == ToolParserKind::DeepseekV3 {
            R::DsType(0)
        } else {
            R::DsName(String::new())
        }
    }

    /// Parses a whole output: (content, tool calls).
    pub fn parse_complete(self, text: &str) -> (String, Vec<crate::ToolCall>) {
        let parsed = ToolCallParser::new(self).parse_complete(text);
        (parsed.content, parsed.tool_calls)
    }
}

impl fmt::Display for ToolParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ToolParserKind {
    type Err = ParserError;

    fn from_str(name: &str) -> Result<Self, ParserError> {
        Ok(match name {
            "hermes" | "qwen" => ToolParserKind::Hermes,
            "llama3_json" => ToolParserKind::Llama3Json,
            "mistral" => ToolParserKind::Mistral,
            "pythonic" | "llama4_pythonic" => ToolParserKind::Pythonic,
            "deepseek_v3" | "deepseekv3" => ToolParserKind::DeepseekV3,
            "deepseek_v31" | "deepseekv31" => ToolParserKind::DeepseekV31,
            _ => {
                return Err(ParserError::UnknownToolParser {
                    name: name.to_owned(),
                    known: ToolParserKind::NAMES.join(", "),
                });
            }
        })
    }
}

struct Spec {
    /// Markers that open a call anywhere in the text; all start with `first`.
    markers: &'static [&'static str],
    first: u8,
    ids: IdStyle,
}

enum Found {
    None,
    Marker {
        at: usize,
        which: usize,
    },
    /// `s[at..]` is a proper prefix of a marker: wait for more text.
    Partial {
        at: usize,
    },
}

fn find_marker(s: &str, spec: &Spec) -> Found {
    if spec.markers.is_empty() {
        return Found::None;
    }
    for at in memchr::memchr_iter(spec.first, s.as_bytes()) {
        if let Some(found) = marker_at(&s[at..], spec.markers) {
            return match found {
                Some(which) => Found::Marker { at, which },
                None => Found::Partial { at },
            };
        }
    }
    Found::None
}

/// `Some(Some(i))`: `s` starts with `markers[i]`; `Some(None)`: `s` is a proper prefix of one;
/// `None`: neither.
fn marker_at(s: &str, markers: &[&str]) -> Option<Option<usize>> {
    let mut partial = false;
    for (which, m) in markers.iter().enumerate() {
        if s.starts_with(m) {
            return Some(Some(which));
        }
        partial |= m.starts_with(s);
    }
    partial.then_some(None)
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

fn blank_len(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_whitespace).count()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn is_mistral_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Text mode: what is held at the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Plain text.
    None,
    /// Start of the output: blank text from `from` is held (start-only triggers apply).
    Start { from: usize },
    /// Right after a call: blank text from `from` is held.
    AfterCall { from: usize },
}

/// Where a region's machine is.
#[derive(Debug)]
enum R {
    HermesOpen,
    HermesObject(CallObject),
    HermesClose,
    LlamaOpen { require_args: bool },
    LlamaObject(CallObject, bool),
    LlamaSep { require_args: bool },
    MistralOpen,
    MistralArray,
    MistralArrayObject(CallObject),
    MistralArraySep,
    MistralObject(CallObject),
    MistralName(String),
    MistralCallId(String, usize),
    MistralArgs(ArgsValue, CallOut),
    PyStart,
    PyList,
    PyCall(PyCall),
    PySep,
    PyEnd,
    DsCalls,
    DsType(usize),
    DsName(String),
    DsFenceOpen(CallOut),
    DsArgs(ArgsValue, CallOut),
    DsFenceClose,
    DsCallEnd,
    DsBetween,
}

/// Text that holds (or may hold) calls, from a start marker on.
#[derive(Debug)]
struct Region {
    /// Where the region's text began (held blank text included): released from here when its
    /// first call breaks before committing.
    start: usize,
    /// Just past the last call (or closing syntax) completed in this region.
    rewind_to: usize,
    /// Where the current, uncommitted attempt began (for [`MAX_UNCOMMITTED`]).
    attempt_start: usize,
    calls_done: usize,
    /// The current call has been announced.
    committed: bool,
    state: R,
}

impl Region {
    fn new(start: usize, state: R) -> Self {
        Region {
            start,
            rewind_to: start,
            attempt_start: start,
            calls_done: 0,
            committed: false,
            state,
        }
    }

    fn call_finished(&mut self, at: usize, calls: &mut Calls) {
        calls.open = None;
        self.calls_done += 1;
        self.committed = false;
        self.clean(at);
    }

    /// A point after a complete call where the region could end cleanly.
    fn clean(&mut self, at: usize) {
        self.rewind_to = at;
        self.attempt_start = at;
    }
}

enum Mode {
    Text(Hold),
    // Boxed: regions are rare next to text, and hold the call scanners.
    Region(Box<Region>),
}

/// What one region step did with the text from the current position.
enum Flow {
    /// Consumed this many bytes; keep going.
    Next(usize),
    /// Consumed this many bytes; the rest (if any) needs more text to decide.
    Wait(usize),
    /// Consumed this many bytes; the region is over.
    End(usize),
    /// The region broke at this offset.
    Fail(usize),
}

struct Calls {
    next: usize,
    open: Option<usize>,
    ids: IdStyle,
}

impl Calls {
    /// Hands out what the scanner of the current call has: its header once committed, then
    /// argument pieces.
    fn harvest(&mut self, call: &mut CallOut, committed: &mut bool, out: &mut Out<'_>) {
        if let Some(name) = call.take_header() {
            let index = self.next;
            self.next += 1;
            self.open = Some(index);
            out.calls.push(ToolCallDelta {
                index,
                id: Some(new_call_id(self.ids)),
                name: Some(name),
                arguments: String::new(),
            });
        }
        if let Some(args) = call.take_args()
            && let Some(index) = self.open
        {
            push_call_delta(
                &mut out.calls,
                ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments: args,
                },
            );
        }
        *committed = call.committed();
    }
}

#[derive(Default)]
struct Out<'a> {
    content: Cow<'a, str>,
    calls: Vec<ToolCallDelta>,
}

impl<'a> Out<'a> {
    fn into_delta(self) -> Delta<'a> {
        Delta {
            content: self.content,
            reasoning: Cow::Borrowed(""),
            tool_calls: self.calls,
        }
    }
}

/// Streaming tool-call parser for one choice (see the module docs for the rules).
pub struct ToolCallParser {
    kind: ToolParserKind,
    spec: Spec,
    /// Text received but not yet released, from absolute offset `base`.
    buf: String,
    base: usize,
    /// Absolute offset of the next byte to look at.
    pos: usize,
    mode: Mode,
    calls: Calls,
}

impl fmt::Debug for ToolCallParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCallParser")
            .field("kind", &self.kind)
            .field("held_bytes", &self.buf.len())
            .field("calls", &self.calls.next)
            .finish()
    }
}

impl ToolCallParser {
    pub fn new(kind: ToolParserKind) -> Self {
        let spec = kind.spec();
        let ids = spec.ids;
        ToolCallParser {
            kind,
            spec,
            buf: String::new(),
            base: 0,
            pos: 0,
            mode: Mode::Text(Hold::Start { from: 0 }),
            calls: Calls {
                next: 0,
                open: None,
                ids,
            },
        }
    }

    pub fn kind(&self) -> ToolParserKind {
        self.kind
    }

    /// How many calls have been announced so far (the response's `finish_reason` is
    /// `tool_calls` when this is non-zero at the end).
    pub fn calls_emitted(&self) -> usize {
        self.calls.next
    }

    /// Feeds the next piece of model output. Plain text with no marker in sight comes back
    /// borrowed.
    pub fn push<'a>(&mut self, text: &'a str) -> Delta<'a> {
        let mut out = Out::default();
        let mut text = text;
        if self.buf.is_empty()
            && let Mode::Text(hold @ (Hold::Start { .. } | Hold::AfterCall { .. })) = self.mode
            && let Some(&b) = text.as_bytes().first()
            && !b.is_ascii_whitespace()
            && !self.may_open_call(b, matches!(hold, Hold::Start { .. }))
        {
            // Nothing is held and this cannot open a call: plain text from here.
            self.mode = Mode::Text(Hold::None);
        }
        if self.buf.is_empty() && matches!(self.mode, Mode::Text(Hold::None)) {
            match find_marker(text, &self.spec) {
                Found::None => {
                    self.pos += text.len();
                    self.base = self.pos;
                    return Delta::content(text);
                }
                Found::Partial { at } | Found::Marker { at, .. } => {
                    out.content = Cow::Borrowed(&text[..at]);
                    self.pos += at;
                    self.base = self.pos;
                    text = &text[at..];
                }
            }
        }
        self.buf.push_str(text);
        self.run(&mut out, false);
        self.compact();
        out.into_delta()
    }

    /// Ends the output: held text is released, a call cut off after its commit ends as it is.
    pub fn finish(&mut self) -> Delta<'static> {
        let mut out = Out::default();
        self.run(&mut out, true);
        self.buf.clear();
        self.base = self.pos;
        self.calls.open = None;
        self.mode = Mode::Text(Hold::None);
        out.into_delta().into_owned()
    }

    /// Parses a whole output with this parser (which should be fresh).
    pub fn parse_complete(mut self, text: &str) -> ParsedOutput {
        let mut parsed = ParsedOutput::default();
        parsed.push_delta(&self.push(text));
        parsed.push_delta(&self.finish());
        parsed
    }

    /// Drops text that can no longer be released or rescanned.
    fn compact(&mut self) {
        let keep = match &self.mode {
            Mode::Text(Hold::None) => self.pos,
            Mode::Text(Hold::Start { from } | Hold::AfterCall { from }) => *from,
            Mode::Region(r) if r.committed => self.pos,
            Mode::Region(r) if r.calls_done > 0 => r.rewind_to,
            Mode::Region(r) => r.start,
        };
        let n = keep - self.base;
        if n == 0 {
            return;
        }
        if n == self.buf.len() {
            self.buf.clear();
        } else if n >= self.buf.len() / 2 {
            self.buf.drain(..n);
        } else {
            return;
        }
        self.base += n;
    }

    fn run(&mut self, out: &mut Out<'_>, eos: bool) {
        let end = self.base + self.buf.len();
        loop {
            let rest = &self.buf[self.pos - self.base..];
            match &mut self.mode {
                Mode::Text(Hold::None) => match find_marker(rest, &self.spec) {
                    Found::None => {
                        append_text(&mut out.content, rest);
                        self.pos = end;
                        return;
                    }
                    Found::Partial { at } => {
                        append_text(&mut out.content, &rest[..at]);
                        self.pos += at;
                        if eos {
                            append_text(&mut out.content, &rest[at..]);
                            self.pos = end;
                        }
                        return;
                    }
                    Found::Marker { at, which } => {
                        append_text(&mut out.content, &rest[..at]);
                        let start = self.pos + at;
                        self.pos = start + self.spec.markers[which].len();
                        self.mode = Mode::Region(Box::new(Region::new(
                            start,
                            self.kind.region_after_marker(which),
                        )));
                    }
                },
                Mode::Text(hold @ (Hold::Start { .. } | Hold::AfterCall { .. })) => {
                    let (from, at_start) = match *hold {
                        Hold::Start { from } => (from, true),
                        Hold::AfterCall { from } => (from, false),
                        Hold::None => unreachable!(),
                    };
                    let blank = blank_len(rest);
                    let held = |upto: usize| &self.buf[from - self.base..upto - self.base];
                    if self.pos + blank - from > MAX_HELD_BLANK {
                        append_text(&mut out.content, held(self.pos + blank));
                        self.pos += blank;
                        self.mode = Mode::Text(Hold::None);
                        continue;
                    }
                    if blank == rest.len() {
                        self.pos = end;
                        if eos {
                            if at_start {
                                append_text(&mut out.content, held(end));
                            }
                            self.mode = Mode::Text(Hold::None);
                        }
                        return;
                    }
                    let after = &rest[blank..];
                    let marker = marker_at(after, self.spec.markers);
                    let trigger = if at_start {
                        self.start_trigger(after)
                    } else {
                        None
                    };
                    let region = match (marker, trigger) {
                        (Some(Some(which)), _) => Some((
                            self.spec.markers[which].len(),
                            self.kind.region_after_marker(which),
                        )),
                        (_, Some(Some(start))) => Some(start),
                        (Some(None), _) | (_, Some(None)) => {
                            // A possible marker: wait (at the end it is plain text).
                            self.pos += blank;
                            if eos {
                                append_text(&mut out.content, held(end));
                                self.pos = end;
                                self.mode = Mode::Text(Hold::None);
                            }
                            return;
                        }
                        (None, None) => None,
                    };
                    match region {
                        Some((consumed, state)) => {
                            self.pos += blank + consumed;
                            self.mode = Mode::Region(Box::new(Region::new(from, state)));
                        }
                        None => {
                            append_text(&mut out.content, held(self.pos + blank));
                            self.pos += blank;
                            self.mode = Mode::Text(Hold::None);
                        }
                    }
                }
                Mode::Region(region) => {
                    let full = rest;
                    let limit = region.attempt_start + MAX_UNCOMMITTED;
                    let capped = !region.committed && self.pos + full.len() > limit;
                    let rest = if capped {
                        &full[..floor_char_boundary(full, limit.saturating_sub(self.pos))]
                    } else {
                        full
                    };
                    let flow = step(region, self.kind, rest, self.pos, &mut self.calls, out);
                    let fail_at = match flow {
                        Flow::Next(n) => {
                            self.pos += n;
                            continue;
                        }
                        Flow::End(n) => {
                            self.pos += n;
                            self.calls.open = None;
                            self.mode = Mode::Text(Hold::AfterCall { from: self.pos });
                            continue;
                        }
                        Flow::Fail(off) => self.pos + off,
                        Flow::Wait(n) => {
                            self.pos += n;
                            if capped {
                                self.pos - n + rest.len()
                            } else if !eos {
                                return;
                            } else if region.committed {
                                // Cut off after the commit: the call ends as it is.
                                self.calls.open = None;
                                self.mode = Mode::Text(Hold::AfterCall { from: self.pos });
                                continue;
                            } else {
                                end
                            }
                        }
                    };
                    self.fail_region(fail_at, out);
                }
            }
        }
    }

    /// Whether text starting with `b` may open a call (at the start of the output if
    /// `at_start`).
    fn may_open_call(&self, b: u8, at_start: bool) -> bool {
        (!self.spec.markers.is_empty() && b == self.spec.first)
            || at_start
                && match self.kind {
                    ToolParserKind::Llama3Json => b == b'{',
                    ToolParserKind::Pythonic => b == b'[' || b == b'<',
                    _ => false,
                }
    }

    /// Start-only triggers at the first non-blank byte of the output: `Some(Some((consumed,
    /// region)))`, `Some(None)` for a possible one (wait), `None`.
    fn start_trigger(&self, after: &str) -> Option<Option<(usize, R)>> {
        match self.kind {
            ToolParserKind::Llama3Json if after.starts_with('{') => {
                Some(Some((0, R::LlamaObject(CallObject::new(true), true))))
            }
            ToolParserKind::Pythonic if after.starts_with('[') => Some(Some((1, R::PyList))),
            ToolParserKind::Pythonic => match lit(after, PYTHON_START) {
                Lit::Yes => Some(Some((PYTHON_START.len(), R::PyStart))),
                Lit::Partial => Some(None),
                Lit::No => None,
            },
            _ => None,
        }
    }

    fn fail_region(&mut self, at: usize, out: &mut Out<'_>) {
        let Mode::Region(region) = &self.mode else {
            unreachable!("fail_region outside a region")
        };
        if region.committed {
            // Announced calls cannot be taken back: the call ends, the rest is output again.
            self.calls.open = None;
            self.pos = at;
            self.mode = Mode::Text(Hold::AfterCall { from: at });
        } else if region.calls_done > 0 {
            let back = region.rewind_to;
            self.pos = back;
            self.mode = Mode::Text(Hold::AfterCall { from: back });
        } else {
            append_text(
                &mut out.content,
                &self.buf[region.start - self.base..at - self.base],
            );
            self.pos = at;
            self.mode = Mode::Text(Hold::None);
        }
    }
}

/// One step of a region's machine over `rest` (which starts at absolute offset `at`).
fn step(
    region: &mut Region,
    kind: ToolParserKind,
    rest: &str,
    at: usize,
    calls: &mut Calls,
    out: &mut Out<'_>,
) -> Flow {
    let blank = blank_len(rest);
    let after = &rest[blank..];
    let first = after.as_bytes().first().copied();
    match &mut region.state {
        R::HermesOpen => match first {
            None => Flow::Wait(blank),
            Some(b'{') => {
                region.state = R::HermesObject(CallObject::new(false));
                Flow::Next(blank)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::HermesObject(obj) => {
            let result = obj.feed(rest);
            calls.harvest(&mut obj.out, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    region.call_finished(at + n, calls);
                    region.state = R::HermesClose;
                    Flow::Next(n)
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::HermesClose => match lit(after, HERMES_END) {
            Lit::Yes => Flow::End(blank + HERMES_END.len()),
            Lit::Partial => Flow::Wait(blank),
            Lit::No => Flow::Fail(blank),
        },
        R::LlamaOpen { require_args } => match first {
            None => Flow::Wait(blank),
            Some(b'{') => {
                let require_args = *require_args;
                region.state = R::LlamaObject(CallObject::new(require_args), require_args);
                Flow::Next(blank)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::LlamaObject(obj, require_args) => {
            let require_args = *require_args;
            let result = obj.feed(rest);
            calls.harvest(&mut obj.out, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    region.call_finished(at + n, calls);
                    region.state = R::LlamaSep { require_args };
                    Flow::Next(n)
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::LlamaSep { require_args } => match first {
            None => Flow::Wait(blank),
            Some(b';') => {
                region.state = R::LlamaOpen {
                    require_args: *require_args,
                };
                Flow::Next(blank + 1)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::MistralOpen => match first {
            None => Flow::Wait(blank),
            Some(b'[') => {
                region.state = R::MistralArray;
                Flow::Next(blank + 1)
            }
            Some(b'{') => {
                region.state = R::MistralObject(CallObject::new(false));
                Flow::Next(blank)
            }
            Some(b) if is_mistral_name_byte(b) => {
                region.state = R::MistralName(String::new());
                Flow::Next(blank)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::MistralArray => match first {
            None => Flow::Wait(blank),
            Some(b'{') => {
                region.state = R::MistralArrayObject(CallObject::new(false));
                Flow::Next(blank)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::MistralArrayObject(obj) | R::MistralObject(obj) => {
            let result = obj.feed(rest);
            calls.harvest(&mut obj.out, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    let in_array = matches!(region.state, R::MistralArrayObject(_));
                    region.call_finished(at + n, calls);
                    if in_array {
                        region.state = R::MistralArraySep;
                        Flow::Next(n)
                    } else {
                        Flow::End(n)
                    }
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::MistralArraySep => match first {
            None => Flow::Wait(blank),
            Some(b',') => {
                region.state = R::MistralArray;
                Flow::Next(blank + 1)
            }
            Some(b']') => Flow::End(blank + 1),
            Some(_) => Flow::Fail(blank),
        },
        R::MistralName(name) => {
            let k = rest
                .bytes()
                .take_while(|&b| is_mistral_name_byte(b))
                .count();
            if name.len() + k > MAX_NAME_LEN {
                return Flow::Fail(MAX_NAME_LEN - name.len());
            }
            name.push_str(&rest[..k]);
            let tail = &rest[k..];
            if tail.is_empty() {
                return Flow::Wait(k);
            }
            if name.is_empty() {
                return Flow::Fail(k);
            }
            let (consumed, call_id) = if tail.starts_with('{') {
                (0, false)
            } else {
                match (lit(tail, MISTRAL_ARGS), lit(tail, MISTRAL_CALL_ID)) {
                    (Lit::Yes, _) => (MISTRAL_ARGS.len(), false),
                    (_, Lit::Yes) => (MISTRAL_CALL_ID.len(), true),
                    (Lit::Partial, _) | (_, Lit::Partial) => return Flow::Wait(k),
                    (Lit::No, Lit::No) => return Flow::Fail(k),
                }
            };
            let name = std::mem::take(name);
            region.state = if call_id {
                R::MistralCallId(name, 0)
            } else {
                R::MistralArgs(ArgsValue::default(), CallOut::with_name(name))
            };
            Flow::Next(k + consumed)
        }
        R::MistralCallId(name, len) => {
            let k = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
            if *len + k > 64 {
                return Flow::Fail(64 - *len);
            }
            *len += k;
            match lit(&rest[k..], MISTRAL_ARGS) {
                Lit::Yes => {
                    region.state = R::MistralArgs(
                        ArgsValue::default(),
                        CallOut::with_name(std::mem::take(name)),
                    );
                    Flow::Next(k + MISTRAL_ARGS.len())
                }
                Lit::Partial => Flow::Wait(k),
                Lit::No => Flow::Fail(k),
            }
        }
        R::MistralArgs(value, call) => {
            let result = value.feed(rest, call);
            calls.harvest(call, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    region.call_finished(at + n, calls);
                    Flow::End(n)
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::PyStart => match first {
            None => Flow::Wait(blank),
            Some(b'[') => {
                region.state = R::PyList;
                Flow::Next(blank + 1)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::PyList => match first {
            None => Flow::Wait(blank),
            Some(b) if is_ident_start(b) => {
                region.state = R::PyCall(PyCall::default());
                Flow::Next(blank)
            }
            Some(_) => Flow::Fail(blank),
        },
        R::PyCall(call) => {
            let result = call.feed(rest);
            calls.harvest(&mut call.out, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    region.call_finished(at + n, calls);
                    region.state = R::PySep;
                    Flow::Next(n)
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::PySep => match first {
            None => Flow::Wait(blank),
            Some(b',') => {
                region.state = R::PyList;
                Flow::Next(blank + 1)
            }
            Some(b']') => {
                region.clean(at + blank + 1);
                region.state = R::PyEnd;
                Flow::Next(blank + 1)
            }
            Some(_) => Flow::Fail(blank),
        },
        // Only directly after `]`, so blank text after the list is never rescanned.
        R::PyEnd => match lit(rest, PYTHON_END) {
            Lit::Yes => Flow::End(PYTHON_END.len()),
            Lit::Partial => Flow::Wait(0),
            Lit::No => Flow::End(0),
        },
        R::DsCalls | R::DsBetween => {
            if after.is_empty() {
                return Flow::Wait(blank);
            }
            match (lit(after, DS_CALL_BEGIN), lit(after, DS_CALLS_END)) {
                (Lit::Yes, _) => {
                    region.state = kind.deepseek_head();
                    Flow::Next(blank + DS_CALL_BEGIN.len())
                }
                (_, Lit::Yes) => Flow::End(blank + DS_CALLS_END.len()),
                (Lit::Partial, _) | (_, Lit::Partial) => Flow::Wait(blank),
                (Lit::No, Lit::No) => Flow::Fail(blank),
            }
        }
        R::DsType(len) => {
            let k = rest
                .bytes()
                .take_while(|&b| b.is_ascii_alphabetic() || b == b'_')
                .count();
            if *len + k > 64 {
                return Flow::Fail(64 - *len);
            }
            *len += k;
            match lit(&rest[k..], DS_SEP) {
                Lit::Yes => {
                    region.state = R::DsName(String::new());
                    Flow::Next(k + DS_SEP.len())
                }
                Lit::Partial => Flow::Wait(k),
                Lit::No => Flow::Fail(k),
            }
        }
        R::DsName(name) => {
            let k = rest
                .bytes()
                .position(|b| b == b'\n' || b == b'<')
                .unwrap_or(rest.len());
            if name.len() + k > MAX_NAME_LEN {
                return Flow::Fail(floor_char_boundary(rest, MAX_NAME_LEN - name.len()));
            }
            name.push_str(&rest[..k]);
            let tail = &rest[k..];
            if tail.is_empty() {
                return Flow::Wait(k);
            }
            let consumed = match (kind, tail.as_bytes()[0]) {
                (ToolParserKind::DeepseekV3, b'\n') => 1,
                (ToolParserKind::DeepseekV31, b'<') => match lit(tail, DS_SEP) {
                    Lit::Yes => DS_SEP.len(),
                    Lit::Partial => return Flow::Wait(k),
                    Lit::No => return Flow::Fail(k),
                },
                _ => return Flow::Fail(k),
            };
            let trimmed = name.trim();
            if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
                return Flow::Fail(k);
            }
            region.state = R::DsFenceOpen(CallOut::with_name(trimmed.to_owned()));
            Flow::Next(k + consumed)
        }
        R::DsFenceOpen(call) => {
            if after.is_empty() {
                return Flow::Wait(blank);
            }
            let fence = match (lit(after, "```json"), lit(after, "```")) {
                (Lit::Yes, _) => 7,
                (Lit::Partial, _) => return Flow::Wait(blank),
                (_, Lit::Yes) => 3,
                _ => 0,
            };
            region.state = R::DsArgs(ArgsValue::default(), std::mem::take(call));
            Flow::Next(blank + fence)
        }
        R::DsArgs(value, call) => {
            let result = value.feed(rest, call);
            calls.harvest(call, &mut region.committed, out);
            match result {
                Ok(Scan::NeedMore) => Flow::Wait(rest.len()),
                Ok(Scan::Done(n)) => {
                    region.call_finished(at + n, calls);
                    region.state = R::DsFenceClose;
                    Flow::Next(n)
                }
                Err(n) => Flow::Fail(n),
            }
        }
        R::DsFenceClose => {
            if after.is_empty() {
                return Flow::Wait(blank);
            }
            match lit(after, "```") {
                Lit::Yes => {
                    region.state = R::DsCallEnd;
                    Flow::Next(blank + 3)
                }
                Lit::Partial => Flow::Wait(blank),
                Lit::No => {
                    region.state = R::DsCallEnd;
                    Flow::Next(blank)
                }
            }
        }
        R::DsCallEnd => {
            if after.is_empty() {
                return Flow::Wait(blank);
            }
            match lit(after, DS_CALL_END) {
                Lit::Yes => {
                    region.clean(at + blank + DS_CALL_END.len());
                    region.state = R::DsBetween;
                    Flow::Next(blank + DS_CALL_END.len())
                }
                Lit::Partial => Flow::Wait(blank),
                Lit::No => Flow::Fail(blank),
            }
        }
    }
}
