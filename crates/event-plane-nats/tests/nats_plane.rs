//! The NATS event plane against a real nats-server on loopback.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use switchyard_event_plane_nats::{NatsEventPlane, NatsPlaneOptions, wire};
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, StoredBlock};
use switchyard_runtime::event_plane::{EventPlane, LoadReport, WorkerEvent, WorkerEventKind};
use switchyard_runtime::{RuntimeError, WorkerId};
use switchyard_test_servers::NatsServer;

/// Bounds every wait, so a broken plane fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

async fn start_nats() -> NatsServer {
    tokio::task::spawn_blocking(|| NatsServer::start().expect("nats-server starts"))
        .await
        .unwrap()
}

async fn plane(server: &NatsServer, namespace: &str) -> NatsEventPlane {
    NatsEventPlane::connect(&server.url(), namespace)
        .await
        .unwrap()
}

async fn publisher(server: &NatsServer, namespace: &str) -> NatsEventPlane {
    let options = NatsPlaneOptions {
        subscribe: false,
        ..Default::default()
    };
    NatsEventPlane::connect_with(&server.url(), namespace, options)
        .await
        .unwrap()
}

/// Returns once the server has processed everything `client` sent before (the client's own
/// `flush` only writes the socket).
async fn server_caught_up(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, Bytes::new()).await.unwrap();
    tokio::time::timeout(WAIT, echo.next())
        .await
        .unwrap()
        .unwrap();
}

fn stored(worker: u64, event_id: u64) -> WorkerEvent {
    WorkerEvent {
        worker: WorkerId(worker),
        kind: WorkerEventKind::Kv(KvCacheEvent {
            event_id,
            data: KvCacheEventData::Stored {
                parent: None,
                blocks: vec![StoredBlock {
                    sequence_hash: event_id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    content_hash: u64::MAX - event_id,
                }],
            },
        }),
    }
}

fn event_id(event: &WorkerEvent) -> u64 {
    match &event.kind {
        WorkerEventKind::Kv(kv) => kv.event_id,
        other => panic!("expected a KV event, got {other:?}"),
    }
}

async fn next<T: Clone>(rx: &mut broadcast::Receiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within the bound")
        .expect("the channel is open and did not lag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_receives_each_workers_events_in_order() {
    let server = start_nats().await;
    let worker_side = publisher(&server, "ns").await;
    let replica_a = plane(&server, "ns").await;
    let replica_b = plane(&server, "ns").await;
    let mut rx_a = replica_a.subscribe();
    let mut rx_b = replica_b.subscribe();

    let workers = [1u64, 2, u64::MAX];
    let per_worker = 200;
    for id in 0..per_worker {
        for worker in workers {
            worker_side.publish(stored(worker, id));
        }
    }
    worker_side.publish(WorkerEvent {
        worker: WorkerId(1),
        kind: WorkerEventKind::Load(LoadReport {
            active_requests: 3,
            ..Default::default()
        }),
    });

    for rx in [&mut rx_a, &mut rx_b] {
        let mut next_id = [0u64; 3];
        for _ in 0..per_worker * workers.len() as u64 {
            let event = next(rx).await;
            let slot = workers.iter().position(|w| *w == event.worker.0).unwrap();
            assert_eq!(event_id(&event), next_id[slot], "worker {}", event.worker);
            next_id[slot] += 1;
        }
        assert_eq!(next_id, [per_worker; 3]);
        let load = next(rx).await;
        assert!(matches!(
            load.kind,
            WorkerEventKind::Load(LoadReport {
                active_requests: 3,
                ..
            })
        ));
    }
    let total = per_worker * 3 + 1;
    assert_eq!(replica_a.stats().events_received, total);
    assert_eq!(replica_b.stats().events_received, total);
    worker_side.flush().await.unwrap();
    assert_eq!(worker_side.stats().published, total);
    assert_eq!(worker_side.stats().dropped, 0);
    assert_eq!(replica_a.stats().malformed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_do_not_see_each_others_events() {
    let server = start_nats().await;
    let in_a = plane(&server, "a").await;
    let in_b = plane(&server, "b").await;
    let mut rx_a = in_a.subscribe();
    let mut rx_b = in_b.subscribe();

    // Once flushed, the server has routed an event; had it leaked into the other namespace,
    // it would reach that subscriber before anything published afterwards.
    in_a.publish(stored(1, 10));
    in_a.flush().await.unwrap();
    in_b.publish(stored(1, 20));
    in_b.flush().await.unwrap();
    in_a.publish(stored(1, 11));

    assert_eq!(event_id(&next(&mut rx_b).await), 20);
    assert_eq!(event_id(&next(&mut rx_a).await), 10);
    assert_eq!(event_id(&next(&mut rx_a).await), 11);
    assert_eq!(in_a.stats().events_received, 2);
    assert_eq!(in_b.stats().events_received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_skipped_and_counted() {
    let server = start_nats().await;
    let replica = plane(&server, "ns").await;
    let mut rx = replica.subscribe();
    let mut sync_rx = replica.subscribe_sync();
    let raw = async_nats::connect(server.url()).await.unwrap();

    let subject = wire::event_subject("ns", WorkerId(5));
    let good = wire::encode_event(&stored(5, 1)).unwrap();
    let next_version = String::from_utf8(good.clone())
        .unwrap()
        .replacen(r#""v":1"#, r#""v":2"#, 1);
    let bad_payloads: Vec<(String, Bytes)> = vec![
        (subject.clone(), Bytes::from_static(b"\xff\x00 not json")),
        (
            subject.clone(),
            Bytes::from_static(br#"{"v":1,"event":{"worker":5}}"#),
        ),
        (subject.clone(), Bytes::from(next_version)),
        // A well-formed event under another worker's subject.
        (
            wire::event_subject("ns", WorkerId(6)),
            Bytes::from(good.clone()),
        ),
        (
            wire::events_wildcard("ns").replace('>', "short"),
            Bytes::from(good.clone()),
        ),
        // Router sync without a sender.
        (
            wire::router_sync_subject("ns"),
            Bytes::from_static(b"anonymous"),
        ),
    ];
    for (subject, payload) in bad_payloads {
        raw.publish(subject, payload).await.unwrap();
    }
    raw.publish(subject, Bytes::from(good)).await.unwrap();
    raw.flush().await.unwrap();

    // One connection's messages arrive in order: the good event comes after all the bad ones.
    assert_eq!(next(&mut rx).await, stored(5, 1));
    let stats = replica.stats();
    assert_eq!(stats.events_received, 1);
    // The sync subscription is separate; its one bad message may still be on its way.
    let deadline = tokio::time::Instant::now() + WAIT;
    while replica.stats().malformed < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(replica.stats().malformed, 6);
    assert!(stats.malformed >= 5);
    assert!(matches!(
        sync_rx.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));

    // The plane still works after the garbage.
    let worker_side = publisher(&server, "ns").await;
    worker_side.publish(stored(5, 2));
    assert_eq!(next(&mut rx).await, stored(5, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_dumps_round_trip_even_when_larger_than_one_nats_message() {
    let server = start_nats().await;
    let worker_side = publisher(&server, "ns").await;
    let frontend = plane(&server, "ns").await;

    // ~20k events of 8 blocks: several MB of JSON, over the server's 1 MiB max_payload.
    let big: Vec<KvCacheEvent> = (0..20_000u64)
        .map(|i| KvCacheEvent {
            event_id: i,
            data: KvCacheEventData::Stored {
                parent: i.checked_sub(1),
                blocks: (0..8)
                    .map(|b| StoredBlock {
                        sequence_hash: u64::MAX - i * 8 - b,
                        content_hash: i * 8 + b,
                    })
                    .collect(),
            },
        })
        .collect();
    assert!(wire::encode_dump_chunks(&big, usize::MAX).unwrap()[0].len() > 2 << 20);
    let dump = Arc::new(big.clone());
    let _big_server = worker_side
        .serve_kv_dump(WorkerId(7), Arc::new(move || dump.as_ref().clone()))
        .await
        .unwrap();
    let small = vec![KvCacheEvent {
        event_id: 3,
        data: KvCacheEventData::Cleared,
    }];
    let small_copy = small.clone();
    let small_server = worker_side
        .serve_kv_dump(WorkerId(8), Arc::new(move || small_copy.clone()))
        .await
        .unwrap();
    let empty_server = worker_side
        .serve_kv_dump(WorkerId(9), Arc::new(Vec::new))
        .await
        .unwrap();

    assert_eq!(frontend.request_kv_dump(WorkerId(8)).await.unwrap(), small);
    assert_eq!(frontend.request_kv_dump(WorkerId(7)).await.unwrap(), big);
    assert!(
        frontend
            .request_kv_dump(WorkerId(9))
            .await
            .unwrap()
            .is_empty()
    );
    // Answering again gives the state of the time of the request.
    assert_eq!(frontend.request_kv_dump(WorkerId(8)).await.unwrap(), small);

    // A stopped server no longer answers.
    small_server.stop().await.unwrap();
    drop(empty_server);
    assert!(matches!(
        frontend.request_kv_dump(WorkerId(8)).await,
        Err(RuntimeError::Unreachable(WorkerId(8), _))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_dump_requests_fail_in_bounded_time_when_nobody_answers() {
    let server = start_nats().await;
    let options = NatsPlaneOptions {
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let frontend = NatsEventPlane::connect_with(&server.url(), "ns", options)
        .await
        .unwrap();

    // Nobody subscribed: the server says so at once.
    let err = tokio::time::timeout(WAIT, frontend.request_kv_dump(WorkerId(1)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Unreachable(WorkerId(1), _)),
        "{err}"
    );
    assert!(err.to_string().contains("no worker"), "{err}");

    // Someone listens but never answers: the request times out.
    let silent = async_nats::connect(server.url()).await.unwrap();
    let _listener = silent
        .subscribe(wire::kv_dump_subject("ns", WorkerId(2)))
        .await
        .unwrap();
    server_caught_up(&silent).await;
    let err = tokio::time::timeout(WAIT, frontend.request_kv_dump(WorkerId(2)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("within 300ms"), "{err}");

    // A responder that answers garbage is an error too, not a panic.
    let liar = async_nats::connect(server.url()).await.unwrap();
    let mut requests = liar
        .subscribe(wire::kv_dump_subject("ns", WorkerId(3)))
        .await
        .unwrap();
    server_caught_up(&liar).await;
    let answering = tokio::spawn(async move {
        use futures::StreamExt;
        let request = requests.next().await.unwrap();
        liar.publish(request.reply.unwrap(), Bytes::from_static(b"[1,2"))
            .await
            .unwrap();
        liar.flush().await.unwrap();
    });
    let err = tokio::time::timeout(WAIT, frontend.request_kv_dump(WorkerId(3)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
    answering.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_sync_reaches_the_other_planes_but_not_the_sender() {
    let server = start_nats().await;
    let a = plane(&server, "ns").await;
    let b = plane(&server, "ns").await;
    let c = plane(&server, "ns").await;
    let elsewhere = plane(&server, "elsewhere").await;
    let elsewhere_sender = plane(&server, "elsewhere").await;
    assert_ne!(a.sender_id(), b.sender_id());
    let mut rx_a = a.subscribe_sync();
    let mut rx_b = b.subscribe_sync();
    let mut rx_c = c.subscribe_sync();
    let mut rx_elsewhere = elsewhere.subscribe_sync();

    // `a`'s message is routed before `b`'s: were it echoed to `a`, `a` would see it first.
    a.publish_sync(Bytes::from_static(b"from a"));
    a.flush().await.unwrap();
    b.publish_sync(Bytes::from_static(b"from b"));
    b.flush().await.unwrap();
    elsewhere_sender.publish_sync(Bytes::from_static(b"from elsewhere"));

    let from_a = (a.sender_id().to_owned(), Bytes::from_static(b"from a"));
    let from_b = (b.sender_id().to_owned(), Bytes::from_static(b"from b"));
    assert_eq!(next(&mut rx_a).await, from_b);
    assert_eq!(next(&mut rx_b).await, from_a);
    assert_eq!(next(&mut rx_c).await, from_a);
    assert_eq!(next(&mut rx_c).await, from_b);
    // Nothing of namespace `ns`, flushed before, came ahead of it.
    assert_eq!(
        next(&mut rx_elsewhere).await,
        (
            elsewhere_sender.sender_id().to_owned(),
            Bytes::from_static(b"from elsewhere")
        )
    );
    assert_eq!(a.stats().sync_received, 1);
    assert_eq!(a.stats().malformed, 0);
    // Sync messages are not worker events.
    assert_eq!(c.stats().events_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planes_recover_after_the_server_restarts() {
    let mut server = start_nats().await;
    let worker_side = publisher(&server, "ns").await;
    let frontend = plane(&server, "ns").await;
    let mut rx = frontend.subscribe();
    let mut frontend_reconnects = frontend.reconnects();
    let mut worker_reconnects = worker_side.reconnects();
    let state = vec![KvCacheEvent {
        event_id: 1,
        data: KvCacheEventData::Cleared,
    }];
    let state_copy = state.clone();
    let _dumps = worker_side
        .serve_kv_dump(WorkerId(4), Arc::new(move || state_copy.clone()))
        .await
        .unwrap();

    worker_side.publish(stored(4, 0));
    assert_eq!(event_id(&next(&mut rx).await), 0);
    assert_eq!(*frontend_reconnects.borrow_and_update(), 0);

    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server.restart().expect("nats-server restarts");
        server
    })
    .await
    .unwrap();

    for reconnects in [&mut frontend_reconnects, &mut worker_reconnects] {
        tokio::time::timeout(WAIT, reconnects.changed())
            .await
            .expect("the reconnect signal fires")
            .unwrap();
        assert!(*reconnects.borrow() >= 1);
    }

    // Both clients resubscribe as they reconnect; keep publishing until the frontend's
    // subscription is back, then the stream is whole and in order again.
    let mut id = 100;
    let first = tokio::time::timeout(WAIT, async {
        loop {
            worker_side.publish(stored(4, id));
            id += 1;
            tokio::select! {
                got = rx.recv() => break got.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await
    .expect("events flow again after the restart");
    assert!(event_id(&first) >= 100);
    for later in id..id + 50 {
        worker_side.publish(stored(4, later));
    }
    let mut expected = event_id(&first) + 1;
    while expected < id + 50 {
        assert_eq!(event_id(&next(&mut rx).await), expected);
        expected += 1;
    }
    // The worker's dump service answers on the new connection too.
    assert_eq!(frontend.request_kv_dump(WorkerId(4)).await.unwrap(), state);
    drop(server);
}

#[tokio::test(flavor = "current_thread")]
async fn publishing_never_waits_and_counts_drops_when_the_queue_is_full() {
    let server = start_nats().await;
    let options = NatsPlaneOptions {
        subscribe: false,
        publish_queue: 4,
        ..Default::default()
    };
    let worker_side = NatsEventPlane::connect_with(&server.url(), "ns", options)
        .await
        .unwrap();
    let frontend = plane(&server, "ns").await;
    let mut rx = frontend.subscribe();
    // On this single-threaded runtime the publishing task cannot run during the loop, so the
    // queue holds exactly its capacity and the rest is dropped, without waiting.
    for id in 0..1000 {
        worker_side.publish(stored(1, id));
    }
    assert_eq!(worker_side.stats().dropped, 996);
    worker_side.flush().await.unwrap();
    assert_eq!(worker_side.stats().published, 4);
    for id in 0..4 {
        assert_eq!(event_id(&next(&mut rx).await), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_and_namespaces_fail_with_clear_errors() {
    let nobody = format!("nats://127.0.0.1:{}", switchyard_test_servers::free_port());
    let options = NatsPlaneOptions {
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = tokio::time::timeout(
        WAIT,
        NatsEventPlane::connect_with(&nobody, "ns", options.clone()),
    )
    .await
    .expect("connecting gives up in bounded time")
    .err()
    .expect("nothing listens there");
    assert!(matches!(err, RuntimeError::EventPlane(_)));
    assert!(err.to_string().contains(&nobody), "{err}");

    let server = start_nats().await;
    for namespace in ["", "a.b", "a>", "a b"] {
        let err = NatsEventPlane::connect(&server.url(), namespace)
            .await
            .err()
            .expect("a namespace must be one subject token");
        assert!(err.to_string().contains("namespace"), "{err}");
    }
    for url in ["nats://", "nats://127.0.0.1:notaport", "::::"] {
        let err = tokio::time::timeout(WAIT, NatsEventPlane::connect(url, "ns"))
            .await
            .expect("bounded")
            .err()
            .unwrap_or_else(|| panic!("{url} is not a NATS address"));
        assert!(err.to_string().contains(url), "{err}");
    }
}
