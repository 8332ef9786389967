//! Worker selection and load accounting.
//!
//! - [`Router`]: holds the workers of one model and picks one per request according to its
//!   [`RouterMode`].
//! - [`LoadGuard`]: returned with every decision; it holds the chosen worker's load until it is
//!   dropped, so load is released on every path (success, error, cancel, panic unwinding).
//! - [`WorkerLoadSnapshot`]: per-worker counters for metrics.
//!
//! Invariant: the router does no I/O; it sees workers only as [`WorkerInstance`]s.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;
use rand::Rng;
use switchyard_protocol::PreprocessedRequest;
use switchyard_runtime::{WorkerId, WorkerInstance};

/// How the router picks a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterMode {
    RoundRobin,
    Random,
}

impl FromStr for RouterMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "round_robin" => Ok(RouterMode::RoundRobin),
            "random" => Ok(RouterMode::Random),
            other => Err(format!(
                "unknown router mode `{other}`; expected one of: round-robin, random"
            )),
        }
    }
}

impl RouterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RouterMode::RoundRobin => "round-robin",
            RouterMode::Random => "random",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("no worker is serving model `{0}`")]
    NoWorkers(String),
}

/// Live counters of one worker, shared by the router and every outstanding [`LoadGuard`].
#[derive(Debug, Default)]
struct WorkerLoad {
    active_requests: AtomicU64,
    active_prompt_tokens: AtomicU64,
    decisions: AtomicU64,
}

struct WorkerSlot {
    instance: Arc<WorkerInstance>,
    load: Arc<WorkerLoad>,
}

/// Routes the requests of one model.
pub struct Router {
    model: String,
    mode: RouterMode,
    workers: RwLock<Vec<WorkerSlot>>,
    next: AtomicUsize,
}

/// The worker chosen for a request, holding its load until dropped.
pub struct LoadGuard {
    instance: Arc<WorkerInstance>,
    load: Arc<WorkerLoad>,
    prompt_tokens: u64,
}

impl LoadGuard {
    pub fn worker(&self) -> &WorkerInstance {
        &self.instance
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.load.active_requests.fetch_sub(1, Ordering::Relaxed);
        self.load
            .active_prompt_tokens
            .fetch_sub(self.prompt_tokens, Ordering::Relaxed);
    }
}

/// One worker's counters at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerLoadSnapshot {
    pub worker: WorkerId,
    pub active_requests: u64,
    pub active_prompt_tokens: u64,
    pub decisions: u64,
}

impl Router {
    pub fn new(model: impl Into<String>, mode: RouterMode) -> Self {
        Router {
            model: model.into(),
            mode,
            workers: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    pub fn mode(&self) -> RouterMode {
        self.mode
    }

    /// Replaces the worker set. Workers that stay keep their counters; a removed worker's
    /// outstanding guards still release into their own (now detached) counters.
    pub fn set_workers(&self, instances: &[WorkerInstance]) {
        let mut workers = self.workers.write();
        let mut next: Vec<WorkerSlot> = Vec::with_capacity(instances.len());
        for instance in instances {
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
        next.sort_by_key(|slot| slot.instance.id);
        *workers = next;
    }

    pub fn worker_count(&self) -> usize {
        self.workers.read().len()
    }

    /// Picks a worker for `request` and accounts its load.
    pub fn select(&self, request: &PreprocessedRequest) -> Result<LoadGuard, RouterError> {
        let workers = self.workers.read();
        if workers.is_empty() {
            return Err(RouterError::NoWorkers(self.model.clone()));
        }
        let index = match self.mode {
            RouterMode::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % workers.len(),
            RouterMode::Random => rand::rng().random_range(0..workers.len()),
        };
        let slot = &workers[index];
        let prompt_tokens = request.token_ids.len() as u64;
        slot.load.active_requests.fetch_add(1, Ordering::Relaxed);
        slot.load
            .active_prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        slot.load.decisions.fetch_add(1, Ordering::Relaxed);
        Ok(LoadGuard {
            instance: slot.instance.clone(),
            load: slot.load.clone(),
            prompt_tokens,
        })
    }

    /// Counters of the current workers, for metrics.
    pub fn loads(&self) -> Vec<WorkerLoadSnapshot> {
        self.workers
            .read()
            .iter()
            .map(|slot| WorkerLoadSnapshot {
                worker: slot.instance.id,
                active_requests: slot.load.active_requests.load(Ordering::Relaxed),
                active_prompt_tokens: slot.load.active_prompt_tokens.load(Ordering::Relaxed),
                decisions: slot.load.decisions.load(Ordering::Relaxed),
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
            id: WorkerId(id),
            namespace: "ns".into(),
            model_name: "m".into(),
            model_path: "/m".into(),
            endpoint: Endpoint::InProcess,
            engine: "echo".into(),
            kv_block_size: None,
        }
    }

    fn request(tokens: usize) -> PreprocessedRequest {
        PreprocessedRequest {
            token_ids: vec![1; tokens],
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_cycles_and_guards_release_load() {
        let router = Router::new("m", RouterMode::RoundRobin);
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
        let router = Router::new("m", RouterMode::Random);
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
        let router = Router::new("m", RouterMode::RoundRobin);
        router.set_workers(&[instance(1)]);
        let _guard = router.select(&request(1)).unwrap();
        router.set_workers(&[instance(1), instance(2)]);
        let loads = router.loads();
        assert_eq!(loads[0].active_requests, 1);
        assert_eq!(loads[1].active_requests, 0);
    }

    #[test]
    fn random_mode_reaches_every_worker() {
        let router = Router::new("m", RouterMode::Random);
        router.set_workers(&[instance(1), instance(2), instance(3)]);
        for _ in 0..300 {
            drop(router.select(&request(1)).unwrap());
        }
        assert!(router.loads().iter().all(|l| l.decisions > 30));
    }
}
