//! Incremental detokenization: a sliding decode window for any tokenizer, and a table-driven
//! fast path for byte-level BPE (see [`crate::byte_level`]).
//!
//! Decoding one token at a time is wrong for two reasons: SentencePiece decoders strip the
//! leading space of the *first* token of whatever they decode (so `▁world` alone decodes to
//! `world`), and byte tokens (`<0xE4>` or byte-level BPE pieces) may end in the middle of a
//! multi-byte character. Decoding the whole sequence each time is right but O(sequence) per token.
//!
//! The window technique keeps two offsets into the token list: `prefix_offset` (start of the
//! window, tokens whose text is already emitted and serve only as context) and `read_offset`
//! (everything before it is emitted). Per token it decodes `ids[prefix_offset..]` and emits what
//! lies beyond `decode(ids[prefix_offset..read_offset])`, unless the new text ends in U+FFFD
//! (an incomplete character: wait for more bytes). Both decodes start at the same token, so the
//! decoder's start-of-text rules apply to both alike and cancel out.
//!
//! Byte-level BPE needs none of this: its decode is context free, so the fast path only has to
//! keep an incomplete character's bytes between tokens.

use std::sync::Arc;

use tokenizers::{Model, Tokenizer};

use crate::PostprocessError;
use crate::byte_level::{ByteLevelStream, ByteLevelTable};

/// How many prompt tokens serve as decode context for the first generated tokens.
const PROMPT_CONTEXT_TOKENS: usize = 6;

/// The most tokens held back waiting for a character to complete. A valid UTF-8 character spans
/// at most 4 byte-carrying tokens; beyond this the bytes are invalid (the model produced garbage)
/// and are released as U+FFFD so the window, and the work per token, stays bounded.
const MAX_HELD_TOKENS: usize = 16;

/// Emitted tokens are dropped from the front of the id buffer once this many pile up, so the
/// buffer stays small and the memmove is amortized.
const COMPACT_AFTER: usize = 64;

/// Turns a stream of token ids into text deltas whose concatenation equals the full decode.
///
/// Guarantees:
/// - every returned delta is valid UTF-8, and a multi-byte character split across tokens is
///   returned whole once its last byte arrives;
/// - with an empty `prompt_tail`, the concatenation of all deltas (including [`Self::finish`])
///   equals `tokenizer.decode(all_ids, skip_special_tokens)` for byte-level BPE (Qwen, Llama 3)
///   and SentencePiece-style tokenizers (`▁` + byte fallback + strip), for any sequence whose full
///   decode contains no invalid bytes (with the byte-level fast path: for any sequence at all);
/// - with a `prompt_tail`, it is the text the generated tokens add after the prompt, i.e.
///   `decode(tail ++ ids)` minus `decode(tail)`. For byte-level BPE that is the same thing; for
///   SentencePiece it keeps the leading space of the first generated word, as a continuation of
///   the prompt should (vLLM does the same).
///
/// Two strategies, chosen per tokenizer:
/// - byte-level BPE (decoder exactly `ByteLevel`): a per-tokenizer table of token bytes (built
///   once per tokenizer instance, see [`Self::prepare`]) and a streaming UTF-8 conversion; no
///   decode call and no allocation per token;
/// - anything else: the sliding decode window described in the module docs; at most two
///   decodes of a few tokens per token, independent of sequence length.
pub struct IncrementalDetokenizer {
    mode: Mode,
    skip_special_tokens: bool,
    /// The text returned by the last call, reused across calls.
    delta: String,
}

enum Mode {
    ByteLevel(ByteLevelStream),
    Window(Window),
}

impl IncrementalDetokenizer {
    /// A detokenizer for one generated sequence. `prompt_tail` is the end of the prompt (any
    /// length; the last few tokens are used as context, see the type docs); pass `&[]` to get
    /// exactly `decode(generated_ids)`. Fails if the prompt tail holds unknown ids.
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        prompt_tail: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Self, PostprocessError> {
        match ByteLevelTable::for_tokenizer(&tokenizer) {
            Some(table) => {
                let stream = ByteLevelStream::new(table);
                // Byte-level decoding is context free: the prompt only needs to be valid.
                for &token in prompt_tail {
                    stream.check_known(token)?;
                }
                Ok(Self::with_mode(
                    Mode::ByteLevel(stream),
                    skip_special_tokens,
                ))
            }
            None => Self::new_windowed(tokenizer, prompt_tail, skip_special_tokens),
        }
    }

    /// Like [`Self::new`] but always uses the sliding decode window, whatever the tokenizer
    /// (for comparisons and tests; [`Self::new`] picks the fastest exact strategy).
    pub fn new_windowed(
        tokenizer: Arc<Tokenizer>,
        prompt_tail: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Self, PostprocessError> {
        let window = Window::new(tokenizer, prompt_tail, skip_special_tokens)?;
        Ok(Self::with_mode(Mode::Window(window), skip_special_tokens))
    }

    /// A detokenizer with no prompt context; cannot fail.
    pub(crate) fn without_context(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> Self {
        let mode = match ByteLevelTable::for_tokenizer(&tokenizer) {
            Some(table) => Mode::ByteLevel(ByteLevelStream::new(table)),
            None => Mode::Window(Window::without_context(tokenizer)),
        };
        Self::with_mode(mode, skip_special_tokens)
    }

    fn with_mode(mode: Mode, skip_special_tokens: bool) -> Self {
        IncrementalDetokenizer {
            mode,
            skip_special_tokens,
            delta: String::new(),
        }
    }

    /// Does the per-tokenizer preparation now (for byte-level BPE: a token-bytes table, some
    /// tens of milliseconds for a 150k vocabulary) instead of in the first request. Call it when
    /// a model is loaded, off the async reactor.
    pub fn prepare(tokenizer: &Arc<Tokenizer>) {
        ByteLevelTable::for_tokenizer(tokenizer);
    }

    /// Whether this detokenizer uses the byte-level fast path (else the decode window).
    pub fn is_byte_level_fast_path(&self) -> bool {
        matches!(self.mode, Mode::ByteLevel(_))
    }

    /// Adds one generated token; returns the text it completes, if any. `None` means the token
    /// added no text yet (a skipped special token, or part of an incomplete character).
    pub fn push(&mut self, token: u32) -> Result<Option<&str>, PostprocessError> {
        self.delta.clear();
        self.step(token)?;
        Ok(self.last_delta())
    }

    /// Adds several generated tokens; returns the text they complete, if any. Same as pushing
    /// them one by one and concatenating the results (each token is its own step, so a
    /// character split across batches is held exactly as it would be token by token).
    pub fn push_tokens(&mut self, tokens: &[u32]) -> Result<Option<&str>, PostprocessError> {
        self.delta.clear();
        for &token in tokens {
            self.step(token)?;
        }
        Ok(self.last_delta())
    }

    /// Releases whatever is still held back at the end of the sequence (an incomplete character
    /// decodes to U+FFFD, as in a full decode).
    pub fn finish(&mut self) -> Result<Option<&str>, PostprocessError> {
        self.delta.clear();
        match &mut self.mode {
            Mode::ByteLevel(stream) => stream.finish(&mut self.delta),
            Mode::Window(window) => window.finish(self.skip_special_tokens, &mut self.delta)?,
        }
        Ok(self.last_delta())
    }

    fn step(&mut self, token: u32) -> Result<(), PostprocessError> {
        match &mut self.mode {
            Mode::ByteLevel(stream) => {
                stream.push(token, self.skip_special_tokens, &mut self.delta)
            }
            Mode::Window(window) => window.push(token, self.skip_special_tokens, &mut self.delta),
        }
    }

    fn last_delta(&self) -> Option<&str> {
        (!self.delta.is_empty()).then_some(self.delta.as_str())
    }

    #[cfg(test)]
    pub(crate) fn window_len(&self) -> usize {
        match &self.mode {
            Mode::ByteLevel(_) => 0,
            Mode::Window(window) => window.ids.len(),
        }
    }
}

/// The sliding decode window (see the module docs).
struct Window {
    tokenizer: Arc<Tokenizer>,
    /// Model vocabulary size; ids at or above it must be added tokens.
    base_vocab_size: usize,
    /// Token ids; only `ids[prefix_offset..]` is still needed.
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    /// `decode(ids[prefix_offset..read_offset])`, cached while tokens are held back.
    prefix_text: String,
}

impl Window {
    fn new(
        tokenizer: Arc<Tokenizer>,
        prompt_tail: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Self, PostprocessError> {
        let mut window = Self::without_context(tokenizer);
        let tail = &prompt_tail[prompt_tail.len().saturating_sub(PROMPT_CONTEXT_TOKENS)..];
        for &token in prompt_tail {
            window.check_known(token)?;
        }
        // A prompt that ends inside a character would make the context text end in U+FFFD and
        // never be a prefix of the continued text; drop such trailing tokens from the context.
        let mut context = tail;
        while !context.is_empty() {
            let text = window.decode(context, skip_special_tokens)?;
            if !text.ends_with(char::REPLACEMENT_CHARACTER) {
                window.prefix_text = text;
                break;
            }
            context = &context[..context.len() - 1];
        }
        window.ids.extend_from_slice(context);
        window.read_offset = context.len();
        Ok(window)
    }

    fn without_context(tokenizer: Arc<Tokenizer>) -> Self {
        let base_vocab_size = tokenizer.get_model().get_vocab_size();
        Window {
            tokenizer,
            base_vocab_size,
            ids: Vec::with_capacity(COMPACT_AFTER + 2 * MAX_HELD_TOKENS),
            prefix_offset: 0,
            read_offset: 0,
            prefix_text: String::new(),
        }
    }

    /// One token: decode the window and append newly complete text to `out`.
    fn push(&mut self, token: u32, skip: bool, out: &mut String) -> Result<(), PostprocessError> {
        self.check_known(token)?;
        // `decode` filters skipped special tokens id by id, so leaving them out of the window
        // changes nothing, saves the decode, and keeps runs of them from growing the window.
        if skip && self.is_special(token) {
            return Ok(());
        }
        self.ids.push(token);
        let text = self.decode(&self.ids[self.prefix_offset..], skip)?;
        let incomplete =
            text.len() <= self.prefix_text.len() || text.ends_with(char::REPLACEMENT_CHARACTER);
        if incomplete && self.ids.len() - self.read_offset < MAX_HELD_TOKENS {
            return Ok(());
        }
        self.append_beyond_prefix(&text, out);
        self.advance(skip)
    }

    fn finish(&mut self, skip: bool, out: &mut String) -> Result<(), PostprocessError> {
        if self.ids.len() == self.read_offset {
            return Ok(());
        }
        let text = self.decode(&self.ids[self.prefix_offset..], skip)?;
        self.append_beyond_prefix(&text, out);
        self.advance(skip)
    }

    /// Appends the part of `text` (the decoded window) beyond the already emitted prefix.
    fn append_beyond_prefix(&self, text: &str, out: &mut String) {
        let start = if text.starts_with(self.prefix_text.as_str()) {
            self.prefix_text.len()
        } else {
            // The decoder rewrote already emitted text (only pathological byte sequences do
            // this). Emitted text cannot be retracted; continue after the same number of bytes.
            floor_char_boundary(text, self.prefix_text.len())
        };
        out.push_str(&text[start..]);
    }

    /// Slides the window: everything decoded so far is emitted; the tokens read since the last
    /// emission become the new context.
    fn advance(&mut self, skip: bool) -> Result<(), PostprocessError> {
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        self.prefix_text = self.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        if self.prefix_offset >= COMPACT_AFTER {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
        Ok(())
    }

    fn decode(&self, ids: &[u32], skip: bool) -> Result<String, PostprocessError> {
        self.tokenizer
            .decode(ids, skip)
            .map_err(|err| PostprocessError::Decode(err.to_string()))
    }

    /// Rejects ids the tokenizer does not know; `decode` would silently drop them.
    fn check_known(&self, token: u32) -> Result<(), PostprocessError> {
        let known = (token as usize) < self.base_vocab_size
            || self
                .tokenizer
                .get_added_vocabulary()
                .get_added_tokens_decoder()
                .contains_key(&token);
        if known {
            Ok(())
        } else {
            Err(PostprocessError::UnknownToken { token })
        }
    }

    /// Whether `decode(.., skip_special_tokens = true)` drops this id.
    fn is_special(&self, token: u32) -> bool {
        let added = self.tokenizer.get_added_vocabulary();
        added
            .get_added_tokens_decoder()
            .get(&token)
            .is_some_and(|t| added.is_special_token(&t.content))
    }
}

/// The largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut i = index;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tokenizers::{bytelevel_tokenizer, sentencepiece_tokenizer};
    use proptest::prelude::*;

    fn id(tok: &Tokenizer, piece: &str) -> u32 {
        tok.token_to_id(piece)
            .unwrap_or_else(|| panic!("no token {piece:?}"))
    }

    /// Both strategies for `tok` (for SentencePiece both are the window).
    fn detokenizers(tok: &Arc<Tokenizer>, tail: &[u32], skip: bool) -> [IncrementalDetokenizer; 2] {
        [
            IncrementalDetokenizer::new(tok.clone(), tail, skip).unwrap(),
            IncrementalDetokenizer::new_windowed(tok.clone(), tail, skip).unwrap(),
        ]
    }

    /// Pushes tokens one at a time, returning every delta (None as "") plus the final flush;
    /// checks that both strategies agree.
    fn run_one_by_one(
        tok: &Arc<Tokenizer>,
        tail: &[u32],
        ids: &[u32],
        skip: bool,
    ) -> (Vec<String>, String) {
        let [a, b] = detokenizers(tok, tail, skip).map(|mut detok| {
            let deltas: Vec<String> = ids
                .iter()
                .map(|&t| detok.push(t).unwrap().unwrap_or("").to_string())
                .collect();
            let flushed = detok.finish().unwrap().unwrap_or("").to_string();
            (deltas, flushed)
        });
        // The test vocabularies have no token that mixes a complete and a partial character,
        // so both strategies cut the text at the same places.
        assert_eq!(a, b, "fast path and window disagree");
        a
    }

    fn concat(ids: &[u32], tok: &Arc<Tokenizer>, skip: bool) -> String {
        let (deltas, flushed) = run_one_by_one(tok, &[], ids, skip);
        deltas.concat() + &flushed
    }

    #[test]
    fn sentencepiece_keeps_spaces_between_words_and_strips_the_first() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let ids = [id(&tok, "▁Hello"), id(&tok, "▁world"), id(&tok, "!")];
        let (deltas, flushed) = run_one_by_one(&tok, &[], &ids, true);
        assert_eq!(deltas, ["Hello", " world", "!"]);
        assert_eq!(flushed, "");
        assert_eq!(tok.decode(&ids, true).unwrap(), "Hello world!");
    }

    #[test]
    fn prompt_tail_keeps_the_leading_space_of_the_first_generated_word() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let prompt = [id(&tok, "<s>"), id(&tok, "▁Hello")];
        let (deltas, _) = run_one_by_one(&tok, &prompt, &[id(&tok, "▁world")], true);
        assert_eq!(deltas, [" world"]);
    }

    #[test]
    fn byte_fallback_character_is_held_until_complete() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let ids = [
            id(&tok, "▁Hello"),
            id(&tok, "<0xE4>"),
            id(&tok, "<0xBD>"),
            id(&tok, "<0xA0>"),
            id(&tok, "!"),
        ];
        let (deltas, flushed) = run_one_by_one(&tok, &[], &ids, true);
        assert_eq!(deltas, ["Hello", "", "", "你", "!"]);
        assert_eq!(flushed, "");
    }

    #[test]
    fn byte_level_character_split_across_tokens_is_held_until_complete() {
        let tok = Arc::new(bytelevel_tokenizer());
        // "😀" is F0 9F 98 80; byte-level pieces map each byte to one char.
        let bytes = "a😀".as_bytes();
        let ids: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
        let (deltas, flushed) = run_one_by_one(&tok, &[], &ids, true);
        assert_eq!(deltas, ["a", "", "", "", "😀"]);
        assert_eq!(flushed, "");
    }

    #[test]
    fn incomplete_character_at_end_is_flushed_like_a_full_decode() {
        let tok = Arc::new(bytelevel_tokenizer());
        let ids = [u32::from(b'x'), 0xE4, 0xBD];
        let (deltas, flushed) = run_one_by_one(&tok, &[], &ids, true);
        assert_eq!(deltas, ["x", "", ""]);
        assert_eq!(flushed, "\u{FFFD}");
        assert_eq!(tok.decode(&ids, true).unwrap(), "x\u{FFFD}");
    }

    #[test]
    fn special_tokens_are_hidden_or_shown_as_asked() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let ids = [id(&tok, "▁Hello"), id(&tok, "</s>"), id(&tok, "▁world")];
        assert_eq!(concat(&ids, &tok, true), "Hello world");
        assert_eq!(concat(&ids, &tok, false), tok.decode(&ids, false).unwrap());
        assert!(concat(&ids, &tok, false).contains("</s>"));
    }

    #[test]
    fn unknown_token_is_an_error_not_a_silent_drop() {
        for tok in [bytelevel_tokenizer(), sentencepiece_tokenizer()] {
            let tok = Arc::new(tok);
            let bad = tok.get_vocab_size(true) as u32 + 1000;
            for mut detok in detokenizers(&tok, &[], true) {
                assert_eq!(
                    detok.push(bad).unwrap_err(),
                    PostprocessError::UnknownToken { token: bad }
                );
            }
            assert!(matches!(
                IncrementalDetokenizer::new(tok.clone(), &[bad], true),
                Err(PostprocessError::UnknownToken { .. })
            ));
            assert!(matches!(
                IncrementalDetokenizer::new_windowed(tok, &[bad], true),
                Err(PostprocessError::UnknownToken { .. })
            ));
        }
    }

    #[test]
    fn prompt_ending_inside_a_character_does_not_poison_the_output() {
        let tok = Arc::new(bytelevel_tokenizer());
        let prompt = [u32::from(b'a'), 0xE4, 0xBD];
        let (deltas, flushed) = run_one_by_one(&tok, &prompt, &[u32::from(b'b')], true);
        assert_eq!(deltas.concat() + &flushed, "b");
    }

    #[test]
    fn window_stays_bounded_over_long_sequences() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let special = id(&tok, "</s>");
        let word = id(&tok, "▁the");
        let mut detok = IncrementalDetokenizer::new(tok.clone(), &[], false).unwrap();
        let mut max_window = 0;
        for i in 0..5_000 {
            detok.push(if i % 7 == 0 { special } else { word }).unwrap();
            max_window = max_window.max(detok.window_len());
        }
        assert!(
            max_window <= COMPACT_AFTER + 2,
            "window grew to {max_window}"
        );
    }

    #[test]
    fn invalid_byte_runs_are_released_not_accumulated() {
        let tok = Arc::new(bytelevel_tokenizer());
        let mut detok = IncrementalDetokenizer::new_windowed(tok.clone(), &[], true).unwrap();
        let mut out = String::new();
        // A lone lead byte repeated forever never completes a character.
        for _ in 0..1_000 {
            if let Some(s) = detok.push(0xE4).unwrap() {
                out.push_str(s);
            }
            assert!(detok.window_len() <= COMPACT_AFTER + 2 * MAX_HELD_TOKENS);
        }
        out.push_str(detok.finish().unwrap().unwrap_or(""));
        assert_eq!(out, tok.decode(&vec![0xE4; 1_000], true).unwrap());
    }

    #[test]
    fn batched_pushes_match_single_pushes() {
        let tok = Arc::new(sentencepiece_tokenizer());
        let ids = [
            id(&tok, "▁Hello"),
            id(&tok, "<0xE4>"),
            id(&tok, "<0xBD>"),
            id(&tok, "<0xA0>"),
            id(&tok, "▁world"),
        ];
        let mut detok = IncrementalDetokenizer::new(tok.clone(), &[], true).unwrap();
        let mut out = String::new();
        for chunk in ids.chunks(2) {
            out.push_str(detok.push_tokens(chunk).unwrap().unwrap_or(""));
        }
        out.push_str(detok.finish().unwrap().unwrap_or(""));
        assert_eq!(out, tok.decode(&ids, true).unwrap());
    }

    /// A piece of generated output for property tests: a vocabulary word, a character spelled
    /// as byte tokens, or a special token.
    #[derive(Clone, Debug)]
    enum Unit {
        Word(usize),
        Char(char),
        Special,
    }

    fn unit() -> impl Strategy<Value = Unit> {
        prop_oneof![
            4 => (0..usize::MAX).prop_map(Unit::Word),
            3 => prop_oneof![
                Just('é'), Just('你'), Just('好'), Just('😀'), Just('\u{301}'), Just(' '),
                Just('\n'), Just('a'), Just('€'), Just('𝔸'),
            ]
            .prop_map(Unit::Char),
            1 => Just(Unit::Special),
        ]
    }

    /// Token ids for `units` in a tokenizer whose byte tokens are named by `byte_piece`.
    fn units_to_ids(
        tok: &Tokenizer,
        units: &[Unit],
        words: &[&str],
        special: &str,
        byte_id: impl Fn(u8) -> u32,
    ) -> Vec<u32> {
        let mut ids = Vec::new();
        for unit in units {
            match unit {
                Unit::Word(i) => ids.push(id(tok, words[i % words.len()])),
                Unit::Char(c) => {
                    let mut buf = [0; 4];
                    ids.extend(c.encode_utf8(&mut buf).bytes().map(&byte_id));
                }
                Unit::Special => ids.push(id(tok, special)),
            }
        }
        ids
    }

    const SP_WORDS: &[&str] = &[
        "▁Hello", "▁world", "▁", "Hello", ",", "!", "▁the", "▁你", "好",
    ];
    const BL_WORDS: &[&str] = &["Ġhello", "Ġworld", "hello", "Ċ", "ĠĠ", "<tool>"];

    fn check_stream(tok: &Arc<Tokenizer>, ids: &[u32], splits: &[usize], skip: bool) {
        for detok in detokenizers(tok, &[], skip) {
            check_stream_with(detok, tok, ids, splits, skip);
        }
    }

    fn check_stream_with(
        mut detok: IncrementalDetokenizer,
        tok: &Arc<Tokenizer>,
        ids: &[u32],
        splits: &[usize],
        skip: bool,
    ) {
        let full = tok.decode(ids, skip).unwrap();
        let mut out = String::new();
        let mut rest = ids;
        let mut split = splits.iter().cycle();
        while !rest.is_empty() {
            let n = (*split.next().unwrap()).clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            if let Some(delta) = detok.push_tokens(chunk).unwrap() {
                assert!(!delta.contains('\u{FFFD}'), "delta {delta:?} of {full:?}");
                out.push_str(delta);
            }
        }
        out.push_str(detok.finish().unwrap().unwrap_or(""));
        assert_eq!(out, full);
    }

    proptest! {
        #[test]
        fn sentencepiece_deltas_concatenate_to_full_decode(
            units in prop::collection::vec(unit(), 0..40),
            splits in prop::collection::vec(1usize..4, 1..5),
            skip in any::<bool>(),
        ) {
            let tok = Arc::new(sentencepiece_tokenizer());
            let ids = units_to_ids(&tok, &units, SP_WORDS, "</s>", |b| {
                id(&tok, &format!("<0x{b:02X}>"))
            });
            check_stream(&tok, &ids, &[1], skip);
            check_stream(&tok, &ids, &splits, skip);
        }

        #[test]
        fn bytelevel_fast_path_is_exact_even_for_invalid_bytes(
            ids in prop::collection::vec(0u32..262, 0..60),
            skip in any::<bool>(),
        ) {
            let tok = Arc::new(bytelevel_tokenizer());
            let mut detok = IncrementalDetokenizer::new(tok.clone(), &[], skip).unwrap();
            prop_assert!(matches!(detok.mode, Mode::ByteLevel(_)));
            let mut out = String::new();
            for &id in &ids {
                out.push_str(detok.push(id).unwrap().unwrap_or(""));
            }
            out.push_str(detok.finish().unwrap().unwrap_or(""));
            prop_assert_eq!(out, tok.decode(&ids, skip).unwrap());
        }

        #[test]
        fn bytelevel_deltas_concatenate_to_full_decode(
            units in prop::collection::vec(unit(), 0..40),
            splits in prop::collection::vec(1usize..4, 1..5),
            skip in any::<bool>(),
        ) {
            let tok = Arc::new(bytelevel_tokenizer());
            let ids = units_to_ids(&tok, &units, BL_WORDS, "<|end|>", u32::from);
            check_stream(&tok, &ids, &[1], skip);
            check_stream(&tok, &ids, &splits, skip);
        }
    }
}
