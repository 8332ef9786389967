//! The request side of tool calling: `tool_choice` and the declared `tools`.

use serde_json::Value;

use crate::ParserError;
use crate::delta::ToolCall;
use crate::tool::{ToolCallParser, ToolParserKind};

/// A request's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// `"none"`: the model must not call tools; output is not parsed for calls.
    None,
    /// `"auto"`: calls are parsed when the model makes them.
    Auto,
    /// `"required"`: the model must call at least one tool (enforcing that is the caller's
    /// business; parsing is as for `Auto`).
    Required,
    /// `{"type": "function", "function": {"name": NAME}}`.
    Function(String),
}

impl ToolChoice {
    /// Reads `tool_choice`; absent means `auto` when tools are given and `none` otherwise
    /// (OpenAI's defaults).
    pub fn from_request(value: Option<&Value>, has_tools: bool) -> Result<Self, ParserError> {
        let invalid = |why: &str| ParserError::InvalidToolChoice(why.to_owned());
        Ok(match value {
            None | Some(Value::Null) => {
                if has_tools {
                    ToolChoice::Auto
                } else {
                    ToolChoice::None
                }
            }
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                _ => {
                    return Err(invalid(
                        "tool_choice must be \"none\", \"auto\", \"required\" or a function object",
                    ));
                }
            },
            Some(Value::Object(o)) => {
                if o.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(invalid(
                        "tool_choice object must have \"type\": \"function\"",
                    ));
                }
                match o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                {
                    Some(name) if !name.is_empty() => ToolChoice::Function(name.to_owned()),
                    _ => {
                        return Err(invalid(
                            "tool_choice.function.name must be a non-empty string",
                        ));
                    }
                }
            }
            Some(_) => return Err(invalid("tool_choice must be a string or an object")),
        })
    }

    /// Whether output should be parsed for tool calls at all.
    pub fn parses_calls(&self) -> bool {
        *self != ToolChoice::None
    }
}

/// The function names declared in a request's `tools` (entries without a string
/// `function.name` are skipped).
pub fn declared_function_names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect()
}

impl ToolCall {
    /// Whether the call names a function declared in `tools`.
    pub fn is_declared_in(&self, tools: &[Value]) -> bool {
        declared_function_names(tools).contains(&self.name.as_str())
    }
}

impl ToolCallParser {
    /// The parser a request needs: `None` (text passes unchanged) when no parser is
    /// configured, the request declares no tools, or `tool_choice` is `none`.
    pub fn for_request(
        kind: Option<ToolParserKind>,
        tools: Option<&[Value]>,
        choice: &ToolChoice,
    ) -> Option<Self> {
        let kind = kind?;
        (tools.is_some_and(|t| !t.is_empty()) && choice.parses_calls())
            .then(|| ToolCallParser::new(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_choice_values() {
        assert_eq!(
            ToolChoice::from_request(None, true).unwrap(),
            ToolChoice::Auto
        );
        assert_eq!(
            ToolChoice::from_request(None, false).unwrap(),
            ToolChoice::None
        );
        assert_eq!(
            ToolChoice::from_request(Some(&json!("required")), true).unwrap(),
            ToolChoice::Required
        );
        let named = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(
            ToolChoice::from_request(Some(&named), true).unwrap(),
            ToolChoice::Function("f".into())
        );
        for bad in [
            json!("sometimes"),
            json!(3),
            json!({"type": "function"}),
            json!({"function": {"name": "f"}}),
        ] {
            let err = ToolChoice::from_request(Some(&bad), true).unwrap_err();
            assert!(err.to_string().contains("tool_choice"), "{err}");
        }
    }

    #[test]
    fn parser_only_when_calls_can_happen() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {}}}),
        ];
        let kind = Some(ToolParserKind::Hermes);
        assert!(ToolCallParser::for_request(kind, Some(&tools), &ToolChoice::Auto).is_some());
        assert!(ToolCallParser::for_request(kind, Some(&tools), &ToolChoice::None).is_none());
        assert!(ToolCallParser::for_request(kind, Some(&[]), &ToolChoice::Auto).is_none());
        assert!(ToolCallParser::for_request(None, Some(&tools), &ToolChoice::Auto).is_none());
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{}".into(),
        };
        assert!(call.is_declared_in(&tools));
        assert!(
            !ToolCall {
                name: "rm_rf".into(),
                ..call
            }
            .is_declared_in(&tools)
        );
    }
}
