"""Tool calls and reasoning with the official openai client, on the echo engine.

The echo engine replays the rendered chat prompt, so a user message written in the model's own
tool-call format (Qwen3: hermes, `<tool_call>{json}</tool_call>`) comes back as model output that
the server must parse into `tool_calls`. The Qwen3 template's tool instructions also carry an
example `<tool_call>` whose body is not JSON: that one must come back as plain text.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Callable

import openai
import pytest

from support import MODEL_NAME, Server, make_openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
CALL = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
CALL_MESSAGES = [
    {"role": "user", "content": f"<tool_call>\n{json.dumps(CALL)}\n</tool_call>"},
]


def test_unary_tool_call_is_parsed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == CALL["arguments"]
    # The template's own example call is not JSON: it stays in the text, unchanged.
    assert "<tool_call>\n{\"name\": <function-name>" in choice.message.content
    assert "get_weather\", \"arguments\": {\"city\": \"Paris\"" not in choice.message.content


def test_streamed_tool_call_deltas_add_up_to_the_unary_call(client: openai.OpenAI) -> None:
    unary = client.chat.completions.create(
        model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS
    ).choices[0]
    content = ""
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    arguments: dict[int, str] = defaultdict(str)
    finish = None
    for chunk in client.chat.completions.create(
        model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS, stream=True
    ):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                if call.id is not None:
                    ids[call.index] = call.id
                    names[call.index] = call.function.name
                arguments[call.index] += call.function.arguments or ""
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    assert finish == "tool_calls"
    assert content == unary.message.content
    assert names == {0: "get_weather"}
    assert ids[0].startswith("call_")
    assert arguments[0] == unary.message.tool_calls[0].function.arguments
    assert json.loads(arguments[0]) == CALL["arguments"]


def test_tool_choice_none_leaves_the_text_alone(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS, tool_choice="none"
    )
    assert r.choices[0].finish_reason == "stop"
    assert not r.choices[0].message.tool_calls
    assert "\"city\": \"Paris\"" in r.choices[0].message.content


def test_without_tools_nothing_is_parsed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL_NAME, messages=CALL_MESSAGES)
    assert not r.choices[0].message.tool_calls
    assert "\"city\": \"Paris\"" in r.choices[0].message.content


def test_a_broken_call_comes_back_as_text(client: openai.OpenAI) -> None:
    # Broken before the call is certain (its name and first argument key are known): released
    # as text exactly as written. (A call that breaks later has already been streamed.)
    broken = "<tool_call>\n{\"name\": \"get_weather\", oops</tool_call>"
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": broken}], tools=TOOLS
    )
    assert r.choices[0].finish_reason == "stop"
    assert not r.choices[0].message.tool_calls
    assert broken in r.choices[0].message.content


def test_assistant_tool_calls_and_tool_results_render_in_history(client: openai.OpenAI) -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps(CALL["arguments"])},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    r = client.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS)
    # Qwen3 renders the earlier call as a <tool_call> and the result as <tool_response>; the
    # echoed history therefore holds one parsed call and the tool's answer as text.
    message = r.choices[0].message
    assert [c.function.name for c in message.tool_calls] == ["get_weather"]
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in message.content


def test_unknown_tool_choice_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS, tool_choice="sometimes"
        )
    assert e.value.body["param"] == "tool_choice"


@pytest.mark.parametrize(
    "tool_choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
)
def test_forcing_calls_needs_structured_output_which_echo_lacks(
    client: openai.OpenAI, tool_choice
) -> None:
    # A forced call is decoded under a JSON schema; the echo engine cannot, so it is a clear
    # 400 rather than an answer that may call nothing.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME, messages=CALL_MESSAGES, tools=TOOLS, tool_choice=tool_choice
        )
    assert e.value.body["param"] == "tool_choice"
    assert "echo" in e.value.body["message"]


def test_forcing_an_undeclared_function_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=CALL_MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch_rockets"}},
        )
    assert e.value.body["param"] == "tool_choice"
    assert "launch_rockets" in e.value.body["message"]


# ---- reasoning ----

THINKING = [{"role": "user", "content": "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4."}]


@pytest.fixture(scope="module")
def reasoning_server(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server("reasoning", ["--reasoning-parser", "deepseek_r1"], workers=1)


def test_think_block_goes_to_reasoning_content(reasoning_server: Server) -> None:
    client = make_openai(reasoning_server)
    try:
        r = client.chat.completions.create(model=MODEL_NAME, messages=THINKING)
        reasoning = ""
        content = ""
        for chunk in client.chat.completions.create(
            model=MODEL_NAME, messages=THINKING, stream=True
        ):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                reasoning += getattr(choice.delta, "reasoning_content", None) or ""
    finally:
        client.close()
    message = r.choices[0].message
    # deepseek_r1: everything up to </think> is reasoning (the echo starts with the template's
    # own text, which comes before the user's think block).
    assert "Let me see: 2+2." in message.reasoning_content
    assert "</think>" not in message.content and "It is 4." in message.content
    assert reasoning == message.reasoning_content
    assert content == message.content
