//! Drives `switchyard serve --kserve-grpc-server` over 127.0.0.1 with a tonic client.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{Server, http_request};
use switchyard_kserve::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use switchyard_kserve::pb::infer_parameter::ParameterChoice;
use switchyard_kserve::pb::model_infer_request::InferInputTensor;
use switchyard_kserve::pb::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelReadyRequest, ServerLiveRequest, ServerReadyRequest,
};
use tonic::Code;
use tonic::transport::Channel;

const MODEL: &str = "echo-model";
const PROMPT: &str = "Hello, wörld! 你好 🚀";

async fn connect(server: &Server) -> GrpcInferenceServiceClient<Channel> {
    let port = server.grpc_port.expect("started with --kserve-grpc-server");
    GrpcInferenceServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to the gRPC port")
}

fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "--engine",
        "echo",
        "--kserve-grpc-server",
        "--grpc-port",
        "0",
        "--grpc-metrics-port",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args, env)
}

fn tensor(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: Some(contents),
    }
}

fn bytes(values: &[&str]) -> InferTensorContents {
    InferTensorContents {
        bytes_contents: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A request with typed contents.
fn request(text: &str, extra: Vec<InferInputTensor>) -> ModelInferRequest {
    let mut inputs = vec![tensor("text_input", "BYTES", &[1], bytes(&[text]))];
    inputs.extend(extra);
    ModelInferRequest {
        model_name: MODEL.into(),
        id: "req".into(),
        inputs,
        ..Default::default()
    }
}

fn streaming(mut req: ModelInferRequest) -> ModelInferRequest {
    req.parameters.insert(
        "stream".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
    req
}

/// The one element of a BYTES output, decoded from `raw_output_contents`.
fn output(response: &ModelInferResponse, name: &str) -> Option<String> {
    let index = response.outputs.iter().position(|o| o.name == name)?;
    let raw = &response.raw_output_contents[index];
    let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    assert_eq!(raw.len(), 4 + len, "one element");
    Some(String::from_utf8(raw[4..].to_vec()).unwrap())
}

/// Sends `requests` on one ModelStreamInfer call and reads until each got its final response
/// (or an error message).
async fn stream(
    client: &mut GrpcInferenceServiceClient<Channel>,
    requests: Vec<ModelInferRequest>,
) -> Vec<switchyard_kserve::pb::ModelStreamInferResponse> {
    let expected = requests.len();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for r in requests {
        tx.send(r).await.unwrap();
    }
    let mut responses = client
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    let mut out = Vec::new();
    let mut finished = 0;
    while finished < expected {
        let message = responses
            .message()
            .await
            .expect("stream ok")
            .expect("stream ended early");
        let done = !message.error_message.is_empty()
            || message
                .infer_response
                .as_ref()
                .is_some_and(|r| output(r, "finish_reason").is_some());
        finished += usize::from(done);
        out.push(message);
    }
    drop(tx);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_unary_and_streamed_infer() {
    let server = start(&[], &[]);
    let mut client = connect(&server).await;
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |name: &str| ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        client
            .model_ready(ready(MODEL))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("nope"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].name, "text_input");
    assert_eq!(meta.inputs[0].datatype, "BYTES");

    // Typed contents.
    let unary = client
        .model_infer(request(PROMPT, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(output(&unary, "text_output").as_deref(), Some(PROMPT));
    assert_eq!(output(&unary, "finish_reason").as_deref(), Some("stop"));
    assert_eq!(unary.id, "req");

    // Raw contents: 4-byte little-endian length prefixes, one entry per input.
    let mut raw = request(
        "",
        vec![tensor("max_tokens", "INT32", &[1], Default::default())],
    );
    raw.inputs[0].contents = None;
    let mut text = (PROMPT.len() as u32).to_le_bytes().to_vec();
    text.extend_from_slice(PROMPT.as_bytes());
    raw.raw_input_contents = vec![text, 3i32.to_le_bytes().to_vec()];
    let truncated = client.model_infer(raw).await.unwrap().into_inner();
    assert_eq!(
        output(&truncated, "finish_reason").as_deref(),
        Some("length")
    );
    let truncated_text = output(&truncated, "text_output").unwrap();
    assert!(PROMPT.starts_with(&truncated_text) && truncated_text.len() < PROMPT.len());

    // The same as the OpenAI endpoint of the same process.
    let (status, body) = http_request(
        server.port,
        "POST",
        "/v1/completions",
        Some(&serde_json::json!({"model": MODEL, "prompt": PROMPT, "max_tokens": 3})),
    );
    assert_eq!(status, 200, "{body}");
    let http: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(http["choices"][0]["text"], truncated_text.as_str());

    // Streamed: one response per chunk, concatenating to the unary text.
    let responses = stream(&mut client, vec![streaming(request(PROMPT, vec![]))]).await;
    assert!(responses.len() > 3, "{responses:?}");
    let mut text = String::new();
    for (i, r) in responses.iter().enumerate() {
        assert!(r.error_message.is_empty(), "{}", r.error_message);
        let r = r.infer_response.as_ref().unwrap();
        text.push_str(&output(r, "text_output").unwrap());
        let last = i + 1 == responses.len();
        assert_eq!(output(r, "finish_reason").is_some(), last);
    }
    assert_eq!(text, PROMPT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_grpc_codes() {
    let server = start(&[], &[("SWITCHYARD_HTTP_BODY_LIMIT_MB", "1")]);
    let mut client = connect(&server).await;
    let mut unknown_model = request("x", vec![]);
    unknown_model.model_name = "nope".into();
    let mut wrong_shape = request("x", vec![]);
    wrong_shape.inputs[0].shape = vec![2];
    let mut wrong_type = request("x", vec![]);
    wrong_type.inputs[0].datatype = "FP32".into();
    let cases = vec![
        (unknown_model, Code::NotFound, "`nope` does not exist"),
        (wrong_shape, Code::InvalidArgument, "exactly one element"),
        (
            wrong_type,
            Code::InvalidArgument,
            "must have datatype BYTES",
        ),
        (
            request("x", vec![tensor("prompt", "BYTES", &[1], bytes(&["y"]))]),
            Code::InvalidArgument,
            "unknown input `prompt`",
        ),
        (
            request(
                "x",
                vec![tensor(
                    "top_p",
                    "FP32",
                    &[1],
                    InferTensorContents {
                        fp32_contents: vec![1.5],
                        ..Default::default()
                    },
                )],
            ),
            Code::InvalidArgument,
            "top_p",
        ),
    ];
    for (req, code, fragment) in cases {
        let status = client.model_infer(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(fragment), "{status:?}");
    }
    // Over the message limit (the HTTP body limit, 1 MiB here): refused, the server lives on.
    let huge = "x".repeat(2 << 20);
    let status = client
        .model_infer(request(&huge, vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    let ok = client
        .model_infer(request("still fine", vec![]))
        .await
        .unwrap();
    assert_eq!(
        output(ok.get_ref(), "text_output").as_deref(),
        Some("still fine")
    );
    // On a stream a failed request is an error message; the others are answered.
    let responses = stream(
        &mut client,
        vec![
            request("x", vec![tensor("bogus", "BOOL", &[1], Default::default())]),
            request("fine", vec![]),
        ],
    )
    .await;
    let errors: Vec<_> = responses
        .iter()
        .filter(|r| !r.error_message.is_empty())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].error_message.contains("unknown input `bogus`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_is_unavailable() {
    let server = start(&["--workers", "0"], &[]);
    let mut client = connect(&server).await;
    assert!(
        !client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let status = client.model_infer(request("x", vec![])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_streams_finish_and_refuses_new_requests() {
    let mut server = start(&["--echo-delay-ms", "20", "--workers", "1"], &[]);
    let mut client = connect(&server).await;
    // ~60 tokens at 20 ms each: about a second of streaming.
    let prompt = "one two three four five six seven eight nine ten ".repeat(6);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(streaming(request(&prompt, vec![]))).await.unwrap();
    let mut responses = client
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert!(first.error_message.is_empty());
    let mut text = output(first.infer_response.as_ref().unwrap(), "text_output").unwrap();

    server.sigterm();
    // Readiness turns false once the drain starts (bounded wait).
    let mut probe = client.clone();
    let mut ready = true;
    for _ in 0..200 {
        ready = probe
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready;
        if !ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!ready, "still ready after SIGTERM");
    let status = probe
        .model_infer(request("late", vec![]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // The stream that was running finishes.
    loop {
        let message = responses
            .message()
            .await
            .unwrap()
            .expect("stream cut short");
        let r = message.infer_response.unwrap();
        text.push_str(&output(&r, "text_output").unwrap());
        if let Some(reason) = output(&r, "finish_reason") {
            assert_eq!(reason, "stop");
            break;
        }
    }
    assert_eq!(text, prompt);
    drop(tx);
    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
}
