//! Shared by the integration tests: run a text through parsers whole and in pieces.
#![allow(dead_code)]

use switchyard_parsers::{
    OutputParser, ParsedOutput, ReasoningParser, ReasoningParserKind, ToolCallParser,
    ToolParserKind,
};

/// (content, reasoning, [(name, arguments)]): a parse without the random ids.
pub type Shape = (String, String, Vec<(String, String)>);

pub fn shape(p: &ParsedOutput) -> Shape {
    (
        p.content.clone(),
        p.reasoning.clone(),
        p.tool_calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect(),
    )
}

pub fn parsers(
    kind: Option<ToolParserKind>,
    reasoning: Option<ReasoningParserKind>,
) -> OutputParser {
    OutputParser::new(
        reasoning.map(ReasoningParser::new),
        kind.map(ToolCallParser::new),
    )
}

/// Streams `text` in pieces of the given byte sizes (moved forward to char boundaries,
/// sizes reused cyclically), checking every delta on the way.
pub fn stream(mut parser: OutputParser, text: &str, sizes: &[usize]) -> ParsedOutput {
    let mut parsed = ParsedOutput::default();
    let mut at = 0;
    let mut sizes = sizes.iter().cycle();
    while at < text.len() {
        let mut end = (at + sizes.next().copied().unwrap_or(1).max(1)).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let delta = parser.push(&text[at..end]);
        check_delta_ids(&delta, &parsed);
        parsed.push_delta(&delta);
        at = end;
    }
    let delta = parser.finish();
    check_delta_ids(&delta, &parsed);
    parsed.push_delta(&delta);
    assert_eq!(parser.calls_emitted(), parsed.tool_calls.len());
    parsed
}

/// A call's first delta carries a fresh index with id and name; later ones only arguments
/// for a known index.
fn check_delta_ids(delta: &switchyard_parsers::Delta<'_>, so_far: &ParsedOutput) {
    let mut known = so_far.tool_calls.len();
    for d in &delta.tool_calls {
        match (&d.id, &d.name) {
            (Some(id), Some(name)) => {
                assert_eq!(d.index, known, "new call index");
                known += 1;
                assert!(!name.is_empty());
                let openai = id.starts_with("call_") && id.len() == 29;
                let mistral = id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric());
                assert!(openai || mistral, "id {id}");
            }
            (None, None) => assert!(d.index < known, "arguments for unknown call {}", d.index),
            _ => panic!("id and name come together: {d:?}"),
        }
    }
}

/// Parses `text` whole, one character at a time and in 3-byte pieces; asserts all agree and
/// returns the whole parse.
pub fn parse_all_ways(
    kind: Option<ToolParserKind>,
    reasoning: Option<ReasoningParserKind>,
    text: &str,
) -> ParsedOutput {
    let whole = parsers(kind, reasoning).parse_complete(text);
    for sizes in [&[1usize][..], &[3], &[2, 5, 1, 7]] {
        let streamed = stream(parsers(kind, reasoning), text, sizes);
        assert_eq!(
            shape(&streamed),
            shape(&whole),
            "pieces {sizes:?} of {text:?}"
        );
    }
    // Ids are unique within the output.
    let mut ids: Vec<_> = whole.tool_calls.iter().map(|c| &c.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), whole.tool_calls.len());
    whole
}

pub fn calls(p: &ParsedOutput) -> Vec<(&str, &str)> {
    p.tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect()
}
