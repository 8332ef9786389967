//! Worker selection and load accounting.
//!
//! - [`Router`]: holds the workers of one model and picks one per request according to its
//!   [`RouterMode`].
//! - [`LoadGuard`]: returned with every decision; it holds the chosen worker's load until it is
//!   dropped, so load is released on every path (success, error, cancel, panic unwinding).
//! - [`WorkerLoadSnapshot`]: per-worker counters for metrics.
//!
//! Invariant: the router does no I/O; it sees workers only as [`WorkerInstance`]s.

pub mod kv;
pub mod replica;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use switchyard_kv_index::hashing::BlockHasher;
use switchyard_kv_index::{ApproxConfig, ApproxIndex, KvIndex, OverlapScores};
use switchyard_protocol::kv::KvCacheEvent;
use switchyard_protocol::{EngineCapabilities, PreprocessedRequest};
use switchyard_runtime::{WorkerId, WorkerInstance};

use crate::replica::{DecisionSink, RemoteDecisions, ReplicaMessage};

use crate::kv::{Candidate, KvSelectorConfig};

/// How the router picks a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterMode {
    RoundRobin,
    Random,
    /// Two workers at random, the less loaded of them.
    PowerOfTwo,
    /// The worker with the fewest active requests.
    LeastLoaded,
    /// Cache-aware: prefix overlap from the KV index against load (see [`kv`]).
    Kv,
}

impl FromStr for RouterMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "round_robin" => Ok(RouterMode::RoundRobin),
            "random" => Ok(RouterMode::Random),
            "power-of-two" | "power_of_two" => Ok(RouterMode::PowerOfTwo),
            "least-loaded" | "least_loaded" => Ok(RouterMode::LeastLoaded),
            "kv" => Ok(RouterMode::Kv),
            other => Err(format!(
                "unknown router mode `{other}`; expected one of: round-robin, random, power-of-two, least-loaded, kv"
            )),
        }
    }
}

impl RouterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RouterMode::RoundRobin => "round-robin",
            RouterMode::Random => "random",
            RouterMode::PowerOfTwo => "power-of-two",
            RouterMode::LeastLoaded => "least-loaded",
            RouterMode::Kv => "kv",
        }
    }
}

/// Everything that shapes routing decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    pub mode: RouterMode,
    /// KV block size to hash with; `None`: the workers' own (they must agree).
    pub block_size: Option<u32>,
    pub selector: KvSelectorConfig,
    /// `Some`: approximate mode (`--no-kv-events`): the router predicts cache contents from its
    /// own decisions instead of workers' KV events.
    pub approximate: Option<ApproxConfig>,
}

impl RouterConfig {
    pub fn new(mode: RouterMode) -> Self {
        RouterConfig {
            mode,
            block_size: None,
            selector: KvSelectorConfig::default(),
            approximate: None,
        }
    }
}

/// Where the router's belief about worker caches comes from.
enum CacheView {
    /// Workers' KV events.
    Events(RwLock<KvIndex>),
    /// The router's own past decisions, expiring after a TTL.
    Approximate {
        index: Mutex<ApproxIndex>,
        epoch: std::time::Instant,
    },
}

/// Block size used when neither the flag nor any worker names one.
pub const DEFAULT_BLOCK_SIZE: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("no worker is serving model `{0}`")]
    NoWorkers(String),
    #[error("no other worker is serving model `{0}`")]
    NoOtherWorkers(String),
}

/// Live counters of one worker, shared by the router and every outstanding [`LoadGuard`].
#[derive(Debug, Default)]
struct WorkerLoad {
    active_requests: AtomicU64,
    active_prompt_tokens: AtomicU64,
    pending_prefill_tokens: AtomicU64,
    active_blocks: AtomicU64,
    decisions: AtomicU64,
    /// Request blocks routed here / of those, blocks the index said it already held.
    routed_blocks: AtomicU64,
    overlap_blocks: AtomicU64,
    /// The worker's own last report of blocks in use (corrects the router's estimate).
    reported_blocks: AtomicU64,
}

impl WorkerLoad {
    /// Ends one request's share of the load (its prefill share goes with `release_prefill`).
    fn release_request(&self, prompt_tokens: u64, blocks: u64) {
        self.active_requests.fetch_sub(1, Ordering::Relaxed);
        self.active_prompt_tokens
            .fetch_sub(prompt_tokens, Ordering::Relaxed);
        self.active_blocks.fetch_sub(blocks, Ordering::Relaxed);
    }
}

struct WorkerSlot {
    instance: Arc<WorkerInstance>,
    load: Arc<WorkerLoad>,
}

/// Routes the requests of one model.
pub struct Router {
    model: String,
    config: RouterConfig,
    workers: RwLock<Vec<WorkerSlot>>,
    next: AtomicUsize,
    /// The block size hashing uses; fixed by the flag or the first worker that names one.
    block_size: Mutex<Option<u32>>,
    cache: CacheView,
    /// Where news of this router's decisions goes (`--router-replica-sync`).
    replica_sink: RwLock<Option<Arc<dyn DecisionSink>>>,
    next_decision_id: AtomicU64,
    /// Other replicas' decisions in flight, applied to the same counters.
    remote: Mutex<RemoteDecisions>,
}

/// A decision other replicas were told about: they hear when its prefill ends and when it is
/// released.
struct ReplicaLink {
    sink: Arc<dyn DecisionSink>,
    model: String,
    id: u64,
}

/// The worker chosen for a request, holding its load until dropped.
pub struct LoadGuard {
    instance: Arc<WorkerInstance>,
    load: Arc<WorkerLoad>,
    prompt_tokens: u64,
    pending_prefill_tokens: u64,
    blocks: u64,
    overlap_blocks: u32,
    replica: Option<ReplicaLink>,
}

impl LoadGuard {
    pub fn worker(&self) -> &WorkerInstance {
        &self.instance
    }

    /// Leading prompt blocks the chosen worker was believed to hold.
    pub fn overlap_blocks(&self) -> u32 {
        self.overlap_blocks
    }

    /// The worker produced its first token: its prefill for this request is done.
    pub fn prefill_done(&mut self) {
        let pending = std::mem::take(&mut self.pending_prefill_tokens);
        self.load
            .pending_prefill_tokens
            .fetch_sub(pending, Ordering::Relaxed);
        if pending > 0
            && let Some(link) = &self.replica
        {
            link.sink.send(ReplicaMessage::PrefillDone {
                model: link.model.clone(),
                id: link.id,
            });
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.prefill_done();
        self.load.release_request(self.prompt_tokens, self.blocks);
        if let Some(link) = self.replica.take() {
            link.sink.send(ReplicaMessage::Released {
                model: link.model,
                id: link.id,
            });
        }
    }
}

/// One worker's counters at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerLoadSnapshot {
    pub worker: WorkerId,
    pub active_requests: u64,
    pub active_prompt_tokens: u64,
    pub pending_prefill_tokens: u64,
    pub active_blocks: u64,
    pub decisions: u64,
    pub routed_blocks: u64,
    pub overlap_blocks: u64,
}

impl Router {
    pub fn new(model: impl Into<String>, config: RouterConfig) -> Self {
        let cache = match config.approximate {
            Some(approx) => CacheView::Approximate {
                index: Mutex::new(ApproxIndex::new(approx)),
                epoch: std::time::Instant::now(),
            },
            None => CacheView::Events(RwLock::new(KvIndex::new())),
        };
        Router {
            model: model.into(),
            block_size: Mutex::new(config.block_size),
            config,
            workers: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            cache,
            replica_sink: RwLock::new(None),
            next_decision_id: AtomicU64::new(0),
            remote: Mutex::new(RemoteDecisions::default()),
        }
    }

    /// Sends news of every decision from now on to `sink` (`--router-replica-sync`).
    pub fn set_replica_sink(&self, sink: Arc<dyn DecisionSink>) {
        *self.replica_sink.write() = Some(sink);
    }

    /// Applies another replica's news (`sender` names the replica) to the workers' counters.
    pub fn apply_replica_message(&self, sender: &str, message: &ReplicaMessage) {
        let workers = self.workers.read();
        self.remote.lock().apply(sender, message, |worker| {
            workers
                .iter()
                .find(|s| s.instance.id == worker)
                .map(|s| s.load.clone())
        });
    }

    /// Other replicas' decisions counted here now.
    pub fn remote_decisions(&self) -> usize {
        self.remote.lock().len()
    }

    pub fn mode(&self) -> RouterMode {
        self.config.mode
    }

    /// The block size routing hashes with.
    pub fn block_size(&self) -> u32 {
        self.block_size.lock().unwrap_or(DEFAULT_BLOCK_SIZE)
    }

    /// Replaces the worker set. Workers that stay keep their counters; a removed worker's
    /// outstanding guards still release into their own (now detached) counters, and its index
    /// entries are dropped. A worker whose KV block size differs from the model's is refused
    /// (with an error naming both sizes): routing keys would silently never match.
    pub fn set_workers(&self, instances: &[WorkerInstance]) {
        let mut workers = self.workers.write();
        let mut next: Vec<WorkerSlot> = Vec::with_capacity(instances.len());
        {
            let mut block_size = self.block_size.lock();
            for instance in instances {
                if let Some(worker_size) = instance.kv_block_size {
                    match *block_size {
                        None => *block_size = Some(worker_size),
                        Some(size) if size != worker_size => {
                            tracing::error!(
                                model = %self.model,
                                worker = %instance.id,
                                "worker {} reports KV block size {worker_size} but model `{}` routes with block size {size}; the worker is not used",
                                instance.id,
                                self.model
                            );
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                let load = workers
                    .iter()
                    .find(|slot| slot.instance.id == instance.id)
                    .map(|slot| slot.load.clone())
                    .unwrap_or_default();
                next.push(WorkerSlot {
                    instance: Arc::new(instance.clone()),
                    load,
                });
            }
        }
        next.sort_by_key(|slot| slot.instance.id);
        let gone: Vec<WorkerId> = workers
            .iter()
            .map(|slot| slot.instance.id)
            .filter(|id| !next.iter().any(|slot| slot.instance.id == *id))
            .collect();
        for id in gone {
            match &self.cache {
                CacheView::Events(index) => index.write().remove_worker(id.0),
                CacheView::Approximate { index, .. } => index.lock().remove_worker(id.0),
            }
        }
        if let CacheView::Events(index) = &self.cache {
            // The index never holds more distinct blocks than the workers can cache in all.
            let capacity: u64 = next
                .iter()
                .filter_map(|slot| slot.instance.kv_total_blocks)
                .sum();
            index
                .write()
                .expect_blocks(usize::try_from(capacity).unwrap_or(usize::MAX));
        }
        *workers = next;
    }

    /// What every current worker can honour (`None` without workers): a request needing more
    /// would be served differently depending on where it lands.
    pub fn capabilities(&self) -> Option<EngineCapabilities> {
        self.workers
            .read()
            .iter()
            .map(|slot| slot.instance.capabilities)
            .reduce(EngineCapabilities::intersect)
    }

    /// The distinct engine kinds of the current workers, sorted.
    pub fn engine_kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .workers
            .read()
            .iter()
            .map(|slot| slot.instance.engine.clone())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    pub fn worker_count(&self) -> usize {
        self.workers.read().len()
    }

    /// Applies a worker's KV cache event to the index (events from unknown workers are ignored).
    pub fn apply_kv_event(&self, worker: WorkerId, event: &KvCacheEvent) {
        if !self.workers.read().iter().any(|s| s.instance.id == worker) {
            return;
        }
        let CacheView::Events(index) = &self.cache else {
            return;
        };
        if let Err(e) = index.write().apply_event(worker.0, event) {
            tracing::debug!(model = %self.model, %worker, error = %e, "KV event not applied cleanly");
        }
    }

    /// Replaces the index's view of `worker` with a dump of its cache (see
    /// [`KvIndex::load_dump`]); ignored for unknown workers and in approximate mode. Returns the
    /// blocks recorded.
    pub fn apply_kv_dump(&self, worker: WorkerId, events: &[KvCacheEvent]) -> usize {
        if !self.workers.read().iter().any(|s| s.instance.id == worker) {
            return 0;
        }
        let CacheView::Events(index) = &self.cache else {
            return 0;
        };
        let blocks = index.write().load_dump(worker.0, events);
        tracing::info!(model = %self.model, %worker, blocks, "KV cache dump loaded");
        blocks
    }

    /// Whether this router follows KV events (and so wants cache dumps).
    pub fn uses_kv_events(&self) -> bool {
        self.config.mode == RouterMode::Kv && matches!(self.cache, CacheView::Events(_))
    }

    /// Records a worker's own count of KV blocks in use.
    pub fn apply_load_report(&self, worker: WorkerId, used_blocks: u64) {
        if let Some(slot) = self.workers.read().iter().find(|s| s.instance.id == worker) {
            slot.load
                .reported_blocks
                .store(used_blocks, Ordering::Relaxed);
        }
    }

    /// Blocks in the KV index (all workers).
    pub fn index_blocks(&self) -> usize {
        match &self.cache {
            CacheView::Events(index) => index.read().block_count(),
            CacheView::Approximate { index, .. } => index.lock().block_count(),
        }
    }

    /// Estimated heap bytes of the KV index (events or approximate).
    pub fn index_memory_bytes(&self) -> usize {
        match &self.cache {
            CacheView::Events(index) => index.read().memory_bytes(),
            CacheView::Approximate { index, .. } => index.lock().memory_bytes(),
        }
    }

    /// Picks a worker for `request` and accounts its load.
    pub fn select(&self, request: &PreprocessedRequest) -> Result<LoadGuard, RouterError> {
        self.select_excluding(request, &[])
    }

    /// [`Router::select`] among the workers not in `exclude` (those that already failed this
    /// request: a migrated or retried request must not go back to them while discovery still
    /// lists them).
    pub fn select_excluding(
        &self,
        request: &PreprocessedRequest,
        exclude: &[WorkerId],
    ) -> Result<LoadGuard, RouterError> {
        let workers = self.workers.read();
        let allowed = |i: usize| !exclude.contains(&workers[i].instance.id);
        let eligible = if exclude.is_empty() {
            workers.len()
        } else {
            (0..workers.len()).filter(|&i| allowed(i)).count()
        };
        if eligible == 0 {
            return Err(if workers.is_empty() {
                RouterError::NoWorkers(self.model.clone())
            } else {
                RouterError::NoOtherWorkers(self.model.clone())
            });
        }
        // The k-th eligible worker (k < eligible).
        let nth_eligible = |k: usize| {
            (0..workers.len())
                .filter(|&i| allowed(i))
                .nth(k)
                .unwrap_or(0)
        };
        let prompt_tokens = request.token_ids.len() as u64;
        let block_size = self.block_size();
        let request_blocks = prompt_tokens.div_ceil(u64::from(block_size));
        let (index, overlap_blocks) = match self.config.mode {
            RouterMode::RoundRobin => (
                nth_eligible(self.next.fetch_add(1, Ordering::Relaxed) % eligible),
                0,
            ),
            RouterMode::Random => (nth_eligible(rand::rng().random_range(0..eligible)), 0),
            RouterMode::PowerOfTwo => {
                let mut rng = rand::rng();
                let a = nth_eligible(rng.random_range(0..eligible));
                let b = nth_eligible(rng.random_range(0..eligible));
                let load = |i: usize| workers[i].load.active_requests.load(Ordering::Relaxed);
                (if load(b) < load(a) { b } else { a }, 0)
            }
            RouterMode::LeastLoaded => {
                // Start the scan at a rotating offset so ties spread instead of piling on the
                // first worker.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let n = workers.len();
                let best = (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| allowed(i))
                    .min_by_key(|&i| workers[i].load.active_requests.load(Ordering::Relaxed))
                    .unwrap_or(0);
                (best, 0)
            }
            RouterMode::Kv => self.select_kv(&workers, request, block_size, exclude),
        };
        let slot = &workers[index];
        let load = &slot.load;
        let pending_prefill_tokens =
            prompt_tokens.saturating_sub(u64::from(overlap_blocks) * u64::from(block_size));
        load.active_requests.fetch_add(1, Ordering::Relaxed);
        load.active_prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        load.pending_prefill_tokens
            .fetch_add(pending_prefill_tokens, Ordering::Relaxed);
        load.active_blocks
            .fetch_add(request_blocks, Ordering::Relaxed);
        load.decisions.fetch_add(1, Ordering::Relaxed);
        load.routed_blocks
            .fetch_add(request_blocks, Ordering::Relaxed);
        load.overlap_blocks
            .fetch_add(u64::from(overlap_blocks), Ordering::Relaxed);
        let replica = self.replica_sink.read().clone().map(|sink| {
            let id = self.next_decision_id.fetch_add(1, Ordering::Relaxed);
            sink.send(ReplicaMessage::Routed {
                model: self.model.clone(),
                id,
                worker: slot.instance.id,
                prompt_tokens,
                pending_prefill_tokens,
                blocks: request_blocks,
            });
            ReplicaLink {
                sink,
                model: self.model.clone(),
                id,
            }
        });
        Ok(LoadGuard {
            instance: slot.instance.clone(),
            load: load.clone(),
            prompt_tokens,
            pending_prefill_tokens,
            blocks: request_blocks,
            overlap_blocks,
            replica,
        })
    }

    fn select_kv(
        &self,
        workers: &[WorkerSlot],
        request: &PreprocessedRequest,
        block_size: u32,
        exclude: &[WorkerId],
    ) -> (usize, u32) {
        let hasher = BlockHasher::for_cache_key(block_size, &request.cache_key);
        let mut hashes = Vec::with_capacity(request.token_ids.len() / block_size as usize + 1);
        hasher.sequence_hashes_into(&request.token_ids, &mut hashes);
        let mut scores = OverlapScores::default();
        // In approximate mode the index stays locked from lookup to record, so two concurrent
        // decisions see each other.
        let mut approx = match &self.cache {
            CacheView::Events(index) => {
                index.read().find_matches_into(&hashes, &mut scores);
                None
            }
            CacheView::Approximate { index, epoch } => {
                let now_ms = epoch.elapsed().as_millis() as u64;
                let mut index = index.lock();
                scores = index.find_matches_at(&hashes, now_ms);
                Some((index, now_ms))
            }
        };
        // Positions in `workers` of the candidates (they differ only when some are excluded).
        let positions: smallvec::SmallVec<[usize; 16]> = (0..workers.len())
            .filter(|&i| !exclude.contains(&workers[i].instance.id))
            .collect();
        let candidates: smallvec::SmallVec<[Candidate; 16]> = positions
            .iter()
            .map(|&i| &workers[i])
            .map(|slot| {
                let load = &slot.load;
                let tracked = load.active_blocks.load(Ordering::Relaxed);
                let reported = load.reported_blocks.load(Ordering::Relaxed);
                Candidate {
                    worker: slot.instance.id.0,
                    overlap_blocks: scores.get(slot.instance.id.0),
                    active_requests: load.active_requests.load(Ordering::Relaxed),
                    pending_prefill_tokens: load.pending_prefill_tokens.load(Ordering::Relaxed),
                    active_blocks: tracked.max(reported),
                }
            })
            .collect();
        let chosen = kv::choose(
            &self.config.selector,
            &candidates,
            request.token_ids.len() as u64,
            hashes.len() as u32,
            block_size,
            &mut rand::rng(),
        );
        if let Some((index, now_ms)) = approx.as_mut() {
            index.record(candidates[chosen].worker, &hashes, *now_ms);
        }
        (positions[chosen], candidates[chosen].overlap_blocks)
    }

    /// Counters of the current workers, for metrics.
    pub fn loads(&self) -> Vec<WorkerLoadSnapshot> {
        self.workers
            .read()
            .iter()
            .map(|slot| {
                let l = &slot.load;
                WorkerLoadSnapshot {
                    worker: slot.instance.id,
                    active_requests: l.active_requests.load(Ordering::Relaxed),
                    active_prompt_tokens: l.active_prompt_tokens.load(Ordering::Relaxed),
                    pending_prefill_tokens: l.pending_prefill_tokens.load(Ordering::Relaxed),
                    active_blocks: l.active_blocks.load(Ordering::Relaxed),
                    decisions: l.decisions.load(Ordering::Relaxed),
                    routed_blocks: l.routed_blocks.load(Ordering::Relaxed),
                    overlap_blocks: l.overlap_blocks.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_runtime::Endpoint;

    fn instance(id: u64) -> WorkerInstance {
        WorkerInstance {
            capabilities: Default::default(),
            id: WorkerId(id),
            namespace: "ns".into(),
            model_name: "m".into(),
            model_path: "/m".into(),
            endpoint: Endpoint::InProcess,
            engine: "echo".into(),
            kv_block_size: None,
            kv_total_blocks: None,
            context_length: None,
            limits: Default::default(),
        }
    }

    fn request(tokens: usize) -> PreprocessedRequest {
        PreprocessedRequest {
            token_ids: vec![1; tokens],
            ..Default::default()
        }
    }

    /// Delivers one router's replica news to another, as the event plane would.
    struct Relay {
        to: Arc<Router>,
        sent: Mutex<Vec<ReplicaMessage>>,
    }

    impl DecisionSink for Relay {
        fn send(&self, message: ReplicaMessage) {
            self.to.apply_replica_message("replica-a", &message);
            self.sent.lock().push(message);
        }
    }

    #[test]
    fn replicas_count_each_others_decisions_until_released() {
        let a = Router::new("m", RouterConfig::new(RouterMode::LeastLoaded));
        let b = Arc::new(Router::new("m", RouterConfig::new(RouterMode::LeastLoaded)));
        a.set_workers(&[instance(1), instance(2)]);
        b.set_workers(&[instance(1), instance(2)]);
        let relay = Arc::new(Relay {
            to: b.clone(),
            sent: Mutex::new(Vec::new()),
        });
        a.set_replica_sink(relay.clone());
        let mut first = a.select(&request(32)).unwrap();
        let busy = first.worker().id;
        let on_b = |w: WorkerId| b.loads().into_iter().find(|l| l.worker == w).unwrap();
        assert_eq!(on_b(busy).active_requests, 1);
        assert_eq!(on_b(busy).pending_prefill_tokens, 32);
        assert_eq!(on_b(busy).decisions, 0, "B made no decision itself");
        // B now sends its own request to the other worker: the replicas do not pile up.
        let mine = b.select(&request(8)).unwrap();
        assert_ne!(mine.worker().id, busy);
        first.prefill_done();
        assert_eq!(on_b(busy).pending_prefill_tokens, 0);
        drop(first);
        assert_eq!(on_b(busy).active_requests, 0);
        assert_eq!(on_b(busy).active_blocks, 0);
        assert_eq!(b.remote_decisions(), 0);
        let ops: Vec<&str> = relay
            .sent
            .lock()
            .iter()
            .map(|m| match m {
                ReplicaMessage::Routed { .. } => "routed",
                ReplicaMessage::PrefillDone { .. } => "prefill_done",
                ReplicaMessage::Released { .. } => "released",
            })
            .collect();
        assert_eq!(ops, ["routed", "prefill_done", "released"]);
        // News about unknown workers or decisions is ignored.
        b.apply_replica_message(
            "x",
            &ReplicaMessage::Routed {
                model: "m".into(),
                id: 1,
                worker: WorkerId(99),
                prompt_tokens: 1,
                pending_prefill_tokens: 1,
                blocks: 1,
            },
        );
        b.apply_replica_message(
            "x",
            &ReplicaMessage::Released {
                model: "m".into(),
                id: 7,
            },
        );
        assert_eq!(b.remote_decisions(), 0);
        assert!(
            b.loads()
                .iter()
                .all(|l| l.active_requests == u64::from(l.worker == mine.worker().id))
        );
        let wire = serde_json::to_string(&relay.sent.lock()[0]).unwrap();
        assert!(wire.contains("\"op\":\"routed\""), "{wire}");
    }

    #[test]
    fn round_robin_cycles_and_guards_release_load() {
        let router = Router::new("m", RouterConfig::new(RouterMode::RoundRobin));
        router.set_workers(&[instance(2), instance(1)]);
        let guards: Vec<_> = (0..4)
            .map(|_| router.select(&request(3)).unwrap())
            .collect();
        let ids: Vec<u64> = guards.iter().map(|g| g.worker().id.0).collect();
        assert_eq!(ids, vec![1, 2, 1, 2]);
        assert!(
            router
                .loads()
                .iter()
                .all(|l| l.active_requests == 2 && l.active_prompt_tokens == 6 && l.decisions == 2)
        );
        drop(guards);
        assert!(
            router
                .loads()
                .iter()
                .all(|l| l.active_requests == 0 && l.active_prompt_tokens == 0)
        );
    }

    #[test]
    fn no_workers_is_an_error_and_removed_workers_keep_guards_valid() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Random));
        assert_eq!(
            router.select(&request(1)).err(),
            Some(RouterError::NoWorkers("m".into()))
        );
        router.set_workers(&[instance(1)]);
        let guard = router.select(&request(1)).unwrap();
        router.set_workers(&[]);
        drop(guard);
        router.set_workers(&[instance(1)]);
        assert_eq!(router.loads()[0].active_requests, 0);
    }

    #[test]
    fn kept_workers_keep_their_counters_across_updates() {
        let router = Router::new("m", RouterConfig::new(RouterMode::RoundRobin));
        router.set_workers(&[instance(1)]);
        let _guard = router.select(&request(1)).unwrap();
        router.set_workers(&[instance(1), instance(2)]);
        let loads = router.loads();
        assert_eq!(loads[0].active_requests, 1);
        assert_eq!(loads[1].active_requests, 0);
    }

    #[test]
    fn random_mode_reaches_every_worker() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Random));
        router.set_workers(&[instance(1), instance(2), instance(3)]);
        for _ in 0..300 {
            drop(router.select(&request(1)).unwrap());
        }
        assert!(router.loads().iter().all(|l| l.decisions > 30));
    }

    fn kv_instance(id: u64, block_size: u32) -> WorkerInstance {
        WorkerInstance {
            kv_block_size: Some(block_size),
            ..instance(id)
        }
    }

    fn prompt(tokens: std::ops::Range<u32>) -> PreprocessedRequest {
        PreprocessedRequest {
            token_ids: tokens.collect(),
            ..Default::default()
        }
    }

    fn stored(event_id: u64, tokens: &[u32], block_size: u32) -> KvCacheEvent {
        KvCacheEvent {
            event_id,
            data: switchyard_protocol::kv::KvCacheEventData::Stored {
                parent: None,
                blocks: BlockHasher::new(block_size, None).hash_blocks(tokens),
            },
        }
    }

    #[test]
    fn kv_mode_follows_the_cache_and_releases_everything() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        router.set_workers(&[kv_instance(1, 4), kv_instance(2, 4)]);
        let tokens: Vec<u32> = (0..32).collect();
        router.apply_kv_event(WorkerId(2), &stored(1, &tokens, 4));
        let mut guard = router.select(&prompt(0..40)).unwrap();
        assert_eq!(guard.worker().id, WorkerId(2));
        assert_eq!(guard.overlap_blocks(), 8);
        let load = &router.loads()[1];
        assert_eq!(
            load.pending_prefill_tokens, 8,
            "only the uncached tail is prefilled"
        );
        assert_eq!(load.active_blocks, 10);
        guard.prefill_done();
        assert_eq!(router.loads()[1].pending_prefill_tokens, 0);
        drop(guard);
        let load = &router.loads()[1];
        assert_eq!(
            (
                load.active_requests,
                load.active_blocks,
                load.routed_blocks,
                load.overlap_blocks
            ),
            (0, 0, 10, 8)
        );
    }

    #[test]
    fn a_cache_salt_only_matches_blocks_stored_under_the_same_salt() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        router.set_workers(&[kv_instance(1, 4), kv_instance(2, 4)]);
        let tokens: Vec<u32> = (0..32).collect();
        let salted = switchyard_protocol::CacheKey {
            lora_name: None,
            cache_salt: Some("tenant-a".into()),
        };
        let salted_blocks = BlockHasher::for_cache_key(4, &salted).hash_blocks(&tokens);
        router.apply_kv_event(
            WorkerId(2),
            &KvCacheEvent {
                event_id: 1,
                data: switchyard_protocol::kv::KvCacheEventData::Stored {
                    parent: None,
                    blocks: salted_blocks,
                },
            },
        );
        let unsalted = router.select(&prompt(0..32)).unwrap();
        assert_eq!(
            unsalted.overlap_blocks(),
            0,
            "no salt must not see salted blocks"
        );
        drop(unsalted);
        let mut request = prompt(0..32);
        request.cache_key = salted;
        let same_salt = router.select(&request).unwrap();
        assert_eq!(
            (same_salt.worker().id, same_salt.overlap_blocks()),
            (WorkerId(2), 8)
        );
        drop(same_salt);
        request.cache_key.cache_salt = Some("tenant-b".into());
        assert_eq!(router.select(&request).unwrap().overlap_blocks(), 0);
    }

    #[test]
    fn kv_mode_spreads_cold_requests_by_load() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        router.set_workers(&[kv_instance(1, 4), kv_instance(2, 4), kv_instance(3, 4)]);
        let guards: Vec<_> = (0..3u32)
            .map(|i| router.select(&prompt(i * 100..i * 100 + 40)).unwrap())
            .collect();
        let mut ids: Vec<u64> = guards.iter().map(|g| g.worker().id.0).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn approximate_mode_remembers_its_own_decisions() {
        let config = RouterConfig {
            approximate: Some(ApproxConfig::default()),
            ..RouterConfig::new(RouterMode::Kv)
        };
        let router = Router::new("m", config);
        router.set_workers(&[kv_instance(1, 4), kv_instance(2, 4)]);
        let first = router.select(&prompt(0..64)).unwrap();
        let first_worker = first.worker().id;
        drop(first);
        let again = router.select(&prompt(0..80)).unwrap();
        assert_eq!(again.worker().id, first_worker);
        assert_eq!(again.overlap_blocks(), 16);
        // Events are ignored in this mode.
        router.apply_kv_event(WorkerId(1), &stored(1, &(500..600).collect::<Vec<_>>(), 4));
        assert_eq!(router.index_blocks(), 20);
    }

    #[test]
    fn the_index_is_sized_for_the_workers_kv_capacity() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        let before = router.index_memory_bytes();
        let with_capacity = |id| WorkerInstance {
            kv_total_blocks: Some(50_000),
            context_length: None,
            limits: Default::default(),
            ..kv_instance(id, 4)
        };
        router.set_workers(&[with_capacity(1), with_capacity(2)]);
        // The room is taken once the index is really filling (a quarter of the capacity), in
        // one step to the whole capacity rather than by repeated doubling.
        let blocks: Vec<switchyard_protocol::kv::StoredBlock> = (1..=30_000u64)
            .map(|h| switchyard_protocol::kv::StoredBlock {
                sequence_hash: h,
                content_hash: h,
            })
            .collect();
        router.apply_kv_event(
            WorkerId(1),
            &KvCacheEvent {
                event_id: 1,
                data: switchyard_protocol::kv::KvCacheEventData::Stored {
                    parent: None,
                    blocks,
                },
            },
        );
        assert_eq!(router.index_blocks(), 30_000);
        let sized = router.index_memory_bytes();
        assert!(sized >= before + 100_000 * 16, "{before} -> {sized}");
        router.set_workers(&[]);
        assert!(
            router.index_memory_bytes() < sized / 4,
            "workers gone: the room is given back"
        );
    }

    #[test]
    fn a_worker_with_another_block_size_is_refused() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        router.set_workers(&[kv_instance(1, 16), kv_instance(2, 32)]);
        assert_eq!(router.worker_count(), 1);
        assert_eq!(router.block_size(), 16);
        let forced = Router::new(
            "m",
            RouterConfig {
                block_size: Some(32),
                ..RouterConfig::new(RouterMode::Kv)
            },
        );
        forced.set_workers(&[kv_instance(1, 16), kv_instance(2, 32)]);
        assert_eq!(forced.loads()[0].worker, WorkerId(2));
    }

    #[test]
    fn removing_a_worker_drops_its_index_entries() {
        let router = Router::new("m", RouterConfig::new(RouterMode::Kv));
        router.set_workers(&[kv_instance(1, 4), kv_instance(2, 4)]);
        router.apply_kv_event(WorkerId(1), &stored(1, &(0..16).collect::<Vec<_>>(), 4));
        assert_eq!(router.index_blocks(), 4);
        router.set_workers(&[kv_instance(2, 4)]);
        assert_eq!(router.index_blocks(), 0);
    }

    #[test]
    fn least_loaded_and_power_of_two_avoid_the_busy_worker() {
        for mode in [RouterMode::LeastLoaded, RouterMode::PowerOfTwo] {
            let router = Router::new("m", RouterConfig::new(mode));
            router.set_workers(&[instance(1), instance(2)]);
            let busy: Vec<_> = (0..1)
                .map(|_| router.select(&request(1)).unwrap())
                .collect();
            let busy_id = busy[0].worker().id;
            for _ in 0..20 {
                let g = router.select(&request(1)).unwrap();
                if mode == RouterMode::LeastLoaded {
                    assert_ne!(g.worker().id, busy_id);
                }
                drop(g);
            }
            // Power of two may draw the busy worker twice; it must never pick it when the other
            // worker was drawn too, so over many picks the idle one dominates.
            let idle_picks = (0..200)
                .filter(|_| router.select(&request(1)).unwrap().worker().id != busy_id)
                .count();
            assert!(idle_picks > 120, "{mode:?}: {idle_picks}");
        }
    }
}
