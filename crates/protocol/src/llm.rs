//! The pipeline's internal request and response: tokens in, token deltas out.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A vocabulary index. Every tokenizer we support fits in 32 bits.
pub type TokenId = u32;

/// Sampling knobs passed through to engines. `None` means "engine default".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (`Some(0)`: the chosen token's only); `None`: no logprobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// OpenAI `logit_bias`: added to these tokens' logits before sampling (-100 bans a token,
    /// +100 all but forces it). Sorted by token id, no duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logit_bias: Vec<(TokenId, f32)>,
    /// A constraint on the output's form (`response_format`, a forced tool call); `None`: free
    /// text. Only engines whose [`EngineCapabilities::structured_output`] is set receive one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided: Option<GuidedDecoding>,
}

impl SamplingOptions {
    /// What an engine must be able to do to honour these options.
    pub fn required_capabilities(&self) -> EngineCapabilities {
        EngineCapabilities {
            logit_bias: !self.logit_bias.is_empty(),
            structured_output: self.guided.is_some(),
            json_schema_subset: false,
        }
    }
}

/// A constraint on the form of the generated text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "schema", rename_all = "snake_case")]
pub enum GuidedDecoding {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON text valid under this JSON Schema (itself JSON text): `response_format` of type
    /// `json_schema`, or the arguments of a forced tool call.
    JsonSchema(String),
}

/// The request features an engine can honour beyond plain sampling. Announced by each worker
/// (absent in an older worker's record: none); a request that needs one its model's workers
/// lack is a 400, never silently ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineCapabilities {
    /// Applies `SamplingOptions::logit_bias`.
    #[serde(default)]
    pub logit_bias: bool,
    /// Constrains output to `SamplingOptions::guided`.
    #[serde(default)]
    pub structured_output: bool,
    /// Its JSON schemas are those of switchyard-structured's subset (others are refused): the
    /// frontend then checks a request's schema itself, so that a refusal is a 400 before any
    /// response starts, streamed or not. Engines with their own grammar compiler (vLLM,
    /// SGLang behind `engine-upstream`) leave it unset and judge schemas themselves.
    #[serde(default)]
    pub json_schema_subset: bool,
}

impl EngineCapabilities {
    /// Everything `self` has and `other` has too.
    pub fn intersect(self, other: EngineCapabilities) -> EngineCapabilities {
        EngineCapabilities {
            logit_bias: self.logit_bias && other.logit_bias,
            structured_output: self.structured_output && other.structured_output,
            json_schema_subset: self.json_schema_subset && other.json_schema_subset,
        }
    }

    /// The features `needed` asks for that `self` lacks, by their request field names.
    pub fn missing(self, needed: EngineCapabilities) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if needed.logit_bias && !self.logit_bias {
            missing.push("logit_bias");
        }
        if needed.structured_output && !self.structured_output {
            missing.push("response_format");
        }
        missing
    }
}

/// The most top alternatives per token a client may ask for (OpenAI's and vLLM's default cap).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// The most `logit_bias` entries one request may carry (each is applied at every step).
pub const MAX_LOGIT_BIAS_ENTRIES: usize = 1024;

/// A token and its log-probability under the engine's sampling distribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token_id: TokenId,
    pub logprob: f32,
}

/// The log-probabilities of one generated token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputLogprobs {
    /// The generated token's log-probability (≤ 0; `-9999` stands for impossible, as in vLLM).
    pub logprob: f32,
    /// The most likely tokens, most likely first, as many as the request asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TokenLogprob>,
}

/// When generation must end. Engines honour the token-level conditions (`max_tokens`,
/// `stop_token_ids`, EOS unless `ignore_eos`, `min_tokens`); the frontend additionally enforces
/// `stop_strings` on detokenized text and cancels the engine stream when one matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StopConditions {
    /// Maximum number of generated tokens. Always set: the frontend fills it from the context
    /// length when the client omits it.
    pub max_tokens: u32,
    /// Generated tokens before which EOS / stop tokens are ignored.
    pub min_tokens: u32,
    /// Strings that end generation; they are hidden from the output.
    pub stop_strings: Vec<String>,
    /// Token ids that end generation in addition to EOS; hidden from the output.
    pub stop_token_ids: Vec<TokenId>,
    /// The model's end-of-sequence ids (from `generation_config.json` / `tokenizer_config.json`).
    pub eos_token_ids: Vec<TokenId>,
    /// Keep generating past EOS (benchmarks).
    pub ignore_eos: bool,
}

impl StopConditions {
    /// Whether `token` ends generation after `generated` tokens have been produced (including
    /// this one). The one place that decides it, shared by every engine.
    pub fn is_stop_token(&self, token: TokenId, generated: u32) -> bool {
        if generated <= self.min_tokens && self.min_tokens > 0 {
            return false;
        }
        self.stop_token_ids.contains(&token)
            || (!self.ignore_eos && self.eos_token_ids.contains(&token))
    }
}

/// What the frontend sends to a worker: everything an engine needs, nothing about HTTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PreprocessedRequest {
    /// Unique per request; engines use it for logs and cancellation bookkeeping.
    pub request_id: String,
    /// The served model name.
    pub model: String,
    /// Prompt token ids (after chat template and tokenization).
    pub token_ids: Vec<TokenId>,
    pub sampling: SamplingOptions,
    pub stop: StopConditions,
    pub output: OutputOptions,
    /// What the KV cache may be shared with: requests reuse each other's cached blocks only when
    /// both hints are equal (engines key their prefix caches on them, routers their hashes).
    #[serde(default)]
    pub cache_key: CacheKey,
    /// How many tokens at the end of `token_ids` this request generated earlier, on a worker
    /// whose stream broke (a migrated request resumes with prompt + output so far). Engines
    /// treat them as prompt; a scripted engine (echo) uses the count to continue its script.
    #[serde(default)]
    pub resumed_output_tokens: u32,
}

/// The parts of a request besides its tokens that decide which cached blocks it may reuse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    /// LoRA adapter the request runs with: its KV differs from the base model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_name: Option<String>,
    /// Caller-chosen isolation (vLLM's `cache_salt`): only requests with the same salt share
    /// cached blocks, so one tenant cannot probe another's prompts by timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_salt: Option<String>,
}

impl CacheKey {
    pub fn is_empty(&self) -> bool {
        self.lora_name.is_none() && self.cache_salt.is_none()
    }
}

/// How the frontend turns tokens back into text (engines that return text honour it too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputOptions {
    /// Drop special tokens (`<|im_end|>`, ...) from the text; vLLM's default is true.
    pub skip_special_tokens: bool,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            skip_special_tokens: true,
        }
    }
}

/// Why an engine stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS, a stop token id, or (set by the frontend) a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The request was cancelled.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_openai_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            // OpenAI has no "cancelled"; a cancelled request is never reported to its client.
            FinishReason::Cancelled => "stop",
        }
    }
}

/// One step of an engine's output stream. Usually one token; inline storage keeps the common case
/// allocation-free.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineOutput {
    /// Newly generated tokens (may be empty on the final message).
    pub token_ids: SmallVec<[TokenId; 4]>,
    /// Set on the last message of the stream.
    pub finish_reason: Option<FinishReason>,
    /// Prompt tokens the engine found in its prefix cache (reported once, on the first message).
    pub cached_tokens: Option<u32>,
    /// One entry per token of `token_ids` when the request asked for logprobs, else empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<OutputLogprobs>,
}

impl EngineOutput {
    pub fn token(token: TokenId) -> Self {
        let mut token_ids = SmallVec::new();
        token_ids.push(token);
        EngineOutput {
            token_ids,
            finish_reason: None,
            cached_tokens: None,
            logprobs: Vec::new(),
        }
    }

    pub fn finished(mut self, reason: FinishReason) -> Self {
        self.finish_reason = Some(reason);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_respects_ignore_eos_and_min_tokens() {
        let mut stop = StopConditions {
            max_tokens: 10,
            eos_token_ids: vec![2],
            stop_token_ids: vec![7],
            ..Default::default()
        };
        assert!(stop.is_stop_token(2, 1));
        assert!(stop.is_stop_token(7, 1));
        assert!(!stop.is_stop_token(3, 1));
        stop.ignore_eos = true;
        assert!(!stop.is_stop_token(2, 1));
        assert!(stop.is_stop_token(7, 1));
        stop.min_tokens = 3;
        assert!(!stop.is_stop_token(7, 3));
        assert!(stop.is_stop_token(7, 4));
    }
}
