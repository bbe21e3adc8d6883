"""Running a simulation: bounded concurrency, per-model rate limits, resumption.

Each simulated participant (a unit of the plan) is an ordinary ``participant`` row with
``kind = simulated``; its ``simulator`` field records the simulator (model, prompt
version, persona), where it belongs in the run (``run``, ``unit``) and its ``plan``.
Running the same plan again finds those rows: conversations that ended are skipped,
unfinished ones are continued from the database where they stopped, missing ones are
started, so a run that was interrupted (Ctrl-C, kill, crash) finishes without duplicating
a conversation. A lock keeps two invocations from running the same run side by side. With
``processes`` > 1 the invocation holds that lock and shares the units among worker
processes (see :mod:`lab.simulate._pool`), so the run's CPU work spreads over the cores.
Workers started with ``worker`` share a run without a lock or a parent, by claiming its
units in the database (see :mod:`lab.simulate._worker`); an invocation without it refuses a
run that workers hold.

A conversation ends at the first correct answer attempt; when every shard is out and
answered (in RECAP, once the recap is answered); at the turn limit; when the simulator says
it is satisfied; in ON_REQUEST at the first answer attempt (the participant has their
answer); for presupposition items after the first reply, once the knowledge probe is asked.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .. import llm
from .. import reveal as rules
from ..db import process_lock
from ..dialogue import Conversation, Setup, TurnView, resolve_setup
from ..errors import LabError
from ..group_commit import GroupCommit
from ..items import PresuppositionItem
from ..judge import RuleJudge
from ..llm._gateway import DEFAULT_TIMEOUT
from ..llm._providers import LOCAL_PROVIDER
from ..participants import insert_participant, mark_completed
from ..schema import ChatSession, Event, Participant, Study, utcnow
from ..scoring import conclude, score, settle
from ._breaker import BREAKER_SECONDS, Breaker
from ._checks import check_message
from ._claims import held_elsewhere, prune
from ._consistency import CONSISTENCY_EVENT, judge_consistency
from ._grid import Cell, RunPlan, Unit
from ._pool import run_shares
from ._simulator import DONT_KNOW, Simulator, UserMove, last_reply, prompt_texts

RUN_EVENT = "simulate_run"
"""Event kind recording each start (or restart) of a run, with its definition."""

TURN_EVENT = "simulator_turn"
"""Event kind recording what a simulator said it did in a turn, and the drift found."""

_CHUNK = 500

TROUBLE_SECONDS = 0.5
"""How often a run looks whether what it says about failing models has changed."""


class RunBusy(LabError, RuntimeError):
    """The run is being run by another process."""


@contextmanager
def run_lock(engine: Engine, run_id: str) -> Iterator[None]:
    """Hold a run for this process, so that two invocations never run it side by side.

    Postgres: a session advisory lock keyed by the run id. SQLite: an exclusive ``flock``
    on a file beside the database (left in place: removing it would open a race).

    Raises:
        RunBusy: another process holds the run.
    """
    busy = RunBusy(f"run {run_id} is already running in another process; wait for it to finish or stop it first")
    with process_lock(engine, int(run_id[:15], 16), f"simulate-{run_id}", wait=False) as held:
        if not held:
            raise busy
        yield


IN_PROCESS_TIMEOUT = 900.0
"""Seconds one call to an in-process model may take in a batch run (see :meth:`Limits.timeout`)."""


class Limits:
    """Per-model limits on calls: requests per minute, and one call at a time to an in-process model."""

    def __init__(self, rpm: float | None) -> None:
        """Create the limiters lazily, one per model.

        Args:
            rpm: Requests per minute allowed for each model; None for no limit.
        """
        if rpm is not None and rpm <= 0:
            raise ValueError(f"rpm must be positive, got {rpm!r}")
        self.rpm = rpm
        self._by_model: dict[str, llm.RateLimiter] = {}
        self._slots: dict[tuple[int, str], asyncio.Semaphore] = {}

    async def acquire(self, model: str) -> None:
        """Wait until one more call to ``model`` may be sent."""
        if self.rpm is None:
            return
        limiter = self._by_model.get(model)
        if limiter is None:
            limiter = self._by_model[model] = llm.RateLimiter(self.rpm)
        await limiter.aacquire()

    @staticmethod
    def timeout(*models: str | None) -> float:
        """Seconds one batch call to ``models`` may take: longer than a server's when one runs in-process.

        A reply of an in-process model takes as long as the machine needs: on a busy one a
        reply of a few hundred tokens from a long history takes minutes, which the default
        network timeout would count as a dead server. Nobody waits on a batch run's reply.
        """
        return IN_PROCESS_TIMEOUT if any(m and m.split("/", 1)[0] == LOCAL_PROVIDER for m in models) else DEFAULT_TIMEOUT

    @asynccontextmanager
    async def slot(self, *models: str | None) -> AsyncIterator[None]:
        """Hold the in-process models among ``models`` (``local/…``) for one call.

        An in-process model generates one reply at a time behind its lock, and a call's
        timeout counts the wait for that lock: with several conversations queued behind it
        on a slow or busy machine, calls would time out before they began and the run would
        stop calling the model. Queued here instead, a call's timeout covers its own
        generation, and the run is as fast as the model, never failing for its queue.
        """
        loop = id(asyncio.get_running_loop())  # a semaphore belongs to one event loop
        local = sorted({m for m in models if m and m.split("/", 1)[0] == LOCAL_PROVIDER})
        async with AsyncExitStack() as stack:
            for model in local:
                sem = self._slots.setdefault((loop, model), asyncio.Semaphore(1))
                await stack.enter_async_context(sem)
            yield


@dataclass(frozen=True)
class RunStatus:
    """Where a running simulation stands (passed to the progress callback)."""

    total: int
    """Conversations in the run."""
    done: int
    """Conversations of the run that have ended, before and during this invocation."""
    done_at_start: int
    """Conversations that had ended before this invocation."""
    failed: int
    """Conversations stopped by errors in this invocation."""
    elapsed: float
    """Seconds since this invocation started."""
    trouble: tuple[str, ...] = ()
    """One line per model whose calls are failing now: since when, why, what happens next
    (or that the run has stopped calling it)."""


@dataclass
class RunResult:
    """What one invocation of a run did."""

    plan: RunPlan
    done: int = 0
    """Conversations of the run that have ended (all invocations)."""
    done_at_start: int = 0
    started: int = 0
    """Conversations started in this invocation."""
    resumed: int = 0
    """Unfinished conversations continued in this invocation."""
    user_turns: int = 0
    """Messages the simulator sent in this invocation (openings included)."""
    failures: list[tuple[int | None, str]] = field(default_factory=list)
    """(conversation id, why) for conversations left unfinished by errors (the id is None when
    the conversation could not be started)."""
    elapsed: float = 0.0
    worker: str | None = None
    """This invocation's name among the run's ``--worker`` processes (None: not a worker)."""
    claimed: int = 0
    """Units this worker claimed."""
    lost: int = 0
    """Units taken over by another worker after this one failed to renew its claim in time."""
    ended_here: int = 0
    """Conversations this worker ended (``done`` counts the whole run's)."""

    @property
    def complete(self) -> bool:
        """Every conversation of the run has ended."""
        return self.done >= self.plan.total


@dataclass
class UnitState:
    """What the database already holds of one unit of a run."""

    participant_id: int | None = None
    """Its simulated participant, once created."""
    sessions: dict[int, tuple[int, str]] = field(default_factory=dict)
    """position → (session id, status); an ended session wins over others, abandoned ones are ignored."""
    judged: set[int] = field(default_factory=set)
    """Sessions whose consistency has been judged."""


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def existing_units(s: Session, plan: RunPlan, *, with_judged: bool = False) -> dict[str, UnitState]:
    """The run's participants and conversations already in the database, by unit key."""
    found: dict[str, UnitState] = {}
    rows = s.execute(
        select(Participant.id, Participant.simulator)
        .where(Participant.study_id == plan.study_id, Participant.kind == "simulated")
        .order_by(Participant.id)
    ).all()
    by_participant: dict[int, UnitState] = {}
    for pid, sim in rows:
        if isinstance(sim, dict) and sim.get("run") == plan.run_id and sim.get("unit") not in found:
            found[sim["unit"]] = by_participant[pid] = UnitState(pid)
    _read_sessions(s, by_participant, with_judged=with_judged)
    return found


def unit_state(s: Session, participant_id: int | None, *, with_judged: bool = False) -> UnitState:
    """What the database holds of the unit whose simulated participant is ``participant_id`` (None: nothing yet)."""
    if participant_id is None:
        return UnitState()
    state = UnitState(participant_id)
    _read_sessions(s, {participant_id: state}, with_judged=with_judged)
    return state


def _read_sessions(s: Session, by_participant: dict[int, UnitState], *, with_judged: bool) -> None:
    """Fill in the conversations (and which are judged) of each participant's unit."""
    sessions: list[int] = []
    for chunk in _chunks(list(by_participant)):
        q = select(ChatSession.id, ChatSession.participant_id, ChatSession.position, ChatSession.status).where(
            ChatSession.participant_id.in_(chunk)
        )
        for sid, pid, position, status in s.execute(q.order_by(ChatSession.id)):
            sessions.append(sid)
            f = by_participant[pid]
            held = f.sessions.get(position)
            if status == "abandoned" or (held is not None and held[1] == "ended"):
                continue
            f.sessions[position] = (sid, status)
    if with_judged:
        judged: set[int] = set()
        for chunk in _chunks(sessions):
            q2 = select(Event.session_id).where(Event.kind == CONSISTENCY_EVENT, Event.session_id.in_(chunk))
            judged.update(sid for sid in s.scalars(q2) if sid is not None)
        for f in by_participant.values():
            f.judged = {sid for sid, _ in f.sessions.values() if sid in judged}


def ending(conv: Conversation) -> str | None:
    """Why a simulated conversation should end now (None: it goes on).

    Called when no reply is awaited, so it also decides correctly for a conversation
    continued after an interruption.
    """
    if not conv.turns:
        return None
    last = next((t for t in reversed(conv.turns) if t.role == "assistant" and t.error is None), None)
    reply = last.content if last is not None else ""
    if isinstance(conv.item, PresuppositionItem):
        return "answered" if reply else None
    if last is not None and reply:
        # The engine judged the reply as it stored it; only a resumed conversation judges again.
        verdict = conv.verdicts.get(last.id)
        if verdict is None:
            code = RuleJudge().classify(reply, item=conv.item).code
            sc = score(conv.item, reply) if code == "answer_attempt" else None
            verdict = (code, sc.value if sc is not None and sc.scorable else None)
        code, value = verdict
        if code == "answer_attempt":
            if value == 1.0:
                return "correct"
            if conv.reveal == "ON_REQUEST":
                return "answered"
    if conv.all_revealed_and_answered():
        return "all_revealed"
    if conv.recap_due():
        return None
    return conv.over_reason()


class Runner:
    """Runs one plan; see :func:`run_simulation`."""

    def __init__(
        self,
        engine: Engine,
        plan: RunPlan,
        simulator: Simulator,
        *,
        concurrency: int = 4,
        rpm: float | None = None,
        judge: tuple[str, dict[str, Any]] | None = None,
        on_progress: Callable[[RunStatus], None] | None = None,
        max_errors: int = 3,
        retry_pause: float = 1.0,
        command: str | None = None,
        processes: int = 1,
        share: frozenset[str] | None = None,
        breaker_seconds: float = BREAKER_SECONDS,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.engine = engine
        self.plan = plan
        self.simulator = simulator
        self.concurrency = concurrency
        self.limits = Limits(rpm)
        self.judge = judge
        self.on_progress = on_progress
        self.max_errors = max_errors
        self.retry_pause = retry_pause
        self.command = command
        self.processes = processes
        # A share makes this runner one worker process of several: the parent holds the
        # run lock and logged the run, so the worker does neither.
        self.share = share
        self._setups: dict[tuple[str, str, str | None], Setup] = {}
        self.group = GroupCommit(engine)
        """Shares commits among this process's conversations."""
        self.result = RunResult(plan)
        self.breaker = Breaker(breaker_seconds)
        """Watches the run's model calls; stops calling a model whose calls have all failed for a while."""
        self._clock = time.monotonic()

    # --- bookkeeping --------------------------------------------------------------

    def _status(self) -> RunStatus:
        r = self.result
        return RunStatus(
            self.plan.total, r.done, r.done_at_start, len(r.failures), time.monotonic() - self._clock, self.breaker.lines()
        )

    def _tick(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._status())

    def _log_run(self) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(Event(kind=RUN_EVENT, data=self._run_data()))

    def _run_data(self) -> dict[str, Any]:
        """What the run event of this invocation records."""
        data = self.plan.describe() | {
            "command": self.command,
            "done_at_start": self.result.done_at_start,
            "concurrency": self.concurrency,
            "rpm": self.limits.rpm,
            "judge": self.judge[0] if self.judge else None,
        }
        if self.processes > 1:
            data["processes"] = self.processes
        if self.simulator.kind == "llm":
            data["prompts"] = prompt_texts()
        return data

    def _setup(self, cell: Cell) -> Setup:
        """The conversation setup of a cell, looked up once per run."""
        key = (cell.item, cell.condition, cell.model)
        found = self._setups.get(key)
        if found is None:
            with Session(self.engine) as s:
                study = s.get(Study, self.plan.study_id)
                assert study is not None
                found = self._setups[key] = resolve_setup(s, study, cell.item, cell.condition, cell.model)
        return found

    def _start(self, unit: Unit, position: int, participant_id: int | None) -> Conversation:
        """Create the unit's participant (on its first conversation) and the conversation, in one transaction."""
        setup = self._setup(unit.cells[position])
        with self.engine.begin() as conn:
            if participant_id is None:
                record = self.simulator.record() | {
                    "run": self.plan.run_id,
                    "unit": unit.key,
                    "repeat": unit.repeat,
                    "index": unit.index,
                    "plan": [
                        {"item": c.item, "condition": c.condition} | ({"model": c.model} if c.model else {}) for c in unit.cells
                    ],
                }
                # The plan stays out of ``participant.plan``: human assignment balances live
                # plans and times out idle ones, and simulated runs must not take part in either.
                participant_id = insert_participant(
                    conn, self.plan.study_id, kind="simulated", status="active", simulator=record, position=position
                )
            else:
                conn.execute(
                    update(Participant.__table__)
                    .where(Participant.__table__.c.id == participant_id)
                    .values(position=position, updated_at=utcnow())
                )
            self._starting(conn, unit, participant_id)
            return Conversation.begin(self.engine, conn, setup, participant_id, position=position)

    def _starting(self, conn: Connection, unit: Unit, participant_id: int) -> None:
        """Called in the transaction that starts a conversation of ``unit``; raising rolls it back."""

    def _complete(self, participant_id: int) -> None:
        with self.engine.begin() as conn:
            mark_completed(conn, participant_id)

    # --- running ------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run every unfinished conversation of the plan.

        Raises:
            RunBusy: another process is running the same run.
        """
        if self.share is not None:
            return await self._run()
        with run_lock(self.engine, self.plan.run_id):
            if held_elsewhere(self.engine, self.plan.run_id):
                raise RunBusy(
                    f"run {self.plan.run_id} is being run by --worker processes; "
                    "start another with --worker to help, or wait for them to finish"
                )
            result = await (self._run_processes() if self.processes > 1 else self._run())
            if result.complete:
                # Claims left by --worker invocations of the run serve nobody once it has ended.
                prune(self.engine, self.plan.run_id, finished=True)
            return result

    def _pending(self) -> deque[tuple[Unit, UnitState]]:
        """The units (of this process's share) with work left; counts those already ended."""
        with Session(self.engine) as s:
            found = existing_units(s, self.plan, with_judged=self.judge is not None)
        pending: deque[tuple[Unit, UnitState]] = deque()
        for unit in self.plan.units:
            if self.share is not None and unit.key not in self.share:
                continue
            f = found.get(unit.key) or UnitState()
            ended, left = self._left(unit, f)
            self.result.done_at_start += ended
            if left:
                pending.append((unit, f))
        self.result.done = self.result.done_at_start
        return pending

    def _left(self, unit: Unit, f: UnitState) -> tuple[int, bool]:
        """(Conversations of the unit that ended, whether it has work left: a conversation or a judgement)."""
        ended = [sid for sid, status in f.sessions.values() if status == "ended"]
        unjudged = self.judge is not None and any(sid not in f.judged for sid in ended)
        return len(ended), len(ended) < len(unit.cells) or unjudged

    async def _run_processes(self) -> RunResult:
        pending = self._pending()
        self._log_run()
        self._tick()
        failed = 0

        def tick(done: int, errors: int, trouble: tuple[str, ...]) -> None:
            nonlocal failed
            self.result.done = self.result.done_at_start + done
            failed = errors
            if self.on_progress is not None:
                status = self._status()
                self.on_progress(RunStatus(status.total, status.done, status.done_at_start, failed, status.elapsed, trouble))

        totals = await run_shares(self, [unit.key for unit, _ in pending], tick)
        r = self.result
        r.done = r.done_at_start + totals["done"]
        r.started, r.resumed, r.user_turns = totals["started"], totals["resumed"], totals["user_turns"]
        r.failures = totals["failures"]
        r.elapsed = time.monotonic() - self._clock
        return r

    async def _run(self) -> RunResult:
        pending = self._pending()
        if self.share is None:
            self._log_run()
        self._tick()

        async def worker() -> None:
            while pending:
                unit, f = pending.popleft()
                await self._unit(unit, f)

        with llm.watching(self.breaker):
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(worker()) for _ in range(min(self.concurrency, len(pending)))]
                tg.create_task(self._watch(workers))
        self.result.elapsed = time.monotonic() - self._clock
        return self.result

    async def _watch(self, tasks: list[asyncio.Task[None]]) -> None:
        """Until ``tasks`` end: show within a second what changes about failing models."""
        while not all(task.done() for task in tasks):
            await asyncio.sleep(TROUBLE_SECONDS)
            if self.breaker.changed:
                self.breaker.changed = False
                self._tick()

    async def _unit(self, unit: Unit, f: UnitState) -> bool:
        """Run a unit's unfinished conversations; False when an error stopped one.

        Whatever goes wrong inside the unit (repeated model errors, or anything else) stops
        this unit alone, with its reason and item in :attr:`RunResult.failures`; the other
        units go on, and rerunning continues this one.
        """
        pid = f.participant_id
        completed = False
        for position, cell in enumerate(unit.cells):
            held = f.sessions.get(position)
            conv: Conversation | None = None
            try:
                if held is not None and held[1] == "ended":
                    if self.judge is not None and held[0] not in f.judged:
                        await self._judge(Conversation.load(self.engine, held[0]))
                    continue
                if held is not None:
                    conv = Conversation.load(self.engine, held[0])
                    self.result.resumed += 1
                else:
                    conv = self._start(unit, position, pid)
                    self.result.started += 1
                pid = conv.participant_id
                conv.group = self.group
                # The participant is completed with their last conversation, in its transaction.
                last = position == len(unit.cells) - 1
                ended = await self._converse(conv, last=last)
                if ended:
                    completed = last and conv.status == "ended"
                    self.result.done += 1
                    if self.judge is not None:
                        await self._judge(conv)
            except Exception as error:  # noqa: BLE001 — one unit's error never ends the run
                if self._fatal(error):
                    raise
                session = conv.session_id if conv is not None else (held[0] if held is not None else None)
                self.result.failures.append((session, self._reason(cell, error)))
                ended = False
            self._tick()
            if not ended:
                return False
        if pid is not None and not completed:
            self._complete(pid)
        return True

    def _fatal(self, error: Exception) -> bool:
        """Whether an error inside a unit must end the run rather than the unit."""
        return False

    @staticmethod
    def _reason(cell: Cell, error: Exception) -> str:
        """Why a unit stopped, named with its item and condition."""
        what = str(error) if isinstance(error, LabError) else f"unexpected {type(error).__name__}: {error}"
        model = f" × {cell.model}" if cell.model else ""
        return f"item {cell.item} ({cell.condition}{model}): {what}"

    async def _judge(self, conv: Conversation) -> None:
        assert self.judge is not None
        model, params = self.judge
        await judge_consistency(conv, model, params, persona=self.simulator.persona, acquire=self.limits.acquire)

    def _broken(self, conv: Conversation, *models: str | None, prefix: str = "") -> bool:
        """True, with the conversation counted as stopped, when the breaker has stopped calling one of ``models``."""
        reason = self.breaker.stopped(*models)
        if reason is None:
            return False
        self.result.failures.append((conv.session_id, prefix + reason))
        return True

    async def _failed(self, conv: Conversation, errors: int, message: str) -> bool:
        """Count a model error; True when the conversation should stop for now."""
        if errors >= self.max_errors:
            self.result.failures.append((conv.session_id, message))
            return True
        await asyncio.sleep(self.retry_pause * errors)
        return False

    async def _converse(self, conv: Conversation, *, last: bool = False) -> bool:
        """Drive one conversation to its end; False when model errors stopped it.

        Args:
            conv: The conversation.
            last: It is its participant's last; ending it completes the participant.
        """
        errors = 0
        conv.timeout = self.limits.timeout(conv.model, conv.mediator.model if conv.mediator is not None else None)
        while conv.status == "active":
            if conv.awaiting_reply:
                mediator = conv.mediator.model if conv.mediator is not None else None
                if self._broken(conv, conv.model, mediator):
                    return False
                await self.limits.acquire(conv.model)
                if mediator is not None:
                    await self.limits.acquire(mediator)
                async with self.limits.slot(conv.model, mediator):
                    turn = await conv.areply()
                if turn.error is not None:
                    errors += 1
                    if self._broken(conv, conv.model, mediator) or await self._failed(conv, errors, turn.error):
                        return False
                    continue
                errors = 0
                continue
            # Code, database and summary attempts are scored here, off the event loop, so that
            # ending() sees their score as it sees a math answer's.
            await settle(conv, self.judge)
            outcome = ending(conv)
            if outcome is not None:
                await self._finish(conv, outcome, last)
                return True
            if conv.recap_due():
                conv.send_recap()
                continue
            if conv.user_turns == 0:
                opening = conv.opening()
                await conv.asend(opening.text, opening.shards, source="simulator")
                self.result.user_turns += 1
                continue
            if self.simulator.model is not None:
                if self._broken(conv, self.simulator.model, prefix="simulator: "):
                    return False
                await self.limits.acquire(self.simulator.model)
            try:
                async with self.limits.slot(self.simulator.model):
                    move = await self.simulator.next_move(conv)
            except llm.ModelError as e:
                errors += 1
                if self._broken(conv, self.simulator.model, prefix="simulator: ") or await self._failed(
                    conv, errors, f"simulator: {e.message}"
                ):
                    return False
                continue
            if move.satisfied:
                self._record(conv, move, None, [], [(p, "") for p in move.problems])
                await self._finish(conv, "answered", last)
                return True
            await self._send(conv, move)
        return True

    async def _finish(self, conv: Conversation, outcome: str, last: bool) -> None:
        if isinstance(conv.item, PresuppositionItem) and conv.item.probe is not None:
            await self.limits.acquire(conv.model)
            async with self.limits.slot(conv.model):
                await asyncio.to_thread(conv.run_probe)
        conclude(conv)  # a conversation that never attempted an answer scores 0, as published
        pid = conv.participant_id
        conv.finish(outcome, then=(lambda conn: mark_completed(conn, pid)) if last and pid is not None else None)

    async def _send(self, conv: Conversation, move: UserMove) -> TurnView:
        """Send a move as the rules allow (at most one new shard), recording any drift."""
        revealed = conv.revealed
        new, _ = rules.new_shards(conv.shards, revealed, move.shards)
        sent = new[:1]
        problems = [(p, "") for p in move.problems]
        text = move.text.strip() or DONT_KNOW
        # The limit is meant for people: a message carrying a shard of the item (a summary
        # task's document) may be as long as the shard plus the limit.
        limit = conv.max_message_chars + sum(len(shard.text) for shard in conv.shards if shard.id in sent)
        if len(text) > limit:
            text = text[:limit]
            problems.append(("too_long", f"{len(move.text)} characters"))
        problems += check_message(
            reveal=conv.reveal,
            shards=conv.shards,
            revealed=revealed,
            assistant_text=last_reply(conv),
            text=text,
            sent=sent,
            claimed=list(move.shards),
        )
        turn = await conv.asend(text, sent, source="simulator")
        self.result.user_turns += 1
        self._record(conv, move, turn, sent, problems)
        return turn

    def _record(
        self, conv: Conversation, move: UserMove, turn: TurnView | None, sent: list[int], problems: list[tuple[str, str]]
    ) -> None:
        # A scripted move that broke no rule says nothing the turn itself does not.
        if self.simulator.kind == "scripted" and not problems and not move.satisfied:
            return
        conv.log_event(
            TURN_EVENT,
            {
                "turn": turn.id if turn else None,
                "index": turn.index if turn else None,
                "claimed": list(move.shards),
                "sent": sent,
                "satisfied": move.satisfied,
                "drift": [k for k, _ in problems],
                "details": {k: d for k, d in problems if d},
                "raw": move.raw[:4000] if move.raw else None,
            },
        )
