"""POST /v1/completions against the echo engine: the completion of a text prompt is exactly the
prompt (Qwen3's tokenizer round-trips and adds no BOS)."""

from __future__ import annotations

import unicodedata

import openai
import pytest

from support import MODEL_NAME, read_sse, token_ids

TEXTS = {
    "ascii": "The quick brown fox jumps over the lazy dog. 0123456789 !?#$%&()[]{}",
    "cjk": "你好，世界！今天天气很好。東京は晴れです。안녕하세요",
    "emoji": "👋🌍 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and 🤖",
    "accents": "café naïve Ångström jalapeño façade Crème brûlée Øresund",
    "mixed_whitespace": "line one\nline two\n\n\ttabbed  double  spaces  ",
}


def stream_completion(client: openai.OpenAI, **kwargs) -> tuple[str, list]:
    chunks = list(client.completions.create(model=MODEL_NAME, stream=True, **kwargs))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    return text, chunks


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_unary_echo_is_exact(client: openai.OpenAI, key: str) -> None:
    prompt = TEXTS[key]
    assert unicodedata.normalize("NFC", prompt) == prompt  # the tokenizer normalizes to NFC
    r = client.completions.create(model=MODEL_NAME, prompt=prompt)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-"), r.id
    assert r.model == MODEL_NAME
    assert isinstance(r.created, int) and r.created > 1_600_000_000
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.text == prompt
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0
    # Echo returns every prompt token.
    assert r.usage.completion_tokens == r.usage.prompt_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_streamed_echo_is_exact_and_matches_unary(client: openai.OpenAI, key: str) -> None:
    prompt = TEXTS[key]
    text, chunks = stream_completion(client, prompt=prompt)
    assert text == prompt
    for c in chunks:
        # Incremental detokenization must never emit a broken UTF-8 sequence.
        assert "\ufffd" not in c.choices[0].text
        assert c.id == chunks[0].id and c.id.startswith("cmpl-")
        assert c.object == "text_completion"
        assert c.model == MODEL_NAME
        assert c.usage is None  # no include_usage → no usage anywhere
    unary = client.completions.create(model=MODEL_NAME, prompt=prompt)
    assert unary.choices[0].text == text


def test_finish_reason_only_on_last_chunk(client: openai.OpenAI) -> None:
    _, chunks = stream_completion(client, prompt=TEXTS["ascii"])
    assert len(chunks) >= 2
    reasons = [c.choices[0].finish_reason for c in chunks]
    assert reasons[-1] == "stop"
    assert all(r is None for r in reasons[:-1]), reasons


def test_max_tokens_stops_with_length(client: openai.OpenAI) -> None:
    ids = token_ids(["The", " quick", " brown", " fox", " jumps", " over"])
    r = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=3)
    assert r.choices[0].text == "The quick brown"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert r.usage.prompt_tokens == len(ids)


def test_max_tokens_on_a_text_prompt(client: openai.OpenAI) -> None:
    prompt = TEXTS["cjk"]
    full = client.completions.create(model=MODEL_NAME, prompt=prompt)
    n = full.usage.prompt_tokens
    assert n > 4
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=n - 2)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == n - 2
    assert prompt.startswith(r.choices[0].text) and r.choices[0].text != prompt


def test_streamed_max_tokens_counts_exactly(client: openai.OpenAI) -> None:
    ids = token_ids(["Hello", ",", " world", " hello", " world"])
    text, chunks = stream_completion(
        client, prompt=ids, max_tokens=2, stream_options={"include_usage": True}
    )
    assert text == "Hello,"
    content = [c for c in chunks if c.choices]
    assert content[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert chunks[-1].usage.prompt_tokens == 5


def test_batch_of_strings(client: openai.OpenAI) -> None:
    prompts = [TEXTS["ascii"], TEXTS["cjk"], TEXTS["emoji"], "x"]
    r = client.completions.create(model=MODEL_NAME, prompt=prompts)
    assert sorted(c.index for c in r.choices) == list(range(len(prompts)))
    for c in r.choices:
        assert c.text == prompts[c.index]
        assert c.finish_reason == "stop"
    assert r.usage.completion_tokens == r.usage.prompt_tokens


def test_streamed_batch_of_strings(client: openai.OpenAI) -> None:
    prompts = [TEXTS["accents"], TEXTS["emoji"], "short"]
    _, chunks = stream_completion(client, prompt=prompts)
    texts = {i: "" for i in range(len(prompts))}
    finish = {}
    for c in chunks:
        for choice in c.choices:
            assert choice.index in texts, choice.index
            assert choice.index not in finish, "text after this choice's finish_reason"
            texts[choice.index] += choice.text
            if choice.finish_reason is not None:
                finish[choice.index] = choice.finish_reason
    assert [texts[i] for i in range(len(prompts))] == prompts
    assert finish == {i: "stop" for i in range(len(prompts))}


def test_token_id_prompt(client: openai.OpenAI) -> None:
    ids = token_ids(["Hello", ",", " world", "!"])
    r = client.completions.create(model=MODEL_NAME, prompt=ids)
    assert r.choices[0].text == "Hello, world!"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 4


def test_batch_of_token_id_lists(client: openai.OpenAI) -> None:
    batch = [
        token_ids(["Hello", ",", " world"]),
        token_ids(["The", " quick", " brown", " fox"]),
    ]
    r = client.completions.create(model=MODEL_NAME, prompt=batch)
    texts = {c.index: c.text for c in r.choices}
    assert texts == {0: "Hello, world", 1: "The quick brown fox"}
    assert r.usage.prompt_tokens == 7
    assert r.usage.completion_tokens == 7


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI) -> None:
    prompt = TEXTS["accents"]
    text, chunks = stream_completion(client, prompt=prompt, stream_options={"include_usage": True})
    assert text == prompt
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == 2 * last.usage.prompt_tokens
    for c in chunks[:-1]:
        assert c.usage is None
        assert len(c.choices) == 1
    unary = client.completions.create(model=MODEL_NAME, prompt=prompt)
    assert unary.usage.prompt_tokens == last.usage.prompt_tokens


def test_raw_sse_framing(http) -> None:
    s = read_sse(
        http, "/v1/completions", {"model": MODEL_NAME, "prompt": "Hi there", "stream": True}
    )
    assert s.saw_done, s.raw_lines[-5:]
    assert "".join(e["choices"][0]["text"] for e in s.events) == "Hi there"
    # Every event is one `data:` line followed by a blank line.
    data_at = [i for i, line in enumerate(s.raw_lines) if line.startswith("data:")]
    assert len(data_at) == len(s.events) + 1
    for i in data_at[:-1]:
        assert s.raw_lines[i + 1] == "", s.raw_lines[i : i + 2]


def test_echo_puts_the_prompt_before_the_completion(client: openai.OpenAI) -> None:
    prompt = "Echo this back, please."
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=3, echo=True)
    plain = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=3)
    assert r.choices[0].text == prompt + plain.choices[0].text
    # Usage counts generated tokens only.
    assert r.usage.completion_tokens == plain.usage.completion_tokens == 3


def test_streamed_echo_sends_the_prompt_once_per_choice(client: openai.OpenAI) -> None:
    prompts = ["first prompt", "second"]
    texts = ["", "", "", ""]
    for chunk in client.completions.create(
        model=MODEL_NAME, prompt=prompts, n=2, max_tokens=2, echo=True, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    plain = client.completions.create(model=MODEL_NAME, prompt=prompts, max_tokens=2)
    generated = [c.text for c in plain.choices]
    assert texts == [
        prompts[0] + generated[0],
        prompts[0] + generated[0],
        prompts[1] + generated[1],
        prompts[1] + generated[1],
    ]


def test_echo_of_a_token_id_prompt_decodes_it(client: openai.OpenAI, http) -> None:
    ids = http.post("/tokenize", json={"prompt": "token ids, echoed"}).json()["tokens"]
    r = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=1, echo=True)
    assert r.choices[0].text.startswith("token ids, echoed")


def test_echo_with_logprobs_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="x", echo=True, logprobs=1)
    assert e.value.body["param"] == "echo"
