//! Replica sync (`--router-replica-sync`): frontend replicas share their in-flight routing
//! decisions, so each accounts the load the others put on workers. KV events already give all
//! replicas the same cache view; without this, each would see only its own requests in flight
//! and several could pile onto the same "idle" worker.
//!
//! A decision travels as [`ReplicaMessage::Routed`], then [`ReplicaMessage::PrefillDone`] and
//! [`ReplicaMessage::Released`] as the request progresses. A replica applies another's
//! messages to the same per-worker counters its own decisions use. Entries of a replica that
//! died without releasing expire after [`REMOTE_DECISION_TTL`], and at most
//! [`MAX_REMOTE_DECISIONS`] are tracked, so memory stays bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_runtime::WorkerId;

use crate::WorkerLoad;

/// How long another replica's decision counts without news of it.
pub const REMOTE_DECISION_TTL: Duration = Duration::from_secs(600);

/// Most decisions of other replicas tracked at once; the oldest go first past it.
pub const MAX_REMOTE_DECISIONS: usize = 1 << 16;

/// One replica's news about one of its routing decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReplicaMessage {
    Routed {
        model: String,
        /// Unique within the sending replica.
        id: u64,
        worker: WorkerId,
        prompt_tokens: u64,
        pending_prefill_tokens: u64,
        blocks: u64,
    },
    PrefillDone {
        model: String,
        id: u64,
    },
    Released {
        model: String,
        id: u64,
    },
}

impl ReplicaMessage {
    pub fn model(&self) -> &str {
        match self {
            ReplicaMessage::Routed { model, .. }
            | ReplicaMessage::PrefillDone { model, .. }
            | ReplicaMessage::Released { model, .. } => model,
        }
    }
}

/// Where a router sends news of its own decisions (the event plane, in a frontend).
pub trait DecisionSink: Send + Sync + 'static {
    fn send(&self, message: ReplicaMessage);
}

/// Another replica's decision, as applied to a worker's counters here.
struct RemoteDecision {
    load: Arc<WorkerLoad>,
    prompt_tokens: u64,
    pending_prefill_tokens: u64,
    blocks: u64,
    at: Instant,
}

impl RemoteDecision {
    fn release_prefill(&mut self) {
        let pending = std::mem::take(&mut self.pending_prefill_tokens);
        self.load
            .pending_prefill_tokens
            .fetch_sub(pending, Ordering::Relaxed);
    }

    fn release(mut self) {
        self.release_prefill();
        self.load.release_request(self.prompt_tokens, self.blocks);
    }
}

/// Other replicas' decisions in flight, by (sender, id).
#[derive(Default)]
pub(crate) struct RemoteDecisions {
    entries: HashMap<(Arc<str>, u64), RemoteDecision>,
}

impl RemoteDecisions {
    /// Applies one message; `load_of` finds a worker's counters (`None`: not a worker here).
    pub(crate) fn apply(
        &mut self,
        sender: &str,
        message: &ReplicaMessage,
        load_of: impl Fn(WorkerId) -> Option<Arc<WorkerLoad>>,
    ) {
        let now = Instant::now();
        match message {
            ReplicaMessage::Routed {
                id,
                worker,
                prompt_tokens,
                pending_prefill_tokens,
                blocks,
                ..
            } => {
                let Some(load) = load_of(*worker) else {
                    return;
                };
                self.expire(now);
                load.active_requests.fetch_add(1, Ordering::Relaxed);
                load.active_prompt_tokens
                    .fetch_add(*prompt_tokens, Ordering::Relaxed);
                load.pending_prefill_tokens
                    .fetch_add(*pending_prefill_tokens, Ordering::Relaxed);
                load.active_blocks.fetch_add(*blocks, Ordering::Relaxed);
                let previous = self.entries.insert(
                    (Arc::from(sender), *id),
                    RemoteDecision {
                        load,
                        prompt_tokens: *prompt_tokens,
                        pending_prefill_tokens: *pending_prefill_tokens,
                        blocks: *blocks,
                        at: now,
                    },
                );
                // A repeated id (a restarted replica reusing ids) replaces the old decision.
                if let Some(old) = previous {
                    old.release();
                }
            }
            ReplicaMessage::PrefillDone { id, .. } => {
                if let Some(entry) = self.entries.get_mut(&(Arc::from(sender), *id)) {
                    entry.release_prefill();
                }
            }
            ReplicaMessage::Released { id, .. } => {
                if let Some(entry) = self.entries.remove(&(Arc::from(sender), *id)) {
                    entry.release();
                }
            }
        }
    }

    /// Drops decisions older than the TTL, and the oldest past the size bound. The full sweep
    /// runs only at the bound or when a sampled entry is stale, so a decision costs O(1) here.
    fn expire(&mut self, now: Instant) {
        let sample_stale = self
            .entries
            .values()
            .next()
            .is_some_and(|e| now.duration_since(e.at) > REMOTE_DECISION_TTL);
        if self.entries.len() < MAX_REMOTE_DECISIONS && !sample_stale {
            return;
        }
        let mut stale: Vec<((Arc<str>, u64), Instant)> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.at))
            .collect();
        stale.sort_by_key(|(_, at)| *at);
        let excess = (self.entries.len() + 1).saturating_sub(MAX_REMOTE_DECISIONS);
        for (i, (key, at)) in stale.into_iter().enumerate() {
            if i < excess || now.duration_since(at) > REMOTE_DECISION_TTL {
                if let Some(entry) = self.entries.remove(&key) {
                    entry.release();
                }
            } else {
                break;
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
