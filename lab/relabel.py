"""Batch relabelling: one judge labels every turn of a study, resumably.

Every label is an ``auto:<judge>`` label (``auto:rules``, ``auto:llm:<model>``) that
supersedes the same judge's older label on that turn and layer; human labels are never
read or written. Work is committed one conversation at a time, so a stopped run keeps
what it finished and ``only_missing`` continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from .errors import require_known
from .items import Item, PresuppositionItem, parse_item
from .judge import (
    GROUNDING_VERSION,
    REPAIR_VERSION,
    Judgement,
    LLMJudge,
    RepairCandidate,
    RuleJudge,
    TurnText,
    find_repairs,
    get_judge,
    judge_annotator,
)
from .labels import add_label, store_judgement
from .schema import ChatSession, Condition, ItemRow, Label, RepairSequence, Study, Turn
from .spec import study_from_normalized
from .studies import no_study

LAYERS: tuple[str, ...] = ("S", "P", "G", "R")
"""Layers a batch run can label."""

DEFAULT_LAYERS: tuple[str, ...] = ("S", "P")
"""Layers labelled when none are named: the ones every reply gets when it is written."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after each conversation."""


@dataclass
class RelabelRun:
    """What a batch run did."""

    annotator: str
    """The annotator its labels are stored under (R candidates are always ``auto:rules``)."""

    layers: tuple[str, ...]
    """Layers it labelled."""

    conversations: int = 0
    """Conversations of the study."""

    units: int = 0
    """Turn × layer pairs in scope (R: one per conversation)."""

    labelled: int = 0
    """Labels written (abstentions included)."""

    abstained: int = 0
    """Labels written with code ``UNSURE``."""

    skipped: int = 0
    """Units left alone because this judge version had labelled them (``only_missing``)."""

    failed: int = 0
    """Units the judge could not label (a failed model call); nothing is written for them."""

    sequences: int = 0
    """Repair-sequence candidates stored (layer R)."""

    replies: int = 0
    """Assistant replies in scope (error turns excluded)."""

    replies_labelled: int = 0
    """Replies whose layer-S label was written by this run."""

    replies_failed: int = 0
    """Replies the judge could not label on layer S."""

    errors: list[str] = field(default_factory=list)
    """The first few failure messages, for the report."""


def resolve_judge(spec: Any, model: str | None) -> Any:
    """The judge a run uses: ``model`` (a model id of the spec, or a litellm string), else the spec's judge, else rules."""
    key = model or spec.judge.model
    if key is not None and key in spec.models:
        return LLMJudge(spec.models[key].model, spec.models[key].params)
    return get_judge(key) if key else RuleJudge()


def relabel_study(
    engine: Engine,
    slug: str,
    model: str | None = None,
    *,
    layers: Sequence[str] = DEFAULT_LAYERS,
    only_missing: bool = False,
    progress: Progress | None = None,
    judge: Any | None = None,
) -> RelabelRun:
    """Label every turn of a study (all its versions) with one judge.

    Args:
        engine: The lab database.
        slug: The study.
        model: A model id of the study's spec or a litellm string for the LLM judge; None
            uses the spec's ``judge.model``, and without one the rule judge.
        layers: Which of S, P, G, R to label. S and P label assistant replies (P only in
            conversations about presupposition items); G labels user and assistant turns;
            R stores rule-found repair-sequence candidates (always by rules).
        only_missing: Skip turns this judge version already labelled on a layer (how a
            stopped run is continued); otherwise every turn is labelled again.
        progress: Called with (conversations done, conversations) after each conversation.
        judge: A judge object to use instead of resolving one (tests pass a fake here).

    Returns:
        Counts of what was written.

    Raises:
        UnknownStudy: no study has this slug.
        UnknownName: an unknown layer.
    """
    require_known("layer", layers, LAYERS)
    wanted = tuple(layer for layer in LAYERS if layer in set(layers))
    with Session(engine) as s:
        studies = s.scalars(select(Study).where(Study.slug == slug).order_by(Study.version)).all()
        if not studies:
            raise no_study(s, slug)
        if judge is None:
            judge = resolve_judge(study_from_normalized(studies[-1].spec).spec, model)
        annotator = judge_annotator(judge.name, judge.model)
        sessions = s.execute(
            select(ChatSession.id, ItemRow.payload, ItemRow.key, Condition.presupposition)
            .join(ItemRow, ChatSession.item_id == ItemRow.id)
            .join(Condition, ChatSession.condition_id == Condition.id)
            # Rollouts are continuations for scoring, not replies to judge; branches are judged.
            .where(ChatSession.study_id.in_([st.id for st in studies]), ChatSession.kind != "rollout")
            .order_by(ChatSession.id)
        ).all()
    run = RelabelRun(annotator, wanted, conversations=len(sessions))
    versions = _versions(judge)
    for done, (session_id, payload, key, presupposition) in enumerate(sessions, start=1):
        item = parse_item(payload, key)
        with Session(engine) as s, s.begin():
            turns = s.execute(
                select(Turn.id, Turn.role, Turn.content, Turn.error).where(Turn.session_id == session_id).order_by(Turn.index)
            ).all()
            talk = [t for t in turns if t.role in ("user", "assistant") and t.error is None]
            existing = _labelled(s, Label, [t.id for t in talk], annotator, versions) if only_missing else set()
            previous = ""
            last_role = ""
            for t in talk:
                before = previous if last_role and last_role != t.role else ""
                units = _turn_units(judge, wanted, t.role, t.content, item, presupposition, before)
                previous, last_role = t.content, t.role
                run.replies += t.role == "assistant"
                _label_turn(s, run, t.id, t.content, units, existing)
            if "R" in wanted:
                _store_repairs(s, run, session_id, talk)
        if progress is not None:
            progress(done, len(sessions))
    return run


def _turn_units(
    judge: Any, wanted: tuple[str, ...], role: str, content: str, item: Item, presupposition: str | None, before: str
) -> list[tuple[str, Callable[[], Judgement]]]:
    """The judge's calls one turn needs, by layer: S and P for replies, G for both speakers.

    Args:
        judge: The judge.
        wanted: The layers asked for.
        role: ``user`` or ``assistant``.
        content: The turn's text.
        item: The conversation's item.
        presupposition: The condition's presupposition setting (``loaded``, ``control`` or None).
        before: The other speaker's turn just before it ("" when the same speaker spoke last).
    """
    units: list[tuple[str, Callable[[], Judgement]]] = []
    if role == "assistant" and "S" in wanted:
        units.append(("S", partial(judge.classify, content, item=item)))
    if role == "assistant" and "P" in wanted and isinstance(item, PresuppositionItem):
        control = presupposition == "control"
        units.append(("P", partial(judge.classify_presupposition, item, content, control)))
    if "G" in wanted:
        units.append(("G", partial(judge.classify_grounding, content, speaker=role, previous=before)))
    return units


def _label_turn(
    s: Session,
    run: RelabelRun,
    turn_id: int,
    content: str,
    units: list[tuple[str, Callable[[], Judgement]]],
    existing: set[tuple[int, str]],
) -> None:
    """Run the turn's judge calls and store their labels, counting what happened in ``run``."""
    for layer, label in units:
        run.units += 1
        if (turn_id, layer) in existing:
            run.skipped += 1
            continue
        j = label()
        if j.error:
            if layer == "G" and not (content or "").strip():
                continue  # an empty turn has no act to label
            run.failed += 1
            run.replies_failed += layer == "S"
            if len(run.errors) < 5:
                run.errors.append(f"turn {turn_id} layer {layer}: {j.error}")
            continue
        store_judgement(s, turn_id, j)
        run.labelled += 1
        run.replies_labelled += layer == "S"
        run.abstained += j.abstained


def _store_repairs(s: Session, run: RelabelRun, session_id: int, talk: Sequence[Any]) -> None:
    """Replace the conversation's rule-found repair-sequence candidates with newly found ones."""
    run.units += 1
    candidates = find_repairs([TurnText(t.id, t.role, t.content) for t in talk])
    s.execute(delete(RepairSequence).where(RepairSequence.session_id == session_id, RepairSequence.annotator == "auto:rules"))
    for c in candidates:
        _store_candidate(s, session_id, c, add_label, RepairSequence)
        run.sequences += 1


def _versions(judge: Any) -> dict[str, str]:
    if judge.name == "rules":
        return {"S": judge.version, "P": judge.version, "G": GROUNDING_VERSION}
    grounding = getattr(judge, "grounding_version", judge.version)
    return {"S": judge.version, "P": judge.version, "G": grounding}


def _labelled(s: Session, label: Any, turn_ids: list[int], annotator: str, versions: dict[str, str]) -> set[tuple[int, str]]:
    """(turn, layer) pairs whose latest label by this annotator was made by the current judge version."""
    if not turn_ids:
        return set()
    rows = s.execute(
        select(label.id, label.turn_id, label.layer, label.meta)
        .where(label.turn_id.in_(turn_ids), label.annotator == annotator)
        .order_by(label.id)
    ).all()
    latest: dict[tuple[int, str], Any] = {}
    for row in rows:
        latest[(row.turn_id, row.layer)] = row.meta
    return {key for key, meta in latest.items() if (meta or {}).get("version") == versions.get(key[1])}


def _store_candidate(s: Session, session_id: int, c: RepairCandidate, add_label: Any, sequence: Any) -> None:
    s.add(
        sequence(
            session_id=session_id,
            annotator="auto:rules",
            trouble_turn_id=c.trouble_turn_id,
            initiation_turn_id=c.initiation_turn_id,
            repair_turn_id=c.repair_turn_id,
            initiation=c.initiation,
            initiator=c.initiator,
            outcome=c.outcome,
        )
    )
    meta = {
        "judge": "rules",
        "version": REPAIR_VERSION,
        "model": None,
        "rules": [c.rule],
        "reason": f"{c.initiation} by the {c.initiator} (rule {c.rule}); a candidate for a person to confirm.",
        "repair_turn_id": c.repair_turn_id,
        "outcome": c.outcome,
    }
    add_label(
        s,
        c.initiation_turn_id,
        "auto:rules",
        "R",
        c.initiation,
        confidence=c.confidence,
        meta=meta,
        target_turn_id=c.trouble_turn_id,
    )


@dataclass(frozen=True)
class JudgeRun:
    """What :func:`judge_study` did."""

    judge: str
    turns: int
    labelled: int
    failed: int


def judge_study(engine: Engine, slug: str, model: str | None = None, *, redo: bool = False) -> JudgeRun:
    """Label every assistant reply of a study on layers S and P (see :func:`relabel_study`).

    Args:
        engine: The lab database.
        slug: The study.
        model: A model id of the study's spec or a litellm string for the LLM judge; None
            uses the spec's ``judge.model``, and without one the rule-based judge.
        redo: Label turns again even when this judge version already labelled them.

    Returns:
        Counts of replies, by their layer-S label; replies the judge could not label are
        counted as failed and left unlabelled.
    """
    run = relabel_study(engine, slug, model, layers=("S", "P"), only_missing=not redo)
    return JudgeRun(run.annotator, run.replies, run.replies_labelled, run.replies_failed)
