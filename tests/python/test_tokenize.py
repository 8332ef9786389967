"""`POST /tokenize` and `POST /detokenize` (vLLM's extensions), checked against what the server
really sends to its engine: the echo engine returns exactly the prompt's token ids."""

from __future__ import annotations

import httpx
import openai
import pytest

from support import MODEL_NAME

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Count to three."},
]


def test_chat_tokenize_counts_the_prompt_a_chat_completion_sends(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    r = http.post("/tokenize", json={"model": MODEL_NAME, "messages": MESSAGES})
    assert r.status_code == 200, r.text
    body = r.json()
    chat = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=1)
    assert body["count"] == len(body["tokens"]) == chat.usage.prompt_tokens
    assert body["max_model_len"] == client.models.retrieve(MODEL_NAME).model_extra["max_model_len"]
    # The echo engine's completion of those token ids replays the rendered prompt itself.
    text = http.post("/detokenize", json={"model": MODEL_NAME, "tokens": body["tokens"]}).json()
    assert text["prompt"].startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert text["prompt"].endswith("<|im_start|>assistant\n")


def test_generation_prompt_can_be_left_out(http: httpx.Client) -> None:
    with_prompt = http.post("/tokenize", json={"messages": MESSAGES}).json()
    without = http.post(
        "/tokenize", json={"messages": MESSAGES, "add_generation_prompt": False}
    ).json()
    assert without["count"] < with_prompt["count"]
    assert with_prompt["tokens"][: without["count"]] == without["tokens"]


def test_prompt_tokenize_round_trips_and_matches_completion_usage(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    prompt = "Tokenize me: 12345, naïve café, \t  spaces"
    body = http.post(
        "/tokenize", json={"model": MODEL_NAME, "prompt": prompt, "return_token_strs": True}
    ).json()
    assert body["count"] == client.completions.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=1
    ).usage.prompt_tokens
    assert len(body["token_strs"]) == body["count"]
    assert http.post("/detokenize", json={"tokens": body["tokens"]}).json()["prompt"] == prompt
    # The same ids as a completion prompt echo the same text.
    echoed = client.completions.create(model=MODEL_NAME, prompt=body["tokens"])
    assert echoed.choices[0].text == prompt


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/tokenize", {}, "prompt"),
        ("/tokenize", {"prompt": "x", "messages": MESSAGES}, "messages"),
        ("/tokenize", {"messages": []}, "messages"),
        ("/detokenize", {"tokens": [10**9]}, "tokens"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(
    http: httpx.Client, path: str, body: dict, param: str
) -> None:
    r = http.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_unknown_model_is_404(http: httpx.Client) -> None:
    r = http.post("/tokenize", json={"model": "nope", "prompt": "x"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_non_integer_tokens_are_a_400(http: httpx.Client) -> None:
    r = http.post("/detokenize", json={"tokens": ["a"]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"
