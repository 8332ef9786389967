"""`best_of`, `logit_bias` and `response_format` through the official `openai` client.

`best_of` is checked against the mocker, whose seeded candidates differ and report a real
distribution: the returned choices must be exactly the `n` candidates of highest cumulative
logprob among the `best_of` that the same seeds generate. `logit_bias` and `response_format`
need an engine that can honour them; the echo engine and the mocker cannot, so they answer a
400 naming the field (test_structured_output.py checks the CPU engine honouring them), and an
upstream worker forwards both to the server behind it.
"""

from __future__ import annotations

from typing import Callable

import openai
import pytest

from support import MODEL_NAME, Server, make_openai

PROMPT = "Tell me a story about a lighthouse keeper"


@pytest.fixture(scope="module")
def mocker(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server(
        "sampling-mocker",
        ["--speedup-ratio", "0", "--num-gpu-blocks", "1024"],
        engine="mocker",
        workers=1,
    )


def test_best_of_returns_the_candidates_of_highest_cumulative_logprob(mocker: Server) -> None:
    client = make_openai(mocker)
    try:
        # The same seeds generate the same candidates: choice j samples with seed + j.
        every = client.completions.create(
            model=MODEL_NAME, prompt=PROMPT, max_tokens=8, n=5, seed=11, logprobs=0
        )
        best = client.completions.create(
            model=MODEL_NAME, prompt=PROMPT, max_tokens=8, n=2, best_of=5, seed=11
        )
    finally:
        client.close()
    scores = [sum(c.logprobs.token_logprobs) for c in every.choices]
    assert len(set(scores)) > 1, "the mocker's candidates should differ"
    ranked = sorted(range(5), key=lambda j: (-scores[j], j))
    assert [c.text for c in best.choices] == [every.choices[j].text for j in ranked[:2]]
    assert [c.index for c in best.choices] == [0, 1]
    # The client did not ask for logprobs: ranking needed them, the answer does not carry them.
    assert all(c.logprobs is None for c in best.choices)
    # Every candidate was generated, and is billed, as OpenAI does.
    assert best.usage.completion_tokens == every.usage.completion_tokens == 5 * 8
    assert best.usage.prompt_tokens == every.usage.prompt_tokens


def test_best_of_with_a_batch_ranks_each_prompt_separately(mocker: Server) -> None:
    client = make_openai(mocker)
    try:
        r = client.completions.create(
            model=MODEL_NAME,
            prompt=[PROMPT, "A different prompt entirely"],
            max_tokens=4,
            best_of=3,
            seed=3,
            logprobs=1,
        )
    finally:
        client.close()
    assert [c.index for c in r.choices] == [0, 1]
    assert all(len(c.logprobs.tokens) == 4 for c in r.choices)
    assert r.usage.completion_tokens == 2 * 3 * 4


@pytest.mark.parametrize(
    "args",
    [
        {"best_of": 1, "n": 2},
        {"best_of": 0},
        {"best_of": 1000},
        {"best_of": 3, "stream": True},
    ],
)
def test_bad_best_of_is_a_400(client: openai.OpenAI, args: dict) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2, **args)
    assert e.value.body["param"] == "best_of"


def test_best_of_equal_to_n_streams(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=3, n=2, best_of=2, stream=True
    )
    indexes = {c.choices[0].index for c in stream if c.choices}
    assert indexes == {0, 1}


@pytest.mark.parametrize("engine", ["echo", "mocker"])
def test_logit_bias_without_engine_support_is_a_400(
    client: openai.OpenAI, mocker: Server, engine: str
) -> None:
    target = client if engine == "echo" else make_openai(mocker)
    try:
        with pytest.raises(openai.BadRequestError) as e:
            target.chat.completions.create(
                model=MODEL_NAME,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=2,
                logit_bias={"17": -100},
            )
    finally:
        if target is not client:
            target.close()
    assert e.value.body["param"] == "logit_bias"
    assert engine in e.value.body["message"]


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": {"type": "object"}},
        },
    ],
)
def test_response_format_without_engine_support_is_a_400(
    client: openai.OpenAI, response_format: dict
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            response_format=response_format,
        )
    assert e.value.body["param"] == "response_format"


def test_text_response_format_is_accepted(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
        response_format={"type": "text"},
    )
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "bias",
    [{"not-a-token": 1}, {"17": 101}, {"17": -100.5}, {"99999999": 1}],
)
def test_bad_logit_bias_is_a_400(client: openai.OpenAI, bias: dict) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(
            model=MODEL_NAME, prompt=PROMPT, max_tokens=2, logit_bias=bias
        )
    assert e.value.body["param"] == "logit_bias"


def test_unknown_response_format_type_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            response_format={"type": "yaml"},
        )
