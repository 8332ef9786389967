//! OpenAI request bodies as the HTTP front door parses them.

use serde_json::Value;
use switchyard_protocol::openai::{ChatCompletionRequest, CompletionRequest, PromptInput};
use switchyard_protocol::{ApiError, ErrorKind};

/// Parses `body` as a chat and as a completion request and validates what parses, as the HTTP
/// handlers do. Asserts that every rejection is a 400 with an OpenAI error body, and that an
/// accepted request has the shape the pipeline relies on.
pub fn check_openai_request(body: &[u8]) {
    if let Ok(mut chat) = serde_json::from_slice::<ChatCompletionRequest>(body) {
        let max_completion_tokens = chat.max_completion_tokens;
        match chat.validate() {
            Ok(()) => check_accepted_chat(&chat, max_completion_tokens),
            Err(err) => check_rejection(&err),
        }
    }
    if let Ok(completion) = serde_json::from_slice::<CompletionRequest>(body) {
        match completion.validate() {
            Ok(()) => match completion.prompt.into_inputs() {
                Ok(inputs) => {
                    assert!(!inputs.is_empty(), "accepted a completion without prompts");
                    for input in &inputs {
                        if let PromptInput::Tokens(ids) = input {
                            assert!(!ids.is_empty(), "accepted an empty token-id prompt");
                        }
                    }
                }
                Err(err) => check_rejection(&err),
            },
            Err(err) => check_rejection(&err),
        }
    }
}

fn check_accepted_chat(chat: &ChatCompletionRequest, max_completion_tokens: Option<i64>) {
    assert!(
        !chat.messages.is_empty(),
        "accepted a chat without messages"
    );
    if max_completion_tokens.is_some() {
        assert_eq!(chat.common.max_tokens, max_completion_tokens);
    }
    if let Some(max) = chat.common.max_tokens {
        assert!((0..=i64::from(u32::MAX)).contains(&max), "max_tokens {max}");
    }
    for message in &chat.messages {
        assert!(
            matches!(
                message.content,
                Value::Null | Value::String(_) | Value::Array(_)
            ),
            "accepted content {:?}",
            message.content
        );
        // The pipeline hands messages to the chat template as JSON values; a failure there would
        // silently drop the message.
        let value = serde_json::to_value(message).expect("an accepted message serializes");
        assert_eq!(
            value.get("role").and_then(Value::as_str),
            Some(message.role.as_str())
        );
    }
}

fn check_rejection(err: &ApiError) {
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err:?}");
    assert_eq!(err.kind.http_status(), 400);
    assert!(!err.message.is_empty(), "an error without a message");
    serde_json::to_vec(&err.body()).expect("error bodies serialize");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_without_panicking() {
        check_openai_request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        check_openai_request(br#"{"model":"m","prompt":[[1,2],[3]],"max_tokens":3}"#);
        check_openai_request(br#"{"model":"m","prompt":[[]],"temperature":9}"#);
        check_openai_request(b"\xff{");
    }
}
