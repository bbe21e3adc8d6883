"""How far the automatic judges can be trusted: accuracy figures and labelling speed.

Prints, for each evaluation set present (hand-labelled development and held-out replies in
``tests/data``; FalseQA rebuttals and CLAMBER clarifying questions from ``../shared/datasets``),
the share labelled right, the share right among labelled cases, the abstention rate, the
target checks on published text, and how many cases per second the judge labels.

    .venv/bin/python bench/judge_accuracy.py [--model M] [--limit N] [--datasets DIR] [--full]

``--full`` prints each set's per-code table and confusion matrix (as ``python -m lab judge evaluate``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.judge import RuleJudge, default_sets, evaluate, format_evaluation, get_judge  # noqa: E402
from lab.judge._evaluate import evaluate_repairs, format_repair_evaluation, format_summary  # noqa: E402


def main() -> None:
    """Measure one judge on every evaluation set present and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an LLM judge model (default: the rule judge)")
    parser.add_argument("--limit", type=int, help="at most N cases per set")
    parser.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--full", action="store_true", help="per-code tables and confusion matrices too")
    args = parser.parse_args()
    judge = get_judge(args.model) if args.model else RuleJudge()
    datasets = Path(args.datasets)
    sets = default_sets(ROOT, datasets if datasets.is_dir() else None)
    print(f"judge {judge.name} {judge.model or ''} version {judge.version}")
    evaluations, rates = [], []
    for s in sets:
        if args.limit:
            s.cases = s.cases[: args.limit]
        started = time.perf_counter()
        evaluations.append(evaluate(judge, s))
        rates.append(len(s.cases) / (time.perf_counter() - started))
        if args.full:
            print(format_evaluation(evaluations[-1]))
    print(format_summary(evaluations, rates))
    repairs = ROOT / "tests" / "data" / "heldout_repair.jsonl"
    if repairs.exists():
        print(format_repair_evaluation(evaluate_repairs(repairs)))
    if not datasets.is_dir():
        print(f"({datasets} not found: FalseQA and CLAMBER left out)")


if __name__ == "__main__":
    main()
