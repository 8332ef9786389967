//! JSON Schemas of fields whose Rust type is looser than their contract (`serde_json::Value`
//! kept for the chat template, or checked by hand in `validate`), and the cross-field rules of
//! the `validate` methods. Schema-only: nothing here is serialized; the wire types name these
//! with `#[schemars(with = ...)]` and `#[schemars(transform = ...)]`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// A chat message's `content`: a string, a list of text parts, or null.
pub struct MessageContent;

impl JsonSchema for MessageContent {
    fn schema_name() -> Cow<'static, str> {
        "MessageContent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"const": "text"},
                            "text": {"type": "string"}
                        },
                        "required": ["type", "text"]
                    }
                },
                {"type": "null"}
            ]
        })
    }
}

/// One entry of chat `tools`: OpenAI's function tool. Other members are passed to the chat
/// template unchanged.
pub struct ChatTool;

impl JsonSchema for ChatTool {
    fn schema_name() -> Cow<'static, str> {
        "ChatTool".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": {
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": ["string", "null"]},
                        "parameters": {"type": ["object", "null"]}
                    },
                    "required": ["name"]
                }
            },
            "required": ["type", "function"]
        })
    }
}

/// Chat `tool_choice`: `none`, `auto`, `required`, or one named function.
pub struct ChatToolChoice;

impl JsonSchema for ChatToolChoice {
    fn schema_name() -> Cow<'static, str> {
        "ChatToolChoice".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"enum": ["none", "auto", "required"]},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": "function"},
                        "function": {
                            "type": "object",
                            "properties": {"name": {"type": "string", "minLength": 1}},
                            "required": ["name"]
                        }
                    },
                    "required": ["type", "function"]
                },
                {"type": "null"}
            ]
        })
    }
}

/// `logit_bias`: token ids (decimal strings) → a bias in [-100, 100], at most
/// `MAX_LOGIT_BIAS_ENTRIES` of them (the frontend checks the ids against the vocabulary).
pub struct LogitBias;

impl JsonSchema for LogitBias {
    fn schema_name() -> Cow<'static, str> {
        "LogitBias".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]{1,10}$"},
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
            "maxProperties": crate::MAX_LOGIT_BIAS_ENTRIES
        })
    }
}

/// `error.code`: a machine-readable string, or the HTTP status when there is none.
pub struct ErrorCode;

impl JsonSchema for ErrorCode {
    fn schema_name() -> Cow<'static, str> {
        "ErrorCode".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "integer"]})
    }
}

/// Adds a cross-field rule (`validate` checks it by hand) to an object schema.
fn add_rule(schema: &mut Schema, rule: Value) {
    let rules = schema
        .ensure_object()
        .entry("allOf")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(rules) = rules {
        rules.push(rule);
    }
}

/// `continue_final_message` and `add_generation_prompt` cannot both be true.
fn continue_or_generation_prompt() -> Value {
    json!({"not": {
        "properties": {
            "continue_final_message": {"const": true},
            "add_generation_prompt": {"const": true}
        },
        "required": ["continue_final_message", "add_generation_prompt"]
    }})
}

/// A chat message without content (missing or null) must be the assistant's or carry
/// `tool_calls` (`ChatCompletionRequest::validate`).
pub fn chat_message_rules(schema: &mut Schema) {
    add_rule(
        schema,
        json!({
            "if": {"properties": {"role": {"const": "assistant"}}},
            "else": {"anyOf": [
                {"required": ["tool_calls"]},
                {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}
            ]}
        }),
    );
}

/// `top_logprobs` needs `logprobs: true`; see [`continue_or_generation_prompt`].
pub fn chat_request_rules(schema: &mut Schema) {
    add_rule(
        schema,
        json!({
            "if": {"properties": {"top_logprobs": {"type": "integer"}}, "required": ["top_logprobs"]},
            "then": {"properties": {"logprobs": {"const": true}}, "required": ["logprobs"]}
        }),
    );
    add_rule(schema, continue_or_generation_prompt());
}

/// `echo` with `logprobs` is refused (no engine reports prompt logprobs).
pub fn completion_request_rules(schema: &mut Schema) {
    add_rule(
        schema,
        json!({
            "if": {"properties": {"echo": {"const": true}}, "required": ["echo"]},
            "then": {"properties": {"logprobs": {"type": "null"}}}
        }),
    );
}

/// Exactly one of `prompt` and `messages`.
pub fn tokenize_request_rules(schema: &mut Schema) {
    add_rule(
        schema,
        json!({"oneOf": [
            {"properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
            {"properties": {"messages": {"type": "array"}}, "required": ["messages"]}
        ]}),
    );
    add_rule(schema, continue_or_generation_prompt());
}

/// One Responses `input` item: a message, a `function_call` or a `function_call_output`.
pub struct ResponseInputItem;

impl JsonSchema for ResponseInputItem {
    fn schema_name() -> Cow<'static, str> {
        "ResponseInputItem".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let role = generator.subschema_for::<crate::openai::Role>();
        json_schema!({
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["message", null]},
                        "role": role,
                        "content": {"anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": {
                                "type": "object",
                                "properties": {
                                    "type": {"enum": ["input_text", "output_text", "text"]},
                                    "text": {"type": "string"}
                                },
                                "required": ["type", "text"]
                            }}
                        ]}
                    },
                    "required": ["role", "content"]
                },
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": "function_call"},
                        "call_id": {"type": "string"},
                        "name": {"type": "string"},
                        "arguments": {"type": "string"}
                    },
                    "required": ["type", "call_id", "name", "arguments"]
                },
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": "function_call_output"},
                        "call_id": {"type": "string"},
                        "output": {
                            "description": "the call's result: a string, or any JSON value \
                                (passed to the chat template as its JSON text)"
                        }
                    },
                    "required": ["type", "call_id"]
                }
            ]
        })
    }
}

/// A Responses tool: a function tool in the Responses shape (`name` at the top) or chat's.
pub struct ResponseTool;

impl JsonSchema for ResponseTool {
    fn schema_name() -> Cow<'static, str> {
        "ResponseTool".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let chat = generator.subschema_for::<ChatTool>();
        json_schema!({
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": "function"},
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": ["string", "null"]},
                        "parameters": {"type": ["object", "null"]}
                    },
                    "required": ["type", "name"]
                },
                chat
            ]
        })
    }
}

/// Responses `tool_choice`: chat's, or a function named at the top level.
pub struct ResponseToolChoice;

impl JsonSchema for ResponseToolChoice {
    fn schema_name() -> Cow<'static, str> {
        "ResponseToolChoice".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let chat = generator.subschema_for::<ChatToolChoice>();
        json_schema!({
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": "function"},
                        "name": {"type": "string", "minLength": 1}
                    },
                    "required": ["type", "name"]
                },
                chat
            ]
        })
    }
}

/// Responses `text`: only the plain text format is served.
pub struct ResponseText;

impl JsonSchema for ResponseText {
    fn schema_name() -> Cow<'static, str> {
        "ResponseText".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": {
                "format": {
                    "type": "object",
                    "properties": {"type": {"const": "text"}},
                    "required": ["type"]
                }
            }
        })
    }
}
