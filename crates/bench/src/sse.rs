//! Incremental Server-Sent Events parsing and a cheap look at OpenAI stream chunks.
//!
//! The load generator must cost little CPU next to the server it measures, so it never parses a
//! streamed chunk's JSON fully: [`classify_chunk`] only scans for the few keys it needs (does the
//! chunk carry content, is it an error, what does `usage` say). [`SseParser`] splits body frames
//! into events without re-scanning bytes it has already seen; only a line cut by a frame boundary
//! is copied.

/// Splits an SSE byte stream into events (`data:` payloads), frame by frame.
///
/// Buffers are kept across requests (call [`SseParser::reset`] between them) so a client
/// allocates nothing per event once warmed up.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
    /// `data:` lines of the event being assembled, joined by `\n` as the SSE spec says.
    data: Vec<u8>,
    has_data: bool,
    /// The event being assembled was announced with `event: error`.
    error_event: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any half-received line or event, keeping the buffers' capacity.
    pub fn reset(&mut self) {
        self.partial_line.clear();
        self.data.clear();
        self.has_data = false;
        self.error_event = false;
    }

    /// Feeds one body frame; calls `on_event(payload, is_error_event)` for every event it
    /// completes.
    pub fn feed(&mut self, mut frame: &[u8], on_event: &mut impl FnMut(&[u8], bool)) {
        while let Some(newline) = memchr::memchr(b'\n', frame) {
            let line = &frame[..newline];
            if self.partial_line.is_empty() {
                self.process_line(line, on_event);
            } else {
                // Move the joined line out so `process_line` can borrow `self` mutably.
                let mut joined = std::mem::take(&mut self.partial_line);
                joined.extend_from_slice(line);
                self.process_line(&joined, on_event);
                joined.clear();
                self.partial_line = joined;
            }
            frame = &frame[newline + 1..];
        }
        self.partial_line.extend_from_slice(frame);
    }

    /// The body ended: completes a last line or event that was not terminated.
    pub fn finish(&mut self, on_event: &mut impl FnMut(&[u8], bool)) {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.process_line(&line, on_event);
            self.partial_line = line;
            self.partial_line.clear();
        }
        self.dispatch(on_event);
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8], bool)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.error_event = value == b"error",
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&[u8], bool)) {
        if self.has_data {
            on_event(&self.data, self.error_event);
        }
        self.data.clear();
        self.has_data = false;
        self.error_event = false;
    }
}

/// What one `data:` payload of an OpenAI stream means to the load generator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The `[DONE]` sentinel.
    pub done: bool,
    /// The payload carries a top-level-looking `"error"` object.
    pub error: bool,
    /// Non-empty `content`, `text`, `reasoning_content`, or `tool_calls`.
    pub has_content: bool,
    pub completion_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    /// `usage.prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
}

/// Scans a chunk once for the keys the generator needs, without building a JSON tree.
///
/// Walks the string tokens: a string followed by `:` is a key, and only the keys below are
/// looked at. Sound for valid JSON, because quotes inside strings are escaped. A plain byte loop:
/// chunks are a few hundred bytes with many short strings, where per-call setup of vectorised
/// search costs more than it saves.
pub fn classify_chunk(payload: &[u8]) -> ChunkInfo {
    let payload = payload.trim_ascii();
    let mut info = ChunkInfo::default();
    if payload == b"[DONE]" {
        info.done = true;
        return info;
    }
    let mut in_usage = false;
    let mut at = 0;
    while at < payload.len() {
        if payload[at] != b'"' {
            at += 1;
            continue;
        }
        let key_start = at + 1;
        let Some(key_end) = string_end(payload, key_start) else {
            break; // unterminated string: malformed, nothing more to learn
        };
        at = key_end + 1;
        let after = payload[at..].trim_ascii_start();
        let Some(value) = after.strip_prefix(b":") else {
            continue; // a string value, not a key
        };
        let value = value.trim_ascii_start();
        match &payload[key_start..key_end] {
            b"content" | b"text" | b"reasoning_content" => {
                info.has_content |= value.len() >= 2 && value[0] == b'"' && value[1] != b'"';
            }
            b"tool_calls" => {
                info.has_content |= value.first() == Some(&b'[')
                    && value[1..].trim_ascii_start().first() != Some(&b']');
            }
            b"error" => info.error |= !value.starts_with(b"null"),
            b"usage" => in_usage = value.first() == Some(&b'{'),
            b"completion_tokens" if in_usage => info.completion_tokens = parse_uint(value),
            b"prompt_tokens" if in_usage => info.prompt_tokens = parse_uint(value),
            b"cached_tokens" if in_usage => info.cached_tokens = parse_uint(value),
            _ => {}
        }
    }
    info
}

/// Index of the quote closing the string whose first byte is at `from`.
fn string_end(json: &[u8], mut from: usize) -> Option<usize> {
    while from < json.len() {
        match json[from] {
            b'"' => return Some(from),
            b'\\' => from += 2, // skip the escaped byte
            _ => from += 1,
        }
    }
    None
}

fn parse_uint(value: &[u8]) -> Option<u64> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    value[..digits].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[&[u8]]) -> Vec<(String, bool)> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let mut push = |payload: &[u8], err: bool| {
            out.push((String::from_utf8_lossy(payload).into_owned(), err));
        };
        for frame in frames {
            parser.feed(frame, &mut push);
        }
        parser.finish(&mut push);
        out
    }

    #[test]
    fn splits_events_across_arbitrary_frame_boundaries() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        let whole = events(&[stream]);
        assert_eq!(
            whole,
            vec![
                ("{\"a\":1}".to_string(), false),
                ("{\"b\":2}".to_string(), false),
                ("[DONE]".to_string(), false)
            ]
        );
        for cut in 0..stream.len() {
            assert_eq!(
                events(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut {cut}"
            );
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytewise), whole);
    }

    #[test]
    fn error_event_and_multiline_data() {
        let got = events(&[b"event: error\ndata: {\"x\":\ndata: 1}\n\ndata: after\n\n"]);
        assert_eq!(
            got,
            vec![
                ("{\"x\":\n1}".to_string(), true),
                ("after".to_string(), false)
            ]
        );
    }

    #[test]
    fn unterminated_last_event_is_delivered_on_finish() {
        assert_eq!(events(&[b"data: tail"]), vec![("tail".to_string(), false)]);
    }

    #[test]
    fn classifies_chat_and_completion_chunks() {
        let role = br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert!(!classify_chunk(role).has_content);
        let chat = br#"{"choices":[{"delta":{"content":"Hi"},"logprobs":null}],"usage":null}"#;
        let info = classify_chunk(chat);
        assert!(info.has_content && !info.error && info.completion_tokens.is_none());
        let spaced = br#"{"choices": [{"text": " there", "index": 0}]}"#;
        assert!(classify_chunk(spaced).has_content);
        let reasoning = br#"{"choices":[{"delta":{"content":null,"reasoning_content":"hm"}}]}"#;
        assert!(classify_chunk(reasoning).has_content);
        let tools = br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#;
        assert!(classify_chunk(tools).has_content);
        let no_tools = br#"{"choices":[{"delta":{"tool_calls":[ ]}}]}"#;
        assert!(!classify_chunk(no_tools).has_content);
        assert!(classify_chunk(b" [DONE] ").done);
    }

    #[test]
    fn reads_usage_and_ignores_lookalike_keys() {
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":131,"completion_tokens":32,"completion_tokens_details":{"reasoning_tokens":0},"total_tokens":163}}"#;
        let info = classify_chunk(usage);
        assert_eq!(info.cached_tokens, None);
        let cached = br#"{"choices":[],"usage":{"prompt_tokens":1024,"completion_tokens":3,"total_tokens":1027,"prompt_tokens_details":{"cached_tokens":512}}}"#;
        assert_eq!(classify_chunk(cached).cached_tokens, Some(512));
        assert_eq!(info.completion_tokens, Some(32));
        assert_eq!(info.prompt_tokens, Some(131));
        assert!(!info.has_content);
        // Keys quoted inside a string value are escaped, so they are not keys.
        let tricky = br#"{"choices":[{"delta":{"content":"say \"error\": {} and \"usage\": {\"completion_tokens\": 9}"}}]}"#;
        let info = classify_chunk(tricky);
        assert!(info.has_content);
        assert!(!info.error);
        assert_eq!(info.completion_tokens, None);
        // A string value equal to a key name is not followed by ':'.
        assert!(!classify_chunk(br#"{"object":"error","x":"text"}"#).error);
    }

    #[test]
    fn malformed_payloads_do_not_panic() {
        for bad in [
            &b"{\"content\":\"x"[..],
            b"{\"a\":\"\\",
            b"\"",
            b"{\"usage\":{\"completion_tokens\":",
            b"",
        ] {
            let _ = classify_chunk(bad);
        }
        assert_eq!(
            classify_chunk(br#"{"usage":{"completion_tokens":99999999999999999999999}}"#)
                .completion_tokens,
            None
        );
    }

    #[test]
    fn token_counts_outside_usage_are_ignored() {
        let info = classify_chunk(br#"{"x":{"completion_tokens":3},"usage":null}"#);
        assert_eq!(info.completion_tokens, None);
    }

    #[test]
    fn detects_error_payloads() {
        let err = br#"{"error":{"message":"boom","type":"internal_error","code":500}}"#;
        assert!(classify_chunk(err).error);
        assert!(!classify_chunk(br#"{"error":null,"choices":[]}"#).error);
        // An escaped backslash before the quote leaves the quote unescaped.
        assert!(classify_chunk(br#"{"a":"\\","error":{"message":"x"}}"#).error);
    }
}
