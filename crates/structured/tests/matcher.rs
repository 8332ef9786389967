//! The matcher against hand-written documents, schemas it must refuse, and the mask against
//! a brute-force check of every token.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_structured::{
    GuidedDecoding, JsonGrammar, MAX_WHITESPACE, MaskScratch, Matcher, SchemaError, TokenMask,
    TokenVocab, validate::validate,
};

fn grammar(schema: &Value) -> Arc<JsonGrammar> {
    Arc::new(
        JsonGrammar::compile(&GuidedDecoding::JsonSchema(schema.to_string()))
            .unwrap_or_else(|e| panic!("{schema}: {e}")),
    )
}

fn object_grammar() -> Arc<JsonGrammar> {
    Arc::new(JsonGrammar::compile(&GuidedDecoding::JsonObject).unwrap())
}

/// Whether `doc` is accepted as a whole document, fed byte by byte and in one piece.
fn accepts(g: &Arc<JsonGrammar>, doc: &str) -> bool {
    let mut whole = Matcher::new(g.clone());
    let whole_ok = whole.advance(doc.as_bytes()) && whole.is_complete();
    let mut bytewise = Matcher::new(g.clone());
    let byte_ok = doc.as_bytes().iter().all(|b| bytewise.advance(&[*b])) && bytewise.is_complete();
    assert_eq!(whole_ok, byte_ok, "chunking changed the verdict on {doc:?}");
    whole_ok
}

fn error_of(schema: Value) -> SchemaError {
    JsonGrammar::compile(&GuidedDecoding::JsonSchema(schema.to_string()))
        .err()
        .unwrap_or_else(|| panic!("{schema} compiled"))
}

#[test]
fn json_object_accepts_objects_only() {
    let g = object_grammar();
    for doc in [
        r#"{}"#,
        r#"{"a": [1, -2.5e3, 0, -0, 1E+2, "x\u00e9\ud83d\ude00\n\"", true, false, null], "b": {"c": {}}}"#,
        "{ \"k\" :\t[ ] }",
        "\n{\"é日本\": \"😀\"}",
    ] {
        assert!(accepts(&g, doc), "{doc}");
        let parsed: Value = serde_json::from_str(doc).unwrap();
        assert!(parsed.is_object());
    }
    for doc in [
        "[1]",
        "\"s\"",
        "1",
        r#"{"a" 1}"#,
        r#"{,}"#,
        r#"{"a":1,}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":tru}"#,
        r#"{"a":"\x"}"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00"}"#,
        r#"{"a":"\ud800\u0041"}"#,
        r#"{} "#,
        r#"{}}"#,
    ] {
        assert!(!accepts(&g, doc), "{doc} accepted");
    }
}

#[test]
fn utf8_is_checked_across_token_boundaries() {
    let g = object_grammar();
    let mut m = Matcher::new(g.clone());
    assert!(m.advance(b"{\"k\":\""));
    let emoji = "😀".as_bytes();
    for &b in emoji {
        assert!(m.advance(&[b]));
    }
    assert!(m.advance(b"\"}"));
    assert!(m.is_complete() && !m.can_continue());

    for bad in [
        &[0xC0, 0x80][..],
        &[0x80],
        &[0xE0, 0x80, 0x80],
        &[0xED, 0xA0, 0x80],
        &[0xF5],
        &[0xF4, 0x90],
    ] {
        let mut m = Matcher::new(g.clone());
        assert!(m.advance(b"{\"k\":\""));
        assert!(!m.advance(bad), "{bad:x?} accepted");
    }
    // A character cut short cannot be closed.
    let mut m = Matcher::new(g);
    assert!(m.advance(b"{\"k\":\"\xE6\x97"));
    assert!(!m.accepts(b"\""));
    assert!(m.advance(b"\xA5\"}"));
}

#[test]
fn whitespace_and_numbers_are_bounded() {
    let g = object_grammar();
    let max = MAX_WHITESPACE as usize;
    assert!(accepts(&g, &format!("{{{}}}", " ".repeat(max))));
    assert!(!accepts(&g, &format!("{{{}}}", " ".repeat(max + 1))));
    assert!(accepts(&g, &format!("{{\"n\":{}}}", "9".repeat(20))));
    assert!(!accepts(&g, &format!("{{\"n\":{}}}", "9".repeat(21))));
    assert!(accepts(&g, r#"{"n":1e99}"#));
    assert!(!accepts(&g, r#"{"n":1e999}"#));
    let int = grammar(&json!({"type": "integer"}));
    let mut m = Matcher::new(int.clone());
    assert!(m.advance(b"12"));
    assert!(m.is_complete() && m.can_continue());
    assert!(!m.accepts(b"."));
    assert!(!accepts(&int, "1e3"));
    assert!(accepts(&int, "-7"));
}

#[test]
fn object_schema_enforces_required_and_closed_keys() {
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let g = grammar(&schema);
    assert!(accepts(&g, r#"{"name":"Ann","age":31}"#));
    assert!(accepts(&g, r#"{ "age" : 3 , "name" : "" }"#));
    for doc in [
        r#"{"name":"Ann"}"#,
        r#"{"name":"Ann","age":31,"x":1}"#,
        r#"{"name":"Ann","name":"Bo","age":1}"#,
        r#"{"name":1,"age":31}"#,
        r#"{"name":"Ann","age":3.5}"#,
        r#"{"nam":"Ann","age":31}"#,
    ] {
        assert!(!accepts(&g, doc), "{doc} accepted");
    }
    // The object cannot close before both keys are written.
    let mut m = Matcher::new(g);
    assert!(m.advance(br#"{"name":"Ann""#));
    assert!(!m.accepts(b"}"));
    assert!(m.accepts(b","));

    // Without additionalProperties: other keys are allowed, but never a declared one twice.
    let open = grammar(&json!({"properties": {"a": {"type": "integer"}}, "required": ["a"]}));
    assert!(accepts(&open, r#"{"b":[1,{"c":null}],"a":1}"#));
    assert!(!accepts(&open, r#"{"a":1,"a":2}"#));
    assert!(!accepts(&open, r#"{"a":"x"}"#));
    assert!(!accepts(&open, r#"{"b":1}"#));
    let extra = grammar(&json!({"type": "object", "additionalProperties": {"type": "boolean"}}));
    assert!(accepts(&extra, r#"{"x":true,"y":false}"#));
    assert!(!accepts(&extra, r#"{"x":1}"#));
}

#[test]
fn arrays_strings_enums_unions_and_refs() {
    let arr = grammar(
        &json!({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 2}, "minItems": 1, "maxItems": 2}),
    );
    assert!(accepts(&arr, r#"["a","é😀"]"#));
    assert!(accepts(&arr, r#"["\n"]"#));
    for doc in [
        r#"[]"#,
        r#"["a","b","c"]"#,
        r#"[""]"#,
        r#"["abc"]"#,
        r#"["a",]"#,
    ] {
        assert!(!accepts(&arr, doc), "{doc} accepted");
    }
    let e = grammar(
        &json!({"enum": ["red", 1, {"a": [true]}, null], "type": ["string", "object", "null"]}),
    );
    assert!(accepts(&e, r#""red""#));
    assert!(accepts(&e, r#"{"a":[true]}"#));
    assert!(accepts(&e, "null"));
    assert!(!accepts(&e, "1"), "1 is not of the listed types");
    assert!(!accepts(&e, r#""re""#));
    let c = grammar(
        &json!({"type": "object", "properties": {"kind": {"const": "dog"}}, "required": ["kind"], "additionalProperties": false}),
    );
    assert!(accepts(&c, r#"{"kind":"dog"}"#));
    assert!(!accepts(&c, r#"{"kind":"cat"}"#));
    let u = grammar(&json!({"anyOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false},
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "null"}}, "required": ["a", "b"], "additionalProperties": false},
        {"type": "null"}
    ]}));
    assert!(accepts(&u, r#"{"a":1}"#));
    assert!(accepts(&u, r#"{"a":"x","b":null}"#));
    assert!(accepts(&u, "null"));
    assert!(!accepts(&u, r#"{"a":"x"}"#));
    assert!(!accepts(&u, r#"{"a":1,"b":null}"#));
    let tree = grammar(&json!({
        "$defs": {"node": {"type": "object", "properties": {"v": {"type": "number"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"], "additionalProperties": false}},
        "$ref": "#/$defs/node"
    }));
    assert!(accepts(
        &tree,
        r#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4.5}]}]}"#
    ));
    assert!(!accepts(&tree, r#"{"v":1,"kids":[{}]}"#));
    let pydantic_optional = grammar(&json!({
        "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "X"}},
        "title": "M", "type": "object"
    }));
    assert!(accepts(&pydantic_optional, r#"{"x":null}"#));
    assert!(accepts(&pydantic_optional, r#"{}"#));
    // An optional property whose schema admits nothing can never be written.
    let never = grammar(&json!({"type": "object", "properties": {"x": false}}));
    assert!(accepts(&never, r#"{"y":1}"#));
    assert!(!accepts(&never, r#"{"x":1}"#));
}

/// What pydantic v2 writes for a model (`Person.model_json_schema()`), and the strict form the
/// `openai` client sends for `chat.completions.parse(response_format=Person)`.
#[test]
fn pydantic_and_openai_strict_schemas_compile() {
    let pydantic = json!({
        "$defs": {
            "Address": {"properties": {
                "city": {"description": "City", "maxLength": 40, "title": "City", "type": "string"},
                "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Zip"}
            }, "required": ["city"], "title": "Address", "type": "object"},
            "Cat": {"properties": {"kind": {"const": "cat", "title": "Kind", "type": "string"}, "lives": {"title": "Lives", "type": "integer"}}, "required": ["kind", "lives"], "title": "Cat", "type": "object"},
            "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
            "Dog": {"properties": {"kind": {"const": "dog", "title": "Kind", "type": "string"}, "good": {"title": "Good", "type": "boolean"}}, "required": ["kind", "good"], "title": "Dog", "type": "object"}
        },
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "age": {"title": "Age", "type": "integer"},
            "color": {"$ref": "#/$defs/Color", "default": "red"},
            "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"},
            "address": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null},
            "pet": {"discriminator": {"mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}, "propertyName": "kind"}, "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "title": "Pet"}
        },
        "required": ["name", "age", "pet"],
        "title": "Person",
        "type": "object"
    });
    let g = grammar(&pydantic);
    assert!(accepts(
        &g,
        r#"{"name":"Ann","age":7,"pet":{"kind":"dog","good":true},"color":"green","address":{"city":"Oslo","zip":null}}"#
    ));
    assert!(!accepts(
        &g,
        r#"{"name":"Ann","age":7,"pet":{"kind":"cow","good":true}}"#
    ));
    assert!(!accepts(
        &g,
        r#"{"name":"Ann","age":7,"pet":{"kind":"cat"},"color":"blue"}"#
    ));
    // The strict form: every property required, objects closed, `$ref` siblings inlined.
    let strict = json!({
        "$defs": {
            "Address": {"properties": {
                "city": {"description": "City", "maxLength": 40, "title": "City", "type": "string"},
                "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Zip"}
            }, "required": ["city", "zip"], "title": "Address", "type": "object", "additionalProperties": false},
            "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"}
        },
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
            "address": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}
        },
        "required": ["name", "color", "address"],
        "title": "Person",
        "type": "object",
        "additionalProperties": false
    });
    let g = grammar(&strict);
    assert!(accepts(&g, r#"{"name":"A","color":"red","address":null}"#));
    assert!(accepts(
        &g,
        r#"{"address":{"zip":"0150","city":"Oslo"},"name":"A","color":"red"}"#
    ));
    assert!(!accepts(&g, r#"{"name":"A","color":"red"}"#));
    assert!(!accepts(
        &g,
        r#"{"name":"A","color":"red","address":null,"x":1}"#
    ));
}

/// The schemas `tool_choice` `required` and named make from the declared tools.
#[test]
fn forced_tool_call_schemas_compile() {
    use switchyard_parsers::forced::{ForcedCall, forced_call_schema};
    let tools = vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": false
        }}}),
        json!({"type": "function", "function": {"name": "now"}}),
    ];
    let named = forced_call_schema(&ForcedCall::Named("get_weather".into()), &tools).unwrap();
    let g = grammar(&named);
    assert!(accepts(&g, r#"{"city":"Paris","unit":"c"}"#));
    assert!(!accepts(&g, r#"{"unit":"c"}"#));
    let required = forced_call_schema(&ForcedCall::Required, &tools).unwrap();
    let g = grammar(&required);
    assert!(accepts(
        &g,
        r#"[{"name":"get_weather","parameters":{"city":"Oslo"}},{"parameters":{},"name":"now"}]"#
    ));
    assert!(!accepts(&g, "[]"));
    assert!(!accepts(&g, r#"[{"name":"now"}]"#));
    assert!(!accepts(&g, r#"[{"name":"get_weather","parameters":{}}]"#));
}

#[test]
fn unsupported_keywords_are_named_with_their_path() {
    let cases = [
        (
            json!({"type": "object", "properties": {"name": {"type": "string", "pattern": "^a"}}}),
            "pattern",
            "#/properties/name",
        ),
        (json!({"type": "string", "format": "date"}), "format", "#"),
        (json!({"not": {"type": "null"}}), "not", "#"),
        (json!({"if": true, "then": true}), "if", "#"),
        (
            json!({"type": "array", "items": {"type": "integer", "minimum": 0}}),
            "minimum",
            "#/items",
        ),
        (
            json!({"$defs": {"a": {"uniqueItems": true}}, "$ref": "#/$defs/a"}),
            "uniqueItems",
            "#/$defs/a",
        ),
        (json!({"allOf": [{}, {}]}), "allOf", "#"),
        (json!({"$ref": "other.json#/a"}), "$ref", "#"),
        (json!({"type": "object", "anyOf": [{}]}), "type", "#"),
    ];
    for (schema, keyword, path) in cases {
        match error_of(schema.clone()) {
            SchemaError::Unsupported {
                keyword: k,
                path: p,
                ..
            } => {
                assert_eq!((k.as_str(), p.as_str()), (keyword, path), "{schema}");
            }
            other => panic!("{schema}: {other}"),
        }
    }
    let message = error_of(json!({"properties": {"a/b": {"pattern": "x"}}})).to_string();
    assert!(
        message.contains("`pattern`") && message.contains("#/properties/a~1b"),
        "{message}"
    );
}

#[test]
fn malformed_schemas_are_errors() {
    assert!(matches!(
        JsonGrammar::compile(&GuidedDecoding::JsonSchema("{".into())),
        Err(SchemaError::NotJson(_))
    ));
    for schema in [
        json!(3),
        json!({"type": "strng"}),
        json!({"type": 3}),
        json!({"type": "object", "required": "a"}),
        json!({"type": "object", "properties": []}),
        json!({"type": "string", "maxLength": -1}),
        json!({"$ref": "#/$defs/missing"}),
        json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        json!({"anyOf": [{"$ref": "#"}]}),
        json!({"anyOf": []}),
        json!({"enum": "x"}),
        json!({"enum": [1], "type": "string"}),
        json!({"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}),
        json!({"type": "string", "minLength": 3, "maxLength": 2}),
        json!({"type": "object", "required": ["z"], "additionalProperties": false}),
        json!(false),
    ] {
        assert!(
            matches!(error_of(schema.clone()), SchemaError::Invalid { .. }),
            "{schema}: {}",
            error_of(schema.clone())
        );
    }
    let mut deep = json!({"type": "integer"});
    for _ in 0..100 {
        deep = json!({"type": "array", "items": deep});
    }
    assert!(matches!(error_of(deep), SchemaError::TooLarge(_)));
    let wide: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("p{i}"), json!({}))).collect();
    assert!(matches!(
        error_of(json!({"properties": wide})),
        SchemaError::TooLarge(_)
    ));
    // Filtering `enum` members through nested `anyOf`s tries both branches at every level:
    // exponential, so it is cut off rather than left to run.
    let mut member = json!(1);
    for _ in 0..60 {
        member = json!([member]);
    }
    let started = std::time::Instant::now();
    let blowup = json!({
        "$defs": {"a": {"anyOf": [
            {"type": "array", "items": {"$ref": "#/$defs/a"}},
            {"type": "array", "items": {"$ref": "#/$defs/a"}}
        ]}},
        "enum": [member],
        "items": {"$ref": "#/$defs/a"}
    });
    assert!(matches!(error_of(blowup), SchemaError::TooLarge(_)));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let many: Vec<Value> = (0..10_001).map(|i| json!({"const": i})).collect();
    assert!(matches!(
        error_of(json!({"anyOf": many})),
        SchemaError::TooLarge(_)
    ));
}

/// A small vocabulary with the shapes that matter: structure, split UTF-8, escapes, keys.
pub fn test_vocab() -> TokenVocab {
    let mut tokens: Vec<Option<Vec<u8>>> = Vec::new();
    for b in 0u8..=255 {
        tokens.push(Some(vec![b]));
    }
    for t in [
        "{",
        "}",
        "{\"",
        "\":",
        "\",",
        "\"}",
        "\"",
        " \"",
        "name",
        "age",
        "\":\"",
        "\": ",
        ", \"",
        "true",
        "false",
        "null",
        "nul",
        "12",
        "-3",
        ".5",
        "e+",
        "1}",
        "0]",
        "[",
        "]",
        "[\"",
        "\"]",
        "\\u00",
        "e9",
        "\\ud83d",
        "\\ude00",
        "\\n",
        "  ",
        "\n",
        "\n  ",
        "héllo",
        "日本",
        "abc",
        "a\"b",
        "\"a\":1,",
        "}}",
        "]}",
        "},{\"",
        "red",
        "\"red\"",
        "abcd",
        "ab cd",
        "xy",
        "hello world",
    ] {
        tokens.push(Some(t.as_bytes().to_vec()));
    }
    tokens.push(Some(vec![0xE6, 0x97]));
    tokens.push(Some(vec![0xA5, b'"']));
    tokens.push(None);
    tokens.push(Some(Vec::new()));
    TokenVocab::new(tokens)
}

/// The mask equals trying every token one by one.
pub fn assert_mask_matches_brute_force(m: &Matcher, vocab: &TokenVocab) {
    let mut mask = TokenMask::default();
    let mut scratch = MaskScratch::default();
    m.fill_mask(vocab, &mut mask, &mut scratch);
    for id in 0..vocab.len() as u32 {
        let brute = vocab.token_bytes(id).is_some_and(|b| m.accepts(b));
        assert_eq!(
            mask.allows(id),
            brute,
            "token {id} {:?}",
            vocab.token_bytes(id).map(String::from_utf8_lossy)
        );
    }
}

#[test]
fn masks_equal_brute_force_in_many_states() {
    let vocab = test_vocab();
    let schemas = [
        json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "string", "maxLength": 3}}),
        json!({"enum": ["red", "green", null]}),
        json!({"type": "object", "properties": {"n": {"type": "number"}}, "additionalProperties": {"type": "string", "minLength": 2}}),
    ];
    let mut grammars: Vec<Arc<JsonGrammar>> = schemas.iter().map(grammar).collect();
    grammars.push(object_grammar());
    let prefixes: [&[u8]; 24] = [
        b"",
        b"{",
        b"{\"",
        b"{\"na",
        b"{\"name\"",
        b"{\"name\":",
        b"{\"name\":\"h",
        b"{\"name\":\"\\",
        b"{\"name\":\"\\u00",
        b"{\"name\":\"\\ud83d",
        b"{\"name\":\"\xE6",
        b"{\"name\":\"x\",\"age\":1",
        b"{\"age\":12,",
        b"[",
        b"[\"ab",
        b"[\"a",
        b"[\"abc",
        b"[\"a\",",
        b"\"re",
        b"{\"n\":1.5",
        b"{\"x\":\"",
        b"{\"x\":\"a",
        b"{\"k\":[1,{\"z\":\"s",
        b"n",
    ];
    let mut checked = 0;
    for g in &grammars {
        for prefix in prefixes {
            let mut m = Matcher::new(g.clone());
            if m.advance(prefix) {
                assert_mask_matches_brute_force(&m, &vocab);
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} states checked");
}

#[test]
fn validator_agrees_on_the_documents_above() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
    assert!(validate(&schema, &json!({"name": "x"})));
    assert!(!validate(&schema, &json!({"name": "x", "y": 1})));
}
