//! OpenAI's Responses API (`POST /v1/responses`), mapped onto the chat pipeline: the request
//! becomes a chat request (instructions → system message, input items → messages), the answer
//! one `message` output item with one `output_text` part.
//!
//! Responses are not stored: `previous_response_id` and `background` are refused with a 400.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::openai::{ChatCompletionRequest, ChatMessage, CommonParams, Role, StreamOptions};

/// `input`: a string (one user message) or a list of input items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ResponseInput {
    Text(String),
    Items(#[schemars(with = "Vec<crate::schema::ResponseInputItem>", length(min = 1))] Vec<Value>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: ResponseInput,
    pub instructions: Option<String>,
    /// Signed so that a negative value gets a clear message rather than a parse error.
    #[schemars(range(min = 1, max = 4294967295_u32))]
    #[serde(default, deserialize_with = "crate::integer::option")]
    pub max_output_tokens: Option<i64>,
    #[schemars(range(min = 0, max = 2))]
    pub temperature: Option<f64>,
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    #[schemars(with = "Option<Vec<crate::schema::ResponseTool>>")]
    pub tools: Option<Vec<Value>>,
    #[schemars(with = "Option<crate::schema::ResponseToolChoice>")]
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Refused unless null: responses are not stored.
    #[schemars(extend("type" = "null"))]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub background: bool,
    pub metadata: Option<Map<String, Value>>,
    #[schemars(with = "Option<crate::schema::ResponseText>")]
    pub text: Option<Value>,
    pub user: Option<String>,
    #[serde(default, deserialize_with = "crate::integer::option")]
    pub seed: Option<u64>,
    /// vLLM extensions carried over to the chat request.
    #[schemars(extend("minimum" = -1, "not" = {"const": 0}))]
    #[serde(default, deserialize_with = "crate::integer::option")]
    pub top_k: Option<i64>,
    pub stop: Option<crate::openai::StopSpec>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    #[schemars(length(min = 1))]
    pub cache_salt: Option<String>,
}

impl ResponsesRequest {
    /// The chat request that serves this response: instructions as a system message first,
    /// then every input item as a message. Refuses what the chat pipeline cannot express.
    pub fn to_chat_request(&self) -> Result<ChatCompletionRequest, ApiError> {
        if self.previous_response_id.is_some() {
            return Err(ApiError::invalid_param(
                "previous_response_id",
                "responses are not stored here: send the whole conversation in input",
            ));
        }
        if let Some(m) = self.max_output_tokens
            && m < 1
        {
            return Err(ApiError::invalid_param(
                "max_output_tokens",
                format!("max_output_tokens must be at least 1, got {m}"),
            ));
        }
        if self.background {
            return Err(ApiError::invalid_param(
                "background",
                "background responses are not supported",
            ));
        }
        if self.text.as_ref().is_some_and(|t| !t.is_object()) {
            return Err(ApiError::invalid_param("text", "text must be an object"));
        }
        if let Some(format) = self.text.as_ref().and_then(|t| t.get("format")) {
            let kind = format.get("type").and_then(Value::as_str);
            if kind != Some("text") {
                return Err(ApiError::invalid_param(
                    "text.format",
                    "only the text format is supported (no engine here does structured output)",
                ));
            }
        }
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(message(Role::System, Value::String(instructions.clone())));
        }
        match &self.input {
            ResponseInput::Text(text) => {
                messages.push(message(Role::User, Value::String(text.clone())));
            }
            ResponseInput::Items(items) => {
                if items.is_empty() {
                    return Err(ApiError::invalid_param(
                        "input",
                        "input must hold at least one item",
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    messages.push(input_item(item, i)?);
                }
            }
        }
        let tools = self
            .tools
            .as_ref()
            .map(|tools| {
                tools
                    .iter()
                    .enumerate()
                    .map(|(i, t)| chat_tool(t, i))
                    .collect()
            })
            .transpose()?;
        Ok(ChatCompletionRequest {
            model: self.model.clone(),
            messages,
            common: CommonParams {
                max_tokens: self.max_output_tokens,
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                stream: self.stream,
                stream_options: self.stream.then_some(StreamOptions {
                    include_usage: true,
                    continuous_usage_stats: false,
                }),
                stop: self.stop.clone(),
                seed: self.seed,
                cache_salt: self.cache_salt.clone(),
                user: self.user.clone(),
                ..CommonParams::default()
            },
            tools,
            tool_choice: self.tool_choice.as_ref().map(chat_tool_choice),
            chat_template_kwargs: self.chat_template_kwargs.clone(),
            ..ChatCompletionRequest::default()
        })
    }
}

fn message(role: Role, content: Value) -> ChatMessage {
    ChatMessage {
        role,
        content,
        extra: Map::new(),
    }
}

/// One input item as a chat message: a message (string content or input/output text parts),
/// a `function_call` (an assistant tool call) or a `function_call_output` (a tool message).
fn input_item(item: &Value, i: usize) -> Result<ChatMessage, ApiError> {
    let param = format!("input[{i}]");
    let kind = match item.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                &format!("{param}.type"),
                "an input item's type must be a string",
            ));
        }
    };
    match kind {
        "message" => {
            let role: Role = item
                .get("role")
                .cloned()
                .and_then(|r| serde_json::from_value(r).ok())
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        &param,
                        "a message needs a role: user, assistant, system or developer",
                    )
                })?;
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        let part_kind = part.get("type").and_then(Value::as_str);
                        match (part_kind, part.get("text").and_then(Value::as_str)) {
                            (Some("input_text" | "output_text" | "text"), Some(t)) => {
                                text.push_str(t)
                            }
                            _ => {
                                return Err(ApiError::invalid_param(
                                    &format!("{param}.content"),
                                    "only input_text and output_text content parts are supported",
                                ));
                            }
                        }
                    }
                    Value::String(text)
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        &format!("{param}.content"),
                        "content must be a string or a list of text parts",
                    ));
                }
            };
            Ok(message(role, content))
        }
        "function_call" => {
            let field = |name: &str| {
                item.get(name).and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid_param(
                        &format!("{param}.{name}"),
                        format!("a function_call item needs a string {name}"),
                    )
                })
            };
            let (call_id, name, arguments) =
                (field("call_id")?, field("name")?, field("arguments")?);
            let mut extra = Map::new();
            extra.insert(
                "tool_calls".into(),
                json!([{"id": call_id, "type": "function",
                        "function": {"name": name, "arguments": arguments}}]),
            );
            Ok(ChatMessage {
                role: Role::Assistant,
                content: Value::Null,
                extra,
            })
        }
        "function_call_output" => {
            let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid_param(
                    &format!("{param}.call_id"),
                    "a function_call_output item needs a string call_id",
                )
            })?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let mut extra = Map::new();
            extra.insert("tool_call_id".into(), Value::String(call_id.to_string()));
            Ok(ChatMessage {
                role: Role::Tool,
                content: Value::String(output),
                extra,
            })
        }
        other => Err(ApiError::invalid_param(
            &format!("{param}.type"),
            format!("input items of type `{other}` are not supported"),
        )),
    }
}

/// A Responses function tool (`{type, name, description, parameters}`) in chat's shape
/// (`{type, function: {...}}`); chat-shaped tools pass unchanged.
fn chat_tool(tool: &Value, i: usize) -> Result<Value, ApiError> {
    if tool.get("function").is_some() {
        return Ok(tool.clone());
    }
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid_param(
            &format!("tools[{i}].type"),
            "only function tools are supported",
        ));
    }
    if tool
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::invalid_param(
            &format!("tools[{i}].name"),
            "a function tool needs a non-empty string name",
        ));
    }
    let mut function = tool.as_object().cloned().unwrap_or_default();
    function.remove("type");
    Ok(json!({"type": "function", "function": function}))
}

/// `{"type": "function", "name": N}` → chat's `{"type": "function", "function": {"name": N}}`.
fn chat_tool_choice(choice: &Value) -> Value {
    match choice.get("name") {
        Some(name) if choice.get("function").is_none() => {
            json!({"type": "function", "function": {"name": name}})
        }
        _ => choice.clone(),
    }
}

// ---- the response object ----

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ResponseObject<'a> {
    pub id: &'a str,
    #[schemars(extend("const" = "response"))]
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    #[schemars(extend("enum" = ["in_progress", "completed", "incomplete", "failed"]))]
    pub status: &'static str,
    pub model: &'a str,
    pub output: Vec<OutputItem<'a>>,
    pub output_text: Option<&'a str>,
    pub usage: Option<ResponseUsage>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub error: Option<Value>,
    pub instructions: Option<&'a str>,
    pub max_output_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub parallel_tool_calls: bool,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub metadata: Map<String, Value>,
    pub text: Value,
    pub truncation: &'static str,
    pub store: bool,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem<'a> {
    Message {
        id: &'a str,
        #[schemars(extend("enum" = ["in_progress", "completed", "incomplete"]))]
        status: &'static str,
        #[schemars(extend("const" = "assistant"))]
        role: &'static str,
        content: Vec<OutputText<'a>>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        #[schemars(extend("enum" = ["in_progress", "completed"]))]
        status: &'static str,
    },
    Reasoning {
        id: String,
        summary: [(); 0],
        content: Vec<ReasoningText<'a>>,
    },
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ReasoningText<'a> {
    #[serde(rename = "type")]
    #[schemars(extend("const" = "reasoning_text"))]
    pub kind: &'static str,
    pub text: &'a str,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct OutputText<'a> {
    #[serde(rename = "type")]
    #[schemars(extend("const" = "output_text"))]
    pub kind: &'static str,
    pub text: &'a str,
    pub annotations: [(); 0],
}

impl<'a> OutputText<'a> {
    pub fn new(text: &'a str) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

impl ResponseUsage {
    pub fn new(input_tokens: u32, output_tokens: u32, cached_tokens: u32) -> Self {
        ResponseUsage {
            input_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens },
            output_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: input_tokens + output_tokens,
        }
    }
}

/// The request fields a response object echoes back.
impl ResponsesRequest {
    pub fn response_object<'a>(
        &'a self,
        id: &'a str,
        created_at: u64,
        status: &'static str,
        model: &'a str,
    ) -> ResponseObject<'a> {
        ResponseObject {
            id,
            object: "response",
            created_at,
            status,
            model,
            output: Vec::new(),
            output_text: None,
            usage: None,
            incomplete_details: None,
            error: None,
            instructions: self.instructions.as_deref(),
            max_output_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            tool_choice: self.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            tools: self.tools.clone().unwrap_or_default(),
            metadata: self.metadata.clone().unwrap_or_default(),
            text: self
                .text
                .clone()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
            truncation: "disabled",
            store: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ResponsesRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
        let chat = request(
            r#"{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":7}"#,
        )
        .to_chat_request()
        .unwrap();
        assert_eq!(chat.messages.len(), 2);
        assert_eq!(chat.messages[0].role, Role::System);
        assert_eq!(chat.messages[0].content, json!("be brief"));
        assert_eq!(chat.messages[1].role, Role::User);
        assert_eq!(chat.common.max_tokens, Some(7));
    }

    #[test]
    fn items_become_messages_tool_calls_and_tool_results() {
        let chat = request(
            r#"{"model":"m","input":[
                {"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
                {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
                {"type":"function_call_output","call_id":"c1","output":"42"}],
               "tools":[{"type":"function","name":"f","parameters":{}}],
               "tool_choice":{"type":"function","name":"f"}}"#,
        )
        .to_chat_request()
        .unwrap();
        assert_eq!(chat.messages[0].content, json!("ab"));
        assert_eq!(chat.messages[1].role, Role::Assistant);
        assert_eq!(
            chat.messages[1].extra["tool_calls"][0]["function"]["name"],
            json!("f")
        );
        assert_eq!(chat.messages[2].role, Role::Tool);
        assert_eq!(chat.messages[2].extra["tool_call_id"], json!("c1"));
        assert_eq!(chat.tools.unwrap()[0]["function"]["name"], json!("f"));
        assert_eq!(chat.tool_choice.unwrap()["function"]["name"], json!("f"));
    }

    #[test]
    fn what_cannot_be_served_is_a_400_naming_the_field() {
        for (json, param) in [
            (r#""previous_response_id":"resp_1""#, "previous_response_id"),
            (r#""background":true"#, "background"),
            (r#""max_output_tokens":0"#, "max_output_tokens"),
            (r#""text":{"format":{"type":"json_object"}}"#, "text.format"),
            (r#""text":[null]"#, "text"),
            (r#""tools":[{"type":"web_search"}]"#, "tools[0].type"),
            (r#""tools":[{"type":"function"}]"#, "tools[0].name"),
        ] {
            let body = format!(r#"{{"model":"m","input":"x",{json}}}"#);
            let err = request(&body).to_chat_request().unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{json}");
        }
        let err = request(r#"{"model":"m","input":[],"instructions":"x"}"#)
            .to_chat_request()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
        let err = request(r#"{"model":"m","input":[{"type":{},"role":"user","content":"x"}]}"#)
            .to_chat_request()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0].type"));
        let err = request(r#"{"model":"m","input":[{"type":"image","url":"x"}]}"#)
            .to_chat_request()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0].type"));
        let err = request(r#"{"model":"m","input":[{"content":"no role"}]}"#)
            .to_chat_request()
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0]"));
    }
}
