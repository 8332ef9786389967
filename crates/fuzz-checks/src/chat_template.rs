//! Hostile chat messages through real chat templates, as the pipeline renders them.

use std::sync::OnceLock;

use serde_json::{Map, Number, Value};
use switchyard_preprocess::{ChatTemplateInput, flatten_text_content};

use crate::ByteSource;
use crate::models::{self, LoadedModel};

/// One conversation as the pipeline would hand it to a template.
#[derive(Debug, Default)]
struct Conversation {
    messages: Vec<Value>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
    continue_final_message: bool,
    kwargs: Option<Map<String, Value>>,
}

/// Renders a conversation built from `data` through the Qwen3 and Gemma 3 templates, as
/// `ModelPipeline::preprocess_chat` does (content parts flattened for templates that expect
/// strings, `continue_final_message` honoured), and tokenizes the Qwen3 prompt. Render errors are
/// fine. Asserts that a hostile render leaves the shared compiled templates working: a fixed
/// conversation still renders exactly as before.
///
/// `data` that parses as JSON is used as is: an array of messages, or an object with
/// `messages`, `tools`, `add_generation_prompt`, `continue_final_message` and
/// `chat_template_kwargs` (hand-written seeds). Other bytes drive a generator of messages with
/// random roles, contents, content parts, tool calls, reasoning fields and template kwargs.
pub fn check_chat_template(data: &[u8]) {
    let conversation = from_json(data).unwrap_or_else(|| generate(&mut ByteSource::new(data)));
    let qwen3 = models::qwen3();
    if let Ok(prompt) = render(qwen3, &conversation) {
        // The pipeline tokenizes every rendered prompt; hostile text must not break that either.
        let _ = qwen3.card.tokenizer.encode(&prompt, false);
    }
    let gemma3 = models::gemma3();
    let _ = render(gemma3, &conversation);
    for (model, expected) in [(qwen3, &baselines().0), (gemma3, &baselines().1)] {
        assert_eq!(
            render(model, &baseline_conversation()).as_ref(),
            Ok(expected),
            "{}: a fixed conversation renders differently after a hostile one",
            model.card.name
        );
    }
}

/// Loads both models and renders the reference conversation.
pub(crate) fn warm_up() {
    baselines();
}

fn render(model: &LoadedModel, conversation: &Conversation) -> Result<String, String> {
    let template = &model.template;
    let mut messages = conversation.messages.clone();
    if !template.accepts_content_parts() {
        flatten_text_content(&mut messages);
    }
    let input = ChatTemplateInput {
        messages: &messages,
        tools: conversation.tools.as_deref(),
        add_generation_prompt: conversation.add_generation_prompt,
        extra: conversation.kwargs.as_ref(),
    };
    let rendered = if conversation.continue_final_message {
        template.render_continuing_final_message(&input)
    } else {
        template.render(&input)
    };
    rendered.map_err(|err| {
        // Every failure must carry a message the client can act on.
        let message = err.to_string();
        assert!(
            !message.is_empty(),
            "{}: empty render error",
            model.card.name
        );
        message
    })
}

fn baseline_conversation() -> Conversation {
    Conversation {
        messages: vec![
            serde_json::json!({"role": "user", "content": "Hello"}),
            serde_json::json!({"role": "assistant", "content": "Hi there"}),
            serde_json::json!({"role": "user", "content": [{"type": "text", "text": "Bye"}]}),
        ],
        add_generation_prompt: true,
        ..Conversation::default()
    }
}

/// The fixed conversation's renders by Qwen3 and Gemma 3, taken before any hostile input.
fn baselines() -> &'static (String, String) {
    static BASELINES: OnceLock<(String, String)> = OnceLock::new();
    BASELINES.get_or_init(|| {
        let render_baseline = |model: &LoadedModel| {
            render(model, &baseline_conversation())
                .unwrap_or_else(|err| panic!("{}: baseline render failed: {err}", model.card.name))
        };
        (
            render_baseline(models::qwen3()),
            render_baseline(models::gemma3()),
        )
    })
}

fn from_json(data: &[u8]) -> Option<Conversation> {
    match serde_json::from_slice::<Value>(data).ok()? {
        Value::Array(messages) => Some(Conversation {
            messages,
            add_generation_prompt: true,
            ..Conversation::default()
        }),
        Value::Object(mut body) => {
            let messages = match body.remove("messages") {
                Some(Value::Array(messages)) => messages,
                Some(other) => vec![other],
                None => Vec::new(),
            };
            let tools = match body.remove("tools") {
                Some(Value::Array(tools)) => Some(tools),
                Some(Value::Null) | None => None,
                Some(other) => Some(vec![other]),
            };
            let continue_final_message = body
                .get("continue_final_message")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let add_generation_prompt = body
                .get("add_generation_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(!continue_final_message);
            let kwargs = match body.remove("chat_template_kwargs") {
                Some(Value::Object(kwargs)) => Some(kwargs),
                _ => None,
            };
            Some(Conversation {
                messages,
                tools,
                add_generation_prompt,
                continue_final_message,
                kwargs,
            })
        }
        _ => None,
    }
}

/// Text fragments the templates (or the code around them) treat specially.
const FRAGMENTS: [&str; 28] = [
    "",
    " ",
    "\n",
    "\n\n",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "CONTINUE_FINAL_MESSAGE_TAG ",
    "CONTINUE_FINAL_MESSAGE_TAG",
    "{{ messages }}",
    "{% for m in messages %}",
    "\0",
    "é",
    "日本語",
    "🦀",
    "\\",
    "\"",
    "'",
    "user",
    "assistant",
];

const ROLES: [&str; 8] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
    "model",
    "",
];

const KEYS: [&str; 16] = [
    "type",
    "text",
    "content",
    "role",
    "name",
    "arguments",
    "function",
    "tool_calls",
    "image",
    "parameters",
    "properties",
    "description",
    "reasoning_content",
    "thinking",
    "enable_thinking",
    "tools",
];

fn text(src: &mut ByteSource<'_>) -> String {
    let mut out = String::new();
    for _ in 0..src.below(4) {
        if src.bool() {
            out.push_str(src.pick(&FRAGMENTS));
        } else {
            let len = src.below(12);
            out.push_str(&String::from_utf8_lossy(src.take(len)));
        }
    }
    out
}

fn key(src: &mut ByteSource<'_>) -> String {
    if src.below(4) == 0 {
        text(src)
    } else {
        src.pick(&KEYS).to_string()
    }
}

/// Any JSON value, nested at most `depth` deep.
fn value(src: &mut ByteSource<'_>, depth: u32) -> Value {
    let kinds = if depth == 0 { 6 } else { 8 };
    match src.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(src.bool()),
        2 => Value::from(i64::from(src.u32() as i32) * i64::from(src.byte())),
        3 => Value::from(u64::MAX - u64::from(src.byte())),
        4 => Number::from_f64(f64::from(src.u32() as i32) / 7.0).map_or(Value::Null, Value::Number),
        5 => Value::String(text(src)),
        6 => Value::Array((0..src.below(4)).map(|_| value(src, depth - 1)).collect()),
        _ => Value::Object(
            (0..src.below(4))
                .map(|_| (key(src), value(src, depth - 1)))
                .collect(),
        ),
    }
}

fn content(src: &mut ByteSource<'_>) -> Option<Value> {
    Some(match src.below(8) {
        0 => return None,
        1 => Value::Null,
        2 => Value::Array(
            (0..src.below(4))
                .map(|_| match src.below(3) {
                    0 => serde_json::json!({"type": "text", "text": text(src)}),
                    1 => serde_json::json!({"type": "image"}),
                    _ => value(src, 2),
                })
                .collect(),
        ),
        3 => value(src, 3),
        _ => Value::String(text(src)),
    })
}

fn tool_call(src: &mut ByteSource<'_>) -> Value {
    let arguments = match src.below(3) {
        0 => Value::String(text(src)),
        1 => value(src, 3),
        _ => serde_json::json!({"city": text(src), "n": src.byte()}),
    };
    match src.below(3) {
        0 => serde_json::json!({"type": "function", "id": text(src),
            "function": {"name": text(src), "arguments": arguments}}),
        1 => serde_json::json!({"name": text(src), "arguments": arguments}),
        _ => value(src, 2),
    }
}

fn message(src: &mut ByteSource<'_>) -> Value {
    if src.below(16) == 0 {
        return value(src, 3); // not even an object
    }
    let mut msg = Map::new();
    match src.below(10) {
        0 => {}
        1 => {
            msg.insert("role".into(), value(src, 1));
        }
        _ => {
            msg.insert("role".into(), Value::from(src.pick(&ROLES)));
        }
    }
    if let Some(content) = content(src) {
        msg.insert("content".into(), content);
    }
    for _ in 0..src.below(4) {
        let (name, field) = match src.below(7) {
            0 => (
                "tool_calls",
                match src.below(3) {
                    0 => value(src, 2),
                    _ => Value::Array((0..src.below(3)).map(|_| tool_call(src)).collect()),
                },
            ),
            1 => ("reasoning_content", Value::String(text(src))),
            2 => ("thinking", Value::String(text(src))),
            3 => ("reasoning", value(src, 1)),
            4 => ("name", Value::String(text(src))),
            5 => ("tool_call_id", Value::String(text(src))),
            _ => {
                msg.insert(key(src), value(src, 2));
                continue;
            }
        };
        msg.insert(name.into(), field);
    }
    Value::Object(msg)
}

fn generate(src: &mut ByteSource<'_>) -> Conversation {
    let flags = src.byte();
    let messages = (0..src.below(9)).map(|_| message(src)).collect();
    let tools = (flags & 1 != 0).then(|| {
        (0..src.below(4))
            .map(|_| match src.below(3) {
                0 => value(src, 3),
                _ => serde_json::json!({"type": "function", "function": {
                    "name": text(src), "description": text(src),
                    "parameters": {"type": "object", "properties": {text(src): value(src, 2)}}}}),
            })
            .collect()
    });
    let kwargs = (flags & 2 != 0).then(|| {
        (0..src.below(3))
            .map(|_| match src.below(3) {
                0 => ("enable_thinking".to_string(), value(src, 1)),
                _ => (key(src), value(src, 2)),
            })
            .collect()
    });
    Conversation {
        messages,
        tools,
        add_generation_prompt: flags & 4 != 0,
        continue_final_message: flags & 8 != 0,
        kwargs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_conversations_cover_the_shapes() {
        let conversation = generate(&mut ByteSource::new(&[0b1011, 2, 2, 4, 9, 9, 9, 9, 9]));
        assert_eq!(conversation.messages.len(), 2);
        assert!(conversation.tools.is_some() && conversation.kwargs.is_some());
        assert!(conversation.continue_final_message && !conversation.add_generation_prompt);
        let empty = generate(&mut ByteSource::new(&[]));
        assert!(empty.messages.is_empty() && empty.tools.is_none());
    }

    #[test]
    fn json_bodies_are_taken_as_they_are() {
        let conversation = from_json(
            br#"{"messages":[{"role":"user","content":"x"}],"continue_final_message":true}"#,
        )
        .unwrap();
        assert_eq!(conversation.messages.len(), 1);
        assert!(conversation.continue_final_message && !conversation.add_generation_prompt);
        assert!(from_json(b"\x01\x02").is_none());
    }
}
