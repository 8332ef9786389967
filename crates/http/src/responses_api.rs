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
use switchyard_frontend::{ActiveTicket, Endpoint, Generation, RequestRecord};
use switchyard_protocol::responses::{
    IncompleteDetails, OutputItem, OutputText, ResponseObject, ResponseUsage, ResponsesRequest,
};
use switchyard_protocol::{ApiError, ErrorKind};

use crate::error::HttpError;
use crate::openai::parse_body;
use crate::server::HttpService;

pub(crate) async fn responses(
    State(service): State<Arc<HttpService>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let mut record = RequestRecord::new(service.metrics.clone(), Endpoint::Responses);
    match serve(&service, body, arrived, &mut record).await {
        Ok(response) => response,
        Err(error) => {
            record.set_status(error.kind.error_type());
            if error.kind == ErrorKind::Internal {
                tracing::error!(error = %error.message, "request failed");
            }
            HttpError(error).into_response()
        }
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
    };
    if state.request.stream {
        Ok(stream(state, generation))
    } else {
        unary(state, generation).await
    }
}

/// The finished response object: one message with the whole text.
fn finished<'a>(
    state: &'a ResponseState,
    text: &'a str,
    finish: &'static str,
    generation: &Generation,
) -> ResponseObject<'a> {
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
    let body = serde_json::to_vec(&finished(
        &state,
        &collected.text,
        collected.finish,
        &generation,
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
    state: ResponseState,
    generation: Generation,
    phase: Phase,
    text: String,
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

    fn closing(&mut self, finish: &'static str) {
        let message_id = self.state.message_id.clone();
        let text = std::mem::take(&mut self.text);
        let response = to_value(&finished(&self.state, &text, finish, &self.generation));
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
    let st = StreamState {
        state,
        generation,
        phase: Phase::Opening,
        text: String::new(),
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
                if !delta.text.is_empty() {
                    st.text.push_str(delta.text);
                    st.events.text_delta(&st.state.message_id, delta.text);
                }
                delta.finish_reason.map(|r| r.as_openai_str())
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

fn to_value(value: &impl Serialize) -> Value {
    // Serializing our own response types cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn write_json(buf: &mut BytesMut, value: &impl Serialize) {
    let mut writer = buf.writer();
    let _ = serde_json::to_writer(&mut writer, value);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
