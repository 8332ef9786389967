//! Model output through the tool-call and reasoning parsers (crates/parsers), cut into pushes
//! every way.

use switchyard_parsers::{
    Delta, OutputParser, ParsedOutput, ReasoningParser, ReasoningParserKind, ToolCallParser,
    ToolParserKind,
};

use crate::ByteSource;

/// Whole texts up to this size are also tried at every single cut point (quadratic work).
const ALL_CUTS_MAX_LEN: usize = 256;

/// Pieces of every format's syntax, for the fragment-built texts.
const FRAGMENTS: &[&str] = &[
    "hello ",
    " ",
    "\n",
    "é",
    "😀",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    ";",
    "(",
    ")",
    "=",
    "'",
    "1",
    "-2.5e3",
    "true",
    "null",
    "\\",
    "\\u00e9",
    "<",
    ">",
    "/",
    "|",
    "name",
    "\"name\": \"f\"",
    "\"arguments\": ",
    "\"parameters\": ",
    "{\"a\": 1}",
    "<tool_call>",
    "</tool_call>",
    "<tool",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<|python_start|>",
    "<|python_end|>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
    "<｜tool",
    "function",
    "```json",
    "```",
    "<think>",
    "</think>",
    "</th",
    "f(",
    "a=",
    "x=[1, 'b', {'c': None}]",
    "get_weather",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "get_weather[ARGS]{\"q\": [1, 2]}",
    "[f(a=1), g(b='x')]",
    "function<｜tool▁sep｜>f\n```json\n{\"k\": 1}\n```",
];

/// (content, reasoning, [(name, arguments)]): a parse without the random ids.
type Shape = (String, String, Vec<(String, String)>);

fn shape(p: &ParsedOutput) -> Shape {
    (
        p.content.clone(),
        p.reasoning.clone(),
        p.tool_calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect(),
    )
}

/// Builds a parser setup and a model output from `data`: byte 0 picks the tool format, byte 1
/// the reasoning parser (none, `deepseek_r1`, `qwen3`, either after a prompt that opened or
/// closed the think block), byte 2 whether the rest is the text itself (UTF-8, lossily) or
/// drives a sequence of format fragments and raw characters.
///
/// Asserts: no panic; the text cut into pushes of one character, of sizes taken from the data,
/// and (short texts) at every single point gives exactly the unary parse (content, reasoning,
/// call names and concatenated arguments); every call's first delta carries the next index
/// with an id of the format's shape and its name, later deltas only arguments of known calls;
/// ids are unique; every call has arguments; nothing is invented (content and reasoning
/// together are never longer than the text); and a text with none of the format's markers
/// (and no reasoning parser) comes back unchanged as content.
pub fn check_tool_parsers(data: &[u8]) {
    let mut src = ByteSource::new(data);
    let kind = src.pick(&ToolParserKind::ALL);
    let reasoning = match src.below(6) {
        0 | 1 => None,
        2 => Some((ReasoningParserKind::DeepseekR1, "")),
        3 => Some((ReasoningParserKind::Qwen3, "")),
        4 => Some((
            ReasoningParserKind::Qwen3,
            "<|im_start|>assistant\n<think>\n",
        )),
        _ => Some((
            src.pick(&ReasoningParserKind::ALL),
            "<think>\n\n</think>\n\n",
        )),
    };
    let text = if src.bool() {
        String::from_utf8_lossy(src.take(usize::MAX)).into_owned()
    } else {
        let mut text = String::new();
        while !src.is_empty() {
            let b = src.byte();
            if usize::from(b) < FRAGMENTS.len() * 3 {
                text.push_str(FRAGMENTS[usize::from(b) % FRAGMENTS.len()]);
            } else {
                let n = 1 + src.below(4);
                text.push_str(&String::from_utf8_lossy(src.take(n)));
            }
        }
        text
    };
    let make = || {
        OutputParser::new(
            reasoning.map(|(k, prompt)| ReasoningParser::for_prompt(k, prompt)),
            Some(ToolCallParser::new(kind)),
        )
    };

    let whole = make().parse_complete(&text);
    let expected = shape(&whole);
    let mut ids: Vec<&str> = whole.tool_calls.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), whole.tool_calls.len(), "duplicate ids");
    for call in &whole.tool_calls {
        assert!(
            !call.arguments.is_empty(),
            "call without arguments: {call:?}"
        );
    }
    assert!(
        whole.content.len() + whole.reasoning.len() <= text.len(),
        "text invented"
    );
    if reasoning.is_none() && !may_hold_calls(kind, &text) {
        assert_eq!(whole.content, text, "text without markers changed");
        assert!(whole.tool_calls.is_empty());
    }

    let chars: Vec<&str> = split_chars(&text);
    assert_eq!(
        shape(&stream(make(), &chars)),
        expected,
        "one character per push"
    );

    let mut pieces = Vec::new();
    let mut at = 0;
    let mut sizes = data.iter().cycle();
    while at < text.len() {
        let mut end = (at + 1 + usize::from(sizes.next().map_or(0, |b| b % 13))).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(&text[at..end]);
        at = end;
    }
    assert_eq!(
        shape(&stream(make(), &pieces)),
        expected,
        "pieces {pieces:?}"
    );

    if text.len() <= ALL_CUTS_MAX_LEN {
        for cut in 1..text.len() {
            if text.is_char_boundary(cut) {
                let (head, tail) = text.split_at(cut);
                assert_eq!(
                    shape(&stream(make(), &[head, tail])),
                    expected,
                    "cut at {cut}"
                );
            }
        }
    }
}

/// Whether `text` contains something that can open a call in `kind`.
fn may_hold_calls(kind: ToolParserKind, text: &str) -> bool {
    let first = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    match kind {
        ToolParserKind::Hermes => text.contains("<tool_call>"),
        ToolParserKind::Llama3Json => text.contains("<|python_tag|>") || first.starts_with('{'),
        ToolParserKind::Mistral => text.contains("[TOOL_CALLS]"),
        ToolParserKind::Pythonic => first.starts_with('[') || first.starts_with("<|python_start|>"),
        ToolParserKind::DeepseekV3 | ToolParserKind::DeepseekV31 => text.contains("<｜tool▁call"),
    }
}

fn split_chars(text: &str) -> Vec<&str> {
    text.char_indices()
        .map(|(i, c)| &text[i..i + c.len_utf8()])
        .collect()
}

fn stream(mut parser: OutputParser, pieces: &[&str]) -> ParsedOutput {
    let mut parsed = ParsedOutput::default();
    for piece in pieces {
        let delta = parser.push(piece);
        check_deltas(&delta, &parsed);
        parsed.push_delta(&delta);
    }
    let delta = parser.finish();
    check_deltas(&delta, &parsed);
    parsed.push_delta(&delta);
    assert_eq!(parser.calls_emitted(), parsed.tool_calls.len());
    parsed
}

fn check_deltas(delta: &Delta<'_>, so_far: &ParsedOutput) {
    let mut known = so_far.tool_calls.len();
    for d in &delta.tool_calls {
        match (&d.id, &d.name) {
            (Some(id), Some(name)) => {
                assert_eq!(d.index, known, "new call index");
                known += 1;
                assert!(!name.is_empty(), "empty name");
                let openai = id.len() == 29 && id.starts_with("call_");
                let mistral = id.len() == 9;
                assert!(openai || mistral, "id {id}");
                assert!(
                    id.trim_start_matches("call_")
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric()),
                    "id {id}"
                );
            }
            (None, None) => assert!(d.index < known, "arguments for unknown call {}", d.index),
            _ => panic!("id and name must come together: {d:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_and_text_inputs_run() {
        // Hermes, no reasoning, raw text with a call: exercises the whole check.
        let mut data = vec![0u8, 0, 1];
        data.extend_from_slice(
            b"Hi <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>",
        );
        check_tool_parsers(&data);
        // Every format and reasoning setup over fragment-built text.
        for kind in 0..6u8 {
            for reasoning in 0..6u8 {
                check_tool_parsers(&[kind, reasoning, 0, 34, 30, 61, 200, 0xc3, 0xa9, 52, 53, 33]);
            }
        }
    }

    #[test]
    fn marker_free_text_is_detected() {
        assert!(!may_hold_calls(ToolParserKind::Hermes, "a <tool b"));
        assert!(may_hold_calls(ToolParserKind::Pythonic, " \n[f(a=1)]"));
        assert!(!may_hold_calls(ToolParserKind::Pythonic, "x [f(a=1)]"));
    }
}
