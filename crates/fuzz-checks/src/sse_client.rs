//! The load generator's SSE parser: a server's bytes, cut into frames anywhere.

use switchyard_bench::sse::{SseParser, classify_chunk};

/// Whole inputs up to this size are also tried at every single cut point (quadratic work).
const ALL_CUTS_MAX_LEN: usize = 512;

/// Parses `stream` as one frame, then under other frame splits (every single cut for short
/// inputs, one byte per frame, and frame sizes taken from the stream's own bytes), with a parser
/// reused after [`SseParser::reset`] from a half-parsed stream. Asserts every split gives the
/// same events as the single frame. Runs [`classify_chunk`] on every event payload.
pub fn check_sse_client(stream: &[u8]) {
    let whole = events(&mut SseParser::new(), &[stream]);
    for (payload, _) in &whole {
        let info = classify_chunk(payload);
        if info.done {
            assert_eq!(payload.trim_ascii(), b"[DONE]");
        }
    }

    // A parser reused across requests: leftovers of an aborted stream must not leak into the
    // next one.
    let mut reused = SseParser::new();
    reused.feed(b"event: error\ndata: left", &mut |_, _| {});
    reused.reset();
    assert_eq!(events(&mut reused, &[stream]), whole, "after reset");

    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(events(&mut reused, &bytewise), whole, "one byte per frame");

    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = stream.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().map_or(1, |&b| usize::from(b % 17));
        if size == 0 {
            frames.push(&[][..]); // an empty frame, then at least one byte
        }
        let (frame, tail) = rest.split_at(size.clamp(1, rest.len()));
        frames.push(frame);
        rest = tail;
    }
    assert_eq!(events(&mut reused, &frames), whole, "frames {frames:?}");

    if stream.len() <= ALL_CUTS_MAX_LEN {
        for cut in 1..stream.len() {
            let (head, tail) = stream.split_at(cut);
            assert_eq!(events(&mut reused, &[head, tail]), whole, "cut at {cut}");
        }
    }
}

/// Every event of `frames` as (payload, announced as `event: error`).
fn events(parser: &mut SseParser, frames: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
    parser.reset();
    let mut out = Vec::new();
    let mut push = |payload: &[u8], error: bool| out.push((payload.to_vec(), error));
    for frame in frames {
        parser.feed(frame, &mut push);
    }
    parser.finish(&mut push);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_flagged() {
        let got = events(
            &mut SseParser::new(),
            &[b"data: a\n\nevent: err", b"or\ndata: b\r\n\r\ndata: c"],
        );
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), false),
                (b"b".to_vec(), true),
                (b"c".to_vec(), false)
            ]
        );
    }
}
