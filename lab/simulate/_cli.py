"""``python -m lab simulate``: run a study's grid with simulated participants."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from typing import Any

from .. import llm
from ..spec import StudyDefinition
from ._claims import LEASE_SECONDS
from ._grid import PlanError, RunPlan, plan_run, usable_model
from ._launch import run_simulation
from ._progress import ProgressLine
from ._report import run_report
from ._runner import RunBusy, RunResult, existing_units
from ._simulator import LLMSimulator, ScriptedSimulator, Simulator

SCRIPTED_NAME = "scripted"
"""``--simulator scripted`` asks for the scripted simulator."""


def make_simulator(d: StudyDefinition, name: str | None, persona: str | None) -> Simulator:
    """The simulator a command asks for.

    Args:
        d: The study.
        name: ``scripted``, a model id of the study or a litellm string; None for the
            spec's simulator model, else the scripted simulator.
        persona: Overrides the spec's persona.

    Raises:
        PlanError: the model cannot be used, or a persona is given to the scripted simulator.
    """
    name = name or d.spec.simulator.model or SCRIPTED_NAME
    persona = persona if persona is not None else d.spec.simulator.persona
    if name == SCRIPTED_NAME:
        if persona and d.spec.simulator.persona != persona:
            raise PlanError("the scripted simulator sends shards as written and cannot follow a persona; name a simulator model")
        return ScriptedSimulator()
    model, params, model_id = usable_model(d, name, "simulator")
    return LLMSimulator(model, params or None, model_id=model_id, persona=persona)


def judge_for(d: StudyDefinition, name: str | None) -> tuple[str, dict[str, Any]] | None:
    """The consistency judge: ``--judge``, else the spec's judge model when usable; None without one.

    Raises:
        PlanError: the model named by ``--judge`` cannot be used.
    """
    if name:
        model, params, _ = usable_model(d, name, "judge")
        return model, params
    if not d.spec.judge.model:
        return None
    try:
        model, params, _ = usable_model(d, d.spec.judge.model, "judge")
    except PlanError as e:
        print(f"note: no consistency scores: {e}", file=sys.stderr)
        return None
    return model, params


def cell_roles(d: StudyDefinition, condition: str, model: str | None) -> str:
    """Which model answers, and which rewrites the history, in one cell of a run.

    Args:
        d: The study.
        condition: The condition's key.
        model: The model id or litellm string replacing the condition's (None: its own).
    """
    name = model or d.spec.conditions[condition].model
    spec = d.spec.models.get(name)
    string, params = (spec.model, spec.params) if spec else (name, {})
    roles = f"assistant {string}"
    mediator = d.mediator(condition, string, params)
    if mediator is not None:
        roles += f", mediator {mediator.model}"
    return roles


def describe_plan(plan: RunPlan, d: StudyDefinition | None = None, judge: tuple[str, dict[str, Any]] | None = None) -> str:
    """What a plan covers, for ``--dry-run`` and the start of a run.

    Args:
        plan: The run.
        d: The study; with it every cell names the model serving each role in it.
        judge: The consistency judge (model, params), or None when there is none.
    """
    lines = [f"run {plan.run_id}: {plan.total} conversations of study '{plan.study_slug}' v{plan.study_version}"]
    for (condition, model), n in sorted(plan.cells_by_condition().items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        roles = f" ({cell_roles(d, condition, model)})" if d is not None else ""
        lines.append(f"  {condition}{' × ' + model if model else ''}: {n}{roles}")
    sim = plan.simulator
    lines.append(f"simulator: {sim.get('model')} ({sim.get('prompt_version')})")
    if d is not None:
        lines.append(f"judge (simulator consistency, summary scores): {judge[0] if judge else 'none'}")
    return "\n".join(lines)


def command_line(args: argparse.Namespace) -> str:
    """The command as stored with the run (options in a fixed order)."""
    parts = ["python -m lab simulate", args.slug]
    parts += ["--repeats", str(args.repeats)] if args.repeats is not None else ["--participants", str(args.participants)]
    for flag in ("models", "conditions"):
        if getattr(args, flag):
            parts += [f"--{flag}", *getattr(args, flag)]
    for flag in ("simulator", "persona", "judge", "rpm", "split"):
        if getattr(args, flag, None) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    parts += ["--concurrency", str(args.concurrency)]
    if getattr(args, "processes", 1) > 1:
        parts += ["--processes", str(args.processes)]
    if getattr(args, "worker", False):
        parts.append("--worker")
        if args.lease != LEASE_SECONDS:
            parts += ["--lease", f"{args.lease:g}"]
    return " ".join(shlex.quote(p) if i > 0 else p for i, p in enumerate(parts))


def describe_worker(result: RunResult) -> str:
    """What one ``--worker`` did, for the end of its run (the report that follows covers the whole run)."""
    r = result
    text = (
        f"this worker ({r.worker}) ended {r.ended_here} conversation(s) in {r.claimed} unit(s) claimed "
        f"({r.started} started, {r.resumed} continued); the run: {r.done} of {r.plan.total} ended"
    )
    if r.lost:
        text += f"; {r.lost} unit(s) taken over by another worker after this one's claim ran out"
    return text


def cmd_simulate(args: argparse.Namespace) -> None:
    """Plan, run (or continue) and report a simulation."""
    from ..errors import CommandError

    try:
        _simulate(args)
    except (PlanError, RunBusy) as e:
        raise CommandError(str(e)) from None


def _simulate(args: argparse.Namespace) -> None:
    from sqlalchemy.orm import Session

    from ..db import get_engine
    from ..errors import CommandError
    from ..studies import definition, get_study

    worker = getattr(args, "worker", False)
    if worker and args.processes > 1:
        raise PlanError("--worker runs in one process: start one worker per core instead of using --processes")
    engine = get_engine()
    with Session(engine, expire_on_commit=False) as s:
        study = get_study(s, args.slug)
        d = definition(study)
        simulator = make_simulator(d, args.simulator, args.persona)
        judge = judge_for(d, args.judge)
        models = [m for group in args.models or [] for m in group.split(",") if m]
        conditions = [c for group in args.conditions or [] for c in group.split(",") if c]
        items = None
        if getattr(args, "split", None):
            from ..split import SplitError, split_items

            try:
                items = split_items(engine, args.slug, args.split)
            except SplitError as e:
                raise PlanError(str(e)) from None
        plan = plan_run(
            study,
            d,
            simulator.record(),
            repeats=args.repeats,
            participants=args.participants,
            conditions=conditions or None,
            models=models or None,
            items=items,
        )
        found = existing_units(s, plan)
    ended = sum(1 for f in found.values() for _, status in f.sessions.values() if status == "ended")
    print(describe_plan(plan, d, judge), file=sys.stderr)
    if ended:
        print(f"{ended} of {plan.total} conversations already ended; continuing", file=sys.stderr)
    if args.dry_run:
        return
    if simulator.model == llm.LOCAL_DEFAULT:
        print("note: the embedded model does not follow simulator rules well; see the drift in the report", file=sys.stderr)
    progress = ProgressLine(f"simulate {plan.study_slug}")
    command = command_line(args)
    try:
        result = asyncio.run(
            run_simulation(
                engine,
                plan,
                simulator,
                concurrency=args.concurrency,
                rpm=args.rpm,
                judge=judge,
                on_progress=progress,
                command=command,
                processes=args.processes,
                worker=worker,
                lease=getattr(args, "lease", LEASE_SECONDS),
            )
        )
    except KeyboardInterrupt:
        progress.close()
        print("stopped: run the same command again to continue where it stopped", file=sys.stderr)
        raise
    progress.close()
    if result.worker is not None:
        print(describe_worker(result), file=sys.stderr)
    with Session(engine) as s:
        print(run_report(s, plan.run_id).format())
    if result.failures:
        sid, message = result.failures[0]
        where = f"conversation {sid}: " if sid is not None else ""
        raise CommandError(
            f"{len(result.failures)} conversation(s) stopped by errors ({where}{message}); "
            "run the same command again to continue them"
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the command line."""
    sp = sub.add_parser(
        "simulate",
        help="run a study's grid with simulated participants (resumable: rerun the same command after a stop)",
        description="Run a study's grid with simulated participants. Rerunning the same command continues "
        "an interrupted run without repeating finished conversations.",
    )
    sp.add_argument("slug", help="the study")
    size = sp.add_mutually_exclusive_group(required=True)
    size.add_argument("--repeats", type=_positive_int, metavar="R", help="run every condition × item cell R times")
    size.add_argument("--participants", type=_positive_int, metavar="N", help="N simulated participants doing the spec's plan")
    sp.add_argument(
        "--models", nargs="+", metavar="MODEL", help="model ids of the study or litellm strings, each run under every condition"
    )
    sp.add_argument("--conditions", nargs="+", metavar="CONDITION", help="only these conditions (default: every active one)")
    sp.add_argument(
        "--simulator",
        metavar="MODEL",
        help="'scripted', a model id of the study or a litellm string playing the participant "
        "(default: the spec's simulator model, else scripted)",
    )
    sp.add_argument("--persona", help="persona for a model simulator (default: the spec's)")
    sp.add_argument("--judge", metavar="MODEL", help="judge model for simulator consistency (default: the spec's judge model)")
    sp.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="K", help="participants conversing at once (default 4)"
    )
    sp.add_argument("--rpm", type=_positive_float, metavar="N", help="requests per minute allowed per model (default: no limit)")
    sp.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="P",
        help="worker processes sharing the grid, to use several cores (default 1: one process); "
        "each runs ceil(K/P) participants at once, and --rpm is divided among them so the limit "
        "holds for the run as a whole; needs a database file or server",
    )
    sp.add_argument(
        "--worker",
        action="store_true",
        help="join the run as one of any number of workers sharing it through the database: start the same "
        "command with the same DATABASE_URL on as many hosts (or times) as you like; each claims units until "
        "none are left, no unit runs twice, and a stopped worker's units go to another after --lease",
    )
    sp.add_argument(
        "--lease",
        type=_positive_float,
        default=LEASE_SECONDS,
        metavar="SECONDS",
        help=f"with --worker: how long a worker's claim on a unit holds without renewal (renewed every third "
        f"of it while the worker runs); a stopped worker's units wait this long (default {LEASE_SECONDS:g})",
    )
    sp.add_argument(
        "--split",
        choices=["train", "heldout"],
        help="only the items of this split (see `python -m lab split`), e.g. heldout to evaluate a tuned model",
    )
    sp.add_argument("--dry-run", action="store_true", help="show the grid and what is already done; run nothing")
    sp.set_defaults(func=cmd_simulate)
