//! Mooncake traces: parsing, and turning each request's `hash_ids` into token ids.
//!
//! A hash id stands for one block of [`TRACE_BLOCK_TOKENS`] prompt tokens. The token at position
//! `p` of block `h` is a pure function of `(h, p)`, so requests sharing leading hash ids share an
//! exact token prefix, and the engine's prefix cache sees the reuse the trace recorded.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use serde::Deserialize;

/// Tokens per hash id in the Mooncake traces.
pub const TRACE_BLOCK_TOKENS: usize = 512;

/// Token ids stay this far below the vocabulary size, clear of special and added tokens.
pub const VOCAB_MARGIN: u32 = 1000;

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TraceRequest {
    /// Arrival time in milliseconds from the start of the trace.
    pub timestamp: u64,
    pub input_length: usize,
    pub output_length: u32,
    pub hash_ids: Vec<u64>,
}

/// Reads up to `max_requests` requests (all when `None`), ordered by arrival time.
pub fn read_trace(path: &Path, max_requests: Option<usize>) -> anyhow::Result<Vec<TraceRequest>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the trace {}", path.display()))?;
    let requests =
        parse_trace(&text, max_requests).with_context(|| format!("trace {}", path.display()))?;
    anyhow::ensure!(
        !requests.is_empty(),
        "trace {} holds no requests",
        path.display()
    );
    Ok(requests)
}

/// [`read_trace`] on text already in memory.
pub fn parse_trace(text: &str, max_requests: Option<usize>) -> anyhow::Result<Vec<TraceRequest>> {
    let limit = max_requests.unwrap_or(usize::MAX);
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if requests.len() >= limit {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let request: TraceRequest = serde_json::from_str(line).with_context(|| {
            format!("line {number}: not a trace request (timestamp, input_length, output_length, hash_ids)")
        })?;
        anyhow::ensure!(request.input_length > 0, "line {number}: input_length is 0");
        let covered = request.hash_ids.len().saturating_mul(TRACE_BLOCK_TOKENS);
        anyhow::ensure!(
            request.input_length <= covered,
            "line {number}: input_length {} needs {} hash_ids of {TRACE_BLOCK_TOKENS} tokens, the line has {}",
            request.input_length,
            request.input_length.div_ceil(TRACE_BLOCK_TOKENS),
            request.hash_ids.len()
        );
        requests.push(request);
    }
    // Traces are sorted already; a stable sort keeps equal timestamps in file order.
    requests.sort_by_key(|r| r.timestamp);
    Ok(requests)
}

/// Expands hash ids into token ids below a vocabulary bound.
#[derive(Clone, Copy, Debug)]
pub struct TokenSynth {
    /// Ids are drawn from `0..modulus`.
    modulus: u32,
}

impl TokenSynth {
    /// `vocab_size`: the model's vocabulary; ids stay [`VOCAB_MARGIN`] below it.
    pub fn new(vocab_size: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            vocab_size > VOCAB_MARGIN + 1000,
            "vocabulary size {vocab_size} is too small: token ids are drawn below vocab_size - {VOCAB_MARGIN}"
        );
        Ok(Self {
            modulus: vocab_size - VOCAB_MARGIN,
        })
    }

    /// The token at `position` of the block `hash_id` stands for.
    pub fn token(&self, hash_id: u64, position: usize) -> u32 {
        let mixed = splitmix64(
            hash_id
                .wrapping_mul(TRACE_BLOCK_TOKENS as u64)
                .wrapping_add(position as u64),
        );
        (mixed % u64::from(self.modulus)) as u32
    }

    /// Calls `emit` with the request's `input_length` prompt tokens in order.
    pub fn for_each_token(&self, request: &TraceRequest, mut emit: impl FnMut(u32)) {
        let mut left = request.input_length;
        for &hash_id in &request.hash_ids {
            let take = left.min(TRACE_BLOCK_TOKENS);
            for position in 0..take {
                emit(self.token(hash_id, position));
            }
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
}

/// SplitMix64's finaliser: a cheap bijective mix, so neighbouring inputs give unrelated ids.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Serializes `/v1/completions` bodies with a token-id prompt for one model.
#[derive(Clone, Debug)]
pub struct CompletionBodies {
    synth: TokenSynth,
    /// `{"model":"...","prompt":[`
    head: Vec<u8>,
}

impl CompletionBodies {
    pub fn new(model: &str, synth: TokenSynth) -> anyhow::Result<Self> {
        let mut head = b"{\"model\":".to_vec();
        serde_json::to_writer(&mut head, model)?;
        head.extend_from_slice(b",\"prompt\":[");
        Ok(Self { synth, head })
    }

    /// The streamed, usage-reporting, `ignore_eos` request for `request`.
    pub fn body(&self, request: &TraceRequest) -> Bytes {
        // Up to 6 digits and a comma per token.
        let mut out = Vec::with_capacity(self.head.len() + request.input_length * 7 + 128);
        out.extend_from_slice(&self.head);
        let mut first = true;
        self.synth.for_each_token(request, |token| {
            if !first {
                out.push(b',');
            }
            first = false;
            push_decimal(&mut out, token);
        });
        out.extend_from_slice(b"],\"max_tokens\":");
        push_decimal(&mut out, request.output_length.max(1));
        out.extend_from_slice(
            b",\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        );
        Bytes::from(out)
    }
}

/// Appends `value` in decimal (a `write!` per token would dominate body building).
fn push_decimal(out: &mut Vec<u8>, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The vocabulary size of a Hugging Face `tokenizer.json`: base vocabulary plus added tokens
/// (ids past the base vocabulary).
pub fn vocab_size_from_tokenizer_json(text: &str) -> anyhow::Result<u32> {
    #[derive(Deserialize)]
    struct TokenizerFile {
        model: Model,
        #[serde(default)]
        added_tokens: Vec<AddedToken>,
    }
    #[derive(Deserialize)]
    struct Model {
        vocab: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct AddedToken {
        id: u64,
    }
    let file: TokenizerFile =
        serde_json::from_str(text).context("not a tokenizer.json with model.vocab")?;
    let base = match &file.model.vocab {
        serde_json::Value::Object(map) => map.len() as u64,
        serde_json::Value::Array(list) => list.len() as u64,
        _ => anyhow::bail!("model.vocab is neither a map nor a list"),
    };
    let past_added = file
        .added_tokens
        .iter()
        .map(|t| t.id + 1)
        .max()
        .unwrap_or(0);
    u32::try_from(base.max(past_added)).context("vocabulary larger than u32")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input_length: usize, hash_ids: &[u64]) -> TraceRequest {
        TraceRequest {
            timestamp: 0,
            input_length,
            output_length: 3,
            hash_ids: hash_ids.to_vec(),
        }
    }

    fn tokens(synth: &TokenSynth, request: &TraceRequest) -> Vec<u32> {
        let mut out = Vec::new();
        synth.for_each_token(request, |t| out.push(t));
        out
    }

    #[test]
    fn shared_leading_hash_ids_share_an_exact_token_prefix() {
        let synth = TokenSynth::new(151_669).unwrap();
        let a = tokens(&synth, &request(1300, &[7, 8, 9]));
        let b = tokens(&synth, &request(1100, &[7, 8, 4]));
        assert_eq!((a.len(), b.len()), (1300, 1100));
        assert_eq!(a[..1024], b[..1024], "two shared blocks");
        assert_ne!(a[1024..1100], b[1024..1100], "third block differs");
        // Same id at a different block position still gives the same block of tokens.
        let c = tokens(&synth, &request(600, &[3, 7]));
        assert_eq!(c[512..600], a[..88]);
        assert!(a.iter().all(|&t| t < 151_669 - VOCAB_MARGIN));
        // Not a constant or a short cycle.
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 1200, "{}", distinct.len());
    }

    #[test]
    fn bodies_are_valid_json_with_the_token_prompt() {
        let synth = TokenSynth::new(5000).unwrap();
        let bodies = CompletionBodies::new("m\"odel", synth).unwrap();
        let mut req = request(700, &[1, 2]);
        req.output_length = 0;
        let body: serde_json::Value = serde_json::from_slice(&bodies.body(&req)).unwrap();
        assert_eq!(body["model"], "m\"odel");
        let prompt: Vec<u32> = serde_json::from_value(body["prompt"].clone()).unwrap();
        assert_eq!(prompt, tokens(&synth, &req));
        assert_eq!(body["max_tokens"], 1, "at least one output token");
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        let mut out = Vec::new();
        for v in [0, 9, 10, 4_294_967_295] {
            out.clear();
            push_decimal(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn traces_parse_in_arrival_order_and_bad_lines_say_where() {
        let text = "{\"timestamp\": 5, \"input_length\": 600, \"output_length\": 2, \"hash_ids\": [1, 2]}\n\n\
                    {\"timestamp\": 1, \"input_length\": 10, \"output_length\": 0, \"hash_ids\": [3]}\n\
                    {\"timestamp\": 9, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [4]}\n";
        let all = parse_trace(text, None).unwrap();
        assert_eq!(
            all.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            vec![1, 5, 9]
        );
        assert_eq!(parse_trace(text, Some(2)).unwrap().len(), 2);

        let short = "{\"timestamp\": 0, \"input_length\": 1025, \"output_length\": 1, \"hash_ids\": [1, 2]}";
        let err = format!("{:#}", parse_trace(short, None).unwrap_err());
        assert!(
            err.contains("line 1") && err.contains("needs 3 hash_ids"),
            "{err}"
        );
        let err = format!("{:#}", parse_trace("ok\n{}", None).unwrap_err());
        assert!(err.contains("line 1"), "{err}");
        let negative =
            "{\"timestamp\": -1, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}";
        assert!(parse_trace(negative, None).is_err());
        assert!(TokenSynth::new(1500).is_err());
    }

    #[test]
    fn vocabulary_size_counts_added_tokens() {
        let json = r#"{"added_tokens":[{"id":5,"content":"<s>"}],"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2}}}"#;
        assert_eq!(vocab_size_from_tokenizer_json(json).unwrap(), 6);
        let unigram = r#"{"model":{"type":"Unigram","vocab":[["a",0.0],["b",-1.0]]}}"#;
        assert_eq!(vocab_size_from_tokenizer_json(unigram).unwrap(), 2);
        assert!(vocab_size_from_tokenizer_json("{}").is_err());
    }
}
