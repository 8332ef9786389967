//! Switchyard's subscriber against a real engine publisher: SGLang's `ZmqEventPublisher` (the
//! same PUB + ROUTER replay protocol as vLLM's), driven by `tests/python/kv_publisher.py` from
//! the project's venv (`scripts/test.sh` builds it). Events land in a real `KvIndex`; the test
//! checks what the router would see, for each layout the engines have used: a gap filled from
//! the replay socket, and a restart (sequence back to 0) clearing the worker.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchyard_engines::{EngineEvent, EngineEventSink};
use switchyard_kv_events_zmq::{KvEventSubscriber, SubscriberConfig, SubscriberStats};
use switchyard_kv_index::KvIndex;
use switchyard_kv_index::hashing::BlockHasher;

const BLOCK: u32 = 4;
const WORKER: u64 = 7;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHYARD_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "{} is missing: run scripts/test.sh (it builds the venv with sglang, msgspec, pyzmq)",
        venv.display()
    );
    venv
}

struct Publisher {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    endpoint: String,
    replay: String,
}

impl Publisher {
    fn start(layout: &str, hashes: &str) -> Publisher {
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/kv_publisher.py"))
            .args(["--layout", layout, "--hashes", hashes])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python publisher");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("publisher endpoints");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("publisher said `{line}`: {e}"));
        Publisher {
            child,
            stdin,
            stdout,
            endpoint: v["pub"].as_str().unwrap().to_string(),
            replay: v["replay"].as_str().unwrap().to_string(),
        }
    }

    fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains("\"ok\""),
            "publisher answered `{line}` to {cmd}"
        );
    }

    fn store(&mut self, hashes: &[u64], parent: Option<u64>, tokens: std::ops::Range<u32>) {
        self.send(json!({"op": "store", "hashes": hashes, "parent": parent,
                         "tokens": tokens.collect::<Vec<_>>(), "block_size": BLOCK}));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The router's index, fed by the subscriber.
struct IndexSink(Mutex<KvIndex>);

impl EngineEventSink for IndexSink {
    fn publish(&self, event: EngineEvent) {
        if let EngineEvent::Kv(kv) = event {
            let _ = self.0.lock().apply_event(WORKER, &kv);
        }
    }
}

impl IndexSink {
    /// Leading blocks of `tokens` the worker holds.
    fn held(&self, tokens: std::ops::Range<u32>) -> u32 {
        let tokens: Vec<u32> = tokens.collect();
        let hashes: Vec<u64> = BlockHasher::new(BLOCK, None)
            .hash_blocks(&tokens)
            .iter()
            .map(|b| b.sequence_hash)
            .collect();
        let scores = self.0.lock().find_matches(&hashes);
        scores.get(WORKER)
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scenario(layout: &str, hashes: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut publisher = Publisher::start(layout, hashes);
    let sink = Arc::new(IndexSink(Mutex::new(KvIndex::new())));
    let mut config = SubscriberConfig::new(publisher.endpoint.clone(), BLOCK);
    config.replay_endpoint = Some(publisher.replay.clone());
    let subscriber = runtime.block_on(async { KvEventSubscriber::spawn(config, sink.clone()) });
    let stats = || -> SubscriberStats { subscriber.stats() };

    // Slow joiner: a SUB socket misses what is published before its subscription arrives. Store
    // a probe block until it is seen (the replay of batch 0.. fills in what was missed).
    wait_for("the subscription", || {
        publisher.store(&[900], None, 900..904);
        std::thread::sleep(Duration::from_millis(100));
        sink.held(900..904) == 1
    });

    // Two blocks, then a child linked by the engine's parent hash.
    publisher.store(&[1, 2], None, 0..8);
    publisher.store(&[3], Some(2), 8..12);
    wait_for("stored blocks", || sink.held(0..12) == 3);

    // A gap: two batches lost on the live socket, recovered from the replay socket.
    let replays_before = stats().replays;
    publisher.send(json!({"op": "drop_live", "count": 2}));
    publisher.store(&[10], None, 100..104);
    publisher.send(json!({"op": "remove", "hashes": [3]}));
    publisher.store(&[20], None, 200..204);
    wait_for("the gap to be replayed", || {
        sink.held(200..204) == 1 && sink.held(100..104) == 1 && sink.held(0..12) == 2
    });
    let s = stats();
    assert_eq!(s.ingest.gaps, 1, "{s:?}");
    assert_eq!(s.replays, replays_before + 1, "{s:?}");
    assert_eq!(s.ingest.batches_lost, 0, "{s:?}");
    assert_eq!(s.malformed_batches + s.malformed_frames, 0, "{s:?}");

    // Raise the sequence well above what the restarted engine will send before we see it.
    for i in 0..20 {
        publisher.store(&[500 + i], None, 500..504);
    }
    wait_for("the live batches", || stats().ingest.batches >= 25);

    // Restart: a new publisher on the same ports, sequence from 0. Once reconnected, its first
    // batch is below the last seen: the worker's cache is cleared, then the new block applies.
    publisher.send(json!({"op": "restart"}));
    wait_for("the reconnect", || stats().connections >= 2);
    wait_for("a block from the restarted engine", || {
        publisher.store(&[30], None, 300..304);
        std::thread::sleep(Duration::from_millis(100));
        sink.held(300..304) == 1
    });
    let s = stats();
    assert_eq!(s.ingest.restarts, 1, "{s:?}");
    assert_eq!(
        sink.held(0..12),
        0,
        "a restart clears what the old engine held"
    );
    assert_eq!(sink.held(200..204), 0);
    assert!(s.ingest.unknown_parents == 0, "{s:?}");
    runtime.block_on(subscriber.shutdown());
}

#[test]
fn sglang_publisher_positional_batch_map_events() {
    scenario("sglang", "int");
}

#[test]
fn vllm_array_like_events_with_byte_hashes() {
    scenario("vllm-array", "bytes");
}

#[test]
fn vllm_map_layout() {
    scenario("vllm-map", "int");
}
