//! Synthetic prompts and pre-serialized request bodies.
//!
//! A body is serialized once per run as a template split around the place where the per-request
//! counter goes; building a request then costs one allocation and two copies.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::args::Endpoint;

/// Common English words that Qwen3-style (byte-level BPE) tokenizers encode as one token each
/// when preceded by a space.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "time",
    "people",
    "year",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
];

/// Placeholder the counter replaces; serialized verbatim by JSON.
const COUNTER_MARK: &str = "@@SWITCHYARD_BENCH_COUNTER@@";

/// Tokens the counter and run tag take, roughly (Qwen splits digits one per token; measured:
/// 100 requested gives about 99 with the Qwen3 tokenizer).
const PREFIX_TOKENS: usize = 12;

/// Words after the per-request counter: a run tag (so a second run against the same server does
/// not hit the first run's prefix cache either) and `prompt_tokens` worth of common words.
pub fn synthetic_text(prompt_tokens: usize, run_tag: u32) -> String {
    let words = prompt_tokens.saturating_sub(PREFIX_TOKENS).max(1);
    let mut text = format!(" run{run_tag:08x}");
    // A stride coprime with the list length walks the whole list before repeating.
    let mut index = 3usize;
    for _ in 0..words {
        text.push(' ');
        text.push_str(WORDS[index % WORDS.len()]);
        index += 7;
    }
    text
}

/// What a request body needs besides the prompt.
#[derive(Clone, Debug)]
pub struct BodySpec<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub max_tokens: u32,
    pub stream: bool,
    pub ignore_eos: bool,
    pub prompt_tokens: usize,
    pub run_tag: u32,
}

/// A request body serialized once, with a gap where each request's counter goes.
#[derive(Clone, Debug)]
pub struct BodyTemplate {
    head: Bytes,
    tail: Bytes,
}

impl BodyTemplate {
    pub fn new(spec: &BodySpec<'_>) -> anyhow::Result<Self> {
        let text = format!(
            "{COUNTER_MARK}{}",
            synthetic_text(spec.prompt_tokens, spec.run_tag)
        );
        let mut body = json!({
            "model": spec.model,
            "max_tokens": spec.max_tokens,
            "stream": spec.stream,
        });
        match spec.endpoint {
            Endpoint::Completions => body["prompt"] = Value::String(text),
            Endpoint::Chat => {
                body["messages"] = json!([{ "role": "user", "content": text }]);
            }
        }
        if spec.stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if spec.ignore_eos {
            body["ignore_eos"] = Value::Bool(true);
        }
        let serialized = serde_json::to_string(&body)?;
        let mut parts = serialized.split(COUNTER_MARK);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(head), Some(tail), None) => Ok(Self {
                head: Bytes::copy_from_slice(head.as_bytes()),
                tail: Bytes::copy_from_slice(tail.as_bytes()),
            }),
            _ => anyhow::bail!("model name must not contain {COUNTER_MARK:?}"),
        }
    }

    /// The body of request number `counter`; its prompt starts with the counter.
    pub fn build(&self, counter: u64) -> Bytes {
        let mut digits = [0u8; 20];
        let counter = format_u64(counter, &mut digits);
        let mut body = Vec::with_capacity(self.head.len() + counter.len() + self.tail.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(counter);
        body.extend_from_slice(&self.tail);
        Bytes::from(body)
    }
}

fn format_u64(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: Endpoint, stream: bool, model: &str) -> BodySpec<'_> {
        BodySpec {
            endpoint,
            model,
            max_tokens: 32,
            stream,
            ignore_eos: true,
            prompt_tokens: 100,
            run_tag: 0xabc,
        }
    }

    #[test]
    fn completions_body_is_valid_json_with_counter_first() {
        let template = BodyTemplate::new(&spec(Endpoint::Completions, true, "m\"q")).unwrap();
        let body: Value = serde_json::from_slice(&template.build(4711)).unwrap();
        let prompt = body["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("4711 run00000abc to was "), "{prompt}");
        assert_eq!(prompt.split(' ').count(), 2 + (100 - PREFIX_TOKENS));
        assert_eq!(body["model"], "m\"q");
        assert_eq!(body["max_tokens"], 32);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["ignore_eos"], true);
    }

    #[test]
    fn chat_body_and_unary_options() {
        let template = BodyTemplate::new(&spec(Endpoint::Chat, false, "m")).unwrap();
        let body: Value = serde_json::from_slice(&template.build(0)).unwrap();
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .starts_with("0 run")
        );
        assert_eq!(body["stream"], false);
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn bodies_differ_per_counter() {
        let template = BodyTemplate::new(&spec(Endpoint::Chat, true, "m")).unwrap();
        assert_ne!(template.build(1), template.build(2));
        assert_eq!(
            format_u64(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn model_name_containing_the_marker_is_rejected() {
        assert!(BodyTemplate::new(&spec(Endpoint::Chat, true, COUNTER_MARK)).is_err());
    }
}
