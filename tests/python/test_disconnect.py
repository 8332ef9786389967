"""A client that goes away mid-stream cancels its request: the router forgets the worker's load
and the disconnect is counted. The echo engine runs with a per-token delay so the stream would
otherwise last ~20 s; the bounded polls below wait at most a few seconds."""

from __future__ import annotations

import httpx
import pytest

from support import MODEL_NAME, Server, fetch_metrics, parse_sse_lines, wait_for_metrics

ACTIVE = "switchyard_worker_active_requests"
DISCONNECTS = "switchyard_client_disconnects_total"
INFLIGHT = "switchyard_http_inflight_requests"
DELAY_MS = 20
LONG_PROMPT = " ".join(["word"] * 1000)  # ~1000 tokens → ~20 s at 20 ms per token


@pytest.fixture(scope="module")
def slow_server(spawn_server) -> Server:
    return spawn_server("slow-echo", ["--echo-delay-ms", str(DELAY_MS)])


@pytest.mark.parametrize(
    ("endpoint", "path", "body"),
    [
        ("completions", "/v1/completions", {"prompt": LONG_PROMPT}),
        ("chat_completions", "/v1/chat/completions", {"messages": [{"role": "user", "content": LONG_PROMPT}]}),
    ],
)
def test_disconnect_mid_stream_frees_the_worker(
    slow_server: Server, endpoint: str, path: str, body: dict
) -> None:
    before = fetch_metrics(slow_server)
    assert before.sum(ACTIVE, model=MODEL_NAME) == 0
    request = {"model": MODEL_NAME, "stream": True, **body}

    with httpx.Client(base_url=slow_server.base_url, timeout=30, trust_env=False) as h:
        with h.stream("POST", path, json=request) as r:
            assert r.status_code == 200
            received = 0
            lines = r.iter_lines()
            for item in parse_sse_lines(lines):
                assert item != "[DONE]", "stream ended early"
                received += 1
                if received == 3:
                    break
            # While the stream is open, exactly one request is accounted to a worker.
            wait_for_metrics(
                slow_server,
                lambda m: m.sum(ACTIVE, model=MODEL_NAME) == 1,
                "one active request while streaming",
            )
        # Leaving both blocks closes the response and its connection mid-stream.

    after = wait_for_metrics(
        slow_server,
        lambda m: m.sum(ACTIVE, model=MODEL_NAME) == 0
        and m.sum(DISCONNECTS, model=MODEL_NAME, endpoint=endpoint)
        - before.sum(DISCONNECTS, model=MODEL_NAME, endpoint=endpoint)
        == 1,
        f"worker load back to 0 and one {endpoint} disconnect counted",
        timeout=5.0,
    )
    assert after.sum(INFLIGHT, model=MODEL_NAME, endpoint=endpoint) == 0


def test_slow_server_still_serves_after_disconnects(slow_server: Server) -> None:
    with httpx.Client(base_url=slow_server.base_url, timeout=30, trust_env=False) as h:
        r = h.post("/v1/completions", json={"model": MODEL_NAME, "prompt": "after the storm"})
        assert r.status_code == 200
        assert r.json()["choices"][0]["text"] == "after the storm"
