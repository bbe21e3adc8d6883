"""The lab against a real OpenAI-compatible HTTP server: llama-cpp-python's own, with the shipped GGUF.

Everything goes through ``openai/<alias>`` with an ``api_base`` and no key, as a study that
uses a self-hosted server (vLLM, llama.cpp's server, Ollama) would. The server is started
once for the session (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab import llm
from lab.flow import Flow
from lab.modelcheck import check
from lab.participants import create_participant, new_token
from lab.schema import ChatSession, Turn
from lab.simulate import RunStatus, ScriptedSimulator, plan_run, run_simulation
from lab.spec import ModelSpec, parse_spec
from lab.studies import load_study, set_status

from .servers import LlamaServer, free_port

pytestmark = pytest.mark.local_model

ITEMS: list[dict[str, Any]] = [
    {
        "id": "add",
        "kind": "sharded",
        "shards": [{"id": 1, "text": "Add two numbers."}, {"id": 2, "text": "The numbers are 2 and 3."}],
        "answer": {"type": "number", "value": "5"},
    }
]


def server_study(study_spec: Callable[..., str], server: LlamaServer, **params: Any) -> str:
    """A study whose one model is the server, short replies, greedy decoding."""
    model = {"model": server.model, "params": server.params | {"max_tokens": 12, "temperature": 0} | params}
    return study_spec(
        "served",
        models={"served": model},
        conditions={"sharded": {"model": "served", "reveal": "SHARDED"}, "full": {"model": "served", "reveal": "FULL"}},
        items=ITEMS,
        plan={"items_per_participant": 1, "turn_limit": 2, "seed": 1},
    )


def assistant_turns(engine: Engine) -> list[Turn]:
    """Every assistant turn in the database."""
    with Session(engine) as s:
        return list(s.scalars(select(Turn).where(Turn.role == "assistant").order_by(Turn.id)))


def test_a_participant_turn_streams_through_the_server(
    sqlite_engine: Engine, study_spec: Callable[..., str], model_server: LlamaServer
) -> None:
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, parse_spec(server_study(study_spec, model_server), "study.yaml")).study
        set_status(s, study.slug, "open")
        pid = create_participant(s, study, token=new_token()).id
    flow = Flow.load(sqlite_engine, pid)
    flow.consent(True)
    flow.begin()
    conv = flow.conversation()
    conv.send("Add two numbers.")
    pieces = list(conv.reply())
    assert len(pieces) >= 2, "the reply arrives in pieces"
    [turn] = assistant_turns(sqlite_engine)
    assert turn.content == "".join(pieces) and turn.error is None and not turn.partial
    assert turn.ttft_ms is not None and turn.latency_ms is not None and 0 < turn.ttft_ms < turn.latency_ms
    assert turn.tokens_in and turn.tokens_out and turn.finish_reason in ("stop", "length")
    assert turn.model == model_server.model and turn.cost == 0.0


def test_a_simulation_runs_through_the_server_with_real_timings(
    sqlite_engine: Engine, study_spec: Callable[..., str], model_server: LlamaServer
) -> None:
    with Session(sqlite_engine, expire_on_commit=False) as s, s.begin():
        loaded = load_study(s, d := parse_spec(server_study(study_spec, model_server), "study.yaml"))
    simulator = ScriptedSimulator()
    plan = plan_run(loaded.study, d, simulator.record(), repeats=1)
    result = asyncio.run(run_simulation(sqlite_engine, plan, simulator, retry_pause=0.0))
    assert result.complete and not result.failures
    turns = assistant_turns(sqlite_engine)
    assert len(turns) >= plan.total
    for turn in turns:
        assert turn.error is None and turn.content
        assert turn.ttft_ms is not None and turn.latency_ms is not None and turn.ttft_ms < turn.latency_ms
        assert turn.tokens_in and turn.tokens_out and turn.finish_reason in ("stop", "length")


def test_the_models_page_check_answers_through_the_server(model_server: LlamaServer) -> None:
    result = check("served", ModelSpec(model=model_server.model, params=model_server.params))
    assert result.ok, result.message
    assert result.reply and result.latency_ms is not None and result.message.startswith("Answered in")


def test_the_models_page_check_names_a_server_that_is_down() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    result = check("served", ModelSpec(model="openai/smollm2-server", params={"api_base": base}))
    assert not result.ok and result.kind == "connection"
    assert result.message == f"Could not connect to {base}: connection refused (openai/smollm2-server)."


def test_a_streamed_call_measures_its_first_token(model_server: LlamaServer) -> None:
    messages = [{"role": "user", "content": "Count from one to ten."}]
    whole = llm.complete(model_server.model, messages, model_server.params | {"max_tokens": 8}, streamed=True)
    assert whole.text and whole.ttft_ms is not None and whole.ttft_ms < whole.latency_ms
    plain = llm.complete(model_server.model, messages, model_server.params | {"max_tokens": 8})
    assert plain.text and plain.ttft_ms == plain.latency_ms, "a reply that is not streamed arrives at once"


def test_a_simulation_survives_the_server_being_killed_and_started_again(
    sqlite_engine: Engine, study_spec: Callable[..., str], model_server: LlamaServer, tmp_path: Path
) -> None:
    own = LlamaServer(model_server.model_path, tmp_path / "own.log").start()
    try:
        with Session(sqlite_engine, expire_on_commit=False) as s, s.begin():
            loaded = load_study(s, d := parse_spec(server_study(study_spec, own), "study.yaml"))
        simulator = ScriptedSimulator()
        plan = plan_run(loaded.study, d, simulator.record(), repeats=2)

        def kill_after_the_first(status: RunStatus) -> None:
            if status.done >= 1 and own.process is not None:
                own.stop()

        first = asyncio.run(
            run_simulation(sqlite_engine, plan, simulator, concurrency=1, retry_pause=0.0, on_progress=kill_after_the_first)
        )
        assert not first.complete and first.failures
        assert all(f"Could not connect to {own.api_base}: connection refused" in message for _, message in first.failures)
        own.start()
        again = asyncio.run(run_simulation(sqlite_engine, plan, simulator, concurrency=1, retry_pause=0.0))
        assert again.complete and not again.failures
    finally:
        own.stop()
    with Session(sqlite_engine) as s:
        sessions = list(s.scalars(select(ChatSession).order_by(ChatSession.id)))
        assert len(sessions) == plan.total and all(c.status == "ended" for c in sessions)
        for chat in sessions:
            said = [t.content for t in s.scalars(select(Turn).where(Turn.session_id == chat.id, Turn.role == "user"))]
            assert len(said) == len(set(said)), "no message was sent twice"
