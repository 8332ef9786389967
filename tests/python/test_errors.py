"""Every error status the API promises, in OpenAI's shape `{"error": {message, type, param, code}}`,
seen both through the official client's exception classes and as raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from support import MODEL_NAME, Server, assert_error_body, make_openai

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER_HI = [{"role": "user", "content": "hi"}]
INVALID = "invalid_request_error"


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]


# ---------- 400 ----------

BAD_CHAT_PARAMS = [
    ("temperature_above_2", {"temperature": 2.5}, "temperature"),
    ("temperature_negative", {"temperature": -0.1}, "temperature"),
    ("top_p_zero", {"top_p": 0}, "top_p"),
    ("top_p_above_1", {"top_p": 1.5}, "top_p"),
    ("n_zero", {"n": 0}, "n"),
    ("max_tokens_negative", {"max_tokens": -1}, "max_tokens"),
    ("cache_salt_empty", {"extra_body": {"cache_salt": ""}}, "cache_salt"),
]


@pytest.mark.parametrize(
    ("name", "params", "param"), BAD_CHAT_PARAMS, ids=[c[0] for c in BAD_CHAT_PARAMS]
)
def test_out_of_range_chat_params_are_400(
    client: openai.OpenAI, name: str, params: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=USER_HI, **params)
    assert e.value.status_code == 400
    err = error_of(e.value)
    assert err["type"] == INVALID
    assert err["param"] == param
    assert param in err["message"]


@pytest.mark.parametrize(
    ("name", "params", "param"), BAD_CHAT_PARAMS, ids=[c[0] for c in BAD_CHAT_PARAMS]
)
def test_out_of_range_completion_params_are_400(
    client: openai.OpenAI, name: str, params: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="hi", **params)
    err = error_of(e.value)
    assert err["type"] == INVALID
    assert err["param"] == param


def test_streaming_request_with_bad_params_fails_before_streaming(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME, messages=USER_HI, temperature=9, stream=True
        )
    assert error_of(e.value)["param"] == "temperature"


def test_empty_messages_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=[])
    err = error_of(e.value)
    assert err["type"] == INVALID
    assert err["param"] == "messages"


def test_unknown_role_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "wizard", "content": "hi"}]
        )
    assert error_of(e.value)["type"] == INVALID


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"messages": USER_HI}),
        (CHAT, {"model": MODEL_NAME}),
        (COMPLETIONS, {"prompt": "hi"}),
        (COMPLETIONS, {"model": MODEL_NAME}),
        (CHAT, {"model": MODEL_NAME, "messages": "hi"}),
        (CHAT, {"model": MODEL_NAME, "messages": USER_HI, "temperature": "hot"}),
        (COMPLETIONS, {"model": MODEL_NAME, "prompt": []}),
        (COMPLETIONS, {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 1.5}),
    ],
    ids=[
        "chat_missing_model",
        "chat_missing_messages",
        "completions_missing_model",
        "completions_missing_prompt",
        "messages_not_a_list",
        "temperature_not_a_number",
        "empty_prompt_list",
        "fractional_max_tokens",
    ],
)
def test_missing_or_mistyped_fields_are_400(http: httpx.Client, path: str, body: dict) -> None:
    assert_error_body(http.post(path, json=body), 400, INVALID)


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json at all", b'{"model": "echo-model", "messages": [}', b""],
    ids=["truncated", "text", "broken_array", "empty"],
)
def test_malformed_json_is_400(http: httpx.Client, path: str, raw: bytes) -> None:
    r = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert_error_body(r, 400, INVALID)


# ---------- 404 ----------


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_unknown_model_is_404(client: openai.OpenAI, endpoint: str) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        if endpoint == "chat":
            client.chat.completions.create(model="no-such-model", messages=USER_HI)
        else:
            client.completions.create(model="no-such-model", prompt="hi")
    assert e.value.status_code == 404
    err = error_of(e.value)
    assert err["type"] == INVALID
    assert "no-such-model" in err["message"]


def test_unknown_model_in_a_stream_request_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=USER_HI, stream=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("POST", "/v1/embeddingz"), ("POST", "/v2/chat")],
)
def test_unknown_route_is_404(http: httpx.Client, method: str, path: str) -> None:
    r = http.request(method, path, json={"model": MODEL_NAME})
    assert_error_body(r, 404, INVALID)


# ---------- 405 ----------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", CHAT), ("GET", COMPLETIONS), ("PUT", CHAT), ("DELETE", COMPLETIONS), ("POST", "/v1/models")],
)
def test_wrong_method_is_405(http: httpx.Client, method: str, path: str) -> None:
    assert_error_body(http.request(method, path), 405, INVALID)


# ---------- 413 ----------


def padded_body(total_bytes: int) -> bytes:
    """A valid completion request of about `total_bytes`, padded with an ignored field."""
    head = b'{"model": "%s", "prompt": "hi", "max_tokens": 1, "padding": "' % MODEL_NAME.encode()
    tail = b'"}'
    return head + b"x" * (total_bytes - len(head) - len(tail)) + tail


@pytest.fixture(scope="module")
def small_limit_server(spawn_server) -> Server:
    return spawn_server("body-limit-1mb", extra_env={"SWITCHYARD_HTTP_BODY_LIMIT_MB": "1"})


def test_body_over_the_limit_is_413(small_limit_server: Server) -> None:
    with httpx.Client(base_url=small_limit_server.base_url, timeout=30, trust_env=False) as h:
        r = h.post(COMPLETIONS, content=padded_body(1_500_000), headers={"content-type": "application/json"})
        assert_error_body(r, 413, INVALID)
        # A body under the limit on the same server is served.
        ok = h.post(COMPLETIONS, content=padded_body(900_000), headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text[:300]
        assert ok.json()["choices"][0]["text"] == "hi"


def test_body_over_the_limit_through_the_client(small_limit_server: Server) -> None:
    c = make_openai(small_limit_server)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "y" * 1_200_000}]
        )
    assert e.value.status_code == 413
    assert error_of(e.value)["type"] == INVALID


def test_default_limit_accepts_a_few_megabytes(http: httpx.Client) -> None:
    r = http.post(COMPLETIONS, content=padded_body(3_000_000), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text[:300]


# ---------- 503 ----------


@pytest.fixture(scope="module")
def no_worker_server(spawn_server) -> Server:
    return spawn_server("no-workers", workers=0, ready="live")


def test_health_is_503_without_workers(no_worker_server: Server) -> None:
    r = httpx.get(no_worker_server.url("/health"), timeout=10, trust_env=False)
    assert r.status_code == 503
    live = httpx.get(no_worker_server.url("/live"), timeout=10, trust_env=False)
    assert live.status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_requests_without_workers_are_503(no_worker_server: Server, stream: bool) -> None:
    c = make_openai(no_worker_server)
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model=MODEL_NAME, messages=USER_HI, stream=stream)
    assert e.value.status_code == 503
    assert error_of(e.value)["type"] == "service_unavailable"
    with pytest.raises(openai.InternalServerError) as e:
        c.completions.create(model=MODEL_NAME, prompt="hi", stream=stream)
    assert e.value.status_code == 503
    assert error_of(e.value)["type"] == "service_unavailable"


# ---------- errors never poison the server ----------


def test_server_still_serves_after_errors(client: openai.OpenAI, http: httpx.Client) -> None:
    for _ in range(3):
        http.post(CHAT, content=b"{", headers={"content-type": "application/json"})
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL_NAME, messages=[])
    r = client.completions.create(model=MODEL_NAME, prompt="still here")
    assert r.choices[0].text == "still here"
