//! Worker discovery on etcd: [`EtcdDiscovery`] implements
//! [`switchyard_runtime::discovery::Discovery`] for `--discovery etcd://host:port`.
//!
//! # Key layout
//!
//! ```text
//! {prefix}/{namespace}/instances/{worker_id:016x}  =  WorkerInstance as JSON
//! ```
//!
//! `prefix` is [`EtcdConfig::key_prefix`] (`switchyard` by default); the worker id is 16
//! lower-case hex digits, so keys sort by id. Every key a process writes is attached to that
//! process's single lease.
//!
//! # Liveness
//!
//! [`EtcdDiscovery::connect`] grants one lease ([`EtcdConfig::lease_ttl`]) and a background
//! task renews it every ttl/3. A process that dies stops renewing, so etcd deletes its keys
//! when the lease expires; [`EtcdDiscovery::shutdown`] revokes the lease so they vanish at
//! once. Dropping an [`EtcdDiscovery`] without `shutdown` behaves like a crash: the keys stay
//! until the lease expires. When etcd is unreachable the task retries with backoff; once back,
//! it keeps the lease if etcd still has it, grants a new one otherwise, and puts every
//! still-registered instance again.
//!
//! # Watching
//!
//! [`Discovery::watch`] runs one task per namespace: GET the namespace's prefix, then WATCH
//! from the next revision. On any interruption (lost connection, compaction, cancelled watch)
//! it keeps publishing the last snapshot, retries with backoff, and resyncs with a fresh GET.
//! Values that are not a valid `WorkerInstance` for their key are skipped with a warning.

mod config;
mod session;
mod watcher;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use parking_lot::Mutex;
use switchyard_runtime::discovery::{Discovery, DiscoveryHealth, Registration};
use switchyard_runtime::{InstanceSnapshot, RuntimeError, WorkerId, WorkerInstance};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{DEFAULT_PORT, EtcdConfig};

use session::{Command, Session};

/// Whether this process currently reaches etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryState {
    Connected,
    /// etcd stopped answering at `since`; watchers serve their last snapshot meanwhile.
    Reconnecting {
        since: Instant,
        last_error: String,
    },
}

/// Worker discovery backed by etcd (see the crate docs).
pub struct EtcdDiscovery {
    shared: Arc<Shared>,
    session: Mutex<Option<JoinHandle<()>>>,
    watchers: Mutex<Vec<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
}

/// State the background tasks and [`Registration`]s share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) prefix: String,
    /// Bound on each etcd request.
    pub(crate) request_timeout: Duration,
    pub(crate) lease_ttl_secs: i64,
    pub(crate) lease: AtomicI64,
    /// What this process wants registered; the session task makes etcd match it.
    pub(crate) registered: Mutex<BTreeMap<WorkerId, Registered>>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) state: watch::Sender<DiscoveryState>,
    snapshots: Mutex<HashMap<String, watch::Sender<InstanceSnapshot>>>,
    closed: AtomicBool,
}

pub(crate) struct Registered {
    pub(crate) key: String,
    pub(crate) json: String,
}

impl Shared {
    pub(crate) fn instances_prefix(&self, namespace: &str) -> String {
        format!("{}/{namespace}/instances/", self.prefix)
    }

    pub(crate) fn mark_connected(&self) {
        self.state.send_if_modified(|state| {
            let changed = *state != DiscoveryState::Connected;
            if changed {
                tracing::info!("etcd is reachable again");
                *state = DiscoveryState::Connected;
            }
            changed
        });
    }

    pub(crate) fn mark_failed(&self, error: &str) {
        self.state.send_modify(|state| match state {
            DiscoveryState::Connected => {
                *state = DiscoveryState::Reconnecting {
                    since: Instant::now(),
                    last_error: error.to_string(),
                }
            }
            DiscoveryState::Reconnecting { last_error, .. } => *last_error = error.to_string(),
        });
    }
}

/// Bounds `fut` by `limit`, flattening etcd's error and the timeout into one message.
pub(crate) async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Retry pauses: 100 ms doubling up to 2 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    pub(crate) fn new() -> Self {
        Backoff(Self::FIRST)
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

impl EtcdDiscovery {
    /// Connects and grants this process's lease. Fails after `config.connect_timeout` when
    /// etcd does not answer. Must be called inside a tokio runtime, which then runs the
    /// background tasks.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdDiscovery, RuntimeError> {
        let prefix = config.trimmed_prefix()?;
        if config.endpoints.is_empty() {
            return Err(RuntimeError::Discovery("no etcd endpoints given".into()));
        }
        let timeout = config.connect_timeout;
        let unreachable = |e: String| {
            RuntimeError::Discovery(format!(
                "cannot reach etcd at {}: {e}",
                config.endpoints.join(",")
            ))
        };
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            // Notices a silently dead connection (no RST) so watches resync.
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_keep_alive_while_idle(true);
        let mut client = bounded(
            timeout,
            "connect",
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        .map_err(unreachable)?;
        // etcd counts in whole seconds; round up so the lease never undercuts the config.
        let ttl_secs = config.lease_ttl.as_secs_f64().ceil().max(1.0) as i64;
        let lease = bounded(timeout, "grant lease", client.lease_grant(ttl_secs, None))
            .await
            .map_err(unreachable)?;
        // etcd may raise a short TTL to its minimum; renew at a third of what it granted.
        let granted = lease.ttl().max(1);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client,
            prefix,
            request_timeout: timeout,
            lease_ttl_secs: ttl_secs,
            lease: AtomicI64::new(lease.id()),
            registered: Mutex::new(BTreeMap::new()),
            commands,
            state: watch::Sender::new(DiscoveryState::Connected),
            snapshots: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let renew_every = Duration::from_secs(granted as u64) / 3;
        let session = Session::new(shared.clone(), command_rx, renew_every);
        tracing::info!(
            endpoints = %config.endpoints.join(","),
            lease = format_args!("{:x}", lease.id()),
            ttl_secs = granted,
            "connected to etcd"
        );
        Ok(EtcdDiscovery {
            shared,
            session: Mutex::new(Some(tokio::spawn(session.run()))),
            watchers: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Whether etcd is reachable right now.
    pub fn state(&self) -> DiscoveryState {
        self.shared.state.borrow().clone()
    }

    /// Follows [`EtcdDiscovery::state`].
    pub fn watch_state(&self) -> watch::Receiver<DiscoveryState> {
        self.shared.state.subscribe()
    }

    /// The lease this process's keys are attached to (changes when it has to be re-granted).
    pub fn lease_id(&self) -> i64 {
        self.shared.lease.load(Ordering::Relaxed)
    }

    /// Waits until every registration and deregistration made before this call is stored in
    /// etcd. While etcd is unreachable this waits for it to come back; bound it with a timeout.
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Flush(done))?;
        wait.await.map_err(|_| shut_down())
    }

    /// Graceful exit: stops the background tasks and revokes the lease, so every instance this
    /// process registered vanishes at once. Watchers keep their last snapshot.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        self.shared.closed.store(true, Ordering::Release);
        self.stop_tasks();
        let session = self.session.lock().take();
        if let Some(session) = session {
            // Let an in-flight put finish failing or succeeding before the revoke.
            let _ = session.await;
        }
        let lease = self.lease_id();
        let mut lease_client = self.shared.client.lease_client();
        bounded(
            self.shared.request_timeout,
            "revoke lease",
            lease_client.revoke(lease),
        )
        .await
        .map(drop)
        .map_err(|e| RuntimeError::Discovery(format!("shutdown: {e}")))
    }

    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        self.shared.commands.send(command).map_err(|_| shut_down())
    }

    fn stop_tasks(&self) {
        if let Some(session) = &*self.session.lock() {
            session.abort();
        }
        for watcher in self.watchers.lock().drain(..) {
            watcher.abort();
        }
    }
}

fn shut_down() -> RuntimeError {
    RuntimeError::Discovery("etcd discovery is shut down".into())
}

impl Drop for EtcdDiscovery {
    /// Stops renewing without revoking: like a crash, the keys live until the lease expires.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.stop_tasks();
    }
}

impl Discovery for EtcdDiscovery {
    fn register(&self, instance: WorkerInstance) -> Result<Registration, RuntimeError> {
        if instance.namespace.is_empty() || instance.namespace.contains('/') {
            return Err(RuntimeError::Discovery(format!(
                "namespace {:?} must be non-empty and free of '/'",
                instance.namespace
            )));
        }
        let id = instance.id;
        let key = format!(
            "{}{:016x}",
            self.shared.instances_prefix(&instance.namespace),
            id.0
        );
        let json = serde_json::to_string(&instance)
            .map_err(|e| RuntimeError::Discovery(format!("encode worker {id}: {e}")))?;
        {
            let mut registered = self.shared.registered.lock();
            if registered.contains_key(&id) {
                return Err(RuntimeError::DuplicateWorker(id));
            }
            self.send(Command::Put(id))?;
            registered.insert(
                id,
                Registered {
                    key: key.clone(),
                    json,
                },
            );
        }
        let shared = Arc::downgrade(&self.shared);
        Ok(Registration::new(move || {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.registered.lock().remove(&id);
            // Best effort: if the task is gone the lease takes the key with it.
            let _ = shared.commands.send(Command::Delete(key));
        }))
    }

    fn watch(&self, namespace: &str) -> watch::Receiver<InstanceSnapshot> {
        let mut snapshots = self.shared.snapshots.lock();
        if let Some(tx) = snapshots.get(namespace) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(InstanceSnapshot::default());
        snapshots.insert(namespace.to_string(), tx.clone());
        if !self.shared.closed.load(Ordering::Acquire) {
            let task = watcher::follow(self.shared.clone(), namespace.to_string(), tx);
            self.watchers.lock().push(self.runtime.spawn(task));
        }
        rx
    }

    fn health(&self) -> DiscoveryHealth {
        match self.state() {
            DiscoveryState::Connected => DiscoveryHealth::Healthy,
            DiscoveryState::Reconnecting { since, last_error } => DiscoveryHealth::Degraded {
                reason: format!(
                    "etcd unreachable for {:.1}s: {last_error}",
                    since.elapsed().as_secs_f64()
                ),
            },
        }
    }
}
