//! Output of a request whose `tool_choice` forces calls. The engine decodes under a JSON
//! schema (see [`forced_call_schema`]), so the text is JSON in a known shape rather than a
//! model's own call format:
//!
//! - a named function (`{"type": "function", "function": {"name": N}}`): the whole text is
//!   the arguments object of one call to `N`;
//! - `"required"`: the text is an array of `{"name": ..., "parameters": {...}}`, one element
//!   per call (the layout vLLM constrains to), at least one.
//!
//! [`ForcedCallParser`] turns that text into OpenAI tool call deltas as it streams.

use serde_json::{Value, json};

use crate::delta::{Delta, ToolCallDelta};
use crate::ids::{IdStyle, new_call_id};

/// Which calls `tool_choice` forces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForcedCall {
    /// One call to this function.
    Named(String),
    /// At least one call, to any declared function.
    Required,
}

/// The JSON schema the engine must decode under for `forced`, from the request's `tools`
/// (OpenAI shape: `{"type": "function", "function": {"name", "parameters"}}`). A function
/// without `parameters` takes any object. `None` when a named function is not declared.
pub fn forced_call_schema(forced: &ForcedCall, tools: &[Value]) -> Option<Value> {
    let functions = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .filter_map(|f| Some((f.get("name")?.as_str()?, f.get("parameters"))));
    let parameters = |p: Option<&Value>| {
        p.filter(|p| p.is_object())
            .cloned()
            .unwrap_or(json!({"type": "object"}))
    };
    match forced {
        ForcedCall::Named(name) => functions
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| parameters(p)),
        ForcedCall::Required => {
            let alternatives: Vec<Value> = functions
                .map(|(name, p)| {
                    json!({
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "enum": [name]},
                            "parameters": parameters(p),
                        },
                        "required": ["name", "parameters"],
                        "additionalProperties": false,
                    })
                })
                .collect();
            (!alternatives.is_empty())
                .then(|| json!({"type": "array", "minItems": 1, "items": {"anyOf": alternatives}}))
        }
    }
}

/// Streams forced-call output as tool call deltas.
#[derive(Debug)]
pub struct ForcedCallParser {
    mode: Mode,
    calls: usize,
}

#[derive(Debug)]
enum Mode {
    Named { name: String, started: bool },
    Required(ArrayScanner),
}

impl ForcedCallParser {
    pub fn new(forced: &ForcedCall) -> Self {
        let mode = match forced {
            ForcedCall::Named(name) => Mode::Named {
                name: name.clone(),
                started: false,
            },
            ForcedCall::Required => Mode::Required(ArrayScanner::default()),
        };
        ForcedCallParser { mode, calls: 0 }
    }

    /// Calls announced so far.
    pub fn calls_emitted(&self) -> usize {
        self.calls
    }

    /// Whether the choice's `finish_reason` becomes `tool_calls`: OpenAI (and vLLM) keep
    /// `stop` when one named function was forced, and say `tool_calls` for `required`.
    pub fn finishes_with_tool_calls(&self) -> bool {
        matches!(self.mode, Mode::Required(_)) && self.calls > 0
    }

    pub fn push(&mut self, text: &str) -> Delta<'static> {
        let mut out = Delta::default();
        match &mut self.mode {
            Mode::Named { name, started } => {
                if !*started {
                    *started = true;
                    self.calls = 1;
                    out.tool_calls.push(ToolCallDelta {
                        index: 0,
                        id: Some(new_call_id(IdStyle::OpenAi)),
                        name: Some(name.clone()),
                        arguments: text.to_owned(),
                    });
                } else if !text.is_empty() {
                    out.tool_calls.push(ToolCallDelta {
                        index: 0,
                        id: None,
                        name: None,
                        arguments: text.to_owned(),
                    });
                }
            }
            Mode::Required(scanner) => {
                scanner.push(text, &mut self.calls, &mut out.tool_calls);
            }
        }
        out
    }

    pub fn finish(&mut self) -> Delta<'static> {
        // An empty forced answer (max_tokens 0) still names its call.
        if let Mode::Named { started: false, .. } = self.mode {
            return self.push("");
        }
        Delta::default()
    }
}

/// Walks `[{"name": ..., "parameters": ...}, ...]` character by character, across pushes.
#[derive(Debug, Default)]
struct ArrayScanner {
    /// Bracket depth outside strings: 1 inside the array, 2 inside an element.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Where an element's reading is, at depth 2.
    slot: Slot,
    /// The key read last in the current element.
    key: String,
    /// Whose value is being read.
    value: Member,
    /// The element's `name` as raw JSON string text (quotes included).
    name_raw: String,
    /// Arguments text seen before the name was (sent with the call's first delta).
    pending: String,
    /// The current element's call index, once announced.
    announced: Option<usize>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Before, in or after a key.
    #[default]
    Key,
    /// After `:`, before the value's first character.
    ValueWait,
    /// In a string value at depth 2.
    ValueString,
    /// In a number, `true`, `false` or `null` at depth 2.
    ValueScalar,
    /// In an object or array value (depth > 2).
    ValueNested,
    /// The value ended; `,` or `}` follows.
    ValueDone,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Member {
    #[default]
    Other,
    Name,
    Parameters,
}

impl ArrayScanner {
    fn push(&mut self, text: &str, calls: &mut usize, out: &mut Vec<ToolCallDelta>) {
        let mut arguments = String::new();
        for ch in text.chars() {
            let reading_parameters = self.value == Member::Parameters
                && matches!(
                    self.slot,
                    Slot::ValueString | Slot::ValueScalar | Slot::ValueNested
                );
            if self.in_string {
                let closes = !self.escaped && ch == '"';
                self.escaped = !self.escaped && ch == '\\';
                if closes {
                    self.in_string = false;
                }
                match self.slot {
                    Slot::Key if !closes => self.key.push(ch),
                    Slot::ValueString if self.value == Member::Name => {
                        self.name_raw.push(ch);
                        if closes {
                            self.announce(calls, out, &mut arguments);
                        }
                    }
                    _ => {}
                }
                if reading_parameters {
                    arguments.push(ch);
                }
                if closes && self.slot == Slot::ValueString {
                    self.slot = Slot::ValueDone;
                }
                continue;
            }
            match (self.depth, self.slot) {
                (0, _) => {
                    if ch == '[' {
                        self.depth = 1;
                    }
                }
                (1, _) => match ch {
                    '{' => {
                        self.depth = 2;
                        self.start_element();
                    }
                    ']' => self.depth = 0,
                    _ => {}
                },
                (2, Slot::Key) => match ch {
                    '"' => {
                        self.in_string = true;
                        self.key.clear();
                    }
                    ':' if !self.in_string => {
                        self.slot = Slot::ValueWait;
                        self.value = match self.key.as_str() {
                            "name" => Member::Name,
                            "parameters" | "arguments" => Member::Parameters,
                            _ => Member::Other,
                        };
                    }
                    '}' => self.depth = 1,
                    _ => {}
                },
                (2, Slot::ValueWait) if ch.is_whitespace() => {}
                (2, Slot::ValueWait) => {
                    self.slot = match ch {
                        '"' => {
                            self.in_string = true;
                            if self.value == Member::Name {
                                self.name_raw.clear();
                                self.name_raw.push(ch);
                            }
                            Slot::ValueString
                        }
                        '{' | '[' => {
                            self.depth = 3;
                            Slot::ValueNested
                        }
                        _ => Slot::ValueScalar,
                    };
                    if self.value == Member::Parameters {
                        arguments.push(ch);
                    }
                }
                (2, _) => match ch {
                    ',' => self.slot = Slot::Key,
                    '}' => {
                        self.depth = 1;
                        self.flush(std::mem::take(&mut arguments), out);
                    }
                    c if c.is_whitespace() => {
                        if self.slot == Slot::ValueScalar {
                            self.slot = Slot::ValueDone;
                        }
                    }
                    c => {
                        if self.slot == Slot::ValueScalar && self.value == Member::Parameters {
                            arguments.push(c);
                        }
                    }
                },
                _ => {
                    // Inside a nested value.
                    match ch {
                        '"' => self.in_string = true,
                        '{' | '[' => self.depth += 1,
                        '}' | ']' => self.depth -= 1,
                        _ => {}
                    }
                    if reading_parameters {
                        arguments.push(ch);
                    }
                    if self.depth == 2 {
                        self.slot = Slot::ValueDone;
                    }
                }
            }
        }
        self.flush(arguments, out);
    }

    fn start_element(&mut self) {
        self.slot = Slot::Key;
        self.value = Member::Other;
        self.key.clear();
        self.name_raw.clear();
        self.pending.clear();
        self.announced = None;
    }

    /// The name string just closed: announce the call with the arguments seen so far.
    fn announce(
        &mut self,
        calls: &mut usize,
        out: &mut Vec<ToolCallDelta>,
        arguments: &mut String,
    ) {
        if self.announced.is_some() {
            return;
        }
        let Ok(name) = serde_json::from_str::<String>(&self.name_raw) else {
            return;
        };
        let index = *calls;
        *calls += 1;
        self.announced = Some(index);
        let mut first = std::mem::take(&mut self.pending);
        first.push_str(arguments);
        arguments.clear();
        out.push(ToolCallDelta {
            index,
            id: Some(new_call_id(IdStyle::OpenAi)),
            name: Some(name),
            arguments: first,
        });
    }

    fn flush(&mut self, arguments: String, out: &mut Vec<ToolCallDelta>) {
        if arguments.is_empty() {
            return;
        }
        match self.announced {
            Some(index) => crate::delta::push_call_delta(
                out,
                ToolCallDelta {
                    index,
                    id: None,
                    name: None,
                    arguments,
                },
            ),
            None => self.pending.push_str(&arguments),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::ParsedOutput;
    use proptest::prelude::*;

    fn parse_in_pieces(forced: &ForcedCall, text: &str, cuts: &[usize]) -> (ParsedOutput, bool) {
        let mut parser = ForcedCallParser::new(forced);
        let mut parsed = ParsedOutput::default();
        let mut at = 0;
        for &cut in cuts {
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            parsed.push_delta(&parser.push(&text[at..end]));
            at = end;
        }
        parsed.push_delta(&parser.push(&text[at..]));
        parsed.push_delta(&parser.finish());
        (parsed, parser.finishes_with_tool_calls())
    }

    const TWO_CALLS: &str = r#"[{"name": "get_weather", "parameters": {"city": "Paris", "days": [1, 2], "note": "a \"}\" here"}}, {"parameters": 7, "name": "count"}]"#;

    #[test]
    fn required_output_becomes_one_call_per_element() {
        let (parsed, tool_calls) = parse_in_pieces(&ForcedCall::Required, TWO_CALLS, &[]);
        assert!(parsed.content.is_empty());
        let calls: Vec<(&str, &str)> = parsed
            .tool_calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                (
                    "get_weather",
                    r#"{"city": "Paris", "days": [1, 2], "note": "a \"}\" here"}"#
                ),
                ("count", "7"),
            ]
        );
        assert!(tool_calls);
        assert_ne!(parsed.tool_calls[0].id, parsed.tool_calls[1].id);
    }

    #[test]
    fn named_output_is_the_arguments_of_that_call() {
        let (parsed, tool_calls) =
            parse_in_pieces(&ForcedCall::Named("f".into()), r#"{"a": 1}"#, &[3, 1]);
        assert_eq!(parsed.tool_calls.len(), 1);
        assert_eq!(parsed.tool_calls[0].name, "f");
        assert_eq!(parsed.tool_calls[0].arguments, r#"{"a": 1}"#);
        // OpenAI keeps `stop` for a forced named call.
        assert!(!tool_calls);
        let (empty, _) = parse_in_pieces(&ForcedCall::Named("f".into()), "", &[]);
        assert_eq!(empty.tool_calls[0].arguments, "");
    }

    #[test]
    fn schemas_follow_the_declared_tools() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}),
            json!({"type": "function", "function": {"name": "g"}}),
        ];
        assert_eq!(
            forced_call_schema(&ForcedCall::Named("f".into()), &tools).unwrap()["properties"]["x"]
                ["type"],
            "integer"
        );
        assert_eq!(
            forced_call_schema(&ForcedCall::Named("g".into()), &tools).unwrap(),
            json!({"type": "object"})
        );
        assert!(forced_call_schema(&ForcedCall::Named("h".into()), &tools).is_none());
        let required = forced_call_schema(&ForcedCall::Required, &tools).unwrap();
        assert_eq!(required["minItems"], 1);
        assert_eq!(
            required["items"]["anyOf"][1]["properties"]["name"]["enum"][0],
            "g"
        );
        assert!(forced_call_schema(&ForcedCall::Required, &[]).is_none());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_whole_parse(cuts in proptest::collection::vec(0usize..12, 0..40)) {
            let whole = parse_in_pieces(&ForcedCall::Required, TWO_CALLS, &[]);
            prop_assert_eq!(
                parse_in_pieces(&ForcedCall::Required, TWO_CALLS, &cuts).0.tool_calls
                    .iter().map(|c| (c.name.clone(), c.arguments.clone())).collect::<Vec<_>>(),
                whole.0.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect::<Vec<_>>()
            );
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,64}", cuts in proptest::collection::vec(0usize..8, 0..8)) {
            let _ = parse_in_pieces(&ForcedCall::Required, &text, &cuts);
        }
    }
}
