//! Text deltas → token ids, for upstreams that stream only text.
//!
//! Tokenizing each delta alone would be wrong (tokens merge across delta boundaries), and
//! re-tokenizing everything per delta would cost quadratic time. Instead the text not yet
//! committed is tokenized; all but the last [`HOLD_BACK`] tokens are committed (their bytes leave
//! the pending text, cut at a token boundary), the rest wait for more text; at the end everything
//! left is committed. Exact whenever the tokenizer does not merge across more than the held-back
//! tokens (true of byte-level BPE models, whose pre-tokenizer splits on word boundaries).

/// Encodes text without adding special tokens, with each token's end byte offset in the text.
pub trait TextTokenizer: Send + Sync + 'static {
    fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize)>, String>;
}

/// Tokens kept back from each commit because the next text may still merge with them.
pub const HOLD_BACK: usize = 2;

pub struct Retokenizer {
    pending: String,
}

impl Retokenizer {
    pub fn new() -> Self {
        Retokenizer {
            pending: String::new(),
        }
    }

    /// Adds a text delta; appends the tokens now certain to `out`.
    pub fn push(
        &mut self,
        tokenizer: &dyn TextTokenizer,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        self.pending.push_str(text);
        let tokens = tokenizer.encode_with_offsets(&self.pending)?;
        if tokens.len() <= HOLD_BACK {
            return Ok(());
        }
        let commit = tokens.len() - HOLD_BACK;
        // Cut after the last committed token whose end is a clean char boundary that the next
        // token ends beyond: byte-level tokens of one character all carry that character's
        // offsets, and must be committed together.
        let mut cut_tokens = 0;
        let mut cut_bytes = 0;
        for i in 0..commit {
            let end = tokens[i].1;
            if end <= self.pending.len()
                && self.pending.is_char_boundary(end)
                && end > cut_bytes
                && tokens[i + 1].1 > end
            {
                cut_tokens = i + 1;
                cut_bytes = end;
            }
        }
        if cut_tokens == 0 {
            return Ok(());
        }
        out.extend(tokens[..cut_tokens].iter().map(|&(id, _)| id));
        self.pending.drain(..cut_bytes);
        Ok(())
    }

    /// The text ended: appends every remaining token.
    pub fn finish(
        &mut self,
        tokenizer: &dyn TextTokenizer,
        out: &mut Vec<u32>,
    ) -> Result<(), String> {
        if !self.pending.is_empty() {
            let tokens = tokenizer.encode_with_offsets(&self.pending)?;
            out.extend(tokens.iter().map(|&(id, _)| id));
            self.pending.clear();
        }
        Ok(())
    }
}

impl Default for Retokenizer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words (runs of non-space chars, with their leading space) are tokens; ids are lengths.
    struct Words;

    impl TextTokenizer for Words {
        fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize)>, String> {
            let mut out = Vec::new();
            let bytes = text.as_bytes();
            let mut start = 0;
            for i in 1..=bytes.len() {
                if i == bytes.len() || bytes[i] == b' ' {
                    out.push(((i - start) as u32, i));
                    start = i;
                }
            }
            Ok(out)
        }
    }

    /// Every character is two tokens (its bytes split), both with the character's end offset.
    struct SplitChars;

    impl TextTokenizer for SplitChars {
        fn encode_with_offsets(&self, text: &str) -> Result<Vec<(u32, usize)>, String> {
            Ok(text
                .char_indices()
                .flat_map(|(i, c)| {
                    let end = i + c.len_utf8();
                    [(c as u32 * 2, end), (c as u32 * 2 + 1, end)]
                })
                .collect())
        }
    }

    #[test]
    fn tokens_sharing_a_characters_offsets_are_committed_together() {
        let text = "👨‍👩‍👧 ok 🤖";
        let whole: Vec<u32> = SplitChars
            .encode_with_offsets(text)
            .unwrap()
            .iter()
            .map(|t| t.0)
            .collect();
        let mut r = Retokenizer::new();
        let mut out = Vec::new();
        for c in text.chars() {
            r.push(&SplitChars, &c.to_string(), &mut out).unwrap();
        }
        r.finish(&SplitChars, &mut out).unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn deltas_split_mid_word_give_the_whole_texts_tokens() {
        let text = "the quick brown fox jumps over the lazy dog";
        let whole: Vec<u32> = Words
            .encode_with_offsets(text)
            .unwrap()
            .iter()
            .map(|t| t.0)
            .collect();
        for step in 1..6 {
            let mut r = Retokenizer::new();
            let mut out = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(step) {
                let s: String = piece.iter().collect();
                r.push(&Words, &s, &mut out).unwrap();
            }
            r.finish(&Words, &mut out).unwrap();
            assert_eq!(out, whole, "step {step}");
        }
    }
}
