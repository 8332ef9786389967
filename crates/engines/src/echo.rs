//! Echo engine: answers each request with its own prompt tokens, one per step.
//!
//! The "model" behind it always wants to say the prompt and then EOS. EOS is never emitted as a
//! token; it shows up as `finish_reason: Stop` on the last token's item. Like a real engine's
//! EOS it counts as a generated token for `max_tokens` and is suppressed until `min_tokens`
//! tokens exist (or forever with `ignore_eos`); while suppressed the prompt is replayed from its
//! start. So, for a prompt of `n` tokens:
//!
//! - `max_tokens > n`, no stop token in the prompt: the `n` tokens, the last one with `Stop`.
//! - `max_tokens <= n`: the first `max_tokens` tokens, the last one with `Length` (EOS would have
//!   been token `n + 1`, past the limit).
//! - a prompt token in `stop_token_ids` (once `min_tokens` is reached): emitted, with `Stop`;
//!   the frontend hides its text. EOS ids inside the prompt are echoed like any token: a chat
//!   prompt is full of end-of-turn tokens, and the echo "model" says its whole prompt.
//! - `max_tokens == 0`: one item without tokens, `Length`. Empty prompt: one item without
//!   tokens, `Stop`.
//! - a resumed (migrated) request, whose last `resumed_output_tokens` prompt tokens are what an
//!   earlier stream already said: the script is the prompt before them, continued from there,
//!   so a migrated echo says exactly what an unbroken one would have.
//!
//! All work happens inside `poll_next`: there is no task and no channel, so dropping the stream
//! stops it at once. With a zero delay every poll is ready and costs one inline
//! [`EngineOutput`]; the stream still spends the Tokio co-operative budget so a long echo cannot
//! starve the worker thread it is polled on. With a delay, tokens are paced by a
//! [`tokio::time::Interval`] (first item at once), so the stream must be polled inside a Tokio
//! runtime.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use switchyard_protocol::{
    EngineCapabilities, EngineOutput, FinishReason, OutputLogprobs, PreprocessedRequest,
    StopConditions, TokenId, TokenLogprob,
};
use tokio::time::{Interval, MissedTickBehavior};

use crate::{Engine, EngineError, EngineInfo, EngineStream};

/// How the echo engine paces its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoConfig {
    /// Pause between two consecutive items of a stream; zero means none.
    pub token_delay: Duration,
}

/// Replays each request's prompt tokens; see the module docs for the exact finish rules.
#[derive(Clone, Debug, Default)]
pub struct EchoEngine {
    config: EchoConfig,
}

impl EchoEngine {
    pub fn new(config: EchoConfig) -> Self {
        EchoEngine { config }
    }

    pub fn config(&self) -> EchoConfig {
        self.config
    }

    /// The concrete stream behind [`Engine::generate`], for callers that want to avoid the box.
    pub fn echo_stream(&self, request: PreprocessedRequest) -> EchoStream {
        EchoStream::new(request, self.config.token_delay)
    }
}

impl Engine for EchoEngine {
    fn generate(&self, request: PreprocessedRequest) -> EngineStream {
        Box::pin(self.echo_stream(request))
    }

    fn info(&self) -> EngineInfo {
        EngineInfo {
            kind: "echo",
            kv_block_size: None,
            kv_total_blocks: None,
            capabilities: EngineCapabilities::default(),
        }
    }
}

/// Token pacing: created on the first poll so that `generate` needs no runtime.
enum Pacer {
    Unpaced,
    NotStarted(Duration),
    Ticking(Interval),
}

/// The echo engine's output stream for one request.
pub struct EchoStream {
    prompt: Vec<TokenId>,
    stop: StopConditions,
    /// Whether any token id can end the stream (skips the per-token check when none can).
    has_stop_ids: bool,
    /// Tokens emitted so far by this stream.
    generated: u32,
    /// Where in its script this stream starts: a resumed request already said that many.
    offset: usize,
    done: bool,
    pacer: Pacer,
    /// Alternatives per token to report, when the request asked for logprobs.
    logprobs: Option<u32>,
}

/// What vLLM reports for a token the model gives no chance (JSON has no −∞).
const IMPOSSIBLE_LOGPROB: f32 = -9999.0;

impl EchoStream {
    fn new(request: PreprocessedRequest, token_delay: Duration) -> Self {
        let stop = request.stop;
        let logprobs = request.sampling.logprobs;
        let mut prompt = request.token_ids;
        // A migrated request carries its earlier output after the prompt: the script is the
        // original prompt, continued where the broken stream stopped.
        let offset = (request.resumed_output_tokens as usize).min(prompt.len());
        prompt.truncate(prompt.len() - offset);
        EchoStream {
            prompt,
            has_stop_ids: !stop.stop_token_ids.is_empty(),
            stop,
            generated: 0,
            offset,
            done: false,
            pacer: if token_delay.is_zero() {
                Pacer::Unpaced
            } else {
                Pacer::NotStarted(token_delay)
            },
            logprobs,
        }
    }

    /// The echo "model" is certain of its next token: log-probability 0. Its alternatives are
    /// the prompt's other tokens, impossible for it (-9999, vLLM's stand-in for −∞).
    fn token_logprobs(&self, token: TokenId, k: u32) -> OutputLogprobs {
        let mut top = Vec::with_capacity(k as usize);
        if k > 0 {
            top.push(TokenLogprob {
                token_id: token,
                logprob: 0.0,
            });
        }
        for &other in &self.prompt {
            if top.len() >= k as usize {
                break;
            }
            if top.iter().all(|t| t.token_id != other) {
                top.push(TokenLogprob {
                    token_id: other,
                    logprob: IMPOSSIBLE_LOGPROB,
                });
            }
        }
        OutputLogprobs { logprob: 0.0, top }
    }

    /// The next item, ignoring pacing. `None` once the finishing item has been returned.
    fn next_output(&mut self) -> Option<EngineOutput> {
        if self.done {
            return None;
        }
        if self.stop.max_tokens == 0 {
            self.done = true;
            return Some(EngineOutput::default().finished(FinishReason::Length));
        }
        if self.prompt.is_empty() {
            self.done = true;
            return Some(EngineOutput::default().finished(FinishReason::Stop));
        }
        let prompt_len = self.prompt.len();
        // usize -> u32 cannot lose information that matters: `generated` never exceeds
        // `max_tokens`, a u32, so the modulo is taken on values that fit.
        let token = self.prompt[(self.offset + self.generated as usize) % prompt_len];
        self.generated += 1;
        let mut output = EngineOutput::token(token);
        if let Some(k) = self.logprobs {
            output.logprobs.push(self.token_logprobs(token, k));
        }

        let finish = if self.has_stop_ids
            && self.generated > self.stop.min_tokens
            && self.stop.stop_token_ids.contains(&token)
        {
            Some(FinishReason::Stop)
        } else if self.generated >= self.stop.max_tokens {
            Some(FinishReason::Length)
        } else if self.implicit_eos_allowed(prompt_len) {
            Some(FinishReason::Stop)
        } else {
            None
        };
        match finish {
            Some(reason) => {
                self.done = true;
                Some(output.finished(reason))
            }
            None => Some(output),
        }
    }

    /// Whether the EOS the echo "model" wants after the prompt may be token `generated + 1`.
    fn implicit_eos_allowed(&self, prompt_len: usize) -> bool {
        let past_prompt = self.offset + self.generated as usize >= prompt_len;
        // Same rule as `StopConditions::is_stop_token`: a stop at position g needs g > min_tokens.
        past_prompt && !self.stop.ignore_eos && self.generated >= self.stop.min_tokens
    }
}

impl Stream for EchoStream {
    type Item = Result<EngineOutput, EngineError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // Budget first: a pending budget must not swallow an interval tick.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        match &mut this.pacer {
            Pacer::Unpaced => {}
            Pacer::NotStarted(delay) => {
                // The first token comes at once; the interval paces the ones after it.
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + *delay, *delay);
                // A slow reader gets evenly spaced tokens afterwards, not a burst.
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                this.pacer = Pacer::Ticking(interval);
            }
            Pacer::Ticking(interval) => {
                ready!(interval.poll_tick(cx));
            }
        }
        coop.made_progress();
        Poll::Ready(this.next_output().map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done { (0, Some(0)) } else { (1, None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(prompt: &[TokenId], stop: StopConditions) -> EchoStream {
        EchoStream::new(
            PreprocessedRequest {
                token_ids: prompt.to_vec(),
                stop,
                ..Default::default()
            },
            Duration::ZERO,
        )
    }

    fn drain(mut s: EchoStream) -> Vec<EngineOutput> {
        std::iter::from_fn(|| s.next_output()).collect()
    }

    #[test]
    fn min_tokens_replays_prompt_until_eos_allowed() {
        let stop = StopConditions {
            max_tokens: 100,
            min_tokens: 5,
            ..Default::default()
        };
        let out = drain(stream(&[1, 2], stop));
        let tokens: Vec<TokenId> = out
            .iter()
            .flat_map(|o| o.token_ids.iter().copied())
            .collect();
        assert_eq!(tokens, vec![1, 2, 1, 2, 1]);
        assert_eq!(out.last().unwrap().finish_reason, Some(FinishReason::Stop));
        assert!(out[..4].iter().all(|o| o.finish_reason.is_none()));
    }

    #[test]
    fn ignore_eos_runs_to_max_tokens() {
        let stop = StopConditions {
            max_tokens: 7,
            ignore_eos: true,
            ..Default::default()
        };
        let out = drain(stream(&[4, 5, 6], stop));
        assert_eq!(out.len(), 7);
        assert_eq!(out[6].token_ids.as_slice(), &[4]);
        assert_eq!(out[6].finish_reason, Some(FinishReason::Length));
    }

    #[test]
    fn resumed_request_continues_the_script_where_it_broke() {
        let whole = drain(stream(
            &[1, 2, 3, 4, 5],
            StopConditions {
                max_tokens: 100,
                ..Default::default()
            },
        ));
        assert_eq!(whole.len(), 5);
        // The first stream said 1, 2 and broke; the resumed one gets prompt + [1, 2], 2 resumed
        // tokens and the remaining budget.
        let resume = |max_tokens| {
            drain(EchoStream::new(
                PreprocessedRequest {
                    token_ids: vec![1, 2, 3, 4, 5, 1, 2],
                    resumed_output_tokens: 2,
                    stop: StopConditions {
                        max_tokens,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                Duration::ZERO,
            ))
        };
        assert_eq!(resume(98), whole[2..].to_vec());
        // Resumed with a budget that ends early: Length after the budget.
        let capped = resume(2);
        let tokens: Vec<TokenId> = capped.iter().flat_map(|o| o.token_ids.clone()).collect();
        assert_eq!(tokens, vec![3, 4]);
        assert_eq!(capped[1].finish_reason, Some(FinishReason::Length));
    }

    #[test]
    fn exhausted_stream_stays_exhausted() {
        let stop = StopConditions {
            max_tokens: 1,
            ..Default::default()
        };
        let mut s = stream(&[9, 9], stop);
        assert!(s.next_output().is_some());
        assert!(s.next_output().is_none());
        assert!(s.next_output().is_none());
    }
}
