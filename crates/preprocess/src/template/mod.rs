//! [`ChatTemplate`]: a Hugging Face chat template compiled once and rendered per request, with
//! the output Python `transformers` (`apply_chat_template(..., tokenize=False)`) gives.
//!
//! What transformers does and this module reproduces:
//! - jinja2 `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
//!   `loopcontrols` extension; no trailing newline kept.
//! - globals `raise_exception(msg)` and `strftime_now(fmt)`, its own `tojson` filter
//!   (`json.dumps` with `ensure_ascii=False`), the `{% generation %}` tag (body rendered as is).
//! - the template sees `messages`, `tools` (None when absent), `documents` (None),
//!   `add_generation_prompt`, the tokenizer's named special tokens (`bos_token`, `eos_token`,
//!   `pad_token`...) and the caller's extra keyword arguments (which override special tokens).
//! - messages are normalised first: keys whose value is `null` are dropped (so a `content: null`
//!   is undefined, not None), and a message carrying reasoning under `reasoning_content`,
//!   `thinking` or `reasoning` gets it under both `thinking` and `reasoning_content`.
//! - Python semantics on values: `True`/`None` print as in Python, floats print as Python's
//!   `repr`, Python `str` methods (`strip`, `split`, `startswith`, ...) behave as Python's.
//!
//! Known differences, none met in the templates we test: `{% set %}` inside a
//! `{% generation %}` block leaks out of it (jinja2 scopes it), and floats nested in a printed
//! list or concatenated with `~` use minijinja's notation (`1e20` rather than `1e+20`).

mod json;
mod python;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Rest, Value, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value as JsonValue};

use crate::error::PreprocessError;

const TEMPLATE_NAME: &str = "chat_template";

/// The variables a template sees that callers cannot override through `extra`.
const RESERVED_VARIABLES: [&str; 3] = ["messages", "tools", "add_generation_prompt"];

/// Reasoning field names, in the order transformers looks for them.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Appended to the final message to find where its text ends in the rendered prompt; the same
/// marker transformers uses, so that trimming templates cut at the same place.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// One render's input.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatTemplateInput<'a> {
    /// OpenAI-style messages (`role`, `content`, `tool_calls`, `tool_call_id`, ...).
    pub messages: &'a [JsonValue],
    /// Tool definitions (`{"type": "function", "function": {...}}`), if the request has any.
    pub tools: Option<&'a [JsonValue]>,
    /// Append the assistant turn header so the model answers next.
    pub add_generation_prompt: bool,
    /// `chat_template_kwargs`: extra top-level variables (`enable_thinking`, `date_string`,
    /// `documents`...).
    pub extra: Option<&'a Map<String, JsonValue>>,
}

/// A compiled chat template. Cheap to clone; `Send + Sync`; rendering takes `&self`.
#[derive(Clone)]
pub struct ChatTemplate {
    inner: Arc<Compiled>,
}

struct Compiled {
    env: Environment<'static>,
    special_tokens: Vec<(String, Value)>,
    source: String,
    /// [`ChatTemplate::accepts_content_parts`], decided once at compile time.
    accepts_content_parts: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.inner.source.len())
            .finish()
    }
}

/// The error `raise_exception(msg)` raises, recognised after rendering to report `msg` verbatim.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

impl ChatTemplate {
    /// Compiles `source` with `bos_token` and `eos_token` as template variables.
    pub fn new(
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate, PreprocessError> {
        let tokens = [("bos_token", bos_token), ("eos_token", eos_token)]
            .into_iter()
            .filter_map(|(name, token)| token.map(|t| (name.to_string(), t)));
        Self::with_special_tokens(source, tokens)
    }

    /// Compiles `source` with any named special tokens (`bos_token`, `pad_token`, ...) as
    /// template variables, as transformers passes them all.
    pub fn with_special_tokens(
        source: &str,
        special_tokens: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ChatTemplate, PreprocessError> {
        let mut env = Environment::new();
        configure(&mut env);
        let prepared = rewrite_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, prepared)
            .map_err(|err| PreprocessError::TemplateSyntax(describe(&err)))?;
        let special_tokens = special_tokens
            .into_iter()
            .map(|(name, token)| (name, Value::from(token)))
            .collect();
        Ok(ChatTemplate {
            inner: Arc::new(Compiled {
                env,
                special_tokens,
                accepts_content_parts: walks_content_parts(source),
                source: source.to_string(),
            }),
        })
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether the template itself walks a message's `content` as a list of parts (as Gemma's
    /// and Llama 4's do); if not, callers should [`flatten_text_content`] first, as vLLM does.
    pub fn accepts_content_parts(&self) -> bool {
        self.inner.accepts_content_parts
    }

    /// Renders the conversation so that the model continues its final message (OpenAI extra
    /// `continue_final_message`): the prompt ends right after that message's text, without its
    /// end-of-turn tokens. Same algorithm as transformers: mark the text's end, render, cut at
    /// the mark (and strip trailing whitespace when the template trimmed the text).
    pub fn render_continuing_final_message(
        &self,
        input: &ChatTemplateInput<'_>,
    ) -> Result<String, PreprocessError> {
        if input.add_generation_prompt {
            return Err(PreprocessError::InvalidInput(
                "continue_final_message and add_generation_prompt are not compatible".into(),
            ));
        }
        let Some((last, earlier)) = input.messages.split_last() else {
            return Err(PreprocessError::InvalidInput(
                "continue_final_message is set but the conversation is empty".into(),
            ));
        };
        if !self.inner.source.contains("content") {
            return Err(PreprocessError::InvalidInput(
                "continue_final_message is set but the chat template never reads `content`".into(),
            ));
        }
        let mut last = last.clone();
        let final_text = match last.get_mut("content") {
            Some(JsonValue::String(text)) => {
                let original = text.clone();
                text.push_str(CONTINUE_TAG);
                original
            }
            Some(JsonValue::Array(parts)) => {
                // The last part that has a text is the one continued.
                let text = parts
                    .iter_mut()
                    .rev()
                    .find_map(|part| part.get_mut("text"))
                    .and_then(|text| match text {
                        JsonValue::String(text) => Some(text),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        PreprocessError::InvalidInput(
                            "continue_final_message is set but the final message has no text to continue"
                                .into(),
                        )
                    })?;
                let original = text.clone();
                text.push_str(CONTINUE_TAG);
                original
            }
            _ => {
                return Err(PreprocessError::InvalidInput(
                    "continue_final_message is set but the final message has no content to continue"
                        .into(),
                ));
            }
        };
        let mut messages = Vec::with_capacity(input.messages.len());
        messages.extend_from_slice(earlier);
        messages.push(last);
        let mut rendered = self.render(&ChatTemplateInput {
            messages: &messages,
            ..*input
        })?;
        let tag = CONTINUE_TAG.trim_end();
        let final_text = python::py_strip(&final_text, None, true, true);
        let tag_at = rendered.rfind(tag);
        let Some(tag_at) = tag_at.filter(|_| rendered.contains(final_text)) else {
            return Err(PreprocessError::TemplateRender(
                "continue_final_message is set but the final message does not appear in the \
                 rendered chat: the template rewrites it"
                    .into(),
            ));
        };
        if rendered[tag_at..].starts_with(CONTINUE_TAG) {
            rendered.truncate(tag_at);
        } else {
            // The template trimmed the text's trailing whitespace (and the tag's space).
            let kept = python::py_strip(&rendered[..tag_at], None, false, true).len();
            rendered.truncate(kept);
        }
        Ok(rendered)
    }

    /// Renders one conversation. Errors: [`PreprocessError::TemplateRaised`] when the template
    /// rejects the input with `raise_exception`, [`PreprocessError::TemplateRender`] for other
    /// render failures, [`PreprocessError::InvalidInput`] when a message is not a JSON object.
    pub fn render(&self, input: &ChatTemplateInput<'_>) -> Result<String, PreprocessError> {
        let messages = input
            .messages
            .iter()
            .enumerate()
            .map(|(idx, message)| normalize_message(idx, message))
            .collect::<Result<Vec<Value>, _>>()?;
        let tools = match input.tools {
            Some(tools) => tools.iter().map(json_to_value).collect(),
            None => Value::from(()),
        };

        let extra_len = input.extra.map_or(0, Map::len);
        let mut context: Vec<(Value, Value)> =
            Vec::with_capacity(self.inner.special_tokens.len() + extra_len + 4);
        for (name, token) in &self.inner.special_tokens {
            context.push((Value::from(name.as_str()), token.clone()));
        }
        context.push((Value::from("documents"), Value::from(())));
        if let Some(extra) = input.extra {
            for (key, value) in extra {
                if !RESERVED_VARIABLES.contains(&key.as_str()) {
                    context.push((Value::from(key.as_str()), json_to_value(value)));
                }
            }
        }
        context.push((Value::from("messages"), Value::from(messages)));
        context.push((Value::from("tools"), tools));
        context.push((
            Value::from("add_generation_prompt"),
            Value::from(input.add_generation_prompt),
        ));
        // Later pairs win on duplicate keys, giving transformers' precedence.
        let context = Value::from_pairs(context);

        let template = self
            .inner
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| PreprocessError::TemplateRender(describe(&err)))?;
        template.render(context).map_err(render_error)
    }
}

/// Installs the jinja2 configuration and globals transformers uses.
fn configure(env: &mut Environment<'static>) {
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .unwrap_or_default(),
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(python::unknown_method);
    env.set_formatter(|out, state, value| {
        // Python prints floats by `repr` (`1e-05`, `1e+16`); everything else minijinja
        // already prints the Python way (`True`, `None`, `['a', 1]`).
        if value.is_number()
            && !value.is_integer()
            && let Ok(x) = f64::try_from(value.clone())
        {
            return out
                .write_str(&python::py_float_repr(x))
                .map_err(|_| Error::from(ErrorKind::WriteFailure));
        }
        minijinja::escape_formatter(out, state, value)
    });
    // `ValueOrKwargs`: plain `Value` arguments reject keyword arguments.
    env.add_filter("tojson", |value: &Value, args: Rest<ValueOrKwargs>| {
        json::tojson_filter(value, &into_values(args))
    });
    env.add_filter("trim", |value: &Value, args: Rest<ValueOrKwargs>| {
        let a = python::bind_args("trim", &into_values(args), &["chars"])?;
        let chars = match &a[0] {
            Some(v) if !v.is_none() => Some(v.to_string()),
            _ => None,
        };
        let text = match value.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(value.to_string()),
        };
        Ok::<_, Error>(Value::from(python::py_strip(
            &text,
            chars.as_deref(),
            true,
            true,
        )))
    });
    env.add_function(
        "raise_exception",
        |message: Value| -> Result<Value, Error> {
            let message = message.to_string();
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(RaisedException(message)))
        },
    );
    env.add_function("strftime_now", |format: &str| strftime_now(format));
}

fn into_values(args: Rest<ValueOrKwargs>) -> Vec<Value> {
    args.0.into_iter().map(ValueOrKwargs::into_value).collect()
}

fn strftime_now(format: &str) -> Result<String, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        ));
    }
    let mut out = String::new();
    write!(
        out,
        "{}",
        chrono::Local::now().format_with_items(items.into_iter())
    )
    .map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: cannot format {format:?}"),
        )
    })?;
    Ok(out)
}

/// A one-line description of a minijinja error, with its location and causes.
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn render_error(err: Error) -> PreprocessError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = cause {
        if let Some(raised) = current.downcast_ref::<RaisedException>() {
            return PreprocessError::TemplateRaised(raised.0.clone());
        }
        cause = current.source();
    }
    PreprocessError::TemplateRender(describe(&err))
}

/// transformers' `AssistantTracker` extension adds `{% generation %}...{% endgeneration %}`,
/// whose body renders unchanged. minijinja has no custom tags, so the tags become
/// `{% if true %}`/`{% endif %}`, which keep the same whitespace-control behaviour.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (head, after_open) = rest.split_at(start + 2);
        out.push_str(head);
        let (modifier, body) = match after_open.as_bytes().first() {
            Some(b'-' | b'+') => after_open.split_at(1),
            _ => ("", after_open),
        };
        let word_start = body.len() - body.trim_start().len();
        let (space, word_and_rest) = body.split_at(word_start);
        let replaced = [("endgeneration", "endif"), ("generation", "if true")]
            .into_iter()
            .find_map(|(word, replacement)| {
                let tail = word_and_rest.strip_prefix(word)?;
                let tail_trimmed = tail.trim_start_matches([' ', '\t', '\n', '\r', '-', '+']);
                tail_trimmed
                    .starts_with("%}")
                    .then_some((replacement, tail))
            });
        match replaced {
            Some((replacement, tail)) => {
                out.push_str(modifier);
                out.push_str(space);
                out.push_str(replacement);
                rest = tail;
            }
            None => rest = after_open,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A JSON value as a template value (objects keep their key order).
pub(crate) fn json_to_value(value: &JsonValue) -> Value {
    match value {
        JsonValue::Null => Value::from(()),
        JsonValue::Bool(b) => Value::from(*b),
        JsonValue::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        JsonValue::String(s) => Value::from(s.as_str()),
        JsonValue::Array(items) => items.iter().map(json_to_value).collect(),
        JsonValue::Object(obj) => {
            Value::from_pairs(obj.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

/// One message as transformers hands it to the template: `null` keys dropped, reasoning
/// aliased under `thinking` (first key) and `reasoning_content`.
fn normalize_message(idx: usize, message: &JsonValue) -> Result<Value, PreprocessError> {
    let JsonValue::Object(obj) = message else {
        return Err(PreprocessError::InvalidInput(format!(
            "messages[{idx}] must be an object"
        )));
    };
    let present = |key: &str| obj.get(key).filter(|v| !v.is_null());
    let reasoning = REASONING_FIELDS.iter().find_map(|key| present(key));
    let mut pairs: Vec<(&str, Value)> = Vec::with_capacity(obj.len() + 2);
    if let Some(reasoning) = reasoning {
        let thinking = present("thinking").unwrap_or(reasoning);
        pairs.push(("thinking", json_to_value(thinking)));
    }
    for (key, value) in obj {
        if value.is_null() || (reasoning.is_some() && key == "thinking") {
            continue;
        }
        let value = match reasoning {
            Some(reasoning) if key == "reasoning_content" => reasoning,
            _ => value,
        };
        pairs.push((key.as_str(), json_to_value(value)));
    }
    if let Some(reasoning) = reasoning
        && present("reasoning_content").is_none()
    {
        pairs.push(("reasoning_content", json_to_value(reasoning)));
    }
    Ok(Value::from_pairs(pairs))
}

/// Turns OpenAI content-part lists whose parts are all text (`[{"type": "text", "text": ...}]`)
/// into one string, the parts joined with `"\n"`, as vLLM does for templates that expect a
/// string `content`. Messages with any non-text part are left as they are, so the caller can
/// reject or handle them explicitly. A null `content` becomes `""`.
pub fn flatten_text_content(messages: &mut [JsonValue]) {
    for message in messages {
        let Some(content) = message.get_mut("content") else {
            continue;
        };
        // An assistant message that only calls tools has no content: templates that expect a
        // string get an empty one, as vLLM renders it.
        if content.is_null() {
            *content = JsonValue::String(String::new());
            continue;
        }
        let JsonValue::Array(parts) = content else {
            continue;
        };
        let all_text = parts.iter().all(|part| {
            part.get("type").and_then(JsonValue::as_str) == Some("text")
                && part.get("text").is_some_and(JsonValue::is_string)
        });
        if !all_text {
            continue;
        }
        let mut joined = String::new();
        for (idx, part) in parts.iter().enumerate() {
            if idx > 0 {
                joined.push('\n');
            }
            joined.push_str(
                part.get("text")
                    .and_then(JsonValue::as_str)
                    .unwrap_or_default(),
            );
        }
        *content = JsonValue::String(joined);
    }
}

/// Whether a template source walks a message's `content` as a list (a `for` over it).
fn walks_content_parts(src: &str) -> bool {
    // A `for` over a message's content, or a type test on it, means the template handles
    // lists itself.
    const CONTENT_ACCESSES: [&str; 4] = [
        "message['content']",
        "message[\"content\"]",
        "message.content",
        "content",
    ];
    src.split("{%").skip(1).any(|block| {
        let statement = block.split("%}").next().unwrap_or_default();
        let statement = statement.trim_start_matches(['-', '+']).trim_start();
        statement.starts_with("for ")
            && statement.split(" in ").nth(1).is_some_and(|iterable| {
                let iterable = iterable.trim_end_matches(['-', '+', ' ']).trim();
                CONTENT_ACCESSES.iter().any(|a| iterable.starts_with(a))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, messages: &[JsonValue]) -> Result<String, PreprocessError> {
        let template = ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into()))?;
        template.render(&ChatTemplateInput {
            messages,
            ..Default::default()
        })
    }

    #[test]
    fn compiled_templates_are_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<ChatTemplate>();
    }

    #[test]
    fn raise_exception_reports_the_message_as_a_client_error() {
        let err = render(
            "{% if messages|length == 0 %}{{ raise_exception('need ' ~ 1 ~ ' message') }}{% endif %}",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TemplateRaised("need 1 message".into())
        );
        assert!(err.is_client_error());
        let api = err.to_api_error();
        assert_eq!(api.kind.http_status(), 400);
        assert_eq!(api.message, "need 1 message");
        // Raised inside a macro and a loop, the message still comes through.
        let err = render(
            "{% macro check(m) %}{% if m.role == 'bad' %}{{ raise_exception('bad role') }}{% endif %}{% endmacro %}\
             {% for m in messages %}{{ check(m) }}{% endfor %}",
            &[json!({"role": "bad"})],
        )
        .unwrap_err();
        assert_eq!(err, PreprocessError::TemplateRaised("bad role".into()));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ChatTemplate::new("line one\n{% for x in %}\n", None, None).unwrap_err();
        let PreprocessError::TemplateSyntax(message) = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(message.contains(":2"), "{message}");
        assert!(!err.is_client_error());
        let err = ChatTemplate::new("{% if x %}never closed", None, None).unwrap_err();
        assert!(matches!(err, PreprocessError::TemplateSyntax(_)), "{err:?}");
    }

    #[test]
    fn other_render_failures_are_render_errors() {
        let err = render("{{ messages[0].content + 1 }}", &[json!({"content": "x"})]).unwrap_err();
        assert!(matches!(err, PreprocessError::TemplateRender(_)), "{err:?}");
        assert!(err.is_client_error());
    }

    #[test]
    fn messages_must_be_objects() {
        let err = render("{{ messages }}", &[json!({"role": "user"}), json!("text")]).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::InvalidInput("messages[1] must be an object".into())
        );
    }

    #[test]
    fn variables_and_their_precedence() {
        let template =
            ChatTemplate::new("{{ bos_token }}|{{ eos_token }}|{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}|{{ messages|length }}|{{ flag }}", Some("<s>".into()), Some("</s>".into()))
                .unwrap();
        let messages = [json!({"role": "user", "content": "hi"})];
        let extra = json!({
            "eos_token": "<override>",
            "messages": [],
            "add_generation_prompt": false,
            "flag": 7
        });
        let out = template
            .render(&ChatTemplateInput {
                messages: &messages,
                tools: None,
                add_generation_prompt: true,
                extra: extra.as_object(),
            })
            .unwrap();
        // Extra variables override special tokens but never the request's own inputs.
        assert_eq!(out, "<s>|<override>|True|True|True|1|7");
        let tools = [json!({"type": "function"})];
        let out = template
            .render(&ChatTemplateInput {
                messages: &messages,
                tools: Some(&tools),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out, "<s>|</s>|False|True|False|1|");
    }

    #[test]
    fn messages_are_normalised_like_transformers() {
        let out = render(
            "{% for m in messages %}{{ m|tojson }}\n{% endfor %}",
            &[
                json!({"role": "assistant", "content": null, "reasoning": "r1"}),
                json!({"role": "assistant", "reasoning_content": "r2", "thinking": "t2", "content": "c"}),
                json!({"role": "user", "content": "u", "name": null}),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "{\"thinking\": \"r1\", \"role\": \"assistant\", \"reasoning\": \"r1\", \"reasoning_content\": \"r1\"}\n\
             {\"thinking\": \"t2\", \"role\": \"assistant\", \"reasoning_content\": \"r2\", \"content\": \"c\"}\n\
             {\"role\": \"user\", \"content\": \"u\"}\n"
        );
    }

    #[test]
    fn undefined_behaves_like_jinja2_default() {
        let out = render(
            "[{{ nope }}]{% if nope %}T{% else %}F{% endif %}{{ nope is defined }}{% for x in nope %}x{% endfor %}{{ messages[0].missing is defined }}",
            &[json!({"role": "user"})],
        )
        .unwrap();
        assert_eq!(out, "[]FFalseFalse");
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = "{% for m in messages %}\n{%- generation -%}\n  [{{ m.content }}]\n{%- endgeneration %}\n{% endfor %}";
        let out = render(source, &[json!({"content": "a"}), json!({"content": "b"})]).unwrap();
        assert_eq!(out, "[a][b]");
        assert_eq!(
            rewrite_generation_tags("{%+ generation %}x{% endgeneration -%}"),
            "{%+ if true %}x{% endif -%}"
        );
        // Only the tag itself is rewritten, not names that contain the word.
        let untouched =
            "{% if generation_prompt %}{{ generation }}{% endif %}{% set generation = 1 %}";
        assert_eq!(rewrite_generation_tags(untouched), untouched);
    }

    #[test]
    fn strftime_now_formats_the_local_time() {
        let year = chrono::Local::now().format("%Y").to_string();
        let out = render(
            "{{ strftime_now('%Y') }}|{{ strftime_now('%d %b %Y')|length }}",
            &[],
        )
        .unwrap();
        let (rendered_year, rest) = out.split_once('|').unwrap();
        // A render straddling New Year's midnight may see the next year.
        assert!(
            rendered_year == year
                || rendered_year.parse::<i32>().ok() == year.parse::<i32>().ok().map(|y| y + 1),
            "{out}"
        );
        assert_eq!(rest, "11");
        let err = render("{{ strftime_now('%Q') }}", &[]).unwrap_err();
        assert!(err.to_string().contains("invalid format"), "{err}");
    }

    #[test]
    fn python_methods_take_keyword_arguments() {
        let out = render(
            "{{ 'a b c'.split(maxsplit=1) }}|{{ 'x'.center(width=3, fillchar='-') }}|{{ ' y '|trim }}|{{ 'zzyzz'|trim('z') }}|{{ 0.00001 }}|{{ 2.5 }}",
            &[],
        )
        .unwrap();
        assert_eq!(out, "['a', 'b c']|-x-|y|y|1e-05|2.5");
        let err = render("{{ 'a'.split(bogus=1) }}", &[]).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = render("{{ {'a': 1}|tojson(bogus=1) }}", &[]).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn continue_final_message_rejects_what_it_cannot_continue() {
        let template = ChatTemplate::new(
            "{% for m in messages %}[{{ m.content }}]{% endfor %}",
            None,
            None,
        )
        .unwrap();
        let continue_with = |messages: &[JsonValue], add_generation_prompt: bool| {
            template.render_continuing_final_message(&ChatTemplateInput {
                messages,
                add_generation_prompt,
                ..Default::default()
            })
        };
        let ok = [
            json!({"role": "user", "content": "q"}),
            json!({"role": "assistant", "content": "a b"}),
        ];
        assert_eq!(continue_with(&ok, false).unwrap(), "[q][a b");
        for (messages, add_generation_prompt) in [
            (vec![], false),
            (ok.to_vec(), true),
            (vec![json!({"role": "assistant", "content": null})], false),
            (
                vec![json!({"role": "assistant", "content": [{"type": "image"}]})],
                false,
            ),
        ] {
            let err = continue_with(&messages, add_generation_prompt).unwrap_err();
            assert!(
                matches!(err, PreprocessError::InvalidInput(_)),
                "{messages:?}: {err:?}"
            );
        }
        // A template that drops the final message cannot be continued.
        let dropping = ChatTemplate::new("{{ messages[0].content }}", None, None).unwrap();
        let err = dropping
            .render_continuing_final_message(&ChatTemplateInput {
                messages: &ok,
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, PreprocessError::TemplateRender(_)), "{err:?}");
    }

    #[test]
    fn flatten_text_content_joins_text_parts_only() {
        let mut messages = vec![
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]}),
            json!({"role": "user", "content": "plain"}),
            json!({"role": "assistant", "content": null}),
            json!({"role": "user", "content": []}),
        ];
        let untouched = messages[1].clone();
        flatten_text_content(&mut messages);
        assert_eq!(messages[0]["content"], "a\nb");
        assert_eq!(messages[1], untouched);
        assert_eq!(messages[2]["content"], "plain");
        // No content (an assistant that only calls tools) renders as an empty string.
        assert_eq!(messages[3]["content"], "");
        assert_eq!(messages[4]["content"], "");
    }

    #[test]
    fn content_parts_support_is_detected() {
        let walks_parts = [
            "{% for item in message['content'] %}{{ item.text }}{% endfor %}",
            "{%- for part in message.content -%}{{ part }}{%- endfor -%}",
        ];
        for source in walks_parts {
            assert!(
                ChatTemplate::new(source, None, None)
                    .unwrap()
                    .accepts_content_parts(),
                "{source}"
            );
        }
        let string_only = [
            "{% for message in messages %}{{ message.content }}{% endfor %}",
            "{{ messages[0]['content'] | trim }}",
        ];
        for source in string_only {
            assert!(
                !ChatTemplate::new(source, None, None)
                    .unwrap()
                    .accepts_content_parts(),
                "{source}"
            );
        }
    }
}
