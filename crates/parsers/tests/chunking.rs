//! Property tests: any way of cutting an output into pushes gives the unary parse, and
//! generated well-formed outputs parse back to exactly the calls and text they were built from.

mod common;

use common::{Shape, parsers, shape, stream};
use proptest::prelude::*;
use serde_json::Value;
use switchyard_parsers::{ReasoningParserKind, ToolParserKind};

/// Pieces that exercise every format's markers, their prefixes and JSON / Python syntax.
const FRAGMENTS: &[&str] = &[
    "hello",
    " ",
    "\n",
    "é",
    "😀",
    "東京",
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
    "-2.5",
    "true",
    "null",
    "<",
    ">",
    "/",
    "|",
    "\\",
    "name",
    "\"name\": \"f\"",
    "\"arguments\": ",
    "\"parameters\": ",
    "{\"a\": 1}",
    "{\"city\": \"Zürich\"}",
    "<tool_call>",
    "</tool_call>",
    "<tool",
    "_call>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "[TOOL",
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
    "<thi",
    "</th",
    "f(",
    "a=",
    "get_weather",
    "x=[1, 'b']",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "get_weather[ARGS]{\"q\": [1, 2]}",
    "[f(a=1), g(b='x')]",
    "function<｜tool▁sep｜>f\n```json\n{\"k\": 1}\n```",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn tool_kind() -> impl Strategy<Value = ToolParserKind> {
    prop::sample::select(&ToolParserKind::ALL[..])
}

fn reasoning_kind() -> impl Strategy<Value = Option<ReasoningParserKind>> {
    prop::option::of(prop::sample::select(&ReasoningParserKind::ALL[..]))
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..9, 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(512) })]

    #[test]
    fn any_chunking_gives_the_unary_parse(
        text in soup(),
        kind in tool_kind(),
        reasoning in reasoning_kind(),
        sizes in sizes(),
    ) {
        let whole = parsers(Some(kind), reasoning).parse_complete(&text);
        let streamed = stream(parsers(Some(kind), reasoning), &text, &sizes);
        prop_assert_eq!(shape(&streamed), shape(&whole));
        // Calls always carry arguments, and nothing of the text is invented.
        for call in &whole.tool_calls {
            prop_assert!(!call.arguments.is_empty());
        }
        prop_assert!(whole.content.len() + whole.reasoning.len() <= text.len());
    }
}

// ---- generated well-formed outputs ----

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-zA-Z0-9 é😀\"'\\\\\n,(){}\\[\\]<>|]{0,10}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zé_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arguments() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("[a-z_][a-z0-9_]{0,6}", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn function_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,12}"
}

/// Text that opens no call in any format and does not start with blank text.
fn safe_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.,é😀!?][a-zA-Z0-9 .,é😀!?\n]{0,20}"
}

#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: serde_json::Map<String, Value>,
    pretty: bool,
}

fn call() -> impl Strategy<Value = Call> {
    (function_name(), arguments(), any::<bool>()).prop_map(|(name, args, pretty)| Call {
        name,
        args,
        pretty,
    })
}

impl Call {
    fn json_args(&self) -> String {
        let v = Value::Object(self.args.clone());
        if self.pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            v.to_string()
        }
    }

    fn name_json(&self) -> String {
        Value::from(self.name.as_str()).to_string()
    }
}

/// Python's repr of a JSON value (as a model writes pythonic arguments).
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("'");
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::from(k.as_str())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// json.dumps(ensure_ascii=False) of a value: `, ` and `: ` separators.
fn py_json(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), py_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        v => v.to_string(),
    }
}

/// Builds an output in `kind`'s format from texts and calls (texts[i] comes before calls[i];
/// the last text after the last call) and the parse it must give.
fn build(kind: ToolParserKind, texts: &[String], calls: &[Call]) -> (String, Shape) {
    let mut out = String::new();
    let mut content = String::new();
    let mut expected = Vec::new();
    let text = |i: usize, out: &mut String, content: &mut String| {
        if let Some(t) = texts.get(i) {
            out.push_str(t);
            content.push_str(t);
        }
    };
    match kind {
        ToolParserKind::Hermes => {
            for (i, c) in calls.iter().enumerate() {
                text(i, &mut out, &mut content);
                out.push_str(&format!(
                    "<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>",
                    c.name_json(),
                    c.json_args()
                ));
                if i + 1 < calls.len() && texts.get(i + 1).is_none() {
                    out.push('\n');
                }
                expected.push((c.name.clone(), c.json_args()));
            }
            text(calls.len(), &mut out, &mut content);
        }
        ToolParserKind::Mistral => {
            for (i, c) in calls.iter().enumerate() {
                text(i, &mut out, &mut content);
                out.push_str(&format!("[TOOL_CALLS]{}[ARGS]{}", c.name, c.json_args()));
                expected.push((c.name.clone(), c.json_args()));
            }
            text(calls.len(), &mut out, &mut content);
        }
        ToolParserKind::Llama3Json => {
            let parts: Vec<String> = calls
                .iter()
                .map(|c| {
                    format!(
                        "{{\"name\": {}, \"parameters\": {}}}",
                        c.name_json(),
                        c.json_args()
                    )
                })
                .collect();
            out.push_str(&parts.join("; "));
            expected = calls
                .iter()
                .map(|c| (c.name.clone(), c.json_args()))
                .collect();
        }
        ToolParserKind::Pythonic => {
            let parts: Vec<String> = calls
                .iter()
                .map(|c| {
                    let kwargs: Vec<String> = c
                        .args
                        .iter()
                        .map(|(k, v)| format!("{k}={}", py_repr(v)))
                        .collect();
                    format!("{}({})", c.name, kwargs.join(", "))
                })
                .collect();
            out.push_str(&format!("[{}]", parts.join(", ")));
            expected = calls
                .iter()
                .map(|c| (c.name.clone(), py_json(&Value::Object(c.args.clone()))))
                .collect();
        }
        ToolParserKind::DeepseekV3 | ToolParserKind::DeepseekV31 => {
            text(0, &mut out, &mut content);
            out.push_str("<｜tool▁calls▁begin｜>");
            for (i, c) in calls.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if kind == ToolParserKind::DeepseekV3 {
                    out.push_str(&format!("<｜tool▁call▁begin｜>function<｜tool▁sep｜>{}\n```json\n{}\n```<｜tool▁call▁end｜>", c.name, c.json_args()));
                } else {
                    out.push_str(&format!(
                        "<｜tool▁call▁begin｜>{}<｜tool▁sep｜>{}<｜tool▁call▁end｜>",
                        c.name,
                        c.json_args()
                    ));
                }
                expected.push((c.name.clone(), c.json_args()));
            }
            out.push_str("<｜tool▁calls▁end｜>");
            text(1, &mut out, &mut content);
        }
    }
    (out, (content, String::new(), expected))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(256) })]

    #[test]
    fn generated_outputs_parse_back(
        kind in tool_kind(),
        texts in prop::collection::vec(safe_text(), 0..4),
        calls in prop::collection::vec(call(), 1..4),
        sizes in sizes(),
    ) {
        let (text, expected) = build(kind, &texts, &calls);
        let whole = parsers(Some(kind), None).parse_complete(&text);
        prop_assert_eq!(shape(&whole), expected, "{}", text);
        let streamed = stream(parsers(Some(kind), None), &text, &sizes);
        prop_assert_eq!(shape(&streamed), shape(&whole));
        let bytewise = stream(parsers(Some(kind), None), &text, &[1]);
        prop_assert_eq!(shape(&bytewise), shape(&whole));
    }

    #[test]
    fn reasoning_then_generated_calls(
        kind in tool_kind(),
        thought in "[a-zA-Z <>/.\n]{0,40}",
        calls in prop::collection::vec(call(), 1..3),
        sizes in sizes(),
    ) {
        // deepseek_r1: the prompt opened the think block; the model writes thought</think>calls.
        prop_assume!(!thought.contains("</think>"));
        let (body, (content, _, expected)) = build(kind, &[], &calls);
        let text = format!("{thought}</think>\n\n{body}");
        let whole = parsers(Some(kind), Some(ReasoningParserKind::DeepseekR1)).parse_complete(&text);
        prop_assert_eq!(shape(&whole), (content, thought.clone(), expected));
        let streamed = stream(parsers(Some(kind), Some(ReasoningParserKind::DeepseekR1)), &text, &sizes);
        prop_assert_eq!(shape(&streamed), shape(&whole));
    }
}
