//! The test models the checkers use, loaded once per process.
//!
//! They live in the git-ignored `models/` folder (`scripts/fetch-test-models.sh`), or in
//! `$SWITCHYARD_TEST_MODELS` as for the preprocess golden tests. A missing model is a setup
//! error, reported with the command that fixes it.

use std::path::PathBuf;
use std::sync::OnceLock;

use switchyard_preprocess::{ChatTemplate, ModelCard};

/// The folder holding the test models.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("SWITCHYARD_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    }
}

/// A model card with its compiled default chat template.
pub struct LoadedModel {
    pub card: ModelCard,
    pub template: ChatTemplate,
}

fn load(name: &str) -> LoadedModel {
    let dir = models_dir().join(name);
    let card = ModelCard::load(&dir).unwrap_or_else(|err| {
        panic!(
            "cannot load test model {}: {err} (run scripts/fetch-test-models.sh)",
            dir.display()
        )
    });
    let template = card
        .compile_chat_template()
        .unwrap_or_else(|err| panic!("{name}: chat template does not compile: {err}"))
        .unwrap_or_else(|| panic!("{name}: the test model has no chat template"));
    LoadedModel { card, template }
}

/// Qwen3 (byte-level BPE tokenizer, ChatML template with tools and thinking).
pub fn qwen3() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| load("qwen3"))
}

/// Gemma 3 (SentencePiece-style tokenizer, template that raises on bad role order and walks
/// content parts itself).
pub fn gemma3() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| load("gemma3"))
}
