//! OpenAI HTTP bodies: chat completions, completions, models.
//!
//! Request types own their data (they are parsed once); response and chunk types borrow, so a
//! streamed chunk serializes without copying the model name, id or text.
//! Unknown request fields are accepted and ignored, as OpenAI's own server and vLLM do.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// `stop`: a string or a list of strings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

impl StopSpec {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    /// vLLM extension: usage on every chunk.
    #[serde(default)]
    pub continuous_usage_stats: bool,
}

/// Fields shared by chat and text completions: sampling, stop conditions, streaming.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommonParams {
    /// Signed so that a negative value gets a clear message rather than a parse error.
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StopSpec>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    /// vLLM/Dynamo extension: generate past EOS.
    #[serde(default)]
    pub ignore_eos: bool,
    /// vLLM extension: EOS and stop tokens are ignored until this many tokens exist.
    pub min_tokens: Option<i64>,
    /// vLLM extension: keep special tokens such as `<|im_end|>` in the text when false.
    pub skip_special_tokens: Option<bool>,
    /// vLLM extension: only requests with the same salt share prefix-cache blocks.
    pub cache_salt: Option<String>,
    pub user: Option<String>,
    /// Token id (as a string key, OpenAI's shape) → bias in [-100, 100] added to its logit.
    pub logit_bias: Option<std::collections::BTreeMap<String, f64>>,
}

/// The largest `n` accepted: each choice is a separate engine request.
pub const MAX_CHOICES_PER_PROMPT: u32 = 128;

impl CommonParams {
    /// Choices generated for each prompt (`n`, default 1); valid after [`Self::validate`].
    pub fn choices_per_prompt(&self) -> u32 {
        self.n
            .map_or(1, |n| n.clamp(1, i64::from(MAX_CHOICES_PER_PROMPT)) as u32)
    }

    /// Range checks shared by both endpoints; every failure names its field.
    pub fn validate(&self) -> Result<(), ApiError> {
        check_range(
            "temperature",
            self.temperature,
            |t| (0.0..=2.0).contains(&t),
            "between 0 and 2",
        )?;
        check_range("top_p", self.top_p, |p| p > 0.0 && p <= 1.0, "in (0, 1]")?;
        check_range(
            "min_p",
            self.min_p,
            |p| (0.0..=1.0).contains(&p),
            "in [0, 1]",
        )?;
        check_range(
            "top_k",
            self.top_k,
            |k| k == -1 || k >= 1,
            "-1 (disabled) or at least 1",
        )?;
        if self.cache_salt.as_deref() == Some("") {
            return Err(ApiError::invalid_param(
                "cache_salt",
                "cache_salt must be a non-empty string if provided",
            ));
        }
        if let Some(n) = self.n {
            if n < 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n must be at least 1, got {n}"),
                ));
            }
            if n > MAX_CHOICES_PER_PROMPT as i64 {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n must be at most {MAX_CHOICES_PER_PROMPT}, got {n}"),
                ));
            }
        }
        if let Some(m) = self.max_tokens {
            if m < 0 {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("max_tokens must be at least 0, got {m}"),
                ));
            }
            if m > u32::MAX as i64 {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("max_tokens is too large: {m}"),
                ));
            }
        }
        if let Some(m) = self.min_tokens {
            if m < 0 || m > u32::MAX as i64 {
                return Err(ApiError::invalid_param(
                    "min_tokens",
                    format!("min_tokens must be a non-negative integer, got {m}"),
                ));
            }
            if let Some(max) = self.max_tokens
                && m > max
            {
                return Err(ApiError::invalid_param(
                    "min_tokens",
                    format!("min_tokens ({m}) must not exceed max_tokens ({max})"),
                ));
            }
        }
        check_range(
            "presence_penalty",
            self.presence_penalty,
            |v| (-2.0..=2.0).contains(&v),
            "between -2 and 2",
        )?;
        check_range(
            "frequency_penalty",
            self.frequency_penalty,
            |v| (-2.0..=2.0).contains(&v),
            "between -2 and 2",
        )?;
        check_range(
            "repetition_penalty",
            self.repetition_penalty,
            |v| v > 0.0 && v <= 2.0,
            "in (0, 2]",
        )?;
        if let Some(stop) = &self.stop {
            let n = match stop {
                StopSpec::One(s) => usize::from(!s.is_empty()),
                StopSpec::Many(v) => {
                    if v.iter().any(String::is_empty) {
                        return Err(ApiError::invalid_param(
                            "stop",
                            "stop strings must not be empty",
                        ));
                    }
                    v.len()
                }
            };
            if n > 16 {
                return Err(ApiError::invalid_param(
                    "stop",
                    format!("at most 16 stop strings are allowed, got {n}"),
                ));
            }
        }
        Ok(())
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage || o.continuous_usage_stats)
    }
}

/// A 400 naming `param` unless the value is absent or `valid`.
fn check_range<T: Copy + std::fmt::Display>(
    param: &str,
    value: Option<T>,
    valid: impl Fn(T) -> bool,
    expected: &str,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !valid(v) => Err(ApiError::invalid_param(
            param,
            format!("{param} must be {expected}, got {v}"),
        )),
        _ => Ok(()),
    }
}

/// A chat message role. Unknown roles are a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// One chat message. `content` is a string, a list of content parts, or null; every other field
/// (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`, ...) is kept for the chat template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub common: CommonParams,
    /// Newer name of `max_tokens`; wins when both are given.
    pub max_completion_tokens: Option<i64>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    /// Extra variables for the chat template (e.g. `enable_thinking`).
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Defaults to true; false with `continue_final_message` continues the last message.
    pub add_generation_prompt: Option<bool>,
    #[serde(default)]
    pub continue_final_message: bool,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub response_format: Option<ResponseFormat>,
}

/// `response_format`: free text, any JSON object, or JSON under a schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// The `json_schema` member of a `response_format` of type `json_schema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON Schema the output must satisfy (absent: any JSON).
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl ChatCompletionRequest {
    /// Checks ranges and shapes; the merged `max_tokens` is left in `common.max_tokens`.
    pub fn validate(&mut self) -> Result<(), ApiError> {
        if self.max_completion_tokens.is_some() {
            self.common.max_tokens = self.max_completion_tokens;
        }
        self.common.validate()?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "messages must contain at least one message",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            match &m.content {
                Value::Null | Value::String(_) => {}
                Value::Array(parts) => {
                    for part in parts {
                        let kind = part.get("type").and_then(Value::as_str);
                        if kind != Some("text") || !part.get("text").is_some_and(Value::is_string) {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{i}].content"),
                                "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported",
                            ));
                        }
                    }
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].content"),
                        "content must be a string, a list of content parts, or null",
                    ));
                }
            }
            if m.content.is_null()
                && m.role != Role::Assistant
                && !m.extra.contains_key("tool_calls")
            {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].content"),
                    format!("a {} message needs content", m.role.as_str()),
                ));
            }
        }
        if self.continue_final_message && self.add_generation_prompt == Some(true) {
            return Err(ApiError::invalid_param(
                "continue_final_message",
                "continue_final_message and add_generation_prompt cannot both be true",
            ));
        }
        if let Some(k) = self.top_logprobs {
            check_top_logprobs("top_logprobs", k)?;
            if self.logprobs != Some(true) {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "top_logprobs needs logprobs set to true",
                ));
            }
        }
        Ok(())
    }

    /// Alternatives per token to report, if logprobs were asked for (valid after `validate`).
    pub fn requested_logprobs(&self) -> Option<u32> {
        (self.logprobs == Some(true)).then(|| self.top_logprobs.unwrap_or(0).max(0) as u32)
    }
}

fn check_top_logprobs(param: &str, k: i64) -> Result<(), ApiError> {
    if !(0..=i64::from(crate::MAX_TOP_LOGPROBS)).contains(&k) {
        return Err(ApiError::invalid_param(
            param,
            format!(
                "{param} must be between 0 and {}, got {k}",
                crate::MAX_TOP_LOGPROBS
            ),
        ));
    }
    Ok(())
}

/// `prompt` of a completion: a string, strings, token ids, or lists of token ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One prompt of a (possibly batched) completion request.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

impl Prompt {
    /// Splits a batch into its prompts; an empty batch or empty prompt is a 400.
    pub fn into_inputs(self) -> Result<Vec<PromptInput>, ApiError> {
        let inputs: Vec<PromptInput> = match self {
            Prompt::Text(s) => vec![PromptInput::Text(s)],
            Prompt::Texts(v) => v.into_iter().map(PromptInput::Text).collect(),
            Prompt::Tokens(t) => vec![PromptInput::Tokens(t)],
            Prompt::TokenLists(v) => v.into_iter().map(PromptInput::Tokens).collect(),
        };
        if inputs.is_empty() {
            return Err(ApiError::invalid_param(
                "prompt",
                "prompt must not be empty",
            ));
        }
        if inputs
            .iter()
            .any(|p| matches!(p, PromptInput::Tokens(t) if t.is_empty()))
        {
            return Err(ApiError::invalid_param(
                "prompt",
                "a token-id prompt must not be empty",
            ));
        }
        Ok(inputs)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub common: CommonParams,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
    pub logprobs: Option<i64>,
    pub best_of: Option<i64>,
    /// vLLM extension: constrain the completion's form as chat's `response_format` does.
    pub response_format: Option<ResponseFormat>,
}

impl CompletionRequest {
    /// Candidates generated per prompt: `best_of` when given, else `n` (valid after `validate`).
    pub fn candidates_per_prompt(&self) -> u32 {
        let n = self.common.choices_per_prompt();
        self.best_of.map_or(n, |b| (b.max(1) as u32).max(n))
    }

    /// Alternatives per token to report, if logprobs were asked for (valid after `validate`).
    pub fn requested_logprobs(&self) -> Option<u32> {
        self.logprobs.map(|k| k.max(0) as u32)
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        self.common.validate()?;
        if let Some(k) = self.logprobs {
            check_top_logprobs("logprobs", k)?;
        }
        if self.echo && self.logprobs.is_some() {
            // Echoed logprobs cover the prompt too, and no engine here reports prompt logprobs.
            return Err(ApiError::invalid_param(
                "echo",
                "echo together with logprobs is not supported (engines report no prompt logprobs)",
            ));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
        }
        if let Some(b) = self.best_of {
            let n = self.common.n.unwrap_or(1);
            if b < n || b > i64::from(MAX_CHOICES_PER_PROMPT) {
                return Err(ApiError::invalid_param(
                    "best_of",
                    format!(
                        "best_of must be at least n ({n}) and at most {MAX_CHOICES_PER_PROMPT}, got {b}"
                    ),
                ));
            }
            if self.common.stream && b > n {
                return Err(ApiError::invalid_param(
                    "best_of",
                    "best_of greater than n cannot be streamed: the best choices are known only at the end",
                ));
            }
        }
        Ok(())
    }
}

/// Token counts reported to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: Option<u32>) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: cached_tokens
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

// ---- responses (borrowing) ----

#[derive(Clone, Debug, Serialize)]
pub struct ChatCompletionResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChatChoice<'a>>,
    pub usage: Usage,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: ResponseMessage<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResponseMessage<'a> {
    pub role: &'static str,
    /// `None` when the message is only tool calls.
    pub content: Option<&'a str>,
    /// The model's reasoning, split off by a `--reasoning-parser`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut<'a>>,
}

/// One finished tool call of a message.
#[derive(Clone, Debug, Serialize)]
pub struct ToolCallOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut<'a>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FunctionCallOut<'a> {
    pub name: &'a str,
    /// JSON text, as the model wrote it.
    pub arguments: &'a str,
}

/// A piece of a streamed tool call: the first carries `id`, `type` and the name, the later
/// ones the next piece of the arguments.
#[derive(Clone, Debug, Serialize)]
pub struct ToolCallChunk<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCallChunk<'a>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FunctionCallChunk<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [ChatChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatChunkChoice<'a> {
    pub index: u32,
    pub delta: ChatDelta<'a>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ChatDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallChunk<'a>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<CompletionChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A streamed completion chunk (borrowing its single choice, so no allocation per token).
#[derive(Clone, Debug, Serialize)]
pub struct CompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [CompletionChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionChoice<'a> {
    pub index: u32,
    /// Borrowed unless an echoed prompt is put before the generated text.
    pub text: std::borrow::Cow<'a, str>,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// Chat `logprobs`: one entry per generated token.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token text's UTF-8 bytes.
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// Legacy completions `logprobs`: parallel arrays, one element per generated token.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    /// Per token, the alternatives as a `{token text: logprob}` object.
    pub top_logprobs: Vec<TopLogprobMap>,
    /// Per token, where its text starts in the choice's text, in characters.
    pub text_offset: Vec<u32>,
}

/// Serialized as a JSON object in insertion order (most likely first); a token text seen twice
/// keeps its first (highest) value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopLogprobMap(pub Vec<(String, f32)>);

impl Serialize for TopLogprobMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (i, (token, logprob)) in self.0.iter().enumerate() {
            if self.0[..i].iter().all(|(seen, _)| seen != token) {
                map.serialize_entry(token, logprob)?;
            }
        }
        map.end()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// vLLM extension: the longest prompt + output the model takes, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
}

/// `POST /tokenize` (vLLM's extension): a `prompt`, or chat `messages` rendered through the
/// model's chat template exactly as a chat completion would render them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// May be left out when the server serves one model.
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    /// Let the tokenizer add its special tokens (BOS): default true for a prompt, false for
    /// messages (the template places them).
    pub add_special_tokens: Option<bool>,
    pub add_generation_prompt: Option<bool>,
    #[serde(default)]
    pub continue_final_message: bool,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    pub tools: Option<Vec<Value>>,
    /// Also return each token's text.
    #[serde(default)]
    pub return_token_strs: bool,
}

impl TokenizeRequest {
    /// Exactly one of `prompt` and `messages`.
    pub fn validate(&self) -> Result<(), ApiError> {
        match (&self.prompt, &self.messages) {
            (Some(_), Some(_)) => Err(ApiError::invalid_param(
                "messages",
                "give either prompt or messages, not both",
            )),
            (None, None) => Err(ApiError::invalid_param(
                "prompt",
                "give a prompt (text) or messages (chat) to tokenize",
            )),
            _ => Ok(()),
        }
    }

    /// The chat request whose prompt `messages` describe.
    pub fn into_chat_request(self, model: String) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model,
            messages: self.messages.unwrap_or_default(),
            tools: self.tools,
            chat_template_kwargs: self.chat_template_kwargs,
            add_generation_prompt: self.add_generation_prompt,
            continue_final_message: self.continue_final_message,
            ..ChatCompletionRequest::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizeResponse {
    pub count: usize,
    pub max_model_len: u32,
    pub tokens: Vec<u32>,
    /// Each token's text, when `return_token_strs` was set.
    pub token_strs: Option<Vec<String>>,
}

/// `POST /detokenize` (vLLM's extension).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetokenizeResponse {
    pub prompt: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn chat(json: &str) -> Result<ChatCompletionRequest, ApiError> {
        let mut req: ChatCompletionRequest =
            serde_json::from_str(json).map_err(|e| ApiError::invalid(e.to_string()))?;
        req.validate()?;
        Ok(req)
    }

    #[test]
    fn accepts_a_plain_chat_request_and_ignores_unknown_fields() {
        let req = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
               "max_completion_tokens":5,"something_new":1}"#,
        )
        .unwrap();
        assert!(req.common.stream);
        assert_eq!(req.common.max_tokens, Some(5));
    }

    #[test]
    fn rejects_out_of_range_values_naming_the_field() {
        for (json, param) in [
            (r#""temperature":2.5"#, "temperature"),
            (r#""top_p":0"#, "top_p"),
            (r#""n":0"#, "n"),
            (r#""max_tokens":-1"#, "max_tokens"),
            (r#""stop":["a",""]"#, "stop"),
        ] {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],{json}}}"#);
            let err = chat(&body).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{json}");
            assert_eq!(err.param.as_deref(), Some(param), "{json}");
        }
    }

    #[test]
    fn rejects_empty_messages_and_unknown_roles() {
        assert_eq!(
            chat(r#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
        assert!(chat(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).is_err());
    }

    #[test]
    fn prompt_variants_split_into_inputs() {
        let p: Prompt = serde_json::from_str(r#"[[1,2],[3]]"#).unwrap();
        assert_eq!(p.into_inputs().unwrap().len(), 2);
        let p: Prompt = serde_json::from_str(r#"[1,2,3]"#).unwrap();
        assert_eq!(
            p.into_inputs().unwrap(),
            vec![PromptInput::Tokens(vec![1, 2, 3])]
        );
        let p: Prompt = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert_eq!(p.into_inputs().unwrap().len(), 2);
        let p: Prompt = serde_json::from_str(r#"[]"#).unwrap();
        assert!(p.into_inputs().is_err());
    }
}
