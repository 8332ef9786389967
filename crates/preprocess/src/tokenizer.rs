//! [`Tokenizer`]: a cheaply clonable handle on a Hugging Face `tokenizers` tokenizer.

use std::path::Path;
use std::sync::Arc;

use switchyard_protocol::TokenId;

use crate::error::PreprocessError;

/// A Hugging Face tokenizer (`tokenizer.json`), shared behind an [`Arc`]: clones are cheap and
/// all of them use the same vocabulary and merges.
///
/// **Encoding and decoding long texts are CPU work** (tens of microseconds to milliseconds):
/// async callers must run them on a blocking pool (`tokio::task::spawn_blocking` or a dedicated
/// thread pool), never on the reactor. The frontend does.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Parses a `tokenizer.json` document. `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self, PreprocessError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|err| {
            PreprocessError::model_file(origin, format!("not a valid tokenizer: {err}"))
        })?;
        Ok(Tokenizer::from(inner))
    }

    /// Reads and parses a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self, PreprocessError> {
        let bytes = std::fs::read(path)
            .map_err(|err| PreprocessError::model_file(path, format!("cannot read: {err}")))?;
        Self::from_bytes(&bytes, path)
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor (e.g. a
    /// BOS token); chat prompts rendered from a template already contain theirs and pass `false`.
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<TokenId>, PreprocessError> {
        // `encode_fast` skips the char-offset bookkeeping we never use; the ids are the same.
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|err| PreprocessError::Tokenizer(format!("encode failed: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, as `tokenizers` decodes it.
    pub fn decode(
        &self,
        ids: &[TokenId],
        skip_special_tokens: bool,
    ) -> Result<String, PreprocessError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|err| PreprocessError::Tokenizer(format!("decode failed: {err}")))
    }

    /// The id of one token of the vocabulary (added tokens included), e.g. `<|im_end|>`.
    pub fn token_to_id(&self, token: &str) -> Option<TokenId> {
        self.inner.token_to_id(token)
    }

    /// The token of one id.
    pub fn id_to_token(&self, id: TokenId) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped tokenizer, for incremental detokenization and other low-level uses.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The wrapped tokenizer as a shared handle (the postprocess crate keeps one per stream).
    pub fn shared(&self) -> Arc<tokenizers::Tokenizer> {
        self.inner.clone()
    }
}

impl From<tokenizers::Tokenizer> for Tokenizer {
    fn from(inner: tokenizers::Tokenizer) -> Self {
        Tokenizer {
            inner: Arc::new(inner),
        }
    }
}
