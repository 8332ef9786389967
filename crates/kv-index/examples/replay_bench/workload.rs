//! The router-side replay of a Mooncake trace against a KV index, index-agnostic so the same
//! driver measures `switchyard_kv_index::KvIndex` here and Dynamo's `RadixTree` in
//! `bench/kv-index-vs-dynamo` (which includes this file by path).
//!
//! Per request: a lookup, the best-overlap choice (ties: fewest blocks held, then lowest
//! worker), the chosen worker's `stored` event for the blocks past its overlap (parented on the
//! last block it held), and a `removed` event for what its LRU cache (simulated here, outside
//! the index) evicts. Only index calls are timed; building events and queries is not.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use switchyard_kv_index::{BlockHasher, KvIndex, OverlapScores};
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, StoredBlock};

/// One request: its blocks' sequence hashes and content hashes, in order.
pub struct Request {
    pub sequence: Vec<u64>,
    pub content: Vec<u64>,
    pub arrival_ms: u64,
    pub output_tokens: u64,
}

/// How the replay picks a worker from the lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Longest overlap; ties by fewest blocks held, then lowest worker. On the conversation
    /// trace every request shares its first block, so this sends everything to one worker.
    Overlap,
    /// Dynamo's default cost with weight 1: blocks left to prefill (request blocks − overlap)
    /// plus the worker's decode load (blocks of its requests still generating, each assumed to
    /// decode at 40 tokens/s from its arrival); ties as above. Spreads load, keeps affinity.
    Cost,
}

impl Choice {
    pub fn name(self) -> &'static str {
        match self {
            Choice::Overlap => "overlap",
            Choice::Cost => "cost",
        }
    }
}

/// Loads a Mooncake trace, expanding each 512-token `hash_id` into `512 / block_tokens`
/// chained sub-blocks, and keeping only the prompt's full blocks (`input_length / block_tokens`).
pub fn load_trace(path: &str, block_tokens: u32) -> Result<Vec<Request>, String> {
    if block_tokens == 0 || 512 % block_tokens != 0 {
        return Err(format!("--block-tokens {block_tokens} must divide 512"));
    }
    let per_id = 512 / block_tokens;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let hasher = BlockHasher::new(block_tokens, None);
    let mut out = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", line_no + 1))?;
        let ids = v["hash_ids"]
            .as_array()
            .ok_or_else(|| format!("{path}:{}: no hash_ids", line_no + 1))?;
        let input = v["input_length"].as_u64().unwrap_or(u64::MAX);
        let full_blocks = (input / u64::from(block_tokens)) as usize;
        let mut req = Request {
            sequence: Vec::new(),
            content: Vec::new(),
            arrival_ms: v["timestamp"].as_u64().unwrap_or(0),
            output_tokens: v["output_length"].as_u64().unwrap_or(0),
        };
        let mut parent = None;
        'ids: for id in ids {
            let id = id
                .as_u64()
                .ok_or_else(|| format!("{path}:{}: bad hash id", line_no + 1))?;
            for sub in 0..per_id {
                if req.sequence.len() >= full_blocks {
                    break 'ids;
                }
                // Stands in for the block's token ids: same id and position, same content.
                let content = hasher.content_hash(&[id as u32, (id >> 32) as u32, sub]);
                let seq = hasher.sequence_hash(parent, content);
                req.sequence.push(seq);
                req.content.push(content);
                parent = Some(seq);
            }
        }
        out.push(req);
    }
    Ok(out)
}

/// What the driver needs from an index. Queries and events are built untimed; `lookup` and
/// `apply` are the timed calls.
pub trait ReplayIndex {
    type Query;
    type Event;
    fn name(&self) -> &'static str;
    fn query(&self, req: &Request) -> Self::Query;
    fn lookup(&mut self, req: &Request, query: Self::Query);
    /// Overlap of the last lookup per worker `0..scores.len()` (zeroed by the caller).
    fn scores(&mut self, scores: &mut [u32]);
    fn stored_event(
        &self,
        worker: u64,
        event_id: u64,
        parent: Option<u64>,
        req: &Request,
        range: std::ops::Range<usize>,
    ) -> Self::Event;
    fn removed_event(&self, worker: u64, event_id: u64, sequence_hashes: &[u64]) -> Self::Event;
    /// Returns whether the index reported the event as inconsistent.
    fn apply(&mut self, worker: u64, event: Self::Event) -> bool;
    fn memory_estimate(&self) -> Option<usize>;
    /// Bytes the index holds outside the heap allocator (memory mappings).
    fn mapped_bytes(&self) -> usize {
        0
    }
    /// Tells the index how many blocks the workers can hold in all, as a router learns from
    /// their KV capacity; an index without such an API ignores it.
    fn expect_blocks(&mut self, _blocks: usize) {}
}

/// `KvIndex` with a reused lookup result.
pub struct Switchyard {
    pub index: KvIndex,
    out: OverlapScores,
}

impl Switchyard {
    pub fn new() -> Self {
        Self {
            index: KvIndex::new(),
            out: OverlapScores::default(),
        }
    }
}

impl ReplayIndex for Switchyard {
    type Query = ();
    type Event = KvCacheEvent;

    fn name(&self) -> &'static str {
        "switchyard KvIndex"
    }
    fn query(&self, _req: &Request) {}
    fn expect_blocks(&mut self, blocks: usize) {
        self.index.expect_blocks(blocks);
    }
    fn lookup(&mut self, req: &Request, _query: ()) {
        self.index.find_matches_into(&req.sequence, &mut self.out);
    }
    fn scores(&mut self, scores: &mut [u32]) {
        for s in &self.out.scores {
            scores[s.worker as usize] = s.blocks;
        }
    }
    fn stored_event(
        &self,
        _worker: u64,
        event_id: u64,
        parent: Option<u64>,
        req: &Request,
        range: std::ops::Range<usize>,
    ) -> KvCacheEvent {
        KvCacheEvent {
            event_id,
            data: KvCacheEventData::Stored {
                parent,
                blocks: range
                    .map(|i| StoredBlock {
                        sequence_hash: req.sequence[i],
                        content_hash: req.content[i],
                    })
                    .collect(),
            },
        }
    }
    fn removed_event(&self, _worker: u64, event_id: u64, sequence_hashes: &[u64]) -> KvCacheEvent {
        KvCacheEvent {
            event_id,
            data: KvCacheEventData::Removed {
                sequence_hashes: sequence_hashes.to_vec(),
            },
        }
    }
    fn apply(&mut self, worker: u64, event: KvCacheEvent) -> bool {
        self.index.apply_event(worker, &event).is_err()
    }
    fn memory_estimate(&self) -> Option<usize> {
        Some(self.index.memory_bytes())
    }
    fn mapped_bytes(&self) -> usize {
        self.index.mapped_bytes()
    }
}

/// A worker's prefix cache: LRU over block hashes.
pub struct Lru {
    capacity: usize,
    tick: u64,
    last_use: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
}

impl Lru {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            last_use: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.last_use.len()
    }

    pub fn touch(&mut self, hash: u64) {
        self.tick += 1;
        self.last_use.insert(hash, self.tick);
        self.order.push_back((self.tick, hash));
    }

    /// Evicts least recently used blocks down to capacity, appending them to `evicted`.
    pub fn evict(&mut self, evicted: &mut Vec<u64>) {
        while self.last_use.len() > self.capacity {
            let Some((tick, hash)) = self.order.pop_front() else {
                break;
            };
            if self.last_use.get(&hash) == Some(&tick) {
                self.last_use.remove(&hash);
                evicted.push(hash);
            }
        }
        if self.order.len() > 2 * self.last_use.len() + 1024 {
            let last_use = &self.last_use;
            self.order.retain(|(t, h)| last_use.get(h) == Some(t));
        }
    }
}

#[derive(Default)]
pub struct ReplayReport {
    pub requests: u64,
    pub events: u64,
    pub lookup_blocks: u64,
    pub event_blocks: u64,
    pub hit_blocks: u64,
    pub inconsistent_events: u64,
    pub lookup_ns: u64,
    pub event_ns: u64,
    /// Per request, lookup + score reading + worker choice (the router's decision; not part
    /// of the index time).
    pub decision_latency_ns: Vec<u32>,
    pub lookup_latency_ns: Vec<u32>,
    pub final_distinct_blocks: usize,
    pub final_worker_blocks: usize,
    pub memory_estimate: Option<usize>,
    /// Per worker, requests routed there.
    pub routed: Vec<u64>,
}

impl ReplayReport {
    pub fn index_seconds(&self) -> f64 {
        (self.lookup_ns + self.event_ns) as f64 / 1e9
    }
    pub fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.index_seconds()
    }
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.index_seconds()
    }
    pub fn block_ops_per_s(&self) -> f64 {
        (self.lookup_blocks + self.event_blocks) as f64 / self.index_seconds()
    }
    /// Lookup latency at percentile `p`, µs.
    pub fn percentile_us(&mut self, p: f64) -> f64 {
        percentile_us(&mut self.lookup_latency_ns, p)
    }
    /// Routing decision time (lookup + choice) at percentile `p`, µs.
    pub fn decision_percentile_us(&mut self, p: f64) -> f64 {
        percentile_us(&mut self.decision_latency_ns, p)
    }
    pub fn hit_rate(&self) -> f64 {
        self.hit_blocks as f64 / self.lookup_blocks.max(1) as f64
    }
    /// MB per million distinct blocks in the index at the end (= bytes per block).
    pub fn mb_per_million_blocks(&self, bytes: usize) -> f64 {
        bytes as f64 / self.final_distinct_blocks.max(1) as f64
    }
}

fn percentile_us(latencies_ns: &mut [u32], p: f64) -> f64 {
    if latencies_ns.is_empty() {
        return 0.0;
    }
    latencies_ns.sort_unstable();
    let i = ((latencies_ns.len() - 1) as f64 * p).round() as usize;
    f64::from(latencies_ns[i]) / 1e3
}

/// Replays `requests` over `workers` workers with `cache_blocks` blocks each.
pub fn replay<I: ReplayIndex>(
    index: &mut I,
    requests: &[Request],
    workers: usize,
    cache_blocks: usize,
    choice: Choice,
    capacity_hint: bool,
) -> ReplayReport {
    let mut caches: Vec<Lru> = (0..workers).map(|_| Lru::new(cache_blocks)).collect();
    // Per worker: (end ms, blocks) of requests still decoding, and their block total.
    let mut in_flight: Vec<std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64)>>> =
        (0..workers).map(|_| Default::default()).collect();
    let mut decode_blocks = vec![0u64; workers];
    let mut next_event_id = vec![0u64; workers];
    let mut scores = vec![0u32; workers];
    let mut evicted = Vec::new();
    let mut report = ReplayReport {
        lookup_latency_ns: Vec::with_capacity(requests.len()),
        decision_latency_ns: Vec::with_capacity(requests.len()),
        routed: vec![0; workers],
        ..ReplayReport::default()
    };
    if capacity_hint {
        // Timed as event work: the reservation is part of what the index costs.
        let t = Instant::now();
        index.expect_blocks(workers * cache_blocks);
        report.event_ns += t.elapsed().as_nanos() as u64;
    }
    for req in requests {
        let n = req.sequence.len();
        let query = index.query(req);
        let t = Instant::now();
        index.lookup(req, query);
        let ns = t.elapsed().as_nanos() as u64;
        // The routing decision: the lookup above plus reading its scores and choosing.
        let decision_start = t;
        report.lookup_ns += ns;
        report
            .lookup_latency_ns
            .push(ns.min(u64::from(u32::MAX)) as u32);
        report.lookup_blocks += n as u64;

        scores.fill(0);
        index.scores(&mut scores);
        for (w, heap) in in_flight.iter_mut().enumerate() {
            while let Some(&std::cmp::Reverse((end, blocks))) = heap.peek()
                && end <= req.arrival_ms
            {
                heap.pop();
                decode_blocks[w] -= blocks;
            }
        }
        let cost = |w: usize| match choice {
            Choice::Overlap => u64::MAX - u64::from(scores[w]),
            Choice::Cost => (n as u64 - u64::from(scores[w]).min(n as u64)) + decode_blocks[w],
        };
        let chosen = (0..workers)
            .min_by(|&a, &b| {
                cost(a)
                    .cmp(&cost(b))
                    .then(caches[a].len().cmp(&caches[b].len()))
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        let decision_ns = decision_start.elapsed().as_nanos() as u64;
        report
            .decision_latency_ns
            .push(decision_ns.min(u64::from(u32::MAX)) as u32);
        let end = req.arrival_ms + req.output_tokens * 25;
        in_flight[chosen].push(std::cmp::Reverse((end, n as u64)));
        decode_blocks[chosen] += n as u64;
        let overlap = (scores[chosen] as usize).min(n);
        report.hit_blocks += overlap as u64;
        report.routed[chosen] += 1;
        report.requests += 1;

        if overlap < n {
            let parent = overlap.checked_sub(1).map(|i| req.sequence[i]);
            let id = next_event_id[chosen];
            next_event_id[chosen] += 1;
            let event = index.stored_event(chosen as u64, id, parent, req, overlap..n);
            let t = Instant::now();
            let bad = index.apply(chosen as u64, event);
            report.event_ns += t.elapsed().as_nanos() as u64;
            report.inconsistent_events += u64::from(bad);
            report.events += 1;
            report.event_blocks += (n - overlap) as u64;
        }
        // Tail first, so the prefix is the most recent and a cache evicts tails first.
        let cache = &mut caches[chosen];
        for &h in req.sequence.iter().rev() {
            cache.touch(h);
        }
        evicted.clear();
        cache.evict(&mut evicted);
        if !evicted.is_empty() {
            let id = next_event_id[chosen];
            next_event_id[chosen] += 1;
            let event = index.removed_event(chosen as u64, id, &evicted);
            let t = Instant::now();
            let bad = index.apply(chosen as u64, event);
            report.event_ns += t.elapsed().as_nanos() as u64;
            report.inconsistent_events += u64::from(bad);
            report.events += 1;
            report.event_blocks += evicted.len() as u64;
        }
    }
    let mut distinct = std::collections::HashSet::new();
    for c in &caches {
        distinct.extend(c.last_use.keys().copied());
    }
    report.final_distinct_blocks = distinct.len();
    report.final_worker_blocks = caches.iter().map(Lru::len).sum();
    report.memory_estimate = index.memory_estimate();
    report
}

/// Parses `--flag value` pairs; lists are comma-separated.
#[derive(Clone)]
pub struct Args {
    pub trace: String,
    pub workers: Vec<usize>,
    pub cache_blocks: Vec<usize>,
    pub block_tokens: u32,
    pub repeat: usize,
    pub max_requests: usize,
    pub choices: Vec<Choice>,
    /// Tell the index the workers' total capacity before the replay (`--capacity-hint off`: not).
    pub capacity_hint: bool,
}

/// Parses the arguments and loads the trace, or exits with a message naming `program`; prints
/// the trace summary line. `what` says what is timed ("per configuration", ...).
pub fn setup(program: &str, what: &str) -> (Args, Vec<Request>) {
    let args = Args::parse().unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2);
    });
    let mut requests = load_trace(&args.trace, args.block_tokens).unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(1);
    });
    requests.truncate(args.max_requests);
    let blocks: usize = requests.iter().map(|r| r.sequence.len()).sum();
    println!(
        "trace {}: {} requests, {} blocks of {} tokens; best of {} run(s) {what}, one thread",
        args.trace,
        requests.len(),
        blocks,
        args.block_tokens,
        args.repeat
    );
    (args, requests)
}

impl Args {
    pub fn parse() -> Result<Self, String> {
        let mut args = Self {
            trace: "data/mooncake/conversation_trace.jsonl".into(),
            workers: vec![8],
            cache_blocks: vec![16384],
            block_tokens: 64,
            repeat: 3,
            max_requests: usize::MAX,
            choices: vec![Choice::Cost],
            capacity_hint: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let list = |v: &str| -> Result<Vec<usize>, String> {
                v.split(',')
                    .map(|x| x.trim().parse().map_err(|e| format!("{flag} {v}: {e}")))
                    .collect()
            };
            match flag.as_str() {
                "--trace" => args.trace = value,
                "--workers" => args.workers = list(&value)?,
                "--cache-blocks" => args.cache_blocks = list(&value)?,
                "--block-tokens" => {
                    args.block_tokens = value.parse().map_err(|e| format!("{flag}: {e}"))?
                }
                "--repeat" => args.repeat = value.parse().map_err(|e| format!("{flag}: {e}"))?,
                "--max-requests" => {
                    args.max_requests = value.parse().map_err(|e| format!("{flag}: {e}"))?
                }
                "--choice" => {
                    args.choices = value
                        .split(',')
                        .map(|c| match c.trim() {
                            "overlap" => Ok(Choice::Overlap),
                            "cost" => Ok(Choice::Cost),
                            other => Err(format!("--choice {other}: overlap or cost")),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--capacity-hint" => {
                    args.capacity_hint = match value.as_str() {
                        "on" => true,
                        "off" => false,
                        other => return Err(format!("--capacity-hint {other}: on or off")),
                    }
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if args.workers.contains(&0) || args.repeat == 0 {
            return Err("--workers and --repeat must be at least 1".into());
        }
        Ok(args)
    }
}

/// The fastest of repeated runs (least index time): on a shared machine the minimum is the
/// least disturbed measurement. Every run replays the same requests, so counters agree.
pub fn best(runs: Vec<ReplayReport>) -> ReplayReport {
    runs.into_iter()
        .min_by_key(|r| r.lookup_ns + r.event_ns)
        .unwrap_or_default()
}
