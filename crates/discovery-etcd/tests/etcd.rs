//! EtcdDiscovery against a real etcd on 127.0.0.1.

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use switchyard_discovery_etcd::{DiscoveryState, EtcdConfig, EtcdDiscovery};
use switchyard_runtime::discovery::{Discovery, DiscoveryHealth};
use switchyard_runtime::{Endpoint, InstanceSnapshot, RuntimeError, WorkerId, WorkerInstance};
use switchyard_test_servers::{EtcdServer, free_port};
use tokio::sync::watch;

/// Guard against hangs; every wait below ends far sooner when things work.
const WAIT: Duration = Duration::from_secs(20);

fn instance(id: u64, namespace: &str) -> WorkerInstance {
    WorkerInstance {
        capabilities: Default::default(),
        id: WorkerId(id),
        namespace: namespace.into(),
        model_name: "qwen".into(),
        model_path: "/models/qwen".into(),
        endpoint: Endpoint::Grpc {
            address: format!("127.0.0.1:{}", 9000 + id),
        },
        engine: "mocker".into(),
        kv_block_size: Some(16),
        kv_total_blocks: Some(1024),
        context_length: Some(40960),
        limits: switchyard_runtime::EngineLimits {
            max_num_seqs: Some(256),
            max_num_batched_tokens: Some(8192),
        },
    }
}

fn start_etcd() -> EtcdServer {
    EtcdServer::start().expect("start etcd")
}

async fn connect(etcd: &EtcdServer, lease_ttl: Duration) -> EtcdDiscovery {
    let config = EtcdConfig {
        lease_ttl,
        connect_timeout: Duration::from_secs(2),
        ..EtcdConfig::from_url(&etcd.discovery_url()).unwrap()
    };
    EtcdDiscovery::connect(config).await.expect("connect")
}

async fn raw_client(etcd: &EtcdServer) -> Client {
    Client::connect([etcd.url()], None).await.unwrap()
}

fn ids(snapshot: &InstanceSnapshot) -> Vec<u64> {
    snapshot.iter().map(|i| i.id.0).collect()
}

/// Waits (bounded) until the watched snapshot holds exactly `expected` ids.
async fn wait_for_ids(rx: &mut watch::Receiver<InstanceSnapshot>, expected: &[u64]) {
    let seen = tokio::time::timeout(WAIT, rx.wait_for(|s| ids(s) == expected))
        .await
        .is_ok_and(|r| r.is_ok());
    if !seen {
        panic!("expected ids {expected:?}, have {:?}", ids(&rx.borrow()));
    }
}

async fn flush(discovery: &EtcdDiscovery) {
    tokio::time::timeout(WAIT, discovery.flush())
        .await
        .expect("flush timed out")
        .expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_instance_is_seen_and_stored_under_the_documented_key() {
    let etcd = start_etcd();
    let worker = connect(&etcd, Duration::from_secs(10)).await;
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");

    let _registration = worker.register(instance(0xab, "ns")).unwrap();
    flush(&worker).await;
    wait_for_ids(&mut rx, &[0xab]).await;
    assert_eq!(rx.borrow()[0], instance(0xab, "ns"));

    let mut client = raw_client(&etcd).await;
    let stored = client
        .get("switchyard/ns/instances/00000000000000ab", None)
        .await
        .unwrap();
    let kv = &stored.kvs()[0];
    assert_eq!(kv.lease(), worker.lease_id());
    let decoded: WorkerInstance = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(decoded, instance(0xab, "ns"));

    assert_eq!(worker.state(), DiscoveryState::Connected);
    assert_eq!(frontend.health(), DiscoveryHealth::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated() {
    let etcd = start_etcd();
    let worker = connect(&etcd, Duration::from_secs(10)).await;
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut a = frontend.watch("a");
    let mut b = frontend.watch("b");
    let _r1 = worker.register(instance(1, "a")).unwrap();
    let _r2 = worker.register(instance(2, "b")).unwrap();
    let _r3 = worker.register(instance(3, "a")).unwrap();
    flush(&worker).await;
    wait_for_ids(&mut a, &[1, 3]).await;
    wait_for_ids(&mut b, &[2]).await;
    // A namespace that is a prefix of another sees nothing of it.
    let mut prefix_of_a = frontend.watch("");
    assert!(prefix_of_a.borrow_and_update().is_empty());
    assert!(worker.register(instance(4, "a/b")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_registration_removes_the_instance_and_frees_its_id() {
    let etcd = start_etcd();
    let worker = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = worker.watch("ns");
    let first = worker.register(instance(7, "ns")).unwrap();
    let _other = worker.register(instance(8, "ns")).unwrap();
    assert!(matches!(
        worker.register(instance(7, "ns")),
        Err(RuntimeError::DuplicateWorker(WorkerId(7)))
    ));
    wait_for_ids(&mut rx, &[7, 8]).await;

    drop(first);
    flush(&worker).await;
    wait_for_ids(&mut rx, &[8]).await;
    let mut client = raw_client(&etcd).await;
    let left = client
        .get(
            "switchyard/ns/instances/",
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(left.kvs().len(), 1);

    let _again = worker.register(instance(7, "ns")).unwrap();
    wait_for_ids(&mut rx, &[7, 8]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_instance_vanishes_when_its_lease_expires() {
    let etcd = start_etcd();
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");
    let survivor = connect(&etcd, Duration::from_secs(10)).await;
    let _kept = survivor.register(instance(1, "ns")).unwrap();
    let dying = connect(&etcd, Duration::from_secs(2)).await;
    let registration = dying.register(instance(2, "ns")).unwrap();
    flush(&dying).await;
    wait_for_ids(&mut rx, &[1, 2]).await;

    // A SIGKILLed process neither deletes its keys nor revokes its lease: keep the
    // registration alive, stop the keep-alives by dropping the discovery.
    std::mem::forget(registration);
    let died = Instant::now();
    drop(dying);
    wait_for_ids(&mut rx, &[1]).await;
    eprintln!(
        "measured: lease ttl 2 s, keep-alives stopped → watcher saw removal in {:?}",
        died.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_revokes_the_lease_and_refuses_further_use() {
    let etcd = start_etcd();
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");
    let worker = connect(&etcd, Duration::from_secs(30)).await;
    let _r1 = worker.register(instance(1, "ns")).unwrap();
    let _r2 = worker.register(instance(2, "ns")).unwrap();
    flush(&worker).await;
    wait_for_ids(&mut rx, &[1, 2]).await;

    let revoked = Instant::now();
    worker.shutdown().await.unwrap();
    let revoke_acked = revoked.elapsed();
    wait_for_ids(&mut rx, &[]).await;
    eprintln!(
        "measured: shutdown (revoke) acknowledged in {revoke_acked:?}, watcher saw removal {:?} after the revoke began",
        revoked.elapsed()
    );
    assert!(matches!(
        worker.register(instance(3, "ns")),
        Err(RuntimeError::Discovery(_))
    ));
    assert!(worker.flush().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_keeps_the_last_snapshot_then_resyncs() {
    let mut etcd = start_etcd();
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");
    let worker = connect(&etcd, Duration::from_secs(10)).await;
    let _r1 = worker.register(instance(1, "ns")).unwrap();
    flush(&worker).await;
    wait_for_ids(&mut rx, &[1]).await;

    etcd.stop();
    let mut state = frontend.watch_state();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, DiscoveryState::Reconnecting { .. })),
    )
    .await
    .expect("frontend never noticed the outage")
    .unwrap();
    assert!(matches!(
        frontend.health(),
        DiscoveryHealth::Degraded { .. }
    ));
    // Registering during the outage is accepted and stored once etcd is back.
    let _r2 = worker.register(instance(2, "ns")).unwrap();
    let pending_flush = tokio::spawn(async move {
        worker.flush().await.unwrap();
        worker
    });
    // Let the watcher fail a few reconnects: it must still serve what it knew.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ids(&rx.borrow()), [1]);
    assert!(!pending_flush.is_finished());

    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    let restarted = Instant::now();
    wait_for_ids(&mut rx, &[1, 2]).await;
    eprintln!(
        "measured: etcd accepting connections again → watcher saw the outage registration in {:?}",
        restarted.elapsed()
    );
    let worker = tokio::time::timeout(WAIT, pending_flush)
        .await
        .expect("flush after restart timed out")
        .unwrap();
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == DiscoveryState::Connected))
        .await
        .expect("frontend never reconnected")
        .unwrap();
    let _r3 = worker.register(instance(3, "ns")).unwrap();
    wait_for_ids(&mut rx, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_granted_again_and_instances_are_put_again() {
    let etcd = start_etcd();
    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");
    let worker = connect(&etcd, Duration::from_secs(2)).await;
    let _r1 = worker.register(instance(1, "ns")).unwrap();
    flush(&worker).await;
    wait_for_ids(&mut rx, &[1]).await;

    // What etcd does to a lease that expired while the worker could not reach it.
    let old_lease = worker.lease_id();
    raw_client(&etcd)
        .await
        .lease_revoke(old_lease)
        .await
        .unwrap();
    wait_for_ids(&mut rx, &[]).await;
    wait_for_ids(&mut rx, &[1]).await;
    assert_ne!(worker.lease_id(), old_lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_fails_connect_with_a_clear_error() {
    let config = EtcdConfig {
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::from_url(&format!("etcd://127.0.0.1:{}", free_port())).unwrap()
    };
    let result = tokio::time::timeout(WAIT, EtcdDiscovery::connect(config))
        .await
        .expect("connect hung");
    let error = result.err().expect("connected to nothing").to_string();
    assert!(
        error.contains("cannot reach etcd at http://127.0.0.1:"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_values_under_the_prefix_are_skipped() {
    let etcd = start_etcd();
    let mut client = raw_client(&etcd).await;
    let prefix = "switchyard/ns/instances/";
    client
        .put(format!("{prefix}0000000000000009"), "{not json", None)
        .await
        .unwrap();
    let misplaced = serde_json::to_string(&instance(5, "ns")).unwrap();
    client
        .put(format!("{prefix}0000000000000006"), misplaced, None)
        .await
        .unwrap();

    let frontend = connect(&etcd, Duration::from_secs(10)).await;
    let mut rx = frontend.watch("ns");
    let _r1 = frontend.register(instance(1, "ns")).unwrap();
    wait_for_ids(&mut rx, &[1]).await;

    // Through the watch too: garbage arrives, a valid instance after it still counts.
    client
        .put(format!("{prefix}000000000000000a"), vec![0xff, 0x00], None)
        .await
        .unwrap();
    let valid = serde_json::to_string(&instance(0xb, "ns")).unwrap();
    let valid_key = format!("{prefix}000000000000000b");
    client.put(valid_key.as_str(), valid, None).await.unwrap();
    wait_for_ids(&mut rx, &[1, 0xb]).await;
    // Overwriting a valid instance with garbage removes it.
    client.put(valid_key, "null", None).await.unwrap();
    wait_for_ids(&mut rx, &[1]).await;
    assert_eq!(frontend.state(), DiscoveryState::Connected);
}
