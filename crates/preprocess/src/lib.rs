//! Preprocessing inputs for the frontend: a model folder becomes a [`ModelCard`], whose
//! [`Tokenizer`] turns text into token ids and whose [`ChatTemplate`] turns chat messages into
//! the prompt text, exactly as Python `transformers` renders it.
//!
//! - [`ModelCard::load`] reads a Hugging Face style folder (`tokenizer.json`,
//!   `tokenizer_config.json`, `chat_template.jinja`, `config.json`, `generation_config.json`):
//!   context length, EOS ids, special tokens, chat template, tokenizer; or a GGUF file, whose
//!   metadata ([`gguf::GgufMetadata`]) carries the same (byte-level BPE tokenizers, rebuilt as
//!   Python `transformers` converts them).
//! - [`ChatTemplate`] compiles a template once ([`ChatTemplate::new`] or
//!   [`ModelCard::compile_chat_template`]) and renders a [`ChatTemplateInput`] per request
//!   ([`ChatTemplate::render`], or [`ChatTemplate::render_continuing_final_message`] for
//!   `continue_final_message`). [`flatten_text_content`] turns OpenAI text content parts into
//!   plain strings first, for templates whose [`ChatTemplate::accepts_content_parts`] is false.
//! - [`Tokenizer`] encodes the rendered prompt (`add_special_tokens = false`: the template
//!   already wrote them). Encoding is CPU work: async callers run it on a blocking pool.
//! - [`PreprocessError`] is every failure; [`PreprocessError::to_api_error`] maps it to a 400
//!   (the request's fault, e.g. a template's `raise_exception`) or a 500.

mod card;
mod error;
pub mod gguf;
mod gguf_card;
mod template;
mod tokenizer;

pub use card::{DEFAULT_CONTEXT_LENGTH, ModelCard, is_gguf_file, single_gguf_in};
pub use error::PreprocessError;
pub use template::{ChatTemplate, ChatTemplateInput, flatten_text_content};
pub use tokenizer::Tokenizer;
