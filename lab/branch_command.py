"""``python -m lab branch``: sample branches at a study's points, then roll every reply out.

The command joins the two steps, :mod:`lab.branch` (alternative replies at a point) and
:mod:`lab.rollout` (each reply continued to the end and scored), which stay apart so that
neither imports the other's caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .branch import DEFAULT_TEMPERATURE, PARTICIPANT_CHOICES, POINT_KINDS, Brancher, BranchError, find_points, resolve_models
from .rollout import run_rollouts


def progress_line(label: str) -> Callable[[int, int], None]:
    """A progress callback drawing ``label: done/total`` on one terminal line (nothing without a terminal)."""
    import sys

    tty = sys.stderr.isatty()
    last = [0.0]

    def tick(done: int, total: int) -> None:
        now = time.monotonic()
        if not tty or (now - last[0] < 0.2 and done < total):
            return
        last[0] = now
        sys.stderr.write(f"\r{label} {done}/{total}" + ("\n" if done >= total else ""))
        sys.stderr.flush()

    return tick


def cmd_branch(args: Any) -> None:
    """``python -m lab branch``: sample branches at a study's points, then roll every reply out."""
    import sys

    from .db import get_engine
    from .errors import CommandError
    from .simulate import Limits
    from .split import item_splits

    for name in ("k", "concurrency"):
        if getattr(args, name) < 1:
            raise BranchError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    if args.rollouts < 0:
        raise BranchError(f"--rollouts must be 0 or more (got {args.rollouts})")
    if args.rpm is not None and args.rpm <= 0:
        raise BranchError(f"--rpm must be more than 0 (got {args.rpm:g})")
    engine = get_engine()
    heldout = frozenset(k for k, v in item_splits(engine, args.slug).items() if v == "heldout")
    models = resolve_models(engine, args.slug, [m for g in args.models or [] for m in g.split(",") if m])
    points, skipped = find_points(engine, args.slug, at=args.at, participants=args.participants, heldout=heldout)
    print(f"{len(points)} point(s) in study '{args.slug}' (--at {args.at}, --participants {args.participants})", file=sys.stderr)
    if skipped:
        print(f"{skipped} conversation(s) of held-out items left alone", file=sys.stderr)
    limits = Limits(args.rpm)
    brancher = Brancher(
        engine,
        points,
        k=args.k,
        models=models or None,
        temperature=args.temperature,
        concurrency=args.concurrency,
        limits=limits,
        on_progress=progress_line(f"branch {args.slug}: replies"),
    )
    result = asyncio.run(brancher.run())
    print(
        f"branches: {result.sampled} sampled, {result.existing} already stored, at {result.points} point(s) "
        f"in {result.elapsed:.1f} s"
    )
    failures = list(result.failures)
    if args.rollouts:
        rolled = run_rollouts(
            engine,
            args.slug,
            points,
            r=args.rollouts,
            simulator_name=args.simulator,
            concurrency=args.concurrency,
            limits=limits,
            on_progress=progress_line(f"branch {args.slug}: rollouts"),
        )
        print(
            f"rollouts: {rolled.finished} finished, {rolled.existing} already stored, {rolled.unscored_points} point(s) "
            f"of items without a task score not rolled out, in {rolled.elapsed:.1f} s"
        )
        failures += rolled.failures
    if failures:
        turn, message = failures[0]
        raise CommandError(
            f"{len(failures)} sample(s) or rollout(s) stopped after repeated model errors (point {turn}: {message}); "
            "run the same command again to continue"
        )


def register(sub: Any) -> None:
    """Add ``branch`` to the command line."""
    sp = sub.add_parser(
        "branch",
        help="sample K alternative replies at points of stored conversations and roll each reply out (resumable)",
        description="At chosen points of a study's conversations, sample K alternative assistant replies from exactly "
        "the messages the original reply was generated from, then continue every reply (the original too) R times "
        "with the simulator and score the result. Branches and rollouts never count as participants' data. "
        "Rerunning the same command continues where it stopped.",
    )
    sp.add_argument("slug")
    sp.add_argument("--k", type=int, default=4, help="alternative replies per point (default 4)")
    sp.add_argument("--at", choices=POINT_KINDS, default="every", help="which replies are points (default every)")
    sp.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="sample with these models (model ids of the study or litellm strings), in turn; default: the original's",
    )
    sp.add_argument(
        "--temperature", type=float, default=DEFAULT_TEMPERATURE, help=f"sampling temperature (default {DEFAULT_TEMPERATURE})"
    )
    sp.add_argument("--participants", choices=list(PARTICIPANT_CHOICES), default="all", help="whose conversations (default all)")
    sp.add_argument("--rollouts", type=int, default=4, metavar="R", help="continuations per reply (default 4; 0: none)")
    sp.add_argument("--simulator", metavar="MODEL", help="who plays the participant in rollouts: 'scripted' (default) or a model")
    sp.add_argument("--concurrency", type=int, default=4, metavar="K", help="calls or rollouts at once (default 4)")
    sp.add_argument("--rpm", type=float, metavar="N", help="requests per minute allowed per model (default: no limit)")
    sp.set_defaults(func=cmd_branch)
