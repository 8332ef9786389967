"""GET /metrics after known traffic: counters by endpoint and status move by exactly what was
sent, histograms observe, gauges return to zero."""

from __future__ import annotations

import httpx
import openai
import pytest

from support import MODEL_NAME, Metrics, Server, fetch_metrics, wait_for_metrics

REQUESTS = "switchyard_http_requests_total"
TTFT = "switchyard_time_to_first_token_seconds"
ITL = "switchyard_inter_token_latency_seconds"
INPUT = "switchyard_input_tokens"
OUTPUT = "switchyard_output_tokens"
INFLIGHT = "switchyard_http_inflight_requests"
ACTIVE = "switchyard_worker_active_requests"
DECISIONS = "switchyard_router_decisions_total"


def test_metrics_after_traffic(server: Server, client: openai.OpenAI) -> None:
    before = fetch_metrics(server)

    prompt_tokens = completion_tokens = 0
    chat_ok = completions_ok = 0
    for i in range(6):
        r = client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": f"metrics chat {i}"}]
        )
        prompt_tokens += r.usage.prompt_tokens
        completion_tokens += r.usage.completion_tokens
        chat_ok += 1
    for i in range(4):
        chunks = list(
            client.chat.completions.create(
                model=MODEL_NAME,
                messages=[{"role": "user", "content": f"metrics streamed chat {i}"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        prompt_tokens += chunks[-1].usage.prompt_tokens
        completion_tokens += chunks[-1].usage.completion_tokens
        chat_ok += 1
    for i in range(10):
        if i % 2:
            r = client.completions.create(model=MODEL_NAME, prompt=f"metrics completion {i}")
            usage = r.usage
        else:
            chunks = list(
                client.completions.create(
                    model=MODEL_NAME,
                    prompt=f"metrics streamed completion {i}",
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            usage = chunks[-1].usage
        prompt_tokens += usage.prompt_tokens
        completion_tokens += usage.completion_tokens
        completions_ok += 1
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "x"}], temperature=3
        )
    routed = chat_ok + completions_ok

    def delta(after: Metrics, name: str, **labels: str) -> float:
        return after.sum(name, **labels) - before.sum(name, **labels)

    def settled(m: Metrics) -> bool:
        return (
            delta(m, REQUESTS, endpoint="chat_completions", status="success") >= chat_ok
            and delta(m, REQUESTS, endpoint="completions", status="success") >= completions_ok
            and m.sum(INFLIGHT) == 0
            and m.sum(ACTIVE) == 0
        )

    after = wait_for_metrics(server, settled, "request counters updated and gauges back to 0")

    # Counters by model / endpoint / status, exactly what was sent.
    assert delta(after, REQUESTS, model=MODEL_NAME, endpoint="chat_completions", status="success") == chat_ok
    assert delta(after, REQUESTS, model=MODEL_NAME, endpoint="completions", status="success") == completions_ok
    assert delta(after, REQUESTS, endpoint="chat_completions", status="invalid_request_error") == 1
    # HTTP requests carry protocol="http" (gRPC ones share the series with protocol="grpc").
    assert delta(after, REQUESTS, protocol="http", status="success") == chat_ok + completions_ok
    assert delta(after, REQUESTS, protocol="grpc") == 0
    assert all(s.labels.get("protocol") in ("http", "grpc") for s in after.select(REQUESTS))
    assert after.has_type(REQUESTS, "counter")

    # Histograms observed every served request.
    for name in (TTFT, ITL, INPUT, OUTPUT):
        assert after.has_type(name, "histogram"), f"no '# TYPE {name} histogram'"
        count = after.sum(f"{name}_count", model=MODEL_NAME)
        inf_bucket = after.sum(f"{name}_bucket", model=MODEL_NAME, le="+Inf")
        assert count == inf_bucket, name
    assert delta(after, f"{TTFT}_count", model=MODEL_NAME) >= routed
    assert delta(after, f"{ITL}_count", model=MODEL_NAME) > 0
    assert delta(after, f"{INPUT}_count", model=MODEL_NAME) == routed
    assert delta(after, f"{OUTPUT}_count", model=MODEL_NAME) == routed
    assert delta(after, f"{INPUT}_sum", model=MODEL_NAME) == prompt_tokens
    assert delta(after, f"{OUTPUT}_sum", model=MODEL_NAME) == completion_tokens

    # In-flight and per-worker load are back to zero; every routed request made one decision,
    # spread over both workers.
    assert after.select(INFLIGHT, model=MODEL_NAME), f"no {INFLIGHT} series"
    assert after.sum(INFLIGHT, model=MODEL_NAME) == 0
    workers = after.select(ACTIVE, model=MODEL_NAME)
    assert len(workers) == 2, workers
    assert all(s.value == 0 for s in workers), workers
    assert delta(after, DECISIONS, model=MODEL_NAME) == routed
    per_worker = {
        s.labels["worker"]: s.value - before.sum(DECISIONS, model=MODEL_NAME, worker=s.labels["worker"])
        for s in after.select(DECISIONS, model=MODEL_NAME)
    }
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()), per_worker


def test_metrics_is_prometheus_text(server: Server) -> None:
    r = httpx.get(server.url("/metrics"), timeout=10, trust_env=False)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    m = Metrics(r.text)  # parses every sample line
    assert any(s.name.startswith("switchyard_") for s in m.samples)
