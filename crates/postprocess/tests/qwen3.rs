//! Postprocessing against the real Qwen3 tokenizer (byte-level BPE, 151k tokens, NFC).
//!
//! Needs `models/qwen3/tokenizer.json` at the workspace root: run `scripts/fetch-test-models.sh`.

mod common;

use std::sync::Arc;

use common::text;
use proptest::prelude::*;
use switchyard_postprocess::{
    IncrementalDetokenizer, PostProcessor, StopReason, StopStringMatcher,
};
use switchyard_protocol::{EngineOutput, FinishReason, StopConditions};
use tokenizers::Tokenizer;

const IM_END: u32 = 151645;
const ENDOFTEXT: u32 = 151643;

fn qwen3() -> Arc<Tokenizer> {
    common::load("qwen3")
}

fn encode(text: &str) -> Vec<u32> {
    common::encode(&qwen3(), text)
}

fn stream(ids: &[u32], prompt_tail: &[u32], skip: bool) -> Vec<String> {
    common::stream(&qwen3(), ids, prompt_tail, skip)
}

#[test]
fn qwen3_uses_the_byte_level_fast_path() {
    let detok = IncrementalDetokenizer::new(qwen3(), &[], true).unwrap();
    assert!(detok.is_byte_level_fast_path());
    let detok = IncrementalDetokenizer::new_windowed(qwen3(), &[], true).unwrap();
    assert!(!detok.is_byte_level_fast_path());
}

#[test]
fn mixed_text_round_trips_incrementally() {
    let text = "Hello, world! 你好，世界。 Ünïcödé café 👨‍👩‍👧‍👦 🇯🇵 \n\n\tcode: fn main() {}  ";
    let ids = encode(text);
    assert_eq!(stream(&ids, &[], true).concat(), text);
}

#[test]
fn characters_split_across_tokens_are_held_until_complete() {
    // Rare characters have no token of their own: byte-level BPE spells them in byte pieces.
    let text = "a𠀀b𝔸c";
    let ids = encode(text);
    let tok = qwen3();
    let split = ids
        .iter()
        .filter(|&&id| tok.decode(&[id], true).unwrap().contains('\u{FFFD}'))
        .count();
    assert!(split >= 2, "expected byte-piece tokens in {ids:?}");
    let deltas = stream(&ids, &[], true);
    assert!(
        deltas.iter().any(String::is_empty),
        "nothing was held: {deltas:?}"
    );
    assert!(deltas.iter().any(|d| d.contains("𠀀")));
    assert_eq!(deltas.concat(), text);
}

#[test]
fn chat_prompt_tail_does_not_change_byte_level_output() {
    let prompt = encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    assert!(
        prompt.contains(&IM_END),
        "special tokens must be recognised in the prompt"
    );
    let ids = encode(" Sure — here's 例子: ✓");
    assert_eq!(
        stream(&ids, &prompt, true).concat(),
        qwen3().decode(&ids, true).unwrap()
    );
}

#[test]
fn special_tokens_shown_or_hidden() {
    let mut ids = encode("think");
    ids.push(ENDOFTEXT);
    ids.extend(encode(" done"));
    assert_eq!(stream(&ids, &[], true).concat(), "think done");
    assert_eq!(stream(&ids, &[], false).concat(), "think<|endoftext|> done");
}

#[test]
fn postprocessor_with_qwen3_stop_string_and_eos() {
    let stop = StopConditions {
        max_tokens: 1_000,
        stop_strings: vec!["</answer>".into()],
        eos_token_ids: vec![IM_END, ENDOFTEXT],
        ..Default::default()
    };
    let mut ids = encode("<answer>42 是答案</answer> and more");
    ids.push(IM_END);
    let mut pp = PostProcessor::new(qwen3(), &stop, true);
    let mut text = String::new();
    let mut finish = None;
    for &id in &ids {
        let delta = pp.on_output(&EngineOutput::token(id)).unwrap();
        text.push_str(delta.text);
        if delta.finish_reason.is_some() {
            finish = delta.finish_reason;
            break;
        }
    }
    assert_eq!(text, "<answer>42 是答案");
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(pp.stop_reason(), Some(StopReason::String("</answer>")));
    // Counted up to and including the token that completed the stop string.
    let through_stop = (1..=ids.len())
        .find(|&k| {
            qwen3()
                .decode(&ids[..k], true)
                .unwrap()
                .contains("</answer>")
        })
        .unwrap();
    assert_eq!(pp.completion_tokens(), through_stop as u32);

    // Without the stop string, the EOS the engine stops on ends it, is counted, and is not
    // shown.
    let stop = StopConditions {
        stop_strings: vec![],
        ..stop
    };
    let mut pp = PostProcessor::new(qwen3(), &stop, false);
    let mut text = String::new();
    for (i, &id) in ids.iter().enumerate() {
        let mut output = EngineOutput::token(id);
        if i + 1 == ids.len() {
            output.finish_reason = Some(FinishReason::Stop);
        }
        let delta = pp.on_output(&output).unwrap();
        text.push_str(delta.text);
    }
    assert_eq!(text, "<answer>42 是答案</answer> and more");
    assert_eq!(pp.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(pp.completion_tokens(), ids.len() as u32);
}

proptest! {
    #[test]
    fn detokenizer_then_stop_matcher_equals_reference(
        text in text(),
        stop_picks in prop::collection::vec((any::<prop::sample::Index>(), 1usize..6), 1..3),
    ) {
        // Stop strings cut from the decoded text itself, so matches actually happen.
        let ids = encode(&text);
        let full = qwen3().decode(&ids, true).unwrap();
        let chars: Vec<char> = full.chars().collect();
        let stops: Vec<String> = if chars.is_empty() {
            vec!["x".into()]
        } else {
            stop_picks
                .iter()
                .map(|(at, len)| {
                    let start = at.index(chars.len());
                    chars[start..(start + len).min(chars.len())].iter().collect()
                })
                .collect()
        };
        let expected = match stops.iter().filter_map(|s| full.find(s.as_str())).min() {
            Some(i) => &full[..i],
            None => &full[..],
        };
        let mut detok = IncrementalDetokenizer::new(qwen3(), &[], true).unwrap();
        let mut matcher = StopStringMatcher::new(stops.clone());
        let mut out = String::new();
        let mut stopped = false;
        for &id in &ids {
            if let Some(piece) = detok.push(id).unwrap() {
                let released = matcher.push(piece);
                out.push_str(released.text);
                if released.stopped {
                    stopped = true;
                    break;
                }
            }
        }
        if !stopped && let Some(piece) = detok.finish().unwrap() {
            let released = matcher.push(piece);
            out.push_str(released.text);
            stopped = released.stopped;
        }
        if !stopped {
            out.push_str(&matcher.finish());
        }
        prop_assert_eq!(out, expected);
    }
}
