//! What a request asks of a row of logits beyond sampling: `logit_bias`, and structured
//! output (switchyard-structured's matcher, one per sequence, and its vocabulary mask).
//!
//! Order per token: the model's logits → (logprobs are taken here: the model's own
//! distribution, as vLLM reports by default) → `logit_bias` added → tokens the grammar cannot
//! take set to −∞ → penalties, temperature and the sampler's filters → the token.

use std::sync::Arc;

use smallvec::SmallVec;
use switchyard_protocol::{GuidedDecoding, PreprocessedRequest, TokenId};
use switchyard_structured::{JsonGrammar, MaskScratch, Matcher, TokenMask, TokenVocab};

use crate::sampler::{Sampler, argmax};

/// Adds each `(token, bias)` to its logit (ids past the row are ignored: `check` refused them).
pub(crate) fn apply_logit_bias(bias: &[(TokenId, f32)], logits: &mut [f32]) {
    for &(token, b) in bias {
        if let Some(l) = logits.get_mut(token as usize) {
            *l += b;
        }
    }
}

/// The request's structured-output state (`None`: it has no constraint), its schema compiled
/// and a migrated request's earlier output replayed through it. The error is the request's own
/// (an unusable schema, a model without a readable vocabulary), never the engine's.
pub(crate) fn for_request(
    request: &PreprocessedRequest,
    vocab: Option<&Arc<TokenVocab>>,
    eos_token: Option<TokenId>,
) -> Result<Option<Guided>, String> {
    let Some(constraint) = &request.sampling.guided else {
        return Ok(None);
    };
    let Some(vocab) = vocab else {
        return Err("structured output needs the model's vocabulary, which its GGUF file does not carry in a readable form".into());
    };
    let stop = &request.stop;
    let mut ends: SmallVec<[TokenId; 4]> = stop
        .eos_token_ids
        .iter()
        .chain(&stop.stop_token_ids)
        .copied()
        .collect();
    if ends.is_empty() {
        ends.extend(eos_token);
    }
    let mut guided = Guided::new(constraint, vocab.clone(), ends)?;
    let resumed = (request.resumed_output_tokens as usize).min(request.token_ids.len());
    guided.resume(&request.token_ids[request.token_ids.len() - resumed..])?;
    Ok(Some(guided))
}

/// One sequence's structured-output state.
pub(crate) struct Guided {
    matcher: Matcher,
    vocab: Arc<TokenVocab>,
    /// Tokens that may end a complete document (the request's EOS and stop tokens).
    end_tokens: SmallVec<[TokenId; 4]>,
    /// An end token was taken.
    ended: bool,
}

/// Buffers shared by every sequence of an engine thread.
#[derive(Default)]
pub(crate) struct GuideScratch {
    mask: TokenMask,
    scratch: MaskScratch,
}

impl Guided {
    /// Compiles the request's constraint (an invalid or unsupported schema is the error).
    pub(crate) fn new(
        guided: &GuidedDecoding,
        vocab: Arc<TokenVocab>,
        end_tokens: impl IntoIterator<Item = TokenId>,
    ) -> Result<Guided, String> {
        let grammar = JsonGrammar::compile(guided).map_err(|e| e.to_string())?;
        let mut ends = SmallVec::new();
        for t in end_tokens {
            if !ends.contains(&t) {
                ends.push(t);
            }
        }
        Ok(Guided {
            matcher: Matcher::new(Arc::new(grammar)),
            vocab,
            end_tokens: ends,
            ended: false,
        })
    }

    /// Chooses the next token from `logits` (bias applied already) among those the grammar
    /// allows, and advances past it. `Ok(None)`: the document is complete and nothing may
    /// follow it, not even an end token (the sequence ends without one).
    pub(crate) fn choose(
        &mut self,
        logits: &mut [f32],
        sampler: &mut Sampler,
        candidates: &mut Vec<(f32, TokenId)>,
        s: &mut GuideScratch,
    ) -> Result<Option<TokenId>, String> {
        if sampler.is_plain_greedy() {
            // The model's favourite is usually allowed: check it alone before any mask.
            let best = argmax(logits);
            if logits.get(best as usize).is_some_and(|l| l.is_finite()) && self.accept(best) {
                return Ok(Some(best));
            }
        }
        self.matcher
            .fill_mask(&self.vocab, &mut s.mask, &mut s.scratch);
        let complete = self.matcher.is_complete();
        if complete {
            for &t in &self.end_tokens {
                s.mask.allow(t);
            }
        }
        if s.mask.is_empty() {
            return if complete {
                Ok(None)
            } else {
                Err("no token of the vocabulary can continue the JSON document".into())
            };
        }
        s.mask.apply(logits);
        let token = sampler.sample(logits, candidates);
        if !self.accept(token) {
            return Err(format!(
                "token {token} was sampled outside the grammar's mask (its logits are not finite)"
            ));
        }
        Ok(Some(token))
    }

    /// Moves past output generated before a migration (the tail of the prompt), so the
    /// document continues where it broke off instead of starting again.
    pub(crate) fn resume(&mut self, output: &[TokenId]) -> Result<(), String> {
        for (i, &token) in output.iter().enumerate() {
            if !self.accept(token) {
                return Err(format!(
                    "the resumed output does not follow the JSON schema (token {i} of {}, id {token})",
                    output.len()
                ));
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: TokenId) -> bool {
        if self.end_tokens.contains(&token) && self.matcher.is_complete() {
            self.ended = true;
            return true;
        }
        // A stop token can be text too (`stop_token_ids` may name any token).
        match self.vocab.token_bytes(token) {
            Some(bytes) => self.matcher.advance(bytes),
            None => false,
        }
    }

    /// The document is finished: an end token was taken, or nothing may follow.
    pub(crate) fn done(&self) -> bool {
        self.ended || (self.matcher.is_complete() && !self.matcher.can_continue())
    }
}
