//! JSON Schema → matcher (crates/structured): any bytes as a schema, then any bytes, or a walk
//! through the mask, as the document.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};
use switchyard_structured::validate::try_validate;
use switchyard_structured::{
    GuidedDecoding, JsonGrammar, MaskScratch, Matcher, SchemaError, TokenMask, TokenVocab,
};

use crate::ByteSource;

/// Document bytes (raw mode) and tokens (walk mode) fed at most, so each input stays quick.
const MAX_DOC_BYTES: usize = 2048;
const MAX_WALK_TOKENS: usize = 96;

/// Every single byte (so an unfinished document always has a next token unless it is a dead
/// end) and multi-byte pieces of JSON, split UTF-8 and escapes, as a model's vocabulary has.
fn vocab() -> &'static TokenVocab {
    static VOCAB: OnceLock<TokenVocab> = OnceLock::new();
    VOCAB.get_or_init(|| {
        let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        for t in [
            "{",
            "}",
            "{\"",
            "\":",
            "\",",
            "\"}",
            " \"",
            "\": ",
            ", \"",
            "\":\"",
            "true",
            "false",
            "null",
            "nul",
            "12",
            "-3",
            ".5",
            "e+",
            "E-1",
            "0]",
            "1}",
            "[\"",
            "\"]",
            "},{\"",
            "]}",
            "}}",
            "\\u00",
            "e9",
            "\\ud83d",
            "\\ude00",
            "\\n",
            "\\\"",
            "  ",
            "\n",
            "\n  ",
            "héllo",
            "日本",
            "😀",
            "name",
            "age",
            "a",
            "b",
            "abc",
            "abcdefgh",
            "a b",
            "hello world",
            "red",
            "\"red\"",
            "x\"",
            "a/b",
            "kind",
            "\"kind\":\"",
        ] {
            tokens.push(Some(t.as_bytes().to_vec()));
        }
        tokens.push(Some(vec![0xE6, 0x97]));
        tokens.push(Some(vec![0xA5, b'"']));
        tokens.push(Some(vec![0xF0, 0x9F]));
        // A special token and an empty one: never allowed.
        tokens.push(None);
        tokens.push(Some(Vec::new()));
        TokenVocab::new(tokens)
    })
}

/// Compiles a schema (raw bytes, or built from fragments) and runs documents through its
/// matcher. Asserts: no panic; a refusal says why (an unsupported keyword is named and
/// appears in the schema); feeding bytes one at a time or in one piece agrees; the mask
/// equals trying every token; an unfinished document always has an allowed next token (no
/// dead ends); a finished one parses as JSON and validates against the schema.
pub fn check_structured(data: &[u8]) {
    let mut src = ByteSource::new(data);
    let (text, schema) = if src.bool() {
        let value = generate(&mut src, 0, true);
        (value.to_string(), Some(value))
    } else {
        let len = usize::from(u16::from_le_bytes([src.byte(), src.byte()])) % 4096;
        let text = String::from_utf8_lossy(src.take(len)).into_owned();
        let value = serde_json::from_str::<Value>(&text).ok();
        (text, value)
    };
    let grammar = match JsonGrammar::compile(&GuidedDecoding::JsonSchema(text.clone())) {
        Ok(g) => Arc::new(g),
        Err(error) => {
            check_refusal(&error, schema.as_ref());
            return;
        }
    };
    let schema = schema.expect("a compiled schema is JSON");
    if src.bool() {
        walk(&grammar, &schema, &mut src);
    } else {
        let doc = src.take(MAX_DOC_BYTES).to_vec();
        raw(&grammar, &schema, &doc);
    }
}

fn check_refusal(error: &SchemaError, schema: Option<&Value>) {
    let message = error.to_string();
    assert!(!message.is_empty());
    // Keys written back without escapes but the necessary ones.
    let text = schema.map(Value::to_string).unwrap_or_default();
    match error {
        SchemaError::NotJson(_) => assert!(schema.is_none(), "valid JSON refused as not JSON"),
        SchemaError::Unsupported { keyword, path, .. } => {
            assert!(
                text.contains(&format!("\"{keyword}\"")),
                "`{keyword}` named but not in {text}"
            );
            assert!(path.starts_with('#'), "{path}");
            assert!(message.contains(keyword.as_str()), "{message}");
        }
        SchemaError::Invalid { path, .. } => assert!(path.starts_with('#'), "{path}"),
        SchemaError::TooLarge(_) => {}
    }
}

/// Raw bytes: the longest accepted prefix is the same fed byte by byte and in one piece.
fn raw(grammar: &Arc<JsonGrammar>, schema: &Value, doc: &[u8]) {
    let mut bytewise = Matcher::new(grammar.clone());
    let mut accepted = 0;
    for &b in doc {
        if !bytewise.advance(&[b]) {
            break;
        }
        accepted += 1;
    }
    let mut whole = Matcher::new(grammar.clone());
    assert!(whole.advance(&doc[..accepted]));
    assert_eq!(whole.is_complete(), bytewise.is_complete());
    if accepted < doc.len() {
        assert!(!Matcher::new(grammar.clone()).advance(&doc[..=accepted]));
        // A refused byte leaves the matcher as it was.
        assert!(!whole.advance(&doc[accepted..=accepted]));
        assert_eq!(whole.is_complete(), bytewise.is_complete());
    }
    check_state(&bytewise, schema, &doc[..accepted]);
}

/// A walk through the mask: each step takes an allowed token, chosen by the input.
fn walk(grammar: &Arc<JsonGrammar>, schema: &Value, src: &mut ByteSource) {
    let vocab = vocab();
    let mut m = Matcher::new(grammar.clone());
    let mut doc = Vec::new();
    let mut mask = TokenMask::default();
    let mut scratch = MaskScratch::default();
    for _ in 0..MAX_WALK_TOKENS {
        if src.is_empty() {
            break;
        }
        m.fill_mask(vocab, &mut mask, &mut scratch);
        let allowed: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&t| mask.allows(t))
            .collect();
        if allowed.is_empty() {
            assert!(
                m.is_complete(),
                "dead end after {:?}",
                String::from_utf8_lossy(&doc)
            );
            break;
        }
        let token = allowed[src.below(allowed.len())];
        let bytes = vocab.token_bytes(token).expect("allowed tokens have bytes");
        assert!(
            m.advance(bytes),
            "the mask allowed {bytes:?}, advance refused it"
        );
        doc.extend_from_slice(bytes);
    }
    check_state(&m, schema, &doc);
}

/// The mask equals brute force; unfinished means some token continues; finished validates.
fn check_state(m: &Matcher, schema: &Value, doc: &[u8]) {
    let vocab = vocab();
    let mut mask = TokenMask::default();
    m.fill_mask(vocab, &mut mask, &mut MaskScratch::default());
    for id in 0..vocab.len() as u32 {
        let brute = vocab.token_bytes(id).is_some_and(|b| m.accepts(b));
        assert_eq!(
            mask.allows(id),
            brute,
            "mask and brute force disagree on {:?} after {:?}",
            vocab.token_bytes(id).map(String::from_utf8_lossy),
            String::from_utf8_lossy(doc)
        );
    }
    if !m.is_complete() {
        assert!(
            !mask.is_empty(),
            "dead end after {:?}",
            String::from_utf8_lossy(doc)
        );
        return;
    }
    let text = std::str::from_utf8(doc).expect("the matcher lets only UTF-8 through");
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("a complete document does not parse: {text:?}: {e}"));
    // A validation that runs out of budget proves nothing either way.
    if let Some(valid) = try_validate(schema, &value) {
        assert!(valid, "{text} does not validate against {schema}");
    }
}

const NAMES: &[&str] = &["name", "age", "a", "b", "kind", "a/b", "é", "x\"", "", "~0"];
const LITERALS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1.5",
    "12",
    "\"red\"",
    "\"\"",
    "\"a\"",
    "[1]",
    "[]",
    "{\"a\":1}",
    "{}",
    "\"é\"",
    "1e2",
];
const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null", "strng",
];
/// Keywords beside the supported ones: unsupported (a refusal), annotations and unknown ones
/// (ignored), and OpenAPI's `discriminator`.
const OTHER_KEYWORDS: &[&str] = &[
    "pattern",
    "format",
    "minimum",
    "not",
    "title",
    "description",
    "default",
    "examples",
    "discriminator",
    "x-extra",
    "nullable",
    "uniqueItems",
    "$comment",
];

/// A schema from the input: every keyword the compiler knows, nested, with `$defs` at the
/// root for `$ref`s to point into.
fn generate(src: &mut ByteSource, depth: usize, root: bool) -> Value {
    if depth > 5 || src.is_empty() {
        return match src.below(3) {
            0 => json!({}),
            1 => json!({"type": src.pick(TYPES)}),
            _ => json!(src.bool()),
        };
    }
    let mut map = Map::new();
    match src.below(12) {
        0 => return json!(src.bool()),
        1 => {
            map.insert("type".into(), json!(src.pick(TYPES)));
        }
        2 => {
            let n = 1 + src.below(3);
            let types: Vec<&str> = (0..n).map(|_| src.pick(TYPES)).collect();
            map.insert("type".into(), json!(types));
        }
        3 => {
            map.insert("type".into(), json!("string"));
            if src.bool() {
                map.insert("minLength".into(), json!(src.below(4)));
            }
            if src.bool() {
                map.insert("maxLength".into(), json!(src.below(6)));
            }
        }
        4 => {
            if src.bool() {
                map.insert("type".into(), json!("array"));
            }
            map.insert("items".into(), generate(src, depth + 1, false));
            if src.bool() {
                map.insert("minItems".into(), json!(src.below(3)));
            }
            if src.bool() {
                map.insert("maxItems".into(), json!(src.below(4)));
            }
        }
        5 | 6 => {
            if src.bool() {
                map.insert("type".into(), json!("object"));
            }
            let mut props = Map::new();
            for _ in 0..src.below(4) {
                props.insert(src.pick(NAMES).into(), generate(src, depth + 1, false));
            }
            let required: Vec<&str> = (0..src.below(3)).map(|_| src.pick(NAMES)).collect();
            map.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                map.insert("required".into(), json!(required));
            }
            match src.below(3) {
                0 => {}
                1 => {
                    map.insert("additionalProperties".into(), json!(false));
                }
                _ => {
                    let extra = generate(src, depth + 1, false);
                    map.insert("additionalProperties".into(), extra);
                }
            }
        }
        7 => {
            let members: Vec<Value> = (0..src.below(4))
                .map(|_| serde_json::from_str(src.pick(LITERALS)).expect("literal JSON"))
                .collect();
            map.insert("enum".into(), Value::Array(members));
            if src.bool() {
                map.insert("type".into(), json!(src.pick(TYPES)));
            }
        }
        8 => {
            let c: Value = serde_json::from_str(src.pick(LITERALS)).expect("literal JSON");
            map.insert("const".into(), c);
        }
        9 => {
            let keyword = src.pick(&["anyOf", "oneOf", "allOf"]);
            let alternatives: Vec<Value> = (0..1 + src.below(3))
                .map(|_| generate(src, depth + 1, false))
                .collect();
            map.insert(keyword.into(), Value::Array(alternatives));
        }
        _ => {
            let target = match src.below(3) {
                0 => "#".to_owned(),
                1 => format!("#/$defs/d{}", src.below(3)),
                _ => "#/$defs/missing".to_owned(),
            };
            map.insert("$ref".into(), json!(target));
        }
    }
    if src.below(4) == 0 {
        let keyword = src.pick(OTHER_KEYWORDS);
        map.insert(keyword.into(), json!("x"));
    }
    if root {
        let defs: Map<String, Value> = (0..3)
            .map(|i| (format!("d{i}"), generate(src, depth + 2, false)))
            .collect();
        map.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(map)
}
