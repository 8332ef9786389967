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

/// The finished response object: the message with the whole text, then one `function_call`
/// item per parsed tool call, then the reasoning (when a reasoning parser split some off).
fn finished<'a>(
    state: &'a ResponseState,
    out: &'a ParsedOutput,
    finish: &'static str,
    generation: &Generation,
) -> ResponseObject<'a> {
    let text = out.content.as_str();
    let incomplete = finish == "length";
    let mut response = state.request.response_object(
        &state.id,
        state.created_at,
        if incomplete {
            "incomplete"
        } else {
            "completed"
        },
        &state.model,
    );
    response.output.push(OutputItem::Message {
        id: &state.message_id,
        status: if incomplete {
            "incomplete"
        } else {
            "completed"
        },
        role: "assistant",
        content: vec![OutputText::new(text)],
    });
    for call in &out.tool_calls {
        response.output.push(OutputItem::FunctionCall {
            id: format!("fc_{}", call.id.trim_start_matches("call_")),
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            status: "completed",
        });
    }
    if !out.reasoning.is_empty() {
        response.output.push(OutputItem::Reasoning {
            id: format!("rs_{}", &state.message_id["msg_".len()..]),
            summary: [],
            content: vec![ReasoningText {
                kind: "reasoning_text",
                text: &out.reasoning,
            }],
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
    let body = serde_json::to_vec(&finished(&state, &out, collected.finish, &generation))
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
    state: ResponseState,
    generation: Generation,
    phase: Phase,
    /// What was streamed so far: content (also sent as text deltas), reasoning, tool calls
    /// (sent as whole items at the end).
    out: ParsedOutput,
    parser: Option<OutputParser>,
    events: EventWriter,
}

/// SSE events with consecutive sequence numbers.
struct EventWriter {
    sequence: u64,
    buf: BytesMut,
}

/// `response.output_text.delta`, the one event sent per token: borrowed, so it allocates
/// nothing.
#[derive(Serialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
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

    fn text_delta(&mut self, item_id: &str, delta: &str) {
        const KIND: &str = "response.output_text.delta";
        let sequence_number = self.start(KIND);
        let event = TextDeltaEvent {
            kind: KIND,
            sequence_number,
            item_id,
            output_index: 0,
            content_index: 0,
            delta,
            logprobs: [],
        };
        write_json(&mut self.buf, &event);
        self.buf.put_slice(b"\n\n");
    }
}

impl StreamState {
    fn event(&mut self, kind: &str, data: Value) {
        self.events.event(kind, data);
    }

    fn opening(&mut self) {
        let created = to_value(&self.state.request.response_object(
            &self.state.id,
            self.state.created_at,
            "in_progress",
            &self.state.model,
        ));
        self.event("response.created", json!({ "response": created }));
        self.event("response.in_progress", json!({ "response": created }));
        let message_id = self.state.message_id.clone();
        self.event(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "message", "id": message_id,
                   "status": "in_progress", "role": "assistant", "content": []}}),
        );
        self.event(
            "response.content_part.added",
            json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
    }

    fn parsed(&mut self, delta: &Delta<'_>) {
        send_parsed(
            &mut self.events,
            &mut self.out,
            &self.state.message_id,
            delta,
        );
    }

    fn closing(&mut self, finish: &'static str) {
        if let Some(parser) = &mut self.parser {
            let rest = parser.finish();
            self.parsed(&rest);
        }
        let called = !self.out.tool_calls.is_empty();
        let finish = if called && finish == "stop" {
            "tool_calls"
        } else {
            finish
        };
        let message_id = self.state.message_id.clone();
        let text = self.out.content.clone();
        let response = to_value(&finished(&self.state, &self.out, finish, &self.generation));
        let item = response["output"][0].clone();
        let part = item["content"][0].clone();
        self.event(
            "response.output_text.done",
            json!({"item_id": message_id, "output_index": 0, "content_index": 0,
                   "text": text, "logprobs": []}),
        );
        self.event(
            "response.content_part.done",
            json!({"item_id": message_id, "output_index": 0, "content_index": 0, "part": part}),
        );
        self.event(
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        );
        // Function calls and reasoning, each as a whole item.
        let items = response["output"].as_array().cloned().unwrap_or_default();
        for (index, item) in items.into_iter().enumerate().skip(1) {
            self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            if item["type"] == "function_call" {
                self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": item["id"], "output_index": index,
                           "arguments": item["arguments"]}),
                );
            }
            self.event(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
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
        state,
        generation,
        phase: Phase::Opening,
        out: ParsedOutput::default(),
        events: EventWriter {
            sequence: 0,
            buf: BytesMut::with_capacity(4096),
        },
    };
    let body = futures::stream::unfold(st, |mut st| async move {
        match st.phase {
            Phase::Done => return None,
            Phase::Opening => {
                st.opening();
                st.phase = Phase::Text;
                let bytes = st.events.buf.split().freeze();
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
                        send_parsed(&mut st.events, &mut st.out, &st.state.message_id, &parsed);
                    }
                    None if !delta.text.is_empty() => {
                        st.out.content.push_str(delta.text);
                        st.events.text_delta(&st.state.message_id, delta.text);
                    }
                    None => {}
                }
                finish
            }
            Some(Err(error)) => {
                st.state.record.set_status(error.kind.error_type());
                let body = error.body().error;
                st.event(
                    "error",
                    json!({"code": body.code, "message": body.message, "param": body.param}),
                );
                st.phase = Phase::Done;
                let bytes = st.events.buf.split().freeze();
                return Some((Ok(bytes), st));
            }
        };
        if let Some(finish) = finish {
            st.closing(finish);
            st.phase = Phase::Done;
        }
        let bytes = st.events.buf.split().freeze();
        Some((Ok(bytes), st))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Content goes out as text deltas; reasoning and tool calls are kept for the end.
fn send_parsed(events: &mut EventWriter, out: &mut ParsedOutput, item_id: &str, delta: &Delta<'_>) {
    if !delta.content.is_empty() {
        events.text_delta(item_id, &delta.content);
    }
    out.push_delta(delta);
}

fn to_value(value: &impl Serialize) -> Value {
    // Serializing our own response types cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn write_json(buf: &mut BytesMut, value: &impl Serialize) {
    let mut writer = buf.writer();
    let _ = serde_json::to_writer(&mut writer, value);
}
