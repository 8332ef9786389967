//! Properties: documents generated from a schema are accepted under any chunking; documents
//! the matcher lets through (random walks) parse and validate; masks equal brute force.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchyard_structured::{
    GuidedDecoding, JsonGrammar, MAX_WHITESPACE, MaskScratch, Matcher, TokenMask, TokenVocab,
    validate::validate,
};

fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 8},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}
        }, "required": ["name", "age"], "additionalProperties": false}),
        json!({"anyOf": [{"type": "null"}, {"enum": ["red", "green", 1, {"a": [true]}]}, {"const": "x"}]}),
        json!({"$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "number"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
        }, "required": ["v"]}}, "$ref": "#/$defs/node"}),
        json!({"type": "object", "properties": {"id": {"type": "integer"}},
               "additionalProperties": {"type": ["string", "boolean"]}}),
        json!({"type": "object"}),
        json!({"type": "array", "items": {"type": "number"}, "minItems": 1}),
        json!({"type": "integer"}),
        json!({"type": "string", "maxLength": 5}),
        json!({"type": "object", "properties": {"mode": {"enum": ["fast", "slow"]}, "n": {"type": ["integer", "null"]}},
               "required": ["mode"], "additionalProperties": false}),
    ]
}

fn compile(schema: &Value) -> Arc<JsonGrammar> {
    Arc::new(JsonGrammar::compile(&GuidedDecoding::JsonSchema(schema.to_string())).unwrap())
}

/// A small deterministic RNG driven by proptest's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// A generated document: literals (enum / const members) must be written compactly.
enum Piece {
    Literal(Value),
    Object(Vec<(String, Piece)>),
    Array(Vec<Piece>),
    Scalar(Value),
}

impl Piece {
    fn value(&self) -> Value {
        match self {
            Piece::Literal(v) | Piece::Scalar(v) => v.clone(),
            Piece::Object(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.clone(), v.value()))
                    .collect::<Map<_, _>>(),
            ),
            Piece::Array(items) => Value::Array(items.iter().map(Piece::value).collect()),
        }
    }
}

const STRING_CHARS: &[char] = &[
    'a', 'z', ' ', '"', '\\', '/', '\n', '\u{1}', 'é', '日', '😀', '\u{7f}',
];

fn gen_string(rng: &mut Rng, min: u64, max: u64) -> String {
    let len = min + rng.below(max.min(min + 6) - min + 1);
    (0..len)
        .map(|_| STRING_CHARS[rng.below(STRING_CHARS.len() as u64) as usize])
        .collect()
}

fn gen_number(rng: &mut Rng, integer: bool) -> Value {
    if integer || rng.chance(2) {
        json!(rng.below(2_000_001) as i64 - 1_000_000)
    } else {
        let mantissa = (rng.below(2_000_001) as f64 - 1_000_000.0) / 1000.0;
        let scale = 10f64.powi(rng.below(11) as i32 - 5);
        json!(mantissa * scale)
    }
}

fn gen_any(rng: &mut Rng, depth: u32) -> Piece {
    let pick = if depth > 3 {
        2 + rng.below(5)
    } else {
        rng.below(7)
    };
    match pick {
        0 => Piece::Object(
            (0..rng.below(3))
                .map(|i| {
                    (
                        format!("k{i}{}", gen_string(rng, 0, 2)),
                        gen_any(rng, depth + 1),
                    )
                })
                .collect(),
        ),
        1 => Piece::Array((0..rng.below(3)).map(|_| gen_any(rng, depth + 1)).collect()),
        2 => Piece::Scalar(Value::String(gen_string(rng, 0, 6))),
        3 => Piece::Scalar(gen_number(rng, false)),
        4 => Piece::Scalar(json!(true)),
        5 => Piece::Scalar(json!(false)),
        _ => Piece::Scalar(Value::Null),
    }
}

fn generate(root: &Value, schema: &Value, rng: &mut Rng, depth: u32) -> Piece {
    let map = match schema {
        Value::Bool(true) => return gen_any(rng, depth),
        Value::Object(m) => m,
        _ => unreachable!("test schemas are satisfiable"),
    };
    if let Some(r) = map.get("$ref").and_then(Value::as_str) {
        return generate(root, root.pointer(&r[1..]).unwrap(), rng, depth);
    }
    if let Some(Value::Array(alts)) = map.get("anyOf") {
        return generate(
            root,
            &alts[rng.below(alts.len() as u64) as usize],
            rng,
            depth,
        );
    }
    if let Some(c) = map.get("const") {
        return Piece::Literal(c.clone());
    }
    if let Some(Value::Array(members)) = map.get("enum") {
        return Piece::Literal(members[rng.below(members.len() as u64) as usize].clone());
    }
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts[rng.below(ts.len() as u64) as usize]
            .as_str()
            .unwrap()
            .to_owned(),
        _ if map.contains_key("properties") => "object".into(),
        _ => return gen_any(rng, depth),
    };
    let count = |k: &str| map.get(k).and_then(Value::as_u64);
    match ty.as_str() {
        "object" => {
            let props = map
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Vec::new();
            for (k, s) in &props {
                if required.contains(&k.as_str()) || (depth < 4 && rng.chance(2)) {
                    out.push((k.clone(), generate(root, s, rng, depth + 1)));
                }
            }
            let additional = map
                .get("additionalProperties")
                .cloned()
                .unwrap_or(Value::Bool(true));
            if additional != Value::Bool(false) && depth < 4 {
                for i in 0..rng.below(3) {
                    let key = format!("x{i}{}", gen_string(rng, 0, 3));
                    if !props.contains_key(&key) {
                        out.push((key, generate(root, &additional, rng, depth + 1)));
                    }
                }
            }
            // Any order: shuffle.
            for i in (1..out.len()).rev() {
                out.swap(i, rng.below(i as u64 + 1) as usize);
            }
            Piece::Object(out)
        }
        "array" => {
            let items = map.get("items").cloned().unwrap_or(Value::Bool(true));
            let min = count("minItems").unwrap_or(0);
            let max = count("maxItems").unwrap_or(u64::MAX);
            let extra = if depth < 4 { 3 } else { 0 };
            let n = min + rng.below(max.min(min + extra) - min + 1);
            Piece::Array(
                (0..n)
                    .map(|_| generate(root, &items, rng, depth + 1))
                    .collect(),
            )
        }
        "string" => Piece::Scalar(Value::String(gen_string(
            rng,
            count("minLength").unwrap_or(0),
            count("maxLength").unwrap_or(12),
        ))),
        "number" => Piece::Scalar(gen_number(rng, false)),
        "integer" => Piece::Scalar(gen_number(rng, true)),
        "boolean" => Piece::Scalar(json!(rng.chance(2))),
        _ => Piece::Scalar(Value::Null),
    }
}

fn whitespace(rng: &mut Rng, out: &mut String) {
    if rng.chance(2) {
        for _ in 0..rng.below(u64::from(MAX_WHITESPACE) + 1) {
            out.push([' ', '\n', '\t', '\r'][rng.below(4) as usize]);
        }
    }
}

/// A JSON string, sometimes with every non-ASCII character as `\u` escapes (pairs for
/// astral ones) and `/` escaped.
fn write_string(s: &str, rng: &mut Rng, out: &mut String) {
    if rng.chance(2) {
        out.push_str(&serde_json::to_string(s).unwrap());
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write(piece: &Piece, rng: &mut Rng, out: &mut String) {
    match piece {
        Piece::Literal(v) => out.push_str(&serde_json::to_string(v).unwrap()),
        Piece::Scalar(Value::String(s)) => write_string(s, rng, out),
        Piece::Scalar(v) => out.push_str(&serde_json::to_string(v).unwrap()),
        Piece::Object(kv) => {
            out.push('{');
            for (i, (k, v)) in kv.iter().enumerate() {
                whitespace(rng, out);
                if i > 0 {
                    out.push(',');
                    whitespace(rng, out);
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                whitespace(rng, out);
                out.push(':');
                whitespace(rng, out);
                write(v, rng, out);
            }
            whitespace(rng, out);
            out.push('}');
        }
        Piece::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                whitespace(rng, out);
                if i > 0 {
                    out.push(',');
                    whitespace(rng, out);
                }
                write(v, rng, out);
            }
            whitespace(rng, out);
            out.push(']');
        }
    }
}

/// Bytes a random walk tries, in the order a walk that wants to finish prefers them.
const FINISHING: &[u8] = b"\"}],:0ntrufalse1-.e9[{ \\u00DdCc8b/\n";

/// A document the matcher let through byte by byte (`None`: the walk did not finish).
/// Panics on a dead end: a state from which no byte continues and that is not complete.
fn random_walk(
    g: &Arc<JsonGrammar>,
    rng: &mut Rng,
    what: &dyn std::fmt::Display,
) -> Option<Vec<u8>> {
    let mut m = Matcher::new(g.clone());
    let mut doc = Vec::new();
    let candidates: Vec<u8> = (0u8..=255).collect();
    for step in 0..3000 {
        if m.is_complete() && (!m.can_continue() || rng.chance(4)) {
            return Some(doc);
        }
        let finishing = step > 60;
        let order: Vec<u8> = if finishing {
            FINISHING
                .iter()
                .copied()
                .chain(b'a'..=b'z')
                .chain(0..=255)
                .collect()
        } else {
            let mut c = candidates.clone();
            for i in (1..c.len()).rev() {
                c.swap(i, rng.below(i as u64 + 1) as usize);
            }
            // Structural bytes often, so documents have shape.
            if rng.chance(2) {
                let mut s: Vec<u8> = b"{}[],:\"0tfn-".to_vec();
                for i in (1..s.len()).rev() {
                    s.swap(i, rng.below(i as u64 + 1) as usize);
                }
                s.extend(c);
                s
            } else {
                c
            }
        };
        let Some(&b) = order.iter().find(|&&b| m.accepts(&[b])) else {
            panic!(
                "dead end after {:?} under {what}",
                String::from_utf8_lossy(&doc)
            );
        };
        assert!(m.advance(&[b]));
        doc.push(b);
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_are_accepted_in_any_chunks(seed in 1u64.., which in 0usize..9, cuts in proptest::collection::vec(0usize..400, 0..12)) {
        let schema = &schemas()[which];
        let g = compile(schema);
        let mut rng = Rng(seed);
        let piece = generate(schema, schema, &mut rng, 0);
        let value = piece.value();
        prop_assert!(validate(schema, &value), "generator broke the schema: {}", value);
        let mut text = String::new();
        whitespace(&mut rng, &mut text);
        write(&piece, &mut rng, &mut text);
        // Floats may come back a ulp off (serde_json parses fast, not round-trip exact).
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(validate(schema, &parsed), "{} does not validate", text);
        let bytes = text.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort();
        let mut m = Matcher::new(g);
        for w in points.windows(2) {
            prop_assert!(m.advance(&bytes[w[0]..w[1]]), "{} rejected at {}: {:?}", text, w[0], &text.as_bytes()[w[0]..w[1]]);
        }
        prop_assert!(m.is_complete(), "{} not complete", text);
    }

    #[test]
    fn random_walks_produce_valid_documents(seed in 1u64.., which in 0usize..10) {
        let all = schemas();
        let (g, schema) = match all.get(which) {
            Some(s) => (compile(s), s.clone()),
            None => (Arc::new(JsonGrammar::compile(&GuidedDecoding::JsonObject).unwrap()), json!({"type": "object"})),
        };
        let mut rng = Rng(seed);
        if let Some(doc) = random_walk(&g, &mut rng, &schema) {
            let text = String::from_utf8(doc).expect("the matcher only lets valid UTF-8 through");
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            prop_assert!(validate(&schema, &value), "{} does not validate against {}", text, schema);
        }
    }

    #[test]
    fn masks_equal_brute_force_along_walks(seed in 1u64.., which in 0usize..9, stop in 0usize..40) {
        let schema = &schemas()[which];
        let g = compile(schema);
        let mut rng = Rng(seed);
        let mut text = String::new();
        write(&generate(schema, schema, &mut rng, 0), &mut rng, &mut text);
        let bytes = text.as_bytes();
        let mut m = Matcher::new(g);
        prop_assert!(m.advance(&bytes[..stop.min(bytes.len())]));
        let vocab = vocab();
        let mut mask = TokenMask::default();
        m.fill_mask(&vocab, &mut mask, &mut MaskScratch::default());
        for id in 0..vocab.len() as u32 {
            let brute = vocab.token_bytes(id).is_some_and(|b| m.accepts(b));
            prop_assert_eq!(mask.allows(id), brute, "token {} after {:?}", id, &text[..stop.min(bytes.len())]);
        }
    }

    #[test]
    fn arbitrary_schemas_never_panic(schema in arb_schema()) {
        if let Ok(g) = JsonGrammar::from_schema(&schema) {
            let g = Arc::new(g);
            let mut rng = Rng(7);
            if let Some(doc) = random_walk(&g, &mut rng, &schema) {
                let value: Value = serde_json::from_slice(&doc).unwrap();
                prop_assert!(validate(&schema, &value), "{:?} vs {}", String::from_utf8_lossy(&doc), schema);
            }
        }
    }
}

fn vocab() -> TokenVocab {
    let mut tokens: Vec<Option<Vec<u8>>> = (0u8..=255).map(|b| Some(vec![b])).collect();
    for t in [
        "{\"",
        "\":",
        "\",",
        "\"}",
        " \"",
        "name",
        "age",
        "tags",
        "\":\"",
        ", \"",
        "true",
        "null",
        "12",
        "-3",
        ".5e",
        "1}",
        "0]",
        "[\"",
        "\"]",
        "\\u00",
        "\\ud83d",
        "\\ude00",
        "\\n",
        "  ",
        "\n  ",
        "héllo",
        "日本",
        "ab",
        "a\"b",
        "\"a\":1,",
        "}}",
        "]}",
        "},{\"",
        "red",
        "\"red\"",
        "\"fast\"",
        "mode",
        "\"v\":",
        "kids",
        "x0",
        "😀",
        "abcdef",
        "ab cd",
        "hello world",
    ] {
        tokens.push(Some(t.as_bytes().to_vec()));
    }
    TokenVocab::new(tokens)
}

fn arb_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({})),
        Just(json!(true)),
        Just(json!(false)),
        Just(json!({"type": "string"})),
        Just(json!({"type": "integer"})),
        Just(json!({"type": ["number", "null"]})),
        Just(json!({"type": "string", "maxLength": 2})),
        Just(json!({"enum": ["a", 1, null, [1]]})),
        Just(json!({"const": {"k": "v"}})),
        Just(json!({"$ref": "#"})),
        Just(json!({"type": "boolean"})),
        Just(json!({"pattern": "x"})),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (proptest::collection::vec(("[a-c]", inner.clone()), 0..4), any::<bool>(), proptest::option::of(inner.clone()), any::<u8>())
                .prop_map(|(props, closed, additional, req)| {
                    let names: Vec<String> = props.iter().map(|(k, _)| k.clone()).collect();
                    let required: Vec<&String> = names.iter().enumerate().filter(|(i, _)| req & (1 << i) != 0).map(|(_, n)| n).collect();
                    let mut m = json!({"type": "object", "properties": props.into_iter().collect::<Map<_, _>>(), "required": required});
                    if closed {
                        m["additionalProperties"] = json!(false);
                    } else if let Some(a) = additional {
                        m["additionalProperties"] = a;
                    }
                    m
                }),
            (inner.clone(), 0u64..3, 0u64..4).prop_map(|(items, min, extra)| json!({"type": "array", "items": items, "minItems": min, "maxItems": min + extra})),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(|alts| json!({"anyOf": alts})),
            inner.prop_map(|s| json!({"$defs": {"d": s}, "$ref": "#/$defs/d"})),
        ]
    })
}
