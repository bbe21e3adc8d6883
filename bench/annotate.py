"""How fast the annotation workbench answers with a large study in the database.

Prints figures, not a test. Builds a study with 10,000 finished conversations of 40 turns
(400,000 turns), assigns five annotators at two per conversation, and stores 200,000 human
labels (layer G, two annotators on every turn of 2,500 conversations) plus one automatic
label per assistant turn of those. Then measures, on SQLite and (with ``--postgres URL`` or
``TEST_DATABASE_URL``) on Postgres:

- claiming the next conversation (``lab.annotation.claim_next``, each in its own
  transaction, then marking it done so the next call claims a new one): median server
  time, target ≤ 50 ms, and its ratio to one indexed ``SELECT`` of the same slot row;
- the labelling screen's data (``lab.annotation.conversation_view``): median, target
  ≤ 50 ms, and its ratio to one indexed ``SELECT`` of the conversation's turns;
- every agreement figure of the study (``lab.agreement.study_agreement``: all layers,
  per code, 1,000 bootstrap resamples): target ≤ 2 s.

Usage: ``python bench/annotate.py [--conversations N] [--turns T] [--samples K] [--postgres URL] [--sqlite-only]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sqlalchemy import Engine, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

SPEC = """
slug: bench-annotate
title: Annotation benchmark
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted}
conditions:
  a: {model: bot, reveal: SHARDED}
  b: {model: bot, reveal: FULL}
items:
  - id: t
    kind: sharded
    title: Task
    shards: [{id: 1, text: "First piece."}, {id: 2, text: "Second piece."}]
    answer: {type: number, value: "1"}
annotation:
  layers: [G, R, P, S]
  annotators_per_turn: 2
"""
ANNOTATORS = ("ada", "bo", "cy", "dee", "eli")
G_CODES = ("ACK", "CLARIFY", "CHECK", "FOLLOWUP", "DISPLAY", "NONE")


def build(engine: Engine, conversations: int, turns: int, labelled: int) -> dict[str, int]:
    """The study, its conversations and turns, the accounts, the placement and the labels; returns account ids."""
    import random

    from lab import annotation as ann
    from lab.accounts import hash_password
    from lab.schema import Account, ChatSession, Condition, ItemRow, Label, Participant, Turn
    from lab.spec import parse_spec
    from lab.studies import load_study

    rng = random.Random(1)
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(SPEC, "bench.yaml", ROOT)).study
        conds = s.scalars(select(Condition.id).where(Condition.study_id == study.id)).all()
        item = s.scalar(select(ItemRow.id).where(ItemRow.study_id == study.id))
        pw = hash_password("bench password 1")
        s.add_all([Account(username=n, role="annotator", password_hash=pw) for n in ANNOTATORS])
        study_id = study.id
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            Participant.__table__.insert(),
            [{"study_id": study_id, "kind": "simulated", "status": "completed"} for _ in range(conversations)],
        )
        pids = conn.execute(select(Participant.id).order_by(Participant.id)).scalars().all()
        conn.execute(
            ChatSession.__table__.insert(),
            [
                {
                    "study_id": study_id,
                    "participant_id": pid,
                    "item_id": item,
                    "condition_id": conds[i % 2],
                    "model": "lab/scripted",
                    "model_params": {},
                    "status": "ended",
                }
                for i, pid in enumerate(pids)
            ],
        )
        sids = conn.execute(select(ChatSession.id).order_by(ChatSession.id)).scalars().all()
        batch: list[dict[str, Any]] = []
        for sid in sids:
            for t in range(turns):
                user = t % 2 == 0
                batch.append(
                    {
                        "session_id": sid,
                        "index": t,
                        "role": "user" if user else "assistant",
                        "source": "simulator" if user else "model",
                        "content": f"Message {t} of the conversation, with a few words in it to be realistic about size.",
                        "shards": [1] if t == 0 else None,
                        "partial": False,
                    }
                )
            if len(batch) >= 20_000:
                conn.execute(Turn.__table__.insert(), batch)
                batch = []
        if batch:
            conn.execute(Turn.__table__.insert(), batch)
    print(f"  built {conversations:,} conversations × {turns} turns in {time.perf_counter() - t0:.1f} s")
    with Session(engine) as s, s.begin():
        t0 = time.perf_counter()
        ann.assign(s, "bench-annotate", list(ANNOTATORS), 2)
        ids = {a.username: a.id for a in s.scalars(select(Account))}
        print(
            f"  placed {conversations:,} conversations with 2 of {len(ANNOTATORS)} annotators in {time.perf_counter() - t0:.2f} s"
        )
    t0 = time.perf_counter()
    with engine.begin() as conn:
        from lab.schema import AnnotationSlot

        holders: dict[int, list[int]] = {}
        for sid, acc in conn.execute(
            select(AnnotationSlot.session_id, AnnotationSlot.account_id).where(AnnotationSlot.session_id.in_(sids[:labelled]))
        ):
            holders.setdefault(sid, []).append(acc)
        names = {v: k for k, v in ids.items()}
        turn_rows = conn.execute(select(Turn.id, Turn.session_id, Turn.role).where(Turn.session_id.in_(sids[:labelled]))).all()
        labels: list[dict[str, Any]] = []
        for tid, sid, role in turn_rows:
            truth = rng.choice(G_CODES)
            for acc in holders[sid]:
                code = truth if rng.random() < 0.8 else rng.choice(G_CODES)
                labels.append(
                    {
                        "turn_id": tid,
                        "annotator": names[acc],
                        "account_id": acc,
                        "layer": "G",
                        "code": code,
                        "meta": {"codebook": "codebook-1"},
                    }
                )
            if role == "assistant":
                labels.append(
                    {
                        "turn_id": tid,
                        "annotator": "auto:rules-g",
                        "account_id": None,
                        "layer": "G",
                        "code": truth if rng.random() < 0.6 else "NONE",
                        "meta": None,
                    }
                )
            if len(labels) >= 20_000:
                conn.execute(Label.__table__.insert(), labels)
                labels = []
        if labels:
            conn.execute(Label.__table__.insert(), labels)
        human = conn.execute(text("SELECT count(*) FROM label WHERE account_id IS NOT NULL")).scalar()
        total = conn.execute(text("SELECT count(*) FROM label")).scalar()
    print(f"  stored {human:,} human labels ({total:,} with automatic ones) in {time.perf_counter() - t0:.1f} s")
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return ids


def timed(fn: Callable[[], Any], samples: int) -> list[float]:
    """Milliseconds per call."""
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(engine: Engine, ids: dict[str, int], samples: int) -> None:
    """The three figures, printed."""
    from lab import annotation as ann
    from lab.agreement import study_agreement
    from lab.schema import AnnotationSlot, Turn

    who = ids["cy"]
    claimed: list[int] = []

    def claim() -> None:
        with Session(engine) as s, s.begin():
            slot = ann.claim_next(s, "bench-annotate", who)
            assert slot is not None
            claimed.append(slot.id)
            ann.finish(s, slot.id, who)

    def claim_select() -> None:
        with Session(engine) as s, s.begin():
            s.scalar(
                select(AnnotationSlot)
                .where(
                    AnnotationSlot.study_slug == "bench-annotate",
                    AnnotationSlot.account_id == who,
                    AnnotationSlot.status == "open",
                )
                .order_by(AnnotationSlot.session_id)
                .limit(1)
            )

    claim()  # warm the connection pool and caches
    claim_ms = statistics.median(timed(claim, samples))
    base_ms = statistics.median(timed(claim_select, samples))
    print(
        f"  claim next conversation: median {claim_ms:.1f} ms (target ≤ 50) — "
        f"{claim_ms / base_ms:.1f}× one indexed SELECT of the slot ({base_ms:.2f} ms)"
    )

    slots = iter(claimed * 2)
    session_of = {}
    with Session(engine) as s:
        for sid, slot_id in s.execute(select(AnnotationSlot.session_id, AnnotationSlot.id).where(AnnotationSlot.id.in_(claimed))):
            session_of[slot_id] = sid

    def screen() -> None:
        with Session(engine) as s:
            view = ann.conversation_view(s, next(slots), who)
            assert view.turns

    sessions = iter(list(session_of.values()) * 2)

    def screen_select() -> None:
        with Session(engine) as s:
            s.scalars(select(Turn).where(Turn.session_id == next(sessions)).order_by(Turn.index)).all()

    screen_ms = statistics.median(timed(screen, samples))
    base_ms = statistics.median(timed(screen_select, samples))
    print(
        f"  labelling screen data: median {screen_ms:.1f} ms (target ≤ 50) — "
        f"{screen_ms / base_ms:.1f}× one indexed SELECT of the conversation's turns ({base_ms:.2f} ms)"
    )

    t0 = time.perf_counter()
    with Session(engine) as s:
        rows = study_agreement(s, "bench-annotate")
    agree_s = time.perf_counter() - t0
    units = max((r.units for r in rows if r.comparison == "humans"), default=0)
    alpha = next((r.value for r in rows if r.comparison == "humans" and r.code == "(all)" and r.measure == "alpha"), None)
    print(
        f"  all agreement figures: {agree_s:.2f} s (target ≤ 2) — {len(rows)} figures with 1,000-resample intervals, "
        f"{units:,} units, α = {alpha:.3f}"
    )


def run(url: str, name: str, args: argparse.Namespace) -> None:
    """Build and measure on one database."""
    from lab.db import make_engine, migrate

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrate(engine)
    print(f"{name}:")
    ids = build(engine, args.conversations, args.turns, args.labelled)
    measure(engine, ids, args.samples)
    engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--labelled", type=int, default=2_500, help="conversations whose turns both annotators labelled (layer G)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"), help="a Postgres URL whose schema may be dropped")
    p.add_argument("--sqlite-only", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.db", "SQLite", args)
    if args.postgres and not args.sqlite_only:
        run(args.postgres, "Postgres", args)
    elif not args.sqlite_only:
        print("Postgres: skipped (set TEST_DATABASE_URL or pass --postgres URL)")


if __name__ == "__main__":
    main()
