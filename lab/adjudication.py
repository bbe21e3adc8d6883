"""Adjudication: an experimenter settles turns on which human annotators disagree.

The decision is a label of annotator ``gold`` (with the deciding account), so it supersedes
an earlier decision and keeps its history like any label. :func:`change_rate` reports how
often gold differs from the human majority.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .annotation import GOLD, AnnotationError, check_study_code, is_human, layer_ratings, majority, study_annotation
from .labels import add_label
from .schema import Account, ChatSession, Label, Turn


@dataclass(frozen=True)
class Disagreement:
    """A turn whose human annotators chose different codes on a layer."""

    turn_id: int
    session_id: int
    position: int
    """The turn's index in its conversation."""
    role: str
    content: str
    codes: dict[str, str]
    """annotator → code, humans only."""
    majority: str | None
    gold: str | None
    """The adjudicated code, when decided."""
    auto: dict[str, str]
    """Automatic judges' codes."""


def disagreements(s: Session, slug: str, layer: str, *, include_decided: bool = True) -> list[Disagreement]:
    """Turns where at least two human annotators chose different codes, in conversation order.

    Raises:
        AnnotationError: for a layer the study does not use.
    """
    ratings = layer_ratings(s, slug, layer)
    found = {
        tid: codes
        for tid, codes in ratings.items()
        if len({c for a, c in codes.items() if is_human(a)}) > 1 and (include_decided or GOLD not in codes)
    }
    if not found:
        return []
    turns = {t.id: t for t in s.scalars(select(Turn).where(Turn.id.in_(list(found))))}
    out = []
    for tid, codes in found.items():
        t = turns[tid]
        humans = {a: c for a, c in codes.items() if is_human(a)}
        auto = {a: c for a, c in codes.items() if a.startswith("auto:")}
        out.append(
            Disagreement(
                tid, t.session_id, t.index, t.role, t.content, humans, majority(list(humans.values())), codes.get(GOLD), auto
            )
        )
    return sorted(out, key=lambda d: (d.session_id, d.position))


def adjudicate(s: Session, slug: str, turn_id: int, layer: str, code: str, account_id: int) -> Label:
    """Decide a turn's code on a layer; stored as annotator ``gold`` with the deciding account.

    Raises:
        AnnotationError: for a turn of another study, an unused layer or an unknown code.
    """
    sa = study_annotation(s, slug)
    check_study_code(s, sa, turn_id, layer, code)
    account = s.get(Account, account_id)
    if account is None:
        raise AnnotationError(f"no account #{account_id}")
    codes = layer_ratings(s, slug, layer).get(turn_id, {})
    humans = {a: c for a, c in codes.items() if is_human(a)}
    meta = {
        "decided_by": account.username,
        "majority": majority(list(humans.values())),
        "human_codes": humans,
        "codebook": sa.codebook.version,
    }
    return add_label(s, turn_id, GOLD, layer, code, account_id=account_id, meta=meta)


@dataclass(frozen=True)
class ChangeRate:
    """How often adjudication departs from the human majority on a layer."""

    layer: str
    adjudicated: int
    """Turns with a gold label."""
    with_majority: int
    """Of those, turns whose human annotators had a majority."""
    changed: int
    """Of those, turns where gold differs from the majority."""

    @property
    def rate(self) -> float | None:
        """Share changed: ``changed / with_majority``."""
        return self.changed / self.with_majority if self.with_majority else None


def change_rate(s: Session, slug: str, layer: str) -> ChangeRate:
    """Gold against the human majority on one layer."""
    adjudicated = with_majority = changed = 0
    for codes in layer_ratings(s, slug, layer).values():
        if GOLD not in codes:
            continue
        adjudicated += 1
        maj = majority([c for a, c in codes.items() if is_human(a)])
        if maj is not None:
            with_majority += 1
            changed += maj != codes[GOLD]
    return ChangeRate(layer, adjudicated, with_majority, changed)


@dataclass(frozen=True)
class SideBySide:
    """One turn of a conversation with every annotator's code on a layer."""

    turn_id: int
    position: int
    role: str
    content: str
    codes: dict[str, str]
    """annotator (people, ``auto:`` judges and ``gold``) → code."""


def side_by_side(s: Session, slug: str, session_id: int, layer: str) -> list[SideBySide]:
    """A conversation's turns with each annotator's current code on a layer, for experimenters.

    Raises:
        AnnotationError: for a conversation of another study or an unused layer.
    """
    sa = study_annotation(s, slug)
    if s.scalar(select(ChatSession.study_id).where(ChatSession.id == session_id)) not in sa.study_ids:
        raise AnnotationError(f"conversation {session_id} is not part of study '{slug}'")
    ratings = layer_ratings(s, slug, layer)
    turns = s.scalars(
        select(Turn).where(Turn.session_id == session_id, Turn.role.in_(("user", "assistant"))).order_by(Turn.index)
    )
    return [SideBySide(t.id, t.index, t.role, t.content, ratings.get(t.id, {})) for t in turns]
