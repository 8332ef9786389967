//! `POST /v1/responses`: OpenAI's Responses API on the chat pipeline. Unary answers one
//! `response` object; streams send the Responses event sequence (`response.created` …
//! `response.output_text.delta` … `response.completed`), each as `event: <type>` + `data:`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use switchyard_frontend::switchyard_parsers::{Delta, OutputParser, ParsedOutput};
use switchyard_frontend::{ActiveTicket, ChatOutputParsing, Endpoint, Generation, RequestRecord};
use switchyard_protocol::ApiError;
use switchyard_protocol::responses::{
    IncompleteDetails, OutputItem, OutputText, ReasoningText, ResponseObject, ResponseUsage,
    ResponsesRequest,
};

use crate::openai::{fail, parse_body, unix_now};
use crate::server::HttpService;

pub(crate) async fn responses(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let mut record = RequestRecord::new(service.metrics.clone(), Endpoint::Responses);
    match serve(&service, body, arrived, &mut record).await {
        Ok(response) => response,
        Err(error) => fail(record, error),
    }
}

/// One response being produced: the request it echoes back and its ids.
struct ResponseState {
    request: ResponsesRequest,
    id: String,
    message_id: String,
    model: String,
    created_at: u64,
    record: RequestRecord,
    _ticket: ActiveTicket,
    /// Tool-call and reasoning parsing of the answer.
    parsing: ChatOutputParsing,
}

async fn serve(
    service: &Arc<HttpService>,
    body: Result<Bytes, BytesRejection>,
    arrived: Instant,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let ticket = service.admit()?;
    let request: ResponsesRequest = parse_body(body)?;
    let chat = request.to_chat_request()?;
    let pipeline = service.manager.get(&request.model)?;
    let parsing = pipeline.chat_output_parsing(&chat)?;
    record.set_model(pipeline.name());
    let suffix: u128 = rand::rng().random();
    let id = format!("resp_{suffix:032x}");
    let preprocessed = pipeline.preprocess_chat(chat, &id).await?;
    let generation = pipeline
        .generate(preprocessed, Endpoint::Responses, arrived)
        .await?;
    let state = ResponseState {
        message_id: format!("msg_{suffix:032x}"),
        id,
        model: pipeline.name().to_string(),
        created_at: unix_now(),
        record: std::mem::replace(record, RequestRecord::detached(service.metrics.clone())),
        _ticket: ticket,
        request,
        parsing,
    };
    if state.request.stream {
        Ok(stream(state, generation))
    } else {
        unary(state, generation).await
    }
}

/// One item of a response's `output`, in the order the items were opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemRef {
    Reasoning,
    Message,
    /// The `n`th parsed tool call.
    Call(usize),
}

/// The order a whole answer's items go in: reasoning first (it came first), the message when
/// there is text (or nothing else), then one `function_call` per call.
fn default_order(out: &ParsedOutput) -> Vec<ItemRef> {
    let mut order = Vec::with_capacity(2 + out.tool_calls.len());
    if !out.reasoning.is_empty() {
        order.push(ItemRef::Reasoning);
    }
    if !out.content.is_empty() || out.tool_calls.is_empty() {
        order.push(ItemRef::Message);
    }
    order.extend((0..out.tool_calls.len()).map(ItemRef::Call));
    order
}

fn reasoning_id(state: &ResponseState) -> String {
    format!("rs_{}", &state.message_id["msg_".len()..])
}

fn call_item_id(call_id: &str) -> String {
    format!("fc_{}", call_id.trim_start_matches("call_"))
}

/// The finished response object with `order`'s items.
fn finished<'a>(
    state: &'a ResponseState,
    out: &'a ParsedOutput,
    finish: &'static str,
    generation: &Generation,
    order: &[ItemRef],
) -> ResponseObject<'a> {
    let text = out.content.as_str();
    let incomplete = finish == "length";
    let status = if incomplete {
        "incomplete"
    } else {
        "completed"
    };
    let mut response =
        state
            .request
            .response_object(&state.id, state.created_at, status, &state.model);
    for item in order {
        response.output.push(match *item {
            ItemRef::Message => OutputItem::Message {
                id: &state.message_id,
                status,
                role: "assistant",
                content: vec![OutputText::new(text)],
            },
            ItemRef::Call(i) => {
                let call = &out.tool_calls[i];
                OutputItem::FunctionCall {
                    id: call_item_id(&call.id),
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    status: "completed",
                }
            }
            ItemRef::Reasoning => OutputItem::Reasoning {
                id: reasoning_id(state),
                summary: [],
                content: vec![ReasoningText {
                    kind: "reasoning_text",
                    text: &out.reasoning,
                }],
            },
        });
    }
    response.output_text = Some(text);
    response.usage = Some(ResponseUsage::new(
        generation.prompt_tokens(),
        generation.completion_tokens(),
        generation.cached_tokens().unwrap_or(0),
    ));
    response.incomplete_details = incomplete.then_some(IncompleteDetails {
        reason: "max_output_tokens",
    });
    response
}

async fn unary(mut state: ResponseState, mut generation: Generation) -> Result<Response, ApiError> {
    let collected = generation.collect().await?;
    state.record.set_status("success");
    let out = if state.parsing.is_none() {
        ParsedOutput {
            content: collected.text,
            ..ParsedOutput::default()
        }
    } else {
        state
            .parsing
            .parser(&generation.prompt_tail_text())
            .parse_complete(&collected.text)
    };
    let order = default_order(&out);
    let body = serde_json::to_vec(&finished(
        &state,
        &out,
        collected.finish,
        &generation,
        &order,
    ))
    .unwrap_or_default();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// Where a stream is: the opening events are sent before the first token.
enum Phase {
    Opening,
    Text,
    Done,
}

struct StreamState {
    generation: Generation,
    phase: Phase,
    parser: Option<OutputParser>,
    emitter: Emitter,
}

/// Turns a stream's parsed output into events (apart from the generation, so a delta
/// borrowed from it can be sent without copying).
struct Emitter {
    state: ResponseState,
    /// What was streamed so far: content, reasoning, tool calls.
    out: ParsedOutput,
    events: EventWriter,
    /// The output items opened so far; an item's `output_index` is its position here.
    items: Vec<ItemRef>,
}

/// SSE events with consecutive sequence numbers.
struct EventWriter {
    sequence: u64,
    buf: BytesMut,
}

/// `response.output_text.delta` (or `response.reasoning_text.delta`), the one event sent per
/// token: borrowed, so it allocates nothing.
#[derive(Serialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

impl EventWriter {
    fn start(&mut self, kind: &str) -> u64 {
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(kind.as_bytes());
        self.buf.put_slice(b"\ndata: ");
        self.sequence += 1;
        self.sequence - 1
    }

    /// Appends one event: `event: <type>` and its data with the next sequence number.
    fn event(&mut self, kind: &str, mut data: Value) {
        let sequence = self.start(kind);
        if let Some(object) = data.as_object_mut() {
            object.insert("type".into(), Value::String(kind.to_string()));
            object.insert("sequence_number".into(), Value::from(sequence));
        }
        write_json(&mut self.buf, &data);
        self.buf.put_slice(b"\n\n");
    }

    fn text_delta(&mut self, kind: &'static str, item_id: &str, output_index: u32, delta: &str) {
        let sequence_number = self.start(kind);
        let event = TextDeltaEvent {
            kind,
            sequence_number,
            item_id,
            output_index,
            content_index: 0,
            delta,
            logprobs: (kind == OUTPUT_TEXT_DELTA).then_some([]),
        };
        write_json(&mut self.buf, &event);
        self.buf.put_slice(b"\n\n");
    }
}

const OUTPUT_TEXT_DELTA: &str = "response.output_text.delta";
const REASONING_TEXT_DELTA: &str = "response.reasoning_text.delta";

impl Emitter {
    fn event(&mut self, kind: &str, data: Value) {
        self.events.event(kind, data);
    }

    fn opening(&mut self, parsing: bool) {
        let created = to_value(&self.state.request.response_object(
            &self.state.id,
            self.state.created_at,
            "in_progress",
            &self.state.model,
        ));
        self.event("response.created", json!({ "response": created }));
        self.event("response.in_progress", json!({ "response": created }));
        // Without parsers every token is message text: open the message at once.
        if !parsing {
            self.open(ItemRef::Message);
        }
    }

    /// The item's output index, opening it (`output_item.added`, and its content part) first.
    fn open(&mut self, item: ItemRef) -> u32 {
        if let Some(at) = self.items.iter().position(|i| *i == item) {
            return at as u32;
        }
        let index = self.items.len() as u32;
        self.items.push(item);
        match item {
            ItemRef::Message => {
                let id = self.state.message_id.clone();
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": {"type": "message", "id": id,
                           "status": "in_progress", "role": "assistant", "content": []}}),
                );
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                );
            }
            ItemRef::Reasoning => {
                let id = reasoning_id(&self.state);
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": {"type": "reasoning", "id": id,
                           "summary": [], "content": []}}),
                );
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "reasoning_text", "text": ""}}),
                );
            }
            ItemRef::Call(i) => {
                let call = &self.out.tool_calls[i];
                let item = json!({"type": "function_call", "id": call_item_id(&call.id),
                                  "call_id": call.id, "name": call.name, "arguments": "",
                                  "status": "in_progress"});
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
            }
        }
        index
    }

    /// Sends one parsed delta: reasoning and text as deltas of their items, tool calls as
    /// new `function_call` items and their argument deltas.
    fn parsed(&mut self, delta: &Delta<'_>) {
        let calls_before = self.out.tool_calls.len();
        self.out.push_delta(delta);
        if !delta.reasoning.is_empty() {
            let index = self.open(ItemRef::Reasoning);
            let id = reasoning_id(&self.state);
            self.events
                .text_delta(REASONING_TEXT_DELTA, &id, index, &delta.reasoning);
        }
        if !delta.content.is_empty() {
            let index = self.open(ItemRef::Message);
            self.events.text_delta(
                OUTPUT_TEXT_DELTA,
                &self.state.message_id,
                index,
                &delta.content,
            );
        }
        let mut next_new = calls_before;
        for piece in &delta.tool_calls {
            if piece.id.is_some() && next_new < self.out.tool_calls.len() {
                self.open(ItemRef::Call(next_new));
                next_new += 1;
            }
            if piece.arguments.is_empty() {
                continue;
            }
            let Some(call) = self.out.tool_calls.get(piece.index) else {
                continue;
            };
            let item_id = call_item_id(&call.id);
            let index = self.open(ItemRef::Call(piece.index));
            self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": index, "delta": piece.arguments}),
            );
        }
    }

    fn closing(&mut self, finish: &'static str, generation: &Generation) {
        if self.items.is_empty() {
            self.open(ItemRef::Message);
        }
        let order = self.items.clone();
        let response = to_value(&finished(
            &self.state,
            &self.out,
            finish,
            generation,
            &order,
        ));
        for (index, item) in order.iter().enumerate() {
            let done = response["output"][index].clone();
            match *item {
                ItemRef::Message => {
                    self.event(
                        "response.output_text.done",
                        json!({"item_id": done["id"], "output_index": index, "content_index": 0,
                               "text": self.out.content, "logprobs": []}),
                    );
                    self.event(
                        "response.content_part.done",
                        json!({"item_id": done["id"], "output_index": index, "content_index": 0,
                               "part": done["content"][0]}),
                    );
                }
                ItemRef::Reasoning => {
                    self.event(
                        "response.reasoning_text.done",
                        json!({"item_id": done["id"], "output_index": index, "content_index": 0,
                               "text": self.out.reasoning}),
                    );
                    self.event(
                        "response.content_part.done",
                        json!({"item_id": done["id"], "output_index": index, "content_index": 0,
                               "part": done["content"][0]}),
                    );
                }
                ItemRef::Call(_) => {
                    self.event(
                        "response.function_call_arguments.done",
                        json!({"item_id": done["id"], "output_index": index,
                               "arguments": done["arguments"]}),
                    );
                }
            }
            self.event(
                "response.output_item.done",
                json!({"output_index": index, "item": done}),
            );
        }
        let kind = if finish == "length" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(kind, json!({ "response": response }));
        self.state.record.set_status("success");
    }
}

fn stream(state: ResponseState, generation: Generation) -> Response {
    let parser =
        (!state.parsing.is_none()).then(|| state.parsing.parser(&generation.prompt_tail_text()));
    let st = StreamState {
        parser,
        generation,
        phase: Phase::Opening,
        emitter: Emitter {
            state,
            out: ParsedOutput::default(),
            events: EventWriter {
                sequence: 0,
                buf: BytesMut::with_capacity(4096),
            },
            items: Vec::with_capacity(2),
        },
    };
    let body = futures::stream::unfold(st, |mut st| async move {
        match st.phase {
            Phase::Done => return None,
            Phase::Opening => {
                st.emitter.opening(st.parser.is_some());
                st.phase = Phase::Text;
                let bytes = st.emitter.events.buf.split().freeze();
                return Some((Ok::<Bytes, Infallible>(bytes), st));
            }
            Phase::Text => {}
        }
        let finish = match st.generation.next().await {
            None => return None,
            Some(Ok(delta)) => {
                let finish = delta.finish_reason.map(|r| r.as_openai_str());
                match &mut st.parser {
                    Some(parser) => {
                        let parsed = parser.push(delta.text);
                        st.emitter.parsed(&parsed);
                    }
                    None if !delta.text.is_empty() => {
                        let emitter = &mut st.emitter;
                        emitter.out.content.push_str(delta.text);
                        emitter.events.text_delta(
                            OUTPUT_TEXT_DELTA,
                            &emitter.state.message_id,
                            0,
                            delta.text,
                        );
                    }
                    None => {}
                }
                finish
            }
            Some(Err(error)) => {
                st.emitter.state.record.set_status(error.kind.error_type());
                let body = error.body().error;
                st.emitter.event(
                    "error",
                    json!({"code": body.code, "message": body.message, "param": body.param}),
                );
                st.phase = Phase::Done;
                let bytes = st.emitter.events.buf.split().freeze();
                return Some((Ok(bytes), st));
            }
        };
        if let Some(finish) = finish {
            if let Some(parser) = &mut st.parser {
                let rest = parser.finish();
                st.emitter.parsed(&rest);
            }
            st.emitter.closing(finish, &st.generation);
            st.phase = Phase::Done;
        }
        let bytes = st.emitter.events.buf.split().freeze();
        Some((Ok(bytes), st))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn to_value(value: &impl Serialize) -> Value {
    // Serializing our own response types cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn write_json(buf: &mut BytesMut, value: &impl Serialize) {
    let mut writer = buf.writer();
    let _ = serde_json::to_writer(&mut writer, value);
}
