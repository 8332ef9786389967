//! JSON Schema (the subset in the crate docs) → a graph of grammar nodes.

use std::collections::HashMap;

use serde_json::{Map, Value};
use switchyard_protocol::GuidedDecoding;

use crate::validate;

/// Index of a node in [`JsonGrammar`].
pub(crate) type NodeId = u32;

/// The most grammar nodes one schema may compile to.
pub const MAX_SCHEMA_NODES: usize = 10_000;
/// The deepest a schema's subschemas (and `$ref` chains) may nest.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// The most `properties` one object schema may declare (seen properties are a 64-bit set).
pub const MAX_PROPERTIES: usize = 64;

/// Why a schema cannot be used for constrained decoding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the JSON schema is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the JSON schema keyword `{keyword}` at {path} is not supported by structured output{note}"
    )]
    Unsupported {
        keyword: String,
        path: String,
        /// Says more, with a leading separator (or empty).
        note: String,
    },
    #[error("the JSON schema is invalid at {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("the JSON schema is too large: {0}")]
    TooLarge(String),
}

impl SchemaError {
    /// The JSON pointer (`#/properties/x`) the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            SchemaError::Unsupported { path, .. } | SchemaError::Invalid { path, .. } => Some(path),
            SchemaError::NotJson(_) | SchemaError::TooLarge(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// Any JSON value.
    Any,
    /// No value at all (`false`, an empty `enum`).
    Never,
    Object(ObjectNode),
    Array {
        items: NodeId,
        min: u32,
        max: u32,
    },
    /// `min`/`max` in code points (`u32::MAX`: no maximum).
    String {
        min: u32,
        max: u32,
    },
    Number {
        integer: bool,
    },
    /// Exactly these bytes (`true`, an `enum` member's compact JSON, ...): index into literals.
    Literal(u32),
    /// Any of these (an `anyOf`, a type list, an `enum`).
    Union(Vec<NodeId>),
    /// A `$ref` placeholder; resolved away after compiling.
    Alias(NodeId),
}

#[derive(Clone, Debug)]
pub(crate) struct ObjectNode {
    pub(crate) props: Vec<Prop>,
    /// Bit i: `props[i]` is required.
    pub(crate) required: u64,
    /// Schema of keys not in `props`; `None`: no other keys.
    pub(crate) additional: Option<NodeId>,
}

#[derive(Clone, Debug)]
pub(crate) struct Prop {
    /// The key with its quotes, as compact JSON (a literal index).
    pub(crate) key: u32,
    /// [`key_hash`] of the key's bytes between the quotes.
    pub(crate) hash: u64,
    pub(crate) value: NodeId,
    /// False when no value can satisfy `value`: the key may not be written.
    pub(crate) enabled: bool,
}

/// FNV-1a over a key's raw bytes (between the quotes), to tell a free key from a declared one.
pub(crate) const KEY_HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

pub(crate) fn key_hash_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

pub(crate) fn key_hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(KEY_HASH_START, |h, &b| key_hash_step(h, b))
}

// Nodes every grammar has, at fixed ids.
pub(crate) const ANY: NodeId = 0;
pub(crate) const ANY_OBJECT: NodeId = 1;
pub(crate) const ANY_ARRAY: NodeId = 2;
pub(crate) const ANY_STRING: NodeId = 3;
pub(crate) const NUMBER: NodeId = 4;
pub(crate) const INTEGER: NodeId = 5;
pub(crate) const TRUE: NodeId = 6;
pub(crate) const FALSE: NodeId = 7;
pub(crate) const NULL: NodeId = 8;
pub(crate) const NEVER: NodeId = 9;
pub(crate) const BOOLEAN: NodeId = 10;

/// A compiled constraint: which byte strings are JSON documents of the schema. Immutable;
/// share it behind an `Arc` between the matchers of one request.
#[derive(Clone, Debug)]
pub struct JsonGrammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) literals: Vec<Box<[u8]>>,
    pub(crate) root: NodeId,
    /// Stack frames a value of each node needs to be finished (`u16::MAX`: none suffices):
    /// the matcher starts only what it can close within its nesting limit.
    pub(crate) min_depth: Vec<u16>,
}

impl JsonGrammar {
    /// Compiles a guided-decoding request: `JsonObject` is any JSON object, `JsonSchema` the
    /// supported subset of JSON Schema (crate docs); anything else is a [`SchemaError`].
    pub fn compile(guided: &GuidedDecoding) -> Result<JsonGrammar, SchemaError> {
        match guided {
            GuidedDecoding::JsonObject => Ok(Self::any_object()),
            GuidedDecoding::JsonSchema(text) => {
                let schema: Value =
                    serde_json::from_str(text).map_err(|e| SchemaError::NotJson(e.to_string()))?;
                Self::from_schema(&schema)
            }
        }
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> JsonGrammar {
        let mut g = Self::base();
        g.root = ANY_OBJECT;
        g
    }

    /// Compiles a parsed JSON Schema.
    pub fn from_schema(schema: &Value) -> Result<JsonGrammar, SchemaError> {
        let base = Self::base();
        let mut compiler = Compiler {
            root: schema,
            nodes: base.nodes,
            literals: base.literals,
            literal_ids: HashMap::new(),
            refs: HashMap::new(),
            compiled: 0,
            validate_budget: validate::VALIDATE_BUDGET,
        };
        let mut path = String::from("#");
        let root = compiler.compile(schema, &mut path, 0)?;
        let mut grammar = JsonGrammar {
            nodes: compiler.nodes,
            literals: compiler.literals,
            root,
            min_depth: Vec::new(),
        };
        grammar.finish()?;
        Ok(grammar)
    }

    fn base() -> JsonGrammar {
        let literals: Vec<Box<[u8]>> = vec![
            b"true".to_vec().into(),
            b"false".to_vec().into(),
            b"null".to_vec().into(),
        ];
        let nodes = vec![
            Node::Any,
            Node::Object(ObjectNode {
                props: Vec::new(),
                required: 0,
                additional: Some(ANY),
            }),
            Node::Array {
                items: ANY,
                min: 0,
                max: u32::MAX,
            },
            Node::String {
                min: 0,
                max: u32::MAX,
            },
            Node::Number { integer: false },
            Node::Number { integer: true },
            Node::Literal(0),
            Node::Literal(1),
            Node::Literal(2),
            Node::Never,
            Node::Union(vec![TRUE, FALSE]),
        ];
        let mut g = JsonGrammar {
            nodes,
            literals,
            root: ANY,
            min_depth: Vec::new(),
        };
        g.compute_min_depth();
        g
    }

    /// Resolves `$ref` aliases, refuses cycles that consume no input, and disables what can
    /// produce no value (so a matcher never walks into a dead end).
    fn finish(&mut self) -> Result<(), SchemaError> {
        // 1. Aliases → their targets.
        let n = self.nodes.len();
        let mut canon: Vec<NodeId> = (0..n as NodeId).collect();
        for (start, slot) in canon.iter_mut().enumerate() {
            let mut id = start as NodeId;
            let mut steps = 0;
            while let Node::Alias(target) = self.nodes[id as usize] {
                id = target;
                steps += 1;
                if steps > n {
                    return Err(SchemaError::Invalid {
                        path: "#".into(),
                        message:
                            "`$ref`s refer to each other in a cycle that never reaches a schema"
                                .into(),
                    });
                }
            }
            *slot = id;
        }
        let c = |id: NodeId| canon[id as usize];
        for node in &mut self.nodes {
            match node {
                Node::Object(o) => {
                    for p in &mut o.props {
                        p.value = c(p.value);
                    }
                    o.additional = o.additional.map(c);
                }
                Node::Array { items, .. } => *items = c(*items),
                Node::Union(alts) => {
                    for a in alts.iter_mut() {
                        *a = c(*a);
                    }
                }
                _ => {}
            }
        }
        self.root = c(self.root);

        // 2. Unions that reach themselves without consuming a byte would fork forever.
        let mut mark = vec![0u8; n]; // 0 new, 1 on the path, 2 done
        for start in 0..n {
            if matches!(self.nodes[start], Node::Union(_)) {
                self.union_cycle(start as NodeId, &mut mark)?;
            }
        }

        // 3. Which nodes can produce a finite value (least fixpoint).
        let mut productive = vec![false; n];
        loop {
            let mut changed = false;
            for i in 0..n {
                if productive[i] {
                    continue;
                }
                let p = |id: NodeId| productive[id as usize];
                let now = match &self.nodes[i] {
                    Node::Any | Node::Number { .. } | Node::Literal(_) => true,
                    Node::String { min, max } => min <= max,
                    Node::Never | Node::Alias(_) => false,
                    Node::Object(o) => o
                        .props
                        .iter()
                        .enumerate()
                        .all(|(j, prop)| o.required & (1 << j) == 0 || p(prop.value)),
                    Node::Array { items, min, max } => min <= max && (*min == 0 || p(*items)),
                    Node::Union(alts) => alts.iter().any(|&a| p(a)),
                };
                if now {
                    productive[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !productive[self.root as usize] {
            return Err(SchemaError::Invalid {
                path: "#".into(),
                message: "no JSON value satisfies this schema".into(),
            });
        }
        for node in &mut self.nodes {
            match node {
                Node::Object(o) => {
                    for prop in &mut o.props {
                        prop.enabled = productive[prop.value as usize];
                    }
                    if o.additional.is_some_and(|a| !productive[a as usize]) {
                        o.additional = None;
                    }
                }
                Node::Array { items, max, .. } if !productive[*items as usize] => *max = 0,
                Node::Union(alts) => alts.retain(|&a| productive[a as usize]),
                _ => {}
            }
        }
        self.compute_min_depth();
        if !self.fits(self.root, 0) {
            return Err(SchemaError::Invalid {
                path: "#".into(),
                message: format!(
                    "every value of this schema nests deeper than {} levels",
                    crate::matcher::MAX_NESTING
                ),
            });
        }
        Ok(())
    }

    /// [`JsonGrammar::min_depth`], a least fixpoint like productivity.
    fn compute_min_depth(&mut self) {
        const NONE: u16 = u16::MAX;
        let n = self.nodes.len();
        let mut depth = vec![NONE; n];
        loop {
            let mut changed = false;
            for i in 0..n {
                let d = |id: NodeId| depth[id as usize];
                let now = match &self.nodes[i] {
                    Node::Any | Node::String { .. } | Node::Number { .. } | Node::Literal(_) => 1,
                    Node::Never | Node::Alias(_) => NONE,
                    Node::Object(o) => {
                        // A key is written one frame up, then its value in the same place.
                        let mut need = 1u16;
                        for (j, p) in o.props.iter().enumerate() {
                            if o.required & (1 << j) != 0 {
                                need = need.max(2).max(d(p.value).saturating_add(1));
                            }
                        }
                        need
                    }
                    Node::Array { items, min, .. } => {
                        if *min == 0 {
                            1
                        } else {
                            d(*items).saturating_add(1)
                        }
                    }
                    Node::Union(alts) => alts.iter().map(|&a| d(a)).min().unwrap_or(NONE),
                };
                if now < depth[i] {
                    depth[i] = now;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.min_depth = depth;
    }

    /// Whether a value of `node` started at stack index `slot` can be finished.
    pub(crate) fn fits(&self, node: NodeId, slot: usize) -> bool {
        slot + usize::from(self.min_depth[node as usize]) <= crate::matcher::MAX_NESTING
    }

    fn union_cycle(&self, id: NodeId, mark: &mut [u8]) -> Result<(), SchemaError> {
        match mark[id as usize] {
            1 => {
                return Err(SchemaError::Invalid {
                    path: "#".into(),
                    message: "`anyOf`/`$ref` refer back to themselves before any value starts (left recursion)".into(),
                });
            }
            2 => return Ok(()),
            _ => {}
        }
        if let Node::Union(alts) = &self.nodes[id as usize] {
            mark[id as usize] = 1;
            for &a in alts {
                self.union_cycle(a, mark)?;
            }
        }
        mark[id as usize] = 2;
        Ok(())
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub(crate) fn literal(&self, id: u32) -> &[u8] {
        &self.literals[id as usize]
    }

    /// Grammar nodes (a measure of the schema's size).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// Standard assertion / applicator keywords this matcher does not implement: an error, so a
/// request is never answered with output that ignores part of its schema.
const UNSUPPORTED: &[&str] = &[
    "pattern",
    "format",
    "not",
    "if",
    "then",
    "else",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$anchor",
];

/// The keywords this compiler gives a meaning to (and those it refuses are checked first).
const CONSTRAINING: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
];

const OBJECT_KEYWORDS: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KEYWORDS: &[&str] = &["items", "minItems", "maxItems"];
const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength"];

fn unsupported(keyword: &str, path: &str, note: &str) -> SchemaError {
    SchemaError::Unsupported {
        keyword: keyword.to_owned(),
        path: path.to_owned(),
        note: note.to_owned(),
    }
}

/// `~` and `/` escaped for a JSON pointer segment.
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    literals: Vec<Box<[u8]>>,
    literal_ids: HashMap<Vec<u8>, NodeId>,
    refs: HashMap<String, NodeId>,
    compiled: usize,
    /// Steps left for checking `enum` members against their sibling keywords.
    validate_budget: u32,
}

/// Appends `segment` to `path` for the duration of `f`.
fn with_segment<T>(path: &mut String, segment: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    path.push('/');
    path.push_str(segment);
    let out = f(path);
    path.truncate(len);
    out
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> Result<NodeId, SchemaError> {
        if self.nodes.len() >= MAX_SCHEMA_NODES {
            return Err(SchemaError::TooLarge(format!(
                "it compiles to more than {MAX_SCHEMA_NODES} nodes"
            )));
        }
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn literal(&mut self, bytes: Vec<u8>) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.literal_ids.get(&bytes) {
            return Ok(id);
        }
        let lit = self.literals.len() as u32;
        self.literals.push(bytes.clone().into());
        let id = self.push(Node::Literal(lit))?;
        self.literal_ids.insert(bytes, id);
        Ok(id)
    }

    fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
        SchemaError::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn compile(
        &mut self,
        schema: &Value,
        path: &mut String,
        depth: usize,
    ) -> Result<NodeId, SchemaError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(SchemaError::TooLarge(format!(
                "subschemas nest deeper than {MAX_SCHEMA_DEPTH} levels (at {path})"
            )));
        }
        self.compiled += 1;
        if self.compiled > MAX_SCHEMA_NODES {
            return Err(SchemaError::TooLarge(format!(
                "it has more than {MAX_SCHEMA_NODES} subschemas"
            )));
        }
        let map = match schema {
            Value::Bool(true) => return Ok(ANY),
            Value::Bool(false) => return Ok(NEVER),
            Value::Object(map) => map,
            _ => {
                return Err(Self::invalid(
                    path,
                    "a schema must be an object or a boolean",
                ));
            }
        };
        for key in map.keys() {
            if UNSUPPORTED.contains(&key.as_str()) {
                return Err(unsupported(key, path, ""));
            }
        }
        // Keywords that would constrain the value beside `$ref`/`anyOf`/`allOf` (the others,
        // annotations and non-standard ones such as OpenAPI's `discriminator`, change nothing).
        let others = |allowed: &[&str]| {
            map.keys()
                .find(|k| CONSTRAINING.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
                .cloned()
        };

        if let Some(reference) = map.get("$ref") {
            if let Some(other) = others(&["$ref"]) {
                return Err(unsupported(&other, path, " beside `$ref`"));
            }
            let reference = reference
                .as_str()
                .ok_or_else(|| Self::invalid(path, "`$ref` must be a string"))?;
            return self.reference(reference, path, depth);
        }
        if let Some(all) = map.get("allOf") {
            match (all.as_array().map(Vec::as_slice), others(&["allOf"])) {
                (Some([single]), None) => {
                    return with_segment(path, "allOf/0", |p| self.compile(single, p, depth + 1));
                }
                (Some(_), None) => {
                    return Err(unsupported("allOf", path, " with more than one schema"));
                }
                (None, _) => return Err(Self::invalid(path, "`allOf` must be an array")),
                (Some(_), Some(other)) => {
                    return Err(unsupported(&other, path, " beside `allOf`"));
                }
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(list) = map.get(keyword) else {
                continue;
            };
            if let Some(other) = others(&[keyword]) {
                return Err(unsupported(&other, path, &format!(" beside `{keyword}`")));
            }
            let list = list.as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
                Self::invalid(path, format!("`{keyword}` must be a non-empty array"))
            })?;
            let mut alts = Vec::with_capacity(list.len());
            for (i, sub) in list.iter().enumerate() {
                alts.push(with_segment(path, &format!("{keyword}/{i}"), |p| {
                    self.compile(sub, p, depth + 1)
                })?);
            }
            return self.push(Node::Union(alts));
        }
        if map.contains_key("enum") || map.contains_key("const") {
            return self.enumeration(map, path);
        }

        let types: Vec<&str> = match map.get("type") {
            None => {
                let mut inferred = Vec::new();
                let has = |kws: &[&str]| kws.iter().any(|k| map.contains_key(*k));
                // Narrower than the spec (which lets other types through untouched): every
                // value produced still validates, and it is what a caller of such a schema means.
                if has(OBJECT_KEYWORDS) {
                    inferred.push("object");
                }
                if has(ARRAY_KEYWORDS) {
                    inferred.push("array");
                }
                if has(STRING_KEYWORDS) {
                    inferred.push("string");
                }
                if inferred.is_empty() {
                    return Ok(ANY);
                }
                inferred
            }
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut types = Vec::with_capacity(list.len());
                for t in list {
                    let t = t
                        .as_str()
                        .ok_or_else(|| Self::invalid(path, "`type` entries must be strings"))?;
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                types
            }
            Some(_) => {
                return Err(Self::invalid(
                    path,
                    "`type` must be a string or a non-empty array of strings",
                ));
            }
        };
        let mut alts = Vec::with_capacity(types.len());
        for t in types {
            alts.push(match t {
                "object" => self.object(map, path, depth)?,
                "array" => self.array(map, path, depth)?,
                "string" => {
                    let min = Self::count(map, "minLength", path)?.unwrap_or(0);
                    let max = Self::count(map, "maxLength", path)?.unwrap_or(u32::MAX);
                    if min == 0 && max == u32::MAX {
                        ANY_STRING
                    } else {
                        self.push(Node::String { min, max })?
                    }
                }
                "number" => NUMBER,
                "integer" => INTEGER,
                "boolean" => BOOLEAN,
                "null" => NULL,
                other => {
                    return Err(Self::invalid(path, format!("unknown type `{other}`")));
                }
            });
        }
        if alts.len() == 1 {
            Ok(alts[0])
        } else {
            self.push(Node::Union(alts))
        }
    }

    /// A non-negative integer keyword (`minItems`, `maxLength`, ...).
    fn count(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, SchemaError> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                            .map(|f| f as u64)
                    })
                    .ok_or_else(|| {
                        Self::invalid(path, format!("`{key}` must be a non-negative integer"))
                    })?;
                Ok(Some(n.min(u64::from(u32::MAX - 1)) as u32))
            }
        }
    }

    fn reference(
        &mut self,
        reference: &str,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, SchemaError> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(unsupported(
                "$ref",
                path,
                &format!(": `{reference}` is not local (only `#/...` references are supported)"),
            ));
        };
        if let Some(&id) = self.refs.get(pointer) {
            return Ok(id);
        }
        let root = self.root;
        let target = root
            .pointer(pointer)
            .ok_or_else(|| Self::invalid(path, format!("`$ref` `{reference}` points nowhere")))?;
        // The placeholder is what recursive references inside the target resolve to.
        let placeholder = self.push(Node::Never)?;
        self.refs.insert(pointer.to_owned(), placeholder);
        let mut target_path = format!("#{pointer}");
        let id = self.compile(target, &mut target_path, depth + 1)?;
        self.nodes[placeholder as usize] = Node::Alias(id);
        Ok(placeholder)
    }

    fn enumeration(&mut self, map: &Map<String, Value>, path: &str) -> Result<NodeId, SchemaError> {
        let mut values: Vec<&Value> = match map.get("enum") {
            None => Vec::new(),
            Some(Value::Array(list)) => list.iter().collect(),
            Some(_) => return Err(Self::invalid(path, "`enum` must be an array")),
        };
        if let Some(c) = map.get("const") {
            if map.contains_key("enum") {
                values.retain(|v| *v == c);
            } else {
                values.push(c);
            }
        }
        // The other keywords still apply: keep the members they allow.
        let mut rest = map.clone();
        rest.remove("enum");
        rest.remove("const");
        let rest = Value::Object(rest);
        let mut alts = Vec::with_capacity(values.len());
        for v in values {
            match validate::validate_in(self.root, &rest, v, &mut self.validate_budget) {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    return Err(SchemaError::TooLarge(format!(
                        "checking the `enum` members at {path} against their sibling keywords takes too long"
                    )));
                }
            }
            let bytes = serde_json::to_vec(v).expect("a JSON value serializes");
            let id = self.literal(bytes)?;
            if !alts.contains(&id) {
                alts.push(id);
            }
        }
        match alts.len() {
            0 => Ok(NEVER),
            1 => Ok(alts[0]),
            _ => self.push(Node::Union(alts)),
        }
    }

    fn object(
        &mut self,
        map: &Map<String, Value>,
        path: &mut String,
        depth: usize,
    ) -> Result<NodeId, SchemaError> {
        let additional = match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Some(ANY),
            Some(Value::Bool(false)) => None,
            Some(schema) => Some(with_segment(path, "additionalProperties", |p| {
                self.compile(schema, p, depth + 1)
            })?),
        };
        let mut props = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        match map.get("properties") {
            None => {}
            Some(Value::Object(declared)) => {
                for (name, schema) in declared {
                    let segment = format!("properties/{}", pointer_segment(name));
                    let value =
                        with_segment(path, &segment, |p| self.compile(schema, p, depth + 1))?;
                    names.push(name);
                    props.push(self.prop(name, value)?);
                }
            }
            Some(_) => return Err(Self::invalid(path, "`properties` must be an object")),
        }
        let mut required = 0u64;
        match map.get("required") {
            None => {}
            Some(Value::Array(list)) => {
                for name in list {
                    let name = name
                        .as_str()
                        .ok_or_else(|| Self::invalid(path, "`required` entries must be strings"))?;
                    let index = match names.iter().position(|n| *n == name) {
                        Some(i) => i,
                        None => {
                            let Some(value) = additional else {
                                return Err(Self::invalid(
                                    path,
                                    format!(
                                        "required property `{name}` is not in `properties` and `additionalProperties` is false"
                                    ),
                                ));
                            };
                            names.push(name);
                            props.push(self.prop(name, value)?);
                            props.len() - 1
                        }
                    };
                    if index >= MAX_PROPERTIES {
                        break;
                    }
                    required |= 1 << index;
                }
            }
            Some(_) => return Err(Self::invalid(path, "`required` must be an array")),
        }
        if props.len() > MAX_PROPERTIES {
            return Err(SchemaError::TooLarge(format!(
                "the object at {path} declares {} properties (at most {MAX_PROPERTIES})",
                props.len()
            )));
        }
        if props.is_empty() && additional == Some(ANY) {
            return Ok(ANY_OBJECT);
        }
        self.push(Node::Object(ObjectNode {
            props,
            required,
            additional,
        }))
    }

    fn prop(&mut self, name: &str, value: NodeId) -> Result<Prop, SchemaError> {
        let quoted = serde_json::to_vec(name).expect("a string serializes");
        let hash = key_hash(&quoted[1..quoted.len() - 1]);
        let lit = self.literals.len() as u32;
        self.literals.push(quoted.into());
        Ok(Prop {
            key: lit,
            hash,
            value,
            enabled: true,
        })
    }

    fn array(
        &mut self,
        map: &Map<String, Value>,
        path: &mut String,
        depth: usize,
    ) -> Result<NodeId, SchemaError> {
        let items = match map.get("items") {
            None => ANY,
            Some(Value::Array(_)) => {
                return Err(unsupported(
                    "items",
                    path,
                    " as an array (tuple validation)",
                ));
            }
            Some(schema) => with_segment(path, "items", |p| self.compile(schema, p, depth + 1))?,
        };
        let min = Self::count(map, "minItems", path)?.unwrap_or(0);
        let max = Self::count(map, "maxItems", path)?.unwrap_or(u32::MAX);
        if items == ANY && min == 0 && max == u32::MAX {
            return Ok(ANY_ARRAY);
        }
        self.push(Node::Array { items, min, max })
    }
}
