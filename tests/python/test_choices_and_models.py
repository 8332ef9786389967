"""`n` choices per prompt and `GET /v1/models/{id}`, with the official openai client against the
echo engine (every choice echoes its prompt, so each choice's text is known)."""

from __future__ import annotations

from collections import defaultdict

import httpx
import openai
import pytest

from support import MODEL_NAME

MESSAGES = [{"role": "user", "content": "Name three colours."}]


def test_chat_n_returns_n_choices_and_counts_the_prompt_once(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES)
    r = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    for choice in r.choices:
        assert choice.message.content == one.choices[0].message.content
        assert choice.finish_reason == "stop"
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens == 3 * one.usage.completion_tokens


def test_streamed_chat_n_interleaves_choices_by_index(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES)
    texts: dict[int, str] = defaultdict(str)
    finishes: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        n=3,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
    assert sorted(texts) == [0, 1, 2]
    assert all(t == one.choices[0].message.content for t in texts.values())
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert usage is not None
    assert usage.prompt_tokens == one.usage.prompt_tokens
    assert usage.completion_tokens == 3 * one.usage.completion_tokens


def test_completions_n_orders_choices_prompt_by_prompt(client: openai.OpenAI) -> None:
    prompts = ["first prompt", "second one"]
    r = client.completions.create(model=MODEL_NAME, prompt=prompts, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == [prompts[0], prompts[0], prompts[1], prompts[1]]
    prompt_tokens = sum(
        client.completions.create(model=MODEL_NAME, prompt=p).usage.prompt_tokens
        for p in prompts
    )
    assert r.usage.prompt_tokens == prompt_tokens
    assert r.usage.completion_tokens == 2 * prompt_tokens


@pytest.mark.parametrize("n", [0, -1, 129])
def test_out_of_range_n_is_a_400_naming_n(client: openai.OpenAI, n: int) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, n=n)
    assert e.value.body["param"] == "n"


def test_retrieve_a_served_model(client: openai.OpenAI) -> None:
    listed = client.models.list().data
    model = client.models.retrieve(MODEL_NAME)
    assert model.id == MODEL_NAME
    assert model.object == "model"
    assert model.owned_by == "switchyard"
    assert [m.id for m in listed] == [MODEL_NAME]
    # vLLM's extension: the context length clients size prompts by.
    assert model.model_extra["max_model_len"] > 0


def test_retrieve_an_unknown_model_is_404(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"
    # A model id with slashes reaches the handler whole rather than a route miss.
    r = http.get("/v1/models/org/no-such-model")
    assert r.status_code == 404
    assert "org/no-such-model" in r.json()["error"]["message"]
