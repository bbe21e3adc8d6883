"""The participant's way through a study: link → consent → instructions → items → questions → code.

Everything here is testable without Streamlit; ``pages/participant.py`` only draws it.

Who is visiting comes from the link alone, looked up in the database on every page run
(a refresh or a new tab is a new Streamlit session and must land in the same place):

- a personal link ``?t=<token>`` names one participant (only the token's hash is stored);
- an open study link ``?study=<slug>`` mints a participant on the study's newest version.
  With ``PROLIFIC_PID`` (and ``STUDY_ID``, ``SESSION_ID``) in the URL, the same PID on the
  same study finds the same participant again, so a returning participant resumes
  instead of starting over and the URL stays as Prolific made it. Without a PID a
  personal token is minted and the page puts it in the URL (``?t=``), so a refresh
  returns to the same participant.

Which links lead in (anything else, including a link with an empty ``t``, ``study`` or
Prolific parameter, gets one plain "link not valid" page; a timed-out participant is told
instead that their time ran out, and whom to contact):

| participant status | study (newest version) may be |
|---|---|
| new (open link) or invited | open |
| consented, active | open or paused: a study paused mid-way lets people who started finish |
| completed, declined | any: they see their completion code, or the goodbye, again |
| withdrawn, timed_out | never: the link is used up |

Pilot participants (experimenters trying a study) may also enter a draft study;
simulated participants never enter through a link.

The steps follow the participant's status and ``position`` (index into the plan):
consent → instructions → for each planned item: chat, then the post-item questions →
post-study questions → done (debrief, completion code, redirect). A step that needs no
input (no questions configured) is passed over.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, NoReturn

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, joinedload

from .assign import assign, cells
from .db import reachable
from .dialogue import Conversation, TurnView, start_session
from .errors import LabError
from .generation import GENERATIONS
from .links import PROLIFIC_PARAMS
from .participants import by_token, create_participant, new_token
from .reveal import MessageRejected, as_sent, clean_message, screen_message  # noqa: F401  (screen_message: re-exported)
from .schema import ChatSession, Event, Participant, Response, Study, utcnow
from .spec import QuestionSpec, StudyDefinition
from .studies import definition, latest

LINK_NOT_VALID = "This link is not valid"
"""The one thing a visitor with an unknown, closed, used-up or tampered link is told."""

MESSAGE_NOT_SAVED = "We could not save your message just now. It is still in the box; please send it again in a moment."
"""What a participant is told when the database cannot take their message (see :func:`send_message`)."""

PARTICIPANT_OUTCOMES = ("answered", "gave_up", "turn_limit")
"""How a participant may end a conversation: they have their answer, they give up, or
they reached the study's message limit."""

StepKind = Literal["consent", "instructions", "chat", "post_item", "post_study", "done", "declined", "timed_out", "not_valid"]

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENTER: dict[str, tuple[str, ...]] = {
    "invited": ("open",),
    "consented": ("open", "paused"),
    "active": ("open", "paused"),
    "completed": ("draft", "open", "paused", "closed"),
    "declined": ("draft", "open", "paused", "closed"),
    "withdrawn": (),
    "timed_out": (),
}
_MAX_TEXT_ANSWER = 4000


class LinkNotValid(LabError):
    """A link that leads nowhere (unknown, tampered, closed study, used up)."""

    def __init__(self) -> None:
        super().__init__(LINK_NOT_VALID)


class TimeRanOut(LinkNotValid):
    """The link of a participant who was timed out: the study's time for them ran out."""

    def __init__(self, contact: str | None) -> None:
        super().__init__()
        self.contact = contact
        """Whom to contact (the spec's ``contact``), if the study says."""


TIME_RAN_OUT = "Your time for this study has run out"

SEEN_EVERY = timedelta(minutes=1)
"""How often a participant's page runs mark them active (``participant.updated_at``), which
keeps someone reading but not writing from being timed out."""
"""What a timed-out participant is told (with whom to contact), instead of "link not valid"."""


class AnswersRejected(LabError, ValueError):
    """Survey answers that cannot be saved, with the sentence to show."""


class NoParticipant(LabError, LookupError):
    """A participant id the database does not have."""


class NotChatting(LabError, LookupError):
    """A participant asked for a conversation while at another step."""


class OutcomeRefused(LabError, ValueError):
    """An ending a participant cannot choose."""


@dataclass(frozen=True)
class Visit:
    """Who a link resolved to."""

    participant_id: int
    token: str | None = None
    """A personal token minted on this visit; the page puts it in the URL as ``?t=``."""


@dataclass(frozen=True)
class Step:
    """Where a participant is."""

    kind: StepKind
    position: int = 0
    """Index of the current item in the plan."""
    total: int = 0
    """Items in the plan."""
    session_id: int | None = None
    """The conversation of the current item, once started."""


@dataclass(frozen=True)
class Card:
    """One piece of the task as the participant holds it."""

    id: int
    """Shard id (0 for a task shown whole)."""
    text: str
    state: Literal["start", "shared", "partly", "available", "locked", "held", "asked"]
    """start: opens the conversation; shared: already told; partly: a task shown whole
    of which the messages so far carry only some pieces; available: may be shared now
    (a task shown whole: none of it is in the messages yet); locked: may be shared after
    the first message; held: share only when the assistant asks for it (ON_REQUEST);
    asked: the assistant asked for it."""


@dataclass(frozen=True)
class Completion:
    """What a participant gets at the end."""

    code: str
    redirect: str | None
    """Where to go next (``{code}`` filled in), e.g. Prolific's completion URL."""
    debrief: str | None


# --- links ------------------------------------------------------------------------------


def _param(query: Mapping[str, Any], key: str) -> str | None:
    value = query.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _study_status(s: Session, study: Study) -> str:
    """A superseded version follows the newest version of its study."""
    if study.status != "superseded":
        return study.status
    newest = latest(s, study.slug)
    return newest.status if newest is not None else "closed"


def may_enter(s: Session, participant: Participant) -> bool:
    """Whether a participant's link leads in now (see the module's table)."""
    if participant.kind == "simulated":
        return False
    study = s.get(Study, participant.study_id)
    if study is None:
        return False
    allowed = _ENTER.get(participant.status, ())
    if participant.kind == "pilot" and participant.status in ("invited", "consented", "active"):
        allowed = (*allowed, "draft")
    return _study_status(s, study) in allowed


def _lock_study(s: Session, study: Study) -> None:
    # A write first: SQLite takes its write lock and Postgres locks the row, so two tabs
    # following the same open link at once cannot both mint a participant.
    s.execute(update(Study).where(Study.id == study.id).values(updated_at=utcnow()))


def _by_prolific(s: Session, slug: str, pid: str) -> Participant | None:
    q = (
        select(Participant)
        .join(Study, Study.id == Participant.study_id)
        .where(Study.slug == slug, Participant.prolific_pid == pid)
        .order_by(Participant.id.desc())
        .limit(1)
    )
    return s.scalars(q).first()


def resolve_link(engine: Engine, query: Mapping[str, Any]) -> Visit:
    """Find (or, for an open study link, create) the participant a URL names.

    Args:
        engine: The lab database.
        query: The URL's query parameters (``t``, or ``study`` with Prolific's ids).

    Returns:
        The visit; its ``token`` is set when a personal token was just minted.

    Raises:
        LinkNotValid: unknown or tampered token, unknown or closed study, used-up link,
            malformed Prolific ids.
    """
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return _resolve(s, query).visit


class _Found(NamedTuple):
    """What :func:`_resolve` found, with the rows it read (a session keeps only rows someone holds)."""

    visit: Visit
    participant: Participant
    study: Study
    wrote: bool
    """A participant was minted (or the study locked to mint one): the caller commits."""


def _entered(s: Session, participant: Participant | None) -> _Found:
    """A participant found by their link, if it leads in now (see :func:`may_enter`)."""
    study = s.get(Study, participant.study_id) if participant is not None else None
    if participant is None or study is None or not may_enter(s, participant):
        _refuse(s, participant)
    return _Found(Visit(participant.id), participant, study, False)


def _resolve(s: Session, query: Mapping[str, Any]) -> _Found:
    """:func:`resolve_link` in an open session."""
    # A parameter that is there but empty is a broken link, never a reason to fall back
    # (an empty PROLIFIC_PID would otherwise mint a stranger a new participant).
    if any(k in query and _param(query, k) is None for k in ("t", "study", *PROLIFIC_PARAMS)):
        raise LinkNotValid()
    token, slug = _param(query, "t"), _param(query, "study")
    if token:
        return _entered(s, by_token(s, token))
    if not slug:
        raise LinkNotValid()
    prolific = {k: v for k in PROLIFIC_PARAMS if (v := _param(query, k)) is not None}
    if any(not _EXTERNAL_ID.match(v) for v in prolific.values()):
        raise LinkNotValid()
    pid = prolific.get("PROLIFIC_PID")
    if pid and (found := _by_prolific(s, slug, pid)) is not None:
        return _entered(s, found)
    study = latest(s, slug)
    if study is None or study.status != "open" or not cells(definition(study)):
        raise LinkNotValid()
    _lock_study(s, study)
    if pid and (found := _by_prolific(s, slug, pid)) is not None:  # arrived while we waited for the lock
        return _Found(Visit(found.id), found, study, True)
    minted = None if pid else new_token()
    participant = create_participant(s, study, token=minted, prolific=prolific)
    s.add(Event(participant_id=participant.id, kind="link", data={"via": "open", "prolific": bool(pid)}))
    return _Found(Visit(participant.id, minted), participant, study, True)


def _refuse(s: Session, participant: Participant | None) -> NoReturn:
    """Refuse a link: a timed-out participant is told their time ran out, anyone else that it is not valid."""
    if participant is not None and participant.status == "timed_out" and participant.kind != "simulated":
        study = s.get(Study, participant.study_id)
        raise TimeRanOut(definition(study).spec.contact if study is not None else None)
    raise LinkNotValid()


# --- the participant's way through ------------------------------------------------------


def new_completion_code() -> str:
    """A per-participant completion code for studies that do not set one."""
    return secrets.token_hex(4).upper()


class Flow:
    """One participant's way through their study.

    Build it with :meth:`load` on every page run; every method reads the database afresh
    and commits its own short transaction, so two tabs stay consistent.
    """

    def __init__(self, engine: Engine, participant_id: int, study_id: int, definition: StudyDefinition) -> None:
        self.engine = engine
        self.participant_id = participant_id
        self.study_id = study_id
        self.definition = definition

    @classmethod
    def load(cls, engine: Engine, participant_id: int) -> Flow:
        """The flow of a participant.

        Raises:
            NoParticipant: no such participant.
        """
        with Session(engine) as s:
            p = s.get(Participant, participant_id)
            if p is None:
                raise NoParticipant(f"no participant {participant_id}: check the id (the monitor lists participants)")
            study = s.get(Study, p.study_id)
            assert study is not None
            return cls(engine, p.id, study.id, definition(study))

    # --- reading ------------------------------------------------------------------------

    @property
    def consent_text(self) -> str:
        """The study's consent text (Markdown)."""
        return self.definition.spec.consent

    @property
    def instructions(self) -> str:
        """The study's instructions (Markdown)."""
        return self.definition.spec.instructions

    def questions(self, kind: Literal["post_item", "post_study"]) -> list[QuestionSpec]:
        """The questions asked after each item or at the end."""
        return list(getattr(self.definition.spec.questions, kind))

    def _current_chat(self, s: Session, p: Participant) -> ChatSession | None:
        # With its item and condition: a page at the chat step builds the conversation
        # from them, so they come in the same query.
        q = (
            select(ChatSession)
            .where(ChatSession.participant_id == p.id, ChatSession.position == p.position)
            .options(joinedload(ChatSession.item), joinedload(ChatSession.condition))
            .order_by(ChatSession.id.desc())
            .limit(1)
        )
        return s.scalars(q).first()

    def _step(self, s: Session, p: Participant) -> Step:
        return self._step_and_chat(s, p)[0]

    def _step_and_chat(self, s: Session, p: Participant) -> tuple[Step, ChatSession | None]:
        """The participant's step and, at an item, its conversation's row (with its item and condition)."""
        total = len(p.plan or [])
        early: dict[str, StepKind] = {
            "declined": "declined",
            "completed": "done",
            "invited": "consent",
            "consented": "instructions",
            "timed_out": "timed_out",
        }
        if p.status in early:
            return Step(early[p.status], total=total), None
        if p.status != "active" or not may_enter(s, p):
            return Step("not_valid", total=total), None
        if p.position < total:
            chat = self._current_chat(s, p)
            chat_id = chat.id if chat is not None else None
            if chat is None or chat.status == "active":
                return Step("chat", p.position, total, chat_id), chat
            return Step("post_item", p.position, total, chat_id), chat
        return Step("post_study", p.position, total), None

    def step(self) -> Step:
        """The participant's current step; steps with no questions to ask are passed over."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            p = s.get(Participant, self.participant_id)
            assert p is not None
            return self._settled(s, p)

    def _passed_over(self, step: Step) -> bool:
        """Whether a step has nothing to ask, so the participant moves on at once."""
        return step.kind in ("post_item", "post_study") and not self.questions(step.kind)

    def _settled(self, s: Session, p: Participant) -> Step:
        """The current step after passing over those with nothing to ask (written in ``s``'s transaction)."""
        step = self._step(s, p)
        while self._passed_over(step):
            self._advance(s, p, step)
            step = self._step(s, p)
        return step

    # --- consent and instructions -------------------------------------------------------

    def consent(self, agree: bool) -> Step:
        """Record the participant's answer to the consent text (once)."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            p = s.get(Participant, self.participant_id)
            assert p is not None
            if p.status == "invited":
                if agree:
                    p.status, p.consented_at = "consented", utcnow()
                    assign(s, p)
                    s.add(Event(participant_id=p.id, kind="consent", data={"agreed": True}))
                else:
                    p.status = "declined"
                    s.add(Event(participant_id=p.id, kind="consent", data={"agreed": False}))
                s.flush()
            return self._settled(s, p)

    def begin(self) -> Step:
        """The participant has read the instructions and starts the first item."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            p = s.get(Participant, self.participant_id)
            assert p is not None
            if p.status == "consented":
                p.status = "active"
                s.add(Event(participant_id=p.id, kind="instructions", data={"read": True}))
                s.flush()
            return self._settled(s, p)

    # --- items --------------------------------------------------------------------------

    def conversation(self, *, autolabel: bool = True) -> Conversation:
        """The conversation of the current item, started on first use.

        Raises:
            NotChatting: the participant is not at a chat step.
        """
        # Most page runs find the conversation started and the participant seen lately, and
        # only read: the write (a whole-database lock on SQLite) is taken to start a
        # conversation, or to mark the participant active at most once a minute.
        with Session(self.engine, expire_on_commit=False) as s:
            chat_id, seen = self._chat_id(s)
        if _due(chat_id, seen):
            chat_id = self._start_or_mark()
        assert chat_id is not None
        return Conversation.load(self.engine, chat_id, autolabel=autolabel)

    def _start_or_mark(self) -> int:
        """Mark the participant active and start the current item's conversation if it is not yet; its id."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            # Lock the participant row first so two tabs never start the same item twice.
            s.execute(update(Participant).where(Participant.id == self.participant_id).values(updated_at=utcnow()))
            chat_id, _ = self._chat_id(s)
            if chat_id is None:
                p = s.get(Participant, self.participant_id)
                assert p is not None
                entry = (p.plan or [])[p.position]
                chat_id = start_session(s, p, entry["item"], entry["condition"], position=p.position).id
            return chat_id

    def _chat_id(self, s: Session) -> tuple[int | None, datetime]:
        """The current item's conversation (None when it is still to start) and when its participant was last marked active.

        Raises:
            NotChatting: the participant is not at a chat step.
        """
        p = s.get(Participant, self.participant_id)
        assert p is not None
        step = self._step(s, p)
        if step.kind != "chat":
            raise NotChatting(f"participant {p.id} is not chatting (step {step.kind}); reload the page to see where they are")
        return step.session_id, _aware(p.updated_at)

    def finish_item(self, conv: Conversation, outcome: str) -> Step:
        """End the current conversation as the participant decided.

        A presupposition item's knowledge probe is asked now (once), after the
        conversation, so the probe cannot influence it.

        Raises:
            OutcomeRefused: an outcome a participant cannot choose.
        """
        if outcome not in PARTICIPANT_OUTCOMES:
            raise OutcomeRefused(f"outcome '{outcome}' cannot be chosen: use one of {', '.join(PARTICIPANT_OUTCOMES)}")
        conv.finish(outcome)
        conv.run_probe()
        return self.step()

    def _advance(self, s: Session, p: Participant, step: Step) -> None:
        if step.kind == "post_item":
            p.position = step.position + 1
            s.add(Event(participant_id=p.id, session_id=step.session_id, kind="item_done", data={"position": step.position}))
        elif step.kind == "post_study":
            p.status, p.completed_at = "completed", utcnow()
            p.completion_code = p.completion_code or self.definition.spec.completion.code or new_completion_code()
            s.add(Event(participant_id=p.id, kind="completed", data={}))
        s.flush()

    def answer(self, kind: Literal["post_item", "post_study"], answers: Mapping[str, Any], position: int) -> Step:
        """Save the answers to the questions after an item or at the end, and move on.

        Args:
            kind: ``post_item`` or ``post_study``.
            answers: Question key → value as the form gave it.
            position: The item position the form was shown for; a second submission
                of the same form (another tab, a double click) is ignored.

        Raises:
            AnswersRejected: a required question is unanswered or an answer is invalid.
        """
        values = check_answers(self.questions(kind), answers)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            s.execute(update(Participant).where(Participant.id == self.participant_id).values(updated_at=utcnow()))
            p = s.get(Participant, self.participant_id)
            assert p is not None
            step = self._step(s, p)
            if step.kind != kind or step.position != position:
                return self._step(s, p)
            for key, value in values.items():
                s.add(
                    Response(
                        participant_id=p.id,
                        session_id=step.session_id if kind == "post_item" else None,
                        question=key,
                        value={"value": value},
                    )
                )
            self._advance(s, p, step)
            return self._settled(s, p)

    # --- the end ------------------------------------------------------------------------

    def completion(self) -> Completion:
        """The completion code, redirect and debrief (for a completed participant)."""
        with Session(self.engine) as s:
            p = s.get(Participant, self.participant_id)
            assert p is not None
            code = p.completion_code or ""
        spec = self.definition.spec
        redirect = spec.completion.redirect.replace("{code}", code) if spec.completion.redirect else None
        return Completion(code=code, redirect=redirect, debrief=spec.debrief)

    # --- events -------------------------------------------------------------------------

    def log_event(self, kind: str, data: dict[str, Any] | None = None, session_id: int | None = None) -> None:
        """Append an event (page load, page hidden…) to the participant's log."""
        with Session(self.engine) as s, s.begin():
            s.add(Event(participant_id=self.participant_id, session_id=session_id, kind=kind, data=data))

    def record_visibility(self, records: Iterable[ClientRecord], session_id: int | None) -> None:
        """Log the browser's page hidden / page shown reports as events."""
        rows = [
            Event(
                participant_id=self.participant_id,
                session_id=session_id,
                kind=f"page_{r.kind}",
                data={"client_at": r.at.isoformat()},
            )
            for r in records
            if r.kind in ("hidden", "visible")
        ]
        if rows:
            with Session(self.engine) as s, s.begin():
                s.add_all(rows)


def _aware(at: datetime) -> datetime:
    """A stored time as UTC (SQLite gives it back without its zone)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _due(chat_id: int | None, seen: datetime) -> bool:
    """Whether a chat page run must write: to start the conversation, or to mark the participant active."""
    return chat_id is None or utcnow() - seen >= SEEN_EVERY


# --- one page run -----------------------------------------------------------------------


@dataclass(frozen=True)
class PageRun:
    """What one run of the participant's page needs, read in one database session."""

    visit: Visit
    flow: Flow
    step: Step
    conversation: Conversation | None = None
    """The current item's conversation at a chat step (started on first use)."""


def open_page(engine: Engine, query: Mapping[str, Any], *, autolabel: bool = True) -> PageRun:
    """Read what a participant page run shows: who the link names, their step, their conversation.

    One session does every read of the run. The few writes a run may need (a participant
    minted by an open link, a step with nothing to ask passed over, the conversation
    started, the participant marked active once a minute) are committed, each in its own
    short transaction, before the page is drawn.

    Args:
        engine: The lab database.
        query: The URL's query parameters (see :func:`resolve_link`).
        autolabel: Label the conversation's replies with the rule-based judge.

    Raises:
        LinkNotValid: see :func:`resolve_link`.
    """
    with Session(engine, expire_on_commit=False) as s:
        # The rows read are held in locals: a session keeps only rows someone holds, and
        # each one read again would be another query.
        visit, p, study, wrote = _resolve(s, query)
        if wrote:
            s.commit()
        f = Flow(engine, p.id, study.id, definition(study))
        step, _chat = f._step_and_chat(s, p)  # held: Conversation.read takes its row, item and condition from the session
        # Reads need no transaction of their own, so each of these writes commits apart and
        # the reads after it see it.
        if f._passed_over(step):
            step = f.step()
            s.refresh(p)
        if step.kind != "chat":
            return PageRun(visit, f, step)
        if _due(step.session_id, _aware(p.updated_at)):
            step = replace(step, session_id=f._start_or_mark())
        assert step.session_id is not None
        conv = Conversation.read(s, engine, step.session_id, autolabel=autolabel)
        return PageRun(visit, f, step, conv)


# --- answers ----------------------------------------------------------------------------


def check_answers(questions: Iterable[QuestionSpec], answers: Mapping[str, Any]) -> dict[str, Any]:
    """Validate survey answers against their questions.

    Returns:
        Question key → stored value (likert and number as numbers, yesno as a boolean,
        choice and text as text); unanswered optional questions are left out.

    Raises:
        AnswersRejected: naming every unanswered required question, or the first invalid answer.
    """
    questions = list(questions)
    unanswered = [q.text for q in questions if q.required and _blank(answers.get(q.key))]
    if unanswered:
        raise AnswersRejected("Please answer " + _quoted_list(unanswered) + ".")
    out: dict[str, Any] = {}
    for q in questions:
        raw = answers.get(q.key)
        if isinstance(raw, str):
            if not raw.strip():
                raw = None
            else:
                try:
                    cleaned = clean_message(raw, 10**9)
                except MessageRejected:
                    cleaned = ""
                # What the chat refuses (NUL, bidi overrides, other invisible controls) is
                # refused here too, rather than silently stored differently from what was typed.
                if cleaned != raw.replace("\r\n", "\n").replace("\r", "\n"):
                    raise AnswersRejected(f'Your answer to "{q.text}" contains invisible control characters; please remove them.')
                raw = cleaned
        if raw is None:
            if q.required:
                raise AnswersRejected(f'Please answer "{q.text}"')
            continue
        if q.type == "likert":
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= q.scale:
                raise AnswersRejected(f'"{q.text}" needs a choice from 1 to {q.scale}.')
        elif q.type == "yesno":
            if isinstance(raw, str) and raw.strip().lower() in ("yes", "no"):
                raw = raw.strip().lower() == "yes"
            if not isinstance(raw, bool):
                raise AnswersRejected(f'"{q.text}" needs yes or no.')
        elif q.type == "choice":
            if raw not in q.options:
                raise AnswersRejected(f'"{q.text}" needs one of the choices shown.')
        elif q.type == "number":
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw or raw in (float("inf"), float("-inf")):
                raise AnswersRejected(f'"{q.text}" needs a number.')
        elif q.type == "text":
            raw = str(raw)
            if len(raw) > _MAX_TEXT_ANSWER:
                raise AnswersRejected(
                    f'Your answer to "{q.text}" is {len(raw):,} characters long; the limit is {_MAX_TEXT_ANSWER:,}.'
                )
        out[q.key] = raw
    return out


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _quoted_list(texts: list[str]) -> str:
    """``"a"``, ``"a" and "b"``, ``"a", "b" and "c"``."""
    quoted = [f'"{t}"' for t in texts]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# --- the chat ---------------------------------------------------------------------------


def presentation(conv: Conversation) -> Literal["whole", "question", "pieces", "on_request"]:
    """How the task is put to the participant.

    Whole, as a question to ask, as cards shared one per message, or as cards held until
    the assistant asks.
    """
    if conv.item.kind == "presupposition":
        return "question"
    if conv.progress.whole:
        return "whole"
    return "on_request" if conv.reveal == "ON_REQUEST" else "pieces"


def requested_card(conv: Conversation) -> int | None:
    """ON_REQUEST: the held card the assistant's latest reply asks for, if any (:meth:`lab.reveal.Progress.requested`)."""
    return conv.progress.requested()


def cards(conv: Conversation) -> list[Card]:
    """The task as cards: one card for a task shown whole, else one card per shard."""
    progress = conv.progress
    started = progress.user_turns > 0
    revealed = progress.revealed
    if progress.whole:
        # What the messages gave the model, as recorded: a message in the participant's
        # own words that carries none of the task does not share it.
        told = [i for i in progress.opening.shards if i in revealed]
        if not started:
            whole = "start"
        elif len(told) == len(progress.opening.shards):
            whole = "shared"
        else:
            whole = "partly" if told else "available"
        return [Card(0, progress.opening.text, whole)]  # type: ignore[arg-type]
    asked = progress.requested()
    first = progress.shards[0].id
    out = []
    for shard in progress.shards:
        if shard.id in revealed:
            state = "shared"
        elif shard.id == first:
            state = "start"
        elif conv.reveal == "ON_REQUEST":
            state = "asked" if shard.id == asked else "held"
        else:
            state = "available" if started else "locked"
        out.append(Card(shard.id, shard.text, state))  # type: ignore[arg-type]
    return out


def card_choices(conv: Conversation) -> list[int]:
    """Cards the next message may share (:meth:`lab.reveal.Progress.choices`)."""
    return conv.progress.choices()


def offered(card: Card, choices: list[int]) -> bool:
    """Whether a card may be put in the next message (its text goes in the box as written).

    Args:
        card: One of :func:`cards`.
        choices: :func:`card_choices` of the same conversation.
    """
    unshared_whole = card.id == 0 and card.state in ("available", "partly")
    return card.state in ("start", "asked") or card.id in choices or unshared_whole


def go_ahead_text(conv: Conversation) -> str | None:
    """ON_REQUEST: the suggested reply when the assistant asked for nothing held back."""
    return conv.progress.go_ahead()


def at_limit(conv: Conversation) -> bool:
    """The participant has sent every message the task allows and the last one has its reply.

    A failed last reply is not the end: it can still be retried.
    """
    return conv.at_turn_limit and not failed_reply(conv)


def send_message(conv: Conversation, text: str | None, card: int | None = None, client: dict[str, Any] | None = None) -> TurnView:
    """Commit a participant's message (before any model call).

    The message passes every rule once (:meth:`lab.reveal.Progress.read`, the page's
    strict rules: control characters are refused, only cards on offer may be picked).

    Args:
        conv: The current conversation.
        text: What the participant wrote.
        card: The card this message shares, if any (ignored for the first message).
        client: Browser timing for the turn (see :func:`client_timing`).

    Raises:
        MessageRejected: empty, too long, control characters, or a card that may not be
            shared now.
        ConversationOver: the conversation has ended or reached its limit.
        lab.db.DatabaseUnavailable: the database is out of reach or locked past its
            busy timeout (:data:`MESSAGE_NOT_SAVED`); nothing was stored, so the same
            message can be sent again.
    """
    with reachable(MESSAGE_NOT_SAVED):
        return _send(conv, text, card, client)


def send_to(engine: Engine, session_id: int, text: str | None, card: int | None, client: dict[str, Any] | None) -> TurnView:
    """As :func:`send_message`, loading the conversation first (the page's one call per message).

    Raises:
        lab.db.DatabaseUnavailable: loading or sending could not reach the database.
    """
    with reachable(MESSAGE_NOT_SAVED):
        return _send(Conversation.load(engine, session_id), text, card, client)


def send_fresh(conv: Conversation, text: str | None, card: int | None, client: dict[str, Any] | None) -> TurnView:
    """As :func:`send_message`, reading the conversation's turns and status again first.

    For a conversation read by an earlier page run (another tab may have written since):
    two statements instead of loading it whole.

    Raises:
        lab.db.DatabaseUnavailable: reading or sending could not reach the database.
    """
    with reachable(MESSAGE_NOT_SAVED):
        conv.refresh()
        return _send(conv, text, card, client)


def _send(conv: Conversation, text: str | None, card: int | None, client: dict[str, Any] | None) -> TurnView:
    return conv.send(text, [card] if card else [], source="participant", client=client, strict=True)


def stop_reply(conv: Conversation, message: str) -> None:
    """Cut the conversation's reply in progress on purpose, wait until what arrived is stored, and log the Stop.

    Args:
        conv: The conversation (its turns are read again).
        message: What the participant is told when the database is out of reach.

    Raises:
        lab.db.DatabaseUnavailable: the Stop could not be logged (with ``message``); the
            reply was stopped all the same.
    """
    if (gen := GENERATIONS.running(conv.session_id)) is not None:
        gen.stop()
        gen.join(30)
    with reachable(message):
        conv.refresh()
        last = next((t for t in reversed(conv.turns) if t.role == "assistant"), None)
        conv.log_event("stop", {"by": "participant", "turn": last.id if last else None, "cut": bool(last and last.partial)})


def stored_after_all(conv: Conversation, text: str | None, sent_before: int) -> bool:
    """Whether a message whose sending failed on the database was stored nonetheless.

    A connection lost during the commit leaves the sender unsure whether it committed;
    giving such a message back to be sent again would store it twice.

    Args:
        conv: The conversation, as loaded after the failure.
        text: The message as written.
        sent_before: How many messages the participant had sent when sending it.
    """
    if conv.user_turns <= sent_before:
        return False
    last = next((t for t in reversed(conv.turns) if t.role == "user" and t.source == "participant"), None)
    return last is not None and last.content == as_sent(text)


def transcript(conv: Conversation, *, live: bool = False) -> list[TurnView]:
    """The turns the participant sees: their messages and the assistant's replies.

    Mediator rewrites are never shown; a failed reply is shown only while it is the
    latest turn (its retry replaces it on screen, the record keeps both).

    Args:
        conv: The conversation.
        live: A reply is being generated; its stored checkpoint is left out, since the
            page shows the reply itself as it grows (a failed reply being retried too).
    """
    shown = [t for t in conv.turns if t.role in ("user", "assistant")]
    if live:
        while shown and shown[-1].role == "assistant":
            shown.pop()
    return [t for i, t in enumerate(shown) if t.error is None or i == len(shown) - 1]


def reply_pending(conv: Conversation) -> bool:
    """The participant's latest message has no reply yet (not a failed one: that waits for a retry)."""
    convo = [t for t in conv.turns if t.role in ("user", "assistant")]
    return bool(convo) and convo[-1].role == "user" and conv.status == "active"


def failed_reply(conv: Conversation) -> bool:
    """The latest reply failed and may be retried."""
    convo = [t for t in conv.turns if t.role in ("user", "assistant")]
    return bool(convo) and convo[-1].error is not None and conv.status == "active"


def can_finish(conv: Conversation) -> bool:
    """The participant may say they have their answer: the assistant has replied."""
    return any(t.role == "assistant" and t.error is None and t.content for t in conv.turns)


# --- browser timing ---------------------------------------------------------------------


CLIENT_KINDS = ("draft", "hidden", "visible")
"""What the page's browser snippet reports: a draft being typed, the page hidden or shown."""


@dataclass(frozen=True)
class ClientRecord:
    """One report from the participant's browser (times are the browser's clock)."""

    seq: int
    kind: str
    at: datetime
    typing_started_at: datetime | None = None
    edits: int | None = None
    length: int | None = None


def _ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 10**14:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None


def client_records(state: Any, after: int) -> list[ClientRecord]:
    """The well-formed browser reports newer than ``after``, oldest first.

    The browser snippet keeps its last reports in a list of dicts (``seq``, ``kind``,
    ``at`` in epoch milliseconds, and for drafts ``typing_started_at``, ``edits``,
    ``length``); anything malformed is dropped, since the browser is not trusted.
    """
    log = state.get("log") if hasattr(state, "get") else None
    if not isinstance(log, list):
        return []
    out = []
    for rec in log[-100:]:
        if not isinstance(rec, Mapping):
            continue
        seq, kind, at = _count(rec.get("seq")), rec.get("kind"), _ms(rec.get("at"))
        if seq is None or seq <= after or kind not in CLIENT_KINDS or at is None:
            continue
        out.append(
            ClientRecord(
                seq, str(kind), at, _ms(rec.get("typing_started_at")), _count(rec.get("edits")), _count(rec.get("length"))
            )
        )
    return sorted(out, key=lambda r: r.seq)


def latest_draft(state: Any, after: int) -> ClientRecord | None:
    """The newest draft report newer than ``after`` (the draft of the message being sent)."""
    drafts = [r for r in client_records(state, after) if r.kind == "draft"]
    return drafts[-1] if drafts else None


def client_timing(draft: ClientRecord | None) -> dict[str, Any] | None:
    """The browser timing stored with a message, from the latest draft report before it.

    ``typing_started_at`` is when the draft got its first character (browser clock);
    ``edits`` counts its input events up to the browser's last report, which is sent when
    a draft starts and after each pause in typing, so a final burst may be missing; the
    server's own ``sent_at`` on the turn is when it was committed.
    """
    if draft is None or draft.typing_started_at is None:
        return None
    return {
        "typing_started_at": draft.typing_started_at.isoformat(),
        "edits": draft.edits,
        "reported_at": draft.at.isoformat(),
        "clock": "browser",
    }
