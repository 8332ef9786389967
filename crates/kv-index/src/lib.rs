//! Block hashing and the KV index: which workers hold which prefix blocks of a request.
//!
//! - [`hashing`]: [`BlockHasher`] turns token ids into full blocks, each with a content hash
//!   (XXH3-64 of its tokens, seeded by the LoRA name / cache salt) and a chained sequence hash
//!   (equal sequence hash ⇔ equal prefix). [`SequenceHashes`] extends a growing sequence's
//!   hashes token by token.
//! - [`index`]: [`KvIndex`], the exact index. It applies each worker's KV cache events
//!   (`stored` / `removed` / `cleared` from `switchyard_protocol::kv`) keyed by [`WorkerKey`],
//!   and [`KvIndex::find_matches`] answers, for a request's sequence hashes, how many leading
//!   blocks each worker holds ([`OverlapScores`]). Anomalies are counted in [`IndexStats`].
//! - [`approx`]: [`ApproxIndex`], the same lookup over the router's own predictions when
//!   workers publish no events: recorded blocks expire after a TTL and the oldest are pruned
//!   when the index grows past its cap ([`ApproxConfig`]).
//!
//! Both indexes share one core (`table`): a flat hash map from sequence hash to the block's
//! place in a *run*, a stretch of consecutive blocks with the same holders (a compressed
//! radix-tree edge) whose holders are a bitset over dense worker slots. Because a sequence hash
//! names a block's whole prefix, no parent/child links are needed: a lookup probes the map once
//! per run, compares the request's following hashes against the run's array, and stops at the
//! first block no remaining candidate holds. Events split runs where holders diverge and merge
//! them back when they agree again; a block nobody holds leaves the map.
//! Everything here is synchronous and does no I/O.

pub mod approx;
mod block_map;
pub mod hashing;
pub mod index;
mod table;

pub use approx::{ApproxConfig, ApproxIndex, ApproxStats};
pub use hashing::{BlockHasher, SequenceHashes};
pub use index::{IndexError, IndexStats, KvIndex};
pub use table::{OverlapScores, WorkerKey, WorkerOverlap};
