//! The one error type of this crate, and its mapping to a client-visible [`ApiError`].

use std::path::PathBuf;

use switchyard_protocol::ApiError;

/// Why a model folder could not be loaded, a text could not be tokenized, or a chat template
/// could not be compiled or rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    /// A file of the model folder is missing, unreadable, not JSON, or holds a wrong value.
    #[error("{}: {message}", path.display())]
    ModelFile { path: PathBuf, message: String },
    /// The tokenizer failed to load, encode or decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template does not compile.
    #[error("chat template syntax error: {0}")]
    TemplateSyntax(String),
    /// The template called `raise_exception(message)`: the request does not fit the template
    /// (e.g. roles that do not alternate). The message is the template author's, verbatim.
    #[error("{0}")]
    TemplateRaised(String),
    /// Rendering failed for another reason (a value of the wrong type, an unknown filter...).
    #[error("chat template rendering failed: {0}")]
    TemplateRender(String),
    /// The chat input itself is malformed (a message that is not a JSON object...).
    #[error("invalid chat input: {0}")]
    InvalidInput(String),
}

impl PreprocessError {
    pub(crate) fn model_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        PreprocessError::ModelFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Whether the client's request caused this error (and should get a 400), as opposed to a
    /// broken model folder or tokenizer (a 500).
    ///
    /// Render errors count as the client's: a template only fails on input it does not accept
    /// (missing `content`, wrong roles, unsupported content types), as vLLM also reports them.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            PreprocessError::TemplateRaised(_)
                | PreprocessError::TemplateRender(_)
                | PreprocessError::InvalidInput(_)
        )
    }

    /// The error to send to the client.
    pub fn to_api_error(&self) -> ApiError {
        if self.is_client_error() {
            ApiError::invalid_param("messages", self.to_string())
        } else {
            ApiError::internal(self.to_string())
        }
    }
}

impl From<PreprocessError> for ApiError {
    fn from(err: PreprocessError) -> Self {
        err.to_api_error()
    }
}
