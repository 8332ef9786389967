//! Prints how fast outputs stream through the parsers, in token-sized pushes (4 bytes):
//! plain text (the borrowed fast path), text full of `<` look-alikes, reasoning then content,
//! and an output that is all tool calls.
//!
//!   cargo run --release -p switchyard-parsers --example parse_throughput

use std::hint::black_box;
use std::time::Instant;

use switchyard_parsers::{
    OutputParser, ReasoningParser, ReasoningParserKind, ToolCallParser, ToolParserKind,
};

fn pieces(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[at..end]);
        at = end;
    }
    out
}

fn measure(label: &str, text: &str, make: impl Fn() -> OutputParser) {
    let chunks = pieces(text, 4);
    let rounds = (64 << 20) / text.len().max(1) + 1;
    let mut calls = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut parser = make();
        for chunk in &chunks {
            black_box(parser.push(chunk));
        }
        black_box(parser.finish());
        calls += parser.calls_emitted();
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (text.len() * rounds) as f64;
    println!(
        "{label:<34} {:>8.1} MB/s  {:>6.1} ns/push  ({} calls)",
        bytes / secs / 1e6,
        secs * 1e9 / (chunks.len() * rounds) as f64,
        calls / rounds
    );
}

fn main() {
    let prose =
        "The quick brown fox jumps over the lazy dog. Zürich 東京 😀 and more words. ".repeat(200);
    let angled = "if a < b && c > d { x <= y } <b>bold</b> <tool <tool_calx> ".repeat(200);
    let hermes_calls = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2, 3]}}\n</tool_call>\n".repeat(100);
    let thought = format!("{prose}</think>\n\n{prose}");
    let hermes = || OutputParser::new(None, Some(ToolCallParser::new(ToolParserKind::Hermes)));
    measure("passthrough (no parsers)", &prose, OutputParser::default);
    measure("hermes, plain prose", &prose, hermes);
    measure("hermes, '<' look-alikes", &angled, hermes);
    measure("hermes, 100 tool calls", &hermes_calls, hermes);
    measure("deepseek_r1 + hermes, think+prose", &thought, || {
        OutputParser::new(
            Some(ReasoningParser::new(ReasoningParserKind::DeepseekR1)),
            Some(ToolCallParser::new(ToolParserKind::Hermes)),
        )
    });
    let pythonic = format!(
        "[{}]",
        vec!["get_weather(city='Paris', days=[1, 2, 3])"; 100].join(", ")
    );
    measure("pythonic, 100 tool calls", &pythonic, || {
        OutputParser::new(None, Some(ToolCallParser::new(ToolParserKind::Pythonic)))
    });
}
