//! Engines outside the process, through the real binary on 127.0.0.1: `serve --engine openai`
//! in front of another `serve --engine echo` (an OpenAI-compatible server that takes token-id
//! prompts and streams text), and the mocker's KV events travelling over ZMQ to the router.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, http_request, metric_values};

/// A free port whose next `n - 1` ports are free too (ZMQ sockets of workers 0..n).
fn free_port_run(n: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first.checked_add(n).is_none() {
            continue;
        }
        if (1..n).all(|i| TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
    panic!("no run of {n} free ports");
}

fn completion_text(port: u16, req: &Value) -> (u16, Value) {
    let (status, body) = http_request(port, "POST", "/v1/completions", Some(req));
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

#[test]
fn upstream_engine_forwards_to_an_openai_server_and_returns_its_exact_text() {
    let echo = Server::start(&["--engine", "echo", "--workers", "1"], &[]);
    let upstream = format!("http://127.0.0.1:{}", echo.port);
    let front = Server::start(
        &[
            "--engine",
            "openai",
            "--upstream",
            &upstream,
            "--upstream-model",
            "echo-model",
        ],
        &[],
    );
    let prompt =
        "Switchyard forwards token ids; the echo server answers with the same text. ünïcödé ✓";
    let (status, resp) = completion_text(
        front.port,
        &json!({"model": "echo-model", "prompt": prompt, "max_tokens": 200}),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["text"], prompt, "{resp}");
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    // max_tokens reaches the upstream: the echo stops after 3 tokens with `length`.
    let (status, resp) = completion_text(
        front.port,
        &json!({"model": "echo-model", "prompt": prompt, "max_tokens": 3}),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["choices"][0]["finish_reason"], "length", "{resp}");
    assert_eq!(resp["usage"]["completion_tokens"], 3, "{resp}");
    assert!(prompt.starts_with(resp["choices"][0]["text"].as_str().unwrap()));

    // Streaming through both servers: the chunks add up to the prompt.
    let mut stream = support::open_stream(
        front.port,
        "/v1/completions",
        &json!({"model": "echo-model", "prompt": prompt, "max_tokens": 200, "stream": true}),
    );
    let body = support::read_to_end(&mut stream);
    let mut text = String::new();
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data: ")
            && data != "[DONE]"
        {
            let chunk: Value = serde_json::from_str(data).unwrap();
            text.push_str(chunk["choices"][0]["text"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(text, prompt);
    assert!(body.contains("data: [DONE]"));
}

#[test]
fn upstream_failures_are_clear_errors() {
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let front = Server::start(
        &[
            "--engine",
            "openai",
            "--upstream",
            &format!("http://127.0.0.1:{closed}"),
        ],
        // The startup warning about the unhealthy upstream quotes the connect error; the
        // harness takes an early line mentioning "error" for a failed start, so silence it.
        &[("SWITCHYARD_LOG", "info,switchyard::external=off")],
    );
    let (status, resp) = completion_text(
        front.port,
        &json!({"model": "echo-model", "prompt": "hello", "max_tokens": 5}),
    );
    assert!(status >= 500, "{status} {resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("upstream"), "{resp}");

    // An upstream that rejects the request: its message comes back as a 400.
    let echo = Server::start(&["--engine", "echo", "--workers", "1"], &[]);
    let front = Server::start(
        &[
            "--engine",
            "openai",
            "--upstream",
            &format!("http://127.0.0.1:{}", echo.port),
            "--upstream-model",
            "no-such-model",
        ],
        &[],
    );
    let (status, resp) = completion_text(
        front.port,
        &json!({"model": "echo-model", "prompt": "hello", "max_tokens": 5}),
    );
    assert_eq!(status, 400, "{resp}");
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("404") && message.contains("no-such-model"),
        "{resp}"
    );
}

#[test]
fn client_disconnect_closes_the_upstream_request() {
    let echo = Server::start(
        &[
            "--engine",
            "echo",
            "--workers",
            "1",
            "--echo-delay-ms",
            "20",
        ],
        &[],
    );
    let front = Server::start(
        &[
            "--engine",
            "openai",
            "--upstream",
            &format!("http://127.0.0.1:{}", echo.port),
        ],
        &[],
    );
    let req = json!({"model": "echo-model", "prompt": "word ".repeat(300), "stream": true});
    let mut stream = support::open_stream(front.port, "/v1/completions", &req);
    support::read_some(&mut stream, 3);
    let busy: f64 = metric_values(echo.port, "switchyard_worker_active_requests")
        .iter()
        .sum();
    assert_eq!(busy, 1.0, "the upstream serves the request");
    drop(stream);
    // The upstream counts the frontend's dropped connection as its client's disconnect.
    support::wait_until_disconnect_released(echo.port);
}

#[test]
fn mocker_kv_events_reach_the_router_over_zmq() {
    let port = free_port_run(4);
    let publish = format!("tcp://127.0.0.1:{port}");
    let replay = format!("tcp://127.0.0.1:{}", port + 2);
    let server = Server::start(
        &[
            "--engine",
            "mocker",
            "--speedup-ratio",
            "0",
            "--workers",
            "2",
            "--router-mode",
            "kv",
            "--block-size",
            "16",
            "--kv-events-publish",
            &publish,
            "--kv-events-publish-replay",
            &replay,
            "--kv-events-endpoint",
            &publish,
            "--kv-events-replay-endpoint",
            &replay,
        ],
        &[],
    );
    let shared = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let mut cached = Vec::new();
    for i in 0..4 {
        let req = json!({"model": "echo-model", "prompt": format!("{shared} question {i}"), "max_tokens": 4});
        let (status, resp) = completion_text(server.port, &req);
        assert_eq!(status, 200, "{resp}");
        cached.push(
            resp["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        );
        // The only way blocks reach the router's index here is mocker → ZMQ → subscriber.
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric_values(server.port, "switchyard_router_index_blocks")
            .iter()
            .sum::<f64>()
            < 20.0
        {
            assert!(
                Instant::now() < deadline,
                "KV events never reached the router over ZMQ"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(cached[0], 0, "{cached:?}");
    assert!(
        cached[1..].iter().all(|&c| c >= 320),
        "the repeated prefix goes to the worker that cached it: {cached:?} (index blocks {:?}, decisions {:?})",
        metric_values(server.port, "switchyard_router_index_blocks"),
        metric_values(server.port, "switchyard_router_decisions_total"),
    );
    let decisions = metric_values(server.port, "switchyard_router_decisions_total");
    assert_eq!(
        decisions.iter().filter(|&&d| d > 0.0).count(),
        1,
        "all four went to one worker: {decisions:?}"
    );
}
