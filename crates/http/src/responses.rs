//! Response bodies: unary JSON and SSE streams, for one or several choices.
//!
//! A streamed response is one SSE stream per choice merged with `select_all`, followed by a
//! tail that adds the usage chunk and `data: [DONE]`. A failure mid-stream is sent as an
//! `event: error` SSE event and the stream ends without `[DONE]`, so no client mistakes a
//! truncated answer for a complete one.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use switchyard_frontend::switchyard_parsers::{Delta, OutputParser};
use switchyard_frontend::{
    ActiveTicket, ChatOutputParsing, Collected, Endpoint, Generation, RequestRecord, TokenTexts,
};

use crate::logprobs;
use crate::openai::unix_now;
use switchyard_protocol::ApiError;
use switchyard_protocol::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionResponse, ChatDelta,
    ChatLogprobs, CompletionChoice, CompletionChunk, CompletionResponse, FunctionCallChunk,
    FunctionCallOut, ResponseMessage, ToolCallChunk, ToolCallOut, Usage,
};

/// What every chunk of one response shares.
pub(crate) struct ResponseContext {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// Chat completion chunks rather than text completion ones.
    pub chat: bool,
    pub include_usage: bool,
    /// Choices generated per prompt (`n`, or `best_of`): choices `k·c … k·c + c − 1` share
    /// prompt `k`, whose tokens usage counts once.
    pub choices_per_prompt: u32,
    /// `n`: the choices per prompt the client gets; fewer than generated with `best_of`, which
    /// keeps the candidates with the highest cumulative logprob.
    returned_per_prompt: u32,
    /// The request asked for logprobs: choices carry a `logprobs` object (else null).
    pub logprobs: bool,
    /// Completions' `echo`: each prompt's text (empty without echo).
    echo: Vec<String>,
    parsing: ChatOutputParsing,
    pub record: Mutex<RequestRecord>,
    pub _ticket: ActiveTicket,
    usage: Mutex<UsageTotals>,
    errored: AtomicBool,
}

#[derive(Default)]
struct UsageTotals {
    prompt: u32,
    completion: u32,
    cached: Option<u32>,
}

impl UsageTotals {
    /// Adds choice `index`; its prompt counts only for the first choice of that prompt.
    fn add(&mut self, generation: &Generation, index: u32, choices_per_prompt: u32) {
        if index.is_multiple_of(choices_per_prompt.max(1)) {
            self.prompt += generation.prompt_tokens();
        }
        self.completion += generation.completion_tokens();
        if let Some(c) = generation.cached_tokens() {
            self.cached = Some(self.cached.unwrap_or(0) + c);
        }
    }

    fn usage(&self) -> Usage {
        Usage::new(self.prompt, self.completion, self.cached)
    }
}

/// What the request asked its response to contain, beyond the text.
pub(crate) struct ResponseShape {
    pub include_usage: bool,
    /// Choices generated per prompt (`best_of`, else `n`).
    pub choices_per_prompt: u32,
    /// `n`, choices per prompt returned (at most `choices_per_prompt`).
    pub returned_per_prompt: u32,
    pub logprobs: bool,
    /// Completions' `echo`: each prompt's text, put before its choices' text (else empty).
    pub echo: Vec<String>,
    /// Chat: tool-call and reasoning parsing of each choice's text.
    pub parsing: ChatOutputParsing,
}

impl ResponseContext {
    pub fn new(
        id: String,
        model: String,
        endpoint: Endpoint,
        shape: ResponseShape,
        record: RequestRecord,
        ticket: ActiveTicket,
    ) -> Self {
        ResponseContext {
            id,
            model,
            created: unix_now(),
            chat: endpoint == Endpoint::ChatCompletions,
            include_usage: shape.include_usage,
            choices_per_prompt: shape.choices_per_prompt,
            returned_per_prompt: shape.returned_per_prompt.min(shape.choices_per_prompt),
            logprobs: shape.logprobs,
            echo: shape.echo,
            parsing: shape.parsing,
            record: Mutex::new(record),
            _ticket: ticket,
            usage: Mutex::new(UsageTotals::default()),
            errored: AtomicBool::new(false),
        }
    }
}

impl ResponseContext {
    /// The echoed prompt text that choice `index` starts with, if the request asked for echo.
    fn echo_for(&self, index: u32) -> Option<&str> {
        self.echo
            .get((index / self.choices_per_prompt.max(1)) as usize)
            .map(String::as_str)
    }
}

fn json_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Runs every generation to completion and answers with one JSON body.
pub(crate) async fn unary(
    ctx: ResponseContext,
    generations: Vec<Generation>,
) -> Result<Response, ApiError> {
    let results = futures::future::join_all(generations.into_iter().map(collect)).await;
    let mut totals = UsageTotals::default();
    let mut choices = Vec::with_capacity(results.len());
    let mut parsed = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        let (collected, generation) = result?;
        totals.add(&generation, index as u32, ctx.choices_per_prompt);
        let texts = ctx.logprobs.then(|| generation.token_texts());
        if ctx.chat && !ctx.parsing.is_none() {
            parsed.push(
                ctx.parsing
                    .parser(&generation.prompt_tail_text())
                    .parse_complete(&collected.text),
            );
        }
        choices.push((collected, texts));
    }
    let usage = totals.usage();
    let returned = returned_choices(&ctx, &choices);
    let body = if ctx.chat {
        serde_json::to_vec(&ChatCompletionResponse {
            id: &ctx.id,
            object: "chat.completion",
            created: ctx.created,
            model: &ctx.model,
            choices: choices
                .iter()
                .enumerate()
                .map(|(i, (c, texts))| {
                    let logprobs = texts.as_ref().map(|t| logprobs::chat(t, &c.logprobs));
                    let Some(p) = parsed.get(i) else {
                        return ChatChoice {
                            index: i as u32,
                            message: ResponseMessage {
                                role: "assistant",
                                content: Some(&c.text),
                                reasoning_content: None,
                                tool_calls: Vec::new(),
                            },
                            logprobs,
                            finish_reason: Some(c.finish),
                        };
                    };
                    let tool_calls: Vec<ToolCallOut<'_>> = p
                        .tool_calls
                        .iter()
                        .map(|call| ToolCallOut {
                            id: &call.id,
                            kind: "function",
                            function: FunctionCallOut {
                                name: &call.name,
                                arguments: &call.arguments,
                            },
                        })
                        .collect();
                    ChatChoice {
                        index: i as u32,
                        message: ResponseMessage {
                            role: "assistant",
                            content: (!p.content.is_empty() || tool_calls.is_empty())
                                .then_some(p.content.as_str()),
                            reasoning_content: (!p.reasoning.is_empty())
                                .then_some(p.reasoning.as_str()),
                            tool_calls,
                        },
                        logprobs,
                        finish_reason: Some(finish_with_calls(
                            c.finish,
                            ctx.parsing.finishes_with_tool_calls(p.tool_calls.len()),
                        )),
                    }
                })
                .collect(),
            usage,
        })
    } else {
        serde_json::to_vec(&CompletionResponse {
            id: &ctx.id,
            object: "text_completion",
            created: ctx.created,
            model: &ctx.model,
            choices: returned
                .iter()
                .enumerate()
                .map(|(index, &i)| {
                    let (c, texts) = &choices[i];
                    let echo = ctx.echo_for(i as u32).unwrap_or("");
                    let mut offset = echo.chars().count() as u32;
                    CompletionChoice {
                        index: index as u32,
                        text: text_with_echo(echo, &c.text),
                        logprobs: texts
                            .as_ref()
                            .map(|t| logprobs::completion(t, &c.logprobs, &mut offset)),
                        finish_reason: Some(c.finish),
                    }
                })
                .collect(),
            usage: Some(usage),
        })
    }
    .map_err(|e| ApiError::internal(format!("cannot serialize response: {e}")))?;
    ctx.record.lock().set_status("success");
    Ok(json_response(body))
}

/// Which generated choices the client gets, in order: all of them, or with `best_of` each
/// prompt's `n` candidates of highest cumulative logprob (earlier first among equals).
fn returned_choices(
    ctx: &ResponseContext,
    choices: &[(Collected, Option<TokenTexts>)],
) -> Vec<usize> {
    let generated = ctx.choices_per_prompt.max(1) as usize;
    let keep = ctx.returned_per_prompt.max(1) as usize;
    if keep >= generated {
        return (0..choices.len()).collect();
    }
    let mut out = Vec::with_capacity(choices.len() / generated * keep);
    for start in (0..choices.len()).step_by(generated) {
        let end = (start + generated).min(choices.len());
        let mut group: Vec<(f32, usize)> = (start..end)
            .map(|i| {
                (
                    choices[i]
                        .0
                        .logprobs
                        .iter()
                        .map(|(_, l)| l.logprob)
                        .sum::<f32>(),
                    i,
                )
            })
            .collect();
        group.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        out.extend(group.iter().take(keep).map(|&(_, i)| i));
    }
    out
}

/// `tool_calls` replaces `stop` when the answer called tools (a `length` cut stays `length`).
fn finish_with_calls(finish: &'static str, called: bool) -> &'static str {
    if called && finish == "stop" {
        "tool_calls"
    } else {
        finish
    }
}

/// A completion choice's text after its echoed prompt (borrowed when there is none).
fn text_with_echo<'a>(echo: &str, text: &'a str) -> Cow<'a, str> {
    if echo.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{echo}{text}"))
    }
}

async fn collect(mut generation: Generation) -> Result<(Collected, Generation), ApiError> {
    let collected = generation.collect().await?;
    Ok((collected, generation))
}

/// Streams every generation as SSE chunks.
pub(crate) fn stream(ctx: ResponseContext, generations: Vec<Generation>) -> Response {
    let ctx = Arc::new(ctx);
    let choices: Vec<_> = generations
        .into_iter()
        .enumerate()
        .map(|(index, generation)| choice_stream(ctx.clone(), generation, index as u32).boxed())
        .collect();
    let tail = futures::stream::once(async move { tail(&ctx) })
        .filter(|b| futures::future::ready(!b.is_empty()));
    let body = futures::stream::select_all(choices)
        .chain(tail)
        .map(Ok::<Bytes, Infallible>);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

struct ChoiceState {
    ctx: Arc<ResponseContext>,
    generation: Generation,
    index: u32,
    first: bool,
    done: bool,
    buf: BytesMut,
    /// Set when the request asked for logprobs.
    texts: Option<TokenTexts>,
    /// Characters streamed so far (completions' `text_offset`).
    text_chars: u32,
    /// Chat with tool-call or reasoning parsing.
    parser: Option<OutputParser>,
}

fn choice_stream(
    ctx: Arc<ResponseContext>,
    generation: Generation,
    index: u32,
) -> impl futures::Stream<Item = Bytes> + Send {
    let texts = ctx.logprobs.then(|| generation.token_texts());
    let text_chars = ctx.echo_for(index).map_or(0, |e| e.chars().count() as u32);
    let parser = (ctx.chat && !ctx.parsing.is_none())
        .then(|| ctx.parsing.parser(&generation.prompt_tail_text()));
    let state = ChoiceState {
        ctx,
        generation,
        index,
        first: true,
        done: false,
        buf: BytesMut::with_capacity(4096),
        texts,
        text_chars,
        parser,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let ChoiceState {
            ctx,
            generation,
            index,
            first,
            buf,
            texts,
            text_chars,
            parser,
            ..
        } = &mut st;
        let (bytes, finished) = match generation.next().await {
            None => return None,
            Some(Ok(delta)) => {
                let finish = delta.finish_reason.map(|r| r.as_openai_str());
                if let Some(parser) = parser {
                    let logprobs = texts.as_ref().map(|t| logprobs::chat(t, delta.logprobs));
                    let parsed = parser.push(delta.text);
                    let opening = *first;
                    if !parsed.is_empty() || opening || logprobs.is_some() {
                        write_parsed_chunk(buf, ctx, *index, opening, &parsed, logprobs, None);
                        *first = false;
                    }
                    if let Some(finish) = finish {
                        let rest = parser.finish();
                        let finish = finish_with_calls(finish, parser.finishes_with_tool_calls());
                        write_parsed_chunk(buf, ctx, *index, false, &rest, None, Some(finish));
                    }
                } else if ctx.chat {
                    let delta_out = ChatDelta {
                        role: first.then_some("assistant"),
                        content: Some(delta.text),
                        ..ChatDelta::default()
                    };
                    let logprobs = texts.as_ref().map(|t| logprobs::chat(t, delta.logprobs));
                    write_chat_chunk(buf, ctx, *index, delta_out, logprobs, finish);
                } else {
                    let echo = if *first { ctx.echo_for(*index) } else { None };
                    let choice = [CompletionChoice {
                        index: *index,
                        text: text_with_echo(echo.unwrap_or(""), delta.text),
                        logprobs: texts
                            .as_ref()
                            .map(|t| logprobs::completion(t, delta.logprobs, text_chars)),
                        finish_reason: finish,
                    }];
                    write_event(
                        buf,
                        &CompletionChunk {
                            id: &ctx.id,
                            object: "text_completion",
                            created: ctx.created,
                            model: &ctx.model,
                            choices: &choice,
                            usage: None,
                        },
                    );
                }
                *first = false;
                (buf.split().freeze(), finish.is_some())
            }
            Some(Err(error)) => {
                ctx.errored.store(true, Ordering::Release);
                ctx.record.lock().set_status(error.kind.error_type());
                buf.put_slice(b"event: error\n");
                write_event(buf, &error.body());
                (buf.split().freeze(), true)
            }
        };
        if finished {
            let n = st.ctx.choices_per_prompt;
            st.ctx.usage.lock().add(&st.generation, st.index, n);
            st.done = true;
        }
        Some((bytes, st))
    })
}

/// One chat chunk of parsed output: content, reasoning and tool-call pieces.
fn write_parsed_chunk(
    buf: &mut BytesMut,
    ctx: &ResponseContext,
    index: u32,
    opening: bool,
    parsed: &Delta<'_>,
    logprobs: Option<ChatLogprobs>,
    finish: Option<&'static str>,
) {
    let tool_calls = parsed
        .tool_calls
        .iter()
        .map(|call| ToolCallChunk {
            index: call.index as u32,
            id: call.id.as_deref(),
            kind: call.id.is_some().then_some("function"),
            function: FunctionCallChunk {
                name: call.name.as_deref(),
                arguments: &call.arguments,
            },
        })
        .collect();
    let delta = ChatDelta {
        role: opening.then_some("assistant"),
        content: (opening || !parsed.content.is_empty()).then_some(&*parsed.content),
        reasoning_content: (!parsed.reasoning.is_empty()).then_some(&*parsed.reasoning),
        tool_calls,
    };
    write_chat_chunk(buf, ctx, index, delta, logprobs, finish);
}

/// One chat chunk with one choice.
fn write_chat_chunk(
    buf: &mut BytesMut,
    ctx: &ResponseContext,
    index: u32,
    delta: ChatDelta<'_>,
    logprobs: Option<ChatLogprobs>,
    finish: Option<&'static str>,
) {
    let choice = [ChatChunkChoice {
        index,
        delta,
        logprobs,
        finish_reason: finish,
    }];
    write_event(
        buf,
        &ChatCompletionChunk {
            id: &ctx.id,
            object: "chat.completion.chunk",
            created: ctx.created,
            model: &ctx.model,
            choices: &choice,
            usage: None,
        },
    );
}

/// The usage chunk and `[DONE]`, unless a choice failed.
fn tail(ctx: &ResponseContext) -> Bytes {
    if ctx.errored.load(Ordering::Acquire) {
        return Bytes::new();
    }
    let mut buf = BytesMut::with_capacity(512);
    if ctx.include_usage {
        let usage = ctx.usage.lock().usage();
        if ctx.chat {
            write_event(
                &mut buf,
                &ChatCompletionChunk {
                    id: &ctx.id,
                    object: "chat.completion.chunk",
                    created: ctx.created,
                    model: &ctx.model,
                    choices: &[],
                    usage: Some(usage),
                },
            );
        } else {
            write_event(
                &mut buf,
                &CompletionChunk {
                    id: &ctx.id,
                    object: "text_completion",
                    created: ctx.created,
                    model: &ctx.model,
                    choices: &[],
                    usage: Some(usage),
                },
            );
        }
    }
    buf.put_slice(b"data: [DONE]\n\n");
    ctx.record.lock().set_status("success");
    buf.freeze()
}

fn write_event(buf: &mut BytesMut, value: &impl Serialize) {
    buf.put_slice(b"data: ");
    let mut writer = buf.writer();
    // Serializing our own response types cannot fail.
    let _ = serde_json::to_writer(&mut writer, value);
    let buf = writer.into_inner();
    buf.put_slice(b"\n\n");
}
