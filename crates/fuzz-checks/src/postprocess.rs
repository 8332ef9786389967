//! Engine token streams through the postprocessor, checked against a one-shot decode.

use switchyard_postprocess::{PostProcessor, PostprocessError, StopReason};
use switchyard_protocol::{EngineOutput, FinishReason, StopConditions};

use crate::ByteSource;
use crate::models;

const FINISH_REASONS: [Option<FinishReason>; 4] = [
    None,
    Some(FinishReason::Stop),
    Some(FinishReason::Length),
    Some(FinishReason::Cancelled),
];

/// Builds from `data` a token id stream (ids below the Qwen3 vocabulary size, special tokens,
/// single-byte tokens that split characters, and ids the tokenizer does not know), stop
/// conditions (stop strings cut from the stream's own text, stop token ids, `max_tokens`,
/// `min_tokens`, `ignore_eos`) and a batching of the ids into [`EngineOutput`]s with random
/// finish reasons, then feeds it through a [`PostProcessor`] over the Qwen3 tokenizer.
///
/// Asserts: unknown ids are errors naming the id; after a delta with a finish reason every
/// further output is [`PostprocessError::AfterFinish`]; `max_tokens` is respected; no stop string
/// appears in the text; and the text is exactly what a one-shot `decode` of the processed ids
/// gives (minus a hidden stop token): equal when the stream finished without a stop string (so no
/// stray U+FFFD and nothing lost), a prefix followed by the stop string when one matched (a stop
/// token may also hide held-back text that a stop string then matched), a prefix while the
/// stream is open.
pub fn check_postprocess(data: &[u8]) {
    let model = models::qwen3();
    let tokenizer = &model.card.tokenizer;
    let vocab = tokenizer.vocab_size() as u32;
    let mut src = ByteSource::new(data);

    let flags = src.byte();
    let skip_special_tokens = flags & 1 != 0;
    let ids: Vec<u32> = (0..src.below(48))
        .map(|_| match src.below(16) {
            0 => vocab + u32::from(src.byte()),
            1 => u32::MAX - u32::from(src.byte()),
            2 | 3 => vocab - 1 - src.below(32) as u32, // the added special tokens
            4..=7 => u32::from(src.byte()),            // single bytes: split characters
            _ => src.u32() % vocab,
        })
        .collect();

    let mut stop = StopConditions {
        max_tokens: if flags & 2 != 0 {
            u32::MAX
        } else {
            src.below(64) as u32
        },
        min_tokens: src.below(4) as u32,
        eos_token_ids: model.card.eos_token_ids.clone(),
        ignore_eos: flags & 4 != 0,
        ..StopConditions::default()
    };
    for _ in 0..src.below(3) {
        stop.stop_token_ids.push(match src.below(4) {
            0 => u32::MAX - u32::from(src.byte()),
            _ if !ids.is_empty() => ids[src.below(ids.len())],
            _ => src.u32() % vocab,
        });
    }
    if flags & 8 != 0 {
        let in_range: Vec<u32> = ids.iter().copied().filter(|&id| id < vocab).collect();
        let text = tokenizer
            .decode(&in_range, skip_special_tokens)
            .unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        for _ in 0..=src.below(3) {
            let stop_string = match src.below(4) {
                0 => {
                    let len = src.below(5);
                    String::from_utf8_lossy(src.take(len)).into_owned()
                }
                _ if chars.is_empty() => "\u{FFFD}".to_string(),
                _ => {
                    let start = src.below(chars.len());
                    let len = 1 + src.below(6);
                    chars[start..(start + len).min(chars.len())]
                        .iter()
                        .collect()
                }
            };
            stop.stop_strings.push(stop_string);
        }
    }

    let mut processor = if flags & 16 != 0 {
        let tail: Vec<u32> = (0..src.below(4)).map(|_| src.u32() % (vocab + 2)).collect();
        match PostProcessor::with_prompt_tail(tokenizer.shared(), &stop, skip_special_tokens, &tail)
        {
            Ok(processor) => processor,
            Err(PostprocessError::UnknownToken { token }) => {
                assert!(token >= vocab && tail.contains(&token), "{token}");
                return;
            }
            Err(err) => panic!("prompt tail {tail:?}: {err}"),
        }
    } else {
        PostProcessor::new(tokenizer.shared(), &stop, skip_special_tokens)
    };

    // Feed the ids in outputs of 0..=4 tokens; the engine may (wrongly) claim to have finished
    // before its last output, and sends some outputs after it finished.
    let mut fed: Vec<u32> = Vec::with_capacity(ids.len());
    let mut text = String::new();
    let mut finished = None;
    let mut rest = &ids[..];
    let extra_outputs = src.below(3);
    let mut outputs_after_end = 0;
    while outputs_after_end <= extra_outputs {
        // Out of bytes: the rest in one output (choices read as zero would take none, forever).
        let take = if src.is_empty() {
            rest.len()
        } else {
            src.below(5).min(rest.len())
        };
        let (batch, remaining) = rest.split_at(take);
        rest = remaining;
        let finish_reason = if rest.is_empty() || src.below(16) == 0 {
            src.pick(&FINISH_REASONS)
        } else {
            None
        };
        if rest.is_empty() {
            outputs_after_end += 1;
        }
        let output = EngineOutput {
            token_ids: batch.iter().copied().collect(),
            finish_reason,
            ..Default::default()
        };
        if finished.is_some() {
            assert_eq!(
                processor.on_output(&output).map(|_| ()),
                Err(PostprocessError::AfterFinish)
            );
            continue;
        }
        fed.extend_from_slice(batch);
        match processor.on_output(&output) {
            Ok(delta) => {
                text.push_str(delta.text);
                if let Some(reason) = delta.finish_reason {
                    finished = Some(reason);
                } else {
                    assert_eq!(
                        finish_reason, None,
                        "the engine finished but the delta has no finish reason"
                    );
                }
            }
            Err(PostprocessError::UnknownToken { token }) => {
                assert!(token >= vocab && batch.contains(&token), "{token}");
                return; // the pipeline ends the stream with an error event
            }
            Err(err) => panic!("unexpected postprocess error: {err}"),
        }
    }

    let counted = processor.completion_tokens();
    assert!(
        counted <= stop.max_tokens,
        "{counted} > {}",
        stop.max_tokens
    );
    assert!(counted as usize <= fed.len());
    assert_eq!(processor.finish_reason(), finished);
    for stop_string in stop.stop_strings.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(stop_string.as_str()),
            "stop string {stop_string:?} in the text {text:?}"
        );
    }

    let mut generated = fed[..counted as usize].to_vec();
    // The stop string that cut the text. A stop token reported as the reason may hide one too:
    // the text still held back when the token arrived is flushed through the matcher.
    let cut_by: Option<&str> = match processor.stop_reason() {
        Some(StopReason::TokenId(token)) => {
            assert_eq!(generated.pop(), Some(token), "the hidden stop token");
            assert_eq!(finished, Some(FinishReason::Stop));
            None
        }
        Some(StopReason::String(s)) => {
            assert_eq!(finished, Some(FinishReason::Stop));
            Some(s)
        }
        None => None,
    };
    let expected = tokenizer
        .decode(&generated, skip_special_tokens)
        .expect("ids the postprocessor accepted decode");
    let rest = expected.strip_prefix(text.as_str()).unwrap_or_else(|| {
        panic!("streamed {text:?} is not a prefix of {expected:?} (ids {generated:?})")
    });
    let stop_strings = || {
        stop.stop_strings
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    match (finished, cut_by) {
        (_, Some(s)) => assert!(
            rest.starts_with(s),
            "text {text:?} of {expected:?} is not cut at {s:?} (ids {generated:?})"
        ),
        (Some(_), None) => assert!(
            rest.is_empty() || stop_strings().any(|s| rest.starts_with(s)),
            "text {text:?} is not all of {expected:?} (ids {generated:?})"
        ),
        (None, None) => {} // still streaming: text may be held back
    }
}
