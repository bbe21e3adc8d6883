"""The lab's tables (SQLAlchemy 2 typed ORM).

Nothing a participant or a model produced is ever overwritten: turns are appended, labels
are superseded by newer labels, and a changed study spec becomes a new study version.
External participant ids (Prolific) live in their own columns so exports can drop them.
Every change here needs an Alembic migration in ``migrations/versions``; a test compares
the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STUDY_STATUSES = ("draft", "open", "paused", "closed", "superseded")
PARTICIPANT_STATUSES = ("invited", "consented", "active", "completed", "declined", "withdrawn", "timed_out")
SESSION_STATUSES = ("pending", "active", "ended", "abandoned")
TURN_ROLES = ("system", "user", "assistant", "mediator", "probe")
SESSION_KINDS = ("conversation", "branch", "rollout")
"""A participant's own conversation; an alternative reply sampled at a point of one; a continuation to its end."""
BRANCH_PARTICIPANT = "branch"
"""Kind of the one participant per study version that owns its branch and rollout conversations."""
SPLITS = ("train", "heldout")


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the lab stores."""
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """``t`` as a timezone-aware UTC datetime (SQLite hands stored datetimes back naive)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint names that SQLite batch migrations can address."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    # Every model here is mapped to a Table (none to a select or a join); SQLAlchemy types
    # ``__table__`` as the wider FromClause unless the base says so.
    __table__: ClassVar[Table]
    type_annotation_map = {
        dict[str, Any]: MutableDict.as_mutable(JSON()),
        list[Any]: MutableList.as_mutable(JSON()),
        datetime: DateTime(timezone=True),
    }


class Study(Base):
    """One version of a study: its validated spec and status."""

    __tablename__ = "study"
    __table_args__ = (UniqueConstraint("slug", "version", name="uq_study_slug_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), index=True)
    """URL-safe name shared by all versions of a study."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    """1 for the first spec; each changed spec on a study with data adds one."""
    title: Mapped[str] = mapped_column(String(300))
    spec: Mapped[dict[str, Any]]
    """The normalized, validated spec (items inlined)."""
    spec_sha256: Mapped[str] = mapped_column(String(64))
    """Hash of the normalized spec; equal hashes mean identical studies."""
    spec_text: Mapped[str | None] = mapped_column(Text)
    """The spec as the experimenter wrote it (comments and order kept); None when loaded without its text."""
    source_path: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    """draft → open → paused → closed; an older version becomes superseded."""
    seed: Mapped[int] = mapped_column(Integer, default=0)
    """Seeds assignment so plans are reproducible."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    conditions: Mapped[list[Condition]] = relationship(back_populates="study", order_by="Condition.id")
    items: Mapped[list[ItemRow]] = relationship(back_populates="study", order_by="ItemRow.id")


class Condition(Base):
    """One cell of the design: reveal mode × presupposition × intervention × model."""

    __tablename__ = "condition"
    __table_args__ = (UniqueConstraint("study_id", "key", name="uq_condition_study_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    """The condition's name in the spec."""
    reveal: Mapped[str] = mapped_column(String(16))
    presupposition: Mapped[str | None] = mapped_column(String(16))
    intervention: Mapped[str] = mapped_column(String(16), default="none")
    model_key: Mapped[str] = mapped_column(String(64))
    """The spec's id of the model under test."""
    config: Mapped[dict[str, Any]]
    """The condition as normalized in the spec."""

    study: Mapped[Study] = relationship(back_populates="conditions")


class ItemRow(Base):
    """One task or question of a study."""

    __tablename__ = "item"
    __table_args__ = (UniqueConstraint("study_id", "key", name="uq_item_study_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    """The item's id in its item file."""
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    """The item record (shards, gold answers, presupposition, probe…)."""
    source_dataset: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(200))

    study: Mapped[Study] = relationship(back_populates="items")


class Participant(Base):
    """A person (or a simulated user) taking part in one study version."""

    __tablename__ = "participant"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="human")
    """human | simulated."""
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """sha256 of the personal link token; the token itself is never stored."""
    prolific_pid: Mapped[str | None] = mapped_column(String(64), index=True)
    prolific_study_id: Mapped[str | None] = mapped_column(String(64))
    prolific_session_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="invited")
    plan: Mapped[list[Any] | None]
    """Assigned (item key, condition key) pairs in order."""
    position: Mapped[int] = mapped_column(Integer, default=0)
    """Index into ``plan`` of the current item."""
    completion_code: Mapped[str | None] = mapped_column(String(64))
    simulator: Mapped[dict[str, Any] | None]
    """For simulated participants: simulator model, prompt version, persona."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    consented_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    sessions: Mapped[list[ChatSession]] = relationship(back_populates="participant", order_by="ChatSession.position")


SESSION_OUTCOMES = ("answered", "correct", "all_revealed", "turn_limit", "gave_up", "abandoned")
"""Why a conversation ended (``session.outcome``)."""


class ChatSession(Base):
    """One conversation: participant × item × condition × model."""

    __tablename__ = "session"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    condition_id: Mapped[int] = mapped_column(ForeignKey("condition.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    """Order of this item in the participant's plan."""
    model: Mapped[str] = mapped_column(String(300))
    """The litellm model string actually called."""
    model_params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="active")
    outcome: Mapped[str | None] = mapped_column(String(32))
    """Why it ended: one of :data:`SESSION_OUTCOMES`."""
    score: Mapped[float | None] = mapped_column(Float)
    """Automatic score of the last answer attempt, when the item is scorable."""
    probe: Mapped[dict[str, Any] | None]
    """Knowledge probe for presupposition items: question, reply, score."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    kind: Mapped[str] = mapped_column(String(16), default="conversation", server_default="conversation")
    """conversation (a participant's own), branch or rollout (see :func:`participant_conversation`)."""
    point_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE", use_alter=True), index=True)
    """Branches and rollouts: the original assistant reply at the point they start from (deleted with it)."""
    reply_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE", use_alter=True), index=True)
    """Rollouts: the reply (original or branch) the rollout continues (deleted with it)."""

    participant: Mapped[Participant] = relationship(back_populates="sessions")
    item: Mapped[ItemRow] = relationship()
    condition: Mapped[Condition] = relationship()
    turns: Mapped[list[Turn]] = relationship(back_populates="session", order_by="Turn.index", foreign_keys="Turn.session_id")


class Turn(Base):
    """One message in a conversation, with everything known about how it was made."""

    __tablename__ = "turn"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_turn_session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    """system | user | assistant | mediator | probe."""
    source: Mapped[str] = mapped_column(String(16), default="participant")
    """Who wrote it: participant, simulator, model, lab (engine-made turns such as a recap)."""
    content: Mapped[str] = mapped_column(Text)
    """Exactly what was written (participant text verbatim)."""
    model_content: Mapped[str | None] = mapped_column(Text)
    """What the model saw for this turn when it differs (SNOWBALL restatements)."""
    shards: Mapped[list[Any] | None]
    """Shard ids this user turn reveals."""
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_token_at: Mapped[datetime | None]
    last_token_at: Mapped[datetime | None]
    model: Mapped[str | None] = mapped_column(String(300))
    params: Mapped[dict[str, Any] | None]
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    """Provider error for an error turn (content then holds what arrived, often nothing)."""
    partial: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when the stream was cut (stop, refresh, crash)."""
    client: Mapped[dict[str, Any] | None]
    """Browser timing: typing started, edits, visibility."""

    session: Mapped[ChatSession] = relationship(back_populates="turns", foreign_keys=[session_id])


class Event(Base):
    """Append-only log: consent, reveal, retry, stop, error, page hidden, and more."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Account(Base):
    """A staff user: experimenter, annotator or admin."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class Label(Base):
    """One code on one turn from a person or an automatic judge; newer labels supersede."""

    __tablename__ = "label"
    __table_args__ = (Index("ix_label_turn_layer", "turn_id", "layer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(200))
    """An account's username or ``auto:<judge>``."""
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    layer: Mapped[str] = mapped_column(String(8))
    """Codebook layer: G, R, P or S."""
    code: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    target_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="SET NULL"))
    span_start: Mapped[int | None] = mapped_column(Integer)
    span_end: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any] | None]
    """Judge name, model, rules/prompt version, reasons."""
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("label.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RepairSequence(Base):
    """Trouble source → initiation → repair → outcome, across turns of one session."""

    __tablename__ = "repair_sequence"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(200))
    trouble_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="SET NULL"))
    initiation_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="SET NULL"))
    repair_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turn.id", ondelete="SET NULL"))
    initiation: Mapped[str | None] = mapped_column(String(32))
    initiator: Mapped[str | None] = mapped_column(String(16))
    trouble_type: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(16))
    turns_to_resolution: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    """The annotator's account (None for automatic judges)."""
    span_start: Mapped[int | None] = mapped_column(Integer)
    """Start of the trouble source's span in its turn's text (character offset)."""
    span_end: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any] | None]
    """Codebook version, and the earlier values of every edit (``history``)."""
    updated_at: Mapped[datetime | None]


class Response(Base):
    """A participant's answer to a post-item or post-study question."""

    __tablename__ = "response"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"), index=True)
    question: Mapped[str] = mapped_column(String(64))
    """The question's key in the spec."""
    value: Mapped[dict[str, Any]]
    """``{"value": …}`` so any answer type fits one column."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Withdrawal(Base):
    """That a participant withdrew and their data was deleted; holds no content and no identifier."""

    __tablename__ = "participant_withdrawal"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    """The study version they had joined."""
    kind: Mapped[str] = mapped_column(String(16))
    """human | simulated | pilot."""
    status: Mapped[str] = mapped_column(String(16))
    """Their status when they withdrew (completed, active, …)."""
    withdrawn_at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str] = mapped_column(String(64))
    """The staff member who carried it out, or ``cli``."""


class AnnotationAssignment(Base):
    """An annotator assigned to a study's annotation (all versions of the slug)."""

    __tablename__ = "annotation_assignment"
    __table_args__ = (UniqueConstraint("study_slug", "account_id", name="uq_annotation_assignment_study_account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_slug: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    per_conversation: Mapped[int] = mapped_column(Integer)
    """Distinct annotators each conversation reaches (the same on every row of a study)."""
    sees_prelabels: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether this annotator is shown automatic labels (drawn once and kept, for ``prelabels: half``)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotationSlot(Base):
    """One of the k places a conversation has for annotators; at most one annotator holds it."""

    __tablename__ = "annotation_slot"
    __table_args__ = (
        UniqueConstraint("session_id", "slot", name="uq_annotation_slot_session_slot"),
        UniqueConstraint("session_id", "account_id", name="uq_annotation_slot_session_account"),
        Index("ix_annotation_slot_queue", "study_slug", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_slug: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    """0 … k-1."""
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    """The annotator holding the place (None: free for any assigned annotator)."""
    status: Mapped[str] = mapped_column(String(16), default="open")
    """open (reserved or free), claimed, skipped, done."""
    claimed_at: Mapped[datetime | None]
    touched_at: Mapped[datetime | None]
    """Last activity of the holder; a claim untouched for ``claim_minutes`` goes back to the pool."""
    done_at: Mapped[datetime | None]


class AnnotationCheck(Base):
    """A turn with a known answer, set by an experimenter to check annotators' accuracy."""

    __tablename__ = "annotation_check"
    __table_args__ = (UniqueConstraint("turn_id", "layer", name="uq_annotation_check_turn_layer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(8))
    code: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    """The experimenter who set it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInFailure(Base):
    """One refused staff sign-in, counted against the username tried or the client's address.

    Rows older than the limits' window are deleted as new ones are written
    (:mod:`lab.web.limits`), so the table holds only the failures that still count.
    """

    __tablename__ = "sign_in_failure"
    __table_args__ = (Index("ix_sign_in_failure_key", "kind", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``address`` or ``account``."""
    key: Mapped[str] = mapped_column(String(128))
    """The client address, or the username tried in lower case (any name, existing or not)."""
    failed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SimulationClaim(Base):
    """One unit of a simulation run shared by ``--worker`` processes: who runs it, until when.

    The first worker of a run inserts a row per unit; every worker claims pending rows (and
    rows whose claim expired because their worker stopped renewing it) until none are left.
    """

    __tablename__ = "simulation_claim"
    __table_args__ = (
        UniqueConstraint("run_id", "unit", name="uq_simulation_claim_run_unit"),
        Index("ix_simulation_claim_queue", "run_id", "state", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(16))
    """The run's id (see :func:`lab.simulate.plan_run`)."""
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(String(1000))
    """The unit's key within the run."""
    position: Mapped[int] = mapped_column(Integer)
    """The unit's place in the plan; units are claimed in plan order."""
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, claimed, done, failed (stopped by model errors; pending again for the next worker started)."""
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participant.id", ondelete="SET NULL"))
    """The unit's simulated participant, once created (set in the transaction that creates it)."""
    worker: Mapped[str | None] = mapped_column(String(200))
    """The worker that claimed it last (``host:pid:nonce``)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How often it was claimed (more than 1: taken over from a stopped worker, or retried)."""
    claimed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    """When the claim lapses unless its worker renews it; after that any worker may take it over."""
    done_at: Mapped[datetime | None]


class ItemSplit(Base):
    """Whether an item of a study (all versions of its slug) is for training or held out for evaluation."""

    __tablename__ = "item_split"
    __table_args__ = (UniqueConstraint("study_slug", "item_key", name="uq_item_split_study_item"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_slug: Mapped[str] = mapped_column(String(64), index=True)
    item_key: Mapped[str] = mapped_column(String(200))
    split: Mapped[str] = mapped_column(String(16))
    """train or heldout."""
    family: Mapped[str] = mapped_column(String(32))
    """The stratum the item was drawn in (its task family, else its kind)."""
    heldout: Mapped[float] = mapped_column(Float)
    """The share held out when the split was made."""
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


PREFERENCE_CHOICES = ("a", "b", "tie")
"""A preference judgement's choice: reply A (the lower turn id), reply B, or neither."""


class PreferenceJudgement(Base):
    """A person's blind choice between two replies at one point; a re-judgement supersedes, never overwrites.

    Both replies answer exactly the point's messages: the original reply (``point_turn_id``)
    and the branches sampled there, or two branches. Reply A is the lower turn id, so one
    comparison has one key whichever side each annotator saw it on.
    """

    __tablename__ = "preference_judgement"
    __table_args__ = (
        Index("ix_preference_judgement_comparison", "point_turn_id", "reply_a_turn_id", "reply_b_turn_id"),
        Index("ix_preference_judgement_study_account", "study_slug", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_slug: Mapped[str] = mapped_column(String(64))
    point_turn_id: Mapped[int] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE"))
    """The original assistant reply at the point (deleted with it, as its branches are)."""
    reply_a_turn_id: Mapped[int] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE"))
    reply_b_turn_id: Mapped[int] = mapped_column(ForeignKey("turn.id", ondelete="CASCADE"))
    left: Mapped[str] = mapped_column(String(1))
    """Which reply was shown on the left (as "Reply 1"): ``a`` or ``b``, drawn per annotator."""
    choice: Mapped[str] = mapped_column(String(8))
    """One of :data:`PREFERENCE_CHOICES`."""
    reason: Mapped[str] = mapped_column(Text)
    annotator: Mapped[str] = mapped_column(String(64))
    """The account's username when the judgement was made."""
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    seconds: Mapped[float | None] = mapped_column(Float)
    """Time from showing the comparison to saving the judgement."""
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("preference_judgement.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def participant_conversation(session: Any = None) -> Any:
    """SQL condition: a session is a participant's own conversation, not a branch or a rollout.

    Every query behind a participant measure, an annotation queue or a conversation export
    applies it, so sampled replies and their continuations never count as data from people.

    Args:
        session: The ``session`` table's columns (or an alias's); default the table's.
    """
    c = session if session is not None else ChatSession.__table__.c
    return c.kind == "conversation"


PARTICIPANT_CONVERSATION_SQL = "kind = 'conversation'"
""":func:`participant_conversation` for hand-written SQL: prefix the session alias (``s.`` + this)."""


def real_participant(participant: Any = None) -> Any:
    """SQL condition: a participant row stands for a person or a simulated user, not the owner of branches.

    Args:
        participant: The ``participant`` table's columns (or an alias's); default the table's.
    """
    c = participant if participant is not None else Participant.__table__.c
    return c.kind != BRANCH_PARTICIPANT


REAL_PARTICIPANT_SQL = f"kind <> '{BRANCH_PARTICIPANT}'"
""":func:`real_participant` for hand-written SQL: prefix the participant alias."""
