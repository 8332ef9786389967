//! Engine logprobs → the OpenAI shapes: chat's `content` list and completions' parallel arrays.

use switchyard_frontend::TokenTexts;
use switchyard_protocol::openai::{
    ChatLogprobs, ChatTokenLogprob, ChatTopLogprob, CompletionLogprobs, TopLogprobMap,
};
use switchyard_protocol::{OutputLogprobs, TokenId};

/// JSON has no −∞ or NaN: a value an engine could not express becomes vLLM's −9999.
fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob.min(0.0)
    } else {
        -9999.0
    }
}

pub(crate) fn chat(texts: &TokenTexts, items: &[(TokenId, OutputLogprobs)]) -> ChatLogprobs {
    ChatLogprobs {
        content: items
            .iter()
            .map(|(token, lp)| {
                let token = texts.text(*token);
                ChatTokenLogprob {
                    bytes: token.as_bytes().to_vec(),
                    token,
                    logprob: finite(lp.logprob),
                    top_logprobs: lp
                        .top
                        .iter()
                        .map(|alt| {
                            let token = texts.text(alt.token_id);
                            ChatTopLogprob {
                                bytes: token.as_bytes().to_vec(),
                                token,
                                logprob: finite(alt.logprob),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// `text_offset` continues from `*offset` (characters of the choice's text before these
/// tokens) and leaves it after them.
pub(crate) fn completion(
    texts: &TokenTexts,
    items: &[(TokenId, OutputLogprobs)],
    offset: &mut u32,
) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    for (token, lp) in items {
        let text = texts.text(*token);
        out.text_offset.push(*offset);
        *offset += text.chars().count() as u32;
        out.tokens.push(text);
        out.token_logprobs.push(finite(lp.logprob));
        out.top_logprobs.push(TopLogprobMap(
            lp.top
                .iter()
                .map(|alt| (texts.text(alt.token_id), finite(alt.logprob)))
                .collect(),
        ));
    }
    out
}
