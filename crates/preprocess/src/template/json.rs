//! The `tojson` filter as transformers defines it for chat templates:
//! `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
//!
//! Python's defaults differ from serde_json's compact output: `", "` and `": "` separators
//! without `indent`, `","` and `": "` with it, non-ASCII kept as is, floats in Python `repr`.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::python::{bind_args, py_float_repr};

struct DumpOptions {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// The `tojson` filter: `value | tojson(ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, positional or keyword.
pub(crate) fn tojson_filter(value: &Value, args: &[Value]) -> Result<Value, Error> {
    let a = bind_args(
        "tojson",
        args,
        &["ensure_ascii", "indent", "separators", "sort_keys"],
    )?;
    let ensure_ascii = a[0].as_ref().is_some_and(Value::is_true);
    let indent = match &a[1] {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match (v.as_i64(), v.as_str()) {
            // Python: `' ' * indent`, so a negative indent means no indent but newlines.
            (Some(n), _) => " ".repeat(n.max(0) as usize),
            (None, Some(s)) => s.to_string(),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer, a string or None",
                ));
            }
        }),
    };
    let (item_separator, key_separator) = match &a[2] {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => match (item.as_str(), key.as_str()) {
                    (Some(item), Some(key)) => (item.to_string(), key.to_string()),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: separators must be two strings",
                        ));
                    }
                },
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a (item_separator, key_separator) pair",
                    ));
                }
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let options = DumpOptions {
        ensure_ascii,
        indent,
        item_separator,
        key_separator,
        sort_keys: a[3].as_ref().is_some_and(Value::is_true),
    };
    let mut out = String::new();
    dump(value, &options, 0, &mut out)?;
    // Not marked safe: HF templates never auto-escape, and the formatter prints strings as is.
    Ok(Value::from(out))
}

fn not_serializable(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {} is not JSON serializable", value.kind()),
    )
}

fn newline_indent(options: &DumpOptions, level: usize, out: &mut String) {
    if let Some(indent) = &options.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

fn dump(value: &Value, options: &DumpOptions, level: usize, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(value, out)?,
        ValueKind::String => write_string(value.as_str().unwrap_or_default(), options, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push_str(&options.item_separator);
                }
                newline_indent(options, level + 1, out);
                dump(item, options, level + 1, out)?;
            }
            newline_indent(options, level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (idx, (key, item)) in entries.iter().enumerate() {
                if idx > 0 {
                    out.push_str(&options.item_separator);
                }
                newline_indent(options, level + 1, out);
                write_string(key, options, out);
                out.push_str(&options.key_separator);
                dump(item, options, level + 1, out)?;
            }
            newline_indent(options, level, out);
            out.push('}');
        }
        ValueKind::Undefined | ValueKind::Bytes | ValueKind::Plain | ValueKind::Invalid | _ => {
            return Err(not_serializable(value));
        }
    }
    Ok(())
}

fn write_number(value: &Value, out: &mut String) -> Result<(), Error> {
    if value.is_integer() {
        write!(out, "{value}").ok();
        return Ok(());
    }
    let x = f64::try_from(value.clone()).map_err(|_| not_serializable(value))?;
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x < 0.0 { "-Infinity" } else { "Infinity" });
    } else {
        out.push_str(&py_float_repr(x));
    }
    Ok(())
}

/// Python converts non-string keys: numbers by `repr`, booleans and None as JSON literals.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(key, &mut s)?;
            Ok(s)
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "keys must be str, int, float, bool or None, not {}",
                key.kind()
            ),
        )),
    }
}

fn write_string(s: &str, options: &DumpOptions, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                write!(out, "\\u{:04x}", c as u32).ok();
            }
            // Python's ASCII mode escapes everything outside ' '..='~', DEL included.
            c if options.ensure_ascii && c > '~' => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").ok();
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::value::Kwargs;

    fn value(json: &str) -> Value {
        super::super::json_to_value(&serde_json::from_str(json).unwrap())
    }

    fn dumps(json: &str, kwargs: &[(&str, Value)]) -> String {
        let args: Vec<Value> = if kwargs.is_empty() {
            vec![]
        } else {
            vec![Value::from(Kwargs::from_iter(kwargs.iter().cloned()))]
        };
        tojson_filter(&value(json), &args).unwrap().to_string()
    }

    #[test]
    fn default_separators_are_pythons() {
        assert_eq!(
            dumps(r#"{"a": [1, 2.5, true, null], "b": "é\"\n\u0001"}"#, &[]),
            r#"{"a": [1, 2.5, true, null], "b": "é\"\n\u0001"}"#
        );
        assert_eq!(dumps("[]", &[]), "[]");
        assert_eq!(dumps("{}", &[]), "{}");
        assert_eq!(dumps("1e20", &[]), "1e+20");
    }

    #[test]
    fn indent_separators_sort_keys_and_ascii() {
        assert_eq!(
            dumps(
                r#"{"b": {"x": []}, "a": [1]}"#,
                &[("indent", Value::from(2))]
            ),
            "{\n  \"b\": {\n    \"x\": []\n  },\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(
            dumps(
                r#"{"b": 1, "a": 2}"#,
                &[
                    ("separators", Value::from(vec![",", ":"])),
                    ("sort_keys", Value::from(true))
                ]
            ),
            r#"{"a":2,"b":1}"#
        );
        assert_eq!(
            dumps(r#""日😀""#, &[("ensure_ascii", Value::from(true))]),
            r#""\u65e5\ud83d\ude00""#
        );
    }

    #[test]
    fn undefined_is_an_error() {
        assert!(tojson_filter(&Value::UNDEFINED, &[]).is_err());
    }
}
