"""Fixtures: one shared echo server for the whole session (started once, checked for a clean
SIGTERM exit at the end), clients bound to it, and a factory for extra servers with other flags.
"""

from __future__ import annotations

from typing import Callable, Iterator

import httpx
import openai
import pytest


from support import Server, make_openai


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests marked `last` check that the shared server survived everything before them.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = Server("shared").start()
    yield srv
    # Part of the contract: SIGTERM drains and exits 0.
    srv.stop_expecting_clean_exit()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[openai.OpenAI]:
    c = make_openai(server)
    yield c
    c.close()


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def spawn_server() -> Iterator[Callable[..., Server]]:
    """Starts extra servers for one module; stops every one still running at module end."""
    started: list[Server] = []

    def spawn(name: str, extra_args: list[str] | None = None, **kwargs) -> Server:
        srv = Server(name, extra_args=list(extra_args or []), **kwargs)
        started.append(srv)
        return srv.start()

    yield spawn
    failures = []
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            try:
                srv.stop_expecting_clean_exit()
            except AssertionError as e:
                failures.append(str(e))
    if failures:
        raise AssertionError("\n\n".join(failures))
