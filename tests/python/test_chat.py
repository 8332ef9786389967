"""POST /v1/chat/completions against the echo engine: the reply is the whole prompt as the Qwen3
chat template renders it, ending with the generation prompt. Special tokens (`<|im_start|>`,
`<|im_end|>`) are dropped from the text by default, as vLLM does; with the vLLM extension
`skip_special_tokens: false` the reply is the rendered prompt byte for byte."""

from __future__ import annotations

import openai
import pytest

from support import MODEL_NAME, qwen3_chat_prompt, without_special_tokens

GENERATION_PROMPT = "<|im_start|>assistant\n"
SHOW_SPECIAL = {"skip_special_tokens": False}

CONVERSATIONS = {
    "one_user_turn": [{"role": "user", "content": "Hello! How are you today?"}],
    "system_and_user": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colours."},
    ],
    "multi_turn": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "multibyte": [{"role": "user", "content": "你好 👋🌍 café 👨‍👩‍👧‍👦 Ångström"}],
}


def stream_chat(client: openai.OpenAI, **kwargs) -> tuple[str, list]:
    chunks = list(client.chat.completions.create(model=MODEL_NAME, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


@pytest.mark.parametrize("key", sorted(CONVERSATIONS))
def test_unary_chat_echoes_the_templated_prompt(client: openai.OpenAI, key: str) -> None:
    messages = CONVERSATIONS[key]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-"), r.id
    assert r.model == MODEL_NAME
    assert isinstance(r.created, int) and r.created > 1_600_000_000
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    content = choice.message.content
    assert messages[-1]["content"] in content
    assert content.endswith("\nassistant\n"), repr(content[-60:])
    assert "<|im_start|>" not in content and "<|im_end|>" not in content
    assert content == without_special_tokens(qwen3_chat_prompt(messages))
    assert r.usage.completion_tokens == r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == 2 * r.usage.prompt_tokens


@pytest.mark.parametrize("key", sorted(CONVERSATIONS))
def test_unary_chat_with_special_tokens_is_the_exact_rendered_prompt(
    client: openai.OpenAI, key: str
) -> None:
    messages = CONVERSATIONS[key]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, extra_body=SHOW_SPECIAL)
    content = r.choices[0].message.content
    assert messages[-1]["content"] in content
    assert content.endswith(GENERATION_PROMPT), repr(content[-60:])
    # Byte-for-byte what transformers' apply_chat_template renders for this conversation.
    assert content == qwen3_chat_prompt(messages)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == r.usage.prompt_tokens


@pytest.mark.parametrize("show_special", [False, True], ids=["default", "special_tokens_shown"])
@pytest.mark.parametrize("key", sorted(CONVERSATIONS))
def test_streamed_chat_matches_unary(client: openai.OpenAI, key: str, show_special: bool) -> None:
    messages = CONVERSATIONS[key]
    extra = SHOW_SPECIAL if show_special else {}
    text, chunks = stream_chat(client, messages=messages, extra_body=extra)
    unary = client.chat.completions.create(model=MODEL_NAME, messages=messages, extra_body=extra)
    assert text == unary.choices[0].message.content
    rendered = qwen3_chat_prompt(messages)
    assert text == (rendered if show_special else without_special_tokens(rendered))
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.id == chunks[0].id and c.id.startswith("chatcmpl-")
        assert c.model == MODEL_NAME
        assert c.usage is None
        assert "\ufffd" not in (c.choices[0].delta.content or "")


def test_first_chunk_carries_the_role(client: openai.OpenAI) -> None:
    _, chunks = stream_chat(client, messages=CONVERSATIONS["one_user_turn"])
    assert chunks[0].choices[0].delta.role == "assistant"
    for c in chunks[1:]:
        assert c.choices[0].delta.role in (None, "assistant")


def test_finish_reason_only_on_last_content_chunk(client: openai.OpenAI) -> None:
    _, chunks = stream_chat(
        client, messages=CONVERSATIONS["system_and_user"], stream_options={"include_usage": True}
    )
    content_chunks = [c for c in chunks if c.choices]
    assert len(content_chunks) >= 2
    reasons = [c.choices[0].finish_reason for c in content_chunks]
    assert reasons[-1] == "stop"
    assert all(r is None for r in reasons[:-1]), reasons
    # The usage chunk comes after the finishing chunk.
    assert chunks[-1].choices == []


def test_include_usage(client: openai.OpenAI) -> None:
    messages = CONVERSATIONS["multi_turn"]
    text, chunks = stream_chat(
        client, messages=messages, stream_options={"include_usage": True}
    )
    assert text == without_special_tokens(qwen3_chat_prompt(messages))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == 2 * last.usage.prompt_tokens
    for c in chunks[:-1]:
        assert c.usage is None
        assert len(c.choices) == 1
    unary = client.chat.completions.create(model=MODEL_NAME, messages=messages)
    assert unary.usage.prompt_tokens == last.usage.prompt_tokens


def test_max_tokens_gives_length_and_exact_count(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=3)
    # The first three tokens of the rendered prompt: <|im_start|> (not shown), "user", "\n".
    assert r.choices[0].message.content == "user\n"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    text, chunks = stream_chat(
        client,
        messages=messages,
        max_completion_tokens=4,
        stream_options={"include_usage": True},
        extra_body=SHOW_SPECIAL,
    )
    assert text == "<|im_start|>user\nHello"
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 4


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL_NAME in ids
    model = next(m for m in models.data if m.id == MODEL_NAME)
    assert model.object == "model"
