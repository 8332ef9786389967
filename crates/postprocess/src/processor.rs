//! One choice of one request: engine outputs in, client text deltas out.

use std::sync::Arc;

use switchyard_protocol::{EngineOutput, FinishReason, StopConditions};
use tokenizers::Tokenizer;

use crate::{IncrementalDetokenizer, PostprocessError, StopStringMatcher};

/// What to send the client for one engine output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta<'a> {
    /// Text to send now; may be empty (held back, or a hidden token).
    pub text: &'a str,
    /// Set on the last delta of the choice. `Stop` because of a stop string or stop token found
    /// here means the engine may still be running: the caller drops the engine stream to cancel
    /// it. Likewise `Length` when `max_tokens` was reached before the engine said so.
    pub finish_reason: Option<FinishReason>,
}

/// What ended generation with [`FinishReason::Stop`] (vLLM's `stop_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason<'a> {
    /// A stop token id or EOS (hidden from the text).
    TokenId(u32),
    /// A stop string (hidden from the text, as is everything after it).
    String(&'a str),
}

/// Detokenizes, applies stop conditions and counts tokens for one choice of one request.
///
/// Per token: count it; if it is a stop token (EOS unless `ignore_eos`, or a stop token id, once
/// `min_tokens` is reached) finish with `Stop` and hide its text; otherwise detokenize it and run
/// the text through the stop-string matcher. `max_tokens` is enforced as a safety net. When the
/// choice finishes, text still held back (an incomplete character, a partial stop string) is
/// flushed into the final delta.
pub struct PostProcessor {
    detokenizer: IncrementalDetokenizer,
    matcher: StopStringMatcher,
    /// The token-level conditions (stop strings live in `matcher`).
    stop: StopConditions,
    completion_tokens: u32,
    /// Text of the current delta, reused across outputs.
    text: String,
    finish_reason: Option<FinishReason>,
    stop_token: Option<u32>,
}

impl PostProcessor {
    /// A postprocessor whose text is exactly `decode(generated_ids)` (minus hidden tokens).
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        stop: &StopConditions,
        skip_special_tokens: bool,
    ) -> Self {
        let detokenizer = IncrementalDetokenizer::without_context(tokenizer, skip_special_tokens);
        Self::with_detokenizer(detokenizer, stop)
    }

    /// A postprocessor whose text continues the prompt: the first generated word keeps its
    /// leading space with SentencePiece tokenizers (see [`IncrementalDetokenizer`]). Fails if the
    /// prompt tail holds ids the tokenizer does not know.
    pub fn with_prompt_tail(
        tokenizer: Arc<Tokenizer>,
        stop: &StopConditions,
        skip_special_tokens: bool,
        prompt_tail: &[u32],
    ) -> Result<Self, PostprocessError> {
        let detokenizer = IncrementalDetokenizer::new(tokenizer, prompt_tail, skip_special_tokens)?;
        Ok(Self::with_detokenizer(detokenizer, stop))
    }

    fn with_detokenizer(detokenizer: IncrementalDetokenizer, stop: &StopConditions) -> Self {
        PostProcessor {
            detokenizer,
            matcher: StopStringMatcher::new(stop.stop_strings.clone()),
            stop: StopConditions {
                max_tokens: stop.max_tokens,
                min_tokens: stop.min_tokens,
                stop_strings: Vec::new(),
                stop_token_ids: stop.stop_token_ids.clone(),
                eos_token_ids: stop.eos_token_ids.clone(),
                ignore_eos: stop.ignore_eos,
            },
            completion_tokens: 0,
            text: String::new(),
            finish_reason: None,
            stop_token: None,
        }
    }

    /// Processes one engine output. Tokens after a stop (or beyond `max_tokens`) in the same
    /// output are ignored and not counted. Calling again after a delta carried a finish reason is
    /// an error.
    pub fn on_output(&mut self, out: &EngineOutput) -> Result<Delta<'_>, PostprocessError> {
        if self.finish_reason.is_some() {
            return Err(PostprocessError::AfterFinish);
        }
        self.text.clear();
        let mut finish = None;
        let last = out.token_ids.len().saturating_sub(1);
        let engine_stopped = out.finish_reason == Some(FinishReason::Stop);
        for (i, &token) in out.token_ids.iter().enumerate() {
            if self.completion_tokens >= self.stop.max_tokens {
                finish = Some(FinishReason::Length);
                break;
            }
            self.completion_tokens += 1;
            if self.ends_generation(token, engine_stopped && i == last) {
                self.stop_token = Some(token);
                finish = Some(FinishReason::Stop);
                break;
            }
            if let Some(piece) = self.detokenizer.push(token)? {
                let released = self.matcher.push(piece);
                self.text.push_str(released.text);
                if released.stopped {
                    finish = Some(FinishReason::Stop);
                    break;
                }
            }
            if self.completion_tokens >= self.stop.max_tokens {
                finish = Some(FinishReason::Length);
                break;
            }
        }
        if let Some(reason) = finish.or(out.finish_reason) {
            let stopped_by_string = self.matcher.matched().is_some() || self.flush()?;
            self.finish_reason = Some(if stopped_by_string {
                FinishReason::Stop
            } else {
                reason
            });
        }
        Ok(Delta {
            text: &self.text,
            finish_reason: self.finish_reason,
        })
    }

    /// Whether `token` is a hidden stop token. Stop token ids the client asked for are enforced
    /// here too (a safety net over the engine). EOS counts only where the engine itself stopped
    /// on it: an EOS id in the middle of a stream is ordinary text (an echo of a chat prompt is
    /// full of end-of-turn tokens), which `skip_special_tokens` usually hides anyway.
    fn ends_generation(&self, token: u32, engine_stopped_on_it: bool) -> bool {
        if engine_stopped_on_it {
            return self.stop.is_stop_token(token, self.completion_tokens);
        }
        self.completion_tokens > self.stop.min_tokens && self.stop.stop_token_ids.contains(&token)
    }

    /// Appends all held-back text to the delta; returns whether a stop string matched in it.
    fn flush(&mut self) -> Result<bool, PostprocessError> {
        if let Some(piece) = self.detokenizer.finish()? {
            let released = self.matcher.push(piece);
            self.text.push_str(released.text);
            if released.stopped {
                return Ok(true);
            }
        }
        let released = self.matcher.flush();
        self.text.push_str(released.text);
        Ok(released.stopped)
    }

    /// The text of the most recent delta (what [`Self::on_output`] last returned).
    pub fn last_text(&self) -> &str {
        &self.text
    }

    /// Tokens the engine generated so far, up to and including a stop / EOS token or the token
    /// that completed a stop string (vLLM counts the same way).
    pub fn completion_tokens(&self) -> u32 {
        self.completion_tokens
    }

    /// The finish reason, once the choice has finished.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    /// What triggered a [`FinishReason::Stop`] decided here (None if the engine stopped on its own
    /// or the choice has not stopped).
    pub fn stop_reason(&self) -> Option<StopReason<'_>> {
        if let Some(token) = self.stop_token {
            return Some(StopReason::TokenId(token));
        }
        self.matcher.matched_str().map(StopReason::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tokenizers::{bytelevel_tokenizer, sentencepiece_tokenizer};

    const END: u32 = 260; // `<|end|>` in the byte-level test tokenizer
    const TOOL: u32 = 261; // `<tool>`

    fn ids(text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    fn stop(max_tokens: u32, stop_strings: &[&str]) -> StopConditions {
        StopConditions {
            max_tokens,
            stop_strings: stop_strings.iter().map(|s| s.to_string()).collect(),
            eos_token_ids: vec![END],
            ..Default::default()
        }
    }

    fn processor(stop: &StopConditions, skip: bool) -> PostProcessor {
        let tok = Arc::new(bytelevel_tokenizer());
        assert_eq!(tok.token_to_id("<|end|>"), Some(END));
        assert_eq!(tok.token_to_id("<tool>"), Some(TOOL));
        PostProcessor::new(tok, stop, skip)
    }

    /// Feeds one token per output (the last output also carries `engine_finish`); returns the
    /// deltas' text and the finish reasons seen.
    fn run(
        pp: &mut PostProcessor,
        tokens: &[u32],
        engine_finish: Option<FinishReason>,
    ) -> (String, Vec<FinishReason>) {
        let mut text = String::new();
        let mut reasons = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            let mut out = EngineOutput::token(t);
            if i + 1 == tokens.len() {
                out.finish_reason = engine_finish;
            }
            let delta = pp.on_output(&out).unwrap();
            text.push_str(delta.text);
            if let Some(r) = delta.finish_reason {
                reasons.push(r);
                break;
            }
        }
        (text, reasons)
    }

    #[test]
    fn eos_is_counted_but_not_shown() {
        let mut pp = processor(&stop(100, &[]), false);
        let mut tokens = ids("hi");
        tokens.push(END);
        let (text, reasons) = run(&mut pp, &tokens, Some(FinishReason::Stop));
        assert_eq!(text, "hi");
        assert_eq!(reasons, [FinishReason::Stop]);
        assert_eq!(pp.completion_tokens(), 3);
        assert_eq!(pp.stop_reason(), Some(StopReason::TokenId(END)));
    }

    #[test]
    fn eos_mid_stream_is_text_unless_the_engine_stops_on_it() {
        // An echo of a chat prompt is full of end-of-turn tokens; only the engine knows whether
        // an EOS ended generation.
        let mut pp = processor(&stop(100, &[]), true);
        let mut tokens = ids("a");
        tokens.push(END);
        tokens.extend(ids("zz"));
        let (text, reasons) = run(&mut pp, &tokens, None);
        assert_eq!((text.as_str(), reasons.len()), ("azz", 0));
        assert_eq!(pp.completion_tokens(), 4);
        let (text, reasons) = run(&mut pp, &[END], Some(FinishReason::Stop));
        assert_eq!(
            (text.as_str(), reasons.as_slice()),
            ("", &[FinishReason::Stop][..])
        );
        assert_eq!(pp.completion_tokens(), 5);
        assert_eq!(
            pp.on_output(&EngineOutput::token(1)).unwrap_err(),
            PostprocessError::AfterFinish
        );
    }

    #[test]
    fn ignore_eos_makes_eos_ordinary_text() {
        let mut conditions = stop(100, &[]);
        conditions.ignore_eos = true;
        let mut pp = processor(&conditions, false);
        let mut tokens = ids("a");
        tokens.push(END);
        tokens.extend(ids("b"));
        let (text, reasons) = run(&mut pp, &tokens, Some(FinishReason::Length));
        assert_eq!(text, "a<|end|>b");
        assert_eq!(reasons, [FinishReason::Length]);
        assert_eq!(pp.completion_tokens(), 3);
    }

    #[test]
    fn stop_token_ids_are_hidden_and_respect_min_tokens() {
        let mut conditions = stop(100, &[]);
        conditions.stop_token_ids = vec![TOOL];
        conditions.min_tokens = 2;
        let mut pp = processor(&conditions, false);
        // The first <tool> comes before min_tokens: ordinary text.
        let tokens = [TOOL, u32::from(b'x'), TOOL, u32::from(b'y')];
        let (text, reasons) = run(&mut pp, &tokens, None);
        assert_eq!(text, "<tool>x");
        assert_eq!(reasons, [FinishReason::Stop]);
        assert_eq!(pp.completion_tokens(), 3);
    }

    #[test]
    fn stop_string_across_tokens_cuts_the_text_and_stops() {
        let mut pp = processor(&stop(100, &["</s>"]), true);
        let (text, reasons) = run(&mut pp, &ids("ok</s>more"), None);
        assert_eq!(text, "ok");
        assert_eq!(reasons, [FinishReason::Stop]);
        assert_eq!(pp.completion_tokens(), 6);
        assert_eq!(pp.stop_reason(), Some(StopReason::String("</s>")));
    }

    #[test]
    fn max_tokens_is_enforced_when_the_engine_does_not_stop() {
        let mut pp = processor(&stop(3, &[]), true);
        let (text, reasons) = run(&mut pp, &ids("abcdef"), None);
        assert_eq!(text, "abc");
        assert_eq!(reasons, [FinishReason::Length]);
        assert_eq!(pp.completion_tokens(), 3);
        assert_eq!(pp.stop_reason(), None);
    }

    #[test]
    fn stop_token_at_max_tokens_is_a_stop() {
        let mut pp = processor(&stop(2, &[]), true);
        let (_, reasons) = run(&mut pp, &[u32::from(b'a'), END], Some(FinishReason::Stop));
        assert_eq!(reasons, [FinishReason::Stop]);
    }

    #[test]
    fn held_text_is_flushed_on_the_final_delta() {
        // A partial stop string and an incomplete character are both held, then released.
        let mut pp = processor(&stop(100, &["<e"]), true);
        let mut tokens = ids("x<");
        let (text, reasons) = run(&mut pp, &tokens, None);
        assert_eq!((text.as_str(), reasons.len()), ("x", 0));
        tokens = vec![0xE4, 0xBD];
        let (text, reasons) = run(&mut pp, &tokens, Some(FinishReason::Length));
        assert_eq!(text, "<\u{FFFD}");
        assert_eq!(reasons, [FinishReason::Length]);
    }

    #[test]
    fn stop_string_completed_by_the_flush_turns_length_into_stop() {
        // "bc" completed while "abcd" was still possible; the stream ends: "bc" stands.
        let mut pp = processor(&stop(100, &["abcd", "bc"]), true);
        let (text, reasons) = run(&mut pp, &ids("xabc"), Some(FinishReason::Length));
        assert_eq!(text, "xa");
        assert_eq!(reasons, [FinishReason::Stop]);
        assert_eq!(pp.stop_reason(), Some(StopReason::String("bc")));
    }

    #[test]
    fn several_tokens_in_one_output() {
        let mut pp = processor(&stop(100, &["!"]), true);
        let out = EngineOutput {
            token_ids: ids("hey!you").into_iter().collect(),
            ..Default::default()
        };
        let delta = pp.on_output(&out).unwrap();
        assert_eq!(delta.text, "hey");
        assert_eq!(delta.finish_reason, Some(FinishReason::Stop));
        assert_eq!(pp.completion_tokens(), 4);
    }

    #[test]
    fn empty_final_output_carries_the_engine_reason() {
        let mut pp = processor(&stop(100, &[]), true);
        let (text, _) = run(&mut pp, &ids("ab"), None);
        assert_eq!(text, "ab");
        let delta = pp
            .on_output(&EngineOutput::default().finished(FinishReason::Stop))
            .unwrap();
        assert_eq!(
            (delta.text, delta.finish_reason),
            ("", Some(FinishReason::Stop))
        );
        assert_eq!(pp.completion_tokens(), 2);
        assert_eq!(pp.stop_reason(), None);
    }

    #[test]
    fn sentencepiece_continuation_of_the_prompt() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let id = |piece: &str| tok.token_to_id(piece).unwrap();
        let conditions = StopConditions {
            max_tokens: 10,
            eos_token_ids: vec![id("</s>")],
            ..Default::default()
        };
        let prompt = [id("<s>"), id("▁Hello")];
        let mut pp =
            PostProcessor::with_prompt_tail(tok.clone(), &conditions, true, &prompt).unwrap();
        let (text, reasons) = run(
            &mut pp,
            &[id("▁world"), id("!"), id("</s>")],
            Some(FinishReason::Stop),
        );
        assert_eq!(text, " world!");
        assert_eq!(reasons, [FinishReason::Stop]);
        assert_eq!(pp.completion_tokens(), 3);
        // Without the prompt, the text is exactly the decode of the generated tokens.
        let mut pp = PostProcessor::new(tok.clone(), &conditions, true);
        let (text, _) = run(
            &mut pp,
            &[id("▁world"), id("!"), id("</s>")],
            Some(FinishReason::Stop),
        );
        assert_eq!(text, "world!");
    }

    #[test]
    fn unknown_token_is_an_error() {
        let mut pp = processor(&stop(100, &[]), true);
        assert_eq!(
            pp.on_output(&EngineOutput::token(1_000_000)).unwrap_err(),
            PostprocessError::UnknownToken { token: 1_000_000 }
        );
    }
}
