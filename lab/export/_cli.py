"""``python -m lab export`` and ``python -m lab withdraw``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ._bundle import FORMATS, PARTICIPANT_KINDS, ExportOptions, parse_since
from ._training import TrainingFilter

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _options(args: argparse.Namespace) -> ExportOptions:
    return ExportOptions(
        format=args.format if args.format in FORMATS else "parquet",
        participants=args.participants,
        completed_only=args.completed_only,
        since=parse_since(args.since) if args.since else None,
        include_prolific_ids=args.include_prolific_ids,
    )


def _require_study(engine: Engine, slug: str) -> None:
    """Refuse a slug no study has, naming the close ones, before any folder is written."""
    from sqlalchemy.orm import Session

    from ..studies import get_study

    with Session(engine) as s:
        get_study(s, slug)


def check_filter(engine: Engine, slug: str, flt: TrainingFilter) -> None:
    """Refuse a filter value the study cannot have: a typo must not pass for a filter that matches nothing.

    Raises:
        UnknownStudy: no study has ``slug``.
        UnknownName: a condition no version of the study declares, an outcome no
            conversation can have, or a code neither in the study's codebook nor a repair outcome.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ..codebook import base_codebook
    from ..errors import require_known
    from ..schema import SESSION_OUTCOMES, Condition, Study

    _require_study(engine, slug)
    with Session(engine) as s:
        conditions = set(s.scalars(select(Condition.key).join(Study, Study.id == Condition.study_id).where(Study.slug == slug)))
        specs = s.scalars(select(Study.spec).where(Study.slug == slug)).all()
    require_known("condition", flt.conditions, conditions)
    require_known("outcome", flt.outcomes, SESSION_OUTCOMES)
    book = base_codebook()
    codes = {c.code for layer in book.layers.values() for c in layer.codes} | {o.code for o in book.outcomes}
    # Codes a study adds (annotation.codes: {layer: [{code: …}]}), read from every stored version.
    for spec in specs:
        for added in ((spec.get("annotation") or {}).get("codes") or {}).values():
            codes |= {str(c.get("code")) for c in added if isinstance(c, dict)}
    require_known("label (a code or a repair outcome)", flt.labels, codes)


def cmd_export(args: argparse.Namespace) -> None:
    """Write a bundle or a training set and say what it holds."""
    from ..db import get_engine
    from . import export_study
    from ._training_files import export_training

    engine = get_engine()
    if args.format in ("sft", "dpo"):
        flt = TrainingFilter(
            tuple(args.outcome or ()),
            tuple(args.label or ()),
            tuple(args.condition or ()),
            allow_test_items=args.allow_test_items,
            label_source=args.label_source,
        )
        check_filter(engine, args.slug, flt)
        tr = export_training(engine, args.slug, args.out, args.format, _options(args), flt)
        extra = "" if not tr.by_rule else " (" + ", ".join(f"{k}: {v}" for k, v in sorted(tr.by_rule.items())) + ")"
        what = "conversations" if args.format == "sft" else "pairs"
        print(f"wrote {tr.rows} {what}{extra} to {args.out}/data/{args.format}.jsonl")
        if tr.heldout_items or tr.test_items:
            print(
                f"left out: {tr.heldout_items} held-out item(s), {tr.test_items} item(s) from test-only datasets",
                file=sys.stderr,
            )
        for warning in tr.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if tr.empty_reason:
            print(f"note: the file is empty: {tr.empty_reason}", file=sys.stderr)
        return
    if args.outcome or args.label or args.condition:
        print("note: --outcome, --label and --condition apply to --format sft and dpo only", file=sys.stderr)
    _require_study(engine, args.slug)
    r = export_study(engine, args.slug, args.out, _options(args))
    counts = ", ".join(f"{n} {k}" for k, n in r.rows.items())
    print(f"wrote {args.out} ({args.format}, {r.bytes / 1e6:.1f} MB): {counts}")
    if args.include_prolific_ids:
        print(
            f"Prolific ids for payment are in {args.out}/private/prolific_ids.csv: remove that folder before sharing the bundle",
            file=sys.stderr,
        )


def cmd_withdraw(args: argparse.Namespace) -> None:
    """Delete a participant's data after a confirmation."""
    from ..confirmation import confirm
    from ..db import get_engine
    from ..withdraw import find_participants, withdraw

    engine = get_engine()
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        people = find_participants(s, args.participant, args.study)
        summary = ", ".join(f"#{p.id} ({p.kind}, {p.status})" for p in people)
    confirm(f"withdraw deletes every record of {summary}", "withdraw", yes=args.yes)
    r = withdraw(engine, args.participant, slug=args.study, by=os.environ.get("USER", "cli")[:64] or "cli")
    deleted = ", ".join(f"{n} {t}" for t, n in r.rows.items() if n)
    print(f"withdrew {r.participants} participant(s): deleted {deleted}; a withdrawal record (no content) is kept")


def register(sub: Any) -> None:
    """Add ``export`` and ``withdraw`` to the command-line parser."""
    sp = sub.add_parser("export", help="write a study's data as a bundle (Parquet, CSV, JSONL) or training data (SFT, DPO)")
    sp.add_argument("slug")
    sp.add_argument("--out", required=True, help="folder to write (an earlier bundle there is replaced)")
    sp.add_argument("--format", default="parquet", choices=[*FORMATS, "sft", "dpo"])
    sp.add_argument("--participants", default="all", choices=list(PARTICIPANT_KINDS))
    sp.add_argument("--completed-only", action="store_true", help="only participants who completed the study")
    sp.add_argument("--since", help="only participants who arrived on or after this date (YYYY-MM-DD, UTC)")
    sp.add_argument("--include-prolific-ids", action="store_true", help="also write private/prolific_ids.csv for payment")
    sp.add_argument("--outcome", nargs="+", help="sft/dpo: only conversations with these outcomes")
    sp.add_argument(
        "--label",
        nargs="+",
        help="sft/dpo: only conversations with a turn labelled with one of these codes or a repair with this outcome",
    )
    sp.add_argument("--condition", nargs="+", help="sft/dpo: only these conditions")
    sp.add_argument(
        "--label-source",
        choices=["human", "gold", "any"],
        default="any",
        help="dpo: labels that may decide a pair: human (gold or a majority of people), gold, or any (automatic judges too)",
    )
    sp.add_argument(
        "--allow-test-items",
        action="store_true",
        help="sft/dpo: also use items from datasets published for testing only (FalseQA, CLAMBER); warns",
    )
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("withdraw", help="delete every record of a participant who withdrew (keeps only that it happened)")
    sp.add_argument("participant", help="database id or Prolific PID")
    sp.add_argument("--study", help="only within this study (slug)")
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sp.set_defaults(func=cmd_withdraw)
