//! Scanners for one tool call written as JSON: a `{"name": ..., "arguments": ...}` object
//! ([`CallObject`]) or a bare arguments value after a name the format gave elsewhere
//! ([`ArgsValue`]). Both are fed pieces of any size and decide *at exact byte positions* when
//! the call is certain enough to announce (its "commit"), so every way of cutting the text gives
//! the same calls.

use serde_json::Value;

use crate::json::{JsonScanner, Scan};

/// Longest key or name string accepted inside a call object (bytes, quotes included).
const MAX_KEY_LEN: usize = 1024;

/// What a call scanner has for the parser: the name once the call is committed, and the
/// argument text not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct CallOut {
    name: Option<String>,
    committed: bool,
    header_taken: bool,
    /// Argument text: everything so far before the commit, the unsent rest after it.
    args: String,
}

impl CallOut {
    pub(crate) fn with_name(name: String) -> Self {
        CallOut {
            name: Some(name),
            ..CallOut::default()
        }
    }

    pub(crate) fn committed(&self) -> bool {
        self.committed
    }

    pub(crate) fn push_args(&mut self, text: &str) {
        self.args.push_str(text);
    }

    pub(crate) fn commit(&mut self) {
        debug_assert!(self.name.is_some());
        self.committed = true;
    }

    /// The call's name, once, when it is committed.
    pub(crate) fn take_header(&mut self) -> Option<String> {
        if self.committed && !self.header_taken {
            self.header_taken = true;
            self.name.clone()
        } else {
            None
        }
    }

    /// Argument text not handed out yet (only once committed).
    pub(crate) fn take_args(&mut self) -> Option<String> {
        if self.committed && !self.args.is_empty() {
            Some(std::mem::take(&mut self.args))
        } else {
            None
        }
    }
}

/// Arguments given as a JSON string are unwrapped when the string holds a JSON object
/// (some models write `"arguments": "{\"city\": \"Paris\"}"`); otherwise the literal is kept.
fn string_arguments(literal: &str) -> String {
    if let Ok(inner) = serde_json::from_str::<String>(literal)
        && matches!(serde_json::from_str::<Value>(&inner), Ok(Value::Object(_)))
    {
        return inner;
    }
    literal.to_owned()
}

/// One JSON value used as a call's arguments. An object commits once its first key has been
/// read (`{"city"`, or `{}`), so a marker followed by something that merely starts like JSON
/// (`not json`, `{oops`) stays text; after that it streams verbatim, byte for byte as scanned.
/// Other values commit when complete; a string is unwrapped as in [`string_arguments`].
#[derive(Debug, Default)]
pub(crate) struct ArgsValue {
    scan: JsonScanner,
    /// The raw literal while the value is a string.
    string: Option<String>,
    done: bool,
}

impl ArgsValue {
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Feeds the next piece, collecting argument text into `out`; commits `out` (if it has a
    /// name) at the point described on [`ArgsValue`].
    pub(crate) fn feed(&mut self, s: &str, out: &mut CallOut) -> Result<Scan, usize> {
        let bytes = s.as_bytes();
        let mut start = 0;
        if !self.scan.started() {
            // Whitespace before the value is not part of the arguments.
            match bytes.iter().position(|b| !b.is_ascii_whitespace()) {
                None => return Ok(Scan::NeedMore),
                Some(j) => {
                    start = j;
                    if JsonScanner::is_string_value(bytes[j]) {
                        self.string = Some(String::new());
                    }
                }
            }
        }
        let result = self.scan.feed(&bytes[start..]);
        let consumed = match result {
            Ok(Scan::NeedMore) => bytes.len() - start,
            Ok(Scan::Done(n)) | Err(n) => n,
        };
        let piece = &s[start..start + consumed];
        match &mut self.string {
            Some(literal) => {
                literal.push_str(piece);
                if matches!(result, Ok(Scan::Done(_))) {
                    out.push_args(&string_arguments(literal));
                    if out.name.is_some() {
                        out.commit();
                    }
                }
            }
            None => {
                out.push_args(piece);
                let sure = self.scan.first_key_done() || matches!(result, Ok(Scan::Done(_)));
                if sure && out.name.is_some() && !out.committed {
                    out.commit();
                }
            }
        }
        match result {
            Ok(Scan::Done(n)) => {
                self.done = true;
                Ok(Scan::Done(start + n))
            }
            Ok(Scan::NeedMore) => Ok(Scan::NeedMore),
            Err(n) => Err(start + n),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Name,
    Args,
    Other,
}

#[derive(Debug)]
enum Obj {
    Open,
    FirstKey,
    NextKey,
    InKey(JsonScanner, String),
    Colon(Key),
    ValueStart(Key),
    InName(JsonScanner, String),
    InArgs,
    InOther(JsonScanner),
    After,
    Done,
}

/// A call as one JSON object with a string `name` and an `arguments` (or `parameters`) value;
/// other keys are validated and ignored. Commits when both the name and the start of the
/// arguments have been seen, in either order; an object that closes with a name but no
/// arguments is a call with `{}` unless `require_args`.
#[derive(Debug)]
pub(crate) struct CallObject {
    state: Obj,
    require_args: bool,
    args_seen: bool,
    args: ArgsValue,
    pub(crate) out: CallOut,
}

impl CallObject {
    pub(crate) fn new(require_args: bool) -> Self {
        CallObject {
            state: Obj::Open,
            require_args,
            args_seen: false,
            args: ArgsValue::default(),
            out: CallOut::default(),
        }
    }

    /// Feeds the next piece (starting with the object's `{`, whitespace allowed before it).
    /// `Err(i)`: byte `i` cannot continue a call object (for an object that closed without
    /// being a call, `i` is just past its `}`).
    pub(crate) fn feed(&mut self, s: &str) -> Result<Scan, usize> {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match &mut self.state {
                Obj::Done => return Ok(Scan::Done(i)),
                Obj::Open => {
                    if b == b'{' {
                        self.state = Obj::FirstKey;
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                Obj::FirstKey | Obj::NextKey => {
                    if b == b'"' {
                        self.state = Obj::InKey(JsonScanner::default(), String::new());
                        continue;
                    }
                    if b == b'}' && matches!(self.state, Obj::FirstKey) {
                        return self.close(i);
                    }
                    if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                Obj::InKey(scan, raw) | Obj::InName(scan, raw) => {
                    let result = scan.feed(&bytes[i..]);
                    let n = match result {
                        Ok(Scan::NeedMore) => bytes.len() - i,
                        Ok(Scan::Done(n)) => n,
                        Err(n) => return Err(i + n),
                    };
                    if raw.len() + n > MAX_KEY_LEN {
                        let mut at = i + (MAX_KEY_LEN - raw.len()).min(n);
                        while !s.is_char_boundary(at) {
                            at -= 1;
                        }
                        return Err(at);
                    }
                    raw.push_str(&s[i..i + n]);
                    i += n;
                    if matches!(result, Ok(Scan::Done(_))) {
                        let Ok(text) = serde_json::from_str::<String>(raw) else {
                            return Err(i - 1);
                        };
                        if matches!(self.state, Obj::InKey(..)) {
                            let key = match text.as_str() {
                                "name" if self.out.name.is_none() => Key::Name,
                                "arguments" | "parameters" if !self.args_seen => Key::Args,
                                _ => Key::Other,
                            };
                            self.state = Obj::Colon(key);
                        } else {
                            if text.is_empty() {
                                return Err(i - 1);
                            }
                            self.out.name = Some(text);
                            if self.args.done() {
                                self.out.commit();
                            }
                            self.state = Obj::After;
                        }
                    }
                }
                Obj::Colon(key) => {
                    if b == b':' {
                        self.state = Obj::ValueStart(*key);
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
                Obj::ValueStart(key) => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                        continue;
                    }
                    self.state = match key {
                        Key::Name if b == b'"' => {
                            Obj::InName(JsonScanner::default(), String::new())
                        }
                        Key::Name => return Err(i),
                        Key::Args => {
                            self.args_seen = true;
                            Obj::InArgs
                        }
                        Key::Other => Obj::InOther(JsonScanner::default()),
                    };
                }
                Obj::InArgs => match self.args.feed(&s[i..], &mut self.out).map_err(|e| i + e)? {
                    Scan::NeedMore => i = bytes.len(),
                    Scan::Done(n) => {
                        i += n;
                        self.state = Obj::After;
                    }
                },
                Obj::InOther(scan) => match scan.feed(&bytes[i..]) {
                    Ok(Scan::NeedMore) => i = bytes.len(),
                    Ok(Scan::Done(n)) => {
                        i += n;
                        self.state = Obj::After;
                    }
                    Err(n) => return Err(i + n),
                },
                Obj::After => {
                    if b == b',' {
                        self.state = Obj::NextKey;
                    } else if b == b'}' {
                        return self.close(i);
                    } else if !b.is_ascii_whitespace() {
                        return Err(i);
                    }
                    i += 1;
                }
            }
        }
        Ok(Scan::NeedMore)
    }

    /// The object's `}` at byte `i`.
    fn close(&mut self, i: usize) -> Result<Scan, usize> {
        if !self.out.committed {
            if self.out.name.is_none() || self.require_args || self.args_seen {
                // Not a call (or arguments that never completed, which cannot happen here).
                return Err(i + 1);
            }
            self.out.push_args("{}");
            self.out.commit();
        }
        self.state = Obj::Done;
        Ok(Scan::Done(i + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `step` bytes (on char boundaries); returns (name, args, result).
    fn run(
        text: &str,
        step: usize,
        require_args: bool,
    ) -> (Option<String>, String, Result<Scan, usize>) {
        let mut obj = CallObject::new(require_args);
        let mut name = None;
        let mut args = String::new();
        let mut at = 0;
        let mut result = Ok(Scan::NeedMore);
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            result = obj.feed(&text[at..end]).map(|s| match s {
                Scan::Done(n) => Scan::Done(at + n),
                Scan::NeedMore => Scan::NeedMore,
            });
            result = result.map_err(|e| at + e);
            if let Some(n) = obj.out.take_header() {
                name = Some(n);
            }
            if let Some(a) = obj.out.take_args() {
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
    fn name_then_arguments_stream_verbatim() {
        let text = r#"{"name": "get_weather", "arguments": {"city": "Zürich", "n": [1, 2]}} rest"#;
        for step in [1, 2, 3, 7, 1000] {
            let (name, args, result) = run(text, step, false);
            assert_eq!(name.as_deref(), Some("get_weather"), "step {step}");
            assert_eq!(args, r#"{"city": "Zürich", "n": [1, 2]}"#, "step {step}");
            assert_eq!(result, Ok(Scan::Done(text.len() - 5)), "step {step}");
        }
    }

    #[test]
    fn arguments_before_name_and_other_keys() {
        let text = r#"{"id": 3, "parameters": {"q": "x"}, "name": "search"}"#;
        for step in [1, 4, 100] {
            let (name, args, result) = run(text, step, true);
            assert_eq!(name.as_deref(), Some("search"));
            assert_eq!(args, r#"{"q": "x"}"#);
            assert_eq!(result, Ok(Scan::Done(text.len())));
        }
    }

    #[test]
    fn string_arguments_are_unwrapped_when_they_hold_an_object() {
        let (_, args, _) = run(r#"{"name": "f", "arguments": "{\"a\": 1}"}"#, 1, false);
        assert_eq!(args, r#"{"a": 1}"#);
        let (_, args, _) = run(r#"{"name": "f", "arguments": "plain"}"#, 3, false);
        assert_eq!(args, r#""plain""#);
    }

    #[test]
    fn objects_that_are_not_calls_fail() {
        // No name: fails just past the closing brace.
        let text = r#"{"answer": 42}"#;
        assert_eq!(run(text, 1, false).2, Err(text.len()));
        // A name but no arguments: a call with {} unless arguments are required.
        let text = r#"{"name": "Bob"}"#;
        assert_eq!(run(text, 1, true).2, Err(text.len()));
        let (name, args, result) = run(text, 1, false);
        assert_eq!(
            (name.as_deref(), args.as_str(), result),
            (Some("Bob"), "{}", Ok(Scan::Done(text.len())))
        );
        // A name that is not a string.
        assert_eq!(run(r#"{"name": 5, "arguments": {}}"#, 2, false).2, Err(9));
        assert_eq!(run(r#"{"name": "", "arguments": {}}"#, 2, false).2, Err(10));
    }

    #[test]
    fn broken_arguments_after_the_commit_keep_the_valid_prefix() {
        let text = r#"{"name": "f", "arguments": {"a": tru}"#;
        for step in [1, 5, 100] {
            let (name, args, result) = run(text, step, false);
            assert_eq!(name.as_deref(), Some("f"));
            assert_eq!(args, r#"{"a": tru"#);
            assert_eq!(result, Err(text.len() - 1));
        }
    }
}
