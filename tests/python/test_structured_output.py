"""Structured output and `logit_bias` on the CPU engine, through the official `openai` client.

One `serve --engine cpu` with SmolLM2-135M-Instruct, greedy decoding, small `max_tokens`:
`response_format` (json_object, json_schema, `beta.chat.completions.parse` with a pydantic
model), forced tool calls (named and `required`), `logit_bias` banning and forcing a token, a
stream, and the 400 for schemas outside the supported subset (unary and streamed: the frontend
checks the schema before any response starts). Every answer is parsed and validated against
its schema with `jsonschema`, an implementation independent of the server's.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Callable, Iterator, Optional

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from support import SMOLLM2_GGUF, Server, make_openai

MODEL = "smollm2"

CAT_SCHEMA = {
    "type": "object",
    "properties": {
        # Shorter than the name the model writes unconstrained ("Frozen"): the bound must bite.
        "name": {"type": "string", "maxLength": 4},
        "color": {"type": "string", "enum": ["black", "white", "orange"]},
    },
    "required": ["name", "color"],
    "additionalProperties": False,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def cpu(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server(
        "structured-cpu",
        ["--cpu-threads", "1"],
        engine="cpu",
        workers=1,
        model_path=SMOLLM2_GGUF,
        model_name=MODEL,
    )


@pytest.fixture(scope="module")
def client(cpu: Server) -> Iterator[openai.OpenAI]:
    c = make_openai(cpu)
    yield c
    c.close()


def ask(client: openai.OpenAI, question: str, max_tokens: int = 32, **kwargs):
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=max_tokens,
        **kwargs,
    )


def test_json_object_is_a_json_object(client: openai.OpenAI) -> None:
    r = ask(
        client,
        'Reply with a JSON object with the key "answer": what is the capital of France?',
        response_format={"type": "json_object"},
    )
    choice = r.choices[0]
    assert isinstance(json.loads(choice.message.content), dict), choice.message.content
    assert choice.finish_reason == "stop"


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    r = ask(
        client,
        "Give a cat's name and color as JSON.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "cat", "schema": CAT_SCHEMA, "strict": True},
        },
    )
    choice = r.choices[0]
    jsonschema.validate(json.loads(choice.message.content), CAT_SCHEMA)
    assert choice.finish_reason == "stop"


def test_json_schema_streamed_is_the_unary_answer(client: openai.OpenAI) -> None:
    args = dict(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "cat", "schema": CAT_SCHEMA, "strict": True},
        },
    )
    unary = ask(client, "Give a cat's name and color as JSON.", **args).choices[0].message.content
    chunks = list(ask(client, "Give a cat's name and color as JSON.", stream=True, **args))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == unary
    jsonschema.validate(json.loads(text), CAT_SCHEMA)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


class Color(str, Enum):
    black = "black"
    white = "white"
    orange = "orange"


class Cat(BaseModel):
    name: str = Field(description="The cat's name", max_length=12)
    age: int
    color: Color
    indoor: Optional[bool]


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    # The client sends the model's strict JSON schema (title, description, $defs/$ref for
    # the enum, anyOf with null, additionalProperties false) and parses the answer back.
    r = client.beta.chat.completions.parse(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Describe a cat: name, age, color, indoor, as JSON."}
        ],
        response_format=Cat,
        temperature=0,
        max_tokens=48,
    )
    choice = r.choices[0]
    assert isinstance(choice.message.parsed, Cat), choice.message.content
    assert len(choice.message.parsed.name) <= 12
    assert choice.finish_reason == "stop"


def test_completions_take_response_format_too(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=MODEL,
        prompt="A cat described as JSON:",
        temperature=0,
        max_tokens=32,
        extra_body={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "cat", "schema": CAT_SCHEMA},
            }
        },
    )
    jsonschema.validate(json.loads(r.choices[0].text), CAT_SCHEMA)


def token_ids(cpu: Server, text: str) -> list[int]:
    r = httpx.post(cpu.url("/tokenize"), json={"model": MODEL, "prompt": text}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def test_logit_bias_bans_and_forces_a_token(client: openai.OpenAI, cpu: Server) -> None:
    question = "What is the capital of France?"
    first = ask(client, question, max_tokens=1).choices[0].message.content
    [first_id] = token_ids(cpu, first)
    banned = ask(client, question, max_tokens=1, logit_bias={str(first_id): -100})
    assert banned.choices[0].message.content != first
    banana = token_ids(cpu, "banana")[0]
    forced = ask(client, question, max_tokens=1, logit_bias={str(banana): 100})
    assert token_ids(cpu, forced.choices[0].message.content) == [banana]


def test_named_tool_choice_calls_that_function(client: openai.OpenAI) -> None:
    r = ask(
        client,
        "What is the weather in Paris?",
        max_tokens=40,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = r.choices[0]
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])
    # OpenAI's convention for a forced named function (crates/parsers/src/forced.rs).
    assert choice.finish_reason == "stop"


def test_required_tool_choice_makes_calls(client: openai.OpenAI) -> None:
    r = ask(
        client,
        "What is the weather in Paris?",
        max_tokens=60,
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    choice = r.choices[0]
    assert choice.message.tool_calls, choice.message
    for call in choice.message.tool_calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(
            json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"]
        )
    assert choice.finish_reason == "tool_calls"


UNSUPPORTED = [
    ({"type": "string", "pattern": "^a"}, "pattern"),
    ({"type": "object", "properties": {"day": {"type": "string", "format": "date"}}}, "format"),
    ({"type": "array", "items": {"type": "integer", "minimum": 0}}, "minimum"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("schema, keyword", UNSUPPORTED)
def test_an_unsupported_schema_is_a_400(
    client: openai.OpenAI, schema: dict, keyword: str, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        ask(
            client,
            "x",
            max_tokens=4,
            stream=stream,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert e.value.body["param"] == "response_format"
    assert f"`{keyword}`" in e.value.body["message"], e.value.body


def test_a_tool_whose_parameters_are_unsupported_is_a_400(client: openai.OpenAI) -> None:
    tool = json.loads(json.dumps(WEATHER_TOOL))
    tool["function"]["parameters"]["properties"]["city"]["pattern"] = "^[A-Z]"
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            ask(client, "x", max_tokens=4, stream=stream, tools=[tool], tool_choice="required")
        assert e.value.body["param"] == "tools"
        assert "`pattern`" in e.value.body["message"], e.value.body


def test_an_invalid_schema_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        ask(
            client,
            "x",
            max_tokens=4,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "strng"}},
            },
        )
    assert "strng" in e.value.body["message"]
    # The server still serves.
    assert ask(client, "Hi", max_tokens=2).choices[0].message.content
