//! KV cache accounting for the mocker.
//!
//! Today this counts blocks: a sequence holding `t` computed tokens holds `ceil(t / block_size)`
//! blocks, and the pool has a fixed number of them. Sequences own a [`KvAllocation`] that only
//! the [`KvManager`] can grow or release, so the paged block manager (block hashes, prefix
//! caching, LRU reuse of freed blocks, KV events) can replace the counter behind the same calls.

/// The blocks one sequence holds. Deliberately not `Clone`: exactly one owner per allocation.
#[derive(Debug, Default)]
pub struct KvAllocation {
    blocks: usize,
}

impl KvAllocation {
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

/// The engine's pool of KV blocks.
#[derive(Debug)]
pub struct KvManager {
    block_size: usize,
    total_blocks: usize,
    used_blocks: usize,
}

impl KvManager {
    /// `block_size` and `total_blocks` are validated non-zero by the engine config.
    pub fn new(block_size: usize, total_blocks: usize) -> Self {
        KvManager {
            block_size: block_size.max(1),
            total_blocks,
            used_blocks: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total_blocks(&self) -> usize {
        self.total_blocks
    }

    pub fn used_blocks(&self) -> usize {
        self.used_blocks
    }

    pub fn free_blocks(&self) -> usize {
        self.total_blocks - self.used_blocks
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Grows `alloc` to cover `tokens` tokens. Returns false, changing nothing, when the pool
    /// lacks the blocks.
    pub fn grow(&mut self, alloc: &mut KvAllocation, tokens: usize) -> bool {
        let needed = self.blocks_for(tokens).saturating_sub(alloc.blocks);
        if needed > self.free_blocks() {
            return false;
        }
        self.used_blocks += needed;
        alloc.blocks += needed;
        true
    }

    /// Returns every block of `alloc` to the pool.
    pub fn release(&mut self, alloc: &mut KvAllocation) {
        self.used_blocks -= alloc.blocks;
        alloc.blocks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_whole_blocks_and_releases() {
        let mut kv = KvManager::new(16, 4);
        let mut a = KvAllocation::default();
        assert!(kv.grow(&mut a, 1));
        assert_eq!((a.blocks(), kv.used_blocks()), (1, 1));
        assert!(kv.grow(&mut a, 16));
        assert_eq!(a.blocks(), 1, "16 tokens still fit one block");
        assert!(kv.grow(&mut a, 17));
        assert_eq!((a.blocks(), kv.free_blocks()), (2, 2));
        kv.release(&mut a);
        assert_eq!((a.blocks(), kv.used_blocks()), (0, 0));
    }

    #[test]
    fn refuses_when_pool_is_short_without_partial_allocation() {
        let mut kv = KvManager::new(4, 3);
        let mut a = KvAllocation::default();
        let mut b = KvAllocation::default();
        assert!(kv.grow(&mut a, 8));
        assert!(!kv.grow(&mut b, 8), "needs 2 blocks, 1 free");
        assert_eq!((b.blocks(), kv.used_blocks()), (0, 2));
        assert!(kv.grow(&mut b, 4));
        assert_eq!(kv.free_blocks(), 0);
    }
}
