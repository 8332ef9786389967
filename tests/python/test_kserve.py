"""The KServe v2 gRPC front door, driven by Triton's official `tritonclient[grpc]` against
`serve --engine echo --kserve-grpc-server`: health and metadata RPCs, unary and streaming infer
(the echo engine returns the prompt, so every text is known exactly), the error statuses,
cancellation, concurrency, and the metrics/health listener beside the gRPC port."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from support import MODEL_NAME, Metrics, Server, free_port, make_openai, wait_for_metrics

REQUESTS = "switchyard_http_requests_total"
DISCONNECTS = "switchyard_client_disconnects_total"
ACTIVE = "switchyard_worker_active_requests"
PROMPT = "Hello, wörld! 你好 🚀"
STREAM_WAIT_S = 20


@dataclass
class GrpcServer:
    server: Server
    grpc_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def metrics_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.grpc_url)

    def metrics(self) -> Metrics:
        r = httpx.get(self.metrics_url("/metrics"), timeout=10, trust_env=False)
        assert r.status_code == 200, r.text[:300]
        return Metrics(r.text)


def start_grpc_server(spawn_server, name: str, extra: list[str] | None = None, **kwargs) -> GrpcServer:
    grpc_port, metrics_port = free_port(), free_port()
    args = [
        "--kserve-grpc-server",
        "--grpc-port",
        str(grpc_port),
        "--grpc-metrics-port",
        str(metrics_port),
        *(extra or []),
    ]
    srv = GrpcServer(spawn_server(name, args, **kwargs), grpc_port, metrics_port)
    # HTTP answers first; the gRPC listener binds alongside it. Bounded wait for it.
    deadline = time.monotonic() + 30
    with srv.client() as c:
        while True:
            try:
                if c.is_server_live():
                    return srv
            except InferenceServerException:
                pass
            assert time.monotonic() < deadline, f"gRPC port never answered:\n{srv.server.log_tail()}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def kserve(spawn_server) -> GrpcServer:
    return start_grpc_server(spawn_server, "kserve")


@pytest.fixture(scope="module")
def client(kserve: GrpcServer):
    with kserve.client() as c:
        yield c


def text_input(text: str | list[str], name: str = "text_input") -> triton.InferInput:
    values = [text] if isinstance(text, str) else text
    t = triton.InferInput(name, [len(values)], "BYTES")
    t.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
    return t


def scalar(name: str, value, datatype: str, dtype) -> triton.InferInput:
    t = triton.InferInput(name, [1], datatype)
    t.set_data_from_numpy(np.array([value], dtype=dtype))
    return t


def text_of(result) -> str:
    out = result.as_numpy("text_output")
    assert out is not None and out.shape == (1,), out
    return out[0].decode()


def finish_of(result) -> str | None:
    out = result.as_numpy("finish_reason")
    return None if out is None else out[0].decode()


def expect_status(call, status: str, fragment: str) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == f"StatusCode.{status}", (info.value.status(), info.value.message())
    assert fragment in info.value.message(), info.value.message()
    return info.value


@dataclass
class StreamResult:
    chunks: list
    error: InferenceServerException | None


def stream_once(c: triton.InferenceServerClient, inputs, request_id: str = "", **kwargs) -> StreamResult:
    """One request on a fresh stream, read until its final response or an error."""
    events: queue.Queue = queue.Queue()
    c.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        c.async_stream_infer(MODEL_NAME, inputs, request_id=request_id, **kwargs)
        chunks = []
        while True:
            result, error = events.get(timeout=STREAM_WAIT_S)
            if error is not None:
                return StreamResult(chunks, error)
            chunks.append(result)
            if finish_of(result) is not None:
                return StreamResult(chunks, None)
    finally:
        c.stop_stream()


# ---------- health and metadata ----------


def test_liveness_readiness_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME)
    assert client.is_model_ready(MODEL_NAME, "1")
    assert not client.is_model_ready("no-such-model")

    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "switchyard" and server["version"]

    meta = client.get_model_metadata(MODEL_NAME, as_json=True)
    assert meta["name"] == MODEL_NAME and meta["versions"] == ["1"]
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]}
    assert inputs["text_input"] == ("BYTES", ["1"])
    assert inputs["max_tokens"] == ("INT32", ["1"])
    assert inputs["temperature"] == ("FP32", ["1"]) and inputs["top_p"] == ("FP32", ["1"])
    assert inputs["stop"] == ("BYTES", ["-1"])
    assert inputs["stream"] == ("BOOL", ["1"])
    outputs = {t["name"]: t["datatype"] for t in meta["outputs"]}
    assert outputs == {"text_output": "BYTES", "finish_reason": "BYTES"}

    config = client.get_model_config(MODEL_NAME, as_json=True)["config"]
    assert config["name"] == MODEL_NAME
    assert config["model_transaction_policy"]["decoupled"] is True
    required = [i["name"] for i in config["input"] if not i.get("optional")]
    assert required == ["text_input"]
    assert {o["name"] for o in config["output"]} == {"text_output", "finish_reason"}

    expect_status(lambda: client.get_model_metadata("no-such-model"), "NOT_FOUND", "no-such-model")
    expect_status(lambda: client.get_model_config("no-such-model"), "NOT_FOUND", "no-such-model")
    expect_status(lambda: client.get_model_metadata(MODEL_NAME, "7"), "NOT_FOUND", "version `7`")


# ---------- unary infer ----------


def test_unary_infer_echoes_the_prompt_exactly(client: triton.InferenceServerClient) -> None:
    result = client.infer(MODEL_NAME, [text_input(PROMPT)], request_id="req-1")
    assert text_of(result) == PROMPT
    assert finish_of(result) == "stop"
    response = result.get_response()
    assert response.id == "req-1" and response.model_name == MODEL_NAME


def test_max_tokens_truncates_with_finish_reason_length(
    kserve: GrpcServer, client: triton.InferenceServerClient
) -> None:
    # The same server's OpenAI endpoint is the reference for which text 3 tokens are.
    with make_openai(kserve.server) as openai_client:
        reference = openai_client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3)
    want = reference.choices[0].text
    assert reference.choices[0].finish_reason == "length" and want and want != PROMPT

    for datatype, dtype in (("INT32", np.int32), ("UINT32", np.uint32), ("INT64", np.int64)):
        result = client.infer(MODEL_NAME, [text_input(PROMPT), scalar("max_tokens", 3, datatype, dtype)])
        assert (text_of(result), finish_of(result)) == (want, "length"), datatype
    # The same as a request parameter.
    result = client.infer(MODEL_NAME, [text_input(PROMPT)], parameters={"max_tokens": 3})
    assert (text_of(result), finish_of(result)) == (want, "length")


def test_stop_strings_end_the_text(client: triton.InferenceServerClient) -> None:
    prompt = "one two three four five"
    result = client.infer(MODEL_NAME, [text_input(prompt), text_input(["four", "three"], name="stop")])
    assert (text_of(result), finish_of(result)) == ("one two ", "stop")
    result = client.infer(MODEL_NAME, [text_input(prompt)], parameters={"stop": " four"})
    assert (text_of(result), finish_of(result)) == ("one two three", "stop")


def test_sampling_inputs_are_accepted(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        MODEL_NAME,
        [
            text_input(PROMPT),
            scalar("temperature", 0.5, "FP32", np.float32),
            scalar("top_p", 0.9, "FP32", np.float32),
        ],
    )
    assert text_of(result) == PROMPT


def test_requested_outputs_limit_the_response(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        MODEL_NAME, [text_input(PROMPT)], outputs=[triton.InferRequestedOutput("finish_reason")]
    )
    assert result.as_numpy("text_output") is None
    assert finish_of(result) == "stop"


def test_typed_contents_are_accepted(kserve: GrpcServer) -> None:
    """tritonclient always sends raw_input_contents; typed contents go through the raw stub."""
    with grpc.insecure_channel(kserve.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=MODEL_NAME, id="typed")
        text = request.inputs.add(name="text_input", datatype="BYTES", shape=[1])
        text.contents.bytes_contents.append(PROMPT.encode())
        max_tokens = request.inputs.add(name="max_tokens", datatype="INT64", shape=[1])
        max_tokens.contents.int64_contents.append(500)
        response = stub.ModelInfer(request, timeout=30)
        result = triton.InferResult(response)
        assert text_of(result) == PROMPT and finish_of(result) == "stop"
        assert response.id == "typed"

        # A shape that does not match the element count.
        bad = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
        text = bad.inputs.add(name="text_input", datatype="BYTES", shape=[1])
        text.contents.bytes_contents.append(b"x")
        stop = bad.inputs.add(name="stop", datatype="BYTES", shape=[3])
        stop.contents.bytes_contents.append(b"y")
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(bad, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shape of 3 element(s) but carries 1" in info.value.details()


# ---------- streaming ----------


def test_streamed_chunks_concatenate_to_the_unary_text(client: triton.InferenceServerClient) -> None:
    unary = text_of(client.infer(MODEL_NAME, [text_input(PROMPT)]))
    stream_flag = scalar("stream", True, "BOOL", np.bool_)
    result = stream_once(client, [text_input(PROMPT), stream_flag], request_id="s-1")
    assert result.error is None, result.error
    chunks = result.chunks
    assert len(chunks) > 3, "one response per generated chunk"
    assert "".join(text_of(c) for c in chunks) == unary == PROMPT
    finishes = [finish_of(c) for c in chunks]
    assert finishes[:-1] == [None] * (len(chunks) - 1) and finishes[-1] == "stop"
    assert all(c.get_response().id == "s-1" for c in chunks)
    final_flags = [c.get_response().parameters["triton_final_response"].bool_param for c in chunks]
    assert final_flags == [False] * (len(chunks) - 1) + [True]


def test_streaming_parameter_and_truncation(client: triton.InferenceServerClient) -> None:
    result = stream_once(
        client, [text_input(PROMPT), scalar("max_tokens", 4, "INT32", np.int32)], parameters={"streaming": True}
    )
    assert result.error is None, result.error
    unary = client.infer(MODEL_NAME, [text_input(PROMPT), scalar("max_tokens", 4, "INT32", np.int32)])
    assert len(result.chunks) > 1
    assert "".join(text_of(c) for c in result.chunks) == text_of(unary) != PROMPT
    assert finish_of(result.chunks[-1]) == finish_of(unary) == "length"


def test_a_non_streaming_request_on_a_stream_gets_one_response(client: triton.InferenceServerClient) -> None:
    result = stream_once(client, [text_input(PROMPT)])
    assert result.error is None, result.error
    assert len(result.chunks) == 1
    assert (text_of(result.chunks[0]), finish_of(result.chunks[0])) == (PROMPT, "stop")


def test_errors_on_a_stream_arrive_as_error_messages(client: triton.InferenceServerClient) -> None:
    result = stream_once(client, [text_input(PROMPT), text_input("x", name="bogus")])
    assert result.error is not None and "unknown input `bogus`" in result.error.message()
    # The stream stays usable: several requests on one stream, answered in any order.
    events: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        client.async_stream_infer("no-such-model", [text_input("x")], request_id="a")
        client.async_stream_infer(MODEL_NAME, [text_input("fine")], request_id="b")
        seen = {}
        for _ in range(2):
            result, error = events.get(timeout=STREAM_WAIT_S)
            if error is not None:
                seen["error"] = error.message()
            else:
                seen[result.get_response().id] = text_of(result)
        assert seen["b"] == "fine"
        assert "no-such-model" in seen["error"]
    finally:
        client.stop_stream()


def test_32_concurrent_streams(kserve: GrpcServer) -> None:
    def one(i: int) -> tuple[str, str, int]:
        prompt = f"concurrent stream number {i} says hello"
        with kserve.client() as c:
            result = stream_once(c, [text_input(prompt), scalar("stream", True, "BOOL", np.bool_)], request_id=str(i))
        assert result.error is None, result.error
        return prompt, "".join(text_of(r) for r in result.chunks), len(result.chunks)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(one, range(32)))
    for prompt, text, n in results:
        assert text == prompt
        assert n > 1


# ---------- errors ----------


def test_invalid_inputs_are_invalid_argument(client: triton.InferenceServerClient) -> None:
    ok = text_input(PROMPT)
    cases = [
        ([ok, text_input("x", name="prompt")], "unknown input `prompt`"),
        ([scalar("text_input", 5, "INT32", np.int32)], "must have datatype BYTES"),
        ([text_input(["a", "b"])], "exactly one element"),
        ([ok, scalar("max_tokens", 1.5, "FP32", np.float32)], "must have datatype INT32"),
        ([ok, scalar("temperature", 7.0, "FP32", np.float32)], "temperature"),
        ([scalar("max_tokens", 3, "INT32", np.int32)], "no `text_input` input"),
        ([ok, text_input("x", name="stream")], "must have datatype BOOL"),
    ]
    for inputs, fragment in cases:
        expect_status(lambda: client.infer(MODEL_NAME, inputs), "INVALID_ARGUMENT", fragment)
    expect_status(
        lambda: client.infer(MODEL_NAME, [ok], parameters={"max_tokens": "many"}),
        "INVALID_ARGUMENT",
        "must be an integer",
    )
    expect_status(
        lambda: client.infer(MODEL_NAME, [ok], outputs=[triton.InferRequestedOutput("logits")]),
        "INVALID_ARGUMENT",
        "unknown output `logits`",
    )


def test_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    expect_status(lambda: client.infer("no-such-model", [text_input("x")]), "NOT_FOUND", "no-such-model")
    expect_status(
        lambda: client.infer(MODEL_NAME, [text_input("x")], model_version="3"), "NOT_FOUND", "version `3`"
    )


def test_no_worker_is_unavailable(spawn_server) -> None:
    srv = start_grpc_server(spawn_server, "kserve-no-workers", workers=0, ready="live")
    with srv.client() as c:
        assert c.is_server_live()
        assert not c.is_server_ready()
        assert not c.is_model_ready(MODEL_NAME)
        expect_status(lambda: c.infer(MODEL_NAME, [text_input("x")]), "UNAVAILABLE", "")
        result = stream_once(c, [text_input("x")])
        assert result.error is not None and result.error.message()
    r = httpx.get(srv.metrics_url("/health"), timeout=10, trust_env=False)
    assert r.status_code == 503 and r.json()["status"] == "no_workers"


# ---------- cancellation ----------


@pytest.fixture(scope="module")
def slow_kserve(spawn_server) -> GrpcServer:
    return start_grpc_server(spawn_server, "kserve-slow", ["--echo-delay-ms", "20"])


LONG_PROMPT = " ".join(["word"] * 1000)  # ~1000 tokens → ~20 s at 20 ms per token


def disconnects(m: Metrics, endpoint: str) -> float:
    return m.sum(DISCONNECTS, model=MODEL_NAME, protocol="grpc", endpoint=endpoint)


def test_cancelling_a_stream_cancels_the_request(slow_kserve: GrpcServer) -> None:
    before = slow_kserve.metrics()
    events: queue.Queue = queue.Queue()
    with slow_kserve.client() as c:
        c.start_stream(callback=lambda result, error: events.put((result, error)))
        c.async_stream_infer(MODEL_NAME, [text_input(LONG_PROMPT), scalar("stream", True, "BOOL", np.bool_)])
        for _ in range(3):
            result, error = events.get(timeout=STREAM_WAIT_S)
            assert error is None and finish_of(result) is None
        assert slow_kserve.metrics().sum(ACTIVE, model=MODEL_NAME) == 1
        c.stop_stream(cancel_requests=True)
    wait_for_metrics(
        slow_kserve.server,
        lambda m: m.sum(ACTIVE, model=MODEL_NAME) == 0
        and disconnects(m, "model_stream_infer") - disconnects(before, "model_stream_infer") == 1,
        "worker load back to 0 and one stream disconnect counted",
    )


def test_cancelling_a_unary_call_cancels_the_request(slow_kserve: GrpcServer) -> None:
    before = slow_kserve.metrics()
    done = threading.Event()
    with slow_kserve.client() as c:
        call = c.async_infer(MODEL_NAME, [text_input(LONG_PROMPT)], callback=lambda result, error: done.set())
        wait_for_metrics(
            slow_kserve.server, lambda m: m.sum(ACTIVE, model=MODEL_NAME) == 1, "the unary request is running"
        )
        call.cancel()
        after = wait_for_metrics(
            slow_kserve.server,
            lambda m: m.sum(ACTIVE, model=MODEL_NAME) == 0
            and disconnects(m, "model_infer") - disconnects(before, "model_infer") == 1,
            "worker load back to 0 and one unary disconnect counted",
        )
    assert done.wait(10), "the cancelled call never completed on the client"
    status = after.sum(REQUESTS, model=MODEL_NAME, protocol="grpc", endpoint="model_infer", status="disconnected")
    assert status - before.sum(
        REQUESTS, model=MODEL_NAME, protocol="grpc", endpoint="model_infer", status="disconnected"
    ) == 1


# ---------- metrics and health beside the gRPC port ----------


def test_metrics_and_health_on_the_grpc_metrics_port(
    kserve: GrpcServer, client: triton.InferenceServerClient
) -> None:
    r = httpx.get(kserve.metrics_url("/health"), timeout=10, trust_env=False)
    assert r.status_code == 200 and r.json() == {
        "status": "ready",
        "models": [MODEL_NAME],
        "discovery": {"state": "connected"},
    }
    # Only health and metrics live here, not the OpenAI routes.
    r = httpx.post(kserve.metrics_url("/v1/completions"), json={}, timeout=10, trust_env=False)
    assert r.status_code == 404

    labels = {"model": MODEL_NAME, "protocol": "grpc"}
    before = kserve.metrics()
    for _ in range(3):
        client.infer(MODEL_NAME, [text_input("count me")])
    stream_once(client, [text_input("count me too"), scalar("stream", True, "BOOL", np.bool_)])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL_NAME, [text_input("x"), text_input("y", name="bogus")])

    def delta(m: Metrics, **extra: str) -> float:
        return m.sum(REQUESTS, **labels, **extra) - before.sum(REQUESTS, **labels, **extra)

    after = wait_for_metrics(
        kserve.server,
        lambda m: delta(m, endpoint="model_stream_infer", status="success") == 1,
        "the streamed request counted",
    )
    assert delta(after, endpoint="model_infer", status="success") == 3
    assert delta(after, endpoint="model_infer", status="invalid_request_error") == 1
    # The same registry is served on the HTTP port, and HTTP requests keep their own labels.
    http_text = httpx.get(kserve.server.url("/metrics"), timeout=10, trust_env=False).text
    assert Metrics(http_text).sum(REQUESTS, **labels, endpoint="model_infer", status="success") == after.sum(
        REQUESTS, **labels, endpoint="model_infer", status="success"
    )


# ---------- TLS ----------


def test_grpc_over_tls(tmp_path) -> None:
    from test_tls import TlsServer  # the HTTPS server helper: waits for /health over TLS

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    grpc_port = free_port()
    srv = TlsServer(
        "kserve-tls",
        extra_args=[
            "--tls-cert-path", str(cert), "--tls-key-path", str(key),
            "--kserve-grpc-server", "--grpc-port", str(grpc_port), "--grpc-metrics-port", str(free_port()),
        ],
    )
    srv.cert = cert
    srv.start()
    try:
        url = f"127.0.0.1:{grpc_port}"
        with triton.InferenceServerClient(url, ssl=True, root_certificates=str(cert)) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert c.is_server_live()
                    break
                except InferenceServerException:
                    assert time.monotonic() < deadline, srv.log_tail()
                    time.sleep(0.05)
            assert text_of(c.infer(MODEL_NAME, [text_input(PROMPT)])) == PROMPT
        # Plaintext gRPC to the TLS port fails.
        with triton.InferenceServerClient(url) as plain:
            with pytest.raises(InferenceServerException):
                plain.is_server_live(client_timeout=5)
    finally:
        srv.stop_expecting_clean_exit()
