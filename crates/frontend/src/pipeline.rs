//! One model's pipeline: OpenAI request → preprocessed request → routed generation.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use switchyard_engines::EngineStream;
use switchyard_parsers::{
    ForcedCall, ForcedCallParser, OutputParser, ReasoningParser, ReasoningParserKind,
    ToolCallParser, ToolChoice, ToolParserKind, forced_call_schema, guess_tool_parser,
};
use switchyard_preprocess::{ChatTemplate, ChatTemplateInput, ModelCard, flatten_text_content};
use switchyard_protocol::openai::{
    ChatCompletionRequest, CommonParams, CompletionRequest, PromptInput, ResponseFormat,
};
use switchyard_protocol::{
    ApiError, CacheKey, EngineCapabilities, GuidedDecoding, MAX_LOGIT_BIAS_ENTRIES, OutputOptions,
    PreprocessedRequest, SamplingOptions, StopConditions,
};
use switchyard_router::{LoadGuard, Router, RouterConfig};
use switchyard_runtime::request_plane::RequestPlane;
use switchyard_runtime::{RuntimeError, WorkerId};
use switchyard_structured::JsonGrammar;

use crate::cpu_pool::CpuPool;
use crate::generation::{Generation, Resume};
use crate::metrics::{Endpoint, ModelMetrics};

/// A 400 naming `param` if an id is outside a vocabulary of `vocab`.
fn check_token_ids(ids: &[u32], vocab: u32, param: &str) -> Result<(), ApiError> {
    match ids.iter().find(|&&id| id >= vocab) {
        Some(bad) => Err(ApiError::invalid_param(
            param,
            format!("token id {bad} is out of range for a vocabulary of {vocab}"),
        )),
        None => Ok(()),
    }
}

/// OpenAI's `logit_bias` map (token ids as string keys) as sorted `(token, bias)` pairs.
fn parse_logit_bias(
    bias: Option<&std::collections::BTreeMap<String, f64>>,
    vocab: u32,
) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(bias) = bias else {
        return Ok(Vec::new());
    };
    if bias.len() > MAX_LOGIT_BIAS_ENTRIES {
        return Err(ApiError::invalid_param(
            "logit_bias",
            format!(
                "logit_bias may hold at most {MAX_LOGIT_BIAS_ENTRIES} tokens, got {}",
                bias.len()
            ),
        ));
    }
    let mut pairs = Vec::with_capacity(bias.len());
    for (key, &value) in bias {
        let token: u32 = key.trim().parse().map_err(|_| {
            ApiError::invalid_param(
                "logit_bias",
                format!("logit_bias keys must be token ids, got `{key}`"),
            )
        })?;
        if token >= vocab {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!("token id {token} is out of range for a vocabulary of {vocab}"),
            ));
        }
        if !(-100.0..=100.0).contains(&value) {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!(
                    "logit_bias values must be between -100 and 100, got {value} for token {token}"
                ),
            ));
        }
        pairs.push((token, value as f32));
    }
    pairs.sort_unstable_by_key(|&(token, _)| token);
    // " 7" and "7" name the same token: the last one given wins, as in a JSON object.
    pairs.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1;
            true
        } else {
            false
        }
    });
    Ok(pairs)
}

/// `response_format` as an engine constraint (`text`: none). A schema must be a JSON object.
fn guided_from_response_format(
    format: Option<&ResponseFormat>,
) -> Result<Option<GuidedDecoding>, ApiError> {
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(GuidedDecoding::JsonObject),
        Some(ResponseFormat::JsonSchema { json_schema }) => match &json_schema.schema {
            None => Some(GuidedDecoding::JsonObject),
            Some(schema @ Value::Object(_)) => Some(GuidedDecoding::JsonSchema(schema.to_string())),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema.schema",
                    "the schema must be a JSON object",
                ));
            }
        },
    })
}

/// The request's `tool_choice`, and the schema its output must follow when the choice forces
/// calls (`required`, a named function): the engine then decodes under that schema. An invalid
/// `tool_choice`, or one naming an undeclared function, is a 400.
fn forced_tool_call(
    req: &ChatCompletionRequest,
) -> Result<(ToolChoice, Option<GuidedDecoding>), ApiError> {
    let tools = req.tools.as_deref().filter(|t| !t.is_empty());
    let choice = ToolChoice::from_request(req.tool_choice.as_ref(), tools.is_some())
        .map_err(|e| ApiError::invalid_param("tool_choice", e.to_string()))?;
    let forced = match &choice {
        ToolChoice::Required => ForcedCall::Required,
        ToolChoice::Function(name) => ForcedCall::Named(name.clone()),
        ToolChoice::None | ToolChoice::Auto => return Ok((choice, None)),
    };
    let Some(tools) = tools else {
        return Err(ApiError::invalid_param(
            "tool_choice",
            "a tool_choice that forces calls needs tools",
        ));
    };
    let schema = forced_call_schema(&forced, tools).ok_or_else(|| match &forced {
        ForcedCall::Named(name) => ApiError::invalid_param(
            "tool_choice",
            format!("tool_choice names `{name}`, which is not among the declared tools"),
        ),
        ForcedCall::Required => {
            ApiError::invalid_param("tools", "tool_choice `required` needs declared functions")
        }
    })?;
    if req
        .response_format
        .as_ref()
        .is_some_and(|f| *f != ResponseFormat::Text)
    {
        return Err(ApiError::invalid_param(
            "response_format",
            "response_format cannot be combined with a tool_choice that forces calls",
        ));
    }
    Ok((choice, Some(GuidedDecoding::JsonSchema(schema.to_string()))))
}

/// Everything needed to serve one model name.
pub struct ModelPipeline {
    name: String,
    card: Arc<ModelCard>,
    template: Option<Arc<ChatTemplate>>,
    /// The model's separate `tool_use` template, used when a request carries tools.
    tool_template: Option<Arc<ChatTemplate>>,
    router: Router,
    request_plane: Arc<dyn RequestPlane>,
    cpu: CpuPool,
    metrics: ModelMetrics,
    /// How many times one request may move to another worker after its stream broke.
    migration_limit: u32,
    /// The model's tool-call format, for requests that declare tools.
    tool_parser: Option<ToolParserKind>,
    /// Splits `<think>` reasoning from the content of every chat answer.
    reasoning_parser: Option<ReasoningParserKind>,
}

/// How a model's chat output is parsed (`--tool-call-parser`, `--reasoning-parser`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputParsing {
    pub tool_parser: ToolParserChoice,
    pub reasoning_parser: Option<ReasoningParserKind>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToolParserChoice {
    /// Guess the format from the chat template's markers (or the model name).
    #[default]
    Auto,
    /// Never parse tool calls.
    Off,
    Kind(ToolParserKind),
}

/// What a chat request's answer goes through, decided once per request (every choice gets a
/// fresh [`OutputParser`] from it).
#[derive(Clone, Debug)]
pub struct ChatOutputParsing {
    tool_parser: Option<ToolParserKind>,
    reasoning: Option<ReasoningParserKind>,
    /// `tool_choice` forces calls: the output is their JSON, decoded under a schema.
    forced: Option<ForcedCall>,
}

impl ChatOutputParsing {
    /// No parsing: text passes through.
    pub fn none() -> Self {
        ChatOutputParsing {
            tool_parser: None,
            reasoning: None,
            forced: None,
        }
    }

    pub fn is_none(&self) -> bool {
        self.tool_parser.is_none() && self.reasoning.is_none() && self.forced.is_none()
    }

    /// Whether an answer with `calls` tool calls finishes with `tool_calls` rather than
    /// `stop` (OpenAI keeps `stop` when one named function was forced).
    pub fn finishes_with_tool_calls(&self, calls: usize) -> bool {
        calls > 0 && !matches!(self.forced, Some(ForcedCall::Named(_)))
    }

    /// A parser for one choice; `prompt_tail` (the prompt's last tokens, as text) tells
    /// whether the template already opened a think block.
    pub fn parser(&self, prompt_tail: &str) -> OutputParser {
        let reasoning = self
            .reasoning
            .map(|kind| ReasoningParser::for_prompt(kind, prompt_tail));
        match &self.forced {
            Some(forced) => OutputParser::forced(reasoning, ForcedCallParser::new(forced)),
            None => OutputParser::new(reasoning, self.tool_parser.map(ToolCallParser::new)),
        }
    }
}

impl ModelPipeline {
    pub fn new(
        name: String,
        card: Arc<ModelCard>,
        router_config: RouterConfig,
        request_plane: Arc<dyn RequestPlane>,
        cpu: CpuPool,
        metrics: ModelMetrics,
    ) -> Result<Self, ApiError> {
        let template = card
            .compile_chat_template()
            .map_err(|e| {
                ApiError::internal(format!("chat template of `{name}` does not compile: {e}"))
            })?
            .map(Arc::new);
        let tool_template = card
            .compile_tool_use_chat_template()
            .map_err(|e| {
                ApiError::internal(format!(
                    "tool_use chat template of `{name}` does not compile: {e}"
                ))
            })?
            .map(Arc::new);
        Ok(ModelPipeline {
            router: Router::new(name.clone(), router_config),
            name,
            card,
            template,
            tool_template,
            request_plane,
            cpu,
            metrics,
            migration_limit: 0,
            tool_parser: None,
            reasoning_parser: None,
        })
    }

    /// Sets how chat answers are parsed; without an explicit tool-call parser the format is
    /// guessed from the chat template (the markers it writes) or the model name.
    pub fn with_output_parsing(mut self, parsing: OutputParsing) -> Self {
        self.tool_parser = match parsing.tool_parser {
            ToolParserChoice::Off => None,
            ToolParserChoice::Kind(kind) => Some(kind),
            ToolParserChoice::Auto => {
                guess_tool_parser(self.card.chat_template.as_deref(), &self.name)
            }
        };
        self.reasoning_parser = parsing.reasoning_parser;
        self
    }

    pub fn tool_parser(&self) -> Option<ToolParserKind> {
        self.tool_parser
    }

    /// The parsing a chat request's answer needs: tool calls only when it declares tools and
    /// `tool_choice` is not `none` (an invalid `tool_choice` is a 400).
    pub fn chat_output_parsing(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<ChatOutputParsing, ApiError> {
        let (choice, _) = forced_tool_call(req)?;
        let tools = req.tools.as_deref().filter(|t| !t.is_empty());
        Ok(ChatOutputParsing {
            tool_parser: self
                .tool_parser
                .filter(|_| tools.is_some() && choice.parses_calls()),
            reasoning: self.reasoning_parser,
            forced: match choice {
                ToolChoice::Required => Some(ForcedCall::Required),
                ToolChoice::Function(name) => Some(ForcedCall::Named(name)),
                ToolChoice::None | ToolChoice::Auto => None,
            },
        })
    }

    /// Lets each request move to another worker up to `limit` times when its stream breaks.
    pub fn with_migration_limit(mut self, limit: u32) -> Self {
        self.migration_limit = limit;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Validates, renders the chat template and tokenizes (on the CPU pool).
    pub async fn preprocess_chat(
        &self,
        mut req: ChatCompletionRequest,
        request_id: &str,
    ) -> Result<PreprocessedRequest, ApiError> {
        req.validate()?;
        let (guided, param) = match forced_tool_call(&req)? {
            (_, Some(forced)) => {
                // Named here: the generic check would blame `response_format`.
                self.check_capabilities_for(
                    EngineCapabilities {
                        structured_output: true,
                        ..EngineCapabilities::default()
                    },
                    "tool_choice",
                )?;
                (Some(forced), "tools")
            }
            (_, None) => (
                guided_from_response_format(req.response_format.as_ref())?,
                "response_format",
            ),
        };
        self.check_schema(guided.as_ref(), param).await?;
        let token_ids = self.render_chat(&mut req, false).await?;
        let mut request = self.finish_preprocess(request_id, token_ids, &req.common)?;
        request.sampling.logprobs = req.requested_logprobs();
        request.sampling.guided = guided;
        Ok(request)
    }

    /// A schema the model's engines would refuse is a 400 here, before any response starts (a
    /// stream would otherwise open and then fail): when they decode switchyard-structured's
    /// JSON Schema subset, it is compiled once with the same compiler, on the CPU pool.
    async fn check_schema(
        &self,
        guided: Option<&GuidedDecoding>,
        param: &'static str,
    ) -> Result<(), ApiError> {
        let Some(GuidedDecoding::JsonSchema(schema)) = guided else {
            return Ok(());
        };
        let checked = self
            .router
            .capabilities()
            .is_some_and(|c| c.structured_output && c.json_schema_subset);
        if !checked {
            return Ok(());
        }
        let guided = GuidedDecoding::JsonSchema(schema.clone());
        self.cpu
            .run(move || JsonGrammar::compile(&guided).map(drop))
            .await?
            .map_err(|e| {
                let message = if param == "tools" {
                    format!("the forced tool call's schema (from the functions' parameters): {e}")
                } else {
                    e.to_string()
                };
                ApiError::invalid_param(param, message)
            })
    }

    /// The token ids a chat request's prompt would have (`POST /tokenize` with messages);
    /// `add_special_tokens` lets the tokenizer add its own BOS on top of the template's.
    pub async fn tokenize_chat(
        &self,
        mut req: ChatCompletionRequest,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, ApiError> {
        req.validate()?;
        self.render_chat(&mut req, add_special_tokens).await
    }

    /// A text's token ids (`POST /tokenize` with a prompt), on the CPU pool.
    pub async fn tokenize_text(
        &self,
        text: String,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, ApiError> {
        let tokenizer = self.card.tokenizer.clone();
        self.cpu
            .run(move || {
                tokenizer
                    .encode(&text, add_special_tokens)
                    .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))
            })
            .await?
    }

    /// Token ids back to text (`POST /detokenize`), special tokens kept; an id outside the
    /// vocabulary is a 400.
    pub async fn detokenize(&self, token_ids: Vec<u32>) -> Result<String, ApiError> {
        check_token_ids(
            &token_ids,
            self.card.tokenizer.vocab_size() as u32,
            "tokens",
        )?;
        let tokenizer = self.card.tokenizer.clone();
        self.cpu
            .run(move || {
                tokenizer
                    .decode(&token_ids, false)
                    .map_err(|e| ApiError::invalid_param("tokens", e.to_string()))
            })
            .await?
    }

    /// Renders a validated chat request's template and tokenizes the result (on the CPU pool).
    async fn render_chat(
        &self,
        req: &mut ChatCompletionRequest,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, ApiError> {
        let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
        let template = match (&self.tool_template, has_tools) {
            (Some(tool_template), true) => tool_template.clone(),
            _ => self.template.clone().ok_or_else(|| {
                ApiError::invalid(format!(
                    "model `{}` has no chat template; use /v1/completions",
                    self.name
                ))
            })?,
        };
        let mut messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        let tools = req.tools.take();
        let kwargs = req.chat_template_kwargs.take();
        let continue_final_message = req.continue_final_message;
        let add_generation_prompt = req.add_generation_prompt.unwrap_or(!continue_final_message);
        let tokenizer = self.card.tokenizer.clone();
        self.cpu
            .run(move || {
                // Templates that walk content parts themselves get them as sent (vLLM's
                // "openai" content format); the others get the text joined.
                if !template.accepts_content_parts() {
                    flatten_text_content(&mut messages);
                }
                let input = ChatTemplateInput {
                    messages: &messages,
                    tools: tools.as_deref(),
                    add_generation_prompt,
                    extra: kwargs.as_ref(),
                };
                let prompt = if continue_final_message {
                    template.render_continuing_final_message(&input)
                } else {
                    template.render(&input)
                }
                .map_err(|e| e.to_api_error())?;
                // The template already placed BOS and other special tokens.
                tokenizer
                    .encode(&prompt, add_special_tokens)
                    .map_err(|e| e.to_api_error())
            })
            .await?
    }

    /// Validates and tokenizes every prompt of a completion request (a batch gives several).
    pub async fn preprocess_completion(
        &self,
        req: CompletionRequest,
        request_id: &str,
    ) -> Result<Vec<PreprocessedRequest>, ApiError> {
        req.validate()?;
        // best_of ranks candidates by their cumulative logprob, so the engine must report it.
        let logprobs = match req.requested_logprobs() {
            None if req.candidates_per_prompt() > req.common.choices_per_prompt() => Some(0),
            asked => asked,
        };
        let guided = guided_from_response_format(req.response_format.as_ref())?;
        self.check_schema(guided.as_ref(), "response_format")
            .await?;
        let inputs = req.prompt.into_inputs()?;
        let vocab = self.card.tokenizer.vocab_size() as u32;
        let tokenizer = self.card.tokenizer.clone();
        let token_lists = self
            .cpu
            .run(move || {
                inputs
                    .into_iter()
                    .map(|input| match input {
                        PromptInput::Text(text) => tokenizer
                            .encode(&text, true)
                            .map_err(|e| ApiError::invalid_param("prompt", e.to_string())),
                        PromptInput::Tokens(ids) => {
                            check_token_ids(&ids, vocab, "prompt")?;
                            Ok(ids)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await??;
        token_lists
            .into_iter()
            .enumerate()
            .map(|(i, ids)| {
                let id = if i == 0 {
                    request_id.to_string()
                } else {
                    format!("{request_id}-{i}")
                };
                let mut request = self.finish_preprocess(&id, ids, &req.common)?;
                request.sampling.logprobs = logprobs;
                request.sampling.guided = guided.clone();
                Ok(request)
            })
            .collect()
    }

    fn finish_preprocess(
        &self,
        request_id: &str,
        token_ids: Vec<u32>,
        common: &CommonParams,
    ) -> Result<PreprocessedRequest, ApiError> {
        let context = self.card.context_length;
        let prompt_len = token_ids.len() as u64;
        if token_ids.is_empty() {
            return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
        }
        if prompt_len >= context as u64 {
            return Err(ApiError::invalid(format!(
                "This model's maximum context length is {context} tokens. However, your prompt has {prompt_len} tokens, leaving no room for a completion."
            ))
            .with_code("context_length_exceeded"));
        }
        let room = context as u64 - prompt_len;
        let max_tokens = match common.max_tokens {
            None => room,
            Some(m) => {
                let m = m as u64;
                if m > room {
                    return Err(ApiError::invalid_param(
                        "max_tokens",
                        format!(
                            "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_len} in the prompt, {m} for the completion).",
                            prompt_len + m
                        ),
                    )
                    .with_code("context_length_exceeded"));
                }
                m
            }
        };
        let mut stop_strings = common
            .stop
            .clone()
            .map(|s| s.into_vec())
            .unwrap_or_default();
        stop_strings.retain(|s| !s.is_empty());
        let logit_bias = parse_logit_bias(
            common.logit_bias.as_ref(),
            self.card.tokenizer.vocab_size() as u32,
        )?;
        Ok(PreprocessedRequest {
            request_id: request_id.to_string(),
            model: self.name.clone(),
            token_ids,
            sampling: SamplingOptions {
                temperature: common.temperature.map(|v| v as f32),
                top_p: common.top_p.map(|v| v as f32),
                top_k: common.top_k.map(|v| v as i32),
                min_p: common.min_p.map(|v| v as f32),
                seed: common.seed,
                presence_penalty: common.presence_penalty.map(|v| v as f32),
                frequency_penalty: common.frequency_penalty.map(|v| v as f32),
                repetition_penalty: common.repetition_penalty.map(|v| v as f32),
                logprobs: None,
                logit_bias,
                guided: None,
            },
            stop: StopConditions {
                max_tokens: max_tokens as u32,
                min_tokens: common.min_tokens.unwrap_or(0) as u32,
                stop_strings,
                stop_token_ids: common.stop_token_ids.clone().unwrap_or_default(),
                eos_token_ids: self.card.eos_token_ids.clone(),
                ignore_eos: common.ignore_eos,
            },
            output: OutputOptions {
                skip_special_tokens: common.skip_special_tokens.unwrap_or(true),
            },
            cache_key: CacheKey {
                lora_name: None,
                cache_salt: common.cache_salt.clone(),
            },
            resumed_output_tokens: 0,
        })
    }

    /// Routes `request` to a worker and opens its token stream. With a migration limit the
    /// generation keeps what it needs to resume on another worker if the stream breaks.
    pub async fn generate(
        self: &Arc<Self>,
        request: PreprocessedRequest,
        endpoint: Endpoint,
        arrived: Instant,
    ) -> Result<Generation, ApiError> {
        self.check_capabilities(&request)?;
        let prompt_tokens = request.token_ids.len() as u32;
        let tail_start = request.token_ids.len().saturating_sub(8);
        let prompt_tail: Vec<u32> = request.token_ids[tail_start..].to_vec();
        let stop = request.stop.clone();
        let skip_special_tokens = request.output.skip_special_tokens;
        self.metrics.input_tokens.observe(prompt_tokens as f64);
        let resume = (self.migration_limit > 0).then(|| Resume {
            request: request.clone(),
            generated: Vec::new(),
            migrations_left: self.migration_limit,
            failed: Vec::new(),
        });
        let mut failed = Vec::new();
        let (guard, stream) = self.open(request, &mut failed).await?;
        Generation::new(
            self.clone(),
            guard,
            stream,
            resume.map(|r| Resume { failed, ..r }),
            &stop,
            skip_special_tokens,
            prompt_tail,
            prompt_tokens,
            endpoint,
            arrived,
        )
    }

    /// Picks a worker not in `failed` and opens the stream there. A worker that cannot be
    /// reached (it died and discovery has not noticed yet) joins `failed` and the next one is
    /// tried: nothing was generated, so this is routing, not migration.
    /// A 400 when the request needs a feature (`logit_bias`, `response_format`) that the
    /// model's engines do not honour: ignoring it silently would return something else than
    /// what was asked for.
    fn check_capabilities(&self, request: &PreprocessedRequest) -> Result<(), ApiError> {
        let needed = request.sampling.required_capabilities();
        self.check_capabilities_for(needed, "")
    }

    /// [`Self::check_capabilities`] for `needed`; a non-empty `param` is the field blamed.
    fn check_capabilities_for(
        &self,
        needed: EngineCapabilities,
        param: &str,
    ) -> Result<(), ApiError> {
        if needed == EngineCapabilities::default() {
            return Ok(());
        }
        // Without workers the request fails as unavailable, as any other would.
        let Some(have) = self.router.capabilities() else {
            return Ok(());
        };
        match have.missing(needed).as_slice() {
            [] => Ok(()),
            [first, ..] => Err(ApiError::invalid_param(
                if param.is_empty() { first } else { param },
                format!(
                    "`{}` is not supported by the engine serving model `{}` (engines: {})",
                    if param.is_empty() { first } else { param },
                    self.name,
                    self.router.engine_kinds().join(", ")
                ),
            )),
        }
    }

    pub(crate) async fn open(
        &self,
        request: PreprocessedRequest,
        failed: &mut Vec<WorkerId>,
    ) -> Result<(LoadGuard, EngineStream), ApiError> {
        let mut pending = request;
        loop {
            let guard = self
                .router
                .select_excluding(&pending, failed)
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            // The request moves into the plane; a copy is kept while another worker could
            // take it should this one be unreachable.
            let spare = (self.router.worker_count() > failed.len() + 1).then(|| pending.clone());
            match self.request_plane.generate(guard.worker(), pending).await {
                Ok(stream) => return Ok((guard, stream)),
                Err(RuntimeError::Unreachable(worker, why)) => {
                    tracing::warn!(%worker, %why, "worker unreachable; trying another");
                    failed.push(worker);
                    drop(guard);
                    match spare {
                        Some(copy) => {
                            self.metrics.retries.inc();
                            pending = copy;
                        }
                        None => {
                            return Err(ApiError::unavailable(format!(
                                "no reachable worker for model `{}`: {why}",
                                self.name
                            )));
                        }
                    }
                }
                Err(e) => return Err(ApiError::unavailable(e.to_string())),
            }
        }
    }
}
