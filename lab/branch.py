"""Branches: alternative assistant replies sampled at points of stored conversations.

A *point* is an assistant reply of a participant's conversation (human or simulated). At a
point, ``python -m lab branch`` samples K alternative replies from exactly the messages the
original reply was generated from: the same system prompt, the same user turns as the model
saw them (restatements included), the same reveal state, the mediator's rewrite in a
mediator condition, and the same model and parameters unless ``--models`` or
``--temperature`` say otherwise. Each alternative is stored as a *branch*: a ``session`` row
of kind ``branch`` (linked to its point by ``point_turn_id``) holding one assistant turn at
the point's index, labelled by the rule judge as the original was, with the sha256 of the
prompt it was sampled from (``params.branch.prompt_sha256``) so that a pair's prompt can be
proven identical for both sides.

Branches and their rollouts (:mod:`lab.rollout`) belong to one participant of kind
``branch`` per study version, so no participant's plan, position or flow ever meets them,
and every participant measure, annotation queue and conversation export leaves them out
through :func:`lab.schema.participant_conversation`.

A run is resumable: samples already stored (per point, sample number and model) are not
drawn again. Calls go through the simulation's per-model rate limits with bounded
concurrency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from . import llm
from .dialogue import Conversation
from .errors import LabError
from .items import Item, parse_item
from .schema import BRANCH_PARTICIPANT, ChatSession, ItemRow, Participant, Study, Turn, participant_conversation, utcnow

POINT_KINDS = ("ask", "answer", "every")
"""``--at``: replies the rule judge calls a clarifying question, an answer attempt, or every reply."""

PARTICIPANT_CHOICES: dict[str, tuple[str, ...]] = {
    "human": ("human",),
    "simulated": ("simulated",),
    "all": ("human", "simulated", "pilot"),
}
"""``--participants``: whose conversations are branched."""

DEFAULT_TEMPERATURE = 0.8


class BranchError(LabError, ValueError):
    """Branches that cannot be sampled, with the reason."""


@dataclass(frozen=True)
class Point:
    """An original assistant reply at which alternatives are sampled."""

    turn_id: int
    session_id: int
    index: int
    """The reply's turn index in its conversation (branch turns take the same index)."""
    study_id: int
    item_id: int
    condition_id: int
    item_key: str
    model: str
    """The model that wrote the original reply."""
    params: dict[str, Any]
    """Its call parameters."""
    move: str
    """The rule judge's layer-S code of the original reply."""


@dataclass
class BranchResult:
    """What one ``branch`` invocation did."""

    points: int = 0
    sampled: int = 0
    """Branch replies written in this invocation."""
    existing: int = 0
    """Branch replies found already written (an earlier, interrupted run)."""
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(point turn id, error) of samples left after repeated model errors."""
    heldout_skipped: int = 0
    """Conversations of held-out items, not branched."""
    elapsed: float = 0.0


def prompt_sha256(messages: list[dict[str, str]]) -> str:
    """A stable hash of a list of chat messages (the same messages, the same hash)."""
    blob = json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def point_prompt(conv: Conversation, index: int) -> list[dict[str, str]] | None:
    """The messages the reply at turn ``index`` of ``conv`` was generated from.

    Without a mediator: the system message and the turns before it as the model saw them.
    With one: the system message and the mediator's rewrite written just before the reply
    (None when that rewrite failed, since the reply then had no prompt of its own).
    """
    prefix = [t for t in conv.turns if t.index < index]
    before = dataclasses.replace(conv, turns=prefix)
    if conv.mediator is None:
        return before.model_messages()
    rewrite = next((t for t in reversed(prefix) if t.role == "mediator"), None)
    if rewrite is None or rewrite.error is not None:
        return None
    text = rewrite.content.strip()
    if not text:
        # An empty rewrite: the engine sent the transcript instead.
        text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in before.model_messages() if m["role"] != "system")
    return conv.system_message() + [{"role": "user", "content": text}]


def branch_participant(s: Session, study_id: int) -> int:
    """The participant of kind ``branch`` owning a study version's branches and rollouts (made once)."""
    found = s.scalar(
        select(Participant.id).where(Participant.study_id == study_id, Participant.kind == BRANCH_PARTICIPANT).limit(1)
    )
    if found is not None:
        return int(found)
    p = Participant(study_id=study_id, kind=BRANCH_PARTICIPANT, status="completed", simulator={"kind": BRANCH_PARTICIPANT})
    s.add(p)
    s.flush()
    return p.id


def _items(s: Session, item_ids: set[int]) -> dict[int, Item]:
    rows = s.execute(select(ItemRow.id, ItemRow.key, ItemRow.payload).where(ItemRow.id.in_(item_ids))).all()
    return {r[0]: parse_item(r[2], r[1]) for r in rows}


def _assistant_turns(engine: Engine, slug: str, participants: str) -> tuple[list[Any], dict[int, Item]]:
    """The study's finished assistant replies in conversation and turn order, and their items.

    Raises:
        BranchError: no study has this slug.
    """
    s_, t, p, it, st = (
        ChatSession.__table__.c,
        Turn.__table__.c,
        Participant.__table__.c,
        ItemRow.__table__.c,
        Study.__table__.c,
    )
    with Session(engine) as s:
        if s.scalar(select(st.id).where(st.slug == slug).limit(1)) is None:
            raise BranchError(f"no study with slug '{slug}'")
        rows = s.execute(
            select(t.id, t.session_id, t.index, t.content, t.model, t.params, s_.study_id, s_.item_id, s_.condition_id, it.key)
            .join_from(Turn, ChatSession, t.session_id == s_.id)
            .join(Participant, s_.participant_id == p.id)
            .join(ItemRow, s_.item_id == it.id)
            .join(Study, s_.study_id == st.id)
            .where(
                st.slug == slug,
                participant_conversation(s_),
                p.kind.in_(PARTICIPANT_CHOICES[participants]),
                t.role == "assistant",
                t.error.is_(None),
                t.partial.is_(False),
            )
            .order_by(t.session_id, t.index)
        ).all()
        items = _items(s, {r.item_id for r in rows})
    return list(rows), items


def find_points(
    engine: Engine, slug: str, *, at: str = "every", participants: str = "all", heldout: frozenset[str] = frozenset()
) -> tuple[list[Point], int]:
    """The points of a study's conversations (every version), in conversation and turn order.

    Args:
        engine: The lab database.
        slug: The study.
        at: ``ask``, ``answer`` or ``every`` (see :data:`POINT_KINDS`).
        participants: ``human``, ``simulated`` or ``all``.
        heldout: Item ids left alone (held out for evaluation).

    Returns:
        The points, and how many conversations of held-out items were left alone.

    Raises:
        BranchError: an unknown choice or study.
    """
    from .judge import RuleJudge

    if at not in POINT_KINDS:
        raise BranchError(f"--at must be one of {', '.join(POINT_KINDS)} (got '{at}')")
    if participants not in PARTICIPANT_CHOICES:
        raise BranchError(f"--participants must be one of {', '.join(PARTICIPANT_CHOICES)} (got '{participants}')")
    rows, items = _assistant_turns(engine, slug, participants)
    judge = RuleJudge()
    points: list[Point] = []
    skipped: set[int] = set()
    for r in rows:
        if r.key in heldout:
            skipped.add(r.session_id)
            continue
        if not r.content.strip():
            continue
        move = judge.classify(r.content, item=items[r.item_id]).code
        if at == "ask" and move != "clarification":
            continue
        if at == "answer" and move != "answer_attempt":
            continue
        points.append(
            Point(
                r.id,
                r.session_id,
                r[2],
                r.study_id,
                r.item_id,
                r.condition_id,
                r.key,
                r.model or "",
                dict(r.params or {}),
                move,
            )
        )
    return points, len(skipped)


def existing_samples(engine: Engine, point_ids: list[int]) -> dict[int, set[int]]:
    """Point turn id → sample numbers already stored as branches."""
    s_, t = ChatSession.__table__.c, Turn.__table__.c
    out: dict[int, set[int]] = {}
    with engine.connect() as conn:
        for i in range(0, len(point_ids), 500):
            chunk = point_ids[i : i + 500]
            for point, params in conn.execute(
                select(s_.point_turn_id, t.params)
                .join_from(ChatSession, Turn, t.session_id == s_.id)
                .where(s_.kind == "branch", s_.point_turn_id.in_(chunk))
            ):
                sample = ((params or {}).get("branch") or {}).get("sample")
                if sample is not None:
                    out.setdefault(point, set()).add(int(sample))
    return out


def branch_replies(engine: Engine, point_ids: list[int]) -> dict[int, list[int]]:
    """Point turn id → its branch reply turn ids, in order."""
    s_, t = ChatSession.__table__.c, Turn.__table__.c
    out: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for i in range(0, len(point_ids), 500):
            chunk = point_ids[i : i + 500]
            for point, turn_id in conn.execute(
                select(s_.point_turn_id, t.id)
                .join_from(ChatSession, Turn, t.session_id == s_.id)
                .where(s_.kind == "branch", s_.point_turn_id.in_(chunk), t.role == "assistant", t.error.is_(None))
                .order_by(t.id)
            ):
                out.setdefault(point, []).append(turn_id)
    return out


class Brancher:
    """Samples the missing branches of a list of points; see :func:`run_branches`."""

    def __init__(
        self,
        engine: Engine,
        points: list[Point],
        *,
        k: int,
        models: list[tuple[str, dict[str, Any]]] | None = None,
        temperature: float | None = DEFAULT_TEMPERATURE,
        concurrency: int = 4,
        limits: Any = None,
        max_errors: int = 3,
        retry_pause: float = 1.0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        from .simulate import Limits

        if k < 1:
            raise BranchError(f"--k must be at least 1 (got {k})")
        self.engine = engine
        self.points = points
        self.k = k
        self.models = models
        self.temperature = temperature
        self.concurrency = concurrency
        self.limits = limits if limits is not None else Limits(None)
        self.max_errors = max_errors
        self.retry_pause = retry_pause
        self.on_progress = on_progress
        self.result = BranchResult(points=len(points))
        self._convs: dict[int, Conversation] = {}
        self._owners: dict[int, int] = {}

    def _model(self, point: Point, sample: int) -> tuple[str, dict[str, Any]]:
        model, params = self.models[sample % len(self.models)] if self.models else (point.model, dict(point.params))
        params = {k: v for k, v in params.items() if k != "branch"}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return model, params

    def _prompt(self, point: Point) -> tuple[Conversation, list[dict[str, str]] | None]:
        conv = self._convs.get(point.session_id)
        if conv is None:
            conv = self._convs[point.session_id] = Conversation.load(self.engine, point.session_id, autolabel=False)
        return conv, point_prompt(conv, point.index)

    def _owner(self, study_id: int) -> int:
        owner = self._owners.get(study_id)
        if owner is None:
            with Session(self.engine) as s, s.begin():
                owner = self._owners[study_id] = branch_participant(s, study_id)
        return owner

    def _store(
        self, point: Point, conv: Conversation, sample: int, prompt_hash: str, result: llm.Completion, params: dict[str, Any]
    ) -> None:
        from .labels import auto_labels

        owner = self._owner(point.study_id)
        with self.engine.begin() as conn:
            sid = conn.execute(
                insert(ChatSession.__table__).returning(ChatSession.__table__.c.id),
                {
                    "study_id": point.study_id,
                    "participant_id": owner,
                    "item_id": point.item_id,
                    "condition_id": point.condition_id,
                    "position": sample,
                    "model": result.model,
                    "model_params": params,
                    "status": "ended",
                    "outcome": "branch",
                    "ended_at": utcnow(),
                    "kind": "branch",
                    "point_turn_id": point.turn_id,
                },
            ).scalar_one()
            turn_id = conn.execute(
                insert(Turn.__table__).returning(Turn.__table__.c.id),
                {
                    "session_id": sid,
                    "index": point.index,
                    "role": "assistant",
                    "source": "model",
                    "content": result.text,
                    "model": result.model,
                    "params": params | {"branch": {"sample": sample, "prompt_sha256": prompt_hash}},
                    "tokens_in": result.tokens_in,
                    "tokens_out": result.tokens_out,
                    "cost": result.cost,
                    "latency_ms": result.latency_ms,
                    "ttft_ms": result.ttft_ms,
                    "finish_reason": result.finish_reason,
                    "partial": result.partial,
                    "sent_at": result.started_at,
                    "first_token_at": result.first_token_at,
                    "last_token_at": result.ended_at,
                },
            ).scalar_one()
            if result.text.strip():
                auto_labels(dataclasses.replace(conv, session_id=sid), result.text).write(conn, turn_id)
            else:
                conn.execute(update(Turn.__table__).where(Turn.__table__.c.id == turn_id).values(error="empty reply"))

    async def _sample(self, point: Point, sample: int) -> None:
        conv, prompt = self._prompt(point)
        if prompt is None:
            self.result.failures.append((point.turn_id, "the original reply had no prompt of its own (its mediator failed)"))
            return
        model, params = self._model(point, sample)
        errors = 0
        while True:
            await self.limits.acquire(model)
            try:
                async with self.limits.slot(model):
                    result = await llm.acomplete(model, prompt, params, timeout=self.limits.timeout(model))
            except llm.ModelError as e:
                errors += 1
                if errors >= self.max_errors:
                    self.result.failures.append((point.turn_id, e.message))
                    return
                await asyncio.sleep(self.retry_pause * errors)
                continue
            break
        self._store(point, conv, sample, prompt_sha256(prompt), result, params)
        self.result.sampled += 1

    async def run(self) -> BranchResult:
        """Sample every missing branch of the points."""
        started = time.monotonic()
        done = existing_samples(self.engine, [p.turn_id for p in self.points])
        jobs: list[tuple[Point, int]] = []
        for p in self.points:
            have = done.get(p.turn_id, set())
            self.result.existing += len(have & set(range(self.k)))
            jobs += [(p, j) for j in range(self.k) if j not in have]
        total = len(jobs)
        queue = list(reversed(jobs))

        async def worker() -> None:
            while queue:
                point, sample = queue.pop()
                await self._sample(point, sample)
                if self.on_progress is not None:
                    self.on_progress(total - len(queue), total)

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.concurrency, len(jobs))):
                tg.create_task(worker())
        self.result.elapsed = time.monotonic() - started
        return self.result


def resolve_models(engine: Engine, slug: str, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``--models``: model ids of the study or litellm strings, checked for use.

    Raises:
        BranchError: a model that cannot be used.
    """
    from .simulate import PlanError
    from .simulate._grid import usable_model
    from .studies import definition, get_study

    with Session(engine) as s:
        d = definition(get_study(s, slug))
    out = []
    for name in names:
        try:
            model, params, _ = usable_model(d, name, "model")
        except PlanError as e:
            raise BranchError(str(e)) from None
        out.append((model, params))
    return out
