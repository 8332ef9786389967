//! Echo engine behaviour through the `Engine` trait.

use std::time::Duration;

use futures::StreamExt;
use switchyard_engines::echo::{EchoConfig, EchoEngine};
use switchyard_engines::{Engine, EngineStream};
use switchyard_protocol::{
    EngineOutput, FinishReason, PreprocessedRequest, StopConditions, TokenId,
};
use tokio::time::Instant;

fn request(prompt: &[TokenId], stop: StopConditions) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: "echo-test".into(),
        model: "echo".into(),
        token_ids: prompt.to_vec(),
        stop,
        ..Default::default()
    }
}

fn max(n: u32) -> StopConditions {
    StopConditions {
        max_tokens: n,
        ..Default::default()
    }
}

async fn collect(stream: EngineStream) -> Vec<EngineOutput> {
    stream
        .map(|item| item.expect("echo never fails"))
        .collect()
        .await
}

/// Each item's tokens, and the finish reason of each item.
fn shape(items: &[EngineOutput]) -> (Vec<Vec<TokenId>>, Vec<Option<FinishReason>>) {
    (
        items.iter().map(|o| o.token_ids.to_vec()).collect(),
        items.iter().map(|o| o.finish_reason).collect(),
    )
}

async fn echo(prompt: &[TokenId], stop: StopConditions) -> Vec<EngineOutput> {
    let engine = EchoEngine::new(EchoConfig::default());
    collect(engine.generate(request(prompt, stop))).await
}

#[tokio::test]
async fn echoes_prompt_one_token_per_item_then_stops() {
    let out = echo(&[5, 6, 7], max(100)).await;
    let (tokens, finish) = shape(&out);
    assert_eq!(tokens, vec![vec![5], vec![6], vec![7]]);
    assert_eq!(finish, vec![None, None, Some(FinishReason::Stop)]);
    assert!(out.iter().all(|o| !o.token_ids.spilled()));
}

#[tokio::test]
async fn max_tokens_shorter_than_prompt_finishes_with_length() {
    let (tokens, finish) = shape(&echo(&[1, 2, 3, 4, 5], max(2)).await);
    assert_eq!(tokens, vec![vec![1], vec![2]]);
    assert_eq!(finish, vec![None, Some(FinishReason::Length)]);
}

#[tokio::test]
async fn max_tokens_equal_to_prompt_is_length_because_eos_would_be_one_more() {
    let (tokens, finish) = shape(&echo(&[1, 2, 3], max(3)).await);
    assert_eq!(tokens, vec![vec![1], vec![2], vec![3]]);
    assert_eq!(finish.last(), Some(&Some(FinishReason::Length)));
}

#[tokio::test]
async fn max_tokens_zero_is_one_empty_length_item() {
    let (tokens, finish) = shape(&echo(&[1, 2, 3], max(0)).await);
    assert_eq!(tokens, vec![Vec::<TokenId>::new()]);
    assert_eq!(finish, vec![Some(FinishReason::Length)]);
}

#[tokio::test]
async fn empty_prompt_is_one_empty_stop_item() {
    let (tokens, finish) = shape(&echo(&[], max(10)).await);
    assert_eq!(tokens, vec![Vec::<TokenId>::new()]);
    assert_eq!(finish, vec![Some(FinishReason::Stop)]);
}

#[tokio::test]
async fn stop_token_in_prompt_is_emitted_and_stops() {
    let stop = StopConditions {
        max_tokens: 100,
        stop_token_ids: vec![6],
        ..Default::default()
    };
    let (tokens, finish) = shape(&echo(&[5, 6, 7], stop).await);
    assert_eq!(tokens, vec![vec![5], vec![6]]);
    assert_eq!(finish, vec![None, Some(FinishReason::Stop)]);
}

#[tokio::test]
async fn eos_in_prompt_is_echoed_and_ignore_eos_runs_to_max_tokens() {
    let stop = StopConditions {
        max_tokens: 100,
        eos_token_ids: vec![6],
        ..Default::default()
    };
    // A chat prompt is full of end-of-turn tokens: the echo says all of it, then stops.
    let (tokens, finish) = shape(&echo(&[5, 6, 7], stop.clone()).await);
    assert_eq!(tokens, vec![vec![5], vec![6], vec![7]]);
    assert_eq!(finish.last(), Some(&Some(FinishReason::Stop)));

    let ignoring = StopConditions {
        ignore_eos: true,
        max_tokens: 4,
        ..stop
    };
    let (tokens, finish) = shape(&echo(&[5, 6, 7], ignoring).await);
    // Neither the EOS in the prompt nor the one after it ends the stream: it runs to max_tokens.
    assert_eq!(tokens, vec![vec![5], vec![6], vec![7], vec![5]]);
    assert_eq!(finish.last(), Some(&Some(FinishReason::Length)));
}

#[tokio::test]
async fn min_tokens_suppresses_stop_tokens_and_eos() {
    let with_min = |min_tokens| StopConditions {
        max_tokens: 100,
        min_tokens,
        stop_token_ids: vec![2],
        ..Default::default()
    };
    // Without min_tokens the stop token at position 2 ends the stream.
    let (tokens, _) = shape(&echo(&[1, 2, 3, 4], with_min(0)).await);
    assert_eq!(tokens.concat(), vec![1, 2]);
    // With min_tokens 2 it is suppressed (a stop needs position > min_tokens).
    let (tokens, finish) = shape(&echo(&[1, 2, 3, 4], with_min(2)).await);
    assert_eq!(tokens.concat(), vec![1, 2, 3, 4]);
    assert_eq!(finish.last(), Some(&Some(FinishReason::Stop)));
    // A prompt shorter than min_tokens is replayed until EOS is allowed.
    let (tokens, finish) = shape(&echo(&[7, 8], with_min(5)).await);
    assert_eq!(tokens.concat(), vec![7, 8, 7, 8, 7]);
    assert_eq!(finish.last(), Some(&Some(FinishReason::Stop)));
}

#[test]
fn info_is_echo_without_blocks() {
    let info = EchoEngine::new(EchoConfig::default()).info();
    assert_eq!(info.kind, "echo");
    assert_eq!(info.kv_block_size, None);
}

#[test]
fn zero_delay_stream_works_without_a_runtime() {
    let engine = EchoEngine::new(EchoConfig::default());
    let out = futures::executor::block_on(collect(engine.generate(request(&[3, 4], max(9)))));
    assert_eq!(shape(&out).0, vec![vec![3], vec![4]]);
}

#[tokio::test(start_paused = true)]
async fn delay_spaces_tokens_first_one_immediately() {
    let engine = EchoEngine::new(EchoConfig {
        token_delay: Duration::from_millis(10),
    });
    let start = Instant::now();
    let mut stream = engine.generate(request(&[1, 2, 3, 4, 5], max(100)));
    let mut arrivals = Vec::new();
    while let Some(item) = stream.next().await {
        item.unwrap();
        arrivals.push(start.elapsed());
    }
    let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(10 * i)).collect();
    assert_eq!(arrivals, expected);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_delayed_stream_leaves_nothing_running() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let engine = EchoEngine::new(EchoConfig {
        token_delay: Duration::from_secs(3600),
    });
    let mut stream = engine.generate(request(&[1, 2, 3], max(100)));
    assert_eq!(
        stream.next().await.unwrap().unwrap().token_ids.as_slice(),
        &[1]
    );
    // The second token is an hour away: the stream is parked on its timer.
    let pending = futures::poll!(stream.next());
    assert!(pending.is_pending());
    assert_eq!(
        metrics.num_alive_tasks(),
        tasks_before,
        "no task behind the stream"
    );
    drop(stream);
    assert_eq!(metrics.num_alive_tasks(), tasks_before);
    // Nothing fires later either: the next hour passes without work or panic.
    tokio::time::advance(Duration::from_secs(7200)).await;
    assert_eq!(metrics.num_alive_tasks(), tasks_before);
}

#[tokio::test]
async fn long_zero_delay_stream_yields_to_other_tasks() {
    // A consumer that never awaits anything else must still let other tasks run (co-op budget).
    let engine = EchoEngine::new(EchoConfig::default());
    let stop = StopConditions {
        max_tokens: 1_000_000,
        ignore_eos: true,
        ..Default::default()
    };
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = flag.clone();
    tokio::spawn(async move { setter.store(true, std::sync::atomic::Ordering::SeqCst) });
    let mut stream = engine.generate(request(&[1, 2, 3], stop));
    let mut seen_before_flag = 0u32;
    while let Some(item) = stream.next().await {
        item.unwrap();
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        seen_before_flag += 1;
    }
    assert!(flag.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        seen_before_flag < 1_000_000,
        "the spawned task ran mid-stream"
    );
}
