//! A real server process and a tiny blocking HTTP/1.1 client (no dependencies, so the test
//! exercises exactly the bytes on the wire).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/qwen3");
    assert!(
        path.join("tokenizer.json").is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

pub struct Server {
    pub port: u16,
    /// The KServe gRPC port, when started with `--kserve-grpc-server`.
    pub grpc_port: Option<u16>,
    child: Child,
}

/// What the server's log says once it listens.
enum Startup {
    Http(u16),
    Grpc(u16),
    Failed(String),
}

fn port_after(line: &str, marker: &str) -> Option<u16> {
    line.split(marker)
        .nth(1)?
        .split_whitespace()
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

impl Server {
    /// Starts `switchyard serve` on a free port with the test model and waits until it listens
    /// (on its gRPC port too when `extra` has `--kserve-grpc-server`).
    pub fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_model(&model_path(), "echo-model", extra, env)
    }

    /// [`Server::start`] with another model, served as `name`.
    pub fn start_model(
        model: &std::path::Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["serve", "--http-host", "127.0.0.1", "--http-port", "0"])
            .arg("--model-path")
            .arg(model)
            .args(["--model-name", name])
            .args(extra)
            .env("SWITCHYARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start switchyard");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut listening = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = port_after(&line, "listening on http://") {
                    let _ = tx.send(Startup::Http(port));
                    listening = true;
                } else if let Some(port) = port_after(&line, "KServe gRPC listening on ") {
                    let _ = tx.send(Startup::Grpc(port));
                } else if !listening && line.contains("error") {
                    let _ = tx.send(Startup::Failed(line.clone()));
                }
            }
        });
        let want_grpc = extra.contains(&"--kserve-grpc-server");
        let (mut port, mut grpc_port) = (None, None);
        while port.is_none() || (want_grpc && grpc_port.is_none()) {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Startup::Http(p)) => port = Some(p),
                Ok(Startup::Grpc(p)) => grpc_port = Some(p),
                Ok(Startup::Failed(line)) => {
                    let _ = child.kill();
                    panic!("server failed to start: {line}");
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not report its ports within 30 s");
                }
            }
        }
        Server {
            port: port.unwrap(),
            grpc_port,
            child,
        }
    }

    pub fn sigterm(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit; `None` if it did not within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run_to_exit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard")
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

fn send(stream: &mut TcpStream, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
}

/// Splits a full HTTP/1.1 response into status and de-chunked body.
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

pub fn http_request(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    raw_request(port, method, path, &bytes)
}

pub fn raw_post(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    raw_request(port, "POST", path, body)
}

fn raw_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = connect(port);
    send(&mut stream, method, path, body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// Sends a streaming request and returns the open connection.
pub fn open_stream(port: u16, path: &str, body: &Value) -> TcpStream {
    let mut stream = connect(port);
    send(
        &mut stream,
        "POST",
        path,
        &serde_json::to_vec(body).unwrap(),
    );
    stream
}

/// Reads until at least `events` SSE events arrived.
pub fn read_some(stream: &mut TcpStream, events: usize) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("data: ").count() < events {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

pub fn read_to_end(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The values of every sample of `name` in `/metrics`.
/// Waits (up to 5 s) until no request is active on `port` and one client disconnect was
/// counted: a dropped stream released its load.
pub fn wait_until_disconnect_released(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let active: f64 = metric_values(port, "switchyard_worker_active_requests")
            .iter()
            .sum();
        let disconnects: f64 = metric_values(port, "switchyard_client_disconnects_total")
            .iter()
            .sum();
        if active == 0.0 && disconnects == 1.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "load not released: active={active} disconnects={disconnects}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn metric_values(port: u16, name: &str) -> Vec<f64> {
    let (status, text) = http_request(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}
