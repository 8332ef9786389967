"""Stop strings end generation with finish_reason "stop" and are hidden from the output; in a
stream no part of a stop string may reach the client, even when it spans several tokens."""

from __future__ import annotations

import openai
import pytest

from support import MODEL_NAME

SENTENCE = "The quick brown fox jumps over the lazy dog."

# (id, prompt, stop, expected text). Qwen3 tokens of SENTENCE:
# The| quick| brown| fox| jumps| over| the| lazy| dog|.
CASES = [
    ("inside_one_token", SENTENCE, "fox", "The quick brown "),
    ("whole_token", SENTENCE, " fox", "The quick brown"),
    ("multi_word_across_tokens", SENTENCE, "jumps over", "The quick brown fox "),
    ("starts_and_ends_mid_token", SENTENCE, "own fo", "The quick br"),
    ("first_of_several", SENTENCE, ["zzz", "lazy", "quick"], "The "),
    ("at_the_very_end", SENTENCE, "dog.", "The quick brown fox jumps over the lazy "),
    ("multibyte", "你好，世界！今天天气很好。", "世界", "你好，"),
    ("emoji_spanning_tokens", "wave 👨‍👩‍👧‍👦 family", "👩‍👧", "wave 👨‍"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "prompt", "stop", "expected"), CASES, ids=IDS)
def test_unary_completion_stops_before_stop_string(
    client: openai.OpenAI, name: str, prompt: str, stop, expected: str
) -> None:
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, stop=stop)
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("name", "prompt", "stop", "expected"), CASES, ids=IDS)
def test_streamed_completion_never_leaks_the_stop_string(
    client: openai.OpenAI, name: str, prompt: str, stop, expected: str
) -> None:
    chunks = list(
        client.completions.create(model=MODEL_NAME, prompt=prompt, stop=stop, stream=True)
    )
    pieces = [c.choices[0].text for c in chunks if c.choices]
    # Every prefix the client has seen is a prefix of the expected text: nothing was sent and
    # then (silently) taken back.
    seen = ""
    for piece in pieces:
        seen += piece
        assert expected.startswith(seen), f"leaked past the stop: {seen!r}"
    assert seen == expected
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "stop"
    assert all(f is None for f in finishing[:-1])


def test_stop_string_that_never_matches(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL_NAME, prompt=SENTENCE, stop=["cat", "xyz"])
    assert r.choices[0].text == SENTENCE
    assert r.choices[0].finish_reason == "stop"


def test_chat_stop_string(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Say Hello there"}]
    expected = "user\nSay "
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, stop="Hello")
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME, messages=messages, stop=["Hello"], stream=True
        )
    )
    seen = ""
    for c in chunks:
        if c.choices:
            seen += c.choices[0].delta.content or ""
            assert expected.startswith(seen), f"leaked past the stop: {seen!r}"
    assert seen == expected
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"


def test_stop_string_spanning_chat_template_tokens(client: openai.OpenAI) -> None:
    # "<|im_end|>\n<|im" spans a special token, a newline and part of the next special token.
    messages = [{"role": "user", "content": "abc"}]
    r = client.chat.completions.create(
        model=MODEL_NAME,
        messages=messages,
        stop="c<|im_end|>\n<|im",
        extra_body={"skip_special_tokens": False},
    )
    assert r.choices[0].message.content == "<|im_start|>user\nab"
    assert r.choices[0].finish_reason == "stop"
