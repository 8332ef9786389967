"""64 concurrent streams through the official async client: every one gets exactly its own echo."""

from __future__ import annotations

import asyncio

from support import MODEL_NAME, Server, make_async_openai

STREAMS = 64
WORDS = ["alpha", "βeta", "γάμμα", "дельта", "エコー", "回声", "🚀", "naïve"]


def prompt_for(i: int) -> str:
    # Distinct per request (so a crossed stream is caught), multi-byte, 20-40 tokens.
    words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 5))
    return f"request {i}: {words} end {i}"


async def run_streams(server: Server) -> list[tuple[int, str, str | None, str]]:
    client = make_async_openai(server)

    async def one(i: int) -> tuple[int, str, str | None, str]:
        if i % 2 == 0:
            stream = await client.completions.create(
                model=MODEL_NAME, prompt=prompt_for(i), stream=True
            )
            text, finish, rid = "", None, ""
            async for chunk in stream:
                rid = chunk.id
                for c in chunk.choices:
                    text += c.text
                    finish = c.finish_reason or finish
            return i, text, finish, rid
        stream = await client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": prompt_for(i)}],
            stream=True,
        )
        text, finish, rid = "", None, ""
        async for chunk in stream:
            rid = chunk.id
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        return i, text, finish, rid

    try:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(STREAMS))), 60)
    finally:
        await client.close()


def test_64_concurrent_streams_are_each_exact(server: Server) -> None:
    results = asyncio.run(run_streams(server))
    assert len(results) == STREAMS
    for i, text, finish, _ in results:
        if i % 2 == 0:
            assert text == prompt_for(i), f"stream {i}"
        else:
            expected = f"user\n{prompt_for(i)}\nassistant\n"
            assert text == expected, f"stream {i}"
        assert finish == "stop", f"stream {i}"
    ids = [rid for *_, rid in results]
    assert len(set(ids)) == STREAMS, "response ids must be unique"
