//! [`ModelCard`]: what the frontend needs to know about a model, read from a Hugging Face style
//! folder (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`, `config.json`,
//! `generation_config.json`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use switchyard_protocol::TokenId;

use crate::error::PreprocessError;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// Context length used when neither `config.json` nor `tokenizer_config.json` gives a sane one.
pub const DEFAULT_CONTEXT_LENGTH: u32 = 32_768;

/// `model_max_length` values at or above this are placeholders (transformers writes `1e30` when
/// it does not know), not real limits.
const SANE_MODEL_MAX_LENGTH: u64 = 10_000_000;

/// The named special tokens transformers passes to chat templates, in its order. `bos_token` and
/// `eos_token` have fields of their own; the others land in [`ModelCard::other_special_tokens`].
const OTHER_SPECIAL_TOKEN_NAMES: [&str; 5] = [
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A loaded model folder.
#[derive(Clone, Debug)]
pub struct ModelCard {
    /// The folder's name; the default served model name.
    pub name: String,
    /// The folder it was loaded from.
    pub path: PathBuf,
    /// Maximum prompt + completion tokens: `config.json`'s `max_position_embeddings`, else a sane
    /// `tokenizer_config.json` `model_max_length`, else [`DEFAULT_CONTEXT_LENGTH`].
    pub context_length: u32,
    /// End-of-sequence ids: `generation_config.json`, then `config.json`, then the tokenizer's
    /// `eos_token`; deduplicated, first occurrence kept.
    pub eos_token_ids: Vec<TokenId>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token` when set: transformers
    /// exposes these to chat templates too.
    pub other_special_tokens: Vec<(String, String)>,
    /// The default chat template source (`chat_template.jinja` wins over
    /// `tokenizer_config.json`'s `chat_template`).
    pub chat_template: Option<String>,
    /// The template named `tool_use`, which transformers picks instead of the default one when a
    /// request carries tools.
    pub tool_use_chat_template: Option<String>,
    pub tokenizer: Tokenizer,
}

impl ModelCard {
    /// Loads a model: a Hugging Face style folder (only `tokenizer.json` is required), a GGUF
    /// file (tokenizer, chat template and limits from its metadata), or a folder holding one
    /// GGUF file and no `tokenizer.json`. Every error names the file at fault.
    pub fn load(path: &Path) -> Result<ModelCard, PreprocessError> {
        if is_gguf_file(path) {
            return crate::gguf_card::load(path);
        }
        if path.is_dir()
            && !path.join("tokenizer.json").exists()
            && let Some(gguf) = single_gguf_in(path)?
        {
            return crate::gguf_card::load(&gguf);
        }
        Self::load_folder(path)
    }

    fn load_folder(dir: &Path) -> Result<ModelCard, PreprocessError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = match std::fs::read(&tokenizer_path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(PreprocessError::model_file(
                    &tokenizer_path,
                    "missing: a model folder needs a Hugging Face tokenizer.json",
                ));
            }
            Err(err) => {
                return Err(PreprocessError::model_file(
                    &tokenizer_path,
                    format!("cannot read: {err}"),
                ));
            }
        };
        let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes, &tokenizer_path)?;
        drop(tokenizer_bytes);

        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let tokenizer_config = read_json_object(&tokenizer_config_path)?.unwrap_or_default();
        let config_path = dir.join("config.json");
        let config = read_json_object(&config_path)?.unwrap_or_default();
        let generation_config_path = dir.join("generation_config.json");
        let generation_config = read_json_object(&generation_config_path)?.unwrap_or_default();

        let bos_token = special_token(&tokenizer_config, "bos_token", &tokenizer_config_path)?;
        let eos_token = special_token(&tokenizer_config, "eos_token", &tokenizer_config_path)?;
        let mut other_special_tokens = Vec::new();
        for name in OTHER_SPECIAL_TOKEN_NAMES {
            if let Some(token) = special_token(&tokenizer_config, name, &tokenizer_config_path)? {
                other_special_tokens.push((name.to_string(), token));
            }
        }

        let (mut chat_template, tool_use_chat_template) =
            config_chat_templates(&tokenizer_config, &tokenizer_config_path)?;
        // Processor-style layout: `chat_template.json` holding `{"chat_template": "..."}`.
        let chat_template_json_path = dir.join("chat_template.json");
        if let Some(obj) = read_json_object(&chat_template_json_path)? {
            let (template, _) = config_chat_templates(&obj, &chat_template_json_path)?;
            if template.is_some() {
                chat_template = template;
            }
        }
        let jinja_path = dir.join("chat_template.jinja");
        if let Some(source) = read_optional_text(&jinja_path)? {
            chat_template = Some(source);
        }

        let mut eos_token_ids = Vec::new();
        for (obj, path) in [
            (&generation_config, &generation_config_path),
            (&config, &config_path),
        ] {
            for id in token_id_list(obj, "eos_token_id", path)? {
                push_unique(&mut eos_token_ids, id);
            }
        }
        if let Some(eos) = &eos_token {
            match tokenizer.token_to_id(eos) {
                Some(id) => push_unique(&mut eos_token_ids, id),
                None => tracing::warn!(
                    model = %dir.display(),
                    eos_token = %eos,
                    "eos_token of tokenizer_config.json is not in the vocabulary"
                ),
            }
        }

        let context_length = context_length(&config, &config_path, &tokenizer_config)?;

        Ok(ModelCard {
            name: folder_name(dir),
            path: dir.to_path_buf(),
            context_length,
            eos_token_ids,
            bos_token,
            eos_token,
            other_special_tokens,
            chat_template,
            tool_use_chat_template,
            tokenizer,
        })
    }

    /// Every named special token transformers passes to chat templates, as `(name, token)`.
    pub fn special_tokens(&self) -> Vec<(String, String)> {
        let mut tokens = Vec::with_capacity(2 + self.other_special_tokens.len());
        if let Some(bos) = &self.bos_token {
            tokens.push(("bos_token".to_string(), bos.clone()));
        }
        if let Some(eos) = &self.eos_token {
            tokens.push(("eos_token".to_string(), eos.clone()));
        }
        tokens.extend(self.other_special_tokens.iter().cloned());
        tokens
    }

    /// Compiles the default chat template with this model's special tokens, if it has one.
    pub fn compile_chat_template(&self) -> Result<Option<ChatTemplate>, PreprocessError> {
        self.chat_template
            .as_deref()
            .map(|source| ChatTemplate::with_special_tokens(source, self.special_tokens()))
            .transpose()
    }

    /// Compiles the `tool_use` chat template, if the model has a separate one.
    pub fn compile_tool_use_chat_template(&self) -> Result<Option<ChatTemplate>, PreprocessError> {
        self.tool_use_chat_template
            .as_deref()
            .map(|source| ChatTemplate::with_special_tokens(source, self.special_tokens()))
            .transpose()
    }
}

/// Whether `path` names a GGUF file (by its extension).
pub fn is_gguf_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The one `.gguf` file in `dir`, if it has exactly one (several: an error naming them).
pub fn single_gguf_in(dir: &Path) -> Result<Option<PathBuf>, PreprocessError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PreprocessError::model_file(dir, format!("cannot list: {e}")))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_gguf_file(p))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => {
            found.sort();
            let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
            Err(PreprocessError::model_file(
                dir,
                format!(
                    "holds several GGUF files ({}); pass one of them",
                    names.join(", ")
                ),
            ))
        }
    }
}

fn folder_name(dir: &Path) -> String {
    // `.` or `foo/..` have no file name of their own; the canonical path does.
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| dir.display().to_string())
}

fn push_unique(ids: &mut Vec<TokenId>, id: TokenId) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

fn read_optional_text(path: &Path) -> Result<Option<String>, PreprocessError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|err| PreprocessError::model_file(path, format!("not UTF-8: {err}"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(PreprocessError::model_file(
            path,
            format!("cannot read: {err}"),
        )),
    }
}

/// Reads an optional JSON file that must hold an object.
fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>, PreprocessError> {
    let Some(text) = read_optional_text(path)? else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Ok(Some(obj)),
        Ok(other) => Err(PreprocessError::model_file(
            path,
            format!("expected a JSON object, found {}", json_type(&other)),
        )),
        Err(err) => Err(PreprocessError::model_file(
            path,
            format!("malformed JSON: {err}"),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A special token given as a plain string or as an AddedToken object `{"content": ...}`.
fn special_token(
    obj: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Option<String>, PreprocessError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) => Ok(Some(token.clone())),
        Some(Value::Object(added)) => match added.get("content") {
            Some(Value::String(token)) => Ok(Some(token.clone())),
            _ => Err(PreprocessError::model_file(
                path,
                format!("`{key}` is an object without a string `content`"),
            )),
        },
        Some(other) => Err(PreprocessError::model_file(
            path,
            format!(
                "`{key}` must be a string or an AddedToken object, found {}",
                json_type(other)
            ),
        )),
    }
}

/// `chat_template` as a string, or as a list of `{name, template}`: returns the default and the
/// `tool_use` templates.
fn config_chat_templates(
    obj: &Map<String, Value>,
    path: &Path,
) -> Result<(Option<String>, Option<String>), PreprocessError> {
    match obj.get("chat_template") {
        None | Some(Value::Null) => Ok((None, None)),
        Some(Value::String(source)) => Ok((Some(source.clone()), None)),
        Some(Value::Array(entries)) => {
            let mut default = None;
            let mut tool_use = None;
            for entry in entries {
                let name = entry.get("name").and_then(Value::as_str);
                let template = entry.get("template").and_then(Value::as_str);
                let (Some(name), Some(template)) = (name, template) else {
                    return Err(PreprocessError::model_file(
                        path,
                        "`chat_template` list entries must be objects with string `name` and `template`",
                    ));
                };
                match name {
                    "default" => default = Some(template.to_string()),
                    "tool_use" => tool_use = Some(template.to_string()),
                    _ => {}
                }
            }
            if default.is_none() {
                tracing::warn!(file = %path.display(), "chat_template list has no `default` entry");
            }
            Ok((default, tool_use))
        }
        Some(other) => Err(PreprocessError::model_file(
            path,
            format!(
                "`chat_template` must be a string or a list of {{name, template}}, found {}",
                json_type(other)
            ),
        )),
    }
}

/// A token id field given as an integer, a list of integers, or null.
fn token_id_list(
    obj: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Vec<TokenId>, PreprocessError> {
    let invalid = || {
        PreprocessError::model_file(
            path,
            format!("`{key}` must be a token id or a list of token ids"),
        )
    };
    let as_id = |v: &Value| {
        v.as_u64()
            .and_then(|id| TokenId::try_from(id).ok())
            .ok_or_else(invalid)
    };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(as_id).collect(),
        Some(single) => Ok(vec![as_id(single)?]),
    }
}

fn context_length(
    config: &Map<String, Value>,
    config_path: &Path,
    tokenizer_config: &Map<String, Value>,
) -> Result<u32, PreprocessError> {
    // Multimodal configs (Gemma 3, Llava...) keep the language model's under `text_config`.
    let text_config = config.get("text_config").and_then(Value::as_object);
    let max_positions = config
        .get("max_position_embeddings")
        .or_else(|| text_config.and_then(|c| c.get("max_position_embeddings")));
    match max_positions {
        None | Some(Value::Null) => {}
        Some(value) => {
            let length = value
                .as_u64()
                .filter(|&n| n > 0)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    PreprocessError::model_file(
                        config_path,
                        format!("`max_position_embeddings` must be a positive 32-bit integer, found {value}"),
                    )
                })?;
            return Ok(length);
        }
    }
    // `model_max_length` is often a huge float placeholder; only trust sane values.
    let model_max_length = tokenizer_config
        .get("model_max_length")
        .and_then(|v| {
            v.as_u64().or_else(|| {
                // Written as a float (`131072.0`, or the `1e30` placeholder).
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f > 0.0 && *f < SANE_MODEL_MAX_LENGTH as f64)
                    .map(|f| f as u64)
            })
        })
        .filter(|&n| n > 0 && n < SANE_MODEL_MAX_LENGTH);
    Ok(model_max_length
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_CONTEXT_LENGTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer small enough to write by hand: `<s>`=0, `</s>`=1, `<|end|>`=2.
    const TINY_TOKENIZER: &str = r#"{
      "version": "1.0",
      "truncation": null,
      "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 2, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": null,
      "decoder": null,
      "model": {
        "type": "WordLevel",
        "vocab": {"<s>": 0, "</s>": 1, "<|end|>": 2, "hello": 3, "world": 4, "<unk>": 5},
        "unk_token": "<unk>"
      }
    }"#;

    struct Folder {
        dir: tempfile::TempDir,
    }

    impl Folder {
        fn new() -> Folder {
            let dir = tempfile::Builder::new()
                .prefix("tiny-model-")
                .tempdir()
                .unwrap();
            std::fs::write(dir.path().join("tokenizer.json"), TINY_TOKENIZER).unwrap();
            Folder { dir }
        }

        fn with(self, file: &str, contents: &str) -> Folder {
            std::fs::write(self.dir.path().join(file), contents).unwrap();
            self
        }

        fn load(&self) -> Result<ModelCard, PreprocessError> {
            ModelCard::load(self.dir.path())
        }
    }

    fn file_error(err: PreprocessError) -> (PathBuf, String) {
        match err {
            PreprocessError::ModelFile { path, message } => (path, message),
            other => panic!("expected a model file error, got {other:?}"),
        }
    }

    #[test]
    fn tokenizer_json_alone_gives_defaults() {
        let folder = Folder::new();
        let card = folder.load().unwrap();
        let expected_name = folder.dir.path().file_name().unwrap().to_string_lossy();
        assert_eq!(card.name, expected_name);
        assert_eq!(card.context_length, DEFAULT_CONTEXT_LENGTH);
        assert!(card.eos_token_ids.is_empty());
        assert_eq!(card.bos_token, None);
        assert_eq!(card.chat_template, None);
        assert!(card.compile_chat_template().unwrap().is_none());
        assert_eq!(card.tokenizer.encode("hello world", false).unwrap(), [3, 4]);
        assert_eq!(card.tokenizer.token_to_id("<|end|>"), Some(2));
        assert_eq!(card.tokenizer.vocab_size(), 6);
    }

    #[test]
    fn eos_ids_union_generation_config_config_and_tokenizer_eos() {
        let card = Folder::new()
            .with("generation_config.json", r#"{"eos_token_id": [2, 1]}"#)
            .with(
                "config.json",
                r#"{"eos_token_id": 1, "max_position_embeddings": 4096}"#,
            )
            .with(
                "tokenizer_config.json",
                r#"{"eos_token": "</s>", "bos_token": "<s>"}"#,
            )
            .load()
            .unwrap();
        assert_eq!(card.eos_token_ids, [2, 1]);
        assert_eq!(card.context_length, 4096);

        let card = Folder::new()
            .with("config.json", r#"{"eos_token_id": 2}"#)
            .with("tokenizer_config.json", r#"{"eos_token": "</s>"}"#)
            .load()
            .unwrap();
        assert_eq!(
            card.eos_token_ids,
            [2, 1],
            "config's int first, then the tokenizer's"
        );

        let card = Folder::new()
            .with("config.json", r#"{"eos_token_id": null}"#)
            .with("generation_config.json", r#"{"eos_token_id": 1}"#)
            .load()
            .unwrap();
        assert_eq!(card.eos_token_ids, [1]);
    }

    #[test]
    fn added_token_objects_and_other_special_tokens() {
        let card = Folder::new()
            .with(
                "tokenizer_config.json",
                r#"{
                  "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                  "eos_token": {"content": "<|end|>"},
                  "pad_token": "</s>",
                  "unk_token": null
                }"#,
            )
            .load()
            .unwrap();
        assert_eq!(card.bos_token.as_deref(), Some("<s>"));
        assert_eq!(card.eos_token.as_deref(), Some("<|end|>"));
        assert_eq!(card.eos_token_ids, [2]);
        assert_eq!(
            card.special_tokens(),
            [
                ("bos_token".to_string(), "<s>".to_string()),
                ("eos_token".to_string(), "<|end|>".to_string()),
                ("pad_token".to_string(), "</s>".to_string()),
            ]
        );
    }

    #[test]
    fn chat_template_list_form_takes_default_and_tool_use() {
        let card = Folder::new()
            .with(
                "tokenizer_config.json",
                r#"{"chat_template": [
                    {"name": "rag", "template": "R"},
                    {"name": "tool_use", "template": "T{{ bos_token }}"},
                    {"name": "default", "template": "D{{ bos_token }}"}
                ], "bos_token": "<s>"}"#,
            )
            .load()
            .unwrap();
        assert_eq!(card.chat_template.as_deref(), Some("D{{ bos_token }}"));
        assert_eq!(
            card.tool_use_chat_template.as_deref(),
            Some("T{{ bos_token }}")
        );
        let input = crate::ChatTemplateInput::default();
        let default = card.compile_chat_template().unwrap().unwrap();
        assert_eq!(default.render(&input).unwrap(), "D<s>");
        let tool_use = card.compile_tool_use_chat_template().unwrap().unwrap();
        assert_eq!(tool_use.render(&input).unwrap(), "T<s>");
    }

    #[test]
    fn chat_template_jinja_file_wins() {
        let card = Folder::new()
            .with("tokenizer_config.json", r#"{"chat_template": "old"}"#)
            .with("chat_template.jinja", "new {{ eos_token }}\n")
            .load()
            .unwrap();
        assert_eq!(card.chat_template.as_deref(), Some("new {{ eos_token }}\n"));
        let card = Folder::new()
            .with("tokenizer_config.json", r#"{"chat_template": "old"}"#)
            .with("chat_template.json", r#"{"chat_template": "from json"}"#)
            .load()
            .unwrap();
        assert_eq!(card.chat_template.as_deref(), Some("from json"));
    }

    #[test]
    fn context_length_sources() {
        let load = |tokenizer_config: &str, config: &str| {
            Folder::new()
                .with("tokenizer_config.json", tokenizer_config)
                .with("config.json", config)
                .load()
                .unwrap()
                .context_length
        };
        assert_eq!(load(r#"{"model_max_length": 8192}"#, "{}"), 8192);
        assert_eq!(load(r#"{"model_max_length": 8192.0}"#, "{}"), 8192);
        assert_eq!(
            load(
                r#"{"model_max_length": 1000000000000000019884624838656}"#,
                "{}"
            ),
            DEFAULT_CONTEXT_LENGTH
        );
        assert_eq!(
            load(r#"{"model_max_length": 20000000}"#, "{}"),
            DEFAULT_CONTEXT_LENGTH
        );
        assert_eq!(
            load(
                r#"{"model_max_length": 8192}"#,
                r#"{"max_position_embeddings": 40960}"#
            ),
            40960
        );
        assert_eq!(
            load(
                "{}",
                r#"{"text_config": {"max_position_embeddings": 131072}}"#
            ),
            131072
        );
    }

    #[test]
    fn missing_tokenizer_json_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
        let err = ModelCard::load(dir.path()).unwrap_err();
        assert!(!err.is_client_error());
        let text = err.to_string();
        let (path, message) = file_error(err);
        assert_eq!(path, dir.path().join("tokenizer.json"));
        assert!(message.contains("missing"), "{message}");
        assert!(text.contains("tokenizer.json"), "{text}");
    }

    #[test]
    fn malformed_files_are_named() {
        for file in [
            "tokenizer_config.json",
            "config.json",
            "generation_config.json",
        ] {
            let err = Folder::new()
                .with(file, "{\"eos_token_id\": [1,")
                .load()
                .unwrap_err();
            let (path, message) = file_error(err);
            assert!(path.ends_with(file), "{}", path.display());
            assert!(message.contains("malformed JSON"), "{message}");
        }
        let (path, message) = file_error(
            Folder::new()
                .with("tokenizer.json", r#"{"not": "a tokenizer"}"#)
                .load()
                .unwrap_err(),
        );
        assert!(path.ends_with("tokenizer.json"));
        assert!(message.contains("not a valid tokenizer"), "{message}");
        let (path, message) =
            file_error(Folder::new().with("config.json", "[1]").load().unwrap_err());
        assert!(path.ends_with("config.json"));
        assert!(message.contains("expected a JSON object"), "{message}");
    }

    #[test]
    fn wrong_value_types_are_named() {
        let cases = [
            (
                "generation_config.json",
                r#"{"eos_token_id": "2"}"#,
                "eos_token_id",
            ),
            (
                "config.json",
                r#"{"eos_token_id": [1, -1]}"#,
                "eos_token_id",
            ),
            (
                "config.json",
                r#"{"max_position_embeddings": 0}"#,
                "max_position_embeddings",
            ),
            ("tokenizer_config.json", r#"{"eos_token": 5}"#, "eos_token"),
            (
                "tokenizer_config.json",
                r#"{"bos_token": {"lstrip": true}}"#,
                "bos_token",
            ),
            (
                "tokenizer_config.json",
                r#"{"chat_template": 3}"#,
                "chat_template",
            ),
            (
                "tokenizer_config.json",
                r#"{"chat_template": [{"name": "default"}]}"#,
                "chat_template",
            ),
        ];
        for (file, contents, field) in cases {
            let (path, message) =
                file_error(Folder::new().with(file, contents).load().unwrap_err());
            assert!(path.ends_with(file), "{contents}: {}", path.display());
            assert!(message.contains(field), "{contents}: {message}");
        }
    }
}
