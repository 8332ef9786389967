//! Pythonic tool calls (`[get_weather(city="Paris", days=3), ping()]`): one call is scanned
//! incrementally by [`PyCall`]; each keyword argument's Python literal (strings, numbers,
//! `True`/`False`/`None`, lists, tuples, dicts) is converted to JSON once it is complete, and
//! the arguments object streams one keyword argument at a time, formatted like Python's
//! `json.dumps` (`{"city": "Paris", "days": 3}`).

use crate::calls::CallOut;
use crate::json::Scan;

/// Longest literal accepted for one keyword argument (bytes).
const MAX_VALUE_LEN: usize = 64 * 1024;
/// Deepest nesting accepted inside one literal.
const MAX_NESTING: usize = 64;
/// Longest function or keyword name (bytes).
const MAX_IDENT_LEN: usize = 256;

pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Name,
    BeforeParen,
    Args,
    Kw,
    BeforeEq,
    ValueStart,
    Value,
    AfterValue,
    Done,
}

/// One `name(kw=literal, ...)` call. Commits when its first keyword argument converted (or at
/// `)` for a call without arguments); positional arguments are not accepted.
#[derive(Debug)]
pub(crate) struct PyCall {
    state: P,
    name: String,
    kw: String,
    extent: Extent,
    raw: String,
    kwargs: usize,
    pub(crate) out: CallOut,
}

impl Default for PyCall {
    fn default() -> Self {
        PyCall {
            state: P::Name,
            name: String::new(),
            kw: String::new(),
            extent: Extent::default(),
            raw: String::new(),
            kwargs: 0,
            out: CallOut::default(),
        }
    }
}

impl PyCall {
    /// Feeds the next piece (starting at the function name). `Err(i)`: byte `i` cannot continue
    /// the call (for a literal that does not convert, `i` is the byte that ended it).
    pub(crate) fn feed(&mut self, s: &str) -> Result<Scan, usize> {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                P::Done => return Ok(Scan::Done(i)),
                P::Name => {
                    // Dotted names (`module.func`) are allowed for the function, not for keywords.
                    let ok = if self.name.is_empty() {
                        is_ident_start(b)
                    } else {
                        is_ident_byte(b) || b == b'.'
                    };
                    if ok {
                        if self.name.len() >= MAX_IDENT_LEN {
                            return Err(i);
                        }
                        self.name.push(char::from(b));
                        i += 1;
                    } else if self.name.is_empty() || self.name.ends_with('.') {
                        return Err(i);
                    } else {
                        self.state = P::BeforeParen;
                    }
                }
                P::BeforeParen => {
                    if b == b'(' {
                        self.out = CallOut::with_name(std::mem::take(&mut self.name));
                        self.state = P::Args;
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                P::Args | P::AfterValue => {
                    if b == b')' {
                        self.out
                            .push_args(if self.kwargs == 0 { "{}" } else { "}" });
                        self.out.commit();
                        self.state = P::Done;
                        return Ok(Scan::Done(i + 1));
                    } else if self.state == P::AfterValue && b == b',' {
                        self.state = P::Args;
                    } else if self.state == P::Args && is_ident_start(b) {
                        self.kw.clear();
                        self.state = P::Kw;
                        continue;
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                P::Kw => {
                    if is_ident_byte(b) {
                        if self.kw.len() >= MAX_IDENT_LEN {
                            return Err(i);
                        }
                        self.kw.push(char::from(b));
                        i += 1;
                    } else {
                        self.state = P::BeforeEq;
                    }
                }
                P::BeforeEq => {
                    if b == b'=' {
                        self.state = P::ValueStart;
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                P::ValueStart => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else {
                        self.extent = Extent::default();
                        self.raw.clear();
                        self.state = P::Value;
                    }
                }
                P::Value => {
                    // Scan to the end of the literal: a top-level `,` or `)`.
                    let start = i;
                    let mut ended = false;
                    while i < bytes.len() {
                        match self.extent.step(bytes[i]) {
                            Ext::More => i += 1,
                            Ext::End => {
                                ended = true;
                                break;
                            }
                            Ext::Bad => return Err(i),
                        }
                    }
                    if self.raw.len() + (i - start) > MAX_VALUE_LEN {
                        let mut at = start + (MAX_VALUE_LEN - self.raw.len());
                        while !s.is_char_boundary(at) {
                            at -= 1;
                        }
                        return Err(at);
                    }
                    self.raw.push_str(&s[start..i]);
                    if ended {
                        let json = py_literal_to_json(&self.raw).map_err(|()| i)?;
                        let mut piece = String::with_capacity(json.len() + self.kw.len() + 8);
                        piece.push_str(if self.kwargs == 0 { "{" } else { ", " });
                        write_json_string(&self.kw, &mut piece);
                        piece.push_str(": ");
                        piece.push_str(&json);
                        self.out.push_args(&piece);
                        self.out.commit();
                        self.kwargs += 1;
                        self.state = P::AfterValue;
                    }
                }
            }
        }
        Ok(if self.state == P::Done {
            Scan::Done(i)
        } else {
            Scan::NeedMore
        })
    }
}

enum Ext {
    More,
    End,
    Bad,
}

/// Finds where one literal ends: brackets balanced, quotes closed, then `,` or `)`.
#[derive(Debug, Default)]
struct Extent {
    closers: Vec<u8>,
    quote: Option<u8>,
    escaped: bool,
}

impl Extent {
    fn step(&mut self, b: u8) -> Ext {
        if let Some(q) = self.quote {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == q {
                self.quote = None;
            } else if b == b'\n' {
                return Ext::Bad;
            }
            return Ext::More;
        }
        match b {
            b'"' | b'\'' => self.quote = Some(b),
            b'(' | b'[' | b'{' => {
                if self.closers.len() >= MAX_NESTING {
                    return Ext::Bad;
                }
                self.closers.push(match b {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                });
            }
            b')' | b']' | b'}' => {
                if self.closers.last() == Some(&b) {
                    self.closers.pop();
                } else if self.closers.is_empty() && b == b')' {
                    return Ext::End;
                } else {
                    return Ext::Bad;
                }
            }
            b',' if self.closers.is_empty() => return Ext::End,
            _ => {}
        }
        Ext::More
    }
}

pub(crate) fn write_json_string(s: &str, out: &mut String) {
    // serde_json escapes quotes, backslashes and control characters and keeps other
    // characters as they are (like json.dumps(ensure_ascii=False)).
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// Converts one Python literal to JSON text (`json.dumps` separators). Anything that is not a
/// plain literal (names, calls, operators, bytes, f-strings, sets, complex numbers) is an error.
pub(crate) fn py_literal_to_json(src: &str) -> Result<String, ()> {
    let mut conv = Conv {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    let mut out = String::with_capacity(src.len() + 8);
    conv.value(0, &mut out)?;
    conv.ws();
    if conv.i == conv.s.len() {
        Ok(out)
    } else {
        Err(())
    }
}

struct Conv<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Conv<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize, out: &mut String) -> Result<(), ()> {
        if depth > MAX_NESTING {
            return Err(());
        }
        self.ws();
        let b = self.peek().ok_or(())?;
        match b {
            b'[' => {
                self.i += 1;
                self.sequence(b']', depth, out).map(|_| ())
            }
            b'(' => {
                // `(x)` is just x; `()` and `(x,)` / `(x, y)` are tuples → arrays.
                self.i += 1;
                let mut items = String::new();
                let (count, trailing_comma) = self.sequence(b')', depth, &mut items)?;
                if count == 1 && !trailing_comma {
                    out.push_str(&items[1..items.len() - 1]);
                } else {
                    out.push_str(&items);
                }
                Ok(())
            }
            b'{' => {
                self.i += 1;
                self.dict(depth, out)
            }
            b'"' | b'\'' => self.strings(out),
            b'r' | b'R' | b'u' | b'U' if matches!(self.s.get(self.i + 1), Some(b'"' | b'\'')) => {
                self.strings(out)
            }
            b'-' | b'+' => {
                self.i += 1;
                self.ws();
                if !self.peek().is_some_and(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(());
                }
                if b == b'-' {
                    out.push('-');
                }
                self.number(out)
            }
            b'0'..=b'9' | b'.' => self.number(out),
            _ if is_ident_start(b) => {
                let start = self.i;
                while self.peek().is_some_and(is_ident_byte) {
                    self.i += 1;
                }
                out.push_str(match &self.src[start..self.i] {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    _ => return Err(()),
                });
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Items up to `close` as a JSON array; returns (item count, whether a comma trailed).
    fn sequence(&mut self, close: u8, depth: usize, out: &mut String) -> Result<(usize, bool), ()> {
        out.push('[');
        let mut count = 0;
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                out.push(']');
                return Ok((count, count > 0));
            }
            if count > 0 {
                out.push_str(", ");
            }
            self.value(depth + 1, out)?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b) if b == close => {
                    self.i += 1;
                    out.push(']');
                    return Ok((count, false));
                }
                _ => return Err(()),
            }
        }
    }

    fn dict(&mut self, depth: usize, out: &mut String) -> Result<(), ()> {
        out.push('{');
        let mut first = true;
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                out.push('}');
                return Ok(());
            }
            if !first {
                out.push_str(", ");
            }
            first = false;
            // JSON keys are strings; like json.dumps, numbers, True/False/None become their
            // JSON text as a string.
            let mut key = String::new();
            self.value(depth + 1, &mut key)?;
            if key.starts_with('"') {
                out.push_str(&key);
            } else if key.starts_with(['[', '{']) {
                return Err(());
            } else {
                write_json_string(&key, out);
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(());
            }
            self.i += 1;
            out.push_str(": ");
            self.value(depth + 1, out)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(()),
            }
        }
    }

    /// One or more adjacent string literals (Python concatenates them).
    fn strings(&mut self, out: &mut String) -> Result<(), ()> {
        let mut text = String::new();
        loop {
            self.string(&mut text)?;
            let save = self.i;
            self.ws();
            let next = self.peek();
            let prefixed = matches!(next, Some(b'r' | b'R' | b'u' | b'U'))
                && matches!(self.s.get(self.i + 1), Some(b'"' | b'\''));
            if !(matches!(next, Some(b'"' | b'\'')) || prefixed) {
                self.i = save;
                break;
            }
        }
        write_json_string(&text, out);
        Ok(())
    }

    fn string(&mut self, text: &mut String) -> Result<(), ()> {
        let mut raw = false;
        match self.peek() {
            Some(b'r' | b'R') => {
                raw = true;
                self.i += 1;
            }
            Some(b'u' | b'U') => self.i += 1,
            _ => {}
        }
        let quote = self.peek().ok_or(())?;
        self.i += 1;
        loop {
            let rest = &self.src[self.i..];
            let mut chars = rest.chars();
            let c = chars.next().ok_or(())?;
            self.i += c.len_utf8();
            if c == char::from(quote) {
                return Ok(());
            }
            if c != '\\' {
                if c == '\n' {
                    return Err(());
                }
                text.push(c);
                continue;
            }
            let e = self.src[self.i..].chars().next().ok_or(())?;
            self.i += e.len_utf8();
            if raw {
                text.push('\\');
                text.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => text.push(e),
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                'a' => text.push('\u{7}'),
                'b' => text.push('\u{8}'),
                'f' => text.push('\u{c}'),
                'v' => text.push('\u{b}'),
                '0'..='7' => {
                    let mut v = e.to_digit(8).ok_or(())?;
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    text.push(char::from_u32(v).ok_or(())?);
                }
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex = self.src.get(self.i..self.i + n).ok_or(())?;
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(());
                    }
                    let v = u32::from_str_radix(hex, 16).map_err(|_| ())?;
                    text.push(char::from_u32(v).ok_or(())?);
                    self.i += n;
                }
                // Python keeps unknown escapes as written (and \N{...} is not supported here).
                'N' => return Err(()),
                _ => {
                    text.push('\\');
                    text.push(e);
                }
            }
        }
    }

    fn number(&mut self, out: &mut String) -> Result<(), ()> {
        let start = self.i;
        while let Some(b) = self.peek() {
            let so_far = &self.src[start..self.i];
            let exp_sign = matches!(b, b'+' | b'-')
                && so_far.ends_with(['e', 'E'])
                && !so_far.starts_with("0x")
                && !so_far.starts_with("0X");
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exp_sign {
                self.i += 1;
            } else {
                break;
            }
        }
        let lit = self.src[start..self.i].to_ascii_lowercase();
        if lit.contains("__") || lit.starts_with('_') || lit.ends_with('_') {
            return Err(());
        }
        let lit = lit.replace('_', "");
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(digits) = lit.strip_prefix(prefix) {
                let v = u128::from_str_radix(digits, radix).map_err(|_| ())?;
                out.push_str(&v.to_string());
                return Ok(());
            }
        }
        let (mantissa, exponent) = match lit.split_once('e') {
            Some((m, e)) => (m, Some(e)),
            None => (lit.as_str(), None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int)
            || !frac.is_none_or(digits)
            || int.is_empty() && frac.is_none_or(str::is_empty)
        {
            return Err(());
        }
        let exponent = match exponent {
            Some(e) => {
                let body = e.strip_prefix(['+', '-']).unwrap_or(e);
                if body.is_empty() || !digits(body) {
                    return Err(());
                }
                Some(e)
            }
            None => None,
        };
        if frac.is_none()
            && exponent.is_none()
            && int.len() > 1
            && int.starts_with('0')
            && !int.bytes().all(|b| b == b'0')
        {
            return Err(()); // Python 3 rejects 007
        }
        let int = int.trim_start_matches('0');
        out.push_str(if int.is_empty() { "0" } else { int });
        if let Some(f) = frac {
            out.push('.');
            out.push_str(if f.is_empty() { "0" } else { f });
        }
        if let Some(e) = exponent {
            out.push('e');
            out.push_str(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_convert_like_json_dumps() {
        for (py, json) in [
            ("'it\\'s'", r#""it's""#),
            ("\"a\\nb\"", r#""a\nb""#),
            ("r'\\d+'", r#""\\d+""#),
            ("'ab' \"cd\"", r#""abcd""#),
            ("'\\x41\\u00e9\\U0001F600'", "\"Aé😀\""),
            ("42", "42"),
            ("-3.5", "-3.5"),
            ("1_000", "1000"),
            (".5", "0.5"),
            ("5.", "5.0"),
            ("1e-3", "1e-3"),
            ("1.5E+2", "1.5e+2"),
            ("0x1F", "31"),
            ("00", "0"),
            ("True", "true"),
            ("None", "null"),
            ("[1, 'x', [True]]", r#"[1, "x", [true]]"#),
            ("(1, 2)", "[1, 2]"),
            ("(1,)", "[1]"),
            ("(7)", "7"),
            ("()", "[]"),
            (
                "{'a': 1, 2: None, 'b': {'c': []},}",
                r#"{"a": 1, "2": null, "b": {"c": []}}"#,
            ),
            ("  'padded'  ", r#""padded""#),
        ] {
            assert_eq!(py_literal_to_json(py).as_deref(), Ok(json), "{py}");
        }
    }

    #[test]
    fn non_literals_are_rejected() {
        for py in [
            "x",
            "f(1)",
            "1 + 2",
            "b'x'",
            "f'x'",
            "{1, 2}",
            "1j",
            "007",
            "'open",
            "[1, 2",
            "{[1]: 2}",
            "'\\N{DASH}'",
            "1__0",
            "--1",
            "",
            "1e",
            "'\\ud800'",
        ] {
            assert_eq!(py_literal_to_json(py), Err(()), "{py}");
        }
    }

    fn feed_all(text: &str, step: usize) -> (Option<String>, String, Result<Scan, usize>) {
        let mut call = PyCall::default();
        let (mut name, mut args) = (None, String::new());
        let mut at = 0;
        let mut result = Ok(Scan::NeedMore);
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            result = call
                .feed(&text[at..end])
                .map(|s| match s {
                    Scan::Done(n) => Scan::Done(at + n),
                    s => s,
                })
                .map_err(|e| at + e);
            if let Some(n) = call.out.take_header() {
                name = Some(n);
            }
            if let Some(a) = call.out.take_args() {
                args.push_str(&a);
            }
            if !matches!(result, Ok(Scan::NeedMore)) {
                break;
            }
            at = end;
        }
        (name, args, result)
    }

    #[test]
    fn calls_stream_one_keyword_at_a_time() {
        let text = "get_weather(city='Zürich, CH', days = 3, opts={'u': (1, 2)}), next";
        for step in [1, 2, 5, 100] {
            let (name, args, result) = feed_all(text, step);
            assert_eq!(name.as_deref(), Some("get_weather"));
            assert_eq!(
                args,
                r#"{"city": "Zürich, CH", "days": 3, "opts": {"u": [1, 2]}}"#
            );
            assert_eq!(result, Ok(Scan::Done(text.find("), next").unwrap() + 1)));
        }
        let (name, args, _) = feed_all("ping( )", 1);
        assert_eq!((name.as_deref(), args.as_str()), (Some("ping"), "{}"));
    }

    #[test]
    fn positional_and_bad_literals_fail() {
        assert_eq!(feed_all("f(1)", 1).2, Err(2));
        let (name, _, result) = feed_all("f(a=x)", 1);
        assert_eq!((name, result), (None, Err(5)));
        // A bad second argument after a good first one: the call was already announced.
        let (name, args, result) = feed_all("f(a=1, b=y)", 3);
        assert_eq!(name.as_deref(), Some("f"));
        assert_eq!(args, r#"{"a": 1"#);
        assert_eq!(result, Err(10));
    }
}
