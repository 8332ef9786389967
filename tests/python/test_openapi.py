"""`GET /openapi.json` against the real server: the document describes every route, and
schemathesis (property-based, from the document alone) finds no 5xx and no response that
breaks the document (status code, content type, body schema, headers).

Streamed (`stream: true`) answers are checked event by event: the document's
`text/event-stream` schema describes one event (`{event, data}`), its `data` a JSON text
(`contentMediaType` + `contentSchema`). Schemathesis validates the streams it provokes; the
tests below also send requests it rarely generates (n > 1 with logprobs and usage, batched
prompts, a whole Responses stream) and validate every event by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

import httpx
import jsonschema_rs
import pytest

from support import MODEL_NAME, Server

# Every route the server serves (crates/http/src/server.rs `api_routes`).
ROUTES = {
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{id}"),
    ("post", "/v1/responses"),
    ("post", "/tokenize"),
    ("post", "/detokenize"),
    ("get", "/health"),
    ("get", "/live"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
}

# What the server answers must match the document, and a request the document rules out must
# be refused (the document is not looser than the server). `positive_data_acceptance` is left
# out: a request the document allows can still be a 400 for reasons JSON Schema cannot state
# (a token id beyond this model's vocabulary, a feature the engine lacks such as
# `response_format`, `best_of` below `n`), and the document declares that 400.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
]

# Bounds: examples per operation, one seed (reproducible), per-request and whole-run limits.
MAX_EXAMPLES = 25
SEED = 20260601
REQUEST_TIMEOUT_S = 10
RUN_TIMEOUT_S = 100


@pytest.fixture(scope="module")
def api(spawn_server: Callable[..., Server]) -> Server:
    # Its own server: schemathesis sends hundreds of requests, which must not disturb the
    # shared server's metrics that other tests read.
    return spawn_server("openapi")


def fetch_document(server: Server) -> dict:
    r = httpx.get(server.url("/openapi.json"), timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_document_describes_every_route(api: Server) -> None:
    doc = fetch_document(api)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"]
    served = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert served == ROUTES
    for method, path in ROUTES:
        op = doc["paths"][path][method]
        assert "200" in op["responses"], (method, path)
    # Built once: the same bytes every time.
    again = httpx.get(api.url("/openapi.json"), timeout=10, trust_env=False)
    assert again.json() == doc


def narrowed_to_served_model(doc: dict) -> dict:
    """The document with every request's `model` narrowed to the one model served: the server
    accepts any string there (an unknown one is a 404, which the document declares), so random
    names would stop nearly every generated request at the model lookup."""
    for schema in doc["components"]["schemas"].values():
        model = schema.get("properties", {}).get("model")
        if model is None:
            continue
        nullable = "null" in model.get("type", [])
        schema["properties"]["model"] = {"enum": [MODEL_NAME, None] if nullable else [MODEL_NAME]}
    for param in doc["paths"]["/v1/models/{id}"]["get"]["parameters"]:
        param["schema"]["examples"] = [MODEL_NAME]
    return doc


def test_schemathesis_finds_no_server_error_or_schema_violation(api: Server, tmp_path: Path) -> None:
    doc = narrowed_to_served_model(fetch_document(api))
    schema_path = tmp_path / "openapi.json"
    schema_path.write_text(json.dumps(doc))
    binary = Path(sys.executable).parent / "schemathesis"
    command = [
        str(binary),
        "run",
        str(schema_path),
        "--url",
        api.base_url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
        # No links between operations: the stateful phase would have nothing to do.
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        # One worker: hypothesis describing strategies from two threads at once trips a
        # CPython 3.11 `ast` recursion check (a SystemError inside schemathesis).
        "--workers",
        "1",
        "--no-color",
        # The JUnit report lists the operations tested, one test case each.
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    started = time.monotonic()
    # In a temporary directory: no schemathesis.toml or report folder of the checkout applies.
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"schemathesis exited {result.returncode} after {took:.0f}s:\n{output}\n"
        f"--- server log:\n{api.log_tail(40)}"
    )
    # It really tested every operation (a document it could not read would test none).
    cases = ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    tested = {case.get("name") for case in cases}
    assert tested == {f"{method.upper()} {path}" for method, path in ROUTES}, (tested, output)
    assert f"Tested: {len(ROUTES)}" in output, output
    assert api.proc is not None and api.proc.poll() is None, "the server died"


def decoded_json_texts(schema):
    """The schema with each `contentMediaType: application/json` string replaced by its
    `contentSchema`: it then validates events whose JSON `data` was decoded."""
    if isinstance(schema, list):
        return [decoded_json_texts(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("contentMediaType") == "application/json" and "contentSchema" in schema:
        return decoded_json_texts(schema["contentSchema"])
    return {k: decoded_json_texts(v) for k, v in schema.items()}


def event_validator(doc: dict, path: str) -> jsonschema_rs.Draft202012Validator:
    """Validates one SSE event of `path`'s stream, as `{"event", "data"}` with `data` decoded."""
    declared = doc["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
    return jsonschema_rs.Draft202012Validator(
        {**decoded_json_texts(declared["schema"]), "components": doc["components"]}
    )


def decoded(event: tuple[str | None, str]) -> dict:
    name, data = event
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        value = data
    return {"event": name or "message", "data": value}


def sse_data(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event name, data) of every SSE event of a finished response."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        events.append((name, "\n".join(data)))
    return events


@pytest.mark.parametrize(
    "path,body",
    [
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "Hello there"}],
                "n": 2,
                "logprobs": True,
                "top_logprobs": 2,
                "stream_options": {"include_usage": True},
            },
        ),
        (
            "/v1/completions",
            {"prompt": ["one two", "three"], "logprobs": 1, "echo": False,
             "stream_options": {"include_usage": True}},
        ),
    ],
)
def test_streamed_chunks_match_their_schema(api: Server, path: str, body: dict) -> None:
    doc = fetch_document(api)
    validator = event_validator(doc, path)
    r = httpx.post(
        api.url(path),
        json={"model": MODEL_NAME, "stream": True, "max_tokens": 8, **body},
        timeout=30,
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/event-stream"
    events = sse_data(r)
    assert events[-1] == (None, "[DONE]"), events[-3:]
    assert len(events) > 3
    for event in events:
        errors = [e.message for e in validator.iter_errors(decoded(event))]
        assert not errors, f"{event}: {errors}"
    assert json.loads(events[-2][1])["usage"]["completion_tokens"] > 0
    # The schema is not vacuous: a chunk without choices, or an unknown event, is refused.
    chunk = json.loads(events[0][1])
    del chunk["choices"]
    assert not validator.is_valid({"event": "message", "data": chunk})
    assert not validator.is_valid({"event": "other", "data": "[DONE]"})
    assert validator.is_valid(
        {"event": "error", "data": {"error": {"message": "m", "type": "t", "param": None, "code": 500}}}
    )


def test_streamed_response_events_match_their_schema(api: Server) -> None:
    doc = fetch_document(api)
    validator = event_validator(doc, "/v1/responses")
    r = httpx.post(
        api.url("/v1/responses"),
        json={"model": MODEL_NAME, "input": "Hello there", "stream": True, "max_output_tokens": 4},
        timeout=30,
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/event-stream"
    events = sse_data(r)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.incomplete", names
    assert "response.output_text.delta" in names and "response.output_item.done" in names, names
    for i, event in enumerate(events):
        data = json.loads(event[1])
        assert data["type"] == event[0] and data["sequence_number"] == i
        errors = [e.message for e in validator.iter_errors(decoded(event))]
        assert not errors, f"{event}: {errors}"
    # An event whose data names another type, or a response object missing its output, is refused.
    created = json.loads(events[0][1])
    assert not validator.is_valid({"event": "response.completed", "data": created})
    del created["response"]["output"]
    assert not validator.is_valid({"event": "response.created", "data": created})
