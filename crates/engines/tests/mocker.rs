//! Mocker engine behaviour through the `Engine` trait. Timing assertions run on Tokio's paused
//! clock, so they check simulated time, not wall time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use switchyard_engines::mocker::{MockerConfig, MockerEngine, TimingModel};
use switchyard_engines::{
    Engine, EngineError, EngineEvent, EngineEventSink, EngineLoad, EngineStream,
};
use switchyard_protocol::kv::{KvCacheEvent, KvCacheEventData, SequenceHash};
use switchyard_protocol::{
    EngineOutput, FinishReason, PreprocessedRequest, SamplingOptions, StopConditions, TokenId,
};
use tokio::time::Instant;

/// Attention and context terms off, so step times are easy to add up by hand.
const TIMING: TimingModel = TimingModel {
    step_base_ms: 10.0,
    prefill_ms_per_token: 0.5,
    attention_ms_per_pair: 0.0,
    decode_ms_per_seq: 2.0,
    decode_ms_per_context_token: 0.0,
};

fn config(speedup_ratio: f64) -> MockerConfig {
    MockerConfig {
        speedup_ratio,
        vocab_size: 1000,
        timing: TIMING,
        ..Default::default()
    }
}

fn request(id: &str, prompt_len: usize, max_tokens: u32) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: id.into(),
        model: "mock".into(),
        token_ids: (0..prompt_len as TokenId).map(|t| t * 7 + 1).collect(),
        stop: StopConditions {
            max_tokens,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn collect(stream: EngineStream) -> Result<Vec<EngineOutput>, EngineError> {
    stream
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
}

fn tokens(items: &[EngineOutput]) -> Vec<TokenId> {
    items
        .iter()
        .flat_map(|o| o.token_ids.iter().copied())
        .collect()
}

/// Lets the scheduler task run until `done` holds; bounded by a number of turns, not by time.
async fn settle(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..10_000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}

#[tokio::test(start_paused = true)]
async fn cached_blocks_are_shared_only_within_one_cache_salt() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let with_salt = |id: &str, salt: Option<&str>| {
        let mut r = request(id, 40, 2);
        r.cache_key.cache_salt = salt.map(str::to_owned);
        r
    };
    let first = collect(engine.generate(with_salt("a", Some("x"))))
        .await
        .unwrap();
    assert_eq!(first[0].cached_tokens, Some(0));
    let other_salt = collect(engine.generate(with_salt("b", Some("y"))))
        .await
        .unwrap();
    assert_eq!(
        other_salt[0].cached_tokens,
        Some(0),
        "another salt must not hit"
    );
    let no_salt = collect(engine.generate(with_salt("c", None)))
        .await
        .unwrap();
    assert_eq!(
        no_salt[0].cached_tokens,
        Some(0),
        "no salt must not hit salted blocks"
    );
    let same_salt = collect(engine.generate(with_salt("d", Some("x"))))
        .await
        .unwrap();
    assert_eq!(same_salt[0].cached_tokens, Some(32));
}

#[tokio::test(start_paused = true)]
async fn produces_exactly_max_tokens_then_length() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let items = collect(engine.generate(request("a", 40, 25)))
        .await
        .unwrap();
    let generated = tokens(&items);
    assert_eq!(generated.len(), 25);
    assert!(generated.iter().all(|&t| t < 1000));
    let last = items.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Length));
    assert!(
        items[..items.len() - 1]
            .iter()
            .all(|o| o.finish_reason.is_none())
    );
    assert_eq!(items[0].cached_tokens, Some(0));
    assert!(items[1..].iter().all(|o| o.cached_tokens.is_none()));
    // Same prompt, same answer; a different sampling seed, a different one.
    let again = collect(engine.generate(request("b", 40, 25)))
        .await
        .unwrap();
    assert_eq!(tokens(&again), generated);
    // The second time its two full prompt blocks were in the prefix cache.
    assert_eq!(again[0].cached_tokens, Some(32));
    let mut seeded = request("c", 40, 25);
    seeded.sampling = SamplingOptions {
        seed: Some(42),
        ..Default::default()
    };
    assert_ne!(
        tokens(&collect(engine.generate(seeded)).await.unwrap()),
        generated
    );
}

#[tokio::test]
async fn never_emits_eos_and_stops_on_a_generated_stop_token() {
    let engine = MockerEngine::new(MockerConfig {
        vocab_size: 8,
        ..config(0.0)
    })
    .unwrap();
    let mut req = request("eos", 4, 300);
    req.stop.eos_token_ids = vec![0, 1, 2];
    let generated = tokens(&collect(engine.generate(req.clone())).await.unwrap());
    assert_eq!(generated.len(), 300);
    assert!(
        generated.iter().all(|t| (3..8).contains(t)),
        "{generated:?}"
    );

    // The same prompt again, with its first token declared a stop token: it stops at once...
    let stop_at = generated[0];
    req.stop.stop_token_ids = vec![stop_at];
    let items = collect(engine.generate(req.clone())).await.unwrap();
    assert_eq!(tokens(&items), vec![stop_at]);
    assert_eq!(
        items.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );
    // ...unless min_tokens 1 suppresses that one; then it stops at the token's next occurrence.
    let next_hit = 1 + generated[1..].iter().position(|&t| t == stop_at).unwrap();
    req.stop.min_tokens = 1;
    let items = collect(engine.generate(req)).await.unwrap();
    assert_eq!(tokens(&items), generated[..=next_hit].to_vec());
    assert_eq!(
        items.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );
}

#[tokio::test(start_paused = true)]
async fn timing_follows_the_model() {
    // Prompt 100, 10 tokens: one prefill step (10 + 100 * 0.5 = 60 ms) that yields the first
    // token, then 9 decode steps of 10 + 2 = 12 ms.
    for (speedup, total_ms, first_ms) in [(1.0, 168.0, 60.0), (2.0, 84.0, 30.0)] {
        let engine = MockerEngine::new(config(speedup)).unwrap();
        let start = Instant::now();
        let mut stream = engine.generate(request("t", 100, 10));
        let mut first = None;
        let mut count = 0;
        while let Some(item) = stream.next().await {
            count += item.unwrap().token_ids.len();
            first.get_or_insert(start.elapsed());
        }
        assert_eq!(count, 10);
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let first = first.unwrap().as_secs_f64() * 1000.0;
        // The timer has millisecond resolution: allow up to 1 ms of rounding per step.
        assert!(
            total >= total_ms && total <= total_ms + 10.0,
            "total {total} ms"
        );
        assert!(
            first >= first_ms && first <= first_ms + 1.0,
            "first token {first} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn batch_slots_are_capped_and_all_300_requests_complete() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let streams: Vec<EngineStream> = (0..300)
        .map(|i| engine.generate(request(&format!("r{i}"), 32, 20)))
        .collect();
    assert_eq!(engine.waiting_requests(), 300);
    // Let the first step be planned (it admits within max_num_seqs and the token budget).
    tokio::time::sleep(Duration::from_micros(1)).await;
    assert_eq!(engine.active_requests(), 256);
    assert_eq!(engine.waiting_requests(), 44);
    assert_eq!(engine.kv_used_blocks(), 256 * 2);

    let handles: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(collect(s)))
        .collect();
    for handle in handles {
        let items = handle.await.unwrap().unwrap();
        assert_eq!(tokens(&items).len(), 20);
        assert_eq!(
            items.last().unwrap().finish_reason,
            Some(FinishReason::Length)
        );
    }
    assert!(settle(|| engine.active_requests() == 0).await);
    assert_eq!(engine.waiting_requests(), 0);
    assert_eq!(engine.kv_used_blocks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_complete_at_full_speed() {
    let engine = MockerEngine::new(MockerConfig {
        max_num_seqs: 64,
        ..config(0.0)
    })
    .unwrap();
    let handles: Vec<_> = (0..300)
        .map(|i| {
            let stream = engine.generate(request(&format!("r{i}"), 1 + i % 50, 50));
            tokio::spawn(collect(stream))
        })
        .collect();
    for handle in handles {
        let items = handle.await.unwrap().unwrap();
        assert_eq!(tokens(&items).len(), 50);
    }
    assert!(settle(|| engine.active_requests() == 0 && engine.kv_used_blocks() == 0).await);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_frees_the_slot_within_a_step() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let mut stream = engine.generate(request("cancel", 64, 1_000_000));
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(engine.active_requests(), 1);
    assert!(engine.kv_used_blocks() > 0);
    drop(stream);
    // A decode step of one sequence is 12 ms; the scheduler notices at the next step.
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(engine.active_requests(), 0);
    assert_eq!(engine.kv_used_blocks(), 0);
}

#[tokio::test]
async fn cancellation_at_full_speed_does_not_starve_the_runtime() {
    // Current-thread runtime, no simulated delay: the client only gets to read (and drop) if the
    // scheduler loop yields between steps.
    let engine = MockerEngine::new(config(0.0)).unwrap();
    let mut stream = engine.generate(request("cancel", 8, u32::MAX));
    for _ in 0..5 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    assert!(settle(|| engine.active_requests() == 0).await);
    assert_eq!(engine.kv_used_blocks(), 0);
}

#[tokio::test]
async fn cancelling_a_waiting_request_removes_it_from_the_queue() {
    let engine = MockerEngine::new(MockerConfig {
        max_num_seqs: 1,
        ..config(0.0)
    })
    .unwrap();
    let running = engine.generate(request("long", 8, u32::MAX));
    let queued = engine.generate(request("queued", 8, 10));
    assert!(settle(|| engine.active_requests() == 1).await);
    assert_eq!(engine.waiting_requests(), 1);
    drop(queued);
    assert!(settle(|| engine.waiting_requests() == 0).await);
    drop(running);
    assert!(settle(|| engine.active_requests() == 0).await);
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let engine = MockerEngine::new(MockerConfig {
        num_gpu_blocks: 4,
        block_size: 16,
        ..config(0.0)
    })
    .unwrap();
    let err = collect(engine.generate(request("empty", 0, 5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidRequest(ref m) if m.contains("no tokens")),
        "{err}"
    );
    let err = collect(engine.generate(request("huge", 65, 5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidRequest(ref m) if m.contains("KV blocks")),
        "{err}"
    );
    let items = collect(engine.generate(request("zero", 5, 0)))
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].token_ids.is_empty());
    assert_eq!(items[0].finish_reason, Some(FinishReason::Length));
}

#[tokio::test(start_paused = true)]
async fn full_waiting_queue_answers_overloaded() {
    let engine = MockerEngine::new(MockerConfig {
        max_waiting_requests: 2,
        ..config(1.0)
    })
    .unwrap();
    let _a = engine.generate(request("a", 8, 5));
    let _b = engine.generate(request("b", 8, 5));
    let err = collect(engine.generate(request("c", 8, 5)))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Overloaded(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_engine_lets_in_flight_requests_finish() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let stream = engine.generate(request("a", 8, 30));
    drop(engine);
    let items = collect(stream).await.unwrap();
    assert_eq!(tokens(&items).len(), 30);
    assert_eq!(
        items.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
}

#[tokio::test]
async fn info_reports_kind_and_block_size() {
    let engine = MockerEngine::new(MockerConfig {
        block_size: 32,
        ..config(0.0)
    })
    .unwrap();
    let info = engine.info();
    assert_eq!(info.kind, "mocker");
    assert_eq!(info.kv_block_size, Some(32));
}

/// Collects everything an engine publishes.
#[derive(Default)]
struct Collect(Mutex<Vec<EngineEvent>>);

impl EngineEventSink for Collect {
    fn publish(&self, event: EngineEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Collect {
    fn kv_events(&self) -> Vec<KvCacheEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Kv(e) => Some(e.clone()),
                EngineEvent::Load(_) => None,
            })
            .collect()
    }

    fn last_load(&self) -> Option<EngineLoad> {
        self.0.lock().unwrap().iter().rev().find_map(|e| match e {
            EngineEvent::Load(load) => Some(*load),
            EngineEvent::Kv(_) => None,
        })
    }
}

/// The cached sequence hashes a router rebuilds from `events`, checking ids and parent links.
fn replay(events: &[KvCacheEvent], first_id: u64) -> HashSet<SequenceHash> {
    let mut cached = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.event_id, first_id + i as u64, "consecutive event ids");
        match &event.data {
            KvCacheEventData::Stored { parent, blocks } => {
                if let Some(p) = parent {
                    assert!(cached.contains(p), "parent {p} must be cached");
                }
                for b in blocks {
                    assert!(cached.insert(b.sequence_hash), "stored twice");
                }
            }
            KvCacheEventData::Removed { sequence_hashes } => {
                for h in sequence_hashes {
                    assert!(cached.remove(h), "removed {h} was not cached");
                }
            }
            KvCacheEventData::Cleared => cached.clear(),
        }
    }
    cached
}

#[tokio::test(start_paused = true)]
async fn repeated_prompt_hits_the_prefix_cache_and_finishes_sooner() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let timed = |id: &'static str| {
        let stream = engine.generate(request(id, 200, 5));
        async move {
            let start = Instant::now();
            let items = collect(stream).await.unwrap();
            (items, start.elapsed())
        }
    };
    let (cold, cold_time) = timed("cold").await;
    let (warm, warm_time) = timed("warm").await;
    assert_eq!(cold[0].cached_tokens, Some(0));
    // 200 tokens: 12 full blocks of 16 can be reused (the last token is always recomputed).
    assert_eq!(warm[0].cached_tokens, Some(192));
    assert_eq!(tokens(&warm), tokens(&cold));
    // Prefill of 200 tokens = 10 + 100 ms; of the 8 uncached ones = 10 + 4 ms; 4 decodes each.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    assert!(ms(cold_time) >= 110.0 + 4.0 * 12.0, "{cold_time:?}");
    assert!(ms(warm_time) < 14.0 + 4.0 * 12.0 + 6.0, "{warm_time:?}");
    assert!(engine.kv_cached_blocks() >= 12);
}

#[tokio::test(start_paused = true)]
async fn prefix_caching_off_means_no_hits_and_no_kv_events() {
    let sink = Arc::new(Collect::default());
    let engine = MockerEngine::new(MockerConfig {
        enable_prefix_caching: false,
        events: Some(sink.clone()),
        ..config(1.0)
    })
    .unwrap();
    for id in ["a", "b"] {
        let items = collect(engine.generate(request(id, 64, 3))).await.unwrap();
        assert_eq!(items[0].cached_tokens, Some(0));
    }
    assert!(sink.kv_events().is_empty());
    assert_eq!(engine.kv_cached_blocks(), 0);
    assert!(settle(|| sink.last_load().is_some_and(|l| l.active_requests == 0)).await);
}

#[tokio::test(start_paused = true)]
async fn events_dump_and_load_reports_agree_with_the_engine() {
    let sink = Arc::new(Collect::default());
    // A small cache so that eviction happens: 32 blocks of 16 tokens.
    let engine = MockerEngine::new(MockerConfig {
        num_gpu_blocks: 32,
        events: Some(sink.clone()),
        ..config(4.0)
    })
    .unwrap();
    let before = engine.dump_cache_state().await.unwrap();
    assert!(before.is_empty());
    let handles: Vec<_> = (0..24)
        .map(|i| {
            // Four families of prompts sharing a 48-token start, of different lengths.
            let mut req = request(&format!("r{i}"), 48 + 7 * i, 20);
            req.token_ids[0] = 5000 + (i % 4) as TokenId;
            tokio::spawn(collect(engine.generate(req)))
        })
        .collect();
    for handle in handles {
        let items = handle.await.unwrap().unwrap();
        assert_eq!(tokens(&items).len(), 20);
    }
    assert!(settle(|| engine.active_requests() == 0).await);

    let events = sink.kv_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.data, KvCacheEventData::Removed { .. })),
        "the small cache must evict"
    );
    let cached = replay(&events, 1);
    assert_eq!(cached.len(), engine.kv_cached_blocks());

    let dump = engine.dump_cache_state().await.unwrap();
    let last_id = events.last().unwrap().event_id;
    assert!(dump.iter().all(|e| e.event_id == last_id));
    let mut from_dump = HashSet::new();
    for event in &dump {
        let KvCacheEventData::Stored { parent, blocks } = &event.data else {
            panic!("dump holds Stored events only");
        };
        assert!(parent.is_none_or(|p| from_dump.contains(&p)));
        from_dump.extend(blocks.iter().map(|b| b.sequence_hash));
    }
    assert_eq!(from_dump, cached);

    assert!(settle(|| sink.last_load().is_some_and(|l| l.active_requests == 0)).await);
    assert_eq!(
        sink.last_load(),
        Some(EngineLoad {
            active_requests: 0,
            waiting_requests: 0,
            kv_used_blocks: 0,
            kv_total_blocks: 32,
            kv_cached_blocks: cached.len() as u64,
        })
    );

    // Reset: one Cleared event, an empty cache.
    assert!(engine.reset_prefix_cache().await.unwrap());
    let after = sink.kv_events();
    assert_eq!(after.len(), events.len() + 1);
    assert_eq!(after.last().unwrap().data, KvCacheEventData::Cleared);
    assert!(replay(&after, 1).is_empty());
    assert_eq!(engine.kv_cached_blocks(), 0);
    assert!(engine.dump_cache_state().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn reset_is_refused_while_a_request_holds_blocks() {
    let engine = MockerEngine::new(config(1.0)).unwrap();
    let mut stream = engine.generate(request("long", 64, 1000));
    stream.next().await.unwrap().unwrap();
    assert!(!engine.reset_prefix_cache().await.unwrap());
    drop(stream);
    assert!(settle(|| engine.kv_used_blocks() == 0).await);
    assert!(engine.reset_prefix_cache().await.unwrap());
}
