"""/health, /live and the end-of-suite check that the shared server survived everything."""

from __future__ import annotations

import httpx
import openai
import pytest

from support import MODEL_NAME


def test_health_and_live_are_200(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/live").status_code == 200


@pytest.mark.last
def test_shared_server_is_still_healthy_at_the_end(http: httpx.Client, client: openai.OpenAI) -> None:
    assert http.get("/health").status_code == 200
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "still alive?"}]
    )
    assert "still alive?" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    r = client.completions.create(model=MODEL_NAME, prompt="fresh request")
    assert r.choices[0].text == "fresh request"
