//! The detokenizer against every real tokenizer the project fetches: byte-level BPE (Qwen3,
//! Llama 3.1, DeepSeek V3 with its `<｜…▁…｜>` added tokens) and SentencePiece-style BPE with
//! `▁` and byte fallback (Gemma 3), through both strategies.
//!
//! Needs `models/<name>/tokenizer.json`: run `scripts/fetch-test-models.sh`.

mod common;

use std::sync::Arc;

use common::{encode, load, stream, text};
use proptest::prelude::*;
use switchyard_postprocess::IncrementalDetokenizer;
use tokenizers::Tokenizer;

/// (name, whether its decoder is byte-level, i.e. takes the fast path)
const MODELS: [(&str, bool); 4] = [
    ("qwen3", true),
    ("llama3_1", true),
    ("deepseek_v3", true),
    ("gemma3", false),
];

fn models() -> impl Iterator<Item = (Arc<Tokenizer>, bool)> {
    MODELS
        .iter()
        .map(|&(name, byte_level)| (load(name), byte_level))
}

#[test]
fn strategy_follows_the_decoder() {
    for (name, byte_level) in MODELS {
        let detok = IncrementalDetokenizer::new(load(name), &[], true).unwrap();
        assert_eq!(detok.is_byte_level_fast_path(), byte_level, "{name}");
    }
}

#[test]
fn multilingual_text_round_trips_in_every_tokenizer() {
    let text = "  Hello,   world!\n\n你好，世界 — naïve café 👨‍👩‍👧‍👦 𠀀𝔸 ١٢٣ हिन्दी\t end ";
    for (tok, _) in models() {
        let ids = encode(&tok, text);
        for skip in [true, false] {
            assert_eq!(
                stream(&tok, &ids, &[], skip).concat(),
                tok.decode(&ids, skip).unwrap()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn deltas_concatenate_to_full_decode(text in text(), skip in any::<bool>()) {
        for (tok, _) in models() {
            let ids = encode(&tok, &text);
            // `stream` checks the concatenation and the per-delta guarantees for both strategies.
            let deltas = stream(&tok, &ids, &[], skip);
            prop_assert_eq!(deltas.concat(), tok.decode(&ids, skip).unwrap());
        }
    }

    #[test]
    fn batched_pushes_concatenate_to_full_decode(text in text(), batch in 2usize..6) {
        for (tok, _) in models() {
            let ids = encode(&tok, &text);
            for windowed in [false, true] {
                let mut detok = if windowed {
                    IncrementalDetokenizer::new_windowed(tok.clone(), &[], true).unwrap()
                } else {
                    IncrementalDetokenizer::new(tok.clone(), &[], true).unwrap()
                };
                let mut out = String::new();
                for chunk in ids.chunks(batch) {
                    out.push_str(detok.push_tokens(chunk).unwrap().unwrap_or(""));
                }
                out.push_str(detok.finish().unwrap().unwrap_or(""));
                prop_assert_eq!(out, tok.decode(&ids, true).unwrap());
            }
        }
    }

    #[test]
    fn continuation_of_a_prompt_is_what_the_tokens_add(
        prompt in text(),
        generated in text(),
    ) {
        for (tok, _) in models() {
            let prompt_ids = encode(&tok, &prompt);
            let gen_ids = encode(&tok, &generated);
            let all: Vec<u32> = prompt_ids.iter().chain(&gen_ids).copied().collect();
            let before = tok.decode(&prompt_ids, true).unwrap();
            let after = tok.decode(&all, true).unwrap();
            // Only meaningful when the prompt's text is not rewritten by what follows it.
            prop_assume!(after.starts_with(&before) && !before.ends_with('\u{FFFD}'));
            let mut detok = IncrementalDetokenizer::new(tok.clone(), &prompt_ids, true).unwrap();
            let mut out = String::new();
            for &id in &gen_ids {
                out.push_str(detok.push(id).unwrap().unwrap_or(""));
            }
            out.push_str(detok.finish().unwrap().unwrap_or(""));
            prop_assert_eq!(out, &after[before.len()..]);
        }
    }

    #[test]
    fn byte_level_fast_path_is_exact_for_arbitrary_token_sequences(
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..50),
        skip in any::<bool>(),
    ) {
        // Random ids make invalid UTF-8 and mix in special / added tokens; the fast path must
        // still match a full decode exactly.
        for (tok, byte_level) in models() {
            if !byte_level {
                continue;
            }
            let vocab = tok.get_vocab_size(true);
            let base = tok.get_vocab_size(false);
            let ids: Vec<u32> = picks
                .iter()
                .map(|(at, kind)| match kind {
                    0 => at.index(vocab) as u32,
                    // low ids are single bytes or short pieces in these vocabularies
                    1 => at.index(300) as u32,
                    _ => (base + at.index(vocab - base)) as u32,
                })
                .collect();
            let mut detok = IncrementalDetokenizer::new(tok.clone(), &[], skip).unwrap();
            let mut out = String::new();
            for &id in &ids {
                out.push_str(detok.push(id).unwrap().unwrap_or(""));
            }
            out.push_str(detok.finish().unwrap().unwrap_or(""));
            prop_assert_eq!(out, tok.decode(&ids, skip).unwrap());
        }
    }
}
