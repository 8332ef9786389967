"""`--engine openai`: a Switchyard frontend whose worker forwards token-id requests to another
OpenAI-compatible server (here `switchyard serve --engine echo`, which streams text back, so the
worker re-tokenizes it). The official client must see exactly the echo of its prompt."""

from __future__ import annotations

import openai
import pytest

from support import MODEL_NAME

TEXTS = [
    "The quick brown fox jumps over the lazy dog. 0123456789 !?#$%&()[]{}",
    "你好，世界！今天天气很好。東京は晴れです。안녕하세요",
    "👋🌍 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and 🤖",
    "line one\nline two\n\n\ttabbed  double  spaces  ",
]


@pytest.fixture(scope="module")
def chained(spawn_server):
    echo = spawn_server("upstream-echo", workers=1)
    front = spawn_server(
        "upstream-front",
        ["--upstream", echo.base_url, "--upstream-model", MODEL_NAME],
        engine="openai",
    )
    with openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("prompt", TEXTS)
def test_text_through_the_upstream_is_exact(chained: openai.OpenAI, prompt: str) -> None:
    r = chained.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=400)
    assert r.choices[0].text == prompt
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].text
        for c in chained.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=400, stream=True)
        if c.choices
    )
    assert streamed == prompt


def test_chat_through_the_upstream(chained: openai.OpenAI) -> None:
    r = chained.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "hello there"}], max_tokens=400
    )
    # The echo engine returns the templated prompt; its user text is in there.
    assert "hello there" in r.choices[0].message.content
    assert r.usage.completion_tokens > 0
