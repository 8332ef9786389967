//! KV cache events: what a worker reports about the blocks its prefix cache holds.
//!
//! The shape follows vLLM's KV events (`BlockStored` / `BlockRemoved` / `AllBlocksCleared`) as
//! Dynamo carries them, with one difference: block identities are Switchyard's own hashes,
//! computed from token ids (see the `kv-index` crate's `hashing`), so routing never depends on
//! an engine's hash algorithm. Engines that report their own hashes are translated at ingestion.

use serde::{Deserialize, Serialize};

/// A chained hash identifying a block *and* everything before it (a prefix).
pub type SequenceHash = u64;
/// A hash of one block's token ids alone.
pub type ContentHash = u64;

/// One full block newly stored in a worker's cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredBlock {
    pub sequence_hash: SequenceHash,
    pub content_hash: ContentHash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KvCacheEventData {
    /// Consecutive blocks stored after `parent` (`None`: they start a sequence).
    Stored {
        parent: Option<SequenceHash>,
        blocks: Vec<StoredBlock>,
    },
    /// Blocks evicted from the cache.
    Removed { sequence_hashes: Vec<SequenceHash> },
    /// The whole cache was dropped (engine restart, reset).
    Cleared,
}

/// One event of one worker, numbered so receivers can detect gaps and reordering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCacheEvent {
    /// Per-worker sequence number, increasing by one per event.
    pub event_id: u64,
    pub data: KvCacheEventData,
}
