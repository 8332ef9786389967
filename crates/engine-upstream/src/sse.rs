//! Server-sent events from an upstream, fed frame by frame: yields each event's `data`.
//!
//! Only `data:` lines matter for OpenAI streams (`event: error` is reported through the JSON
//! body, which carries an `error` object). Lines end in `\n`, `\r\n` or `\r`... in practice `\n`
//! and `\r\n`, which are what is handled. One event may not exceed `max_event_bytes`.

/// Why the byte stream is not SSE we can follow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeds {0} bytes")]
    TooLarge(usize),
    #[error("SSE data is not UTF-8")]
    NotUtf8,
}

pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// `data` lines of the current event, joined by `\n`.
    data: String,
    has_data: bool,
    max_event_bytes: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Feeds bytes; `on_event` gets each completed event's data.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut dyn FnMut(&str),
    ) -> Result<(), SseError> {
        while !bytes.is_empty() {
            match memchr(b'\n', bytes) {
                Some(at) => {
                    self.line.extend_from_slice(&bytes[..at]);
                    bytes = &bytes[at + 1..];
                    self.end_line(on_event)?;
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            if self.line.len() + self.data.len() > self.max_event_bytes {
                return Err(SseError::TooLarge(self.max_event_bytes));
            }
        }
        Ok(())
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(&str)) -> Result<(), SseError> {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        let line = std::str::from_utf8(&self.line).map_err(|_| SseError::NotUtf8)?;
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        // Comments (`:`), `event:`, `id:`, `retry:` are not needed here.
        self.line.clear();
        Ok(())
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for frame in frames {
            parser
                .feed(frame, &mut |d| out.push(d.to_string()))
                .unwrap();
        }
        out
    }

    #[test]
    fn events_split_anywhere_give_the_same_data() {
        let stream =
            b"data: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
        let whole = events(&[stream]);
        assert_eq!(whole, vec!["{\"a\":1}", "x\ny", "[DONE]"]);
        for cut in 0..stream.len() {
            assert_eq!(
                events(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut parser = SseParser::new(8);
        assert_eq!(
            parser.feed(b"data: 0123456789", &mut |_| {}),
            Err(SseError::TooLarge(8))
        );
    }
}
