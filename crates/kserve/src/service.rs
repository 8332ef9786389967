//! `inference.GRPCInferenceService` over the shared pipeline.

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use switchyard_frontend::{
    ActiveTicket, Admission, Endpoint, Generation, Metrics, ModelManager, ModelPipeline,
    RequestRecord,
};
use switchyard_protocol::openai::{CommonParams, CompletionRequest, Prompt, StopSpec};
use switchyard_protocol::{ApiError, ErrorKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::error::status;
use crate::pb::grpc_inference_service_server::GrpcInferenceService;
use crate::pb::model_metadata_response::TensorMetadata;
use crate::pb::{
    DataType, ModelConfig, ModelConfigRequest, ModelConfigResponse, ModelInferRequest,
    ModelInferResponse, ModelInput, ModelMetadataRequest, ModelMetadataResponse, ModelOutput,
    ModelReadyRequest, ModelReadyResponse, ModelStreamInferResponse, ModelTransactionPolicy,
    ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse,
    ServerReadyRequest, ServerReadyResponse,
};
use crate::tensors::{self, GenerateParams, INPUTS, OUTPUTS};

/// The one model version Switchyard serves.
const MODEL_VERSION: &str = "1";
const PLATFORM: &str = "switchyard";
/// Responses buffered per stream before the writers wait for the client (backpressure).
const STREAM_BUFFER: usize = 64;

/// The gRPC service: cheap to clone, shares the pipeline with the other front doors.
#[derive(Clone)]
pub struct KserveService {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Arc<ModelManager>,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    /// Cancelled when the drain is over: open streams end, requests still running stop.
    closing: CancellationToken,
}

/// An admitted, routed request.
struct Started {
    _ticket: ActiveTicket,
    generation: Generation,
    params: GenerateParams,
    model: String,
}

impl KserveService {
    pub fn new(manager: Arc<ModelManager>, admission: Arc<Admission>) -> Self {
        KserveService {
            inner: Arc::new(Inner {
                metrics: manager.metrics().clone(),
                manager,
                admission,
                closing: CancellationToken::new(),
            }),
        }
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    /// Ends every open stream and stops requests still running (after the drain).
    pub fn close_streams(&self) {
        self.inner.closing.cancel();
    }

    fn pipeline(&self, name: &str, version: &str) -> Result<Arc<ModelPipeline>, ApiError> {
        if name.is_empty() {
            return Err(ApiError::invalid_param(
                "model_name",
                "model_name is required",
            ));
        }
        let pipeline = self.inner.manager.get(name)?;
        if !version.is_empty() && version != MODEL_VERSION {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "model `{name}` has no version `{version}`; it serves version {MODEL_VERSION}"
                ),
            ));
        }
        Ok(pipeline)
    }

    /// Admission, model lookup, tensor validation, tokenization and routing: everything before
    /// the first token.
    async fn start(
        &self,
        req: &mut ModelInferRequest,
        endpoint: Endpoint,
        arrived: Instant,
        record: &mut RequestRecord,
    ) -> Result<Started, ApiError> {
        let ticket = self.inner.admission.admit()?;
        let pipeline = self.pipeline(&req.model_name, &req.model_version)?;
        record.set_model(pipeline.name());
        let mut params = tensors::parse_request(req)?;
        let completion = CompletionRequest {
            model: pipeline.name().to_string(),
            prompt: Prompt::Text(std::mem::take(&mut params.text)),
            common: CommonParams {
                max_tokens: params.max_tokens,
                temperature: params.temperature,
                top_p: params.top_p,
                stop: (!params.stop.is_empty())
                    .then(|| StopSpec::Many(std::mem::take(&mut params.stop))),
                ..CommonParams::default()
            },
            echo: false,
            suffix: None,
            logprobs: None,
            best_of: None,
            response_format: None,
        };
        let id = new_request_id();
        let request = pipeline
            .preprocess_completion(completion, &id)
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal("preprocessing produced no request"))?;
        let generation = pipeline.generate(request, endpoint, arrived).await?;
        Ok(Started {
            _ticket: ticket,
            generation,
            params,
            model: pipeline.name().to_string(),
        })
    }

    async fn infer_unary(
        &self,
        mut req: ModelInferRequest,
        arrived: Instant,
        record: &mut RequestRecord,
    ) -> Result<ModelInferResponse, ApiError> {
        let mut started = self
            .start(&mut req, Endpoint::ModelInfer, arrived, record)
            .await?;
        let (text, finish) = started.generation.collect_text().await?;
        Ok(tensors::response(
            &started.model,
            &req.id,
            &text,
            Some(finish),
            started.params.outputs,
            None,
        ))
    }

    /// Serves one request of a `ModelStreamInfer` call: one response per generated chunk when
    /// it asked to stream, else one response with the whole text. Stops (dropping the
    /// generation, which cancels it on the worker) as soon as the call is gone.
    async fn infer_on_stream(self, mut req: ModelInferRequest, tx: StreamSender) {
        let arrived = Instant::now();
        let mut record = RequestRecord::new(self.inner.metrics.clone(), Endpoint::ModelStreamInfer);
        let closing = self.inner.closing.clone();
        let gone = || call_gone(&tx, &closing);
        let started = tokio::select! {
            started = self.start(&mut req, Endpoint::ModelStreamInfer, arrived, &mut record) => started,
            _ = gone() => return,
        };
        let mut started = match started {
            Ok(started) => started,
            Err(e) => return fail_on_stream(record, &req, e, &tx).await,
        };
        let outputs = started.params.outputs;
        if !started.params.stream {
            let collected = tokio::select! {
                collected = started.generation.collect_text() => collected,
                _ = gone() => return,
            };
            match collected {
                Ok((text, finish)) => {
                    let response = tensors::response(
                        &started.model,
                        &req.id,
                        &text,
                        Some(finish),
                        outputs,
                        Some(true),
                    );
                    if send(&tx, response).await {
                        record.set_status("success");
                    }
                }
                Err(e) => fail_on_stream(record, &req, e, &tx).await,
            }
            return;
        }
        loop {
            let next = tokio::select! {
                next = started.generation.next() => next,
                _ = gone() => return,
            };
            let (response, last) = match next {
                Some(Ok(delta)) => {
                    let finish = delta.finish_reason.map(|r| r.as_openai_str());
                    if !outputs.text && finish.is_none() {
                        continue;
                    }
                    let response = tensors::response(
                        &started.model,
                        &req.id,
                        delta.text,
                        finish,
                        outputs,
                        Some(finish.is_some()),
                    );
                    (response, finish.is_some())
                }
                Some(Err(e)) => return fail_on_stream(record, &req, e, &tx).await,
                None => {
                    let e = ApiError::internal("the generation ended without a finish reason");
                    return fail_on_stream(record, &req, e, &tx).await;
                }
            };
            if !send(&tx, response).await {
                return;
            }
            if last {
                record.set_status("success");
                return;
            }
        }
    }
}

type StreamSender = mpsc::Sender<Result<ModelStreamInferResponse, Status>>;

async fn call_gone(tx: &StreamSender, closing: &CancellationToken) {
    tokio::select! {
        _ = tx.closed() => {}
        _ = closing.cancelled() => {}
    }
}

/// Sends one response; false when the call is gone.
async fn send(tx: &StreamSender, response: ModelInferResponse) -> bool {
    tx.send(Ok(ModelStreamInferResponse {
        error_message: String::new(),
        infer_response: Some(response),
    }))
    .await
    .is_ok()
}

/// A failed request on a stream: an `error_message` response (Triton's convention; the
/// stream stays open for the client's other requests).
async fn fail_on_stream(
    mut record: RequestRecord,
    req: &ModelInferRequest,
    error: ApiError,
    tx: &StreamSender,
) {
    record.set_status(error.kind.error_type());
    log_internal(&error);
    let response = ModelStreamInferResponse {
        error_message: error.message,
        infer_response: Some(ModelInferResponse {
            model_name: req.model_name.clone(),
            model_version: req.model_version.clone(),
            id: req.id.clone(),
            ..ModelInferResponse::default()
        }),
    };
    let _ = tx.send(Ok(response)).await;
}

fn log_internal(error: &ApiError) {
    if error.kind == ErrorKind::Internal {
        tracing::error!(error = %error.message, "gRPC request failed");
    }
}

fn new_request_id() -> String {
    let n: u128 = rand::rng().random();
    format!("kserve-{n:032x}")
}

fn tensor_metadata() -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
    let inputs = INPUTS
        .iter()
        .map(|(name, datatype, dim, _)| TensorMetadata {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape: vec![*dim],
        })
        .collect();
    let outputs = OUTPUTS
        .iter()
        .map(|(name, datatype)| TensorMetadata {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape: vec![1],
        })
        .collect();
    (inputs, outputs)
}

fn config_datatype(datatype: &str) -> DataType {
    match datatype {
        "BYTES" => DataType::TypeString,
        "INT32" => DataType::TypeInt32,
        "FP32" => DataType::TypeFp32,
        "BOOL" => DataType::TypeBool,
        _ => DataType::TypeInvalid,
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for KserveService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse {
            live: !self.inner.admission.is_draining(),
        }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: !self.inner.admission.is_draining() && self.inner.manager.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let req = request.into_inner();
        // An unknown model is simply not ready: probes want a yes or no.
        let ready = !self.inner.admission.is_draining()
            && self
                .pipeline(&req.name, &req.version)
                .is_ok_and(|p| p.router().worker_count() > 0);
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "switchyard".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = request.into_inner();
        let pipeline = self
            .pipeline(&req.name, &req.version)
            .map_err(|e| status(&e))?;
        let (inputs, outputs) = tensor_metadata();
        Ok(Response::new(ModelMetadataResponse {
            name: pipeline.name().to_string(),
            versions: vec![MODEL_VERSION.to_string()],
            platform: PLATFORM.to_string(),
            inputs,
            outputs,
        }))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let req = request.into_inner();
        let pipeline = self
            .pipeline(&req.name, &req.version)
            .map_err(|e| status(&e))?;
        let config = ModelConfig {
            name: pipeline.name().to_string(),
            platform: PLATFORM.to_string(),
            backend: PLATFORM.to_string(),
            max_batch_size: 0,
            input: INPUTS
                .iter()
                .map(|(name, datatype, dim, required)| ModelInput {
                    name: name.to_string(),
                    data_type: config_datatype(datatype) as i32,
                    dims: vec![*dim],
                    optional: !required,
                })
                .collect(),
            output: OUTPUTS
                .iter()
                .map(|(name, datatype)| ModelOutput {
                    name: name.to_string(),
                    data_type: config_datatype(datatype) as i32,
                    dims: vec![1],
                })
                .collect(),
            // Streaming answers a request with several responses.
            model_transaction_policy: Some(ModelTransactionPolicy { decoupled: true }),
        };
        Ok(Response::new(ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let mut record = RequestRecord::new(self.inner.metrics.clone(), Endpoint::ModelInfer);
        // When the client cancels, tonic drops this future: the generation is dropped with
        // it, which cancels the request on the worker.
        match self
            .infer_unary(request.into_inner(), arrived, &mut record)
            .await
        {
            Ok(response) => {
                record.set_status("success");
                Ok(Response::new(response))
            }
            Err(e) => {
                record.set_status(e.kind.error_type());
                log_internal(&e);
                Err(status(&e))
            }
        }
    }

    type ModelStreamInferStream = ReceiverStream<Result<ModelStreamInferResponse, Status>>;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let closing = service.inner.closing.clone();
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = call_gone(&tx, &closing) => break,
                };
                match message {
                    Ok(Some(req)) => {
                        tokio::spawn(service.clone().infer_on_stream(req, tx.clone()));
                    }
                    // The client finished sending; responses still being produced go out,
                    // and the call ends when the last request task drops its sender.
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
