//! Block hashing: token ids → per-block content hashes and chained sequence hashes.
//!
//! A block is `block_size` consecutive token ids; only full blocks are hashed (a partial tail
//! block cannot be reused by an engine's prefix cache). Per block:
//!
//! - content hash = XXH3-64 of the block's token ids as little-endian `u32` bytes, seeded with
//!   the salt's hash (LoRA name / cache salt) when there is one, else seed 0;
//! - sequence hash = XXH3-64 of the 16 bytes `parent sequence hash (LE) ‖ content hash (LE)`,
//!   where the first block's parent is the seed itself. Equal sequence hashes therefore mean
//!   equal prefixes (up to 64-bit collisions), and a salt changes every hash.
//!
//! [`BlockHasher::hash_blocks`] hashes a whole prompt; [`SequenceHashes`] extends the hashes of a
//! growing sequence token by token without rehashing what is already hashed.

use switchyard_protocol::kv::{ContentHash, SequenceHash, StoredBlock};
use switchyard_protocol::llm::CacheKey;
use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_64_with_seed};

/// Blocks up to this many bytes (256 tokens) are hashed in one shot from a stack buffer; larger
/// blocks go through XXH3's streaming state (same result, no heap either way).
const STACK_BLOCK_BYTES: usize = 1024;

/// Hashes token ids into blocks. Cheap to copy; holds only the block size and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHasher {
    block_size: u32,
    seed: u64,
}

impl BlockHasher {
    /// `salt`: LoRA adapter name or cache salt; `None` and `Some("")` differ (an empty salt is
    /// still a salt). A `block_size` of 0 is treated as 1 so hashing never divides by zero;
    /// callers validate the configured size before (a 0 block size is a configuration error).
    pub fn new(block_size: u32, salt: Option<&str>) -> Self {
        Self {
            block_size: block_size.max(1),
            seed: salt.map_or(0, |s| xxh3_64(s.as_bytes())),
        }
    }

    /// The hasher for requests with `key`: no LoRA and no salt hash as [`BlockHasher::new`]
    /// without a salt; otherwise the seed covers both parts, each tagged and length-prefixed, so
    /// a LoRA named `x` and a salt `x` (or any split of the same bytes) never share blocks.
    pub fn for_cache_key(block_size: u32, key: &CacheKey) -> Self {
        if key.is_empty() {
            return Self::new(block_size, None);
        }
        let mut state = Xxh3::new();
        for (tag, part) in [(b'L', &key.lora_name), (b'S', &key.cache_salt)] {
            if let Some(part) = part {
                state.update(&[tag]);
                state.update(&(part.len() as u64).to_le_bytes());
                state.update(part.as_bytes());
            }
        }
        Self {
            block_size: block_size.max(1),
            seed: state.digest(),
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The seed every hash starts from (0 without a salt).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Content hash of one block of token ids (any length; callers pass full blocks).
    pub fn content_hash(&self, block: &[u32]) -> ContentHash {
        let bytes = block.len() * 4;
        if bytes <= STACK_BLOCK_BYTES {
            let mut buf = [0u8; STACK_BLOCK_BYTES];
            for (chunk, token) in buf.chunks_exact_mut(4).zip(block) {
                chunk.copy_from_slice(&token.to_le_bytes());
            }
            xxh3_64_with_seed(&buf[..bytes], self.seed)
        } else {
            let mut state = Xxh3::with_seed(self.seed);
            let mut buf = [0u8; STACK_BLOCK_BYTES];
            for tokens in block.chunks(STACK_BLOCK_BYTES / 4) {
                for (chunk, token) in buf.chunks_exact_mut(4).zip(tokens) {
                    chunk.copy_from_slice(&token.to_le_bytes());
                }
                state.update(&buf[..tokens.len() * 4]);
            }
            state.digest()
        }
    }

    /// Sequence hash of a block whose content hash is `content`, after the block whose sequence
    /// hash is `parent` (`None`: the first block).
    pub fn sequence_hash(
        &self,
        parent: Option<SequenceHash>,
        content: ContentHash,
    ) -> SequenceHash {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&parent.unwrap_or(self.seed).to_le_bytes());
        buf[8..].copy_from_slice(&content.to_le_bytes());
        xxh3_64(&buf)
    }

    /// Hashes every full block of `token_ids`; a partial tail is ignored.
    pub fn hash_blocks(&self, token_ids: &[u32]) -> Vec<StoredBlock> {
        let block_size = self.block_size as usize;
        let mut out = Vec::with_capacity(token_ids.len() / block_size);
        let mut parent = None;
        for block in token_ids.chunks_exact(block_size) {
            let content_hash = self.content_hash(block);
            let sequence_hash = self.sequence_hash(parent, content_hash);
            out.push(StoredBlock {
                sequence_hash,
                content_hash,
            });
            parent = Some(sequence_hash);
        }
        out
    }

    /// The sequence hashes of every full block of `token_ids`, appended to `out` (cleared
    /// first) so a caller can reuse one buffer across requests.
    pub fn sequence_hashes_into(&self, token_ids: &[u32], out: &mut Vec<SequenceHash>) {
        out.clear();
        let block_size = self.block_size as usize;
        out.reserve(token_ids.len() / block_size);
        let mut parent = None;
        for block in token_ids.chunks_exact(block_size) {
            let hash = self.sequence_hash(parent, self.content_hash(block));
            out.push(hash);
            parent = Some(hash);
        }
    }
}

/// The block hashes of one growing sequence: push tokens as they are generated; each completed
/// block is hashed once, chained on the previous one.
///
/// Allocates its pending-token buffer once (one block) and grows the block list; pushing a
/// token never allocates otherwise.
#[derive(Clone, Debug)]
pub struct SequenceHashes {
    hasher: BlockHasher,
    pending: Vec<u32>,
    blocks: Vec<StoredBlock>,
}

impl SequenceHashes {
    pub fn new(hasher: BlockHasher) -> Self {
        Self {
            hasher,
            pending: Vec::with_capacity(hasher.block_size as usize),
            blocks: Vec::new(),
        }
    }

    /// Starts from a prompt: its full blocks are hashed, its partial tail kept pending.
    pub fn from_tokens(hasher: BlockHasher, token_ids: &[u32]) -> Self {
        let mut this = Self::new(hasher);
        this.blocks = hasher.hash_blocks(token_ids);
        let hashed = this.blocks.len() * hasher.block_size as usize;
        this.pending.extend_from_slice(&token_ids[hashed..]);
        this
    }

    /// Appends one token; returns the block it completed, if any.
    pub fn push(&mut self, token: u32) -> Option<StoredBlock> {
        self.pending.push(token);
        if self.pending.len() < self.hasher.block_size as usize {
            return None;
        }
        let content_hash = self.hasher.content_hash(&self.pending);
        self.pending.clear();
        let parent = self.blocks.last().map(|b| b.sequence_hash);
        let block = StoredBlock {
            sequence_hash: self.hasher.sequence_hash(parent, content_hash),
            content_hash,
        };
        self.blocks.push(block);
        Some(block)
    }

    /// Appends tokens; returns how many blocks they completed.
    pub fn extend(&mut self, tokens: &[u32]) -> usize {
        let before = self.blocks.len();
        for &t in tokens {
            self.push(t);
        }
        self.blocks.len() - before
    }

    /// Every full block so far, in order.
    pub fn blocks(&self) -> &[StoredBlock] {
        &self.blocks
    }

    /// The sequence hash of the last full block (the parent of the next one).
    pub fn last_sequence_hash(&self) -> Option<SequenceHash> {
        self.blocks.last().map(|b| b.sequence_hash)
    }

    /// Tokens waiting for their block to fill.
    pub fn pending_tokens(&self) -> &[u32] {
        &self.pending
    }

    pub fn hasher(&self) -> BlockHasher {
        self.hasher
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u32, offset: u32) -> Vec<u32> {
        (0..n)
            .map(|i| i.wrapping_mul(2_654_435_761) ^ offset)
            .collect()
    }

    #[test]
    fn cache_key_parts_change_every_hash_and_never_alias() {
        let prompt = tokens(8, 7);
        let key = |lora: Option<&str>, salt: Option<&str>| CacheKey {
            lora_name: lora.map(str::to_owned),
            cache_salt: salt.map(str::to_owned),
        };
        let hashes = |k: &CacheKey| {
            BlockHasher::for_cache_key(4, k)
                .hash_blocks(&prompt)
                .iter()
                .map(|b| b.sequence_hash)
                .collect::<Vec<_>>()
        };
        // No key hashes exactly as an unsalted hasher, so workers without the field agree.
        assert_eq!(hashes(&CacheKey::default()), {
            let h = BlockHasher::new(4, None).hash_blocks(&prompt);
            h.iter().map(|b| b.sequence_hash).collect::<Vec<_>>()
        });
        let variants = [
            key(None, None),
            key(Some("x"), None),
            key(None, Some("x")),
            key(Some("x"), Some("x")),
            key(Some("xy"), None),
            key(Some("x"), Some("y")),
            key(Some(""), None),
            key(None, Some("")),
        ];
        for (i, a) in variants.iter().enumerate() {
            for b in &variants[i + 1..] {
                let (ha, hb) = (hashes(a), hashes(b));
                assert!(
                    ha.iter().all(|h| !hb.contains(h)),
                    "{a:?} and {b:?} share a block hash"
                );
            }
        }
        assert_eq!(hashes(&variants[5]), hashes(&key(Some("x"), Some("y"))));
    }

    #[test]
    fn only_full_blocks_are_hashed() {
        let h = BlockHasher::new(4, None);
        assert_eq!(h.hash_blocks(&tokens(3, 0)).len(), 0);
        assert_eq!(h.hash_blocks(&tokens(4, 0)).len(), 1);
        assert_eq!(h.hash_blocks(&tokens(11, 0)).len(), 2);
        // The partial tail does not change the full blocks' hashes.
        assert_eq!(
            h.hash_blocks(&tokens(8, 0)),
            h.hash_blocks(&tokens(11, 0))[..2]
        );
    }

    #[test]
    fn equal_prefix_gives_equal_hashes_and_divergence_changes_all_later_ones() {
        let h = BlockHasher::new(4, None);
        let a = tokens(16, 0);
        let mut b = a.clone();
        b[9] ^= 1; // third block differs
        b[14] = a[14]; // fourth block's content equal to a's fourth block
        let (ha, hb) = (h.hash_blocks(&a), h.hash_blocks(&b));
        assert_eq!(ha[..2], hb[..2]);
        assert_ne!(ha[2].content_hash, hb[2].content_hash);
        assert_ne!(ha[2].sequence_hash, hb[2].sequence_hash);
        // Same content, different prefix: content hash equal, sequence hash not.
        assert_eq!(ha[3].content_hash, hb[3].content_hash);
        assert_ne!(ha[3].sequence_hash, hb[3].sequence_hash);
    }

    #[test]
    fn content_hash_is_xxh3_of_little_endian_tokens() {
        let h = BlockHasher::new(2, None);
        let expected = xxh3_64_with_seed(&[1, 0, 0, 0, 0, 1, 0, 0], 0);
        assert_eq!(h.content_hash(&[1, 256]), expected);
        let salted = BlockHasher::new(2, Some("lora-a"));
        assert_eq!(
            salted.content_hash(&[1, 256]),
            xxh3_64_with_seed(&[1, 0, 0, 0, 0, 1, 0, 0], xxh3_64(b"lora-a"))
        );
    }

    #[test]
    fn salt_changes_every_hash() {
        let t = tokens(64, 7);
        let plain = BlockHasher::new(8, None).hash_blocks(&t);
        for salt in ["lora-a", "lora-b", ""] {
            let salted = BlockHasher::new(8, Some(salt)).hash_blocks(&t);
            assert_eq!(salted.len(), plain.len());
            for (s, p) in salted.iter().zip(&plain) {
                assert_ne!(s.content_hash, p.content_hash, "salt {salt:?}");
                assert_ne!(s.sequence_hash, p.sequence_hash, "salt {salt:?}");
            }
        }
        let a = BlockHasher::new(8, Some("lora-a")).hash_blocks(&t);
        let b = BlockHasher::new(8, Some("lora-b")).hash_blocks(&t);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
    }

    #[test]
    fn large_blocks_stream_to_the_same_hash_as_one_shot() {
        let t = tokens(1000, 3);
        let h = BlockHasher::new(1000, None);
        let mut bytes = Vec::new();
        for x in &t {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(h.content_hash(&t), xxh3_64_with_seed(&bytes, 0));
    }

    #[test]
    fn incremental_equals_batch() {
        let h = BlockHasher::new(5, Some("salt"));
        let t = tokens(53, 11);
        let batch = h.hash_blocks(&t);
        let mut inc = SequenceHashes::new(h);
        let mut completed = Vec::new();
        for &x in &t {
            if let Some(b) = inc.push(x) {
                completed.push(b);
            }
        }
        assert_eq!(inc.blocks(), &batch[..]);
        assert_eq!(completed, batch);
        assert_eq!(inc.pending_tokens(), &t[50..]);

        // From a prompt, then generated tokens.
        let mut from_prompt = SequenceHashes::from_tokens(h, &t[..17]);
        assert_eq!(from_prompt.blocks(), &batch[..3]);
        assert_eq!(from_prompt.extend(&t[17..]), 7);
        assert_eq!(from_prompt.blocks(), &batch[..]);
        assert_eq!(
            from_prompt.last_sequence_hash(),
            Some(batch[9].sequence_hash)
        );

        let mut seqs = Vec::new();
        h.sequence_hashes_into(&t, &mut seqs);
        assert!(seqs.iter().zip(&batch).all(|(s, b)| *s == b.sequence_hash));
        assert_eq!(seqs.len(), batch.len());
    }
}
