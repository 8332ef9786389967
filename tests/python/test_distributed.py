"""Distributed Switchyard: `frontend` and `worker` processes finding each other through a real
etcd, KV events over a real nats-server, requests over the gRPC request plane.

Figures (time for a frontend to notice a killed worker, time to resume a migrated stream) are
printed with `-s`; nothing asserts on time beyond bounded waits.
"""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import openai
import pytest

from cluster import Etcd, Frontend, Nats, Worker, health, wait_until
from support import MODEL_NAME, Metrics, make_openai

# An echo prompt of about 40 tokens.
PROMPT = (
    "Distributed systems fail in partial and surprising ways, so every stream that crosses a "
    "machine boundary must survive the loss of the machine that was producing it, and the "
    "client must never see a token twice or miss one."
)


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    e = Etcd().start()
    yield e
    e.cleanup()


@pytest.fixture
def nats() -> Iterator[Nats]:
    n = Nats().start()
    yield n
    n.stop()


@pytest.fixture
def cluster(etcd: Etcd, nats: Nats):
    """Factory for frontends and workers on this test's etcd and NATS; all killed at the end."""
    started: list = []

    def frontend(*extra: str) -> Frontend:
        f = Frontend("frontend", extra_args=list(extra), discovery=etcd.url, event_plane=nats.url)
        started.append(f)
        return f.start()

    def worker(name: str, *extra: str) -> Worker:
        w = Worker(name, discovery=etcd.url, event_plane=nats.url, extra_args=list(extra))
        started.append(w)
        return w.start()

    yield frontend, worker
    for p in started:
        p.kill()


def models(frontend: Frontend) -> list[str]:
    r = httpx.get(frontend.url("/v1/models"), timeout=5, trust_env=False)
    return [m["id"] for m in r.json()["data"]]


def test_workers_join_and_leave_and_the_frontend_notices(cluster) -> None:
    make_frontend, make_worker = cluster
    fe = make_frontend()
    status, body = health(fe)
    assert status == 503 and body["status"] == "no_workers", body
    assert body["discovery"]["state"] == "connected", body

    w = make_worker("w1", "--engine", "echo")
    took = wait_until(lambda: health(fe)[0] == 200, "frontend sees the worker")
    print(f"\nfrontend noticed a new worker after {took * 1000:.0f} ms")
    assert models(fe) == [MODEL_NAME]
    client = make_openai(fe)
    out = client.completions.create(model=MODEL_NAME, prompt="hello there", max_tokens=50)
    assert out.choices[0].text == "hello there"

    killed_at = time.monotonic()
    w.kill()
    wait_until(lambda: health(fe)[0] == 503, "frontend drops the killed worker", timeout=15)
    print(f"frontend noticed a SIGKILLed worker after {(time.monotonic() - killed_at) * 1000:.0f} ms (lease ttl 2 s)")
    with pytest.raises(openai.APIStatusError) as err:
        client.completions.create(model=MODEL_NAME, prompt="hello", max_tokens=5)
    assert err.value.status_code in (404, 503)


# The killed worker streams this at 100 ms a token: about 16 s, so on a loaded machine it is
# still streaming when the replacement worker has started (the kill comes after 8 tokens).
KILL_PROMPT = " ".join([PROMPT] * 4)


def _stream_across_a_kill(fe: Frontend, make_worker, first: Worker):
    """Streams KILL_PROMPT from `first`; once some text arrived, starts a second worker and
    SIGKILLs the first. Returns (text chunks, finish reason, seconds from the kill to the next
    token)."""
    client = make_openai(fe)
    stream = client.completions.create(
        model=MODEL_NAME, prompt=KILL_PROMPT, max_tokens=1000, stream=True
    )
    chunks: list[str] = []
    finish = None
    killed_at = None
    resumed_after = None
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.text:
            if killed_at is not None and resumed_after is None:
                resumed_after = time.monotonic() - killed_at
            chunks.append(choice.text)
        if choice.finish_reason:
            finish = choice.finish_reason
        if len(chunks) == 8 and killed_at is None:
            make_worker("w2", "--engine", "echo", "--echo-delay-ms", "20")
            first.kill()
            killed_at = time.monotonic()
    return chunks, finish, resumed_after


def test_a_worker_killed_mid_stream_is_replaced_and_every_token_arrives_once(cluster) -> None:
    make_frontend, make_worker = cluster
    fe = make_frontend("--migration-limit", "3")
    # w1 is slow (100 ms per token) so w2 can start while it streams.
    w1 = make_worker("w1", "--engine", "echo", "--echo-delay-ms", "100")
    wait_until(lambda: health(fe)[0] == 200, "frontend sees w1")
    chunks, finish, resumed_after = _stream_across_a_kill(fe, make_worker, w1)
    assert "".join(chunks) == KILL_PROMPT
    assert finish == "stop"
    assert resumed_after is not None
    print(f"\nmigrated stream resumed {resumed_after * 1000:.0f} ms after the worker was killed")
    m = Metrics(httpx.get(fe.url("/metrics"), trust_env=False).text)
    assert m.sum("switchyard_worker_failures_total", outcome="migrated") == 1


def test_with_migration_limit_zero_the_client_gets_an_error_not_a_truncated_success(cluster) -> None:
    make_frontend, make_worker = cluster
    fe = make_frontend("--migration-limit", "0")
    w1 = make_worker("w1", "--engine", "echo", "--echo-delay-ms", "100")
    wait_until(lambda: health(fe)[0] == 200, "frontend sees w1")
    with pytest.raises(openai.APIError):
        _stream_across_a_kill(fe, make_worker, w1)


def _metrics(fe: Frontend) -> Metrics:
    return Metrics(httpx.get(fe.url("/metrics"), timeout=5, trust_env=False).text)


def _per_worker(fe: Frontend, name: str) -> dict[str, float]:
    return {s.labels["worker"]: s.value for s in _metrics(fe).select(name)}


def _workers_seen(fe: Frontend) -> int:
    return int(_metrics(fe).sum("switchyard_model_workers"))


# A prompt of several hundred tokens: many 16-token blocks for the KV router to match.
LONG_PROMPT = " ".join(f"item {i} of the shared system prompt;" for i in range(120))

MOCKER = ["--engine", "mocker", "--speedup-ratio", "0", "--block-size", "16", "--num-gpu-blocks", "4096"]


def test_two_frontend_replicas_route_the_same_request_to_the_same_worker(cluster) -> None:
    make_frontend, make_worker = cluster
    a = make_frontend("--router-mode", "kv")
    b = make_frontend("--router-mode", "kv")
    make_worker("w1", *MOCKER)
    make_worker("w2", *MOCKER)
    for fe in (a, b):
        wait_until(lambda fe=fe: _workers_seen(fe) == 2, "frontend sees both workers")
    # First request through A: its worker caches the prompt and publishes KV events that both
    # replicas apply.
    make_openai(a).completions.create(model=MODEL_NAME, prompt=LONG_PROMPT, max_tokens=4)
    first = _per_worker(a, "switchyard_router_decisions_total")
    (cached_on,) = [w for w, n in first.items() if n == 1]
    for fe in (a, b):
        wait_until(
            lambda fe=fe: _metrics(fe).sum("switchyard_router_index_blocks") > 0,
            "the replica applied the worker's KV events",
        )
    blocks_a = _metrics(a).sum("switchyard_router_index_blocks")
    blocks_b = _metrics(b).sum("switchyard_router_index_blocks")
    assert blocks_a == blocks_b, (blocks_a, blocks_b)
    # A replica that starts late missed those events: it loads the workers' cache dumps.
    late = make_frontend("--router-mode", "kv")
    wait_until(
        lambda: _metrics(late).sum("switchyard_router_index_blocks") == blocks_a,
        "the late replica rebuilt the index from the workers' dumps",
    )
    # The same request through B and again through A: both pick the worker holding the prefix.
    for fe in (b, a):
        before = _per_worker(fe, "switchyard_router_overlap_blocks_total")
        make_openai(fe).completions.create(model=MODEL_NAME, prompt=LONG_PROMPT, max_tokens=4)
        after = _per_worker(fe, "switchyard_router_overlap_blocks_total")
        gained = {w: after[w] - before.get(w, 0) for w in after if after[w] > before.get(w, 0)}
        assert list(gained) == [cached_on], (fe.name, gained, cached_on)
        assert gained[cached_on] >= LONG_PROMPT.count("item") // 16, gained


def test_frontends_keep_serving_through_an_etcd_restart_and_resync(cluster, etcd: Etcd) -> None:
    make_frontend, make_worker = cluster
    fe = make_frontend()
    make_worker("w1", "--engine", "echo")
    wait_until(lambda: health(fe)[0] == 200, "frontend sees w1")
    client = make_openai(fe)
    etcd.stop()
    # Known workers keep serving while discovery is down, and health says so.
    for i in range(5):
        out = client.completions.create(model=MODEL_NAME, prompt=f"still here {i}", max_tokens=20)
        assert out.choices[0].text == f"still here {i}"
    status, body = health(fe)
    assert status == 200, body
    wait_until(lambda: health(fe)[1]["discovery"]["state"] != "connected", "health reports the outage")
    etcd.restart()
    took = wait_until(
        lambda: health(fe)[1]["discovery"]["state"] == "connected", "discovery reconnects", timeout=30
    )
    print(f"\nfrontend reconnected to etcd {took * 1000:.0f} ms after it came back")
    # Resynced: a worker that registers now is seen, and w1 is (still) there.
    make_worker("w2", "--engine", "echo")
    wait_until(lambda: _workers_seen(fe) == 2, "frontend sees w1 and w2 after the restart", timeout=30)


def test_kv_events_resume_after_a_nats_restart(cluster, nats: Nats) -> None:
    make_frontend, make_worker = cluster
    fe = make_frontend("--router-mode", "kv")
    make_worker("w1", *MOCKER)
    wait_until(lambda: _workers_seen(fe) == 1, "frontend sees w1")
    client = make_openai(fe)
    client.completions.create(model=MODEL_NAME, prompt=LONG_PROMPT, max_tokens=4)
    wait_until(lambda: _metrics(fe).sum("switchyard_router_index_blocks") > 0, "events arrive")
    before = _metrics(fe).sum("switchyard_router_index_blocks")
    nats.restart()
    # New prompts after the restart (a repeated one would hit the worker's cache and store
    # nothing new): their blocks reach the index once both sides reconnected.
    attempt = iter(range(1000))

    def grew() -> bool:
        other = LONG_PROMPT.replace("item", f"entry {next(attempt)}")
        client.completions.create(model=MODEL_NAME, prompt=other, max_tokens=4)
        return _metrics(fe).sum("switchyard_router_index_blocks") > before

    took = wait_until(grew, "KV events flow again after the NATS restart", timeout=30, interval=0.5)
    print(f"\nKV events resumed {took * 1000:.0f} ms after nats-server restarted")


def test_replicas_share_their_in_flight_decisions(cluster) -> None:
    make_frontend, make_worker = cluster
    sync = ["--router-mode", "least-loaded", "--router-replica-sync"]
    a = make_frontend(*sync)
    b = make_frontend(*sync)
    make_worker("w1", "--engine", "echo", "--echo-delay-ms", "50")
    make_worker("w2", "--engine", "echo", "--echo-delay-ms", "50")
    for fe in (a, b):
        wait_until(lambda fe=fe: _workers_seen(fe) == 2, "frontend sees both workers")
    # A long stream through A: B must count it on the worker A chose.
    stream = make_openai(a).completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=500, stream=True)
    next(iter(stream))
    busy = [w for w, n in _per_worker(a, "switchyard_worker_active_requests").items() if n == 1]
    assert len(busy) == 1, busy
    wait_until(
        lambda: _per_worker(b, "switchyard_worker_active_requests").get(busy[0]) == 1,
        "replica B counts A's request",
    )
    assert _per_worker(b, "switchyard_router_decisions_total").get(busy[0], 0) == 0
    # B's own request goes to the idle worker, not onto the one A is using.
    out = make_openai(b).completions.create(model=MODEL_NAME, prompt="short one", max_tokens=20)
    assert out.choices[0].text == "short one"
    chosen = [w for w, n in _per_worker(b, "switchyard_router_decisions_total").items() if n == 1]
    assert chosen and chosen[0] != busy[0], (chosen, busy)
    assert "".join(c.choices[0].text for c in stream)
    wait_until(
        lambda: _per_worker(b, "switchyard_worker_active_requests").get(busy[0]) == 0,
        "replica B sees A's request released",
    )


def test_an_upstream_worker_joins_the_cluster_with_its_capabilities(cluster, spawn_server) -> None:
    # `worker --engine openai`: the worker forwards token ids to another OpenAI server (an echo
    # `serve`); its registration in etcd carries what its engine honours, so the frontend sends
    # `logit_bias` on rather than refusing it, and the server behind answers for itself.
    behind = spawn_server("dist-upstream-echo", workers=1)
    make_frontend, make_worker = cluster
    fe = make_frontend()
    make_worker(
        "upstream",
        "--engine",
        "openai",
        "--upstream",
        behind.base_url,
        "--upstream-model",
        MODEL_NAME,
    )
    wait_until(lambda: health(fe)[0] == 200, "frontend sees the upstream worker")
    client = make_openai(fe)
    out = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=200)
    assert out.choices[0].text == PROMPT
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(
            model=MODEL_NAME, prompt="hello", max_tokens=2, extra_body={"logit_bias": {"7": 5}}
        )
    # The refusal comes from the echo server behind (its only engine is echo).
    assert "logit_bias" in e.value.body["message"]
    assert "(engines: echo)" in e.value.body["message"]

    # An echo worker joins: the model's engines no longer all honour logit_bias, so the
    # frontend refuses it itself (naming both engine kinds) instead of letting placement decide.
    make_worker("echo", "--engine", "echo")
    wait_until(
        lambda: "(engines: echo, openai)" in _refusal(client),
        "frontend refuses logit_bias for a mixed model",
    )


def _refusal(client: openai.OpenAI) -> str:
    try:
        client.completions.create(
            model=MODEL_NAME, prompt="hello", max_tokens=2, extra_body={"logit_bias": {"7": 5}}
        )
    except openai.BadRequestError as e:
        return e.body["message"]
    return ""
