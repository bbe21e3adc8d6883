"""The conversation engine: runs one conversation under a study condition and records every turn.

The reveal rules (FULL, CONCAT, SHARDED, SNOWBALL, RECAP, ON_REQUEST) live in
:mod:`lab.reveal`; the engine applies them to each message and records the result.

The user turn is committed before the model is called; the assistant turn is written when the
first piece arrives and checkpointed while it streams, so a stop, a refresh or a crash keeps
what arrived (``partial``); a provider error becomes an error turn and the reply can be retried.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import llm
from . import reveal as rules
from .blocking import run_blocking
from .errors import LabError
from .group_commit import AfterWrite, GroupCommit, insert_turn
from .items import Item, PresuppositionItem, Shard, parse_item
from .reveal import (  # noqa: F401  (re-exported: the engine's public names)
    GO_AHEAD,
    RECAP_INTRO,
    SNOWBALL_INTRO,
    MessageRejected,
    Opening,
    bullet_list,
    full_instruction,
    item_shards,
    requested_shard,
)
from .schema import ChatSession, Condition, Event, ItemRow, Participant, Study, Turn, utcnow
from .spec import ConditionSpec, ModelSpec
from .studies import definition

if TYPE_CHECKING:
    from .labels import AutoLabels

MEDIATOR_PROMPT_VERSION = "mediator-1"
MEDIATOR_PROMPT = (
    "You help an assistant understand a user. Below is a conversation between a user and an "
    "assistant. Rewrite everything the user has asked for so far into one complete, explicit "
    "instruction, written as the user speaking to the assistant. Keep every requirement, number "
    "and constraint the user gave, resolve references to earlier messages, and add nothing the "
    "user did not say. Reply with the instruction only."
)
"""What the mediator model is told (stored with every mediator turn by version)."""

CHECKPOINT_SECONDS = 0.5
_EMOJI_TAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
"""A subdivision flag (England, Scotland, Wales): a black flag, tag letters, a cancel tag."""
_JOINERS = frozenset("\u200c\u200d")
"""Zero-width non-joiner and joiner: they build emoji sequences and shape Arabic and Indic
script; they hide nothing."""
_PREPENDED = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd")
"""Visible format characters (Arabic and Kaithi number signs)."""


def _variation_selector(ch: str) -> bool:
    return "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def _hidden(text: str) -> list[bool]:
    """Which characters of a text are invisible controls that could disguise it.

    Refused: control characters other than tab and newline, and format characters (bidi
    overrides and marks, zero-width space, word joiner, byte order mark, tag characters…),
    except what Unicode builds visible text with: the zero-width joiner and non-joiner, tag
    characters inside a subdivision flag, and one variation selector after a visible
    character (a run of them can carry hidden data). Unassigned code points are kept, so
    emoji newer than Python's Unicode tables pass.
    """
    in_flag = [False] * len(text)
    for m in _EMOJI_TAG_SEQUENCE.finditer(text):
        for i in range(m.start() + 1, m.end()):
            in_flag[i] = True
    out = [False] * len(text)
    for i, ch in enumerate(text):
        if ch in "\t\n" or in_flag[i]:
            continue
        if _variation_selector(ch):
            prev = text[i - 1] if i else ""
            out[i] = not prev or prev.isspace() or out[i - 1] or _variation_selector(prev)
            continue
        cat = unicodedata.category(ch)
        out[i] = cat in ("Cc", "Cs") or (cat == "Cf" and ch not in _JOINERS and ch not in _PREPENDED)
    return out


def strip_hidden(text: str) -> str:
    """The text without invisible controls (see :func:`_hidden`); emoji are kept whole."""
    if text.isascii():
        return text if text.isprintable() else "".join(ch for ch in text if " " <= ch < "\x7f" or ch in "\t\n")
    return "".join(ch for ch, hide in zip(text, _hidden(text), strict=True) if not hide)


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


def clean_message(text: str | None, max_chars: int) -> str:
    """Strip invisible control characters (emoji are kept whole); refuse empty and oversized messages.

    Args:
        text: What the participant typed.
        max_chars: The study's limit.

    Returns:
        The text as stored (newlines and tabs kept).

    Raises:
        MessageRejected: empty, whitespace-only or longer than ``max_chars``.
    """
    cleaned = strip_hidden((text or "").replace("\r\n", "\n").replace("\r", "\n"))
    if not cleaned.strip():
        raise MessageRejected("Please write a message before sending.")
    if len(cleaned) > max_chars:
        raise MessageRejected(f"Your message is {len(cleaned):,} characters long; the limit is {max_chars:,}. Please shorten it.")
    return cleaned


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


@dataclass(frozen=True)
class Setup:
    """What a conversation is made of, resolved once from a study version.

    Many conversations share one (a simulated grid starts hundreds from a handful), so the
    lookups and the item's parsing are done once; :func:`resolve_setup` makes it.
    """

    study_id: int
    item_id: int
    item_key: str
    item: Item
    """The parsed item."""
    condition_id: int
    condition_key: str
    condition: ConditionSpec
    model: str
    """The model under test (the condition's, or the override)."""
    params: dict[str, Any]
    mediator: ModelSpec | None
    """The mediator model of a ``mediator`` condition."""
    turn_limit: int
    max_message_chars: int
    carried_cards: rules.CarriedCards = "ask"
    """The study's rule for a message that carries more than one new card."""


@dataclass
class Conversation:
    """One conversation (a ``session`` row) under its condition.

    Build it with :meth:`load`; every method commits its own short transaction.
    """

    engine: Engine
    session_id: int
    item: Item
    condition: ConditionSpec
    condition_key: str
    model: str
    params: dict[str, Any]
    mediator: ModelSpec | None
    turn_limit: int
    max_message_chars: int
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
    carried_cards: rules.CarriedCards = "ask"
    """What a participant message carrying more than one new card gets (``plan.carried_cards``)."""
    group: GroupCommit | None = None
    """Shares the commits of this conversation's turns with others on the same event loop
    (batch simulation); None commits each turn on its own. Used by the ``a``-methods."""

    # --- construction ---------------------------------------------------------------

    @classmethod
    def load(cls, engine: Engine, session_id: int, *, autolabel: bool = True) -> Conversation:
        """Rebuild a conversation from the database (after a refresh, in another process…)."""
        with Session(engine) as s:
            chat = s.get(ChatSession, session_id)
            if chat is None:
                raise LookupError(f"no conversation {session_id}")
            study = s.get(Study, chat.study_id)
            cond_row = s.get(Condition, chat.condition_id)
            item_row = s.get(ItemRow, chat.item_id)
            assert study is not None and cond_row is not None and item_row is not None
            setup = _setup(study, item_row, cond_row, chat.model, dict(chat.model_params or {}))
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
        return cls(
            engine=engine,
            session_id=session_id,
            item=setup.item,
            condition=setup.condition,
            condition_key=setup.condition_key,
            model=setup.model,
            params=dict(setup.params),
            mediator=setup.mediator,
            turn_limit=setup.turn_limit,
            max_message_chars=setup.max_message_chars,
            carried_cards=setup.carried_cards,
            status="active",
            outcome=None,
            autolabel=autolabel,
            participant_id=participant_id,
        )

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

    def shards_for_message(self, requested: list[int] | None) -> list[int]:
        """Which shards a new user message reveals (:func:`lab.reveal.message_shards`).

        Raises:
            MessageRejected: more than one new shard, or an unknown shard.
        """
        first = self.user_turns == 0
        return rules.message_shards(
            self.shards, self.revealed, requested, first=first, reveal=self.reveal, item=self.item, condition=self.condition
        )

    def over_reason(self) -> str | None:
        """Why the conversation is over, or None while it goes on."""
        if self.status != "active":
            return self.outcome or self.status
        if self.awaiting_reply:
            return None
        if self.user_turns >= self.turn_limit and any(t.role == "assistant" and not t.error for t in self.turns):
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

    def _write(self, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
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

    async def _awrite(self, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
        """As :meth:`_write`, sharing the commit through :attr:`group` when there is one."""
        if self.group is None:
            return self._write(then=then, **fields)
        index = (self.turns[-1].index if self.turns else 0) + 1
        try:
            turn_id = await self.group.insert_turn({"session_id": self.session_id, "index": index, **fields}, then)
        except IntegrityError:
            # Another writer took the index: continue after its turns, on our own.
            self.refresh()
            return self._write(then=then, **fields)
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

    def _update(self, view: TurnView, *, then: AfterWrite | None = None, **fields: Any) -> TurnView:
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
        text: str,
        shards: list[int] | None = None,
        *,
        source: str = "participant",
        client: dict[str, Any] | None = None,
    ) -> TurnView:
        """Commit a user message (before any model call).

        Args:
            text: The message as written.
            shards: Shard ids the sender says it reveals (ignored for the first message,
                which reveals the opening).
            source: ``participant`` or ``simulator``.
            client: Browser timing (typing started, edits).

        Returns:
            The committed turn.

        Raises:
            MessageRejected: empty, too long, or revealing more than one new shard.
            ConversationOver: the conversation has ended or reached its turn limit.
        """
        fields, then = self._user_turn(text, shards, source, client)
        return self._write(then=then, **fields)

    async def asend(
        self,
        text: str,
        shards: list[int] | None = None,
        *,
        source: str = "participant",
        client: dict[str, Any] | None = None,
    ) -> TurnView:
        """As :meth:`send`, on the event loop, sharing the commit through :attr:`group`."""
        fields, then = self._user_turn(text, shards, source, client)
        return await self._awrite(then=then, **fields)

    def _user_turn(
        self, text: str, shards: list[int] | None, source: str, client: dict[str, Any] | None
    ) -> tuple[dict[str, Any], AfterWrite | None]:
        """The columns of a user message once the rules allow it, and the detection to log (see :meth:`send`).

        A participant's text is read for cards it carries beyond the one picked
        (:func:`lab.reveal.check_cards`); what is found is logged as a ``cards`` event
        with the turn. Simulated participants are checked by the simulator's own rules.
        """
        if self.status != "active":
            raise ConversationOver("This conversation has ended.")
        if self.user_turns >= self.turn_limit:
            raise ConversationOver(f"This conversation has reached its limit of {self.turn_limit} messages.")
        content = clean_message(text, self.max_message_chars)
        revealing = self.shards_for_message(shards)
        done, first = self.revealed, self.user_turns == 0
        then: AfterWrite | None = None
        if source == "participant":
            check = rules.check_cards(
                self.shards, done, revealing, content, first=first, reveal=self.reveal, policy=self.carried_cards
            )
            found = check.record()
            if check.refusal is not None:
                self.log_event("cards", {**(found or {}), "turn": None, "refused": True})
                raise MessageRejected(check.refusal)
            revealing = check.shards
            if found is not None:
                then = self._cards_event(found)
        fields: dict[str, Any] = {
            "role": "user",
            "source": source,
            "content": content,
            "model_content": rules.snowball_content(self.reveal, self.shards, done, revealing, content, first=first),
            "shards": revealing,
        }
        if client is not None:
            fields["client"] = client
        return fields, then

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
        return self._write(role="user", source="lab", content=rules.recap_text(self.shards), shards=[])

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
            self._write(
                role="mediator", source="model", content="", model=self.mediator.model, params=logged, error=error.message
            )
            return []
        self._write(role="mediator", source="model", content=result.text, model=result.model, params=logged, **_metrics(result))
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
                        result = await llm.acomplete(call.model, call.messages, call.params, timeout=self.timeout)
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
        """Ask for the next turn without streaming, on the event loop (batch simulation).

        Nobody watches a simulated conversation, so the reply is not streamed; the turn is
        committed exactly as :meth:`reply` commits it.
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


def _metrics(result: llm.Completion) -> dict[str, Any]:
    return {
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": result.cost,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "finish_reason": result.finish_reason,
        "partial": result.partial,
        "first_token_at": result.first_token_at,
        "last_token_at": result.ended_at,
    }


class Reply:
    """An assistant reply in progress; iterate it for text pieces.

    The assistant turn is inserted at the first piece (``partial``) and checkpointed every
    half second, then completed with usage and timing. Stopping the iteration keeps what
    arrived as a partial turn; a provider error, or a reply that ends with no text, is
    committed as an error turn and raised as :class:`lab.llm.ModelError`.
    """

    def __init__(self, conv: Conversation, *, stream: bool) -> None:
        self.conv = conv
        self.stream = stream
        self.turn: TurnView | None = None
        self.error: llm.ModelError | None = None
        self._text = ""
        self._last_checkpoint = 0.0

    @property
    def text(self) -> str:
        """Text received so far."""
        return self._text

    def __iter__(self) -> Generator[str, None, None]:
        conv = self.conv
        self._started = utcnow()
        try:
            if not self.stream:
                result = conv._run(conv._answer())
            else:
                st = llm.stream(conv.model, conv._run(conv._view()), dict(conv.params), timeout=conv.timeout)
        except llm.ModelError as e:
            self.error = e
            self._fail(e)
            raise
        if not self.stream:
            self._text = result.text
            self._finish(result)
            if self.error is not None:
                raise self.error
            yield result.text
            return
        try:
            for piece in st:
                self._text += piece
                self._checkpoint()
                yield piece
        except llm.ModelError as e:
            self.error = e
            self._fail(e)
            raise
        finally:
            # Also runs when the reader stops early (GeneratorExit): what arrived is kept as partial.
            if self.error is None:
                st.close()
                self._finish(st.completion)
        if self.error is not None:
            raise self.error  # the model returned no text (see _completed)

    def consume(self) -> TurnView:
        """Read the whole reply; returns the committed turn (an error turn on failure)."""
        try:
            for _ in self:
                pass
        except llm.ModelError:
            pass
        assert self.turn is not None
        return self.turn

    def _checkpoint(self) -> None:
        now = time.monotonic()
        if self.turn is None:
            self.turn = self.conv._write(
                role="assistant",
                source="model",
                content=self._text,
                model=self.conv.model,
                params=self.conv.params,
                partial=True,
                sent_at=self._started,
                first_token_at=utcnow(),
            )
            self._last_checkpoint = now
        elif now - self._last_checkpoint >= CHECKPOINT_SECONDS:
            self.turn = self.conv._update(self.turn, content=self._text)
            self._last_checkpoint = now

    def _judge(self, fields: dict[str, Any]) -> AutoLabels | None:
        """Judge a reply before it is written, so that the reply and its labels commit together."""
        if not self.conv.autolabel or fields.get("error") is not None:
            return None
        from .labels import auto_labels

        return auto_labels(self.conv, fields.get("content", ""))

    def _judged(self, auto: AutoLabels | None) -> None:
        if auto is not None and self.turn is not None:
            self.conv.verdicts[self.turn.id] = (auto.code, auto.score)

    def _store(self, **fields: Any) -> None:
        conv = self.conv
        auto = self._judge(fields)
        then = auto.write if auto is not None else None
        if self.turn is None:
            self.turn = conv._write(
                role="assistant", source="model", model=conv.model, params=conv.params, sent_at=self._started, then=then, **fields
            )
        else:
            self.turn = conv._update(self.turn, then=then, **fields)
        self._judged(auto)

    async def arun(self) -> TurnView:
        """Get the whole reply at once on the event loop and commit it (an error turn on failure)."""
        conv = self.conv
        self._started = utcnow()
        try:
            result = await conv._arun(conv._answer())
        except llm.ModelError as e:
            self.error = e
            await self._astore(**self._failure(e))
        else:
            self._text = result.text
            await self._astore(**self._completed(result))
        assert self.turn is not None
        return self.turn

    async def _astore(self, **fields: Any) -> None:
        """Write the whole reply at once (nothing was checkpointed), sharing the commit."""
        conv = self.conv
        assert self.turn is None
        auto = self._judge(fields)
        self.turn = await conv._awrite(
            role="assistant",
            source="model",
            model=conv.model,
            params=conv.params,
            sent_at=self._started,
            then=auto.write if auto is not None else None,
            **fields,
        )
        self._judged(auto)

    def _finish(self, result: llm.Completion) -> None:
        self._store(**self._completed(result))

    def _completed(self, result: llm.Completion) -> dict[str, Any]:
        """The columns of a reply that ended; one that ended with no text is a failure.

        An empty (or whitespace-only) reply answers nothing: stored as an ordinary turn it
        would read as an answer and show as an empty bubble. It is stored like a provider
        error (content ``''``, ``error`` set, :attr:`error` set so the reader raises it),
        keeping the call's usage and finish reason, which the call did produce. A reply the
        reader stopped before any text arrived is a cut reply, not an empty one.
        """
        fields: dict[str, Any] = {"content": result.text, **_metrics(result)}
        if result.partial or result.text.strip():
            return fields
        self.error = llm.ModelError("empty_reply", f"{result.model} returned no text.")
        return fields | {"content": "", "error": self.error.message}

    def _failure(self, e: llm.ModelError) -> dict[str, Any]:
        return {"content": self._text, "error": e.message, "partial": bool(self._text), "finish_reason": "error"}

    def _fail(self, e: llm.ModelError) -> None:
        self._store(**self._failure(e))


def resolve_setup(s: Session, study: Study, item_key: str, condition_key: str, model_override: str | None = None) -> Setup:
    """Look up what a conversation of one item under one condition is made of.

    Args:
        s: Open session.
        study: The study version.
        item_key: The item's id in the study.
        condition_key: The condition's name in the spec.
        model_override: A model id of the spec, or a litellm string, replacing the
            condition's model (pilots, simulation grids and the ``chat`` command).

    Raises:
        LookupError: unknown item or condition; ValueError: the condition does not fit the item.
    """
    d = definition(study)
    if condition_key not in d.spec.conditions:
        raise LookupError(f"unknown condition '{condition_key}' (study has: {', '.join(d.spec.conditions)})")
    cond = d.spec.conditions[condition_key]
    item_row = s.scalar(select(ItemRow).where(ItemRow.study_id == study.id, ItemRow.key == item_key))
    if item_row is None:
        raise LookupError(f"unknown item '{item_key}'")
    cond_row = s.scalar(select(Condition).where(Condition.study_id == study.id, Condition.key == condition_key))
    assert cond_row is not None
    model_spec = d.spec.models[cond.model]
    model, params = model_spec.model, dict(model_spec.params)
    if model_override:
        if model_override in d.spec.models:
            model, params = d.spec.models[model_override].model, dict(d.spec.models[model_override].params)
        else:
            model, params = model_override, {}
    setup = _setup(study, item_row, cond_row, model, params)
    if not cond.applies_to(setup.item):
        raise ValueError(f"condition '{condition_key}' does not apply to item '{item_key}' ({setup.item.kind})")
    return setup


def _setup(study: Study, item_row: ItemRow, cond_row: Condition, model: str, params: dict[str, Any]) -> Setup:
    """A setup from the rows of a study version and the model actually called."""
    d = definition(study)
    cond = d.spec.conditions[cond_row.key]
    return Setup(
        study_id=study.id,
        item_id=item_row.id,
        item_key=item_row.key,
        item=parse_item(item_row.payload, item_row.key),
        condition_id=cond_row.id,
        condition_key=cond_row.key,
        condition=cond,
        model=model,
        params=params,
        mediator=d.mediator(cond_row.key, model, params),
        turn_limit=d.spec.plan.turn_limit,
        max_message_chars=d.spec.plan.max_message_chars,
        carried_cards=d.spec.plan.carried_cards,
    )


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
        LookupError: unknown item or condition; ValueError: the condition does not fit the item.
    """
    study = s.get(Study, participant.study_id)
    assert study is not None
    setup = resolve_setup(s, study, item_key, condition_key, model_override)
    s.flush()
    conv = Conversation.begin(s.get_bind(), s.connection(), setup, participant.id, position=position)  # type: ignore[arg-type]
    chat = s.get(ChatSession, conv.session_id)
    assert chat is not None
    return chat
