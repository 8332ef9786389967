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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"17": -100}),
        ("response_format", {"type": "json_object"}),
    ],
)
def test_constraints_are_forwarded_to_the_upstream(
    chained: openai.OpenAI, field: str, value: dict
) -> None:
    # The upstream worker says it honours both, so the front door sends them on; the echo
    # server behind it cannot, and its 400 (naming its own engine) comes back to the client.
    with pytest.raises(openai.BadRequestError) as e:
        chained.completions.create(
            model=MODEL_NAME, prompt="hello", max_tokens=2, extra_body={field: value}
        )
    assert field in e.value.body["message"]
    assert "echo" in e.value.body["message"]


def test_a_forced_tool_call_reaches_the_upstream_as_a_json_schema(chained: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object"}},
        }
    ]
    with pytest.raises(openai.BadRequestError) as e:
        chained.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "call f"}],
            tools=tools,
            tool_choice="required",
            max_tokens=4,
        )
    # The echo server behind cannot decode under the call schema, and says so.
    assert "response_format" in e.value.body["message"]
    assert "echo" in e.value.body["message"]
