"""POST /v1/responses (OpenAI's Responses API) with the official openai client, on the echo
engine: the answer replays the chat prompt the request maps to, so the mapping is visible."""

from __future__ import annotations

from typing import Callable

import httpx
import openai
import pytest

from support import MODEL_NAME, Server, make_openai


def test_unary_response_is_one_message_of_output_text(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=MODEL_NAME, input="What is 2+2?", instructions="Answer briefly."
    )
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert len(r.output) == 1
    message = r.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    # The echo engine returns the rendered chat prompt: instructions became the system message.
    text = r.output_text
    assert "Answer briefly." in text and "What is 2+2?" in text
    assert text.index("Answer briefly.") < text.index("What is 2+2?")
    assert r.usage.input_tokens > 0
    assert r.usage.output_tokens == r.usage.input_tokens  # echo: one output token per prompt token
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_input_items_and_max_output_tokens(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=MODEL_NAME,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"role": "assistant", "content": "second"},
            {"role": "user", "content": "third"},
        ],
        max_output_tokens=4,
    )
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 4


def test_streamed_events_arrive_in_order_and_spell_the_unary_text(
    client: openai.OpenAI,
) -> None:
    unary = client.responses.create(model=MODEL_NAME, input="Stream me.")
    events = list(client.responses.create(model=MODEL_NAME, input="Stream me.", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == unary.output_text
    assert events[-4].text == unary.output_text
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == unary.output_text
    assert final.usage.output_tokens == unary.usage.output_tokens


def test_stream_helper_collects_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL_NAME, input="helper") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    assert "helper" in text


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"max_output_tokens": -1}, "max_output_tokens"),
    ],
)
def test_what_cannot_be_served_is_a_400(http: httpx.Client, extra: dict, param: str) -> None:
    r = http.post("/v1/responses", json={"model": MODEL_NAME, "input": "x", **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")


def test_a_tool_call_becomes_a_function_call_item(client: openai.OpenAI) -> None:
    import json

    call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    prompt = f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
    r = client.responses.create(model=MODEL_NAME, input=prompt, tools=tools)
    calls = [item for item in r.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == call["arguments"]
    assert calls[0].call_id.startswith("call_")
    events = list(client.responses.create(model=MODEL_NAME, input=prompt, tools=tools, stream=True))
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in done] == ["message", "function_call"]
    assert json.loads(done[1].arguments) == call["arguments"]
    assert events[-1].response.output[1].name == "get_weather"
    # The call streams as its own item: added, argument deltas that spell its arguments, done.
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type) for e in added] == [(0, "message"), (1, "function_call")]
    pieces = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert pieces and all(e.output_index == 1 and e.item_id == done[1].id for e in pieces)
    assert "".join(e.delta for e in pieces) == done[1].arguments


@pytest.fixture(scope="module")
def reasoning_server(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server("responses-reasoning", ["--reasoning-parser", "deepseek_r1"], workers=1)


def test_reasoning_streams_as_its_own_item_before_the_message(reasoning_server: Server) -> None:
    client = make_openai(reasoning_server)
    prompt = "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4."
    try:
        unary = client.responses.create(model=MODEL_NAME, input=prompt)
        events = list(client.responses.create(model=MODEL_NAME, input=prompt, stream=True))
    finally:
        client.close()
    assert [item.type for item in unary.output] == ["reasoning", "message"]
    reasoning = unary.output[0].content[0].text
    assert "Let me see: 2+2." in reasoning
    assert "It is 4." in unary.output_text and "2+2" not in unary.output_text
    added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
    assert added == [(0, "reasoning"), (1, "message")]
    thought = [e for e in events if e.type == "response.reasoning_text.delta"]
    text = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in thought) == reasoning
    assert "".join(e.delta for e in text) == unary.output_text
    assert all(e.output_index == 0 for e in thought) and all(e.output_index == 1 for e in text)
    # Every reasoning delta comes before the first text delta.
    assert max(e.sequence_number for e in thought) < min(e.sequence_number for e in text)
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
