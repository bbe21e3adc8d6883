"""Blind side-by-side preferences: which of two replies at the same point serves the user better.

A *comparison* joins two replies at one point of a participant's conversation: the original
assistant reply and the alternatives sampled there (:mod:`lab.branch`), or two of the
alternatives. Only branches sampled from exactly the point's messages (the sha256 each
branch stores equals the hash of the point's prompt now) take part, so both replies answer
byte-identical messages. Replies with the same text are one reply (the lowest turn id
stands for it), so no comparison sets a text against itself. Points on held-out items
(:mod:`lab.split`) offer no comparison: their pairs could never enter a training file.

Work is handed out as annotation is: to the annotators assigned to the study
(:func:`lab.annotation.assign`), each comparison to ``k`` of them (the study's annotators
per conversation, at most all of them). Which ``k`` is decided by a hash of the comparison
and the annotator's name (rendezvous hashing), so it never changes when comparisons or
annotators are added, and loads are even in expectation. Each annotator meets their
comparisons in an order of their own and sees, for each, reply A on the left or on the
right, both drawn from the study's seed and their name: the same on every visit, different
between annotators, and stored with the judgement.

A judgement is the choice (reply A, reply B or a tie) with a required short reason. Judging
the same comparison again adds a row that supersedes the earlier one (``supersedes_id``),
as labels do: the history stays and the newest row counts.

Agreement treats each comparison as a unit rated on three categories (``a``, ``b``,
``tie``) by the annotators who judged it, with :func:`lab.agreement.compare`: raw
(percent) agreement, Light's κ, Krippendorff's α and Gwet's AC1, each with a bootstrap
interval that resamples points (the comparisons at one point share a prompt, so they are
not independent). :func:`resolved_preferences` gives each comparison's majority for the
training export (:mod:`lab.export._pairs`, rule ``human_preference``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from .agreement import ALL, AgreementRow, compare
from .annotation import NotYours, assigned, majority, studies_for
from .errors import LabError
from .schema import (
    PREFERENCE_CHOICES,
    Account,
    AnnotationAssignment,
    ChatSession,
    ItemRow,
    PreferenceJudgement,
    Study,
    Turn,
    participant_conversation,
    utcnow,
)
from .studies import no_study

SIDES = ("left", "right", "tie")
"""What an annotator answers: the reply shown left ("Reply 1"), the one shown right ("Reply 2"), or neither."""
MAX_REASON_CHARS = 2000
QUESTION = "Which reply serves the user better at this point?"
"""The question the screen asks, as the card of the training data quotes it."""


class PreferenceError(LabError, ValueError):
    """A judgement the lab refuses; the message says what to change, and nothing was written."""


@dataclass(frozen=True, order=True)
class Comparison:
    """Two distinct replies at one point; reply A has the lower turn id."""

    point_turn_id: int
    reply_a: int
    reply_b: int

    @property
    def key(self) -> str:
        """A stable name of the comparison (point, reply A, reply B)."""
        return f"{self.point_turn_id}:{self.reply_a}:{self.reply_b}"


@dataclass(frozen=True)
class PointReplies:
    """A point with the distinct replies that answer exactly its messages."""

    point_turn_id: int
    session_id: int
    index: int
    """The point's turn index in its conversation."""
    item: str
    replies: tuple[tuple[int, str], ...]
    """(turn id, text), the original first, one per distinct text."""

    def comparisons(self) -> list[Comparison]:
        """Every pair of the point's replies."""
        ids = sorted(r[0] for r in self.replies)
        return [Comparison(self.point_turn_id, a, b) for a, b in itertools.combinations(ids, 2)]


# --- the comparisons of a study ----------------------------------------------------------------------


def _engine(s: Session) -> Engine:
    bind = s.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def _study_ids(s: Session, slug: str) -> list[int]:
    ids = list(s.scalars(select(Study.id).where(Study.slug == slug).order_by(Study.version)))
    if not ids:
        raise no_study(s, slug)
    return ids


_DIGESTS: dict[tuple[Any, ...], str | None] = {}
"""(database, point, its conversation and index, its branches' prompt hashes) → the hash of the point's prompt now."""


def study_points(s: Session, slug: str) -> list[PointReplies]:
    """The points of a study (all versions) with two or more distinct replies, in point order.

    Raises:
        UnknownStudy: when no study has this slug.
    """
    from .split import item_splits

    ids = _study_ids(s, slug)
    heldout = frozenset(k for k, v in item_splits(_engine(s), slug).items() if v == "heldout")
    return _load_points(s, ids, heldout)


def _point_digest(engine: Engine, turn_id: int, session_id: int, index: int, branch_hashes: frozenset[str | None]) -> str | None:
    """The hash of the messages a point's reply was generated from (None: it had no prompt of its own).

    Rebuilding a prompt loads the whole conversation, so the answer is kept: the turns before
    a point never change (conversations are only appended to), and the key holds what the
    branches recorded, so another database that happens to reuse the ids is not mistaken for this one.
    """
    from .branch import point_prompt, prompt_sha256
    from .dialogue import Conversation

    key = (str(engine.url), turn_id, session_id, index, branch_hashes)
    if key not in _DIGESTS:
        prompt = point_prompt(Conversation.load(engine, session_id, autolabel=False), index)
        if len(_DIGESTS) > 100_000:
            _DIGESTS.clear()
        _DIGESTS[key] = prompt_sha256(prompt) if prompt is not None else None
    return _DIGESTS[key]


def _load_points(s: Session, study_ids: list[int], heldout: frozenset[str]) -> list[PointReplies]:
    b, t, it = ChatSession.__table__.c, Turn.__table__.c, ItemRow.__table__.c
    branch_rows = s.execute(
        select(b.point_turn_id, t.id, t.content, t.params)
        .join_from(ChatSession, Turn, t.session_id == b.id)
        .where(
            b.study_id.in_(study_ids),
            b.kind == "branch",
            t.role == "assistant",
            t.error.is_(None),
            t.partial.is_(False),
        )
        .order_by(t.id)
    ).all()
    by_point: dict[int, list[tuple[int, str, str | None]]] = {}
    for point, turn_id, text, params in branch_rows:
        if text.strip():
            digest = ((params or {}).get("branch") or {}).get("prompt_sha256")
            by_point.setdefault(point, []).append((turn_id, text, digest))
    if not by_point:
        return []
    originals = s.execute(
        select(t.id, t.session_id, t.index, t.content, t.error, t.partial, it.key)
        .join_from(Turn, ChatSession, t.session_id == b.id)
        .join(ItemRow, b.item_id == it.id)
        .where(t.id.in_(sorted(by_point)), participant_conversation(b))
        .order_by(t.id)
    ).all()
    engine = _engine(s)
    out: list[PointReplies] = []
    for turn_id, session_id, index, text, error, partial, item in originals:
        if item in heldout:
            continue
        digest = _point_digest(engine, turn_id, session_id, index, frozenset(h for _, _, h in by_point[turn_id]))
        if digest is None:
            continue
        candidates = [] if error is not None or partial or not text.strip() else [(turn_id, text)]
        candidates += [(r, txt) for r, txt, h in by_point[turn_id] if h == digest]
        seen: set[str] = set()
        replies = []
        for reply, txt in candidates:
            if txt not in seen:
                seen.add(txt)
                replies.append((reply, txt))
        if len(replies) >= 2:
            out.append(PointReplies(turn_id, session_id, index, item, tuple(replies)))
    return out


def study_comparisons(s: Session, slug: str) -> list[Comparison]:
    """Every comparison of a study, in point and reply order.

    Raises:
        UnknownStudy: when no study has this slug.
    """
    return [c for p in study_points(s, slug) for c in p.comparisons()]


# --- who judges what, in which order, on which side ---------------------------------------------------


def _draw(*parts: object) -> str:
    """A deterministic pseudo-random key from its parts (the same parts, the same key)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def judges(comparison: Comparison, annotators: list[str], k: int, slug: str) -> list[str]:
    """The ``k`` annotators (of those given) a comparison goes to: the lowest by a hash of both names.

    Args:
        comparison: The comparison.
        annotators: Usernames of the study's assigned annotators.
        k: Annotators per comparison (at most all of them).
        slug: The study.
    """
    return sorted(annotators, key=lambda a: _draw(slug, comparison.key, a))[: max(k, 0)]


def shown_left(comparison: Comparison, username: str, slug: str, seed: int) -> str:
    """Which reply (``a`` or ``b``) an annotator sees on the left, drawn from the study seed and their name."""
    return "a" if int(_draw(slug, seed, username, comparison.key, "side")[:8], 16) % 2 == 0 else "b"


@dataclass
class PreferenceQueue:
    """An annotator's comparisons of a study in their own order, and which they have judged."""

    slug: str
    account_id: int
    username: str
    seed: int
    comparisons: list[Comparison]
    judged: dict[Comparison, PreferenceJudgement] = field(default_factory=dict)
    """Comparison → the annotator's current judgement of it."""

    @property
    def total(self) -> int:
        """Comparisons the annotator has to judge."""
        return len(self.comparisons)

    @property
    def done(self) -> int:
        """Of those, judged."""
        return sum(1 for c in self.comparisons if c in self.judged)

    def next(self) -> Comparison | None:
        """The first comparison not judged yet (None: all done)."""
        return next((c for c in self.comparisons if c not in self.judged), None)

    def left(self, comparison: Comparison) -> str:
        """Which reply of a comparison this annotator sees on the left."""
        return shown_left(comparison, self.username, self.slug, self.seed)


def _current(rows: Iterable[PreferenceJudgement]) -> dict[tuple[Comparison, str], PreferenceJudgement]:
    """(comparison, annotator) → the newest judgement, from rows in id order."""
    out: dict[tuple[Comparison, str], PreferenceJudgement] = {}
    for r in rows:
        out[(Comparison(r.point_turn_id, r.reply_a_turn_id, r.reply_b_turn_id), r.annotator)] = r
    return out


def queue(s: Session, slug: str, account_id: int) -> PreferenceQueue:
    """The comparisons an annotator judges in a study, in their order, with the ones already judged.

    Raises:
        NotYours: when the account is not assigned to the study.
        UnknownStudy: when no study has this slug.
    """
    if slug not in studies_for(s, account_id):
        raise NotYours(f"study '{slug}'")
    ids = _study_ids(s, slug)
    seed = s.scalar(select(Study.seed).where(Study.id == ids[-1])) or 0
    rows = assigned(s, slug)
    names = dict(s.execute(select(Account.id, Account.username).where(Account.id.in_([r.account_id for r in rows]))).all())
    annotators = [names[r.account_id] for r in rows if r.account_id in names]
    username = names[account_id]
    k = min(rows[0].per_conversation, len(annotators))
    mine = [c for c in study_comparisons(s, slug) if username in judges(c, annotators, k, slug)]
    mine.sort(key=lambda c: _draw(slug, seed, username, c.key, "order"))
    judged = s.scalars(
        select(PreferenceJudgement)
        .where(PreferenceJudgement.study_slug == slug, PreferenceJudgement.account_id == account_id)
        .order_by(PreferenceJudgement.id)
    )
    current = {c: r for (c, _), r in _current(judged).items()}
    return PreferenceQueue(slug, account_id, username, seed, mine, current)


# --- the screen ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryTurn:
    """A turn of the conversation before the point, as the annotator sees it."""

    role: str
    """user or assistant."""
    content: str


@dataclass(frozen=True)
class ComparisonView:
    """What the screen shows for one comparison: nothing about models, branches, labels or scores."""

    comparison: Comparison
    left: str
    """Which reply (``a`` or ``b``) is "Reply 1"; kept to store with the judgement, never shown."""
    title: str
    """The item's title."""
    history: list[HistoryTurn]
    reply_1: str
    reply_2: str
    number: int
    """This comparison's place among the annotator's (1-based)."""
    total: int


def comparison_view(s: Session, q: PreferenceQueue, comparison: Comparison) -> ComparisonView:
    """The screen's data for one of the annotator's comparisons.

    Raises:
        NotYours: when the comparison is not in the annotator's queue.
    """
    if comparison not in q.comparisons:
        raise NotYours("this comparison")
    t = Turn.__table__.c
    session_id, index = s.execute(select(t.session_id, t.index).where(t.id == comparison.point_turn_id)).one()
    payload = s.execute(
        select(ItemRow.payload).join(ChatSession, ChatSession.item_id == ItemRow.id).where(ChatSession.id == session_id)
    ).scalar_one()
    history = [
        HistoryTurn(role, content)
        for role, content, error in s.execute(
            select(t.role, t.content, t.error)
            .where(t.session_id == session_id, t.index < index, t.role.in_(("user", "assistant")))
            .order_by(t.index)
        )
        if role == "user" or (error is None and content)
    ]
    texts = dict(s.execute(select(t.id, t.content).where(t.id.in_([comparison.reply_a, comparison.reply_b]))).all())
    left = q.left(comparison)
    first, second = (comparison.reply_a, comparison.reply_b) if left == "a" else (comparison.reply_b, comparison.reply_a)
    done_before = q.done if comparison not in q.judged else q.comparisons.index(comparison)
    return ComparisonView(
        comparison,
        left,
        str((payload or {}).get("title") or "Conversation"),
        history,
        texts[first],
        texts[second],
        min(done_before + 1, q.total),
        q.total,
    )


def next_comparison(s: Session, slug: str, account_id: int) -> ComparisonView | None:
    """The annotator's next comparison to judge (None when every one is judged).

    Raises:
        NotYours: when the account is not assigned to the study.
    """
    q = queue(s, slug, account_id)
    found = q.next()
    return None if found is None else comparison_view(s, q, found)


def _checked_answer(left: str, side: str, reason: str) -> str:
    """The reason, stripped, once the choice, the left side and the reason are each valid.

    Raises:
        PreferenceError: no choice, no reason, a reason too long, or a side that is not a or b.
    """
    if side not in SIDES:
        raise PreferenceError("Choose Reply 1, Reply 2 or Tie before saving.")
    if left not in ("a", "b"):
        raise PreferenceError(f"the reply shown on the left must be 'a' or 'b' (got '{left}')")
    reason = reason.strip()
    if not reason:
        raise PreferenceError(
            "Give a short reason for your choice: a few words on what makes one reply better, or why neither is."
        )
    if len(reason) > MAX_REASON_CHARS:
        raise PreferenceError(f"The reason has {len(reason)} characters: shorten it to at most {MAX_REASON_CHARS}.")
    return reason


def _latest_judgement(s: Session, account_id: int, comparison: Comparison) -> PreferenceJudgement | None:
    """The annotator's newest judgement of this comparison, which a new one supersedes."""
    return s.scalar(
        select(PreferenceJudgement)
        .where(
            PreferenceJudgement.account_id == account_id,
            PreferenceJudgement.point_turn_id == comparison.point_turn_id,
            PreferenceJudgement.reply_a_turn_id == comparison.reply_a,
            PreferenceJudgement.reply_b_turn_id == comparison.reply_b,
        )
        .order_by(PreferenceJudgement.id.desc())
        .limit(1)
    )


def save_judgement(
    s: Session,
    slug: str,
    account_id: int,
    comparison: Comparison,
    *,
    left: str,
    side: str,
    reason: str,
    seconds: float | None = None,
    now: datetime | None = None,
) -> PreferenceJudgement | None:
    """Store an annotator's choice on a comparison; a later one supersedes it (history kept).

    The same choice with the same reason again (a double click) writes nothing and returns None.

    Args:
        s: Open session (the caller commits).
        slug: The study.
        account_id: The annotator.
        comparison: What was judged.
        left: Which reply (``a`` or ``b``) was shown on the left.
        side: ``left``, ``right`` or ``tie``, as the annotator answered.
        reason: Why, in a few words (required).
        seconds: Time from showing the comparison to saving.
        now: Clock for tests.

    Raises:
        PreferenceError: no choice, no reason, a reason too long, or a side that is not a or b.
        NotYours: a study the account is not assigned to, or a comparison not in its queue.
    """
    reason = _checked_answer(left, side, reason)
    q = queue(s, slug, account_id)
    if comparison not in q.comparisons:
        raise NotYours("this comparison")
    # Touching the annotator's assignment row takes its write lock, so a double click or two
    # tabs of one annotator are written one after the other and the second sees the first.
    s.execute(
        update(AnnotationAssignment)
        .where(AnnotationAssignment.study_slug == slug, AnnotationAssignment.account_id == account_id)
        .values(account_id=account_id)
    )
    choice = "tie" if side == "tie" else left if side == "left" else ("b" if left == "a" else "a")
    previous = _latest_judgement(s, account_id, comparison)
    if previous is not None and (previous.choice, previous.reason, previous.left) == (choice, reason, left):
        return None
    row = PreferenceJudgement(
        study_slug=slug,
        point_turn_id=comparison.point_turn_id,
        reply_a_turn_id=comparison.reply_a,
        reply_b_turn_id=comparison.reply_b,
        left=left,
        choice=choice,
        reason=reason,
        annotator=q.username,
        account_id=account_id,
        seconds=round(max(0.0, float(seconds)), 3) if seconds is not None else None,
        supersedes_id=previous.id if previous is not None else None,
        created_at=now or utcnow(),
    )
    s.add(row)
    s.flush()
    return row


def history(s: Session, account_id: int, comparison: Comparison) -> list[PreferenceJudgement]:
    """Every judgement one annotator made on a comparison, oldest first (the last is current)."""
    return list(
        s.scalars(
            select(PreferenceJudgement)
            .where(
                PreferenceJudgement.account_id == account_id,
                PreferenceJudgement.point_turn_id == comparison.point_turn_id,
                PreferenceJudgement.reply_a_turn_id == comparison.reply_a,
                PreferenceJudgement.reply_b_turn_id == comparison.reply_b,
            )
            .order_by(PreferenceJudgement.id)
        )
    )


# --- agreement -------------------------------------------------------------------------------------------


def preference_ratings(s: Session, slug: str) -> dict[Comparison, dict[str, str]]:
    """Comparison → {annotator: current choice (``a``, ``b`` or ``tie``)} over a study's judgements."""
    rows = s.scalars(select(PreferenceJudgement).where(PreferenceJudgement.study_slug == slug).order_by(PreferenceJudgement.id))
    out: dict[Comparison, dict[str, str]] = {}
    for (comparison, annotator), r in _current(rows).items():
        out.setdefault(comparison, {})[annotator] = r.choice
    return out


@dataclass(frozen=True)
class PreferenceAgreement:
    """How far the annotators agree on a study's comparisons."""

    comparisons: int
    """Comparisons the study offers now."""
    judged: int
    """Comparisons with at least one judgement."""
    shared: int
    """Comparisons judged by two or more annotators (the units of every figure)."""
    annotators: int
    judgements: int
    """Current judgements (one per annotator and comparison)."""
    ties: int
    """Of those, ties."""
    rows: list[AgreementRow]
    """Raw (percent) agreement, Light's κ, Krippendorff's α and Gwet's AC1 over a, b and tie, with intervals."""

    def value(self, measure: str) -> float | None:
        """One measure's figure (raw, kappa, alpha or ac1), None while undefined."""
        return next((r.value for r in self.rows if r.measure == measure and r.code == ALL), None)


def preference_agreement(s: Session, slug: str, *, bootstrap: int = 1000, seed: int = 0) -> PreferenceAgreement:
    """Agreement between annotators on the same comparisons (see the module's description).

    Raises:
        UnknownStudy: when no study has this slug.
    """
    ratings = preference_ratings(s, slug)
    rows = compare(
        ratings,
        comparison="humans",
        layer="preference",
        categories=list(PREFERENCE_CHOICES),
        per_code=False,
        bootstrap=bootstrap,
        seed=seed,
        clusters={c: c.point_turn_id for c in ratings},
    )
    judgements = [v for codes in ratings.values() for v in codes.values()]
    return PreferenceAgreement(
        comparisons=len(study_comparisons(s, slug)),
        judged=len(ratings),
        shared=sum(1 for codes in ratings.values() if len(codes) >= 2),
        annotators=len({a for codes in ratings.values() for a in codes}),
        judgements=len(judgements),
        ties=judgements.count("tie"),
        rows=rows,
    )


def format_agreement(a: PreferenceAgreement) -> str:
    """The agreement figures as lines for the terminal."""
    from .agreement import format_rows

    lines = [
        f"{a.comparisons} comparisons offered; {a.judged} judged, {a.shared} by two or more annotators "
        f"({a.annotators} annotators, {a.judgements} judgements, {a.ties} ties)"
    ]
    if a.rows:
        lines.append(format_rows(a.rows))
    else:
        lines.append("no comparison judged by two or more annotators yet")
    return "\n".join(lines)


# --- resolving for the training export ----------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """What people decided on one comparison."""

    comparison: Comparison
    counts: dict[str, int]
    """Current judgements per choice (a, b, tie)."""
    winner: str | None
    """The majority: ``a``, ``b`` or ``tie``; None when no choice is strictly most frequent."""


def resolved_preferences(engine: Engine, point_ids: list[int]) -> dict[Comparison, Resolution]:
    """The people's decision on every judged comparison at these points (each annotator's newest judgement)."""
    p = PreferenceJudgement.__table__.c
    current: dict[Comparison, dict[str, str]] = {}
    with engine.connect() as conn:
        for i in range(0, len(point_ids), 2000):
            for point, a, b, annotator, choice in conn.execute(
                select(p.point_turn_id, p.reply_a_turn_id, p.reply_b_turn_id, p.annotator, p.choice)
                .where(p.point_turn_id.in_(point_ids[i : i + 2000]))
                .order_by(p.id)
            ):
                current.setdefault(Comparison(point, a, b), {})[annotator] = choice
    out = {}
    for comparison, codes in current.items():
        values = list(codes.values())
        out[comparison] = Resolution(comparison, dict(Counter(values)), majority(values))
    return out
