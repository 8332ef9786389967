"""SIGTERM drains: /health and /live turn 503 at once, the in-flight stream still completes in
full, then the process exits 0."""

from __future__ import annotations

import threading
import time

import httpx

from support import MODEL_NAME, Server, parse_sse_lines

SENTENCE = "The quick brown fox jumps over the lazy dog. "
PROMPT = (SENTENCE * 10).strip()  # ~100 tokens → ~2 s at 20 ms per token


def test_sigterm_drains_in_flight_stream_then_exits_0(spawn_server) -> None:
    srv: Server = spawn_server("drain", ["--echo-delay-ms", "20"], workers=1)
    first_chunk = threading.Event()
    result: dict = {}

    def stream() -> None:
        text, finish, done = "", None, False
        try:
            with httpx.Client(timeout=60, trust_env=False) as h:
                with h.stream(
                    "POST",
                    srv.url("/v1/completions"),
                    json={"model": MODEL_NAME, "prompt": PROMPT, "stream": True},
                ) as r:
                    result["status"] = r.status_code
                    for item in parse_sse_lines(r.iter_lines()):
                        if item == "[DONE]":
                            done = True
                            break
                        for c in item.get("choices", []):
                            text += c["text"]
                            finish = c.get("finish_reason") or finish
                        first_chunk.set()
        except Exception as e:  # reported by the main thread
            result["error"] = repr(e)
        finally:
            result.update(text=text, finish=finish, done=done)
            first_chunk.set()

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    assert first_chunk.wait(15), "no first chunk"
    assert "error" not in result, result

    srv.terminate()
    seen = {"/health": [], "/live": []}
    with httpx.Client(timeout=2, trust_env=False) as h:
        while worker.is_alive() and not all(503 in codes for codes in seen.values()):
            for path in seen:
                try:
                    seen[path].append(h.get(srv.url(path)).status_code)
                except httpx.HTTPError as e:
                    seen[path].append(type(e).__name__)
            time.sleep(0.02)
    worker.join(30)
    assert not worker.is_alive(), "stream did not finish after SIGTERM"

    assert result.get("status") == 200, result
    assert "error" not in result, result
    assert result["text"] == PROMPT, f"stream cut short by shutdown: {len(result['text'])} of {len(PROMPT)} chars"
    assert result["finish"] == "stop"
    assert result["done"], "no [DONE] after draining"
    assert 503 in seen["/health"], f"/health never answered 503 while draining: {seen['/health'][:20]}"
    assert 503 in seen["/live"], f"/live never answered 503 while draining: {seen['/live'][:20]}"
    assert 200 not in seen["/health"], f"/health answered 200 after SIGTERM: {seen['/health'][:20]}"

    code = srv.wait_exit(30)
    assert code == 0, f"exit code {code} after SIGTERM\n{srv.log_tail()}"
