"""The annotation work queue, the labelling screen's data, repair sequences, gold checks and resolved labels.

The unit of work is a conversation (a chat session). When annotators are assigned to a
study, every conversation in the study's annotation scope gets ``k`` places
(:class:`~lab.schema.AnnotationSlot`), each reserved for a different annotator, chosen as
the least loaded of those assigned: so each conversation reaches exactly ``k`` distinct
annotators and the work is spread evenly (loads differ by at most one). Conversations that
arrive later are placed the same way the next time anyone asks for work. A claimed
conversation left untouched for ``annotation.claim_minutes`` goes back to the pool: any
assigned annotator who holds no place on it may take it over.

Labels are written through :func:`lab.labels.add_label`, so a later choice supersedes an
earlier one and the history stays. Each write first touches the annotator's place on the
conversation, which takes that row's write lock on both databases: a double click and two
browser tabs of one annotator are therefore serialised, and the second identical choice
writes nothing.

Blinding: :func:`conversation_view` returns only what an annotator may see — user and
assistant turns, the shards revealed so far, the annotator's own labels and, when the study
shows them, automatic pre-labels under a neutral name.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Update, and_, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .codebook import Codebook, Layer, codebook_for
from .errors import LabError
from .labels import add_label
from .schema import (
    Account,
    AnnotationAssignment,
    AnnotationCheck,
    AnnotationSlot,
    ChatSession,
    Condition,
    ItemRow,
    Label,
    Participant,
    RepairSequence,
    Study,
    Turn,
    participant_conversation,
    utcnow,
)
from .studies import no_study

_SLOTS = AnnotationSlot.__table__
GOLD = "gold"
"""Annotator name of adjudicated labels."""
AUTO_PREFIX = "auto:"
"""Annotator names of automatic judges start with this."""
SHOWN_ROLES = ("user", "assistant")
"""Turn roles annotators see; system prompts and mediator turns would reveal the condition."""
ANNOTATOR_ROLES = ("annotator", "admin")


class AnnotationError(LabError, ValueError):
    """Input the workbench refuses; the message says what is wrong and nothing was written."""


class NotYours(LabError, PermissionError):
    """The conversation, label or sequence belongs to someone else (or to no one you may see)."""

    def __init__(self, what: str = "this conversation") -> None:
        super().__init__(f"{what} is not yours")


def is_human(annotator: str) -> bool:
    """Whether a label's annotator is a person (not a judge, not adjudication)."""
    return not annotator.startswith(AUTO_PREFIX) and annotator != GOLD


# --- study settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyAnnotation:
    """A study's annotation settings, read from its newest version."""

    slug: str
    study_ids: tuple[int, ...]
    """Every version of the study (conversations of all versions are annotated together)."""
    spec: Any
    """The spec's ``AnnotationSpec``."""
    codebook: Codebook

    @property
    def layers(self) -> list[str]:
        """Layers in use."""
        return list(self.codebook.layers)

    def used_layer(self, layer: str) -> Layer:
        """A layer of the codebook that the study uses.

        Raises:
            AnnotationError: for a layer the study does not use.
        """
        found = self.codebook.layers.get(layer)
        if found is None:
            raise AnnotationError(f"layer '{layer}' is not used in this study (layers: {', '.join(self.layers)})")
        return found


def study_annotation(s: Session, slug: str) -> StudyAnnotation:
    """The annotation settings of a study.

    Raises:
        UnknownStudy: when no study has this slug.
    """
    from .spec import AnnotationSpec

    versions = s.execute(select(Study.id, Study.spec_sha256).where(Study.slug == slug).order_by(Study.version)).all()
    if not versions:
        raise no_study(s, slug)
    key = (slug, tuple(v.id for v in versions), versions[-1].spec_sha256)
    found = _SETTINGS_CACHE.get(key)
    if found is None:
        # A stored spec never changes (a changed spec is a new version), so its parse can be kept.
        stored = s.execute(select(Study.spec).where(Study.id == versions[-1].id)).scalar_one()
        # Only the annotation block: a synthetic study's stored spec has no items or models.
        spec = AnnotationSpec.model_validate((stored or {}).get("annotation") or {})
        found = StudyAnnotation(slug, key[1], spec, codebook_for(spec))
        if len(_SETTINGS_CACHE) > 256:
            _SETTINGS_CACHE.clear()
        _SETTINGS_CACHE[key] = found
    return found


_SETTINGS_CACHE: dict[tuple[str, tuple[int, ...], str], StudyAnnotation] = {}
_SYNCED: dict[tuple[str, str], float] = {}
SYNC_SECONDS = 10.0
"""How long one process trusts its last placement of new conversations before looking again."""


def _scope_query(sa: StudyAnnotation) -> Any:
    scope = sa.spec.scope
    q = select(ChatSession.id).where(ChatSession.study_id.in_(sa.study_ids), participant_conversation())
    if scope.participants != "any":
        q = q.join(Participant, Participant.id == ChatSession.participant_id).where(Participant.kind == scope.participants)
    if scope.completed_only:
        q = q.where(ChatSession.status == "ended")
    if scope.conditions is not None or scope.models is not None:
        q = q.join(Condition, Condition.id == ChatSession.condition_id)
        if scope.conditions is not None:
            q = q.where(Condition.key.in_(scope.conditions))
        if scope.models is not None:
            q = q.where(Condition.model_key.in_(scope.models))
    return q


# --- assignment ------------------------------------------------------------------------------


def annotator_candidates(s: Session, exclude: Iterable[int] = ()) -> list[str]:
    """Usernames of the active annotator accounts, in order, less the accounts in ``exclude``.

    An admin may annotate when assigned on the command line, but the assign box offers the
    people whose work this is; ``exclude`` leaves out those already assigned.
    """
    query = select(Account.username).where(Account.role == "annotator", Account.active)
    left_out = list(exclude)
    if left_out:
        query = query.where(Account.id.not_in(left_out))
    return list(s.scalars(query.order_by(Account.username)))


def assigned(s: Session, slug: str) -> list[AnnotationAssignment]:
    """The study's annotator assignments, oldest first."""
    return list(
        s.scalars(select(AnnotationAssignment).where(AnnotationAssignment.study_slug == slug).order_by(AnnotationAssignment.id))
    )


def assign(
    s: Session,
    slug: str,
    usernames: list[str],
    per_conversation: int | None = None,
    *,
    now: datetime | None = None,
    seed: int | None = None,
) -> list[AnnotationAssignment]:
    """Assign annotators to a study and place its conversations.

    Args:
        s: Open session (the caller commits).
        slug: The study.
        usernames: Annotator accounts to add (already assigned ones are kept).
        per_conversation: Distinct annotators per conversation; default: as already assigned, else
            ``annotation.annotators_per_turn``.
        now: Clock for tests.
        seed: Seeds the draw of who sees pre-labels under ``prelabels: half`` (default: the study's seed).

    Returns:
        Every assignment of the study.

    Raises:
        AnnotationError: for unknown or non-annotator accounts, or more annotators per
            conversation than are assigned.
    """
    sa = study_annotation(s, slug)
    names, accounts = _annotator_accounts(s, usernames)
    rows = assigned(s, slug)
    if per_conversation is not None:
        k = per_conversation
    else:
        k = rows[0].per_conversation if rows else sa.spec.annotators_per_turn
    if k < 1:
        raise AnnotationError("--per-conversation must be at least 1")
    have = {r.account_id for r in rows}
    new = [accounts[n] for n in dict.fromkeys(names) if accounts[n].id not in have]
    if k > len(rows) + len(new):
        raise AnnotationError(
            f"{k} annotators per conversation needs at least {k} assigned annotators; {len(rows) + len(new)} are"
        )
    if (
        rows
        and k != rows[0].per_conversation
        and s.scalar(select(func.count()).select_from(AnnotationSlot).where(AnnotationSlot.study_slug == slug))
    ):
        raise AnnotationError(
            f"conversations of '{slug}' are already placed with {rows[0].per_conversation} annotators each; it cannot change now"
        )
    study_seed = s.scalar(select(Study.seed).where(Study.id == sa.study_ids[-1])) or 0
    rng = random.Random(f"{slug}:{seed if seed is not None else study_seed}:{len(rows)}")
    sees = _who_sees_prelabels(rng, new, rows, sa.spec.prelabels)
    for acc in new:
        s.add(AnnotationAssignment(study_slug=slug, account_id=acc.id, per_conversation=k, sees_prelabels=sees[acc.id]))
        s.flush()
    for r in rows:
        r.per_conversation = k
    s.flush()
    sync_slots(s, slug, now=now)
    if new:
        rebalance(s, slug)
    return assigned(s, slug)


def _annotator_accounts(s: Session, usernames: list[str]) -> tuple[list[str], dict[str, Account]]:
    """The names given (trimmed, blanks left out) and their accounts.

    Raises:
        AnnotationError: no name, an unknown account, or one that is not an active annotator.
    """
    names = [u.strip() for u in usernames if u.strip()]
    if not names:
        raise AnnotationError("no annotators given")
    accounts = {a.username: a for a in s.scalars(select(Account).where(Account.username.in_(names)))}
    unknown = [n for n in names if n not in accounts]
    if unknown:
        raise AnnotationError(f"unknown account(s): {', '.join(unknown)}")
    wrong = [n for n in names if accounts[n].role not in ANNOTATOR_ROLES or not accounts[n].active]
    if wrong:
        raise AnnotationError(f"not an active annotator account: {', '.join(wrong)}")
    return names, accounts


def _who_sees_prelabels(
    rng: random.Random, new: list[Account], rows: list[AnnotationAssignment], prelabels: str
) -> dict[int, bool]:
    """Whether each new annotator sees the automatic pre-labels; under ``half``, the two groups stay even."""
    shown = sum(r.sees_prelabels for r in rows)
    hidden = len(rows) - shown
    draw = list(new)
    rng.shuffle(draw)
    sees: dict[int, bool] = {}
    for acc in draw:
        if prelabels == "half":
            sees[acc.id] = shown < hidden or (shown == hidden and rng.random() < 0.5)
        else:
            sees[acc.id] = prelabels == "shown"
        shown, hidden = shown + sees[acc.id], hidden + (not sees[acc.id])
    return sees


def rebalance(s: Session, slug: str) -> int:
    """Even out the work still to do by handing unopened places to the annotators with least.

    Places reserved for an annotator who has not opened the conversation yet (``open``)
    move, one at a time, from whoever has most still to do (open, claimed or put aside) to
    whoever has least, while the two differ by more than one; an annotator never gets a
    second place on one conversation. So an annotator assigned later gets their share of
    the conversations not yet started. Each move re-checks that the place is still unopened,
    so a conversation opened meanwhile stays with whoever opened it.

    Returns:
        The number of places moved.
    """
    rows = assigned(s, slug)
    order = {r.account_id: i for i, r in enumerate(rows)}
    if len(order) < 2:
        return 0
    places = s.execute(
        select(AnnotationSlot.id, AnnotationSlot.session_id, AnnotationSlot.account_id, AnnotationSlot.status).where(
            AnnotationSlot.study_slug == slug, AnnotationSlot.account_id.is_not(None)
        )
    ).all()
    held: dict[int, set[int]] = {a: set() for a in order}
    todo: Counter[int] = Counter({a: 0 for a in order})
    unopened: dict[int, list[tuple[int, int]]] = {a: [] for a in order}
    for slot_id, session_id, account_id, status in places:
        if account_id not in order:
            continue
        held[account_id].add(session_id)
        if status in ("open", "claimed", "skipped"):
            todo[account_id] += 1
        if status == "open":
            unopened[account_id].append((session_id, slot_id))
    for queue in unopened.values():
        queue.sort()  # the latest conversations move first; the donor keeps the ones next in its queue
    moved = 0
    while True:
        receiver = min(order, key=lambda a: (todo[a], order[a]))
        move = None
        for donor in sorted(order, key=lambda a: (-todo[a], order[a])):
            if todo[donor] - todo[receiver] <= 1:
                break
            queue = unopened[donor]
            move = next(
                ((donor, i, queue[i][0], queue[i][1]) for i in reversed(range(len(queue))) if queue[i][0] not in held[receiver]),
                None,
            )
            if move is not None:
                break
        if move is None:
            return moved
        donor, i, session_id, slot_id = move
        del unopened[donor][i]
        done = _write(
            s,
            _SLOTS.update().where(_SLOTS.c.id == slot_id, _SLOTS.c.account_id == donor, _SLOTS.c.status == "open"),
            {"account_id": receiver},
        )
        if done.rowcount:
            held[donor].discard(session_id)
            held[receiver].add(session_id)
            todo[donor] -= 1
            todo[receiver] += 1
            moved += 1


def sync_slots(s: Session, slug: str, *, now: datetime | None = None) -> int:
    """Place the study's in-scope conversations that have no places yet.

    Each new conversation gets ``k`` places, reserved for the ``k`` least-loaded assigned
    annotators (ties go to the earlier assigned), so loads never differ by more than one
    while no place is taken over. Returns the number of conversations placed.
    """
    rows = assigned(s, slug)
    if not rows:
        return 0
    k = rows[0].per_conversation
    sa = study_annotation(s, slug)
    placed = exists().where(AnnotationSlot.session_id == ChatSession.id)
    new_ids = s.scalars(_scope_query(sa).where(~placed).order_by(ChatSession.id)).all()
    if not new_ids:
        return 0
    load: Counter[int] = Counter(
        {
            account: n
            for account, n in s.execute(
                select(AnnotationSlot.account_id, func.count())
                .where(AnnotationSlot.study_slug == slug, AnnotationSlot.account_id.is_not(None))
                .group_by(AnnotationSlot.account_id)
            )
            if account is not None  # the query leaves out NULL already; this tells the type checker
        }
    )
    order = {r.account_id: i for i, r in enumerate(rows)}
    values = []
    for session_id in new_ids:
        chosen = sorted(order, key=lambda a: (load[a], order[a]))[:k]
        for slot, account_id in enumerate(chosen):
            load[account_id] += 1
            values.append(
                {"study_slug": slug, "session_id": session_id, "slot": slot, "account_id": account_id, "status": "open"}
            )
    try:
        with s.begin_nested():
            s.execute(AnnotationSlot.__table__.insert(), values)
    except IntegrityError:
        # Another request placed some of these conversations first; its placement stands.
        return 0
    return len(new_ids)


# --- the queue -------------------------------------------------------------------------------


def _cutoff(sa: StudyAnnotation, now: datetime) -> datetime:
    return now - timedelta(minutes=sa.spec.claim_minutes)


def _require_assigned(s: Session, slug: str, account_id: int) -> AnnotationAssignment:
    row = s.scalar(
        select(AnnotationAssignment).where(AnnotationAssignment.study_slug == slug, AnnotationAssignment.account_id == account_id)
    )
    if row is None:
        raise NotYours(f"study '{slug}'")
    return row


def studies_for(s: Session, account_id: int) -> list[str]:
    """Slugs of the studies an annotator is assigned to."""
    return list(
        s.scalars(
            select(AnnotationAssignment.study_slug)
            .where(AnnotationAssignment.account_id == account_id)
            .order_by(AnnotationAssignment.study_slug)
        )
    )


def claim_next(s: Session, slug: str, account_id: int, *, now: datetime | None = None) -> AnnotationSlot | None:
    """The conversation an annotator works on next, claimed for them.

    Their open claim first; then the next conversation reserved for them; then one whose
    claim was left longer than ``claim_minutes`` (or freed) and that they hold no place on.
    Returns None when there is nothing left for them.

    Raises:
        NotYours: when the account is not assigned to the study.
    """
    now = now or utcnow()
    _require_assigned(s, slug, account_id)
    sa = study_annotation(s, slug)
    fresh = time.monotonic() - _SYNCED.get((str(s.get_bind().engine.url), slug), float("-inf")) < SYNC_SECONDS
    if not fresh:
        _place(s, slug, now)
    found = _claim(s, sa, slug, account_id, now)
    if found is None and fresh:
        # Nothing left under the recent placement: place any newer conversations and look again.
        _place(s, slug, now)
        found = _claim(s, sa, slug, account_id, now)
    return found


def _place(s: Session, slug: str, now: datetime) -> None:
    sync_slots(s, slug, now=now)
    _SYNCED[(str(s.get_bind().engine.url), slug)] = time.monotonic()


def _claim(s: Session, sa: StudyAnnotation, slug: str, account_id: int, now: datetime) -> AnnotationSlot | None:
    cutoff = _cutoff(sa, now)
    mine = and_(AnnotationSlot.study_slug == slug, AnnotationSlot.account_id == account_id)
    current = s.scalar(
        select(AnnotationSlot)
        .where(mine, AnnotationSlot.status == "claimed", AnnotationSlot.touched_at >= cutoff)
        .order_by(AnnotationSlot.session_id)
        .limit(1)
    )
    if current is not None:
        current.touched_at = now
        s.flush()
        return current
    for _ in range(5):
        slot_id = s.scalar(
            select(AnnotationSlot.id).where(mine, AnnotationSlot.status == "open").order_by(AnnotationSlot.session_id).limit(1)
        )
        if slot_id is None:
            break
        taken = _write(
            s,
            _SLOTS.update().where(_SLOTS.c.id == slot_id, _SLOTS.c.account_id == account_id, _SLOTS.c.status == "open"),
            {"status": "claimed", "claimed_at": now, "touched_at": now},
        )
        if taken.rowcount:
            return _slot(s, slot_id)
    held = select(AnnotationSlot.session_id).where(AnnotationSlot.account_id == account_id)
    stale = or_(
        and_(AnnotationSlot.status.in_(("claimed", "skipped")), AnnotationSlot.touched_at < cutoff),
        and_(AnnotationSlot.status == "open", AnnotationSlot.account_id.is_(None)),
    )
    for _ in range(5):
        slot_id = s.scalar(
            select(AnnotationSlot.id)
            .where(AnnotationSlot.study_slug == slug, stale, AnnotationSlot.session_id.not_in(held))
            .order_by(AnnotationSlot.session_id)
            .limit(1)
        )
        if slot_id is None:
            return None
        try:
            with s.begin_nested():
                taken = _write(
                    s,
                    _SLOTS.update().where(_SLOTS.c.id == slot_id, stale),
                    {"account_id": account_id, "status": "claimed", "claimed_at": now, "touched_at": now, "done_at": None},
                )
        except IntegrityError:
            continue
        if taken.rowcount:
            return _slot(s, slot_id)
    return None


def _write(s: Session, statement: Update, params: dict[str, Any]) -> CursorResult[Any]:
    """Run an UPDATE; its result is a cursor result, which carries the row count."""
    result = s.execute(statement, params)
    assert isinstance(result, CursorResult)
    return result


def _slot(s: Session, slot_id: int) -> AnnotationSlot:
    slot = s.get(AnnotationSlot, slot_id, populate_existing=True)
    assert slot is not None
    return slot


def own_slot(s: Session, slot_id: int, account_id: int, *, now: datetime | None = None, lock: bool = False) -> AnnotationSlot:
    """An annotator's place on a conversation, touched (and write-locked) when ``lock``.

    Raises:
        NotYours: when the place is someone else's, or was taken over after it expired.
    """
    now = now or utcnow()
    if lock:
        done = _write(s, _SLOTS.update().where(_SLOTS.c.id == slot_id, _SLOTS.c.account_id == account_id), {"touched_at": now})
        if not done.rowcount:
            raise NotYours()
        return _slot(s, slot_id)
    slot = s.get(AnnotationSlot, slot_id)
    if slot is None or slot.account_id != account_id:
        raise NotYours()
    return slot


def skip(s: Session, slot_id: int, account_id: int, *, now: datetime | None = None) -> None:
    """Put a conversation aside to come back to (it returns to the pool if left for ``claim_minutes``)."""
    slot = own_slot(s, slot_id, account_id, now=now, lock=True)
    if slot.status != "done":
        slot.status = "skipped"


def resume(s: Session, slot_id: int, account_id: int, *, now: datetime | None = None) -> AnnotationSlot:
    """Come back to a skipped (or finished) conversation."""
    slot = own_slot(s, slot_id, account_id, now=now, lock=True)
    if slot.status in ("skipped", "open"):
        slot.status = "claimed"
        slot.claimed_at = slot.claimed_at or now or utcnow()
    return slot


def finish(s: Session, slot_id: int, account_id: int, *, now: datetime | None = None) -> None:
    """Mark a conversation done for this annotator."""
    slot = own_slot(s, slot_id, account_id, now=now, lock=True)
    slot.status = "done"
    slot.done_at = now or utcnow()


def my_conversations(s: Session, slug: str, account_id: int) -> list[AnnotationSlot]:
    """An annotator's places on a study's conversations (claimed, skipped, done, reserved)."""
    return list(
        s.scalars(
            select(AnnotationSlot)
            .where(AnnotationSlot.study_slug == slug, AnnotationSlot.account_id == account_id)
            .order_by(AnnotationSlot.session_id)
        )
    )


# --- the labelling screen ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnView:
    """One turn as an annotator sees it."""

    id: int
    position: int
    """1-based among the shown turns."""
    role: str
    """user or assistant."""
    content: str
    shards: tuple[str, ...]
    """Texts of the shards the participant had revealed up to and including this turn."""
    new_shards: tuple[str, ...]
    """Shards this turn reveals."""


@dataclass(frozen=True)
class LabelView:
    """An annotator's current label on a turn and layer."""

    code: str
    confidence: float | None
    note: str | None


@dataclass(frozen=True)
class SequenceView:
    """A repair sequence of the annotator."""

    id: int
    trouble_turn_id: int | None
    span: tuple[int, int] | None
    initiation_turn_id: int | None
    initiation: str | None
    repair_turn_id: int | None
    trouble_type: str | None
    outcome: str | None
    initiator: str | None
    turns_to_resolution: int | None


@dataclass
class ConversationView:
    """What the labelling screen shows: nothing about model, condition, participant or other annotators."""

    slot_id: int
    status: str
    title: str
    """The item's title (the task, not the condition)."""
    turns: list[TurnView]
    codebook: Codebook
    labels: dict[tuple[int, str], LabelView] = field(default_factory=dict)
    """(turn id, layer) → the annotator's current label."""
    prelabels: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    """(turn id, layer) → automatic codes, when the study shows them to this annotator."""
    sequences: list[SequenceView] = field(default_factory=list)

    def layers_for(self, turn: TurnView) -> list[str]:
        """Layers that apply to a turn's role."""
        return [k for k, layer in self.codebook.layers.items() if layer.applies(turn.role)]


def conversation_view(s: Session, slot_id: int, account_id: int) -> ConversationView:
    """Everything the labelling screen needs for one of the annotator's conversations.

    Raises:
        NotYours: when the place is not the annotator's.
    """
    slot = own_slot(s, slot_id, account_id)
    sa = study_annotation(s, slot.study_slug)
    chat_item = s.execute(
        select(ItemRow.payload).join(ChatSession, ChatSession.item_id == ItemRow.id).where(ChatSession.id == slot.session_id)
    ).scalar_one()
    shard_text = {sh.get("id"): sh.get("text", "") for sh in (chat_item.get("shards") or []) if isinstance(sh, dict)}
    rows = s.execute(
        select(Turn.id, Turn.role, Turn.content, Turn.shards)
        .where(Turn.session_id == slot.session_id, Turn.role.in_(SHOWN_ROLES))
        .order_by(Turn.index)
    ).all()
    turns: list[TurnView] = []
    revealed: list[str] = []
    for pos, (tid, role, content, shards) in enumerate(rows, start=1):
        new = tuple(shard_text[i] for i in (shards or []) if i in shard_text)
        revealed.extend(new)
        turns.append(TurnView(tid, pos, role, content, tuple(revealed), new))
    turn_ids = [t.id for t in turns]
    title = str(chat_item.get("title") or "Conversation")
    if not sa.spec.blind:
        # An unblinded study (annotation.blind: false) names the condition and the model.
        key, model = s.execute(
            select(Condition.key, ChatSession.model)
            .join(ChatSession, ChatSession.condition_id == Condition.id)
            .where(ChatSession.id == slot.session_id)
        ).one()
        title += f" · {key} · {model}"
    view = ConversationView(slot.id, slot.status, title, turns, sa.codebook)
    me = s.scalar(select(Account.username).where(Account.id == account_id))
    if turn_ids:
        for lab in s.scalars(
            select(Label).where(Label.turn_id.in_(turn_ids), Label.annotator == me, Label.layer.in_(sa.layers)).order_by(Label.id)
        ):
            view.labels[(lab.turn_id, lab.layer)] = LabelView(lab.code, lab.confidence, (lab.meta or {}).get("note"))
        sees = s.scalar(
            select(AnnotationAssignment.sees_prelabels).where(
                AnnotationAssignment.study_slug == slot.study_slug, AnnotationAssignment.account_id == account_id
            )
        )
        if sees:
            auto: dict[tuple[int, str, str], str] = {}
            for tid, annotator, layer, code in s.execute(
                select(Label.turn_id, Label.annotator, Label.layer, Label.code)
                .where(Label.turn_id.in_(turn_ids), Label.annotator.startswith(AUTO_PREFIX), Label.layer.in_(sa.layers))
                .order_by(Label.id)
            ):
                auto[(tid, layer, annotator)] = code
            for (tid, layer, _), code in sorted(auto.items()):
                view.prelabels.setdefault((tid, layer), []).append(code)
    for seq in s.scalars(
        select(RepairSequence)
        .where(RepairSequence.session_id == slot.session_id, RepairSequence.account_id == account_id)
        .order_by(RepairSequence.id)
    ):
        view.sequences.append(_sequence_view(seq))
    return view


def _sequence_view(seq: RepairSequence) -> SequenceView:
    span = (seq.span_start, seq.span_end) if seq.span_start is not None and seq.span_end is not None else None
    return SequenceView(
        seq.id,
        seq.trouble_turn_id,
        span,
        seq.initiation_turn_id,
        seq.initiation,
        seq.repair_turn_id,
        seq.trouble_type,
        seq.outcome,
        seq.initiator,
        seq.turns_to_resolution,
    )


# --- writing labels ----------------------------------------------------------------------------


def _check_code(lay: Layer, code: str) -> None:
    if lay.get(code) is None:
        raise AnnotationError(f"unknown code '{code}' for layer {lay.key} (codes: {', '.join(lay.code_names())})")


def check_study_code(s: Session, sa: StudyAnnotation, turn_id: int, layer: str, code: str) -> None:
    """Check that a turn is one of the study's and that a code of a layer the study uses is given for it.

    Args:
        s: Open session.
        sa: The study's annotation settings.
        turn_id: The turn.
        layer: The layer's key.
        code: The code.

    Raises:
        AnnotationError: for a turn of another study, an unused layer or an unknown code.
    """
    turn = s.get(Turn, turn_id)
    if turn is None or s.scalar(select(ChatSession.study_id).where(ChatSession.id == turn.session_id)) not in sa.study_ids:
        raise AnnotationError(f"turn {turn_id} is not a turn of study '{sa.slug}'")
    _check_code(sa.used_layer(layer), code)


def _turn_of(s: Session, slot: AnnotationSlot, turn_id: int) -> Turn:
    turn = s.get(Turn, turn_id)
    if turn is None or turn.session_id != slot.session_id or turn.role not in SHOWN_ROLES:
        raise AnnotationError(f"turn {turn_id} is not a turn of this conversation")
    return turn


def record_label(
    s: Session,
    slot_id: int,
    account_id: int,
    turn_id: int,
    layer: str,
    code: str,
    *,
    confidence: float | None = None,
    note: str | None = None,
    seconds: float | None = None,
    now: datetime | None = None,
) -> Label | None:
    """Store an annotator's choice on a turn at once; a later choice supersedes it.

    The same choice made again (a double click) writes nothing and returns None.

    Raises:
        NotYours: when the conversation is not the annotator's.
        AnnotationError: for a turn of another conversation, a layer the study does not
            use or that does not apply to the turn, an unknown code, a confidence outside
            0–1 or a note over ``annotation.max_note_chars``.
    """
    slot = own_slot(s, slot_id, account_id, now=now, lock=True)
    sa = study_annotation(s, slot.study_slug)
    turn = _turn_of(s, slot, turn_id)
    lay = sa.used_layer(layer)
    if not lay.applies(turn.role):
        raise AnnotationError(f"layer {layer} applies to {lay.applies_to} turns, not to a {turn.role} turn")
    _check_code(lay, code)
    if confidence is not None and not 0 <= confidence <= 1:
        raise AnnotationError(f"confidence must be between 0 and 1, got {confidence}")
    note = (note or "").strip() or None
    if note is not None and len(note) > sa.spec.max_note_chars:
        raise AnnotationError(f"the note has {len(note)} characters; at most {sa.spec.max_note_chars} are allowed")
    account = s.get(Account, account_id)
    assert account is not None
    latest = s.scalar(
        select(Label)
        .where(Label.turn_id == turn_id, Label.annotator == account.username, Label.layer == layer)
        .order_by(Label.id.desc())
        .limit(1)
    )
    if latest is not None and latest.code == code and latest.confidence == confidence and (latest.meta or {}).get("note") == note:
        return None
    sees = s.scalar(
        select(AnnotationAssignment.sees_prelabels).where(
            AnnotationAssignment.study_slug == slot.study_slug, AnnotationAssignment.account_id == account_id
        )
    )
    meta: dict[str, Any] = {"codebook": sa.codebook.version, "prelabels_shown": bool(sees)}
    if note is not None:
        meta["note"] = note
    if seconds is not None:
        meta["seconds"] = round(max(0.0, float(seconds)), 3)
    if slot.status in ("open", "skipped"):
        slot.status = "claimed"
    return add_label(s, turn_id, account.username, layer, code, confidence=confidence, account_id=account_id, meta=meta)


def label_history(s: Session, turn_id: int, annotator: str, layer: str) -> list[Label]:
    """Every label one annotator gave a turn on a layer, oldest first (the last is current)."""
    return list(
        s.scalars(
            select(Label).where(Label.turn_id == turn_id, Label.annotator == annotator, Label.layer == layer).order_by(Label.id)
        )
    )


# --- repair sequences ----------------------------------------------------------------------------


def save_sequence(
    s: Session,
    slot_id: int,
    account_id: int,
    *,
    trouble_turn_id: int,
    initiation_turn_id: int,
    initiation: str,
    repair_turn_id: int | None = None,
    outcome: str | None = None,
    trouble_type: str | None = None,
    span: tuple[int, int] | None = None,
    sequence_id: int | None = None,
    now: datetime | None = None,
) -> RepairSequence:
    """Create or edit a repair sequence on one of the annotator's conversations.

    The initiation turn also gets the initiation as its layer-R label. An edit keeps the
    earlier values in ``meta["history"]``.

    Raises:
        NotYours: for another annotator's conversation or sequence.
        AnnotationError: for turns outside the conversation, turns out of order, an
            unknown initiation, trouble type or outcome, or a span outside the trouble turn;
            the message starts with the name of the field at fault, as the page labels it.
    """
    now = now or utcnow()
    slot = own_slot(s, slot_id, account_id, now=now, lock=True)
    sa = study_annotation(s, slot.study_slug)
    sa.used_layer("R")
    book = sa.codebook
    trouble = _turn_of(s, slot, trouble_turn_id)
    init = _turn_of(s, slot, initiation_turn_id)
    rep = _turn_of(s, slot, repair_turn_id) if repair_turn_id is not None else None
    _check_sequence(book, trouble, init, rep, initiation, outcome, trouble_type, span)
    account = s.get(Account, account_id)
    assert account is not None
    values: dict[str, Any] = {
        "trouble_turn_id": trouble.id,
        "initiation_turn_id": init.id,
        "repair_turn_id": rep.id if rep else None,
        "initiation": initiation,
        "initiator": init.role,
        "trouble_type": trouble_type,
        "outcome": outcome,
        "turns_to_resolution": (rep.index - init.index) if rep is not None else None,
        "span_start": span[0] if span else None,
        "span_end": span[1] if span else None,
    }
    if sequence_id is None:
        seq = RepairSequence(
            session_id=slot.session_id,
            annotator=account.username,
            account_id=account_id,
            meta={"codebook": book.version},
            **values,
        )
        s.add(seq)
    else:
        seq = _edit_sequence(s, sequence_id, account_id, slot.session_id, values, book.version, now)
    s.flush()
    record_label(s, slot_id, account_id, init.id, "R", initiation, now=now)
    return seq


def _check_sequence(
    book: Codebook,
    trouble: Turn,
    init: Turn,
    rep: Turn | None,
    initiation: str,
    outcome: str | None,
    trouble_type: str | None,
    span: tuple[int, int] | None,
) -> None:
    """Refuse codes the codebook does not have, turns out of order and a span outside the trouble turn.

    Raises:
        AnnotationError: starting with the name of the field at fault, as the page labels it.
    """
    r_codes = [c for c in book.layers["R"].code_names() if c != "NONE"]
    if initiation not in r_codes:
        raise AnnotationError(f"Initiation type: unknown '{initiation}' (codes: {', '.join(r_codes)})")
    if outcome is not None and outcome not in book.outcome_names():
        raise AnnotationError(f"Outcome: unknown '{outcome}' (outcomes: {', '.join(book.outcome_names())})")
    if trouble_type is not None and trouble_type not in book.trouble_types:
        raise AnnotationError(f"Trouble type: unknown '{trouble_type}' (types: {', '.join(book.trouble_types)})")
    if init.index < trouble.index:
        raise AnnotationError(
            "Initiation turn: it comes before the trouble source; choose the trouble-source turn or a later one"
        )
    if rep is not None and rep.index < init.index:
        raise AnnotationError("Repair turn: it comes before the initiation; choose the initiation turn or a later one")
    if span is not None and not (0 <= span[0] < span[1] <= len(trouble.content)):
        raise AnnotationError(
            f"Trouble span: {span[0]}–{span[1]} is outside the trouble source's text ({len(trouble.content)} characters)"
        )


def _edit_sequence(
    s: Session,
    sequence_id: int,
    account_id: int,
    session_id: int,
    values: dict[str, Any],
    codebook_version: str,
    now: datetime,
) -> RepairSequence:
    """Change the annotator's sequence to ``values``, keeping what it was in ``meta["history"]``.

    Raises:
        NotYours: for another annotator's sequence or one of another conversation.
    """
    found = s.get(RepairSequence, sequence_id)
    if found is None or found.account_id != account_id or found.session_id != session_id:
        raise NotYours("this repair sequence")
    seq = found
    before = {k: getattr(seq, k) for k in values}
    if before != values:
        history = list((seq.meta or {}).get("history", []))
        history.append(before | {"changed_at": now.isoformat()})
        seq.meta = dict(seq.meta or {}) | {"history": history, "codebook": codebook_version}
        for k, v in values.items():
            setattr(seq, k, v)
        seq.updated_at = now
    return seq


# --- gold checks and progress ----------------------------------------------------------------------


def set_check(s: Session, slug: str, turn_id: int, layer: str, code: str, account_id: int | None) -> AnnotationCheck:
    """Mark a turn's known answer on a layer (replacing an earlier check on it).

    Raises:
        AnnotationError: for a turn of another study, an unused layer or an unknown code.
    """
    check_study_code(s, study_annotation(s, slug), turn_id, layer, code)
    row = s.scalar(select(AnnotationCheck).where(AnnotationCheck.turn_id == turn_id, AnnotationCheck.layer == layer))
    if row is None:
        row = AnnotationCheck(turn_id=turn_id, layer=layer, code=code, account_id=account_id)
        s.add(row)
    else:
        row.code, row.account_id, row.created_at = code, account_id, utcnow()
    s.flush()
    return row


@dataclass(frozen=True)
class AnnotatorProgress:
    """One annotator's work on a study."""

    username: str
    conversations: int
    """Places held."""
    done: int
    claimed: int
    skipped: int
    labels: int
    """Current labels (one per turn and layer)."""
    checks: int
    """Gold-check turns they labelled."""
    correct: int
    """Of those, labelled as the check says."""
    sees_prelabels: bool

    @property
    def accuracy(self) -> float | None:
        """Share correct on gold checks, None before any."""
        return self.correct / self.checks if self.checks else None


@dataclass(frozen=True)
class StudyProgress:
    """A study's annotation progress."""

    conversations: int
    """In scope."""
    placed: int
    """With places reserved for annotators."""
    complete: int
    """Done by k annotators."""
    per_conversation: int | None
    annotators: list[AnnotatorProgress]


def progress(s: Session, slug: str, *, now: datetime | None = None) -> StudyProgress:
    """Progress per annotator and for the study, with gold-check accuracy."""
    sa = study_annotation(s, slug)
    rows = assigned(s, slug)
    k = rows[0].per_conversation if rows else None
    total = s.scalar(select(func.count()).select_from(_scope_query(sa).subquery())) or 0
    placed = s.scalar(select(func.count(func.distinct(AnnotationSlot.session_id))).where(AnnotationSlot.study_slug == slug)) or 0
    done_per = s.execute(
        select(AnnotationSlot.session_id, func.count())
        .where(AnnotationSlot.study_slug == slug, AnnotationSlot.status == "done")
        .group_by(AnnotationSlot.session_id)
    ).all()
    complete = sum(1 for _, n in done_per if k is not None and n >= k)
    status_counts: dict[tuple[int, str], int] = {
        (a, st): n
        for a, st, n in s.execute(
            select(AnnotationSlot.account_id, AnnotationSlot.status, func.count())
            .where(AnnotationSlot.study_slug == slug)
            .group_by(AnnotationSlot.account_id, AnnotationSlot.status)
        )
        if a is not None
    }
    names = dict(s.execute(select(Account.id, Account.username).where(Account.id.in_([r.account_id for r in rows]))).all())
    current = _current_labels(s, sa, None, humans_only=True)
    checks = {
        (t, layer): code
        for t, layer, code in s.execute(select(AnnotationCheck.turn_id, AnnotationCheck.layer, AnnotationCheck.code))
    }
    out = []
    for r in rows:
        name = names.get(r.account_id, f"#{r.account_id}")
        mine = {(t, layer): code for (t, layer, a), code in current.items() if a == name}
        checked = [key for key in checks if key in mine]
        out.append(
            AnnotatorProgress(
                name,
                sum(n for (a, _), n in status_counts.items() if a == r.account_id),
                status_counts.get((r.account_id, "done"), 0),
                status_counts.get((r.account_id, "claimed"), 0),
                status_counts.get((r.account_id, "skipped"), 0),
                len(mine),
                len(checked),
                sum(1 for key in checked if mine[key] == checks[key]),
                r.sees_prelabels,
            )
        )
    return StudyProgress(total, placed, complete, k, out)


# --- reading labels --------------------------------------------------------------------------------


def _current_labels(
    s: Session, sa: StudyAnnotation, layer: str | None, *, humans_only: bool = False
) -> dict[tuple[int, str, str], str]:
    """(turn id, layer, annotator) → current code, for every turn of the study."""
    q = (
        select(Label.turn_id, Label.layer, Label.annotator, Label.code)
        .join(Turn, Turn.id == Label.turn_id)
        .join(ChatSession, ChatSession.id == Turn.session_id)
        .where(ChatSession.study_id.in_(sa.study_ids), participant_conversation())
        .order_by(Label.id)
    )
    if layer is not None:
        q = q.where(Label.layer == layer)
    if humans_only:
        q = q.where(Label.account_id.is_not(None), Label.annotator != GOLD)
    out: dict[tuple[int, str, str], str] = {}
    for tid, lay, annotator, code in s.execute(q):
        out[(tid, lay, annotator)] = code
    return out


def layer_ratings(s: Session, slug: str, layer: str) -> dict[int, dict[str, str]]:
    """Ratings on one layer: turn id → {annotator: current code}, over all versions of a study.

    Raises:
        AnnotationError: for a layer the study does not use.
    """
    sa = study_annotation(s, slug)
    sa.used_layer(layer)
    out: dict[int, dict[str, str]] = {}
    for (tid, _, annotator), code in _current_labels(s, sa, layer).items():
        out.setdefault(tid, {})[annotator] = code
    return out


def majority(codes: list[str]) -> str | None:
    """The most frequent code when one code is strictly most frequent, else None (a tie)."""
    if not codes:
        return None
    if len(codes) <= 2:
        # The common case (two annotators) without building a Counter per turn.
        return codes[0] if len(codes) == 1 or codes[0] == codes[1] else None
    top = Counter(codes).most_common(2)
    if len(top) > 1 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


@dataclass(frozen=True)
class Resolved:
    """The code a turn is read with, and where it comes from."""

    code: str
    source: str
    """``gold``, ``majority`` (human majority) or ``auto:<judge>``."""


def resolve(codes: dict[str, str]) -> Resolved | None:
    """Gold first, then the human majority, then an automatic judge (the first by name)."""
    if GOLD in codes:
        return Resolved(codes[GOLD], GOLD)
    maj = majority([c for a, c in codes.items() if is_human(a)])
    if maj is not None:
        return Resolved(maj, "majority")
    autos = sorted(a for a in codes if a.startswith(AUTO_PREFIX))
    if autos:
        return Resolved(codes[autos[0]], autos[0])
    return None


def resolved_labels(s: Session, study: str, layer: str) -> dict[int, Resolved]:
    """Per turn of a study, the code to read on a layer and its source.

    Comparison and export read labels through this: adjudicated gold first, then the
    human majority (a tie is no majority), then an automatic judge; every value says which.
    Turns with no usable label are absent.

    Args:
        s: Open session.
        study: The study's slug.
        layer: G, R, P or S.
    """
    out: dict[int, Resolved] = {}
    for tid, codes in layer_ratings(s, study, layer).items():
        r = resolve(codes)
        if r is not None:
            out[tid] = r
    return out
