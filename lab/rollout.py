"""Rollouts: what a conversation achieves after a reply, so that every reply at a point has a value.

Each reply at a point (the original and its branches, see :mod:`lab.branch`) is continued to
the end R times: a ``session`` of kind ``rollout`` (``point_turn_id`` the point,
``reply_turn_id`` the reply it continues, ``position`` the rollout's number) starts as a copy
of the conversation up to the point followed by that reply, and the simulation's runner
drives it on (the scripted simulator by default, a named model otherwise) with the
conversation's own model answering, under the same reveal rules and endings as
``simulate``. The task evaluator (:mod:`lab.scoring`) then scores its last answer attempt;
a conversation that ends without one scores 0. Items without a task score (presupposition
questions, clarification requests without an answer) are not rolled out.

A reply's expected outcome is the mean score of its rollouts with a 95 % t interval
(:func:`outcome_of`); :func:`difference` compares two replies (Welch). With a deterministic
model and simulator every rollout of a reply ends alike, so the interval has no width.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from .branch import Point, branch_participant, branch_replies
from .dialogue import Conversation
from .schema import ChatSession, Study, Turn

if TYPE_CHECKING:
    from .simulate import Simulator

_COPIED = ("index", "role", "source", "content", "model_content", "shards", "model", "params", "error", "partial")
"""Turn columns a rollout copies from the conversation it continues."""


@dataclass(frozen=True)
class Outcome:
    """The rollout scores of one reply."""

    n: int
    mean: float
    low: float
    """Lower end of the 95 % interval of the mean (equal to ``mean`` when all scores agree)."""
    high: float
    sd: float

    def as_dict(self) -> dict[str, Any]:
        """For export records."""
        return {"n": self.n, "mean": round(self.mean, 6), "low": round(self.low, 6), "high": round(self.high, 6)}


_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
"""The 0.975 quantile of Student's t for 1–15 degrees of freedom."""


def _t(df: int) -> float:
    """The 0.975 quantile of Student's t (tabled to 15 degrees of freedom; beyond, within 0.01 of it)."""
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.959964 + 2.4 / df


def outcome_of(scores: list[float]) -> Outcome | None:
    """Mean and 95 % t interval of a reply's rollout scores (None without any)."""
    n = len(scores)
    if n == 0:
        return None
    mean = sum(scores) / n
    if n == 1:
        return Outcome(1, mean, -math.inf, math.inf, math.nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / (n - 1))
    half = _t(n - 1) * sd / math.sqrt(n)
    return Outcome(n, mean, mean - half, mean + half, sd)


def difference(a: Outcome, b: Outcome) -> tuple[float, float, float]:
    """(mean of ``a`` − mean of ``b``, and its 95 % Welch interval); infinite with fewer than two rollouts each."""
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return diff, -math.inf, math.inf
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / ((va**2 / (a.n - 1)) + (vb**2 / (b.n - 1)))
    half = _t(max(1, math.floor(df))) * se
    return diff, diff - half, diff + half


def reply_outcomes(engine: Engine, point_ids: list[int]) -> dict[int, Outcome]:
    """Reply turn id → the outcome of its finished, scored rollouts, for replies at these points."""
    s_ = ChatSession.__table__.c
    scores: dict[int, list[float]] = defaultdict(list)
    with engine.connect() as conn:
        for i in range(0, len(point_ids), 500):
            chunk = point_ids[i : i + 500]
            for reply, score in conn.execute(
                select(s_.reply_turn_id, s_.score).where(
                    s_.kind == "rollout", s_.point_turn_id.in_(chunk), s_.status == "ended", s_.score.is_not(None)
                )
            ):
                scores[reply].append(float(score))
    return {reply: o for reply, values in scores.items() if (o := outcome_of(values)) is not None}


@dataclass
class RolloutResult:
    """What one invocation of :func:`run_rollouts` did."""

    finished: int = 0
    """Rollouts run to their end in this invocation."""
    existing: int = 0
    """Rollouts found finished already."""
    unscored_points: int = 0
    """Points of items without a task score, not rolled out."""
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(point turn id, error) of rollouts left unfinished after repeated model errors."""
    elapsed: float = 0.0
    user_turns: int = 0
    """Messages the simulator sent."""


def _existing(engine: Engine, point_ids: list[int]) -> dict[tuple[int, int], tuple[int, str]]:
    """(reply turn id, rollout number) → (session id, status) of rollouts already started."""
    s_ = ChatSession.__table__.c
    out: dict[tuple[int, int], tuple[int, str]] = {}
    with engine.connect() as conn:
        for i in range(0, len(point_ids), 500):
            chunk = point_ids[i : i + 500]
            for sid, reply, position, status in conn.execute(
                select(s_.id, s_.reply_turn_id, s_.position, s_.status)
                .where(s_.kind == "rollout", s_.point_turn_id.in_(chunk))
                .order_by(s_.id)
            ):
                held = out.get((reply, position))
                if held is None or held[1] != "ended":
                    out[(reply, position)] = (sid, status)
    return out


def _start(engine: Engine, point: Point, reply_id: int, number: int, owner: int) -> int:
    """Write a rollout: the conversation up to the point, then the reply; returns its session id."""
    t = Turn.__table__
    with engine.begin() as conn:
        chat = conn.execute(
            select(ChatSession.__table__.c.model, ChatSession.__table__.c.model_params).where(
                ChatSession.__table__.c.id == point.session_id
            )
        ).one()
        prefix = conn.execute(
            select(*(t.c[c] for c in _COPIED)).where(t.c.session_id == point.session_id, t.c.index < point.index)
        ).all()
        reply = conn.execute(select(t.c.content, t.c.model, t.c.params).where(t.c.id == reply_id)).one()
        sid = conn.execute(
            insert(ChatSession.__table__).returning(ChatSession.__table__.c.id),
            {
                "study_id": point.study_id,
                "participant_id": owner,
                "item_id": point.item_id,
                "condition_id": point.condition_id,
                "position": number,
                "model": chat.model,
                "model_params": chat.model_params,
                "status": "active",
                "kind": "rollout",
                "point_turn_id": point.turn_id,
                "reply_turn_id": reply_id,
            },
        ).scalar_one()
        rows = [dict(zip(_COPIED, r, strict=True)) | {"session_id": sid} for r in prefix]
        rows.append(
            {
                "session_id": sid,
                "index": point.index,
                "role": "assistant",
                "source": "model",
                "content": reply.content,
                "model_content": None,
                "shards": None,
                "model": reply.model,
                "params": reply.params,
                "error": None,
                "partial": False,
            }
        )
        conn.execute(insert(t), rows)
    return int(sid)


async def _score(conv: Conversation) -> float | None:
    """The task score of a finished rollout: its last answer attempt's, 0 without one."""
    from .scoring import aevaluate, family_of, last_attempt

    if family_of(conv.item) is None:
        return None
    last = last_attempt(conv.item, cast(Any, conv.turns), conv.verdicts)
    if last is None:
        return 0.0
    ev = await aevaluate(conv.item, last.content)
    return ev.value if ev.scored else None


def run_rollouts(
    engine: Engine,
    slug: str,
    points: list[Point],
    *,
    r: int,
    simulator_name: str | None = None,
    concurrency: int = 4,
    limits: Any = None,
    max_errors: int = 3,
    retry_pause: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> RolloutResult:
    """Continue every reply at the points (the original and its branches) ``r`` times; see the module.

    Args:
        engine: The lab database.
        slug: The study.
        points: From :func:`lab.branch.find_points`.
        r: Rollouts per reply.
        simulator_name: ``scripted`` (default) or a model id of the study or litellm string.
        concurrency: Rollouts conversing at once.
        limits: The per-model rate limits shared with the branches (:class:`lab.simulate.Limits`).
        max_errors: Consecutive model errors after which a rollout is left for the next invocation.
        retry_pause: Seconds (times the error count) between retries.
        on_progress: Called with (rollouts done, rollouts to do) after each rollout.
    """
    from .simulate import make_simulator
    from .studies import definition, get_study

    with Session(engine) as s:
        d = definition(get_study(s, slug))
    simulator = make_simulator(d, simulator_name or "scripted", None)
    return asyncio.run(
        Roller(
            engine,
            slug,
            points,
            simulator,
            r=r,
            concurrency=concurrency,
            limits=limits,
            max_errors=max_errors,
            retry_pause=retry_pause,
        ).run()
    )


class Roller:
    """Runs the missing rollouts of a list of points with the simulation's runner."""

    def __init__(
        self,
        engine: Engine,
        slug: str,
        points: list[Point],
        simulator: Simulator,
        *,
        r: int,
        concurrency: int = 4,
        limits: Any = None,
        max_errors: int = 3,
        retry_pause: float = 1.0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        from .simulate import Limits, RunPlan
        from .simulate._runner import Runner

        self.engine = engine
        self.points = points
        self.r = r
        self.concurrency = concurrency
        self.on_progress = on_progress
        self.result = RolloutResult()
        with Session(engine) as s:
            study = s.scalar(select(Study).where(Study.slug == slug).order_by(Study.version.desc()).limit(1))
            assert study is not None
            plan = RunPlan(
                run_id="0" * 16,
                study_id=study.id,
                study_slug=slug,
                study_version=study.version,
                spec_sha256=study.spec_sha256,
                mode="repeats",
                size=r,
                conditions=(),
                models=(),
                simulator=simulator.record(),
                units=(),
            )
        # The simulation's runner drives each rollout as it drives a simulated conversation.
        self.runner = Runner(engine, plan, simulator, concurrency=concurrency, max_errors=max_errors, retry_pause=retry_pause)
        self.runner.limits = limits if limits is not None else Limits(None)
        self._owners: dict[int, int] = {}

    def _owner(self, study_id: int) -> int:
        owner = self._owners.get(study_id)
        if owner is None:
            with Session(self.engine) as s, s.begin():
                owner = self._owners[study_id] = branch_participant(s, study_id)
        return owner

    def _scorable(self) -> set[int]:
        from .items import parse_item
        from .schema import ItemRow
        from .scoring import family_of

        ids = {p.item_id for p in self.points}
        with Session(self.engine) as s:
            rows = s.execute(select(ItemRow.id, ItemRow.key, ItemRow.payload).where(ItemRow.id.in_(ids))).all()
        return {r[0] for r in rows if family_of(parse_item(r[2], r[1])) is not None}

    async def _one(self, point: Point, reply_id: int, number: int, held: tuple[int, str] | None) -> None:
        if held is None:
            sid = _start(self.engine, point, reply_id, number, self._owner(point.study_id))
        else:
            sid = held[0]
        conv = Conversation.load(self.engine, sid)
        conv.group = self.runner.group  # rollouts share commits as a simulation's conversations do
        if not await self.runner._converse(conv):
            message = next((m for s, m in reversed(self.runner.result.failures) if s == sid), "model error")
            self.result.failures.append((point.turn_id, message))
            return
        score = await _score(conv)
        with self.engine.begin() as conn:
            conn.execute(update(ChatSession.__table__).where(ChatSession.__table__.c.id == sid).values(score=score))
        self.result.finished += 1

    async def run(self) -> RolloutResult:
        """Run every missing or unfinished rollout."""
        started = time.monotonic()
        scorable = self._scorable()
        points = [p for p in self.points if p.item_id in scorable]
        self.result.unscored_points = len(self.points) - len(points)
        ids = [p.turn_id for p in points]
        branches = branch_replies(self.engine, ids)
        held = _existing(self.engine, ids)
        jobs: list[tuple[Point, int, int, tuple[int, str] | None]] = []
        for p in points:
            for reply in [p.turn_id, *branches.get(p.turn_id, [])]:
                for number in range(self.r):
                    found = held.get((reply, number))
                    if found is not None and found[1] == "ended":
                        self.result.existing += 1
                        continue
                    jobs.append((p, reply, number, found))
        queue = list(reversed(jobs))

        async def worker() -> None:
            while queue:
                await self._one(*queue.pop())
                if self.on_progress is not None:
                    self.on_progress(len(jobs) - len(queue), len(jobs))

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.concurrency, len(jobs))):
                tg.create_task(worker())
        self.result.user_turns = self.runner.result.user_turns
        self.result.elapsed = time.monotonic() - started
        return self.result
