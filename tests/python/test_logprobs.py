"""logprobs / top_logprobs with the official openai client.

The echo engine is certain of every token it returns (log-probability 0) and names the prompt's
other tokens as impossible alternatives (-9999, vLLM's stand-in for minus infinity), so the shape
and the values are both known. The mocker reports a real, normalised distribution.
"""

from __future__ import annotations

import math
from typing import Callable

import httpx
import openai
import pytest

from support import MODEL_NAME, Server, make_openai

MESSAGES = [{"role": "user", "content": "Say something short."}]
PROMPT = "Hello world, logprobs are here!"


def test_chat_logprobs_have_one_entry_per_completion_token(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob == 0.0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 2
        # Most likely first: the echoed token itself, then an impossible alternative.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == 0.0
        assert entry.top_logprobs[1].logprob == -9999.0
        assert entry.top_logprobs[1].token != entry.token


def test_chat_without_logprobs_reports_none(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES)
    assert r.choices[0].logprobs is None
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, logprobs=False)
    assert r.choices[0].logprobs is None


def test_chat_logprobs_true_alone_has_no_alternatives(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, logprobs=True)
    content = r.choices[0].logprobs.content
    assert content and all(e.top_logprobs == [] for e in content)


def test_streamed_chat_logprobs_match_unary(client: openai.OpenAI) -> None:
    unary = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, logprobs=True, top_logprobs=1
    )
    streamed = []
    text = ""
    for chunk in client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, logprobs=True, top_logprobs=1, stream=True
    ):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None:
                streamed.extend(choice.logprobs.content)
    assert text == unary.choices[0].message.content
    assert [(e.token, e.logprob) for e in streamed] == [
        (e.token, e.logprob) for e in unary.choices[0].logprobs.content
    ]


def test_completion_logprobs_are_parallel_arrays_with_offsets(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, logprobs=3)
    choice = r.choices[0]
    lp = choice.logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
    assert len(lp.text_offset) == n
    # Plain ASCII: each token's text is whole, so the tokens spell the choice's text and the
    # offsets are where each starts.
    assert "".join(lp.tokens) == choice.text == PROMPT
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n)]
    assert all(v == 0.0 for v in lp.token_logprobs)
    for token, top in zip(lp.tokens, lp.top_logprobs):
        assert 1 <= len(top) <= 3
        assert top[token] == 0.0


def test_streamed_completion_offsets_continue_across_chunks(client: openai.OpenAI) -> None:
    tokens: list[str] = []
    offsets: list[int] = []
    text = ""
    for chunk in client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, logprobs=0, stream=True
    ):
        for choice in chunk.choices:
            text += choice.text
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens
                offsets += choice.logprobs.text_offset
    assert text == PROMPT
    assert "".join(tokens) == PROMPT
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ],
)
def test_bad_chat_logprobs_are_400s_naming_the_field(
    http: httpx.Client, body: dict, param: str
) -> None:
    r = http.post(
        "/v1/chat/completions", json={"model": MODEL_NAME, "messages": MESSAGES, **body}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("value", [-1, 21])
def test_bad_completion_logprobs_are_400s(http: httpx.Client, value: int) -> None:
    r = http.post(
        "/v1/completions", json={"model": MODEL_NAME, "prompt": PROMPT, "logprobs": value}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "logprobs"


@pytest.fixture(scope="module")
def mocker(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server(
        "logprobs-mocker",
        ["--speedup-ratio", "0", "--num-gpu-blocks", "1024"],
        engine="mocker",
        workers=1,
    )


def test_mocker_logprobs_are_a_sorted_distribution(mocker: Server) -> None:
    client = make_openai(mocker)
    try:
        r = client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            max_tokens=12,
            logprobs=True,
            top_logprobs=5,
            seed=7,
        )
        again = client.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, max_tokens=12, seed=7
        )
    finally:
        client.close()
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 12
    # Asking for logprobs never changes what is sampled.
    assert r.choices[0].message.content == again.choices[0].message.content
    for entry in content:
        assert entry.logprob < 0
        values = [t.logprob for t in entry.top_logprobs]
        assert len(values) == 5
        assert values == sorted(values, reverse=True)
        assert entry.top_logprobs[0].logprob == entry.logprob
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
