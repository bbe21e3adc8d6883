"""The conversation engine: runs one conversation under a study condition and records every turn.

The rules of a message (its text, its cards, the reveal modes FULL, CONCAT, SHARDED,
SNOWBALL, RECAP, ON_REQUEST) live in :mod:`lab.reveal`; the engine reads each message
through them once and records the result. What a conversation is made of is its
:class:`lab.setup.Setup`; an assistant reply in progress is a :class:`lab.reply.Reply`.

The user turn is committed before the model is called; the assistant turn is written when the
reply ends, and checkpointed every :data:`lab.reply.CHECKPOINT_SECONDS` while a longer one
streams, so a stop keeps what arrived and a crash what reached the last checkpoint
(``partial``); a provider error becomes an error turn and the reply can be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import llm
from . import reveal as rules
from .blocking import run_blocking
from .errors import LabError
from .group_commit import AfterWrite, GroupCommit, insert_turn
from .items import Item, PresuppositionItem, Shard
from .reply import Reply, completion_metrics
from .reveal import (  # noqa: F401  (re-exported: the engine's public names)
    GO_AHEAD,
    RECAP_INTRO,
    SNOWBALL_INTRO,
    MessageRejected,
    Opening,
    bullet_list,
    clean_message,
    full_instruction,
    item_shards,
    requested_shard,
)
from .schema import ChatSession, Condition, Event, ItemRow, Participant, Study, Turn, utcnow
from .setup import Setup, resolve_setup, setup_of
from .spec import ConditionSpec, ModelSpec

__all__ = [
    "GO_AHEAD",
    "MEDIATOR_PROMPT",
    "MEDIATOR_PROMPT_VERSION",
    "RECAP_INTRO",
    "SNOWBALL_INTRO",
    "Conversation",
    "ConversationOver",
    "MessageRejected",
    "Reply",
    "Setup",
    "TurnView",
    "clean_message",
    "requested_shard",
    "resolve_setup",
    "start_session",
]

MEDIATOR_PROMPT_VERSION = "mediator-1"
MEDIATOR_PROMPT = (
    "You help an assistant understand a user. Below is a conversation between a user and an "
    "assistant. Rewrite everything the user has asked for so far into one complete, explicit "
    "instruction, written as the user speaking to the assistant. Keep every requirement, number "
    "and constraint the user gave, resolve references to earlier messages, and add nothing the "
    "user did not say. Reply with the instruction only."
)
"""What the mediator model is told (stored with every mediator turn by version)."""

_TURNS = Turn.__table__
_SESSIONS = ChatSession.__table__
_INSERT_SESSION = _SESSIONS.insert().returning(_SESSIONS.c.id)
_EVENTS = Event.__table__


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Call:
    """A model call the engine needs made, by a blocking or an asynchronous driver."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]


_Steps = Generator[_Call, "llm.Completion", _T]
"""Engine logic that needs model calls: yields each call, is sent its completion (or thrown
its ModelError), and returns its result."""


class ConversationOver(LabError, RuntimeError):
    """The conversation has ended; nothing more can be sent."""


class NoConversation(LabError, LookupError):
    """A conversation id the database does not have."""


@dataclass(frozen=True)
class TurnView:
    """A committed turn as the engine and pages see it."""

    id: int
    index: int
    role: str
    source: str
    content: str
    model_content: str | None
    shards: list[int]
    partial: bool
    error: str | None

    @classmethod
    def of(cls, t: Turn) -> TurnView:
        """The view of a stored turn."""
        return cls(t.id, t.index, t.role, t.source, t.content, t.model_content, list(t.shards or []), t.partial, t.error)


@dataclass
class Conversation:
    """One conversation (a ``session`` row) under its condition.

    Build it with :meth:`load`; every method commits its own short transaction.
    """

    engine: Engine
    session_id: int
    setup: Setup
    """What the conversation is made of: item, condition, models, the study's limits."""
    status: str
    outcome: str | None
    turns: list[TurnView] = field(default_factory=list)
    autolabel: bool = True
    """Label each assistant turn with the rule-based judge (``auto:rules``)."""
    verdicts: dict[int, tuple[str, float | None]] = field(default_factory=dict)
    """Rule-judge category and score of replies labelled by this object, by turn id."""
    timeout: float = 120.0
    participant_id: int | None = None
    """Who converses (None only for conversations built by hand in tests)."""
    group: GroupCommit | None = None
    """Shares the commits of this conversation's turns with others on the same event loop
    (batch simulation); None commits each turn on its own. Used by the ``a``-methods."""

    # --- construction ---------------------------------------------------------------

    @classmethod
    def load(cls, engine: Engine, session_id: int, *, autolabel: bool = True) -> Conversation:
        """Rebuild a conversation from the database (after a refresh, in another process…).

        Raises:
            NoConversation: no conversation has that id.
        """
        with Session(engine) as s:
            return cls.read(s, engine, session_id, autolabel=autolabel)

    @classmethod
    def read(cls, s: Session, engine: Engine, session_id: int, *, autolabel: bool = True) -> Conversation:
        """As :meth:`load`, reading in an open session (rows it already holds are not read again).

        Args:
            s: The open session.
            engine: The database the conversation will write to.
            session_id: The conversation.
            autolabel: Label each assistant turn with the rule-based judge.

        Raises:
            NoConversation: no conversation has that id.
        """
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise NoConversation(f"no conversation {session_id}: check the id (the monitor and exports list them)")
        study = s.get(Study, chat.study_id)
        cond_row = s.get(Condition, chat.condition_id)
        item_row = s.get(ItemRow, chat.item_id)
        assert study is not None and cond_row is not None and item_row is not None
        setup = setup_of(study, item_row, cond_row, chat.model, dict(chat.model_params or {}))
        turns = [TurnView.of(t) for t in s.scalars(select(Turn).where(Turn.session_id == session_id).order_by(Turn.index))]
        conv = cls._of(engine, session_id, setup, chat.participant_id, autolabel=autolabel)
        conv.status, conv.outcome, conv.turns = chat.status, chat.outcome, turns
        return conv

    @classmethod
    def begin(
        cls,
        engine: Engine,
        conn: Connection,
        setup: Setup,
        participant_id: int,
        *,
        position: int = 0,
        autolabel: bool = True,
    ) -> Conversation:
        """Start a conversation in an open transaction, without reading anything back.

        The ``session`` row and its ``start`` event are inserted on ``conn``; the caller
        commits. Batch simulation starts conversations this way, with the setup resolved
        once per item and condition.

        Args:
            engine: The database the conversation will write to.
            conn: The open transaction.
            setup: From :func:`resolve_setup`.
            participant_id: Who converses.
            position: Order in the participant's plan.
            autolabel: Label each assistant turn with the rule-based judge.
        """
        session_id = conn.execute(
            _INSERT_SESSION,
            {
                "study_id": setup.study_id,
                "participant_id": participant_id,
                "item_id": setup.item_id,
                "condition_id": setup.condition_id,
                "position": position,
                "model": setup.model,
                "model_params": setup.params,
                "status": "active",
            },
        ).scalar_one()
        conn.execute(
            _EVENTS.insert(),
            {
                "participant_id": participant_id,
                "session_id": session_id,
                "kind": "start",
                "data": {"item": setup.item_key, "condition": setup.condition_key},
            },
        )
        return cls._of(engine, session_id, setup, participant_id, autolabel=autolabel)

    @classmethod
    def _of(cls, engine: Engine, session_id: int, setup: Setup, participant_id: int, *, autolabel: bool) -> Conversation:
        """An active conversation with no turns yet (the caller fills in what it read)."""
        return cls(engine, session_id, setup, "active", None, autolabel=autolabel, participant_id=participant_id)

    # --- what it is made of -------------------------------------------------------------

    @property
    def item(self) -> Item:
        """The item conversed about."""
        return self.setup.item

    @property
    def condition(self) -> ConditionSpec:
        """The condition it runs under."""
        return self.setup.condition

    @property
    def condition_key(self) -> str:
        """The condition's name in the spec."""
        return self.setup.condition_key

    @property
    def model(self) -> str:
        """The model under test."""
        return self.setup.model

    @property
    def params(self) -> dict[str, Any]:
        """The model's parameters (a copy: a call may not change the setup, which others share)."""
        return dict(self.setup.params)

    @property
    def mediator(self) -> ModelSpec | None:
        """The mediator model of a ``mediator`` condition."""
        return self.setup.mediator

    @property
    def turn_limit(self) -> int:
        """The study's limit of user messages per conversation."""
        return self.setup.turn_limit

    @property
    def max_message_chars(self) -> int:
        """The study's limit of characters per message."""
        return self.setup.max_message_chars

    # --- state ------------------------------------------------------------------------

    @property
    def reveal(self) -> str:
        """The condition's reveal mode."""
        return self.condition.reveal

    @property
    def shards(self) -> list[Shard]:
        """Every piece of the task, in reveal order."""
        return rules.item_shards(self.item, self.condition)

    @property
    def revealed(self) -> set[int]:
        """Shard ids revealed by user turns so far."""
        return rules.revealed(self.turns)

    @property
    def remaining(self) -> list[Shard]:
        """Shards not yet revealed, in order."""
        return rules.remaining(self.shards, self.revealed)

    @property
    def user_turns(self) -> int:
        """User turns written by the participant or simulator (lab-made recaps excluded)."""
        return sum(1 for t in self.turns if t.role == "user" and t.source != "lab")

    @property
    def awaiting_reply(self) -> bool:
        """True when the last turn needs an assistant reply (a user turn, or a failed reply)."""
        convo = [t for t in self.turns if t.role in ("user", "assistant")]
        return bool(convo) and (convo[-1].role == "user" or convo[-1].error is not None)

    def opening(self) -> Opening:
        """The canonical first user message for this condition."""
        return rules.opening(self.reveal, self.item, self.condition)

    @property
    def progress(self) -> rules.Progress:
        """Where the conversation stands for the rules of its next message."""
        return rules.Progress(self.reveal, self.shards, self.opening(), self.turns)

    @property
    def at_turn_limit(self) -> bool:
        """The participant has sent as many messages as the study allows."""
        return self.user_turns >= self.turn_limit

    def over_reason(self) -> str | None:
        """Why the conversation is over, or None while it goes on."""
        if self.status != "active":
            return self.outcome or self.status
        if self.awaiting_reply:
            return None
        if self.at_turn_limit and any(t.role == "assistant" and not t.error for t in self.turns):
            return "turn_limit"
        return None

    def all_revealed_and_answered(self) -> bool:
        """Every shard is out and the assistant has answered since (and, in RECAP, the recap)."""
        if self.remaining or self.awaiting_reply or not self.turns:
            return False
        if self.reveal == "RECAP":
            return any(t.source == "lab" and t.role == "user" for t in self.turns)
        return True

    # --- model view -------------------------------------------------------------------

    def system_message(self) -> list[dict[str, str]]:
        """The condition's system prompt and the item's context, as at most one system message."""
        parts = [self.condition.system_prompt, getattr(self.item, "system", None)]
        text = "\n\n".join(p for p in parts if p)
        return [{"role": "system", "content": text}] if text else []

    def model_messages(self) -> list[dict[str, str]]:
        """What the model under test sees: the system message and the conversation."""
        messages = self.system_message()
        for t in self.turns:
            if t.role == "user":
                messages.append({"role": "user", "content": t.model_content or t.content})
            elif t.role == "assistant" and t.error is None and t.content:
                messages.append({"role": "assistant", "content": t.content})
        return messages

    # --- writing ----------------------------------------------------------------------

    def record(self, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
        """Insert a turn after the last one known; on a clash with another writer, reload and retry.

        Args:
            then: More writes for the same transaction, given the new turn's id.
            **fields: Column values of the turn.
        """
        for attempt in range(3):
            index = (self.turns[-1].index if self.turns else 0) + 1
            try:
                with self.engine.begin() as conn:
                    turn_id = insert_turn(conn, {"session_id": self.session_id, "index": index, **fields}, then)
            except IntegrityError:
                # Another tab or process wrote a turn first: take its turns, then append.
                if attempt == 2:
                    raise
                self.refresh()
                continue
            return self._append(turn_id, index, fields)
        raise AssertionError("unreachable")

    async def arecord(self, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
        """As :meth:`record`, sharing the commit through :attr:`group` when there is one."""
        if self.group is None:
            return self.record(then=then, **fields)
        index = (self.turns[-1].index if self.turns else 0) + 1
        try:
            turn_id = await self.group.insert_turn({"session_id": self.session_id, "index": index, **fields}, then)
        except IntegrityError:
            # Another writer took the index: continue after its turns, on our own.
            self.refresh()
            return self.record(then=then, **fields)
        return self._append(turn_id, index, fields)

    def _append(self, turn_id: int, index: int, fields: dict[str, Any]) -> TurnView:
        view = TurnView(
            id=turn_id,
            index=index,
            role=fields["role"],
            source=fields.get("source", "participant"),
            content=fields.get("content", ""),
            model_content=fields.get("model_content"),
            shards=list(fields.get("shards") or []),
            partial=bool(fields.get("partial", False)),
            error=fields.get("error"),
        )
        self.turns.append(view)
        return view

    def amend(self, view: TurnView, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
        """Complete a turn written earlier (a streamed reply's checkpoint)."""
        with self.engine.begin() as conn:
            conn.execute(_TURNS.update().where(_TURNS.c.id == view.id), fields)
            if then is not None:
                then(conn, view.id)
        known = {k: v for k, v in fields.items() if k in ("content", "partial", "error")}
        new = replace(view, **known)
        self.turns = [new if t.id == view.id else t for t in self.turns]
        return new

    def refresh(self) -> None:
        """Reload turns and status from the database."""
        with Session(self.engine) as s:
            self.turns = [
                TurnView.of(t) for t in s.scalars(select(Turn).where(Turn.session_id == self.session_id).order_by(Turn.index))
            ]
            chat = s.get(ChatSession, self.session_id)
            assert chat is not None
            self.status, self.outcome = chat.status, chat.outcome

    def send(
        self,
        text: str | None,
        shards: list[int] | None = None,
        *,
        source: str = "participant",
        client: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> TurnView:
        """Commit a user message (before any model call).

        Args:
            text: The message as written.
            shards: Shard ids the sender says it reveals (ignored for the first message,
                which reveals the opening).
            source: ``participant`` or ``simulator``.
            client: Browser timing (typing started, edits).
            strict: The participant page's rules: a text with control characters is
                refused rather than cleaned, and only the cards on offer may be picked.

        Returns:
            The committed turn.

        Raises:
            MessageRejected: by the rules of :meth:`lab.reveal.Progress.read`.
            ConversationOver: the conversation has ended or reached its turn limit.
        """
        fields, then = self._user_turn(text, shards, source, client, strict)
        return self.record(then=then, **fields)

    async def asend(
        self,
        text: str | None,
        shards: list[int] | None = None,
        *,
        source: str = "participant",
        client: dict[str, Any] | None = None,
    ) -> TurnView:
        """As :meth:`send`, on the event loop, sharing the commit through :attr:`group`."""
        fields, then = self._user_turn(text, shards, source, client, False)
        return await self.arecord(then=then, **fields)

    def _user_turn(
        self, text: str | None, shards: list[int] | None, source: str, client: dict[str, Any] | None, strict: bool
    ) -> tuple[dict[str, Any], AfterWrite | None]:
        """The columns of a user message once the rules allow it, and the detection to log (see :meth:`send`).

        The message is read once, by :meth:`lab.reveal.Progress.read`; what a
        participant's text was found to carry is logged as a ``cards`` event with the turn
        (or alone, marked ``refused``, when it is refused for it).
        """
        if self.status != "active":
            raise ConversationOver("This conversation has ended.")
        if self.at_turn_limit:
            raise ConversationOver(f"This conversation has reached its limit of {self.turn_limit} messages.")
        try:
            message = self.progress.read(
                text,
                shards,
                source=source,
                policy=self.setup.carried_cards,
                # The limit is meant for people: a simulated opening is built from the item (a
                # summary task's documents run to tens of thousands of characters), and the
                # runner holds a simulator's own messages to the limit itself.
                max_chars=self.max_message_chars if source == "participant" else None,
                exact=strict,
                offered_only=strict,
            )
        except rules.CardsRefused as refused:
            self.log_event("cards", {**(refused.found or {}), "turn": None, "refused": True})
            raise
        fields: dict[str, Any] = {
            "role": "user",
            "source": source,
            "content": message.content,
            "model_content": message.model_content,
            "shards": message.shards,
        }
        if client is not None:
            fields["client"] = client
        return fields, self._cards_event(message.found) if message.found is not None else None

    def _cards_event(self, found: dict[str, list[int]]) -> AfterWrite:
        """Log what a message's text was found to carry, in the transaction that writes the turn."""

        def write(conn: Connection, turn_id: int) -> None:
            conn.execute(
                _EVENTS.insert(),
                {
                    "session_id": self.session_id,
                    "participant_id": self.participant_id,
                    "kind": "cards",
                    "data": {**found, "turn": turn_id},
                },
            )

        return write

    def recap_due(self) -> bool:
        """RECAP: every shard is out and answered, and the recap turn has not been sent."""
        return (
            self.reveal == "RECAP"
            and self.status == "active"
            and not self.remaining
            and not self.awaiting_reply
            and not any(t.source == "lab" for t in self.turns)
        )

    def send_recap(self) -> TurnView:
        """Write the lab-made recap turn restating every shard (RECAP)."""
        return self.record(role="user", source="lab", content=rules.recap_text(self.shards), shards=[])

    def recap_if_due(self) -> TurnView | None:
        """Send the RECAP turn when it is due (:meth:`recap_due`); the turn sent, else None."""
        return self.send_recap() if self.recap_due() else None

    def _mediator_request(self) -> tuple[list[dict[str, str]], dict[str, Any]]:
        assert self.mediator is not None
        transcript = "\n\n".join(
            f"{m['role'].capitalize()}: {m['content']}" for m in self.model_messages() if m["role"] != "system"
        )
        messages = [{"role": "system", "content": MEDIATOR_PROMPT}, {"role": "user", "content": transcript}]
        return messages, dict(self.mediator.params)

    def _log_mediator(
        self, result: llm.Completion | None, request: list[dict[str, str]], params: dict[str, Any], error: llm.ModelError | None
    ) -> list[dict[str, str]]:
        assert self.mediator is not None
        logged = params | {"prompt_version": MEDIATOR_PROMPT_VERSION}
        if result is None:
            assert error is not None
            self.record(
                role="mediator", source="model", content="", model=self.mediator.model, params=logged, error=error.message
            )
            return []
        self.record(
            role="mediator", source="model", content=result.text, model=result.model, params=logged, **completion_metrics(result)
        )
        # An empty rewrite would leave the assistant nothing to answer: it sees the transcript instead.
        return self.system_message() + [{"role": "user", "content": result.text.strip() or request[1]["content"]}]

    # --- model calls ------------------------------------------------------------------
    #
    # What a reply needs (the mediator's rewrite, then the answer) is written once, as a
    # generator of the model calls it needs made; ``_arun`` makes them, on the event loop
    # (batch simulation) or, through ``_run``, blocking (a page, the terminal).

    def _mediation(self) -> _Steps[list[dict[str, str]]]:
        """Mediator: rewrite the history into one instruction; log it; return the assistant's view."""
        assert self.mediator is not None
        messages, params = self._mediator_request()
        try:
            result = yield _Call(self.mediator.model, messages, params)
        except llm.ModelError as e:
            self._log_mediator(None, messages, params, e)
            raise
        return self._log_mediator(result, messages, params, None)

    def _view(self) -> _Steps[list[dict[str, str]]]:
        """What the model under test is sent (after the mediator's rewrite, in a mediator condition)."""
        if self.mediator is None:
            return self.model_messages()
        return (yield from self._mediation())

    def _answer(self) -> _Steps[llm.Completion]:
        """The whole reply of the model under test, not streamed."""
        messages = yield from self._view()
        return (yield _Call(self.model, messages, dict(self.params)))

    def model_view(self) -> list[dict[str, str]]:
        """What the model under test is sent next, the mediator's rewrite made first (blocking)."""
        return self._run(self._view())

    def complete(self) -> llm.Completion:
        """The model's whole next reply, not streamed (blocking); nothing is written but the mediator's turn."""
        return self._run(self._answer())

    async def acomplete(self) -> llm.Completion:
        """As :meth:`complete`, on the event loop."""
        return await self._arun(self._answer())

    def _run(self, steps: _Steps[_T]) -> _T:
        """Make the model calls of ``steps`` one after another, blocking; return their result."""
        return run_blocking(self._arun(steps, blocking=True))

    async def _arun(self, steps: _Steps[_T], *, blocking: bool = False) -> _T:
        """Make the model calls of ``steps`` one after another on the event loop; return their result.

        Args:
            steps: The engine logic that needs the calls.
            blocking: Make each call blocking instead (for :meth:`_run`), so that nothing
                here waits for an event loop.
        """
        try:
            call = next(steps)
            while True:
                try:
                    if blocking:
                        result = llm.complete(call.model, call.messages, call.params, timeout=self.timeout)
                    else:
                        # Streamed, so that a simulated reply's time to first token is measured too;
                        # the scripted model's timings are its script's, and streaming them would
                        # cost a batch run about a third of its turns per second.
                        streamed = call.model != llm.SCRIPTED
                        result = await llm.acomplete(
                            call.model, call.messages, call.params, timeout=self.timeout, streamed=streamed
                        )
                except llm.ModelError as e:
                    call = steps.throw(e)
                else:
                    call = steps.send(result)
        except StopIteration as done:
            return done.value

    def reply(self, *, stream: bool = True) -> Reply:
        """Ask the model under test for its next turn.

        Returns:
            A :class:`Reply`; iterate it for text as it arrives. The assistant turn is
            committed when the iteration ends, is stopped, or fails.

        Raises:
            ConversationOver: nothing to reply to.
        """
        if not self.awaiting_reply:
            raise ConversationOver("There is no message to reply to.")
        return Reply(self, stream=stream)

    async def areply(self) -> TurnView:
        """Ask for the next turn on the event loop (batch simulation).

        Nobody watches a simulated conversation, so the reply is read whole (streamed from
        any model but the scripted one, so that its time to first token is measured) and
        committed once, exactly as :meth:`reply` commits it.
        """
        if not self.awaiting_reply:
            raise ConversationOver("There is no message to reply to.")
        return await Reply(self, stream=False).arun()

    def finish(self, outcome: str, *, then: Callable[[Connection], None] | None = None) -> None:
        """End the conversation (answered, gave_up, turn_limit, all_revealed, correct, abandoned).

        Args:
            outcome: Why it ended.
            then: More writes for the same transaction (the runner completes the
                participant with its last conversation).
        """
        with self.engine.begin() as conn:
            row = conn.execute(
                _SESSIONS.update()
                .where(_SESSIONS.c.id == self.session_id, _SESSIONS.c.status == "active")
                .values(status="ended", outcome=outcome, ended_at=utcnow())
                .returning(_SESSIONS.c.participant_id)
            ).first()
            if row is not None:
                conn.execute(
                    _EVENTS.insert(),
                    {"session_id": self.session_id, "participant_id": row[0], "kind": "end", "data": {"outcome": outcome}},
                )
                self.status, self.outcome = "ended", outcome
            else:
                # Ended elsewhere first (another tab, an expiry): keep what the database says.
                found = conn.execute(
                    select(_SESSIONS.c.status, _SESSIONS.c.outcome).where(_SESSIONS.c.id == self.session_id)
                ).one()
                self.status, self.outcome = found.status, found.outcome
            if then is not None:
                then(conn)

    def log_event(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Append an event (stop, retry, reveal, page hidden…) to this conversation's log."""
        with self.engine.begin() as conn:
            if self.participant_id is None:
                self.participant_id = conn.execute(
                    select(_SESSIONS.c.participant_id).where(_SESSIONS.c.id == self.session_id)
                ).scalar_one()
            conn.execute(
                _EVENTS.insert(),
                {"session_id": self.session_id, "participant_id": self.participant_id, "kind": kind, "data": data},
            )

    def run_probe(self) -> dict[str, Any] | None:
        """Ask the knowledge probe of a presupposition item to the same model, once.

        The probe is a separate single-turn call; its question, reply, score and usage are
        stored with the conversation. Returns None for items without a probe.
        """
        if not isinstance(self.item, PresuppositionItem) or self.item.probe is None:
            return None
        with Session(self.engine) as s:
            chat = s.get(ChatSession, self.session_id)
            if chat is not None and chat.probe:
                return dict(chat.probe)
        probe = self.item.probe
        record: dict[str, Any] = {"question": probe.question, "model": self.model}
        try:
            result = llm.complete(self.model, [{"role": "user", "content": probe.question}], self.params, timeout=self.timeout)
            record |= {"reply": result.text, **result.usage()}
            from .judge import score_probe

            sc = score_probe(self.item, result.text)
            record |= {"score": sc.value, "scorable": sc.scorable, "extracted": sc.extracted}
        except llm.ModelError as e:
            record |= {"reply": None, "error": e.message}
        with Session(self.engine) as s, s.begin():
            chat = s.get(ChatSession, self.session_id)
            assert chat is not None
            chat.probe = record
        return record


def start_session(
    s: Session,
    participant: Participant,
    item_key: str,
    condition_key: str,
    *,
    position: int = 0,
    model_override: str | None = None,
) -> ChatSession:
    """Create the conversation for one item under one condition (the caller commits).

    The session row and its ``start`` event are written by :meth:`Conversation.begin`, on
    the session's own transaction.

    Args:
        s: Open session.
        participant: Who converses.
        item_key: The item's id in the study.
        condition_key: The condition's name in the spec.
        position: Order in the participant's plan.
        model_override: A model id of the spec, or a litellm string, replacing the
            condition's model (pilots and the ``chat`` command).

    Raises:
        lab.setup.UnknownName: unknown item or condition.
        lab.setup.ConditionMismatch: the condition does not fit the item.
    """
    study = s.get(Study, participant.study_id)
    assert study is not None
    setup = resolve_setup(s, study, item_key, condition_key, model_override)
    s.flush()
    conv = Conversation.begin(s.get_bind(), s.connection(), setup, participant.id, position=position)  # type: ignore[arg-type]
    chat = s.get(ChatSession, conv.session_id)
    assert chat is not None
    return chat
