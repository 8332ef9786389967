//! Prometheus metrics. One registry per process; per-model handles are resolved once per
//! pipeline so hot paths never look labels up.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The front-door endpoint a request came through (the `endpoint` label; `protocol` follows
/// from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI HTTP `/v1/chat/completions`.
    ChatCompletions,
    /// OpenAI HTTP `/v1/completions`.
    Completions,
    /// OpenAI HTTP `/v1/responses`.
    Responses,
    /// KServe gRPC `ModelInfer` (unary).
    ModelInfer,
    /// KServe gRPC `ModelStreamInfer` (one count per request on the stream).
    ModelStreamInfer,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Responses,
        Endpoint::ModelInfer,
        Endpoint::ModelStreamInfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::ModelInfer => "model_infer",
            Endpoint::ModelStreamInfer => "model_stream_infer",
        }
    }

    /// The `protocol` label: `http` (OpenAI) or `grpc` (KServe).
    pub fn protocol(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Responses => "http",
            Endpoint::ModelInfer | Endpoint::ModelStreamInfer => "grpc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub inflight_requests: IntGaugeVec,
    pub client_disconnects: IntCounterVec,
    /// By model and outcome: `migrated`, `retried`, `exhausted`.
    pub worker_failures: IntCounterVec,
    ttft: HistogramVec,
    itl: HistogramVec,
    input_tokens: HistogramVec,
    output_tokens: HistogramVec,
}

/// Handles for one model, resolved once.
#[derive(Clone)]
pub struct ModelMetrics {
    pub ttft: Histogram,
    pub itl: Histogram,
    pub input_tokens: Histogram,
    pub output_tokens: Histogram,
    /// Requests resumed on another worker after their stream broke.
    pub migrations: IntCounter,
    /// Requests sent to another worker because the chosen one could not be reached.
    pub retries: IntCounter,
    /// Requests whose stream broke with no migration left (the client got an error).
    pub migrations_exhausted: IntCounter,
    /// Client disconnects, indexed by [`Endpoint`].
    disconnects: [IntCounter; Endpoint::ALL.len()],
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ]
}

fn token_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1.0, 2.0, 20).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["model"])
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let requests_total = counter(
            "switchyard_http_requests_total",
            "Requests by model, protocol (http or grpc), endpoint and outcome (success, the error type, or disconnected).",
            &["model", "protocol", "endpoint", "status"],
        );
        let client_disconnects = counter(
            "switchyard_client_disconnects_total",
            "Requests whose client went away before the response finished.",
            &["model", "protocol", "endpoint"],
        );
        let worker_failures = counter(
            "switchyard_worker_failures_total",
            "Requests hit by a worker failure, by what the frontend did: migrated (resumed on another worker after the stream broke), retried (the chosen worker was unreachable) or exhausted (no migration left: the client got an error).",
            &["model", "outcome"],
        );
        let inflight_requests = IntGaugeVec::new(
            Opts::new(
                "switchyard_http_inflight_requests",
                "Requests being served right now.",
            ),
            &["model", "protocol", "endpoint"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(inflight_requests.clone()))
            .expect("unique metric");
        Metrics {
            ttft: histogram(
                "switchyard_time_to_first_token_seconds",
                "Time from request arrival to the first generated token.",
                latency_buckets(),
            ),
            itl: histogram(
                "switchyard_inter_token_latency_seconds",
                "Time between successive generated tokens of a request.",
                latency_buckets(),
            ),
            input_tokens: histogram(
                "switchyard_input_tokens",
                "Prompt length in tokens.",
                token_buckets(),
            ),
            output_tokens: histogram(
                "switchyard_output_tokens",
                "Generated tokens per request.",
                token_buckets(),
            ),
            registry,
            requests_total,
            inflight_requests,
            client_disconnects,
            worker_failures,
        }
    }

    pub fn for_model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            ttft: self.ttft.with_label_values(&[model]),
            itl: self.itl.with_label_values(&[model]),
            input_tokens: self.input_tokens.with_label_values(&[model]),
            output_tokens: self.output_tokens.with_label_values(&[model]),
            migrations: self.worker_failures.with_label_values(&[model, "migrated"]),
            retries: self.worker_failures.with_label_values(&[model, "retried"]),
            migrations_exhausted: self
                .worker_failures
                .with_label_values(&[model, "exhausted"]),
            disconnects: Endpoint::ALL.map(|e| {
                self.client_disconnects
                    .with_label_values(&[model, e.protocol(), e.as_str()])
            }),
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self, out: &mut String) {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelMetrics {
    pub fn disconnects(&self, endpoint: Endpoint) -> &IntCounter {
        &self.disconnects[endpoint.index()]
    }
}

/// Records one request in the metrics when dropped: its outcome (or `disconnected` when it
/// never got one) and the end of its in-flight time. Every front door keeps one per request.
pub struct RequestRecord {
    metrics: Arc<Metrics>,
    model: String,
    endpoint: Endpoint,
    status: Option<&'static str>,
    inflight: Option<IntGauge>,
    /// False for the placeholder left behind when the record moved into a response.
    armed: bool,
}

impl RequestRecord {
    pub fn new(metrics: Arc<Metrics>, endpoint: Endpoint) -> Self {
        RequestRecord {
            metrics,
            model: "unknown".to_string(),
            endpoint,
            status: None,
            inflight: None,
            armed: true,
        }
    }

    /// A record that records nothing (what remains after the real one moved on).
    pub fn detached(metrics: Arc<Metrics>) -> Self {
        RequestRecord {
            metrics,
            model: String::new(),
            endpoint: Endpoint::Completions,
            status: None,
            inflight: None,
            armed: false,
        }
    }

    /// Labels the request with a served model and counts it in flight.
    pub fn set_model(&mut self, model: &str) {
        self.model = model.to_string();
        let gauge = self.metrics.inflight_requests.with_label_values(&[
            model,
            self.endpoint.protocol(),
            self.endpoint.as_str(),
        ]);
        gauge.inc();
        self.inflight = Some(gauge);
    }

    /// `success` or the error's `ErrorKind::error_type`.
    pub fn set_status(&mut self, status: &'static str) {
        self.status = Some(status);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.metrics
            .requests_total
            .with_label_values(&[
                &self.model,
                self.endpoint.protocol(),
                self.endpoint.as_str(),
                self.status.unwrap_or("disconnected"),
            ])
            .inc();
        if let Some(gauge) = &self.inflight {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_protocol_and_endpoint_labels() {
        let metrics = Arc::new(Metrics::new());
        {
            let mut record = RequestRecord::new(metrics.clone(), Endpoint::ModelInfer);
            record.set_model("m");
            assert_eq!(
                metrics
                    .inflight_requests
                    .with_label_values(&["m", "grpc", "model_infer"])
                    .get(),
                1
            );
            record.set_status("success");
        }
        drop(RequestRecord::new(metrics.clone(), Endpoint::Completions));
        let count = |labels: &[&str]| metrics.requests_total.with_label_values(labels).get();
        assert_eq!(count(&["m", "grpc", "model_infer", "success"]), 1);
        assert_eq!(
            count(&["unknown", "http", "completions", "disconnected"]),
            1
        );
        assert_eq!(
            metrics
                .inflight_requests
                .with_label_values(&["m", "grpc", "model_infer"])
                .get(),
            0
        );
        let per_model = metrics.for_model("m");
        per_model.disconnects(Endpoint::ModelStreamInfer).inc();
        assert_eq!(
            metrics
                .client_disconnects
                .with_label_values(&["m", "grpc", "model_stream_infer"])
                .get(),
            1
        );
    }
}
