//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, its component schemas
//! derived (`schemars`, JSON Schema 2020-12) from the same `switchyard_protocol` types the
//! handlers parse and serialize. Request bodies are described as they are deserialized,
//! responses as they are serialized. Built once, on first request.
//!
//! The route list is [`crate::server::api_routes`]; [`operation`] must describe each of them
//! (a test fails for a route without one).

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use switchyard_protocol::error::ErrorResponse;
use switchyard_protocol::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, DetokenizeRequest, DetokenizeResponse, ModelList,
    ModelObject, TokenizeRequest, TokenizeResponse,
};
use switchyard_protocol::responses::{
    OutputItem, OutputText, ReasoningText, ResponseObject, ResponsesRequest,
};
use switchyard_protocol::{ApiError, ErrorKind};

use crate::error::HttpError;

/// The serialized document, or why it could not be built (a bug: two different schemas under
/// one component name).
static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    let document = build()?;
    serde_json::to_vec(&document)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

pub(crate) async fn openapi_json() -> Response {
    match &*DOCUMENT {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        Err(why) => HttpError(ApiError::new(
            ErrorKind::Internal,
            format!("cannot build the OpenAPI document: {why}"),
        ))
        .into_response(),
    }
}

/// Component schemas for requests (deserialize contract) and responses (serialize contract).
struct Schemas {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12()
            .with(|s| {
                s.definitions_path = "/components/schemas".into();
                s.meta_schema = None;
            })
            .with_transform(RecursiveTransform(integer_bounds));
        Schemas {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
        }
    }

    fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    fn response<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    /// Both generators' definitions in one map; a name both define differently is an error.
    fn into_components(mut self) -> Result<Map<String, Value>, String> {
        let mut all = self.requests.take_definitions(true);
        for (name, schema) in self.responses.take_definitions(true) {
            match all.get(&name) {
                Some(existing) if *existing != schema => {
                    return Err(format!(
                        "component `{name}` differs between request and response contracts"
                    ));
                }
                _ => {
                    all.insert(name, schema);
                }
            }
        }
        Ok(all)
    }
}

/// The bounds of a Rust integer type, which schemars names only in `format` (validators do
/// not check `uint32`): a value outside them is refused by the server as it parses.
fn integer_bounds(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let (min, max): (Value, Value) = match object.get("format").and_then(Value::as_str) {
        Some("uint32") => (0.into(), u32::MAX.into()),
        Some("uint64" | "uint") => (0.into(), u64::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        _ => return,
    };
    object.entry("minimum").or_insert(min);
    object.entry("maximum").or_insert(max);
}

/// A `responses` entry with a JSON body.
fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The error statuses an operation can answer, each with the OpenAI error object.
fn with_errors(mut responses: Map<String, Value>, errors: &[(u16, &str)]) -> Value {
    for (status, why) in errors {
        responses.insert(status.to_string(), json_body(why, error_ref()));
    }
    Value::Object(responses)
}

fn ok_json(description: &str, schema: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("200".into(), json_body(description, schema));
    map
}

/// 200 as JSON, or as Server-Sent Events when the request set `stream: true`. The
/// `text/event-stream` schema describes one event as an `{event, data, id, retry}` object (as
/// the SSE parser sees it; `event` defaults to `message`), each event's `data` a JSON text
/// described by `contentMediaType` + `contentSchema`.
fn ok_json_or_events(description: &str, schema: Value, event: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "200".into(),
        json!({
            "description": description,
            "content": {
                "application/json": {"schema": schema},
                "text/event-stream": {"schema": event}
            }
        }),
    );
    map
}

/// A string holding JSON that `schema` describes (an SSE event's `data`).
fn json_text(schema: Value) -> Value {
    json!({"type": "string", "contentMediaType": "application/json", "contentSchema": schema})
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/schemas/ErrorResponse"})
}

/// One event of a chat or text completion stream: `data: <chunk>` events, `data: [DONE]` last;
/// a failure mid-stream is `event: error` with an ErrorResponse, and no `[DONE]` follows.
fn chunk_stream_event(chunk: Value) -> Value {
    json!({
        "type": "object",
        "properties": {"event": {"enum": ["message", "error"]}},
        "required": ["event", "data"],
        "if": {"properties": {"event": {"const": "error"}}},
        "then": {"properties": {"data": json_text(error_ref())}},
        "else": {
            "if": {"properties": {"data": {"const": "[DONE]"}}},
            "else": {"properties": {"data": json_text(chunk)}}
        }
    })
}

/// One event of a Responses stream: `event: <type>` and the event object as `data`, its
/// `type` the event name and `sequence_number` counting from 0. From `response.created` to
/// `response.completed` (or `response.incomplete`); a failure mid-stream is `event: error`.
fn response_stream_event(schemas: &mut Schemas) -> Value {
    let response = schemas.response::<ResponseObject<'static>>();
    let item = schemas.response::<OutputItem<'static>>();
    let index = json!({"type": "integer", "minimum": 0});
    let text = json!({"type": "string"});
    let part = json!({"anyOf": [
        schemas.response::<OutputText<'static>>(),
        schemas.response::<ReasoningText<'static>>(),
    ]});
    let in_item = |extra: Value| {
        let mut fields = json!({"item_id": text, "output_index": index});
        fields
            .as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        fields
    };
    // (event type, its fields besides `type` and `sequence_number`; all required)
    let kinds: Vec<(&str, Value)> = vec![
        ("response.created", json!({"response": response})),
        ("response.in_progress", json!({"response": response})),
        ("response.completed", json!({"response": response})),
        ("response.incomplete", json!({"response": response})),
        (
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ),
        (
            "response.content_part.added",
            in_item(json!({"content_index": index, "part": part})),
        ),
        (
            "response.content_part.done",
            in_item(json!({"content_index": index, "part": part})),
        ),
        (
            "response.output_text.delta",
            in_item(json!({"content_index": index, "delta": text})),
        ),
        (
            "response.output_text.done",
            in_item(json!({"content_index": index, "text": text, "logprobs": {"type": "array"}})),
        ),
        (
            "response.reasoning_text.delta",
            in_item(json!({"content_index": index, "delta": text})),
        ),
        (
            "response.reasoning_text.done",
            in_item(json!({"content_index": index, "text": text})),
        ),
        (
            "response.function_call_arguments.delta",
            in_item(json!({"delta": text})),
        ),
        (
            "response.function_call_arguments.done",
            in_item(json!({"arguments": text})),
        ),
        (
            "error",
            json!({
                "code": {"type": ["string", "integer", "null"]},
                "message": text,
                "param": {"type": ["string", "null"]},
            }),
        ),
    ];
    let names: Vec<&str> = kinds.iter().map(|(name, _)| *name).collect();
    let rules: Vec<Value> = kinds
        .into_iter()
        .map(|(name, fields)| {
            let mut required: Vec<&str> = vec!["type", "sequence_number"];
            required.extend(
                fields
                    .as_object()
                    .expect("an object")
                    .keys()
                    .map(String::as_str),
            );
            let mut properties = fields.as_object().expect("an object").clone();
            properties.insert("type".into(), json!({"const": name}));
            properties.insert("sequence_number".into(), index.clone());
            let data = json!({"type": "object", "properties": properties, "required": required});
            json!({
                "if": {"properties": {"event": {"const": name}}},
                "then": {"properties": {"data": json_text(data)}}
            })
        })
        .collect();
    json!({
        "type": "object",
        "properties": {"event": {"enum": names}},
        "required": ["event", "data"],
        "allOf": rules
    })
}

fn json_request(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// What a body the handlers parse themselves can fail with before the model is involved.
const BODY_ERRORS: [(u16, &str); 2] = [
    (
        400,
        "invalid JSON, a missing or out-of-range field, or a request the model cannot serve",
    ),
    (
        413,
        "the body is larger than the server accepts (SWITCHYARD_HTTP_BODY_LIMIT_MB)",
    ),
];

const GENERATION_ERRORS: [(u16, &str); 5] = [
    BODY_ERRORS[0],
    BODY_ERRORS[1],
    (404, "no such model (`model_not_found`)"),
    (
        500,
        "an engine failure or a bug (a failure mid-stream is an `event: error` instead)",
    ),
    (
        503,
        "no worker can take the request, or the server is draining",
    ),
];

/// The status object `/health` and `/live` answer with.
fn health_schema(states: &[&str], with_models: bool) -> Value {
    let mut properties = json!({"status": {"enum": states}});
    let mut required = vec!["status"];
    if with_models {
        properties["models"] = json!({"type": "array", "items": {"type": "string"}});
        properties["discovery"] = json!({
            "type": "object",
            "properties": {
                "state": {"enum": ["connected", "reconnecting"]},
                "reason": {"type": "string"}
            },
            "required": ["state"]
        });
        required.push("models");
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// The OpenAPI operation for one route, or `None` for a route this module does not know.
fn operation(schemas: &mut Schemas, method: &Method, path: &str) -> Option<Value> {
    let generation_errors = &GENERATION_ERRORS;
    let op = match (method.as_str(), path) {
        ("POST", "/v1/chat/completions") => json!({
            "operationId": "createChatCompletion",
            "summary": "Chat completion (OpenAI)",
            "requestBody": json_request(schemas.request::<ChatCompletionRequest>()),
            "responses": with_errors(
                ok_json_or_events(
                    "the completion; with `stream: true` an event stream",
                    schemas.response::<ChatCompletionResponse<'static>>(),
                    chunk_stream_event(schemas.response::<ChatCompletionChunk<'static>>()),
                ),
                generation_errors,
            ),
        }),
        ("POST", "/v1/completions") => json!({
            "operationId": "createCompletion",
            "summary": "Text completion (OpenAI)",
            "requestBody": json_request(schemas.request::<CompletionRequest>()),
            "responses": with_errors(
                ok_json_or_events(
                    "the completion; with `stream: true` an event stream",
                    schemas.response::<CompletionResponse<'static>>(),
                    chunk_stream_event(schemas.response::<CompletionChunk<'static>>()),
                ),
                generation_errors,
            ),
        }),
        ("POST", "/v1/responses") => json!({
            "operationId": "createResponse",
            "summary": "Responses API (OpenAI), unstored",
            "requestBody": json_request(schemas.request::<ResponsesRequest>()),
            "responses": with_errors(
                ok_json_or_events(
                    "the response object; with `stream: true` an event stream",
                    schemas.response::<ResponseObject<'static>>(),
                    response_stream_event(schemas),
                ),
                generation_errors,
            ),
        }),
        ("GET", "/v1/models") => json!({
            "operationId": "listModels",
            "summary": "Models with at least one worker",
            "responses": ok_json("the served models", schemas.response::<ModelList>()),
        }),
        ("GET", "/v1/models/{id}") => json!({
            "operationId": "retrieveModel",
            "summary": "One served model",
            "parameters": [{
                "name": "id",
                "in": "path",
                "required": true,
                "description": "the model name (may contain `/`)",
                "schema": {"type": "string", "minLength": 1},
            }],
            "responses": with_errors(
                ok_json("the model", schemas.response::<ModelObject>()),
                &[
                    (400, "the id is not valid UTF-8 once percent-decoded"),
                    (404, "no such model is served (`model_not_found`)"),
                ],
            ),
        }),
        ("POST", "/tokenize") => json!({
            "operationId": "tokenize",
            "summary": "Token ids of a prompt or of chat messages (vLLM)",
            "requestBody": json_request(schemas.request::<TokenizeRequest>()),
            "responses": with_errors(
                ok_json("the token ids", schemas.response::<TokenizeResponse>()),
                &[
                    BODY_ERRORS[0],
                    BODY_ERRORS[1],
                    (404, "no such model (`model_not_found`)"),
                    (500, "a bug"),
                    (503, "no model is served, or the server is shutting down"),
                ],
            ),
        }),
        ("POST", "/detokenize") => json!({
            "operationId": "detokenize",
            "summary": "Text of token ids (vLLM)",
            "requestBody": json_request(schemas.request::<DetokenizeRequest>()),
            "responses": with_errors(
                ok_json("the text", schemas.response::<DetokenizeResponse>()),
                &[
                    (400, "invalid JSON, or an id outside the vocabulary"),
                    BODY_ERRORS[1],
                    (404, "no such model (`model_not_found`)"),
                    (500, "a bug"),
                    (503, "no model is served, or the server is shutting down"),
                ],
            ),
        }),
        ("GET", "/health") => json!({
            "operationId": "health",
            "summary": "Readiness: a worker serves a model and the server is not draining",
            "responses": {
                "200": json_body("ready", health_schema(&["ready"], true)),
                "503": json_body(
                    "no worker yet, or draining",
                    health_schema(&["no_workers", "draining"], true),
                ),
            },
        }),
        ("GET", "/live") => json!({
            "operationId": "live",
            "summary": "Liveness: the process serves HTTP and is not draining",
            "responses": {
                "200": json_body("live", health_schema(&["live"], false)),
                "503": json_body("draining", health_schema(&["draining"], false)),
            },
        }),
        ("GET", "/metrics") => json!({
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "responses": {"200": {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }},
        }),
        ("GET", "/openapi.json") => json!({
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }),
        _ => return None,
    };
    Some(op)
}

/// An axum path (`/v1/models/{*id}`) as an OpenAPI path template (`/v1/models/{id}`).
pub(crate) fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The whole document: one operation per route of [`crate::server::api_routes`].
pub(crate) fn build() -> Result<Value, String> {
    let mut schemas = Schemas::new();
    let mut paths = Map::new();
    for route in crate::server::api_routes() {
        let (path, method) = (openapi_path(route.path), route.method);
        let op = operation(&mut schemas, &method, &path)
            .ok_or_else(|| format!("no OpenAPI operation describes {method} {path}"))?;
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[method.as_str().to_ascii_lowercase()] = op;
    }
    let error = schemas.response::<ErrorResponse>();
    let mut components = schemas.into_components()?;
    if error != json!({"$ref": "#/components/schemas/ErrorResponse"}) {
        return Err(format!("unexpected ErrorResponse schema reference {error}"));
    }
    components.sort_keys();
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI-compatible LLM inference frontend and router. Unknown \
                request fields are accepted and ignored. Any other path is a 404 and a wrong \
                method a 405, both with an ErrorResponse body.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        build().unwrap()
    }

    /// Every `$ref` string anywhere under `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_has_openapi_3_1_shape() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(doc["info"]["title"].is_string());
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    ["get", "post"].contains(&method.as_str()),
                    "{method} {path}"
                );
                assert!(op["operationId"].is_string(), "{method} {path}");
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("200"), "{method} {path}");
                for (status, response) in responses {
                    let code: u16 = status.parse().unwrap();
                    assert!((200..600).contains(&code), "{method} {path} {status}");
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status}"
                    );
                    let content = response["content"].as_object().unwrap();
                    assert!(!content.is_empty(), "{method} {path} {status}");
                    for media in content.values() {
                        assert!(media["schema"].is_object(), "{method} {path} {status}");
                    }
                    if code >= 400 && path != "/health" && path != "/live" {
                        assert_eq!(
                            content["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorResponse",
                            "{method} {path} {status}"
                        );
                    }
                }
                if method == "post" {
                    let body = &op["requestBody"];
                    assert_eq!(body["required"], true, "{path}");
                    let schema = &body["content"]["application/json"]["schema"]["$ref"];
                    assert!(schema.is_string(), "{path}: {body}");
                }
                // Path templates and declared path parameters agree.
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                let templated: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                assert_eq!(declared, templated, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let routes = crate::server::api_routes();
        for route in &routes {
            let path = openapi_path(route.path);
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                paths.get(&path).and_then(|p| p.get(&method)).is_some(),
                "{method} {path} is routed but not in the document"
            );
        }
        let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(operations, routes.len());
        for expected in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/models",
            "/v1/models/{id}",
            "/v1/responses",
            "/tokenize",
            "/detokenize",
            "/health",
            "/live",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(expected), "{expected}");
        }
    }

    #[test]
    fn an_unknown_route_has_no_operation() {
        let mut schemas = Schemas::new();
        assert!(operation(&mut schemas, &Method::GET, "/v1/nothing").is_none());
        assert!(operation(&mut schemas, &Method::GET, "/tokenize").is_none());
    }

    #[test]
    fn every_reference_resolves_to_a_component() {
        let doc = document();
        let components = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("reference outside components: {r}"));
            assert!(components.contains_key(name), "{r} does not resolve");
        }
    }

    #[test]
    fn schemas_follow_the_wire_types() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        // Requests as deserialized: only fields without a default are required.
        let chat = &schemas["ChatCompletionRequest"];
        assert_eq!(chat["required"], json!(["model", "messages"]));
        assert_eq!(chat["properties"]["temperature"]["maximum"], 2.0);
        assert!(
            chat["properties"]["stream"].is_object(),
            "flattened CommonParams"
        );
        assert_ne!(
            chat["additionalProperties"], false,
            "unknown fields are accepted"
        );
        // Responses as serialized: an always-present Option is required and nullable.
        let choice = &schemas["ChatChoice"];
        let required = choice["required"].as_array().unwrap();
        assert!(required.contains(&json!("logprobs")), "{choice}");
        assert!(required.contains(&json!("finish_reason")), "{choice}");
        // Skipped-when-empty fields are optional.
        let message = &schemas["ResponseMessage"];
        assert!(
            !message["required"]
                .as_array()
                .unwrap()
                .contains(&json!("tool_calls")),
            "{message}"
        );
        assert_eq!(
            schemas["TopLogprobMap"]["additionalProperties"]["type"],
            "number"
        );
        assert_eq!(
            schemas["ErrorBody"]["properties"]["code"]["type"],
            json!(["string", "integer"])
        );
    }

    #[test]
    fn integers_carry_the_bounds_of_their_rust_type() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let token = &schemas["DetokenizeRequest"]["properties"]["tokens"]["items"];
        assert_eq!(
            (&token["minimum"], &token["maximum"]),
            (&json!(0), &json!(u32::MAX))
        );
        // An explicit range wins over the type's.
        let n = &schemas["ChatCompletionRequest"]["properties"]["n"];
        assert_eq!((&n["minimum"], &n["maximum"]), (&json!(1), &json!(128)));
    }

    #[test]
    fn event_streams_describe_each_event_and_its_json_data() {
        let doc = document();
        let events = |path: &str| {
            doc["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
                .clone()
        };
        let chat = events("/v1/chat/completions");
        assert_eq!(chat["required"], json!(["event", "data"]));
        assert_eq!(
            chat["then"]["properties"]["data"]["contentSchema"]["$ref"],
            "#/components/schemas/ErrorResponse"
        );
        let chunk = &chat["else"]["else"]["properties"]["data"];
        assert_eq!(chunk["contentMediaType"], "application/json");
        assert_eq!(
            chunk["contentSchema"]["$ref"],
            "#/components/schemas/ChatCompletionChunk"
        );
        assert_eq!(chat["else"]["if"]["properties"]["data"]["const"], "[DONE]");
        let responses = events("/v1/responses");
        let names = responses["properties"]["event"]["enum"].as_array().unwrap();
        let rules = responses["allOf"].as_array().unwrap();
        assert_eq!(names.len(), rules.len());
        for (name, rule) in names.iter().zip(rules) {
            assert_eq!(&rule["if"]["properties"]["event"]["const"], name);
            let data = &rule["then"]["properties"]["data"]["contentSchema"];
            assert_eq!(&data["properties"]["type"]["const"], name);
            assert!(
                data["required"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("sequence_number"))
            );
        }
        assert!(names.contains(&json!("response.completed")) && names.contains(&json!("error")));
    }

    #[test]
    fn the_document_is_served_as_json() {
        let response = futures::executor::block_on(openapi_json());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
