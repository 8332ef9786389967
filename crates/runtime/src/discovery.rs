//! Worker discovery: who serves which model, where.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{InstanceSnapshot, RuntimeError, WorkerId, WorkerInstance};

/// A discovery backend. Registration is lease-like: the instance disappears when its
/// [`Registration`] is dropped (or, for networked backends, when its process dies).
pub trait Discovery: Send + Sync + 'static {
    fn register(&self, instance: WorkerInstance) -> Result<Registration, RuntimeError>;

    /// The live instances of `namespace`, updated on every change. Watchers compare snapshots
    /// rather than replaying events, so a slow watcher can never miss a removal.
    fn watch(&self, namespace: &str) -> watch::Receiver<InstanceSnapshot>;

    /// Whether the backend reaches its store right now, for `/health`. In-process backends
    /// are always healthy.
    fn health(&self) -> DiscoveryHealth {
        DiscoveryHealth::Healthy
    }
}

/// A discovery backend's view of its store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryHealth {
    Healthy,
    /// The store is unreachable; watchers keep the last known instances meanwhile.
    Degraded {
        reason: String,
    },
}

/// Keeps an instance registered; dropping it deregisters.
pub struct Registration {
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Registration {
    pub fn new(on_drop: impl FnOnce() + Send + Sync + 'static) -> Self {
        Registration {
            on_drop: Some(Box::new(on_drop)),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// In-process discovery for `serve` and tests.
#[derive(Clone, Default)]
pub struct MemDiscovery {
    inner: Arc<Mutex<MemState>>,
}

#[derive(Default)]
struct MemState {
    instances: BTreeMap<WorkerId, WorkerInstance>,
    watchers: BTreeMap<String, watch::Sender<InstanceSnapshot>>,
}

impl MemState {
    fn snapshot(&self, namespace: &str) -> InstanceSnapshot {
        Arc::new(
            self.instances
                .values()
                .filter(|i| i.namespace == namespace)
                .cloned()
                .collect(),
        )
    }

    fn publish(&mut self, namespace: &str) {
        let snapshot = self.snapshot(namespace);
        if let Some(tx) = self.watchers.get(namespace) {
            tx.send_replace(snapshot);
        }
    }
}

impl MemDiscovery {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Discovery for MemDiscovery {
    fn register(&self, instance: WorkerInstance) -> Result<Registration, RuntimeError> {
        let id = instance.id;
        let namespace = instance.namespace.clone();
        {
            let mut state = self.inner.lock();
            if state.instances.contains_key(&id) {
                return Err(RuntimeError::DuplicateWorker(id));
            }
            state.instances.insert(id, instance);
            state.publish(&namespace);
        }
        let inner = Arc::downgrade(&self.inner);
        Ok(Registration::new(move || {
            if let Some(inner) = inner.upgrade() {
                let mut state = inner.lock();
                state.instances.remove(&id);
                state.publish(&namespace);
            }
        }))
    }

    fn watch(&self, namespace: &str) -> watch::Receiver<InstanceSnapshot> {
        let mut state = self.inner.lock();
        if let Some(tx) = state.watchers.get(namespace) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(state.snapshot(namespace));
        state.watchers.insert(namespace.to_string(), tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    fn instance(id: u64, ns: &str) -> WorkerInstance {
        WorkerInstance {
            capabilities: Default::default(),
            id: WorkerId(id),
            namespace: ns.into(),
            model_name: "m".into(),
            model_path: "/nowhere".into(),
            endpoint: Endpoint::InProcess,
            engine: "echo".into(),
            kv_block_size: None,
            kv_total_blocks: None,
            context_length: None,
            limits: Default::default(),
        }
    }

    #[test]
    fn registration_lives_until_dropped_and_is_scoped_by_namespace() {
        let d = MemDiscovery::new();
        let rx = d.watch("a");
        let r1 = d.register(instance(1, "a")).unwrap();
        let _r2 = d.register(instance(2, "b")).unwrap();
        assert_eq!(rx.borrow().len(), 1);
        assert!(matches!(
            d.register(instance(1, "a")),
            Err(RuntimeError::DuplicateWorker(_))
        ));
        drop(r1);
        assert!(rx.borrow().is_empty());
        assert_eq!(d.watch("b").borrow().len(), 1);
        assert_eq!(d.health(), DiscoveryHealth::Healthy);
    }
}
