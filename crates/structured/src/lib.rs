//! JSON constrained decoding: a guided-decoding request ([`GuidedDecoding`]) compiled to a
//! byte-level automaton ([`JsonGrammar`], run by a [`Matcher`]), and from it the set of
//! vocabulary tokens that may come next ([`Matcher::fill_mask`] over a [`TokenVocab`]). Pure:
//! no I/O, no tensors; engines apply the mask to their logits.
//!
//! # What is accepted
//!
//! `JsonObject` is any JSON object. `JsonSchema` takes this subset of JSON Schema:
//!
//! - `type`: `object`, `array`, `string`, `number`, `integer`, `boolean`, `null`, or a list of
//!   them. Without `type`, a schema with object keywords is an object, with array keywords an
//!   array, with string keywords a string (the spec would let other types through untouched;
//!   producing only the intended type still validates), else any value. `{}` / `true` is any
//!   value, `false` none.
//! - objects: `properties`, `required`, `additionalProperties` (`false`, `true` or a schema).
//!   When `additionalProperties` is absent, other keys are allowed with any value, as the spec
//!   says; vLLM with xgrammar defaults to a strict mode that forbids them, so schemas meant
//!   for both should say `"additionalProperties": false`. Declared keys may come in any order,
//!   each at most once; the object closes only once every required key was written. At most
//!   64 declared properties per object. A key not declared is told from a declared one by its
//!   bytes as written (a declared name spelled with `\u` escapes counts as another key).
//! - arrays: `items` (a schema), `minItems`, `maxItems`.
//! - strings: `minLength`, `maxLength`, counted in code points as the spec says.
//! - `enum` and `const`: the members (those the sibling keywords allow) as compact JSON, byte
//!   for byte (`{"a":1}`, no whitespace inside).
//! - `anyOf`, and `oneOf` treated as `anyOf` (exclusivity is not enforced); `allOf` with a
//!   single schema. None of them may have a sibling keyword of this list (`type`, `enum`,
//!   `properties`, ...); annotations and non-standard keywords beside them (OpenAPI's
//!   `discriminator`, as pydantic writes for tagged unions) are ignored.
//! - `$ref` to a JSON pointer inside the document (`#`, `#/$defs/X`, `#/definitions/X`, ...),
//!   recursion included; the same rule for its siblings.
//! - ignored annotations: `title`, `description`, `default`, `examples`, `$schema`, `$id`,
//!   `$comment`, `deprecated`, `readOnly`, `writeOnly`; unknown non-standard keywords are
//!   ignored as the spec says.
//!
//! Every other standard keyword (`pattern`, `format`, `minimum`, `maximum`, `multipleOf`,
//! `not`, `if`/`then`/`else`, `allOf` with several schemas, `prefixItems`, `uniqueItems`,
//! `patternProperties`, `minProperties`, ...) is a [`SchemaError::Unsupported`] naming the
//! keyword and its JSON pointer, so the request gets a clear 400 rather than output that
//! ignores part of its schema. A schema nesting deeper than [`MAX_SCHEMA_DEPTH`] or compiling
//! to more than [`MAX_SCHEMA_NODES`] nodes is [`SchemaError::TooLarge`]; one no value can
//! satisfy (or whose `$ref`/`anyOf` loop without producing anything) is
//! [`SchemaError::Invalid`]. Parts that can produce no value (an optional property whose
//! schema is `false`, ...) are switched off, so a matcher never walks into a dead end.
//!
//! # The documents produced
//!
//! Standard JSON (RFC 8259) that serde_json parses, with bounds a model cannot run past: at
//! most [`MAX_WHITESPACE`] whitespace bytes in each gap (none after the top-level value),
//! nesting at most [`MAX_NESTING`] deep, numbers of at most [`MAX_INT_DIGITS`] integer,
//! [`MAX_FRAC_DIGITS`] fraction and [`MAX_EXP_DIGITS`] exponent digits (always finite).
//! Strings take every escape, and UTF-8 is checked byte by byte, so a token may end in the
//! middle of a character; surrogate escapes must pair.
//!
//! # Masks
//!
//! [`TokenVocab`] sorts the vocabulary's byte strings into a trie walked depth-first with the
//! matcher's state: a shared prefix is checked once, a rejected prefix skips its subtree, and
//! inside a string whole subtrees of plain ASCII are let through without a step. Build it once
//! per model: byte-level BPE tokens decode with [`byte_level_token_bytes`] (`Ġ` → space),
//! SentencePiece ones with [`sentencepiece_token_bytes`]; special tokens are `None`.
//! `cargo run --release -p switchyard-structured --example mask_speed` prints the cost.

mod matcher;
mod schema;
pub mod validate;
mod vocab;

pub use matcher::{
    MAX_EXP_DIGITS, MAX_FRAC_DIGITS, MAX_INT_DIGITS, MAX_NESTING, MAX_THREADS, MAX_WHITESPACE,
    Matcher,
};
pub use schema::{JsonGrammar, MAX_PROPERTIES, MAX_SCHEMA_DEPTH, MAX_SCHEMA_NODES, SchemaError};
pub use switchyard_protocol::GuidedDecoding;
pub use vocab::{
    MaskScratch, TokenMask, TokenVocab, byte_level_token_bytes, sentencepiece_token_bytes,
};
