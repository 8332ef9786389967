//! One task per watched namespace: GET, then WATCH from the next revision; resync on any
//! interruption while the receivers keep the last snapshot.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use etcd_client::{EventType, GetOptions, WatchOptions};
use switchyard_runtime::{InstanceSnapshot, WorkerInstance};
use tokio::sync::watch;

use crate::{Backoff, Shared, bounded};

/// The namespace's instances by key.
type Instances = BTreeMap<Vec<u8>, WorkerInstance>;

pub(crate) async fn follow(
    shared: Arc<Shared>,
    namespace: String,
    tx: watch::Sender<InstanceSnapshot>,
) {
    let mut backoff = Backoff::new();
    loop {
        let Err(error) = follow_once(&shared, &namespace, &tx, &mut backoff).await;
        tracing::warn!(
            namespace,
            "etcd watch interrupted, serving the last snapshot: {error}"
        );
        shared.mark_failed(&error);
        backoff.pause().await;
    }
}

async fn follow_once(
    shared: &Shared,
    namespace: &str,
    tx: &watch::Sender<InstanceSnapshot>,
    backoff: &mut Backoff,
) -> Result<Infallible, String> {
    let prefix = shared.instances_prefix(namespace);
    let limit = shared.request_timeout;
    let mut kv = shared.client.kv_client();
    let listing = bounded(
        limit,
        "list instances",
        kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = listing
        .header()
        .map(|h| h.revision())
        .ok_or("list instances: response without a revision")?;
    let mut instances = Instances::new();
    for kv in listing.kvs() {
        if let Some(instance) = decode(namespace, &prefix, kv.key(), kv.value()) {
            instances.insert(kv.key().to_vec(), instance);
        }
    }
    publish(tx, &instances);

    let mut watches = shared.client.watch_client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = bounded(
        limit,
        "watch",
        watches.watch(prefix.as_str(), Some(options)),
    )
    .await?;
    shared.mark_connected();
    backoff.reset();
    loop {
        let response = stream
            .message()
            .await
            .map_err(|e| format!("watch: {e}"))?
            .ok_or("watch: stream ended")?;
        if response.canceled() {
            return Err(format!(
                "watch cancelled by etcd (compacted at revision {}): {}",
                response.compact_revision(),
                response.cancel_reason()
            ));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => match decode(namespace, &prefix, kv.key(), kv.value()) {
                    Some(instance) => instances.insert(kv.key().to_vec(), instance),
                    None => instances.remove(kv.key()),
                },
                EventType::Delete => instances.remove(kv.key()),
            };
        }
        publish(tx, &instances);
    }
}

/// Publishes the instances sorted by id, waking receivers only when something changed.
fn publish(tx: &watch::Sender<InstanceSnapshot>, instances: &Instances) {
    let mut next: Vec<WorkerInstance> = instances.values().cloned().collect();
    next.sort_by_key(|i| i.id);
    tx.send_if_modified(|current| {
        let changed = **current != next;
        if changed {
            *current = Arc::new(next);
        }
        changed
    });
}

/// The instance stored under `key`, or `None` (with a warning) when the value is not a
/// `WorkerInstance` of this namespace whose id matches the key.
fn decode(namespace: &str, prefix: &str, key: &[u8], value: &[u8]) -> Option<WorkerInstance> {
    let key = String::from_utf8_lossy(key);
    let instance: WorkerInstance = match serde_json::from_slice(value) {
        Ok(instance) => instance,
        Err(e) => {
            tracing::warn!(%key, "skipping malformed worker instance: {e}");
            return None;
        }
    };
    let expected = format!("{prefix}{:016x}", instance.id.0);
    if instance.namespace != namespace || key != expected {
        tracing::warn!(
            %key,
            id = %instance.id,
            instance_namespace = instance.namespace,
            "skipping worker instance stored under the wrong key"
        );
        return None;
    }
    Some(instance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_runtime::{Endpoint, WorkerId};

    fn instance(id: u64, namespace: &str) -> WorkerInstance {
        WorkerInstance {
            capabilities: Default::default(),
            id: WorkerId(id),
            namespace: namespace.into(),
            model_name: "m".into(),
            model_path: "/m".into(),
            endpoint: Endpoint::Grpc {
                address: "127.0.0.1:1".into(),
            },
            engine: "mocker".into(),
            kv_block_size: Some(16),
            kv_total_blocks: None,
            context_length: None,
            limits: Default::default(),
        }
    }

    const PREFIX: &str = "sy/ns/instances/";

    #[test]
    fn decodes_an_instance_under_its_own_key() {
        let json = serde_json::to_vec(&instance(0xab, "ns")).unwrap();
        let key = b"sy/ns/instances/00000000000000ab";
        assert_eq!(decode("ns", PREFIX, key, &json), Some(instance(0xab, "ns")));
    }

    #[test]
    fn skips_garbage_and_misplaced_instances() {
        let key = b"sy/ns/instances/00000000000000ab";
        for value in [&b""[..], b"{", b"null", b"{\"id\":1}", &[0xff, 0xfe]] {
            assert_eq!(decode("ns", PREFIX, key, value), None);
        }
        let wrong_id = serde_json::to_vec(&instance(0xac, "ns")).unwrap();
        assert_eq!(decode("ns", PREFIX, key, &wrong_id), None);
        let wrong_namespace = serde_json::to_vec(&instance(0xab, "other")).unwrap();
        assert_eq!(decode("ns", PREFIX, key, &wrong_namespace), None);
    }

    #[test]
    fn publish_sorts_by_id_and_skips_unchanged_snapshots() {
        let (tx, mut rx) = watch::channel(InstanceSnapshot::default());
        let mut instances = Instances::new();
        instances.insert(b"b".to_vec(), instance(1, "ns"));
        instances.insert(b"a".to_vec(), instance(2, "ns"));
        publish(&tx, &instances);
        assert!(rx.has_changed().unwrap());
        let ids: Vec<u64> = rx.borrow_and_update().iter().map(|i| i.id.0).collect();
        assert_eq!(ids, [1, 2]);
        publish(&tx, &instances);
        assert!(!rx.has_changed().unwrap());
    }
}
