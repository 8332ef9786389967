//! A [`ModelCard`] from a GGUF file's metadata: the tokenizer is rebuilt from
//! `tokenizer.ggml.*` the way Python `transformers` converts it (`AutoTokenizer.from_pretrained(
//! dir, gguf_file=...)`), the chat template is `tokenizer.chat_template`, the context length
//! `{arch}.context_length`.
//!
//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) only, as transformers builds it: the GGUF's
//! vocabulary (tokens outside the byte-level alphabet respelled through it) and merges, a
//! ByteLevel pre-tokenizer (with the split regex of the named `tokenizer.ggml.pre` where
//! transformers knows one), a ByteLevel decoder; tokens typed control (3) become special added
//! tokens, user-defined (4) plain added tokens. Other tokenizer kinds (sentencepiece `llama`)
//! are refused with a pointer to the alternative: a folder holding the model's
//! `tokenizer.json` beside the GGUF.

use std::path::Path;

use serde_json::{Value, json};
use switchyard_protocol::TokenId;

use crate::card::{DEFAULT_CONTEXT_LENGTH, ModelCard};
use crate::error::PreprocessError;
use crate::gguf::{GgufMetadata, GgufValue};
use crate::tokenizer::Tokenizer;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Split regexes of the pre-tokenizers transformers' GGUF conversion knows, by
/// `tokenizer.ggml.pre` (others keep ByteLevel's own GPT-2 split).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split_regex(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "dbrx"
        | "smaug-bpe" => Some(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// Loads the card of the GGUF file at `path`.
pub(crate) fn load(path: &Path) -> Result<ModelCard, PreprocessError> {
    let meta = GgufMetadata::read_file(path)
        .map_err(|e| PreprocessError::model_file(path, e.to_string()))?;
    card_from_metadata(&meta, path)
}

pub(crate) fn card_from_metadata(
    meta: &GgufMetadata,
    path: &Path,
) -> Result<ModelCard, PreprocessError> {
    let fail = |message: String| PreprocessError::model_file(path, message);
    let model = meta
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| fail("no `tokenizer.ggml.model`: the file carries no tokenizer".into()))?;
    if model != "gpt2" {
        return Err(fail(format!(
            "tokenizer kind `{model}` is not supported from GGUF metadata (only byte-level BPE, \
             `gpt2`); put the model's tokenizer.json and tokenizer_config.json in a folder \
             beside the GGUF file and pass the folder"
        )));
    }
    let tokens = string_array(meta, "tokenizer.ggml.tokens", path)?;
    let merges = match meta.get("tokenizer.ggml.merges") {
        None => Vec::new(),
        Some(_) => string_array(meta, "tokenizer.ggml.merges", path)?,
    };
    let token_types: Vec<i64> = match meta.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(value) => value
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(GgufValue::as_i64)
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| fail("`tokenizer.ggml.token_type` must be an integer array".into()))?,
    };
    if !token_types.is_empty() && token_types.len() != tokens.len() {
        return Err(fail(format!(
            "`tokenizer.ggml.token_type` has {} entries for {} tokens",
            token_types.len(),
            tokens.len()
        )));
    }
    let pre = meta
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    let tokenizer_json =
        byte_level_bpe_json(&tokens, &merges, &token_types, split_regex(pre)).map_err(fail)?;
    let tokenizer = Tokenizer::from_bytes(tokenizer_json.to_string().as_bytes(), path)?;

    let special = |key: &str| -> Result<Option<(TokenId, String)>, PreprocessError> {
        match meta.get(key) {
            None => Ok(None),
            Some(value) => {
                let id = value
                    .as_u64()
                    .and_then(|id| TokenId::try_from(id).ok())
                    .ok_or_else(|| fail(format!("`{key}` must be a token id")))?;
                let token = tokens
                    .get(id as usize)
                    .ok_or_else(|| fail(format!("`{key}` {id} is outside the vocabulary")))?;
                Ok(Some((id, token.clone())))
            }
        }
    };
    let bos = special("tokenizer.ggml.bos_token_id")?;
    let eos = special("tokenizer.ggml.eos_token_id")?;
    let mut other_special_tokens = Vec::new();
    for (name, key) in [
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some((_, token)) = special(key)? {
            other_special_tokens.push((name.to_string(), token));
        }
    }
    let mut eos_token_ids = Vec::new();
    // llama.cpp also ends generation on the end-of-turn / end-of-message tokens.
    for (id, _) in [
        eos.clone(),
        special("tokenizer.ggml.eot_token_id")?,
        special("tokenizer.ggml.eom_token_id")?,
    ]
    .into_iter()
    .flatten()
    {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }

    let chat_template = match meta.get("tokenizer.chat_template") {
        None => None,
        Some(value) => Some(
            value
                .as_str()
                .ok_or_else(|| fail("`tokenizer.chat_template` must be a string".into()))?
                .to_string(),
        ),
    };
    let tool_use_chat_template = meta
        .get("tokenizer.chat_template.tool_use")
        .and_then(GgufValue::as_str)
        .map(str::to_string);

    let architecture = meta.get("general.architecture").and_then(GgufValue::as_str);
    let context_length = match architecture.and_then(|a| meta.get(&format!("{a}.context_length"))) {
        None => DEFAULT_CONTEXT_LENGTH,
        Some(value) => value
            .as_u64()
            .filter(|&n| n > 0)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| fail("`context_length` must be a positive 32-bit integer".into()))?,
    };

    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(ModelCard {
        name,
        path: path.to_path_buf(),
        context_length,
        eos_token_ids,
        bos_token: bos.map(|(_, t)| t),
        eos_token: eos.map(|(_, t)| t),
        other_special_tokens,
        chat_template,
        tool_use_chat_template,
        tokenizer,
    })
}

fn string_array(
    meta: &GgufMetadata,
    key: &str,
    path: &Path,
) -> Result<Vec<String>, PreprocessError> {
    meta.get(key)
        .and_then(GgufValue::as_array)
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| PreprocessError::model_file(path, format!("`{key}` must be a string array")))
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others for
/// characters from U+0100 on, in byte order.
fn byte_level_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let b = byte as u32;
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        *slot = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

/// A `tokenizer.json` document for byte-level BPE over `tokens` and `merges`.
fn byte_level_bpe_json(
    tokens: &[String],
    merges: &[String],
    token_types: &[i64],
    split: Option<&str>,
) -> Result<Value, String> {
    let alphabet = byte_level_alphabet();
    let in_alphabet = |token: &str| token.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let spelled = if in_alphabet(token) {
            token.clone()
        } else {
            token.bytes().map(|b| alphabet[b as usize]).collect()
        };
        // A later duplicate would silently steal the id in the map; transformers keeps the last
        // too (a dict comprehension), so do the same.
        vocab.insert(spelled, json!(id));
    }
    let mut merge_pairs = Vec::with_capacity(merges.len());
    for merge in merges {
        let Some((left, right)) = merge.split_once(' ') else {
            return Err(format!(
                "merge `{merge}` is not two tokens separated by a space"
            ));
        };
        merge_pairs.push(json!([left, right]));
    }
    let mut added = Vec::new();
    for (id, (token, &kind)) in tokens.iter().zip(token_types).enumerate() {
        let special = match kind {
            // A control token outside the byte alphabet is a mislabel (transformers skips it).
            TOKEN_TYPE_CONTROL if in_alphabet(token) => true,
            TOKEN_TYPE_USER_DEFINED => false,
            _ => continue,
        };
        added.push(json!({
            "id": id, "content": token, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special,
        }));
    }
    let pre_tokenizer = match split {
        None => {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
        }
        Some(regex) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]}),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merge_pairs,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::tests::GgufWriter;

    fn card(writer: &GgufWriter) -> Result<ModelCard, PreprocessError> {
        let bytes = writer.bytes();
        let meta = GgufMetadata::read(bytes.as_slice(), bytes.len() as u64).unwrap();
        card_from_metadata(&meta, Path::new("/models/tiny.Q4_0.gguf"))
    }

    fn tiny() -> GgufWriter {
        let mut w = GgufWriter::default();
        w.string("general.architecture", "llama")
            .u32("llama.context_length", 4096)
            .string("tokenizer.ggml.model", "gpt2")
            .strings(
                "tokenizer.ggml.tokens",
                &[
                    "<|end|>",
                    "<|start|>",
                    "h",
                    "e",
                    "l",
                    "o",
                    "Ġ",
                    "he",
                    "ll",
                    "hell",
                    "hello",
                    "Ġhello",
                    "<tool>",
                ],
            )
            .i32s(
                "tokenizer.ggml.token_type",
                &[3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4],
            )
            .strings(
                "tokenizer.ggml.merges",
                &["h e", "l l", "he ll", "hell o", "Ġ hello"],
            )
            .u32("tokenizer.ggml.bos_token_id", 1)
            .u32("tokenizer.ggml.eos_token_id", 0)
            .string(
                "tokenizer.chat_template",
                "{{ bos_token }}{{ messages[0]['content'] }}",
            );
        w
    }

    #[test]
    fn builds_tokenizer_template_and_limits() {
        let card = card(&tiny()).unwrap();
        assert_eq!(card.name, "tiny.Q4_0");
        assert_eq!(card.context_length, 4096);
        assert_eq!(card.eos_token_ids, [0]);
        assert_eq!(card.bos_token.as_deref(), Some("<|start|>"));
        assert_eq!(card.eos_token.as_deref(), Some("<|end|>"));
        let ids = card
            .tokenizer
            .encode("hello hello<|end|><tool>", false)
            .unwrap();
        assert_eq!(ids, [10, 11, 0, 12]);
        assert_eq!(
            card.tokenizer.decode(&ids, true).unwrap(),
            "hello hello<tool>"
        );
        assert!(card.compile_chat_template().unwrap().is_some());
    }

    #[test]
    fn unsupported_or_broken_tokenizers_are_named() {
        let mut w = tiny();
        w.string("tokenizer.ggml.model", "llama");
        let err = card(&w).unwrap_err().to_string();
        assert!(
            err.contains("`llama`") && err.contains("tokenizer.json"),
            "{err}"
        );

        let mut w = tiny();
        w.u32("tokenizer.ggml.eos_token_id", 999);
        let err = card(&w).unwrap_err().to_string();
        assert!(err.contains("eos_token_id"), "{err}");

        let mut w = tiny();
        w.i32s("tokenizer.ggml.token_type", &[3]);
        let err = card(&w).unwrap_err().to_string();
        assert!(err.contains("token_type"), "{err}");

        let mut w = tiny();
        w.strings("tokenizer.ggml.merges", &["nospace"]);
        let err = card(&w).unwrap_err().to_string();
        assert!(err.contains("nospace"), "{err}");
    }

    #[test]
    fn known_pre_tokenizers_split_digits_their_way() {
        let mut w = tiny();
        w.string("tokenizer.ggml.pre", "llama-bpe");
        let card = card(&w).unwrap();
        let json: Value =
            serde_json::from_str(&card.tokenizer.inner().to_string(false).unwrap()).unwrap();
        assert_eq!(json["pre_tokenizer"]["type"], "Sequence");
        assert_eq!(json["pre_tokenizer"]["pretokenizers"][0]["type"], "Split");
    }

    #[test]
    fn alphabet_is_a_bijection() {
        let table = byte_level_alphabet();
        let mut seen = std::collections::HashSet::new();
        assert!(table.iter().all(|c| *c != '\0' && seen.insert(*c)));
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'a' as usize], 'a');
    }
}
