"""``python -m lab simulate``: choosing the simulator and judge, running, reporting, refusing, resuming after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.schema import ChatSession, Participant
from lab.simulate import (
    PlanError,
    ScriptedSimulator,
    judge_for,
    make_simulator,
    plan_run,
    run_progress,
)

from .conftest import ROOT, load, sessions_of, user_shards


def test_scripted_simulator_takes_no_persona(sqlite_engine: Engine, spec: str) -> None:
    _, d = load(sqlite_engine, spec)
    with pytest.raises(PlanError, match="cannot follow a persona"):
        make_simulator(d, None, "a pirate")
    with pytest.raises(PlanError, match="OPENAI_API_KEY"):
        make_simulator(d, "openai/gpt-4o-mini", None)


def test_judge_comes_from_the_command_or_a_usable_spec_judge(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str], sim_spec: Callable[..., str]
) -> None:
    optional = {"gpt": {"model": "openai/gpt-4o-mini", "optional": True}}
    spec = sim_spec(extra_models=optional, judge={"model": "gpt"})
    _, d = load(sqlite_engine, spec)
    assert judge_for(d, None) is None and "OPENAI_API_KEY" in capsys.readouterr().err
    assert judge_for(d, "solver") == ("lab/scripted", {"script": "fixed", "reply": "The answer is 5."})
    with pytest.raises(PlanError, match="OPENAI_API_KEY"):
        judge_for(d, "gpt")


def test_cli_runs_reports_and_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    spec_file = tmp_path / "sim.yaml"
    spec_file.write_text(spec)
    assert main(["migrate"]) == 0 and main(["study", "load", str(spec_file)]) == 0
    capsys.readouterr()
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "loaded", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "4 conversations" in out.err and "  full: 3" in out.err and out.out == ""
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full,loaded"]) == 0
    out = capsys.readouterr()
    assert "4 planned, 4 ended" in out.out and "4/4 conversations (100%)" in out.err
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "full", "loaded"]) == 0
    assert "4 of 4 conversations already ended" in capsys.readouterr().err
    assert main(["simulate", "sim", "--repeats", "1", "--conditions", "nope"]) == 1
    assert "unknown condition 'nope'" in capsys.readouterr().err
    assert main(["simulate", "ghost", "--repeats", "1"]) == 1
    assert "no study with slug 'ghost'" in capsys.readouterr().err
    with Session(_engine()) as s:
        (progress,) = run_progress(s, "sim")
    assert progress.command == "python -m lab simulate sim --repeats 1 --conditions full loaded --concurrency 4"


def _engine() -> Engine:
    from lab.db import get_engine

    return get_engine()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("processes", [1, 2])
def test_kill_and_resume_leaves_exactly_n_conversations(tmp_path: Path, processes: int, sim_spec: Callable[..., str]) -> None:
    """SIGKILL mid-run (with workers, the parent), then the same command: exactly N conversations."""
    from lab.db import make_engine, migrate

    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    migrate(engine)
    spec = sim_spec(bot_latency=0.15)
    study, d = load(engine, spec)
    env = os.environ | {"DATABASE_URL": url, "LAB_ENV_FILE": os.devnull, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    options = ["--concurrency", "2"] if processes == 1 else ["--concurrency", "4", "--processes", str(processes)]
    cmd = [sys.executable, "-m", "lab", "simulate", "sim", "--repeats", "3", "--conditions", "sharded", "full", *options]
    plan = plan_run(study, d, ScriptedSimulator().record(), repeats=3, conditions=["sharded", "full"])

    def state() -> dict[int, tuple[str, list[list[int]]]]:
        return {c.id: (c.status, user_shards(engine, c.id)) for c in sessions_of(engine, plan.run_id)}

    def ended() -> int:
        return sum(1 for status, _ in state().values() if status == "ended")

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while ended() < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # workers die with their parent: nothing moves after the kill
    at_kill = state()
    time.sleep(0.5)
    assert state() == at_kill
    active = {sid: shards for sid, (status, shards) in at_kill.items() if status == "active"}
    assert active and 3 <= ended() < plan.total
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chats = sessions_of(engine, plan.run_id)
    assert len(chats) == plan.total == 18 and all(c.status == "ended" for c in chats)
    with Session(engine) as s:
        units = [p.simulator["unit"] for p in s.scalars(select(Participant)) if (p.simulator or {}).get("run") == plan.run_id]
        n_sessions = s.scalar(select(func.count()).select_from(ChatSession))
        (progress,) = run_progress(s, "sim")
    assert len(units) == len(set(units)) == plan.total and n_sessions == plan.total
    for sid, shards in active.items():
        assert user_shards(engine, sid)[: len(shards)] == shards
    assert "18 ended, 0 unfinished" in done.stdout and "drift: none" in done.stdout
    assert "18/18 conversations (100%)" in done.stderr
    assert progress.command is not None and progress.command.endswith(" ".join(options))
    engine.dispose()
