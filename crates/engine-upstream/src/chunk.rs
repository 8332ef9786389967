//! One streamed `/v1/completions` chunk from an OpenAI-compatible server, as far as the engine
//! needs it.
//!
//! Token ids come, in order of preference, from `choices[0].token_ids` (vLLM's
//! `return_token_ids`), or from `choices[0].logprobs.tokens` entries `"token_id:N"` (older vLLM
//! with `return_tokens_as_token_ids`); else only `text` is there and must be re-tokenized.

use serde::Deserialize;

#[derive(Debug, Default, PartialEq)]
pub struct ChunkDelta {
    /// The chunk's new token ids, when the server sent them.
    pub token_ids: Option<Vec<u32>>,
    pub text: String,
    pub finish_reason: Option<String>,
    /// From a `usage` object: prompt tokens found in the server's prefix cache.
    pub cached_tokens: Option<u32>,
    pub has_usage: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    token_ids: Option<Vec<u32>>,
    #[serde(default)]
    logprobs: Option<Logprobs>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Logprobs {
    #[serde(default)]
    tokens: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// Parses one chunk; `Err` carries what to tell the client (malformed JSON, or the server's own
/// mid-stream error).
pub fn parse_chunk(data: &str) -> Result<ChunkDelta, String> {
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
        let shown: String = data.chars().take(200).collect();
        format!("malformed chunk from upstream ({e}): {shown}")
    })?;
    if let Some(error) = chunk.error {
        return Err(format!(
            "upstream error: {}",
            error.message.unwrap_or_else(|| "(no message)".into())
        ));
    }
    let mut delta = ChunkDelta {
        has_usage: chunk.usage.is_some(),
        cached_tokens: chunk
            .usage
            .and_then(|u| u.prompt_tokens_details)
            .and_then(|d| d.cached_tokens),
        ..ChunkDelta::default()
    };
    if chunk.choices.len() > 1 {
        return Err(format!(
            "upstream sent {} choices in one chunk; expected one",
            chunk.choices.len()
        ));
    }
    if let Some(choice) = chunk.choices.into_iter().next() {
        delta.text = choice.text.unwrap_or_default();
        delta.finish_reason = choice.finish_reason;
        delta.token_ids = match choice.token_ids {
            Some(ids) => Some(ids),
            None => match choice.logprobs.and_then(|l| l.tokens) {
                Some(tokens) => Some(
                    tokens
                        .iter()
                        .map(|t| {
                            t.strip_prefix("token_id:")
                                .and_then(|n| n.parse().ok())
                                .ok_or_else(|| {
                                    format!("upstream logprobs token `{t}` is not `token_id:N`")
                                })
                        })
                        .collect::<Result<Vec<u32>, String>>()?,
                ),
                None => None,
            },
        };
    }
    Ok(delta)
}

/// The `error.message` of an error response body, if it has the OpenAI shape.
pub fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_text_logprobs_and_usage() {
        let d = parse_chunk(
            r#"{"id":"c","choices":[{"index":0,"text":"Hi","token_ids":[5,6],"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(d.token_ids, Some(vec![5, 6]));
        assert_eq!(d.text, "Hi");
        let d = parse_chunk(
            r#"{"choices":[{"text":"a","logprobs":{"tokens":["token_id:42"]},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(d.token_ids, Some(vec![42]));
        assert_eq!(d.finish_reason.as_deref(), Some("length"));
        let d = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":16}}}"#,
        )
        .unwrap();
        assert_eq!(d.cached_tokens, Some(16));
        assert!(d.has_usage);
        let d = parse_chunk(r#"{"choices":[{"text":"only text"}]}"#).unwrap();
        assert_eq!(d.token_ids, None);
    }

    #[test]
    fn bad_chunks_say_why() {
        assert!(parse_chunk("{not json").unwrap_err().contains("malformed"));
        assert!(
            parse_chunk(r#"{"error":{"message":"boom"}}"#)
                .unwrap_err()
                .contains("boom")
        );
        assert!(
            parse_chunk(r#"{"choices":[{"logprobs":{"tokens":["hello"]}}]}"#)
                .unwrap_err()
                .contains("token_id")
        );
        assert_eq!(
            error_message(br#"{"error":{"message":"bad prompt","type":"BadRequestError"}}"#),
            Some("bad prompt".into())
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}
