"""Fixtures for the model gateway's tests: retries that record their waits instead of sleeping,
a real OpenAI-compatible model server, and one that fails on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.llm import using_retry_policy

from .servers import FaultyServer, LlamaServer, server_installed


@pytest.fixture(autouse=True)
def backoff_delays() -> Iterator[list[float]]:
    """The waits the gateway asked for before retries (nothing actually sleeps)."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    with using_retry_policy(sleep=delays.append, asleep=record, jitter=0.0):
        yield delays


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with the shipped GGUF, started once for the session.

    Skips when llama-cpp-python, its server extra or the GGUF is not installed.
    """
    from lab.llm import embedded_model_path

    path = embedded_model_path()
    if not server_installed() or path is None:
        pytest.skip("llama-cpp-python with its server extra and the shipped GGUF are not installed")
    server = LlamaServer(Path(path), tmp_path_factory.mktemp("model-server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def faulty_server() -> Iterator[FaultyServer]:
    """An OpenAI-compatible server on loopback that fails as the test tells it to."""
    server = FaultyServer()
    yield server
    server.close()
