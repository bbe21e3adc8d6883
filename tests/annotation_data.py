"""Builds annotated-study data for the annotation tests, the page tests and the benchmark."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.schema import Account, ChatSession, Condition, ItemRow, Participant, Study, Turn
from lab.spec import parse_spec
from lab.studies import load_study

PASSWORD = "correct horse battery"
SPEC = """
slug: blindtest
title: Blinding test study
consent: ok
instructions: ok
models:
  zephyrmodelkey: {model: lab/scripted, params: {script: fixed, reply: "Noted, thanks."}}
  quokkamodelkey: {model: openai/quokka-secret-model, optional: true}
conditions:
  cond-xylophone: {model: zephyrmodelkey, reveal: SHARDED, label: Hidden label one}
  cond-marmalade: {model: zephyrmodelkey, reveal: FULL}
items:
  - id: bake
    kind: sharded
    title: Bakery takings
    shards:
      - {id: 1, text: "How much did the bakery take?"}
      - {id: 2, text: "Muffins cost $3."}
      - {id: 3, text: "They sold 40 muffins."}
    answer: {type: number, value: "120"}
annotation:
  layers: [G, R, S]
  annotators_per_turn: 2
  prelabels: shown
"""


def load(s: Session, spec: str = SPEC) -> Study:
    """Load a study spec (YAML text)."""
    return load_study(s, parse_spec(spec, "spec.yaml", Path("."))).study


@cache
def _password_hash() -> str:
    from lab.accounts import hash_password

    return hash_password(PASSWORD)


def accounts(s: Session, names: list[str], role: str = "annotator") -> list[Account]:
    """Create staff accounts (all with ``PASSWORD``, hashed once: Argon2 is slow on purpose)."""
    rows = [Account(username=n, role=role, password_hash=_password_hash()) for n in names]
    s.add_all(rows)
    s.flush()
    return rows


def conversations(
    s: Session,
    study: Study,
    n: int,
    *,
    turns: int = 4,
    kind: str = "simulated",
    status: str = "ended",
    prolific: str | None = None,
) -> list[int]:
    """``n`` conversations of ``turns`` turns (user, assistant, …) with a system prompt first; returns session ids."""
    conds = s.scalars(select(Condition).where(Condition.study_id == study.id).order_by(Condition.id)).all()
    item = s.scalars(select(ItemRow).where(ItemRow.study_id == study.id)).first()
    assert item is not None
    ids = []
    for i in range(n):
        cond = conds[i % len(conds)]
        p = Participant(study_id=study.id, kind=kind, status="completed", prolific_pid=f"{prolific}{i}" if prolific else None)
        s.add(p)
        s.flush()
        chat = ChatSession(
            study_id=study.id,
            participant_id=p.id,
            item_id=item.id,
            condition_id=cond.id,
            model="lab/scripted",
            model_params={},
            status=status,
        )
        s.add(chat)
        s.flush()
        rows: list[dict[str, Any]] = [
            {"session_id": chat.id, "index": 0, "role": "system", "source": "lab", "content": f"system prompt of {cond.key}"}
        ]
        for t in range(turns):
            user = t % 2 == 0
            rows.append(
                {
                    "session_id": chat.id,
                    "index": t + 1,
                    "role": "user" if user else "assistant",
                    "source": "simulator" if user else "model",
                    "content": f"user message {t}" if user else f"assistant reply {t}: which one do you mean?",
                    "shards": [t // 2 + 1] if user else None,
                    "model": None if user else "lab/scripted",
                }
            )
        s.execute(Turn.__table__.insert(), rows)
        ids.append(chat.id)
    s.flush()
    return ids


def shown_turns(s: Session, session_id: int) -> list[Turn]:
    """User and assistant turns of a conversation in order."""
    return list(
        s.scalars(select(Turn).where(Turn.session_id == session_id, Turn.role.in_(("user", "assistant"))).order_by(Turn.index))
    )
