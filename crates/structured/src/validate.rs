//! A JSON Schema validator for the supported subset, written independently of the matcher:
//! tests check the matcher against it, and the compiler filters `enum` members with it.
//!
//! It reads the schema as the specification does (no type inference, `oneOf` as in the
//! matcher: any one branch suffices), so everything the matcher accepts must pass here.

use serde_json::Value;

/// How deep `$ref`s may chain while validating (recursive schemas on deep documents).
const MAX_DEPTH: usize = 512;

/// Subschema checks one [`validate`] may make: `anyOf`s that nest (or recurse through
/// `$ref`) try every branch at every level, which is exponential in the worst case.
pub const VALIDATE_BUDGET: u32 = 1_000_000;

/// Whether `doc` is valid under `schema` (a whole schema document: `$ref`s resolve in it).
/// Keywords outside the supported subset are ignored. A check that would take more than
/// [`VALIDATE_BUDGET`] steps is `false`.
pub fn validate(schema: &Value, doc: &Value) -> bool {
    let mut budget = VALIDATE_BUDGET;
    valid(schema, schema, doc, 0, &mut budget)
}

/// Like [`validate`], `None` when the check ran out of its [`VALIDATE_BUDGET`].
pub fn try_validate(schema: &Value, doc: &Value) -> Option<bool> {
    let mut budget = VALIDATE_BUDGET;
    validate_in(schema, schema, doc, &mut budget)
}

/// Like [`validate`], for a subschema whose `$ref`s resolve in `root`, with the caller's
/// step budget: `None` once it ran out.
pub(crate) fn validate_in(
    root: &Value,
    schema: &Value,
    doc: &Value,
    budget: &mut u32,
) -> Option<bool> {
    let verdict = valid(root, schema, doc, 0, budget);
    (*budget > 0).then_some(verdict)
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn has_type(t: &str, doc: &Value) -> bool {
    match t {
        "object" => doc.is_object(),
        "array" => doc.is_array(),
        "string" => doc.is_string(),
        "number" => doc.is_number(),
        "integer" => is_integer(doc),
        "boolean" => doc.is_boolean(),
        "null" => doc.is_null(),
        _ => false,
    }
}

fn count(map: &serde_json::Map<String, Value>, key: &str) -> Option<u64> {
    map.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
}

fn valid(root: &Value, schema: &Value, doc: &Value, depth: usize, budget: &mut u32) -> bool {
    if depth > MAX_DEPTH || *budget == 0 {
        return false;
    }
    *budget -= 1;
    let map = match schema {
        Value::Bool(b) => return *b,
        Value::Object(map) => map,
        _ => return false,
    };
    if let Some(r) = map.get("$ref") {
        let Some(target) = r
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
        else {
            return false;
        };
        if !valid(root, target, doc, depth + 1, budget) {
            return false;
        }
    }
    if let Some(Value::Array(all)) = map.get("allOf")
        && !all.iter().all(|s| valid(root, s, doc, depth + 1, budget))
    {
        return false;
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(Value::Array(any)) = map.get(keyword)
            && !any.iter().any(|s| valid(root, s, doc, depth + 1, budget))
        {
            return false;
        }
    }
    if let Some(Value::Array(members)) = map.get("enum")
        && !members.contains(doc)
    {
        return false;
    }
    if let Some(c) = map.get("const")
        && c != doc
    {
        return false;
    }
    match map.get("type") {
        Some(Value::String(t)) if !has_type(t, doc) => return false,
        Some(Value::Array(ts))
            if !ts
                .iter()
                .any(|t| t.as_str().is_some_and(|t| has_type(t, doc))) =>
        {
            return false;
        }
        _ => {}
    }
    match doc {
        Value::Object(obj) => {
            let props = map.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(required)) = map.get("required")
                && !required
                    .iter()
                    .all(|r| r.as_str().is_some_and(|r| obj.contains_key(r)))
            {
                return false;
            }
            for (key, value) in obj {
                let sub = match props.and_then(|p| p.get(key)) {
                    Some(s) => s,
                    None => match map.get("additionalProperties") {
                        Some(s) => s,
                        None => continue,
                    },
                };
                if !valid(root, sub, value, depth + 1, budget) {
                    return false;
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if count(map, "minItems").is_some_and(|m| n < m)
                || count(map, "maxItems").is_some_and(|m| n > m)
            {
                return false;
            }
            if let Some(s) = map.get("items")
                && !items.iter().all(|i| valid(root, s, i, depth + 1, budget))
            {
                return false;
            }
        }
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if count(map, "minLength").is_some_and(|m| n < m)
                || count(map, "maxLength").is_some_and(|m| n > m)
            {
                return false;
            }
        }
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_semantics() {
        let schema = json!({
            "$defs": {"age": {"type": "integer"}},
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 3}, "age": {"$ref": "#/$defs/age"}},
            "required": ["name"],
            "additionalProperties": false
        });
        assert!(validate(&schema, &json!({"name": "abc", "age": 3})));
        assert!(validate(&schema, &json!({"name": "abc", "age": 3.0})));
        assert!(!validate(&schema, &json!({"name": "abcd"})));
        assert!(!validate(&schema, &json!({"age": 3})));
        assert!(!validate(&schema, &json!({"name": "a", "age": 3.5})));
        assert!(!validate(&schema, &json!({"name": "a", "x": 1})));
        assert!(validate(&json!({"enum": [1, "a"]}), &json!("a")));
        assert!(!validate(&json!({"enum": [1, "a"]}), &json!("b")));
        assert!(validate(
            &json!({"anyOf": [{"type": "null"}, {"type": "string"}]}),
            &json!(null)
        ));
        assert!(!validate(
            &json!({"type": "array", "minItems": 2}),
            &json!([1])
        ));
        assert!(!validate(&json!(false), &json!(1)));
    }
}
