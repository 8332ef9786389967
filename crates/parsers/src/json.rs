//! Incremental JSON scanning: validates one value as its bytes arrive, in pieces of any size,
//! without building it. Strings, numbers and nesting are tracked by a small state machine, so a
//! scan never looks back and costs O(bytes) however the input is split.

/// Nesting deeper than this is rejected (bounded memory; real tool arguments are shallow).
pub(crate) const MAX_DEPTH: usize = 128;

/// What one piece of input did to the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Every byte was consumed; the value is not finished.
    NeedMore,
    /// The value ended after this many bytes of the piece (the rest is not part of it).
    Done(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Object,
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    No,
    Backslash,
    Hex(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value must start (whitespace may come first).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closer.
    After,
    Str {
        key: bool,
        esc: Esc,
    },
    Word {
        word: &'static [u8],
        at: u8,
    },
    Num(Num),
    Done,
}

/// Validates one JSON value (RFC 8259) fed in pieces.
#[derive(Debug, Clone)]
pub(crate) struct JsonScanner {
    stack: Vec<Frame>,
    state: State,
    /// The top-level value is an object whose first key has closed (or that closed empty).
    first_key_done: bool,
}

impl Default for JsonScanner {
    fn default() -> Self {
        JsonScanner {
            stack: Vec::new(),
            state: State::Value,
            first_key_done: false,
        }
    }
}

impl JsonScanner {
    /// Whether the first byte of the value (not whitespace) has been consumed.
    pub(crate) fn started(&self) -> bool {
        self.state != State::Value || !self.stack.is_empty()
    }

    /// Whether the value is a string (known once it started).
    pub(crate) fn is_string_value(first_byte: u8) -> bool {
        first_byte == b'"'
    }

    /// Whether the value is an object whose first key has been read (`{"k"`), or `{}`: from
    /// there on it is clearly meant as a JSON object.
    pub(crate) fn first_key_done(&self) -> bool {
        self.first_key_done
    }

    /// Feeds the next piece. `Err(i)`: byte `i` of the piece cannot continue the value.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Scan, usize> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                return Ok(Scan::Done(i));
            }
            let b = bytes[i];
            match self.state {
                State::Value | State::ArrayFirst => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if self.state == State::ArrayFirst && b == b']' {
                        self.close();
                        i += 1;
                    } else {
                        self.start_value(b).map_err(|()| i)?;
                        i += 1;
                    }
                }
                State::ObjectFirst | State::Key => {
                    if b.is_ascii_whitespace() {
                    } else if b == b'"' {
                        self.state = State::Str {
                            key: true,
                            esc: Esc::No,
                        };
                    } else if b == b'}' && self.state == State::ObjectFirst {
                        self.close();
                    } else {
                        return Err(i);
                    }
                    i += 1;
                }
                State::Colon => {
                    if b == b':' {
                        self.state = State::Value;
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                State::After => {
                    let top = self.stack.last().copied();
                    match (b, top) {
                        (b',', Some(Frame::Object)) => self.state = State::Key,
                        (b',', Some(Frame::Array)) => self.state = State::Value,
                        (b'}', Some(Frame::Object)) | (b']', Some(Frame::Array)) => self.close(),
                        _ if b.is_ascii_whitespace() => {}
                        _ => return Err(i),
                    }
                    i += 1;
                }
                State::Str { key, esc } => {
                    i = self.scan_string(bytes, i, key, esc)?;
                }
                State::Word { word, at } => {
                    if b != word[usize::from(at)] {
                        return Err(i);
                    }
                    let at = at + 1;
                    if usize::from(at) == word.len() {
                        self.value_ended();
                    } else {
                        self.state = State::Word { word, at };
                    }
                    i += 1;
                }
                State::Num(n) => {
                    let next = match (n, b) {
                        (Num::Minus, b'0') => Some(Num::Zero),
                        (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                        (Num::Int, b'0'..=b'9') => Some(Num::Int),
                        (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                        (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::E),
                        (Num::E, b'+' | b'-') => Some(Num::ESign),
                        (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Some(Num::Exp),
                        _ => None,
                    };
                    match next {
                        Some(n) => {
                            self.state = State::Num(n);
                            i += 1;
                        }
                        // A number ends at the first byte that cannot continue it; that byte
                        // belongs to whatever comes next.
                        None if matches!(n, Num::Zero | Num::Int | Num::Frac | Num::Exp) => {
                            self.value_ended()
                        }
                        None => return Err(i),
                    }
                }
                State::Done => unreachable!("checked above"),
            }
        }
        Ok(if self.state == State::Done {
            Scan::Done(i)
        } else {
            Scan::NeedMore
        })
    }

    /// Whether the value is complete when the input ends here (a top-level number has no
    /// closing byte).
    #[cfg(test)]
    pub(crate) fn complete_at_end(&self) -> bool {
        match self.state {
            State::Done => true,
            State::Num(Num::Zero | Num::Int | Num::Frac | Num::Exp) => self.stack.is_empty(),
            _ => false,
        }
    }

    fn scan_string(
        &mut self,
        bytes: &[u8],
        mut i: usize,
        key: bool,
        mut esc: Esc,
    ) -> Result<usize, usize> {
        while i < bytes.len() {
            let b = bytes[i];
            match esc {
                Esc::No => match b {
                    b'"' => {
                        if key {
                            if self.stack.len() == 1 {
                                self.first_key_done = true;
                            }
                            self.state = State::Colon;
                        } else {
                            self.value_ended();
                        }
                        return Ok(i + 1);
                    }
                    b'\\' => esc = Esc::Backslash,
                    0..=0x1f => return Err(i),
                    _ => {}
                },
                Esc::Backslash => {
                    esc = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::No,
                        b'u' => Esc::Hex(0),
                        _ => return Err(i),
                    }
                }
                Esc::Hex(n) => {
                    if !b.is_ascii_hexdigit() {
                        return Err(i);
                    }
                    esc = if n == 3 { Esc::No } else { Esc::Hex(n + 1) };
                }
            }
            i += 1;
        }
        self.state = State::Str { key, esc };
        Ok(i)
    }

    fn start_value(&mut self, b: u8) -> Result<(), ()> {
        self.state = match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(());
                }
                if b == b'{' {
                    self.stack.push(Frame::Object);
                    State::ObjectFirst
                } else {
                    self.stack.push(Frame::Array);
                    State::ArrayFirst
                }
            }
            b'"' => State::Str {
                key: false,
                esc: Esc::No,
            },
            b't' => State::Word {
                word: b"true",
                at: 1,
            },
            b'f' => State::Word {
                word: b"false",
                at: 1,
            },
            b'n' => State::Word {
                word: b"null",
                at: 1,
            },
            b'-' => State::Num(Num::Minus),
            b'0' => State::Num(Num::Zero),
            b'1'..=b'9' => State::Num(Num::Int),
            _ => return Err(()),
        };
        Ok(())
    }

    fn close(&mut self) {
        self.stack.pop();
        if self.stack.is_empty() {
            self.first_key_done = true;
        }
        self.value_ended();
    }

    fn value_ended(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::After
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &str) -> Result<Scan, usize> {
        JsonScanner::default().feed(s.as_bytes())
    }

    fn bytewise(s: &str) -> Result<Scan, usize> {
        let mut scanner = JsonScanner::default();
        for (i, b) in s.bytes().enumerate() {
            match scanner.feed(&[b]) {
                Ok(Scan::NeedMore) => {}
                Ok(Scan::Done(n)) => return Ok(Scan::Done(i + n)),
                Err(at) => return Err(i + at),
            }
        }
        Ok(Scan::NeedMore)
    }

    #[test]
    fn values_end_where_they_end() {
        for (text, end) in [
            (r#"{"a": [1, 2.5e-3, "x\"y", true, null]} tail"#, 38),
            ("01", 1),
            ("[]x", 2),
            ("{}", 2),
            (r#""\u00e9\n""#, 10),
            ("-0.5,", 4),
            ("  false ", 7),
        ] {
            assert_eq!(whole(text), Ok(Scan::Done(end)), "{text}");
            assert_eq!(bytewise(text), Ok(Scan::Done(end)), "{text} bytewise");
        }
    }

    #[test]
    fn bad_bytes_are_located() {
        for (text, at) in [
            ("{'a': 1}", 1),
            ("[1,]", 3),
            (r#"{"a" 1}"#, 5),
            ("tru e", 3),
            ("\"a\u{1}\"", 2),
            (r#""\x""#, 2),
            ("-", usize::MAX),
        ] {
            let got = whole(text);
            if at == usize::MAX {
                assert_eq!(got, Ok(Scan::NeedMore), "{text}");
            } else {
                assert_eq!(got, Err(at), "{text}");
                assert_eq!(bytewise(text), Err(at), "{text} bytewise");
            }
        }
    }

    #[test]
    fn numbers_complete_only_at_the_end() {
        let mut s = JsonScanner::default();
        assert_eq!(s.feed(b"12"), Ok(Scan::NeedMore));
        assert!(s.complete_at_end());
        let mut s = JsonScanner::default();
        assert_eq!(s.feed(b"1."), Ok(Scan::NeedMore));
        assert!(!s.complete_at_end());
        let mut s = JsonScanner::default();
        assert_eq!(s.feed(b"[1"), Ok(Scan::NeedMore));
        assert!(!s.complete_at_end());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(whole(&deep), Err(MAX_DEPTH));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(whole(&ok), Ok(Scan::Done(2 * MAX_DEPTH)));
    }
}
