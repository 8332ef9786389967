"""Helpers for the end-to-end suite: start/stop the real `switchyard` binary, read its metrics and
SSE streams, and compute what the echo engine must return.

Nothing here knows the server's internals; it only uses the CLI, HTTP and Prometheus contracts.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import httpx
import openai

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "models" / "qwen3"
MODEL_NAME = "echo-model"
# The CPU engine's real model (SmolLM2-135M-Instruct, Q4_1 GGUF; scripts/fetch-test-models.sh).
SMOLLM2_GGUF = REPO_ROOT / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# Loopback traffic must never go through a proxy from the environment.
os.environ["NO_PROXY"] = ",".join(
    filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"])
)
os.environ["no_proxy"] = os.environ["NO_PROXY"]

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0

_live_processes: list[subprocess.Popen] = []


@atexit.register
def _kill_leftovers() -> None:
    # Only processes this suite started; reached when pytest itself is interrupted.
    for proc in _live_processes:
        if proc.poll() is None:
            proc.kill()


def server_binary() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(AssertionError):
    pass


@dataclass
class Server:
    """One `switchyard serve` process on 127.0.0.1 with its log in a temp file."""

    name: str
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # "health" waits for GET /health == 200 (a worker serves the model); "live" for GET /live
    # == 200 (for servers that must never become ready, e.g. --workers 0).
    ready: str = "health"
    workers: int = 2
    engine: str = "echo"
    # A model folder or GGUF file other than the default tokenizer folder.
    model_path: Path | None = None
    model_name: str = MODEL_NAME

    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _fail(self, message: str) -> ServerError:
        return ServerError(
            f"[{self.name}] {message}\n--- server command: {self.command()}\n"
            f"--- last lines of server stderr ({self.log_path}):\n{self.log_tail()}"
        )

    def command(self) -> list[str]:
        return [
            str(server_binary()),
            "serve",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(self.port),
            "--engine",
            self.engine,
            "--workers",
            str(self.workers),
            "--model-path",
            str(self.model_path or MODEL_DIR),
            "--model-name",
            self.model_name,
            *self.extra_args,
        ]

    def start(self) -> "Server":
        binary = server_binary()
        if not binary.exists():
            raise ServerError(
                f"server binary {binary} not found: build it with "
                "`cargo build -p switchyard` or set SWITCHYARD_BIN"
            )
        if self.model_path is not None:
            if not self.model_path.exists():
                raise ServerError(f"{self.model_path} is missing: run scripts/fetch-test-models.sh")
        elif not (MODEL_DIR / "tokenizer.json").exists():
            raise ServerError(f"{MODEL_DIR} has no tokenizer.json: run scripts/fetch-test-models.sh")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        env.update({"NO_COLOR": "1", "RUST_BACKTRACE": "1"})
        env.update(self.extra_env)
        fd, log = tempfile.mkstemp(prefix=f"switchyard-{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        for attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log_file:
                self.proc = subprocess.Popen(
                    self.command(),
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                )
            _live_processes.append(self.proc)
            try:
                self._wait_ready()
                return self
            except ServerError:
                # Another process may have taken the port between free_port() and bind.
                if self.proc.poll() is not None and "in use" in self.log_tail().lower() and attempt < 2:
                    continue
                self.kill()
                raise
        raise self._fail("could not start")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        path = "/health" if self.ready == "health" else "/live"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no answer"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    raise self._fail(f"exited with code {code} during startup")
                try:
                    r = client.get(self.url(path))
                    if r.status_code == 200:
                        return
                    last = f"{path} answered {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last = f"{path}: {type(e).__name__}"
                time.sleep(0.05)
        raise self._fail(f"not ready within {STARTUP_TIMEOUT_S:.0f}s (last: {last})")

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._fail(f"did not exit within {timeout:.0f}s of SIGTERM")

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.terminate()
        return self.wait_exit()

    def stop_expecting_clean_exit(self) -> None:
        code = self.stop()
        if code != 0:
            raise self._fail(f"exited with code {code} after SIGTERM (expected 0)")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# ---------- clients ----------


def make_openai(srv: Server) -> openai.OpenAI:
    # No retries: a 5xx must surface as the server sent it.
    return openai.OpenAI(base_url=srv.url("/v1"), api_key="unused", max_retries=0, timeout=30)


def make_async_openai(srv: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.url("/v1"), api_key="unused", max_retries=0, timeout=60)


# ---------- OpenAI error bodies ----------


def assert_error_body(response: httpx.Response, status: int, error_type: str) -> dict:
    """Checks status, JSON content and the `{"error": {message, type, param, code}}` shape."""
    assert response.status_code == status, (
        f"expected HTTP {status}, got {response.status_code}: {response.text[:500]}"
    )
    try:
        body = response.json()
    except json.JSONDecodeError as e:
        raise AssertionError(f"error body is not JSON ({e}): {response.text[:500]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, f"error body lacks '{key}': {body}"
    assert isinstance(err["message"], str) and err["message"], body
    assert err["type"] == error_type, f"error type {err['type']!r} != {error_type!r}: {body}"
    return err


# ---------- SSE ----------


@dataclass
class SseStream:
    events: list[dict]
    saw_done: bool
    raw_lines: list[str]


def parse_sse_lines(lines: Iterable[str]) -> Iterator[dict | str]:
    """Yields each `data:` payload as JSON, or the string "[DONE]"."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            yield "[DONE]"
            return
        yield json.loads(payload)


def read_sse(client: httpx.Client, url: str, body: dict, timeout: float = 30.0) -> SseStream:
    events: list[dict] = []
    raw: list[str] = []
    saw_done = False
    with client.stream("POST", url, json=body, timeout=timeout) as r:
        assert r.status_code == 200, f"stream answered {r.status_code}: {r.read()[:500]!r}"
        assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
        lines = []
        for line in r.iter_lines():
            raw.append(line)
            lines.append(line)
        for item in parse_sse_lines(lines):
            if item == "[DONE]":
                saw_done = True
            else:
                assert not saw_done, "data after [DONE]"
                events.append(item)  # type: ignore[arg-type]
    return SseStream(events, saw_done, raw)


# ---------- Prometheus text ----------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict
    value: float


def parse_metrics(text: str) -> list[Sample]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        labels = {}
        if m.group(3):
            for lm in _LABEL.finditer(m.group(3)):
                labels[lm.group(1)] = (
                    lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                )
        samples.append(Sample(m.group(1), labels, float(m.group(4))))
    return samples


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples = parse_metrics(text)

    def select(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def sum(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.select(name, **labels))

    def has_type(self, name: str, kind: str) -> bool:
        return f"# TYPE {name} {kind}" in self.text


def fetch_metrics(server: Server) -> Metrics:
    r = httpx.get(server.url("/metrics"), timeout=10, trust_env=False)
    assert r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    return Metrics(r.text)


def wait_for_metrics(
    server: Server, condition: Callable[[Metrics], bool], what: str, timeout: float = 5.0
) -> Metrics:
    """Polls /metrics until `condition` holds (bounded); fails with the last relevant lines."""
    deadline = time.monotonic() + timeout
    while True:
        m = fetch_metrics(server)
        if condition(m):
            return m
        if time.monotonic() > deadline:
            relevant = "\n".join(
                line for line in m.text.splitlines() if line.startswith("switchyard_") and "_bucket" not in line
            )
            raise AssertionError(f"metrics never showed: {what} (waited {timeout}s)\n{relevant}")
        time.sleep(0.05)


# ---------- what the echo engine returns ----------


def qwen3_chat_prompt(messages: list[dict]) -> str:
    """The Qwen3 chat template rendered with add_generation_prompt=True, for plain text
    system/user/assistant conversations whose last message is from the user (what
    `transformers.apply_chat_template` produces for them)."""
    out = []
    if messages[0]["role"] == "system":
        out.append(f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n")
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        assert isinstance(content, str), "helper renders text content only"
        if role == "user" or (role == "system" and i > 0):
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        elif role == "assistant":
            assert "</think>" not in content and i < len(messages) - 1, "helper limitation"
            out.append(f"<|im_start|>assistant\n{content}<|im_end|>\n")
        else:
            assert role == "system", f"helper cannot render role {role}"
    assert messages[-1]["role"] == "user", "helper renders conversations ending with a user turn"
    out.append("<|im_start|>assistant\n")
    return "".join(out)


QWEN3_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def without_special_tokens(text: str) -> str:
    """What `decode(..., skip_special_tokens=True)` shows of a rendered prompt: special tokens
    are whole tokens, so dropping them from the text is the same as dropping their ids."""
    for t in QWEN3_SPECIAL_TOKENS:
        text = text.replace(t, "")
    return text


_vocab: dict[str, int] | None = None


# GPT-2 byte-level alphabet: printable bytes map to themselves, the rest to U+0100 onwards.
def _byte_level_alphabet() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return chars


_CHAR_OF_BYTE = _byte_level_alphabet()


def token_id(piece: str) -> int:
    """The Qwen3 id of a token given as its text (e.g. " world"), read from tokenizer.json."""
    global _vocab
    if _vocab is None:
        with open(MODEL_DIR / "tokenizer.json", encoding="utf-8") as f:
            _vocab = json.load(f)["model"]["vocab"]
    encoded = "".join(_CHAR_OF_BYTE[byte] for byte in piece.encode("utf-8"))
    assert encoded in _vocab, f"{piece!r} ({encoded!r}) is not one Qwen3 token"
    return _vocab[encoded]


def token_ids(pieces: list[str]) -> list[int]:
    return [token_id(p) for p in pieces]
