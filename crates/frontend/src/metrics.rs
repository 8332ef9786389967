//! Prometheus metrics. One registry per process; per-model handles are resolved once per
//! pipeline so hot paths never look labels up.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The front-door endpoint a request came through (the `endpoint` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub inflight_requests: IntGaugeVec,
    pub client_disconnects: IntCounterVec,
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
    pub disconnects_chat: IntCounter,
    pub disconnects_completions: IntCounter,
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
            "Requests by model, endpoint and outcome (success or the error type).",
            &["model", "endpoint", "status"],
        );
        let client_disconnects = counter(
            "switchyard_client_disconnects_total",
            "Requests whose client went away before the response finished.",
            &["model", "endpoint"],
        );
        let inflight_requests = IntGaugeVec::new(
            Opts::new(
                "switchyard_http_inflight_requests",
                "Requests being served right now.",
            ),
            &["model", "endpoint"],
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
        }
    }

    pub fn for_model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            ttft: self.ttft.with_label_values(&[model]),
            itl: self.itl.with_label_values(&[model]),
            input_tokens: self.input_tokens.with_label_values(&[model]),
            output_tokens: self.output_tokens.with_label_values(&[model]),
            disconnects_chat: self
                .client_disconnects
                .with_label_values(&[model, Endpoint::ChatCompletions.as_str()]),
            disconnects_completions: self
                .client_disconnects
                .with_label_values(&[model, Endpoint::Completions.as_str()]),
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
        match endpoint {
            Endpoint::ChatCompletions => &self.disconnects_chat,
            Endpoint::Completions => &self.disconnects_completions,
        }
    }
}
