//! A model's vocabulary as bytes, arranged for masking: a byte trie in depth-first order, so
//! that tokens sharing a prefix are checked against the matcher once for that prefix.

use switchyard_protocol::TokenId;

use crate::matcher::{Frame, Matcher, Threads, in_plain_string, plain_run, step_all};

/// Bytes a string may hold as they are, whose effect on a plain string state is none.
fn plain_string_byte(b: u8) -> bool {
    (0x20..=0x7F).contains(&b) && b != b'"' && b != b'\\'
}

/// Tokens longer than this never match (no real vocabulary has one).
const MAX_TOKEN_BYTES: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct TrieNode {
    byte: u8,
    /// Every byte in this subtree is a plain string byte.
    plain: bool,
    /// Length of the prefix this node ends (1 for the root's children).
    depth: u16,
    /// Length of the longest token in this subtree.
    deepest: u16,
    /// The node after this subtree.
    subtree_end: u32,
    /// This node's tokens are `tokens[first..own_end]`, its subtree's `tokens[first..tokens_end]`.
    first: u32,
    own_end: u32,
    tokens_end: u32,
}

/// A vocabulary's token bytes, precomputed once per model.
#[derive(Clone, Debug)]
pub struct TokenVocab {
    bytes: Vec<Option<Box<[u8]>>>,
    nodes: Vec<TrieNode>,
    /// Token ids in depth-first (byte-lexicographic) order.
    tokens: Vec<TokenId>,
    max_len: usize,
}

impl TokenVocab {
    /// `tokens[id]` is the text token `id` stands for, as bytes; `None` for tokens that never
    /// appear in a document (special and control tokens; EOS is the caller's business).
    /// Empty tokens are never allowed either.
    pub fn new(tokens: Vec<Option<Vec<u8>>>) -> TokenVocab {
        let bytes: Vec<Option<Box<[u8]>>> = tokens
            .into_iter()
            .map(|t| {
                t.filter(|b| !b.is_empty() && b.len() <= MAX_TOKEN_BYTES)
                    .map(Into::into)
            })
            .collect();
        let mut sorted: Vec<(&[u8], TokenId)> = bytes
            .iter()
            .enumerate()
            .filter_map(|(id, b)| b.as_deref().map(|b| (b, id as TokenId)))
            .collect();
        sorted.sort_unstable();
        let mut nodes: Vec<TrieNode> = Vec::new();
        let mut order: Vec<TokenId> = Vec::with_capacity(sorted.len());
        // The open path: node indices, whether each one's children are all plain, and the
        // longest token below it so far.
        let mut path: Vec<(usize, bool, u16)> = Vec::new();
        let close =
            |nodes: &mut Vec<TrieNode>, path: &mut Vec<(usize, bool, u16)>, order_len: usize| {
                let (i, children_plain, deepest) = path.pop().expect("closing an open node");
                let end = nodes.len() as u32;
                let node = &mut nodes[i];
                node.subtree_end = end;
                node.tokens_end = order_len as u32;
                node.plain = children_plain && plain_string_byte(node.byte);
                node.deepest = deepest;
                let plain = node.plain;
                if let Some(parent) = path.last_mut() {
                    parent.1 &= plain;
                    parent.2 = parent.2.max(deepest);
                }
            };
        let mut prev: &[u8] = &[];
        let mut max_len = 0;
        for &(token, id) in &sorted {
            let common = prev.iter().zip(token).take_while(|(a, b)| a == b).count();
            while path.len() > common {
                close(&mut nodes, &mut path, order.len());
            }
            for (d, &byte) in token.iter().enumerate().skip(common) {
                path.push((nodes.len(), true, 0));
                nodes.push(TrieNode {
                    byte,
                    plain: false,
                    depth: (d + 1) as u16,
                    deepest: 0,
                    subtree_end: 0,
                    first: order.len() as u32,
                    own_end: order.len() as u32,
                    tokens_end: 0,
                });
            }
            order.push(id);
            let top = path.last_mut().expect("a token has a node");
            top.2 = token.len() as u16;
            nodes[top.0].own_end = order.len() as u32;
            max_len = max_len.max(token.len());
            prev = token;
        }
        while !path.is_empty() {
            close(&mut nodes, &mut path, order.len());
        }
        TokenVocab {
            bytes,
            nodes,
            tokens: order,
            max_len,
        }
    }

    /// From a GGUF file's `tokenizer.ggml.*` arrays: `model` is `tokenizer.ggml.model` (`gpt2`:
    /// byte-level BPE; `llama`: SentencePiece), `token_types` `tokenizer.ggml.token_type`
    /// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; empty: all normal).
    /// Control, unknown and unused tokens are never allowed.
    pub fn from_gguf<'a>(
        model: &str,
        tokens: impl ExactSizeIterator<Item = &'a str>,
        token_types: &[i64],
    ) -> Result<TokenVocab, String> {
        let byte_level = match model {
            "gpt2" => true,
            "llama" => false,
            other => {
                return Err(format!(
                    "tokenizer model `{other}` (supported: gpt2, llama)"
                ));
            }
        };
        let n = tokens.len();
        if !token_types.is_empty() && token_types.len() != n {
            return Err(format!("{} token types for {n} tokens", token_types.len()));
        }
        let bytes = tokens
            .enumerate()
            .map(|(i, text)| match token_types.get(i).copied().unwrap_or(1) {
                2 | 3 | 5 => None,
                4 => Some(text.as_bytes().to_vec()),
                _ if byte_level => byte_level_token_bytes(text),
                _ => Some(sentencepiece_token_bytes(text)),
            })
            .collect();
        Ok(TokenVocab::new(bytes))
    }

    /// Ids `0..len()`.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of `token`; `None` for a token that never appears in a document.
    pub fn token_bytes(&self, token: TokenId) -> Option<&[u8]> {
        self.bytes.get(token as usize).and_then(|b| b.as_deref())
    }

    /// Trie nodes (a measure of the work a full mask can take).
    pub fn trie_nodes(&self) -> usize {
        self.nodes.len()
    }
}

/// A set of token ids, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u64>,
    len: usize,
}

impl TokenMask {
    pub fn new(len: usize) -> TokenMask {
        TokenMask {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Empties the set and sizes it for ids `0..len`.
    pub fn reset(&mut self, len: usize) {
        self.words.clear();
        self.words.resize(len.div_ceil(64), 0);
        self.len = len;
    }

    pub fn allow(&mut self, token: TokenId) {
        if (token as usize) < self.len {
            self.words[token as usize / 64] |= 1 << (token % 64);
        }
    }

    pub fn allows(&self, token: TokenId) -> bool {
        (token as usize) < self.len && self.words[token as usize / 64] & (1 << (token % 64)) != 0
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Ids this set can hold.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets every logit outside the set to −∞ (ids past the set's length included).
    pub fn apply(&self, logits: &mut [f32]) {
        for (i, chunk) in logits.chunks_mut(64).enumerate() {
            let word = self.words.get(i).copied().unwrap_or(0);
            if word == u64::MAX {
                continue;
            }
            for (j, l) in chunk.iter_mut().enumerate() {
                if word & (1 << j) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Buffers a mask computation reuses (one per engine thread).
#[derive(Debug, Default)]
pub struct MaskScratch {
    levels: Vec<Threads>,
    source: Vec<usize>,
    plain: Vec<bool>,
    /// Per level: plain string bytes that some thread surely takes ([`plain_run`]).
    run: Vec<u32>,
    work: Vec<Frame>,
}

impl Matcher {
    /// The vocabulary tokens whose bytes can continue the document from here, into `mask`
    /// (special tokens never; EOS is not a vocabulary token here: allow it when
    /// [`Matcher::is_complete`]).
    pub fn fill_mask(&self, vocab: &TokenVocab, mask: &mut TokenMask, scratch: &mut MaskScratch) {
        mask.reset(vocab.len());
        let levels = vocab.max_len + 1;
        if scratch.levels.len() < levels {
            scratch.levels.resize_with(levels, Threads::default);
        }
        scratch.source.resize(levels, 0);
        scratch.plain.resize(levels, false);
        scratch.run.resize(levels, 0);
        let grammar = self.grammar().as_ref();
        scratch.levels[0].clone_from(&self.state);
        scratch.source[0] = 0;
        scratch.plain[0] = in_plain_string(grammar, &self.state);
        scratch.run[0] = plain_run(grammar, &self.state);
        let allow = |mask: &mut TokenMask, from: u32, to: u32| {
            for &t in &vocab.tokens[from as usize..to as usize] {
                mask.allow(t);
            }
        };
        let mut i = 0;
        while i < vocab.nodes.len() {
            let node = vocab.nodes[i];
            let d = node.depth as usize;
            let parent = scratch.source[d - 1];
            if scratch.plain[d - 1] && plain_string_byte(node.byte) {
                // The state does not change: the whole subtree passes if it stays plain.
                if node.plain {
                    allow(mask, node.first, node.tokens_end);
                    i = node.subtree_end as usize;
                    continue;
                }
                scratch.source[d] = parent;
                scratch.plain[d] = true;
                scratch.run[d] = scratch.run[d - 1];
                allow(mask, node.first, node.own_end);
                i += 1;
                continue;
            }
            // A string that counts characters (`maxLength`) changes state with every byte, but
            // a subtree of plain bytes no longer than its room passes whole all the same.
            if node.plain && u32::from(node.deepest) - (d as u32 - 1) <= scratch.run[d - 1] {
                allow(mask, node.first, node.tokens_end);
                i = node.subtree_end as usize;
                continue;
            }
            let (done, rest) = scratch.levels.split_at_mut(d);
            step_all(
                grammar,
                &done[parent],
                node.byte,
                &mut rest[0],
                &mut scratch.work,
            );
            if rest[0].is_empty() {
                i = node.subtree_end as usize;
                continue;
            }
            scratch.source[d] = d;
            scratch.plain[d] = in_plain_string(grammar, &rest[0]);
            scratch.run[d] = plain_run(grammar, &rest[0]);
            allow(mask, node.first, node.own_end);
            i += 1;
        }
    }
}

/// GPT-2's byte-level alphabet (used by byte-level BPE tokenizers): printable bytes stand
/// for themselves, the other 68 for U+0100.. in byte order (`Ġ` is a space, `Ċ` a newline).
fn byte_level_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The bytes of a byte-level BPE token (`Ġhello` → ` hello`); `None` if a character is
/// outside the byte-level alphabet (such a token is not byte-level encoded).
pub fn byte_level_token_bytes(token: &str) -> Option<Vec<u8>> {
    let mut unprintable = [0u8; 68];
    let mut k = 0;
    for b in 0..=255u8 {
        if !byte_level_printable(b) {
            unprintable[k] = b;
            k += 1;
        }
    }
    token
        .chars()
        .map(|c| {
            let c = c as u32;
            if c < 256 && byte_level_printable(c as u8) {
                Some(c as u8)
            } else {
                c.checked_sub(256)
                    .and_then(|i| unprintable.get(i as usize).copied())
            }
        })
        .collect()
}

/// The bytes of a SentencePiece token: `▁` is a space, `<0xNN>` the byte NN.
pub fn sentencepiece_token_bytes(token: &str) -> Vec<u8> {
    if let Some(hex) = token
        .strip_prefix("<0x")
        .and_then(|t| t.strip_suffix('>'))
        .filter(|h| h.len() == 2)
        && let Ok(b) = u8::from_str_radix(hex, 16)
    {
        return vec![b];
    }
    token.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips() {
        assert_eq!(byte_level_token_bytes("Ġhello").unwrap(), b" hello");
        assert_eq!(byte_level_token_bytes("Ċ").unwrap(), b"\n");
        assert_eq!(byte_level_token_bytes("{\"").unwrap(), b"{\"");
        // "é" is two bytes, C3 A9, which byte-level BPE writes as "Ã©".
        assert_eq!(byte_level_token_bytes("Ã©").unwrap(), "é".as_bytes());
        assert!(byte_level_token_bytes("日").is_none());
        let all: Vec<u8> = (0..=255).collect();
        let mut seen = std::collections::HashSet::new();
        for c in (0u32..400).filter_map(char::from_u32) {
            if let Some(b) = byte_level_token_bytes(&c.to_string()) {
                assert_eq!(b.len(), 1);
                assert!(seen.insert(b[0]), "{c:?} maps to a byte already taken");
            }
        }
        assert_eq!(seen.len(), all.len());
        assert_eq!(sentencepiece_token_bytes("▁hi"), b" hi");
        assert_eq!(sentencepiece_token_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_token_bytes("<0xZZ>"), b"<0xZZ>");
    }

    #[test]
    fn trie_ranges_cover_every_token_once() {
        let words = ["a", "ab", "abc", "b", "ab", "", "\"x"];
        let vocab = TokenVocab::new(
            words
                .iter()
                .map(|w| Some(w.as_bytes().to_vec()))
                .chain([None])
                .collect(),
        );
        assert_eq!(vocab.len(), 8);
        let mut ids = vocab.tokens.clone();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 6]);
        // "a" subtree holds a, ab, ab, abc; "ab" is one node with two tokens.
        let a = vocab
            .nodes
            .iter()
            .find(|n| n.depth == 1 && n.byte == b'a')
            .unwrap();
        assert_eq!(a.tokens_end - a.first, 4);
        assert!(a.plain);
        let quote = vocab.nodes.iter().find(|n| n.byte == b'"').unwrap();
        assert!(!quote.plain);
    }
}
