//! Stop strings on streamed text.
//!
//! Each stop string has a KMP automaton whose state is the length of the longest suffix of the
//! text seen so far that is a prefix of that stop string. States advance byte by byte (UTF-8 is
//! self-synchronizing, so byte matches are character matches), so no text is ever rescanned:
//! work is O(bytes × stop strings) however the text is split.
//!
//! "Earliest match wins" means the match that *starts* first. When a stop string completes while
//! a longer one that started earlier is still partially matched (stops `"abcd"` and `"bc"` on
//! text `"abc"`), the decision waits until that earlier candidate completes or fails; the wait is
//! bounded by the longest stop string.

/// What a [`StopStringMatcher::push`] releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopOutput<'a> {
    /// Text that can be sent to the client now.
    pub text: &'a str,
    /// A stop string matched; `text` ends right before it and nothing more will be released.
    pub stopped: bool,
}

/// One stop string with its KMP failure table.
struct Pattern {
    text: Box<str>,
    /// `fail[i]`: length of the longest proper border of `bytes[..=i]`.
    fail: Box<[usize]>,
    /// Position in the caller's list, reported on a match.
    index: usize,
}

impl Pattern {
    fn new(text: &str, index: usize) -> Self {
        let bytes = text.as_bytes();
        let mut fail = vec![0; bytes.len()].into_boxed_slice();
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Pattern {
            text: text.into(),
            fail,
            index,
        }
    }

    /// The state after reading `byte` in state `state` (`state < len`).
    fn step(&self, mut state: usize, byte: u8) -> usize {
        let bytes = self.text.as_bytes();
        while state > 0 && bytes[state] != byte {
            state = self.fail[state - 1];
        }
        if bytes[state] == byte { state + 1 } else { 0 }
    }
}

/// Finds stop strings in streamed text, holding back text that may still turn into one.
pub struct StopStringMatcher {
    patterns: Vec<Pattern>,
    /// Per pattern: bytes of the pattern matched by the current text suffix (always < its len).
    states: Vec<usize>,
    /// Whether any state is non-zero. While none is, bytes that start no pattern change
    /// nothing and are skipped with one table lookup.
    any_partial: bool,
    /// `starts[b]`: some pattern begins with byte `b`.
    starts: [bool; 256],
    /// Text received but not yet released; starts at absolute byte offset `held_start`.
    held: String,
    held_start: usize,
    /// Total bytes received.
    seen: usize,
    /// The earliest completed match so far: (absolute start, pattern index in `patterns`).
    pending: Option<(usize, usize)>,
    /// Set once a match is final: the caller's index of the stop string.
    matched: Option<usize>,
    /// Buffer for released text that is not a plain slice of the input.
    out: String,
}

impl StopStringMatcher {
    /// A matcher for `stop_strings`. Empty strings are ignored (they would match before any
    /// text); a matched string is reported by its index in this list.
    pub fn new(stop_strings: Vec<String>) -> Self {
        let patterns: Vec<Pattern> = stop_strings
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| Pattern::new(s, i))
            .collect();
        let longest = patterns.iter().map(|p| p.text.len()).max().unwrap_or(0);
        let mut starts = [false; 256];
        for pattern in &patterns {
            starts[usize::from(pattern.text.as_bytes()[0])] = true;
        }
        StopStringMatcher {
            states: vec![0; patterns.len()],
            any_partial: false,
            starts,
            patterns,
            held: String::with_capacity(longest),
            held_start: 0,
            seen: 0,
            pending: None,
            matched: None,
            out: String::new(),
        }
    }

    /// Index (in the list given to [`Self::new`]) of the stop string that ended the text.
    pub fn matched(&self) -> Option<usize> {
        self.matched
    }

    /// The stop string that ended the text.
    pub fn matched_str(&self) -> Option<&str> {
        let index = self.matched?;
        self.patterns
            .iter()
            .find(|p| p.index == index)
            .map(|p| &*p.text)
    }

    /// Feeds more text; returns what can be released now. After a stop, returns empty text with
    /// `stopped = true` forever.
    pub fn push<'a>(&'a mut self, text: &'a str) -> StopOutput<'a> {
        if self.matched.is_some() {
            return StopOutput {
                text: "",
                stopped: true,
            };
        }
        if self.patterns.is_empty() {
            return StopOutput {
                text,
                stopped: false,
            };
        }
        let base = self.seen;
        for (i, &byte) in text.as_bytes().iter().enumerate() {
            if !self.any_partial && !self.starts[usize::from(byte)] {
                // No partial match and none starting here (so no pending match either).
                continue;
            }
            let end = base + i + 1;
            self.step(byte, end);
            if let Some((start, pattern)) = self.pending
                && self.hold_from(end) >= start
            {
                // No partial match starts before this one: no earlier match is possible.
                self.matched = Some(self.patterns[pattern].index);
                let text = self.release(text, start);
                return StopOutput {
                    text,
                    stopped: true,
                };
            }
        }
        self.seen = base + text.len();
        let cut = match self.pending {
            Some((start, _)) => start.min(self.hold_from(self.seen)),
            None => self.hold_from(self.seen),
        };
        let text = self.release(text, cut);
        StopOutput {
            text,
            stopped: false,
        }
    }

    /// Releases all held text at the end of the stream. A match still waiting for an earlier,
    /// longer candidate is final now: the text ends before it and `stopped` is set.
    pub fn flush(&mut self) -> StopOutput<'_> {
        if self.matched.is_some() {
            return StopOutput {
                text: "",
                stopped: true,
            };
        }
        let (cut, stopped) = match self.pending {
            Some((start, pattern)) => {
                self.matched = Some(self.patterns[pattern].index);
                (start - self.held_start, true)
            }
            None => (self.held.len(), false),
        };
        self.out.clear();
        self.out.push_str(&self.held[..cut]);
        self.held.clear();
        self.held_start = self.seen;
        self.states.fill(0);
        self.any_partial = false;
        StopOutput {
            text: &self.out,
            stopped,
        }
    }

    /// Consumes the matcher, returning the text still held at the end of the stream (up to a
    /// pending match, if any).
    pub fn finish(mut self) -> String {
        self.flush();
        self.out
    }

    /// Advances every automaton over one byte ending at absolute offset `end`.
    fn step(&mut self, byte: u8, end: usize) {
        self.any_partial = false;
        for (j, pattern) in self.patterns.iter().enumerate() {
            let mut state = pattern.step(self.states[j], byte);
            if state == pattern.text.len() {
                let start = end - state;
                if self.pending.is_none_or(|(p, _)| start < p) {
                    self.pending = Some((start, j));
                }
                // Later matches of this pattern start later; keep only the border as a partial.
                state = pattern.fail[state - 1];
            }
            self.states[j] = state;
            self.any_partial |= state > 0;
        }
    }

    /// Absolute start of the earliest partial match ending at `end` (or `end` if none): text
    /// before it can never be part of a stop string.
    fn hold_from(&self, end: usize) -> usize {
        let longest = self.states.iter().copied().max().unwrap_or(0);
        end - longest
    }

    /// Releases received text up to absolute offset `cut` (a char boundary: every cut is the
    /// start of a stop-string prefix in the text) and keeps the rest held. `text` is the latest
    /// input, which follows `held`.
    fn release<'a>(&'a mut self, text: &'a str, cut: usize) -> &'a str {
        let rel = cut - self.held_start;
        if self.held.is_empty() {
            // Fast path: nothing held before, so the release is a slice of the input.
            if self.matched.is_none() {
                self.held.push_str(&text[rel..]);
            }
            self.held_start = cut;
            return &text[..rel];
        }
        self.out.clear();
        if rel <= self.held.len() {
            self.out.push_str(&self.held[..rel]);
            self.held.drain(..rel);
            if self.matched.is_none() {
                self.held.push_str(text);
            }
        } else {
            let in_text = rel - self.held.len();
            self.out.push_str(&self.held);
            self.out.push_str(&text[..in_text]);
            self.held.clear();
            if self.matched.is_none() {
                self.held.push_str(&text[in_text..]);
            }
        }
        self.held_start = cut;
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matcher(stops: &[&str]) -> StopStringMatcher {
        StopStringMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Pushes `pieces`, returning (released text, stopped, text released per push).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool, Vec<String>) {
        let mut m = matcher(stops);
        let mut out = String::new();
        let mut per_push = Vec::new();
        for piece in pieces {
            let o = m.push(piece);
            out.push_str(o.text);
            per_push.push(o.text.to_string());
            if o.stopped {
                return (out, true, per_push);
            }
        }
        let o = m.flush();
        out.push_str(o.text);
        (out, o.stopped, per_push)
    }

    /// The reference: text before the earliest occurrence of any stop string.
    fn reference(text: &str, stops: &[String]) -> (String, bool) {
        match stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            Some(i) => (text[..i].to_string(), true),
            None => (text.to_string(), false),
        }
    }

    #[test]
    fn stop_string_within_one_push() {
        let (out, stopped, _) = run(&["STOP"], &["hello STOP world"]);
        assert_eq!((out.as_str(), stopped), ("hello ", true));
    }

    #[test]
    fn stop_string_spanning_pushes_is_jailed_then_dropped() {
        let (out, stopped, per_push) = run(&["</answer>"], &["42 </", "ans", "wer> more"]);
        assert_eq!((out.as_str(), stopped), ("42 ", true));
        assert_eq!(per_push, ["42 ", "", ""]);
    }

    #[test]
    fn jailed_text_is_released_when_it_stops_matching() {
        let (out, stopped, per_push) = run(&["</answer>"], &["a </an", "d b"]);
        assert_eq!((out.as_str(), stopped), ("a </and b", false));
        assert_eq!(per_push, ["a ", "</and b"]);
    }

    #[test]
    fn partial_match_at_end_of_stream_is_flushed() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("the ST").text, "the ");
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn earliest_start_wins_over_first_completed() {
        // "bc" completes first, but "abcd" started earlier and completes later.
        let (out, stopped, per_push) = run(&["bc", "abcd"], &["xab", "c", "d", "tail"]);
        assert_eq!((out.as_str(), stopped), ("x", true));
        assert_eq!(per_push, ["x", "", ""]);
        let mut m = matcher(&["bc", "abcd"]);
        m.push("xabcd");
        assert_eq!(m.matched(), Some(1));
        // If the longer candidate fails, the shorter completed match stands.
        let (out, stopped, _) = run(&["bc", "abcd"], &["xab", "c", "e"]);
        assert_eq!((out.as_str(), stopped), ("xa", true));
        // ... also when the stream ends while waiting.
        let mut m = matcher(&["bc", "abcd"]);
        assert_eq!(m.push("xabc").text, "x");
        let o = m.flush();
        assert_eq!((o.text, o.stopped), ("a", true));
        assert_eq!(m.matched(), Some(0));
    }

    #[test]
    fn self_overlapping_stop_string() {
        let (out, stopped, _) = run(&["aab"], &["a", "a", "a", "a", "b", "c"]);
        assert_eq!((out.as_str(), stopped), ("aa", true));
    }

    #[test]
    fn multibyte_stop_strings_and_text() {
        let (out, stopped, _) = run(&["。\n"], &["你好", "。", "\n再见"]);
        assert_eq!((out.as_str(), stopped), ("你好", true));
        let (out, stopped, _) = run(&["é"], &["caf", "e\u{301}"]);
        assert_eq!((out.as_str(), stopped), ("cafe\u{301}", false));
    }

    #[test]
    fn no_stop_strings_passes_text_through() {
        let (out, stopped, per_push) = run(&[], &["a", "b"]);
        assert_eq!((out.as_str(), stopped), ("ab", false));
        assert_eq!(per_push, ["a", "b"]);
        let (out, stopped, _) = run(&[""], &["a", "b"]);
        assert_eq!((out.as_str(), stopped), ("ab", false));
    }

    #[test]
    fn after_a_stop_nothing_more_is_released() {
        let mut m = matcher(&["x"]);
        assert!(m.push("axb").stopped);
        let o = m.push("more");
        assert_eq!((o.text, o.stopped), ("", true));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn long_output_holds_at_most_the_longest_stop_string() {
        let mut m = matcher(&["<|stop|>", "\n\nUser:"]);
        let mut released = 0;
        for _ in 0..10_000 {
            released += m.push("some text <|sto").text.len();
            assert!(m.held.len() < "\n\nUser:".len().max("<|stop|>".len()));
        }
        released += m.finish().len();
        assert_eq!(released, 10_000 * "some text <|sto".len());
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("ab"),
                Just(" "),
                Just("é"),
                Just("你")
            ],
            0..40,
        )
        .prop_map(|v| v.concat())
    }

    fn stops_strategy() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop::collection::vec(
                prop_oneof![3 => Just("a"), 3 => Just("b"), 1 => Just("é"), 1 => Just("你")],
                0..5,
            )
            .prop_map(|v| v.concat()),
            0..4,
        )
    }

    /// Splits `text` at the given byte positions snapped to char boundaries.
    fn split(text: &str, cuts: &[usize]) -> Vec<String> {
        let mut bounds: Vec<usize> = cuts
            .iter()
            .map(|&c| {
                let mut c = c % (text.len() + 1);
                while !text.is_char_boundary(c) {
                    c -= 1;
                }
                c
            })
            .chain([0, text.len()])
            .collect();
        bounds.sort_unstable();
        bounds
            .windows(2)
            .map(|w| text[w[0]..w[1]].to_string())
            .collect()
    }

    proptest! {
        // The matcher is cheap; many cases make overlapping stop strings likely.
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn matches_reference_however_split(
            text in text_strategy(),
            stops in stops_strategy(),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
        ) {
            let pieces = split(&text, &cuts);
            let mut m = StopStringMatcher::new(stops.clone());
            let mut out = String::new();
            let mut seen = String::new();
            let mut stopped = false;
            for piece in &pieces {
                seen.push_str(piece);
                let o = m.push(piece);
                out.push_str(o.text);
                if o.stopped {
                    stopped = true;
                    break;
                }
                // Released eagerly: only text that could still start a match is held.
                let (before_match, _) = reference(&seen, &stops);
                let hold_from = (0..=seen.len())
                    .filter(|&i| seen.is_char_boundary(i))
                    .find(|&i| {
                        i == seen.len() || stops.iter().any(|s| {
                            s.len() > seen.len() - i && s.starts_with(&seen[i..])
                        })
                    })
                    .unwrap();
                prop_assert_eq!(out.len(), hold_from.min(before_match.len()));
            }
            if !stopped {
                let o = m.flush();
                out.push_str(o.text);
                stopped = o.stopped;
            }
            let (expected, expected_stop) = reference(&text, &stops);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(stopped, expected_stop);
            if let Some(i) = m.matched() {
                prop_assert!(text[..].contains(stops[i].as_str()));
            }
        }
    }
}
