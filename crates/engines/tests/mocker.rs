//! Mocker engine behaviour through the `Engine` trait. Timing assertions run on Tokio's paused
//! clock, so they check simulated time, not wall time.

use std::time::Duration;

use futures::StreamExt;
use switchyard_engines::mocker::{MockerConfig, MockerEngine, TimingModel};
use switchyard_engines::{Engine, EngineError, EngineStream};
use switchyard_protocol::{
    EngineOutput, FinishReason, PreprocessedRequest, SamplingOptions, StopConditions, TokenId,
};
use tokio::time::Instant;

const TIMING: TimingModel = TimingModel {
    step_base_ms: 10.0,
    prefill_ms_per_token: 0.5,
    decode_ms_per_seq: 2.0,
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
