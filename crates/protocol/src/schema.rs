//! JSON Schemas of fields whose Rust type is looser than their contract (`serde_json::Value`
//! kept for the chat template, or checked by hand in `validate`). Schema-only: nothing here is
//! serialized; the wire types name these with `#[schemars(with = ...)]`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

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
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "parameters": {"type": "object"}
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
