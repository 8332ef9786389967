//! Shared helpers for the tests against real tokenizers in `models/` (fetched by
//! `scripts/fetch-test-models.sh`; a missing file fails the test with that instruction).

#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use switchyard_postprocess::IncrementalDetokenizer;
use tokenizers::Tokenizer;

/// Loads `models/<name>/tokenizer.json` once per test binary.
pub fn load(name: &str) -> Arc<Tokenizer> {
    static LOADED: Mutex<Vec<(String, Arc<Tokenizer>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap();
    if let Some((_, tok)) = loaded.iter().find(|(n, _)| n == name) {
        return tok.clone();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
        .join("tokenizer.json");
    assert!(
        path.exists(),
        "{name} tokenizer not found at {}: run scripts/fetch-test-models.sh from the repository \
         root to download it",
        path.display()
    );
    let tok = Arc::new(
        Tokenizer::from_file(&path)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display())),
    );
    loaded.push((name.to_string(), tok.clone()));
    tok
}

pub fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false).unwrap().get_ids().to_vec()
}

/// Streams `ids` one token at a time and checks the incremental guarantees on the way: the
/// text so far is always a prefix of the full decode (nothing ever needs retracting) and no
/// delta carries a U+FFFD the full decode lacks. Returns the deltas, the final flush last.
pub fn stream_with(
    mut detok: IncrementalDetokenizer,
    tok: &Tokenizer,
    ids: &[u32],
    skip: bool,
) -> Vec<String> {
    let full = tok.decode(ids, skip).unwrap();
    let mut out = String::new();
    let mut deltas = Vec::new();
    for &id in ids {
        let delta = detok.push(id).unwrap().unwrap_or("").to_string();
        assert!(
            full.contains('\u{FFFD}') || !delta.contains('\u{FFFD}'),
            "delta {delta:?} has U+FFFD, full decode {full:?} has none"
        );
        out.push_str(&delta);
        assert!(
            full.starts_with(&out),
            "{out:?} is not a prefix of {full:?}"
        );
        deltas.push(delta);
    }
    let flushed = detok.finish().unwrap().unwrap_or("").to_string();
    out.push_str(&flushed);
    assert_eq!(out, full);
    deltas.push(flushed);
    deltas
}

/// [`stream_with`] for both strategies (`new`, which picks the byte-level fast path where it
/// applies, and `new_windowed`); returns the deltas of `new`. The two may cut differently: for a
/// byte-level token like `Ġê²` (a space and half a character) the fast path releases the space
/// at once, the window waits for the whole token's text to be complete.
pub fn stream(tok: &Arc<Tokenizer>, ids: &[u32], prompt_tail: &[u32], skip: bool) -> Vec<String> {
    let windowed = IncrementalDetokenizer::new_windowed(tok.clone(), prompt_tail, skip).unwrap();
    stream_with(windowed, tok, ids, skip);
    let detok = IncrementalDetokenizer::new(tok.clone(), prompt_tail, skip).unwrap();
    stream_with(detok, tok, ids, skip)
}

/// One piece of a test string; the mix covers what tokenizers find hard.
pub fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,!?'\"(){}<>_-]{1,12}",
        "[\u{4e00}-\u{9fff}]{1,6}",
        "[\u{3040}-\u{30ff}\u{ac00}-\u{d7a3}]{1,4}",
        "[\u{20000}-\u{2a6df}]{1,3}",
        prop::sample::select(vec!["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🧑🏿‍🚀", "🫠", "⚽",])
            .prop_map(str::to_string),
        "[\u{1F300}-\u{1FAFF}]{1,3}",
        "[a-zé][\u{0300}-\u{036f}]{1,3}",
        "[\u{0900}-\u{097f}\u{0e00}-\u{0e7f}\u{0600}-\u{06ff}]{1,5}",
        "[ \t\n\r]{1,8}",
        any::<char>().prop_map(String::from),
    ]
}

pub fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..12).prop_map(|v| v.concat())
}
