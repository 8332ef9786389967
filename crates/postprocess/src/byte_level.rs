//! Fast path for byte-level BPE tokenizers (GPT-2 family: Qwen, Llama 3, DeepSeek, ...).
//!
//! When a tokenizer's decoder is exactly `ByteLevel`, `Tokenizer::decode` is context free: each
//! token stands for a fixed byte string, and the text is the lossy UTF-8 conversion of their
//! concatenation. So decoding a stream needs no window at all: look each token's bytes up in a
//! table built once per tokenizer, convert complete characters, keep an incomplete tail (at most
//! 3 bytes) for the next token. No allocation per token, and exactly `decode(all_ids)`.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokenizers::Tokenizer;
use tokenizers::decoders::DecoderWrapper;

use crate::PostprocessError;

/// The GPT-2 byte-level alphabet: printable Latin-1 bytes stand for themselves, the other bytes
/// are shifted, in byte order, to U+0100 onwards.
pub(crate) fn byte_level_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        char::from(byte)
    } else {
        let shifted = (0..byte).filter(|&b| !printable(b)).count() as u32;
        char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// Highest code point of the byte-level alphabet, plus one.
const ALPHABET_END: usize = 256 + 68;

const KNOWN: u8 = 1;
const SPECIAL: u8 = 2;

/// Every token's bytes, as the `ByteLevel` decoder produces them.
pub(crate) struct ByteLevelTable {
    /// `bytes[offsets[id]..offsets[id + 1]]` are the bytes of token `id`.
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    /// `KNOWN` if the id exists, `SPECIAL` if `decode(.., skip_special_tokens)` drops it.
    flags: Vec<u8>,
}

impl ByteLevelTable {
    /// The table for `tokenizer` if its decoder is plain byte-level, else `None`. Tables are
    /// cached per tokenizer instance (keyed by its `Arc`), so only the first call per model pays
    /// for building one.
    pub(crate) fn for_tokenizer(tokenizer: &Arc<Tokenizer>) -> Option<Arc<ByteLevelTable>> {
        if !matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return None;
        }
        type Cache = Vec<(Weak<Tokenizer>, Arc<ByteLevelTable>)>;
        static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
        // Built under the lock: concurrent first requests for a model wait for one build rather
        // than each building their own.
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(weak, _)| weak.strong_count() > 0);
        if let Some((_, table)) = cache
            .iter()
            .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(tokenizer)))
        {
            return Some(table.clone());
        }
        let table = Arc::new(Self::build(tokenizer)?);
        cache.push((Arc::downgrade(tokenizer), table.clone()));
        Some(table)
    }

    /// `None` if the vocabulary has ids the table would miss (holes pushing ids past the
    /// vocabulary size); the caller then uses the generic path.
    fn build(tokenizer: &Tokenizer) -> Option<Self> {
        let mut char_to_byte = [None; ALPHABET_END];
        for byte in 0..=255u8 {
            char_to_byte[byte_level_char(byte) as usize] = Some(byte);
        }
        let added = tokenizer.get_added_vocabulary();
        let upper = added
            .get_added_tokens_decoder()
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(tokenizer.get_vocab_size(false));
        let mut table = ByteLevelTable {
            offsets: Vec::with_capacity(upper + 1),
            bytes: Vec::new(),
            flags: Vec::with_capacity(upper),
        };
        table.offsets.push(0);
        let mut token_bytes = Vec::new();
        for id in 0..upper as u32 {
            // `id_to_token` is the lookup `decode` itself uses (added tokens first).
            let flags = match tokenizer.id_to_token(id) {
                Some(token) => {
                    // The decoder maps every char back to its byte; a token with any char
                    // outside the alphabet (an added token like `<｜end▁of▁sentence｜>`) is
                    // taken verbatim instead.
                    token_bytes.clear();
                    let mapped = token.chars().all(|c| {
                        let byte = char_to_byte.get(c as usize).copied().flatten();
                        token_bytes.extend(byte);
                        byte.is_some()
                    });
                    if mapped {
                        table.bytes.extend_from_slice(&token_bytes);
                    } else {
                        table.bytes.extend_from_slice(token.as_bytes());
                    }
                    if added.is_special_token(&token) {
                        KNOWN | SPECIAL
                    } else {
                        KNOWN
                    }
                }
                None => 0,
            };
            table.flags.push(flags);
            table.offsets.push(table.bytes.len() as u32);
        }
        let known = table.flags.iter().filter(|&&f| f & KNOWN != 0).count();
        (known == tokenizer.get_vocab_size(true)).then_some(table)
    }

    /// The bytes of `token` and whether it is special; `None` for an unknown id.
    fn get(&self, token: u32) -> Option<(&[u8], bool)> {
        let id = token as usize;
        let flags = *self.flags.get(id)?;
        if flags & KNOWN == 0 {
            return None;
        }
        let span = self.offsets[id] as usize..self.offsets[id + 1] as usize;
        Some((&self.bytes[span], flags & SPECIAL != 0))
    }
}

/// Streaming lossy UTF-8 decoding of a byte-level token stream.
pub(crate) struct ByteLevelStream {
    table: Arc<ByteLevelTable>,
    /// Bytes of an incomplete character at the end of the stream so far (at most 3).
    pending: Vec<u8>,
    /// Scratch buffer: `pending` + the new token's bytes.
    scratch: Vec<u8>,
}

impl ByteLevelStream {
    pub(crate) fn new(table: Arc<ByteLevelTable>) -> Self {
        ByteLevelStream {
            table,
            pending: Vec::with_capacity(8),
            scratch: Vec::with_capacity(64),
        }
    }

    pub(crate) fn check_known(&self, token: u32) -> Result<(), PostprocessError> {
        match self.table.get(token) {
            Some(_) => Ok(()),
            None => Err(PostprocessError::UnknownToken { token }),
        }
    }

    /// Appends the text `token` completes to `out`.
    pub(crate) fn push(
        &mut self,
        token: u32,
        skip_special_tokens: bool,
        out: &mut String,
    ) -> Result<(), PostprocessError> {
        let Some((bytes, special)) = self.table.get(token) else {
            return Err(PostprocessError::UnknownToken { token });
        };
        if special && skip_special_tokens {
            return Ok(());
        }
        let input = if self.pending.is_empty() {
            bytes
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.pending);
            self.scratch.extend_from_slice(bytes);
            &self.scratch
        };
        let tail = append_lossy(input, out);
        self.pending.clear();
        self.pending.extend_from_slice(tail);
        Ok(())
    }

    /// Appends the end-of-stream text: an incomplete character becomes one U+FFFD, as in
    /// `String::from_utf8_lossy`.
    pub(crate) fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
            self.pending.clear();
        }
    }
}

/// Appends `input` to `out` the way `String::from_utf8_lossy` converts it (each maximal invalid
/// sequence becomes one U+FFFD), except for an incomplete character at the very end, which is
/// returned instead: more bytes may complete it.
fn append_lossy<'a>(mut input: &'a [u8], out: &mut String) -> &'a [u8] {
    loop {
        match std::str::from_utf8(input) {
            Ok(valid) => {
                out.push_str(valid);
                return &[];
            }
            Err(err) => {
                let (valid, rest) = input.split_at(err.valid_up_to());
                // `valid_up_to` marks a valid prefix, so this conversion cannot fail.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match err.error_len() {
                    Some(len) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        input = &rest[len..];
                    }
                    None => return rest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alphabet_matches_the_tokenizers_crate() {
        let ours: std::collections::HashSet<char> = (0..=255u8).map(byte_level_char).collect();
        let theirs: std::collections::HashSet<char> =
            tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
                .into_iter()
                .collect();
        assert_eq!(ours, theirs);
        assert_eq!(byte_level_char(b' '), 'Ġ');
        assert_eq!(byte_level_char(b'\n'), 'Ċ');
        assert!(ours.iter().all(|&c| (c as usize) < ALPHABET_END));
    }

    proptest! {
        #[test]
        fn streaming_lossy_equals_whole_lossy(
            bytes in prop::collection::vec(any::<u8>(), 0..40),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut bounds: Vec<usize> =
                cuts.iter().map(|c| c % (bytes.len() + 1)).chain([0, bytes.len()]).collect();
            bounds.sort_unstable();
            let mut out = String::new();
            let mut pending: Vec<u8> = Vec::new();
            for w in bounds.windows(2) {
                let mut input = pending.clone();
                input.extend_from_slice(&bytes[w[0]..w[1]]);
                pending = append_lossy(&input, &mut out).to_vec();
                prop_assert!(pending.len() <= 3);
            }
            if !pending.is_empty() {
                out.push(char::REPLACEMENT_CHARACTER);
            }
            prop_assert_eq!(out, String::from_utf8_lossy(&bytes));
        }
    }
}
