//! Python semantics that chat templates rely on and minijinja does not have built in: `str`
//! methods with Python's exact whitespace and splitting rules, Python's float `repr`, and the
//! argument conventions (positional or keyword) of Python calls.

use minijinja::value::{Kwargs, Tuple, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

/// Python's `str.isspace()` for one character. Rust's `char::is_whitespace` misses only the
/// four information separators U+001C..U+001F, which Python counts as whitespace.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `repr(float)` (also `str(float)`): shortest round-trip digits, exponent notation
/// below 1e-4 and from 1e16 on (`1e-05`, `1e+16`), and always a `.0` on integral values.
pub(crate) fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` prints the shortest round-trip digits, like Python's repr.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

/// Binds a Python call's arguments (positional, then keyword) to parameter names. A trailing
/// kwargs value in `args` holds the keyword arguments. Missing parameters are `None`.
pub(crate) fn bind_args(
    callee: &str,
    args: &[Value],
    params: &[&str],
) -> Result<Vec<Option<Value>>, Error> {
    let (positional, kwargs) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Kwargs::try_from(last.clone()).ok()),
        _ => (args, None),
    };
    if positional.len() > params.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!(
                "{callee}() takes at most {} arguments ({} given)",
                params.len(),
                positional.len()
            ),
        ));
    }
    let mut bound: Vec<Option<Value>> = positional.iter().cloned().map(Some).collect();
    bound.resize(params.len(), None);
    if let Some(kwargs) = kwargs {
        for name in kwargs.args() {
            let Some(idx) = params.iter().position(|p| *p == name) else {
                return Err(Error::new(
                    ErrorKind::TooManyArguments,
                    format!("{callee}() got an unexpected keyword argument '{name}'"),
                ));
            };
            if bound[idx].is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{callee}() got multiple values for argument '{name}'"),
                ));
            }
            // `get` marks the argument used; minijinja rejects calls with unused kwargs.
            bound[idx] = Some(kwargs.get::<Value>(name)?);
        }
    }
    Ok(bound)
}

/// An optional string argument; Python's `None` means "not given".
fn opt_str<'a>(callee: &str, value: &'a Option<Value>) -> Result<Option<&'a str>, Error> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{callee}() argument must be str or None, not {}", v.kind()),
            )
        }),
    }
}

fn opt_int(callee: &str, value: &Option<Value>, default: i64) -> Result<i64, Error> {
    match value {
        None => Ok(default),
        Some(v) => v.as_i64().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{callee}() expects an integer, got {}", v.kind()),
            )
        }),
    }
}

fn required_str<'a>(callee: &str, value: &'a Option<Value>) -> Result<&'a str, Error> {
    match value {
        None => Err(Error::new(
            ErrorKind::MissingArgument,
            format!("{callee}() is missing a required argument"),
        )),
        Some(v) => v.as_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{callee}() argument must be str, not {}", v.kind()),
            )
        }),
    }
}

/// Python's `str.strip`/`lstrip`/`rstrip` with an optional set of characters.
pub(crate) fn py_strip<'s>(s: &'s str, chars: Option<&str>, left: bool, right: bool) -> &'s str {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(matches);
    }
    if right {
        out = out.trim_end_matches(matches);
    }
    out
}

/// Python's `str.split(sep, maxsplit)` (`rsplit` when `from_right`).
fn py_split(s: &str, sep: Option<&str>, maxsplit: i64, from_right: bool) -> Result<Value, Error> {
    let parts: Vec<&str> = match sep {
        Some("") => {
            return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
        }
        Some(sep) => match (maxsplit < 0, from_right) {
            (true, _) => s.split(sep).collect(),
            (false, false) => s.splitn(maxsplit as usize + 1, sep).collect(),
            (false, true) => {
                let mut parts: Vec<&str> = s.rsplitn(maxsplit as usize + 1, sep).collect();
                parts.reverse();
                parts
            }
        },
        None if !from_right => {
            // Runs of whitespace separate; no empty strings; the remainder after `maxsplit`
            // splits keeps its trailing whitespace.
            let mut parts = Vec::new();
            let mut rest = s.trim_start_matches(is_py_space);
            while !rest.is_empty() {
                if maxsplit >= 0 && parts.len() as i64 >= maxsplit {
                    parts.push(rest);
                    break;
                }
                match rest.find(is_py_space) {
                    Some(idx) => {
                        parts.push(&rest[..idx]);
                        rest = rest[idx..].trim_start_matches(is_py_space);
                    }
                    None => {
                        parts.push(rest);
                        break;
                    }
                }
            }
            parts
        }
        None => {
            let mut parts = Vec::new();
            let mut rest = s.trim_end_matches(is_py_space);
            while !rest.is_empty() {
                if maxsplit >= 0 && parts.len() as i64 >= maxsplit {
                    parts.push(rest);
                    break;
                }
                match rest.rfind(is_py_space) {
                    Some(idx) => {
                        let ws_len = rest[idx..].chars().next().map_or(1, char::len_utf8);
                        parts.push(&rest[idx + ws_len..]);
                        rest = rest[..idx].trim_end_matches(is_py_space);
                    }
                    None => {
                        parts.push(rest);
                        break;
                    }
                }
            }
            parts.reverse();
            parts
        }
    };
    Ok(parts.into_iter().map(Value::from).collect())
}

/// Python's `str.splitlines(keepends)`: every Unicode line boundary Python knows.
fn py_splitlines(s: &str, keepends: bool) -> Value {
    let is_break = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((idx, c)) = iter.next() {
        if !is_break(c) {
            continue;
        }
        let mut end = idx + c.len_utf8();
        if c == '\r' && matches!(iter.peek(), Some(&(_, '\n'))) {
            iter.next();
            end += 1;
        }
        lines.push(Value::from(if keepends {
            &s[start..end]
        } else {
            &s[start..idx]
        }));
        start = end;
    }
    if start < s.len() {
        lines.push(Value::from(&s[start..]));
    }
    Value::from(lines)
}

/// Python's `str.title()`: a cased character is upper-cased after an uncased one, lower-cased
/// after a cased one (so `they're` becomes `They'Re`, unlike Jinja's `title` filter).
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

fn pad(s: &str, width: i64, fill: char, align: char) -> String {
    let len = s.chars().count() as i64;
    if width <= len {
        return s.to_string();
    }
    let margin = width - len;
    let left = match align {
        '<' => 0,
        '>' => margin,
        // CPython's centring rule.
        _ => margin / 2 + (margin & width & 1),
    };
    let mut out = String::with_capacity(s.len() + margin as usize * fill.len_utf8());
    out.extend(std::iter::repeat_n(fill, left as usize));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, (margin - left) as usize));
    out
}

fn fill_char(callee: &str, value: &Option<Value>) -> Result<char, Error> {
    match opt_str(callee, value)? {
        None => Ok(' '),
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "The fill character must be exactly one character long",
                )),
            }
        }
    }
}

fn char_index(s: &str, byte_idx: usize) -> i64 {
    s[..byte_idx].chars().count() as i64
}

/// String methods implemented here with Python's exact rules; `None` when not one of them.
fn string_method(s: &str, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    let result = (|| -> Result<Value, Error> {
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let a = bind_args(method, args, &["chars"])?;
                let chars = opt_str(method, &a[0])?;
                let left = method != "rstrip";
                let right = method != "lstrip";
                Ok(Value::from(py_strip(s, chars, left, right)))
            }
            "split" | "rsplit" => {
                let a = bind_args(method, args, &["sep", "maxsplit"])?;
                let sep = opt_str(method, &a[0])?;
                let maxsplit = opt_int(method, &a[1], -1)?;
                py_split(s, sep, maxsplit, method == "rsplit")
            }
            "splitlines" => {
                let a = bind_args(method, args, &["keepends"])?;
                let keepends = a[0].as_ref().is_some_and(Value::is_true);
                Ok(py_splitlines(s, keepends))
            }
            "removeprefix" => {
                let a = bind_args(method, args, &["prefix"])?;
                let prefix = required_str(method, &a[0])?;
                Ok(Value::from(s.strip_prefix(prefix).unwrap_or(s)))
            }
            "removesuffix" => {
                let a = bind_args(method, args, &["suffix"])?;
                let suffix = required_str(method, &a[0])?;
                Ok(Value::from(s.strip_suffix(suffix).unwrap_or(s)))
            }
            "partition" | "rpartition" => {
                let a = bind_args(method, args, &["sep"])?;
                let sep = required_str(method, &a[0])?;
                if sep.is_empty() {
                    return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
                }
                let found = if method == "partition" {
                    s.find(sep)
                } else {
                    s.rfind(sep)
                };
                let parts = match found {
                    Some(idx) => [&s[..idx], sep, &s[idx + sep.len()..]],
                    None if method == "partition" => [s, "", ""],
                    None => ["", "", s],
                };
                Ok(Value::from(Tuple::from(parts.map(Value::from))))
            }
            "index" | "rindex" => {
                let a = bind_args(method, args, &["sub"])?;
                let sub = required_str(method, &a[0])?;
                let found = if method == "index" {
                    s.find(sub)
                } else {
                    s.rfind(sub)
                };
                found
                    .map(|idx| Value::from(char_index(s, idx)))
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "substring not found"))
            }
            "title" => {
                bind_args(method, args, &[])?;
                Ok(Value::from(py_title(s)))
            }
            "swapcase" => {
                bind_args(method, args, &[])?;
                let mut out = String::with_capacity(s.len());
                for c in s.chars() {
                    if c.is_uppercase() {
                        out.extend(c.to_lowercase());
                    } else if c.is_lowercase() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                }
                Ok(Value::from(out))
            }
            "casefold" => {
                bind_args(method, args, &[])?;
                Ok(Value::from(s.to_lowercase()))
            }
            "center" | "ljust" | "rjust" => {
                let a = bind_args(method, args, &["width", "fillchar"])?;
                let width = opt_int(method, &a[0], 0)?;
                let fill = fill_char(method, &a[1])?;
                let align = match method {
                    "ljust" => '<',
                    "rjust" => '>',
                    _ => '^',
                };
                Ok(Value::from(pad(s, width, fill, align)))
            }
            "zfill" => {
                let a = bind_args(method, args, &["width"])?;
                let width = opt_int(method, &a[0], 0)?;
                let (sign, digits) = match s.chars().next() {
                    Some(c @ ('+' | '-')) => (Some(c), &s[1..]),
                    _ => (None, s),
                };
                let inner_width = width - i64::from(sign.is_some());
                let mut out = String::new();
                out.extend(sign);
                out.push_str(&pad(digits, inner_width, '0', '>'));
                Ok(Value::from(out))
            }
            "isdecimal" => {
                bind_args(method, args, &[])?;
                Ok(Value::from(
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c.is_numeric()),
                ))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    })();
    match result {
        Err(err) if err.kind() == ErrorKind::UnknownMethod => None,
        other => Some(other),
    }
}

fn seq_method(value: &Value, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    match method {
        "index" => Some((|| {
            let a = bind_args(method, args, &["value"])?;
            let needle = a[0].clone().unwrap_or(Value::UNDEFINED);
            for (idx, item) in value.try_iter()?.enumerate() {
                if item == needle {
                    return Ok(Value::from(idx));
                }
            }
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("{needle:?} is not in list"),
            ))
        })()),
        _ => None,
    }
}

/// minijinja's hook for `value.method(...)` calls it does not know: Python methods, ours first,
/// then the ones minijinja-contrib implements.
pub(crate) fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let ours = match value.kind() {
        ValueKind::String => value.as_str().and_then(|s| string_method(s, method, args)),
        ValueKind::Seq => seq_method(value, method, args),
        _ => None,
    };
    match ours {
        Some(result) => result,
        None => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1.2345678901234567e20, "1.2345678901234567e+20"),
            (-0.0, "-0.0"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(py_float_repr(value), expected, "{value:e}");
        }
    }

    fn split(s: &str, sep: Option<&str>, max: i64, right: bool) -> Vec<String> {
        py_split(s, sep, max, right)
            .unwrap()
            .try_iter()
            .unwrap()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn split_matches_python() {
        assert_eq!(split("  a b  c  ", None, -1, false), ["a", "b", "c"]);
        assert_eq!(split("  a b  c  ", None, 1, false), ["a", "b  c  "]);
        assert_eq!(split("  a b  c  ", None, 1, true), ["  a b", "c"]);
        assert_eq!(split("   ", None, -1, false), Vec::<String>::new());
        assert_eq!(split("a,b,,c", Some(","), -1, false), ["a", "b", "", "c"]);
        assert_eq!(split("a,b,,c", Some(","), 1, true), ["a,b,", "c"]);
        assert_eq!(split("", Some(","), -1, false), [""]);
        assert_eq!(split("x\u{1f}y", None, -1, false), ["x", "y"]);
        assert!(py_split("abc", Some(""), -1, false).is_err());
    }

    #[test]
    fn strip_and_title_and_pad_match_python() {
        assert_eq!(py_strip("\u{1c} x \n", None, true, true), "x");
        assert_eq!(py_strip("xxhixx", Some("x"), true, false), "hixx");
        assert_eq!(py_title("they're bill's friends"), "They'Re Bill'S Friends");
        assert_eq!(pad("ab", 5, '*', '^'), "**ab*");
        assert_eq!(pad("abc", 6, '*', '^'), "*abc**");
        assert_eq!(pad("ab", 1, '*', '^'), "ab");
    }

    #[test]
    fn splitlines_knows_python_breaks() {
        let lines = py_splitlines("a\r\nb\rc\u{2028}d\n", false);
        let lines: Vec<String> = lines.try_iter().unwrap().map(|v| v.to_string()).collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
        let kept = py_splitlines("a\r\nb", true);
        let kept: Vec<String> = kept.try_iter().unwrap().map(|v| v.to_string()).collect();
        assert_eq!(kept, ["a\r\n", "b"]);
    }
}
