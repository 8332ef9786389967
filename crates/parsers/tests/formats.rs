//! Each format: whole outputs, the same streamed one character at a time and in small pieces,
//! malformed calls, mixed text, several calls, unicode, and marker look-alikes.

mod common;

use std::borrow::Cow;

use common::{calls, parse_all_ways};
use switchyard_parsers::{
    OutputParser, ReasoningParser, ReasoningParserKind, ToolCallParser, ToolParserKind,
};

const HERMES: Option<ToolParserKind> = Some(ToolParserKind::Hermes);
const LLAMA: Option<ToolParserKind> = Some(ToolParserKind::Llama3Json);
const MISTRAL: Option<ToolParserKind> = Some(ToolParserKind::Mistral);
const PYTHONIC: Option<ToolParserKind> = Some(ToolParserKind::Pythonic);
const DS3: Option<ToolParserKind> = Some(ToolParserKind::DeepseekV3);
const DS31: Option<ToolParserKind> = Some(ToolParserKind::DeepseekV31);
const R1: Option<ReasoningParserKind> = Some(ReasoningParserKind::DeepseekR1);
const QWEN3: Option<ReasoningParserKind> = Some(ReasoningParserKind::Qwen3);

/// Parses with the tool parser alone and asserts the output is unchanged text.
fn assert_plain(kind: Option<ToolParserKind>, text: &str) {
    let p = parse_all_ways(kind, None, text);
    assert_eq!(p.content, text, "{kind:?}");
    assert!(p.tool_calls.is_empty(), "{kind:?}: {:?}", p.tool_calls);
}

#[test]
fn hermes_text_then_calls() {
    let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n";
    let p = parse_all_ways(HERMES, None, text);
    assert_eq!(p.content, "Let me check.\n");
    assert_eq!(
        calls(&p),
        [
            ("get_weather", r#"{"city": "Paris", "unit": "c"}"#),
            ("get_time", "{}")
        ]
    );
    // ToolParserKind::parse_complete gives the same.
    let (content, unary) = ToolParserKind::Hermes.parse_complete(text);
    assert_eq!(content, p.content);
    assert_eq!(unary.len(), 2);
}

#[test]
fn hermes_unicode_arguments_and_text_after() {
    let text = "<tool_call>{\"name\": \"translate\", \"arguments\": {\"text\": \"Zürich 東京 😀 \\\"q\\\" \\u00e9\"}}</tool_call> Done — ok 😀";
    let p = parse_all_ways(HERMES, None, text);
    assert_eq!(
        calls(&p),
        [("translate", r#"{"text": "Zürich 東京 😀 \"q\" \u00e9"}"#)]
    );
    // Blank text after a call is released with the text that follows it.
    assert_eq!(p.content, " Done — ok 😀");
}

#[test]
fn hermes_malformed_is_text() {
    for text in [
        "<tool_call>{\"name\": oops}</tool_call>",
        "<tool_call>not json</tool_call> after",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"f\", \"arguments\": {1: 2}}",
        "<tool_call>{\"name\": \"f\", \"arguments\": nul}",
        "x <tool_call>",
        "<tool_call>{\"name\": \"f\"",
    ] {
        assert_plain(HERMES, text);
    }
}

#[test]
fn hermes_marker_lookalikes_are_text() {
    for text in [
        "a <tool and <tool_cal> x",
        "<tool_call",
        "<<tool_call",
        "</tool_call> <b>bold</b>",
        "<tool_calls>",
    ] {
        assert_plain(HERMES, text);
    }
    // The look-alike is text, the real call after it still parses.
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_calx><tool_call>{\"name\": \"f\", \"arguments\": {\"k\": [1]}}</tool_call>",
    );
    assert_eq!(p.content, "<tool_calx>");
    assert_eq!(calls(&p), [("f", r#"{"k": [1]}"#)]);
}

#[test]
fn hermes_cut_off_after_the_name_keeps_the_call() {
    // Announced calls cannot be taken back: a stream cut mid-arguments ends the call as it is
    // (OpenAI does the same with finish_reason "length").
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"hel",
    );
    assert_eq!(calls(&p), [("f", r#"{"a": "hel"#)]);
    assert_eq!(p.content, "");
    // A break inside the arguments ends the call; what follows is text again.
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": tru}}</tool_call>",
    );
    assert_eq!(calls(&p), [("f", r#"{"a": tru"#)]);
    assert_eq!(p.content, "}}</tool_call>");
}

#[test]
fn hermes_missing_end_tag_and_string_arguments() {
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 2}\"}\n",
    );
    assert_eq!(calls(&p), [("f", r#"{"x": 2}"#)]);
    assert_eq!(p.content, "");
    // Complete arguments but no closing brace: the call stands.
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}",
    );
    assert_eq!(calls(&p), [("f", r#"{"a": 1}"#)]);
    // Arguments written before the name.
    let p = parse_all_ways(
        HERMES,
        None,
        "<tool_call>{\"arguments\": {\"q\": 1}, \"name\": \"s\"}</tool_call>",
    );
    assert_eq!(calls(&p), [("s", r#"{"q": 1}"#)]);
}

#[test]
fn qwen3_reasoning_then_hermes_calls() {
    let text = "<think>\nThe user wants weather. I'll call <tool_call> soon.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let p = parse_all_ways(HERMES, QWEN3, text);
    assert_eq!(
        p.reasoning,
        "\nThe user wants weather. I'll call <tool_call> soon.\n"
    );
    assert_eq!(p.content, "");
    assert_eq!(calls(&p), [("get_weather", r#"{"city": "Paris"}"#)]);
}

#[test]
fn llama3_json_bare_and_python_tag() {
    let p = parse_all_ways(
        LLAMA,
        None,
        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
    );
    assert_eq!(calls(&p), [("get_weather", r#"{"city": "Paris"}"#)]);
    assert_eq!(p.content, "");
    let p = parse_all_ways(
        LLAMA,
        None,
        "  {\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": {\"x\": [1, {\"y\": null}]}}",
    );
    assert_eq!(
        calls(&p),
        [("a", "{}"), ("b", r#"{"x": [1, {"y": null}]}"#)]
    );
    let p = parse_all_ways(
        LLAMA,
        None,
        "Calling.<|python_tag|>{\"name\": \"f\", \"arguments\": {\"ü\": \"ö\"}}",
    );
    assert_eq!(p.content, "Calling.");
    assert_eq!(calls(&p), [("f", r#"{"ü": "ö"}"#)]);
}

#[test]
fn llama3_json_non_calls_are_text() {
    for text in [
        "{\"answer\": 42}",
        "{\"name\": \"Bob\", \"age\": 3}",
        "Result: {\"name\": \"f\", \"parameters\": {}}",
        "{not json at all",
        "<|python_tag|>brave_search.call(query=\"x\")",
        "<|python_tag",
    ] {
        assert_plain(LLAMA, text);
    }
    // A second object that is not a call: the first call stands, the rest is text.
    let p = parse_all_ways(LLAMA, None, "{\"name\": \"a\", \"parameters\": {}}; oops");
    assert_eq!(calls(&p), [("a", "{}")]);
    assert_eq!(p.content, "; oops");
}

#[test]
fn mistral_all_three_forms() {
    let p = parse_all_ways(
        MISTRAL,
        None,
        "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {}}]",
    );
    assert_eq!(calls(&p), [("a", r#"{"x": 1}"#), ("b", "{}")]);
    let p = parse_all_ways(MISTRAL, None, "[TOOL_CALLS]add{\"a\": 3.5, \"b\": 4}");
    assert_eq!(calls(&p), [("add", r#"{"a": 3.5, "b": 4}"#)]);
    let p = parse_all_ways(
        MISTRAL,
        None,
        "Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
    );
    assert_eq!(p.content, "Sure.");
    assert_eq!(
        calls(&p),
        [("get_weather", r#"{"city": "Paris"}"#), ("get_time", "{}")]
    );
    for call in &p.tool_calls {
        assert!(
            call.id.len() == 9 && call.id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            call.id
        );
    }
    let p = parse_all_ways(
        MISTRAL,
        None,
        "[TOOL_CALLS]f[CALL_ID]a1B2c3D4e[ARGS]{\"k\": \"v\"}",
    );
    assert_eq!(calls(&p), [("f", r#"{"k": "v"}"#)]);
}

#[test]
fn mistral_non_calls_are_text() {
    for text in [
        "[TOOLS] are [listed]",
        "[TOOL_CALLS]",
        "[TOOL_CALLS]bad name[ARGS]{}",
        "[TOOL_CALLS]f[ARGS]nope",
        "[TOOL_CALLS][{\"nme\": \"a\"}]",
        "[TOOL_CALL",
    ] {
        assert_plain(MISTRAL, text);
    }
}

#[test]
fn pythonic_lists_of_calls() {
    let p = parse_all_ways(
        PYTHONIC,
        None,
        "[get_weather(city=\"San Francisco, CA\", days=3), get_time(tz='UTC', dst=False)]",
    );
    assert_eq!(
        calls(&p),
        [
            ("get_weather", r#"{"city": "San Francisco, CA", "days": 3}"#),
            ("get_time", r#"{"tz": "UTC", "dst": false}"#)
        ]
    );
    let p = parse_all_ways(
        PYTHONIC,
        None,
        "<|python_start|>[f(a=[1, 2.5, -3], b={'k': None, 'é': (1,)}), ping()]<|python_end|>",
    );
    assert_eq!(
        calls(&p),
        [
            ("f", r#"{"a": [1, 2.5, -3], "b": {"k": null, "é": [1]}}"#),
            ("ping", "{}")
        ]
    );
    assert_eq!(p.content, "");
}

#[test]
fn pythonic_non_calls_are_text() {
    for text in [
        "[1] is a footnote",
        "Here: [f(a=1)]",
        "[f(1, 2)]",
        "[f(a=undefined_name)]",
        "[f(a='unterminated)]",
        "[]",
        "[f(a=",
    ] {
        assert_plain(PYTHONIC, text);
    }
    // Cut off after the first keyword argument: the call was announced and stands.
    let p = parse_all_ways(PYTHONIC, None, "[f(a=1, b=");
    assert_eq!(calls(&p), [("f", r#"{"a": 1"#)]);
    // A good call, then a broken one: the first stands, the rest is text.
    let p = parse_all_ways(PYTHONIC, None, "[f(a=1), g(2)]");
    assert_eq!(calls(&p), [("f", r#"{"a": 1}"#)]);
    assert_eq!(p.content, ", g(2)]");
}

const DS_V3_TWO_CALLS: &str = "Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Tokyo\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

#[test]
fn deepseek_v3_calls() {
    let p = parse_all_ways(DS3, None, DS_V3_TWO_CALLS);
    assert_eq!(p.content, "Let me look.");
    assert_eq!(
        calls(&p),
        [("get_weather", r#"{"city": "Tokyo"}"#), ("get_time", "{}")]
    );
    // R1 thinks first, then calls in the same format.
    let text = format!("plan it</think>{DS_V3_TWO_CALLS}");
    let p = parse_all_ways(DS3, R1, &text);
    assert_eq!(p.reasoning, "plan it");
    assert_eq!(p.tool_calls.len(), 2);
}

#[test]
fn deepseek_v31_calls() {
    let text = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"北京\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\": \"Asia/Shanghai\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    let p = parse_all_ways(DS31, None, text);
    assert_eq!(
        calls(&p),
        [
            ("get_weather", r#"{"city": "北京"}"#),
            ("get_time", r#"{"tz": "Asia/Shanghai"}"#)
        ]
    );
    assert_eq!(p.content, "");
}

#[test]
fn deepseek_malformed_is_text() {
    for (kind, text) in [
        (
            DS3,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\nnot json\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        ),
        (DS3, "<｜tool▁calls▁begin｜>hello"),
        (DS3, "<｜tool▁"),
        (
            DS31,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f\nx<｜tool▁sep｜>{}",
        ),
        (DS31, "<｜tool▁call▁begin｜>get_weather"),
    ] {
        assert_plain(kind, text);
    }
}

#[test]
fn reasoning_deepseek_r1() {
    let p = parse_all_ways(None, R1, "Let me think.\n</think>\n\nThe answer is 4.");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("Let me think.\n", "\n\nThe answer is 4.")
    );
    let p = parse_all_ways(None, R1, "\n<think>abc</think>x");
    assert_eq!((p.reasoning.as_str(), p.content.as_str()), ("abc", "x"));
    // No end marker: all reasoning (a cut-off thought), as in vLLM.
    let p = parse_all_ways(None, R1, "still thinking <thi");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("still thinking <thi", "")
    );
    // A marker prefix that is not the marker stays reasoning text.
    let p = parse_all_ways(None, R1, "a </thinking> b </think>c");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("a </thinking> b ", "c")
    );
}

#[test]
fn reasoning_qwen3() {
    let p = parse_all_ways(None, QWEN3, "<think>\nabc\n</think>\n\nHi");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("\nabc\n", "\n\nHi")
    );
    // Without <think> in the output everything is content (vLLM's qwen3: both markers needed).
    let p = parse_all_ways(None, QWEN3, "abc</think>x");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("", "abc</think>x")
    );
    let p = parse_all_ways(None, QWEN3, "  Hello <think>");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("", "  Hello <think>")
    );
    // Opened but never closed: reasoning (what vLLM streams).
    let p = parse_all_ways(None, QWEN3, "<think>cut off");
    assert_eq!((p.reasoning.as_str(), p.content.as_str()), ("cut off", ""));
}

#[test]
fn reasoning_follows_the_prompt() {
    // The thinking template opened the block in the prompt: only </think> comes out.
    let opened = "<|im_start|>assistant\n<think>\n";
    let p = ReasoningParser::for_prompt(ReasoningParserKind::Qwen3, opened)
        .parse_complete("abc</think>\n\nHi");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("abc", "\n\nHi")
    );
    // enable_thinking=False: the template wrote an empty block, the output is all content.
    let closed = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    for kind in ReasoningParserKind::ALL {
        let p = ReasoningParser::for_prompt(kind, closed).parse_complete("Hello </think> there");
        assert_eq!(
            (p.reasoning.as_str(), p.content.as_str()),
            ("", "Hello </think> there"),
            "{kind}"
        );
    }
    // A prompt that mentions the markers earlier changes nothing.
    let p = ReasoningParser::for_prompt(ReasoningParserKind::Qwen3, "<think>x</think> user: hi")
        .parse_complete("plain");
    assert_eq!(p.content, "plain");
}

#[test]
fn plain_text_is_borrowed() {
    let mut tools = ToolCallParser::new(ToolParserKind::Hermes);
    let _ = tools.push("Hi");
    for text in ["plain text", "with <b>tags</b> and a < b", " more"] {
        let d = tools.push(text);
        assert!(matches!(d.content, Cow::Borrowed(s) if s == text), "{d:?}");
    }
    let mut both = OutputParser::new(
        Some(ReasoningParser::new(ReasoningParserKind::DeepseekR1)),
        Some(ToolCallParser::new(ToolParserKind::Hermes)),
    );
    let d = both.push("thinking");
    assert!(matches!(d.reasoning, Cow::Borrowed("thinking")));
    let d = both.push(" done</think>Answer");
    assert_eq!(
        (d.reasoning.as_ref(), d.content.as_ref()),
        (" done", "Answer")
    );
    let d = both.push(" goes on");
    assert!(matches!(d.content, Cow::Borrowed(" goes on")), "{d:?}");
    let mut none = OutputParser::default();
    assert!(none.is_passthrough());
    assert!(matches!(none.push("x").content, Cow::Borrowed("x")));
}

#[test]
fn uncommitted_text_is_bounded() {
    // An object that never names a function is released once it passes the hold limit.
    let filler = "a".repeat(switchyard_parsers::MAX_UNCOMMITTED);
    let text = format!("<tool_call>{{\"arguments\": \"{filler}\"}}</tool_call>");
    let mut parser = ToolCallParser::new(ToolParserKind::Hermes);
    let mut released = String::new();
    for chunk in text.as_bytes().chunks(4096) {
        let d = parser.push(std::str::from_utf8(chunk).unwrap());
        released.push_str(&d.content);
    }
    released.push_str(&parser.finish().content);
    assert_eq!(released, text);
    assert_eq!(parser.calls_emitted(), 0);
}

#[test]
fn parser_names() {
    for kind in ToolParserKind::ALL {
        assert_eq!(kind.name().parse::<ToolParserKind>().unwrap(), kind);
    }
    assert_eq!(
        "qwen".parse::<ToolParserKind>().unwrap(),
        ToolParserKind::Hermes
    );
    let err = "xml".parse::<ToolParserKind>().unwrap_err().to_string();
    assert!(err.contains("'xml'") && err.contains("hermes"), "{err}");
    for kind in ReasoningParserKind::ALL {
        assert_eq!(kind.name().parse::<ReasoningParserKind>().unwrap(), kind);
    }
    assert!("r1".parse::<ReasoningParserKind>().is_err());
}
