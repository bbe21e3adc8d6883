"""``python -m lab judge``: relabel a study in batch, or measure the judges (``judge evaluate``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lab.relabel import DEFAULT_LAYERS, LAYERS

EVALUATE = "evaluate"
"""The target word that measures the judges instead of labelling a study."""


PROGRESS_EVERY_SECONDS = 1.0
"""The progress line is rewritten at most this often (and always at the end)."""


def _progress_printer(slug: str) -> Any:
    started = time.monotonic()
    shown = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done != total and now - shown[0] < PROGRESS_EVERY_SECONDS:
            return
        shown[0] = now
        elapsed = now - started
        eta = elapsed / done * (total - done) if done else 0.0
        end = "\n" if done == total else ""
        print(
            f"\rjudging {slug}: {done}/{total} conversations ({done / total:.0%}), {elapsed:.0f} s, ETA {eta:.0f} s",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return show


def require_usable(judge: Any, named: str | None) -> None:
    """Refuse a judge model that cannot be called: a bad model string or a key that is not set.

    Without this a judge run would write no labels (or count every case as unusable output)
    and still end as if it had worked.

    Args:
        judge: The judge (the rule judge has no model and always passes).
        named: What the person asked for (``--model``, or the spec's judge), for the message.

    Raises:
        CommandError: naming the problem, or the environment variable to set.
    """
    from lab import llm
    from lab.errors import CommandError

    model = getattr(judge, "model", None)
    if not model:
        return
    params = getattr(judge, "params", {})
    shown = f"'{named}' ({model})" if named and named != model else f"'{model}'"
    problems = llm.check_model(model, params)
    if problems:
        raise CommandError(f"judge model {shown}: {problems[0]}")
    missing = llm.missing_env(model, params)
    if missing:
        raise CommandError(
            f"judge model {shown} needs {', '.join(missing)} to be set (in the environment or .env); "
            "without a --model the rule judge labels offline"
        )


def cmd_relabel(args: argparse.Namespace) -> None:
    """Label every turn of a study with one judge; print a progress line and a summary."""
    from sqlalchemy.orm import Session

    from lab.db import get_engine
    from lab.relabel import relabel_study, resolve_judge
    from lab.studies import definition, get_study

    layers = tuple(args.layer or DEFAULT_LAYERS)
    engine = get_engine()
    with Session(engine) as s:
        spec = definition(get_study(s, args.target)).spec
    judge = resolve_judge(spec, args.model)
    require_usable(judge, args.model or spec.judge.model)
    run = relabel_study(
        engine,
        args.target,
        args.model,
        layers=layers,
        only_missing=args.only_missing,
        progress=_progress_printer(args.target),
        judge=judge,
    )
    parts = [f"{run.labelled} labels written"]
    if run.abstained:
        parts.append(f"{run.abstained} of them UNSURE (for people first)")
    if run.skipped:
        parts.append(f"{run.skipped} already labelled by this judge version")
    if "R" in run.layers:
        parts.append(f"{run.sequences} repair-sequence candidates")
    if run.failed:
        parts.append(f"{run.failed} could not be labelled")
    print(
        f"{run.annotator} on {args.target} (layers {', '.join(run.layers)}, {run.conversations} conversations): "
        + "; ".join(parts)
    )
    for error in run.errors:
        print(f"  {error}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score the judge on every evaluation set present and print the reports."""
    from lab.errors import CommandError
    from lab.settings import ROOT

    from . import RuleJudge, get_judge
    from ._evaluate import default_sets, evaluate, evaluate_repairs, format_evaluation, format_repair_evaluation, format_summary

    datasets = Path(args.datasets) if args.datasets else ROOT.parent / "shared" / "datasets"
    layers = tuple(args.layer or LAYERS)
    sets = default_sets(ROOT, datasets if datasets.exists() else None, layers)
    if args.set:
        sets = [s for s in sets if s.name in set(args.set) or s.name.split("-")[0] in set(args.set)]
    repairs = ROOT / "tests" / "data" / "heldout_repair.jsonl"
    with_repairs = "R" in layers and repairs.exists() and (not args.set or {"heldout-R", "heldout", "R"} & set(args.set))
    gates = _gate_sets(ROOT, layers, args.set)
    if not sets and not with_repairs and not gates:
        raise CommandError("no evaluation set found (tests/data is missing, or --set names none)")
    judge = get_judge(args.model) if args.model else RuleJudge()
    require_usable(judge, args.model)
    if not datasets.exists():
        print(f"note: {datasets} not found, so FalseQA and CLAMBER are left out", file=sys.stderr)
    evaluations = []
    for s in sets:
        if args.limit:
            s.cases = s.cases[: args.limit]
        evaluations.append(evaluate(judge, s))
        print(format_evaluation(evaluations[-1]))
        print()
    if with_repairs:
        # Repair candidates always come from the rules, whichever judge labels the other layers.
        print(format_repair_evaluation(evaluate_repairs(repairs)))
        print()
    if gates:
        from lab.scoring._gate import LLMGate, RuleGate, evaluate_gate, format_gate

        # A judge model gates as the authors' classifier does; otherwise the rules gate.
        model = getattr(judge, "model", None)
        gate: LLMGate | RuleGate = LLMGate(model) if model else RuleGate()
        for name, path in gates:
            print(format_gate(evaluate_gate(gate, path, name, limit=args.limit)))
            print()
    if evaluations:
        print(format_summary(evaluations))


def _gate_sets(root: Path, layers: tuple[str, ...], wanted: list[str] | None) -> list[tuple[str, Path]]:
    """The answer-attempt gate's labelled sets to score (with layer S, or when named by --set)."""
    data = root / "tests" / "data"
    found = [(name, data / f"{file}.jsonl") for name, file in (("dev-gate", "dev_gate"), ("heldout-gate", "heldout_gate"))]
    found = [(n, p) for n, p in found if p.exists()]
    if wanted:
        return [(n, p) for n, p in found if n in wanted or "gate" in wanted or n.split("-")[0] in wanted]
    return found if "S" in layers else []


def cmd_judge(args: argparse.Namespace) -> None:
    """Dispatch ``judge evaluate`` and ``judge SLUG``."""
    from lab.errors import CommandError

    if args.target == EVALUATE:
        cmd_evaluate(args)
    else:
        if args.set or args.datasets or args.limit:
            raise CommandError("--set, --datasets and --limit belong to `python -m lab judge evaluate`")
        cmd_relabel(args)


def register(sub: Any) -> None:
    """Add the ``judge`` command to the CLI's subparsers."""
    sp = sub.add_parser(
        "judge",
        help="label every turn of a study with a judge (auto:<judge> labels), or `judge evaluate` to measure the judges",
        description=(
            "`python -m lab judge SLUG` labels every turn of the study with one judge, superseding that judge's older "
            "labels and never touching human labels; `python -m lab judge evaluate` prints each judge's precision, "
            "recall, abstention and confusion matrix on held-out labelled replies and published text, and the "
            "answer-attempt gate's precision, recall and abstention on labelled turns (--set gate)."
        ),
    )
    sp.add_argument("target", metavar="SLUG|evaluate", help="a study's slug, or `evaluate`")
    sp.add_argument(
        "--model",
        metavar="M",
        help="judge model: a model id of the spec or a litellm string (default: the spec's judge, else rules)",
    )
    sp.add_argument(
        "--layer",
        action="append",
        choices=list(LAYERS),
        help=f"layer to label (repeatable; default {' and '.join(DEFAULT_LAYERS)}; evaluate: all four)",
    )
    sp.add_argument(
        "--only-missing", action="store_true", help="skip turns this judge version already labelled (continues a stopped run)"
    )
    sp.add_argument("--datasets", metavar="DIR", help="evaluate: folder with falseqa/ and clamber/ (default ../shared/datasets)")
    sp.add_argument("--set", action="append", metavar="NAME", help="evaluate: only these sets (e.g. heldout-P, falseqa)")
    sp.add_argument("--limit", type=int, metavar="N", help="evaluate: at most N cases per set (bounds an LLM judge's calls)")
    sp.set_defaults(func=cmd_judge)
