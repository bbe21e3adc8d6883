"""Studies in the database: load a validated spec, version it, open, pause and close it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import LabError, close_names, did_you_mean
from .schema import ChatSession, Condition, ItemRow, Participant, Study, participant_conversation, real_participant, utcnow
from .spec import StudyDefinition, load_spec_file, study_from_normalized

STATUS_CHANGES: dict[str, tuple[str, ...]] = {
    "open": ("draft", "paused"),
    "pause": ("open",),
    "close": ("draft", "open", "paused"),
}
"""Which statuses each action may start from."""


class StudyError(LabError, ValueError):
    """A study action that cannot be done, with the reason."""


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_study` did."""

    study: Study
    action: str
    """``created``, ``unchanged``, ``replaced`` (no data yet, updated in place) or ``new-version``."""


def latest(s: Session, slug: str) -> Study | None:
    """The newest version of a study."""
    return s.scalars(select(Study).where(Study.slug == slug).order_by(Study.version.desc()).limit(1)).first()


class UnknownStudy(StudyError, LookupError):
    """No study has the slug asked for (a ``LookupError`` too, as a missing key is)."""


def no_study(s: Session, slug: str) -> UnknownStudy:
    """The refusal for a slug no study has, suggesting the close ones."""
    close = close_names(slug, s.scalars(select(Study.slug).distinct()).all())
    advice = did_you_mean(close) if close else "`python -m lab study list` lists the studies"
    return UnknownStudy(f"no study with slug '{slug}': {advice}")


def get_study(s: Session, slug: str) -> Study:
    """The newest version of a study, or a clear error (naming close slugs)."""
    study = latest(s, slug)
    if study is None:
        raise no_study(s, slug)
    return study


_definitions: dict[str, StudyDefinition] = {}


def definition(study: Study) -> StudyDefinition:
    """The validated definition stored with a study row (parsed once per spec hash)."""
    d = _definitions.get(study.spec_sha256)
    if d is None:
        d = study_from_normalized(study.spec)
        if len(_definitions) > 64:
            _definitions.clear()
        _definitions[study.spec_sha256] = d
    return d


def _has_data(s: Session, study: Study) -> bool:
    n = s.scalar(select(func.count()).select_from(Participant).where(Participant.study_id == study.id))
    return bool(n)


def _fill(s: Session, study: Study, d: StudyDefinition) -> None:
    for key, cond in d.spec.conditions.items():
        s.add(
            Condition(
                study_id=study.id,
                key=key,
                reveal=cond.reveal,
                presupposition=cond.presupposition,
                intervention=cond.intervention,
                model_key=cond.model,
                config=cond.model_dump(mode="json"),
            )
        )
    for item in d.items:
        s.add(
            ItemRow(
                study_id=study.id,
                key=item.id,
                kind=item.kind,
                payload=item.model_dump(mode="json"),
                source_dataset=item.source.dataset,
                source_id=item.source.id,
            )
        )


def load_study(s: Session, d: StudyDefinition, source_path: str | None = None) -> LoadResult:
    """Store a validated study; a changed spec on a study with data becomes a new version.

    Args:
        s: Open session (the caller commits).
        d: The validated definition; its ``text``, when set, is kept as the spec as written.
        source_path: The file it came from, for the record.

    Returns:
        The stored row and what was done.
    """
    normalized = d.normalized()
    digest = d.sha256()
    current = latest(s, d.spec.slug)
    if current is not None and current.spec_sha256 == digest:
        if d.text is not None and current.spec_text != d.text:
            # Same study, new comments or layout: keep the text as last written.
            current.spec_text = d.text
        return LoadResult(current, "unchanged")
    if current is not None and not _has_data(s, current):
        for row in list(current.conditions) + list(current.items):
            s.delete(row)
        s.flush()
        current.spec, current.spec_sha256, current.title, current.spec_text = normalized, digest, d.spec.title, d.text
        current.seed, current.source_path = d.spec.plan.seed, source_path
        s.flush()
        _fill(s, current, d)
        s.flush()
        s.expire(current, ["conditions", "items"])
        return LoadResult(current, "replaced")
    status = current.status if current is not None and current.status != "superseded" else "draft"
    if status == "open" and open_problems(d):
        # A new version goes live only if it could be opened by hand.
        status = "paused"
    study = Study(
        slug=d.spec.slug,
        version=(current.version + 1) if current else 1,
        title=d.spec.title,
        spec=normalized,
        spec_sha256=digest,
        spec_text=d.text,
        source_path=source_path,
        status=status,
        seed=d.spec.plan.seed,
    )
    if current is not None:
        current.status = "superseded"
    s.add(study)
    s.flush()
    _fill(s, study, d)
    s.flush()
    return LoadResult(study, "new-version" if current else "created")


def load_study_file(s: Session, path: str | Path) -> LoadResult:
    """Validate a spec file and store it (see :func:`load_study`)."""
    return load_study(s, load_spec_file(path), str(path))


def open_problems(d: StudyDefinition) -> list[str]:
    """Why a study cannot open: models that fail validation or lack their keys."""
    from . import llm

    problems = []
    for key, m in d.spec.models.items():
        problems += [f"model '{key}': {p}" for p in llm.check_model(m.model, m.params)]
        missing = llm.missing_env(m.model, m.params)
        if missing and not m.optional:
            problems.append(f"model '{key}' ({m.model}) needs {', '.join(missing)} to be set")
    if not d.active_conditions():
        problems.append("no condition can run: every condition's model lacks its key")
    return problems


def set_status(s: Session, slug: str, action: str) -> Study:
    """Open, pause or close the newest version of a study.

    Opening checks the study's models first: a study cannot open with a model that fails
    validation or lacks its key (optional models excepted).
    """
    study = get_study(s, slug)
    allowed = STATUS_CHANGES[action]
    if study.status not in allowed:
        raise StudyError(f"cannot {action} study '{slug}': it is {study.status}")
    if action == "open":
        problems = open_problems(definition(study))
        if problems:
            raise StudyError(f"cannot open study '{slug}': " + "; ".join(problems))
    study.status = {"open": "open", "pause": "paused", "close": "closed"}[action]
    study.updated_at = utcnow()
    return study


@dataclass(frozen=True)
class StudySummary:
    """One line of the study list."""

    slug: str
    version: int
    title: str
    status: str
    participants: int
    completed: int
    sessions: int


def list_studies(s: Session, include_superseded: bool = False) -> list[StudySummary]:
    """Every study's newest version with counts."""
    q = select(Study).order_by(Study.slug, Study.version.desc())
    out = []
    for study in s.scalars(q):
        if study.status == "superseded" and not include_superseded:
            continue
        parts = s.execute(
            select(Participant.status, func.count())
            .where(Participant.study_id == study.id, real_participant())
            .group_by(Participant.status)
        ).all()
        counts = {status: n for status, n in parts}
        sessions = (
            s.scalar(
                select(func.count()).select_from(ChatSession).where(ChatSession.study_id == study.id, participant_conversation())
            )
            or 0
        )
        out.append(
            StudySummary(
                study.slug, study.version, study.title, study.status, sum(counts.values()), counts.get("completed", 0), sessions
            )
        )
    return out


def count_studies(s: Session) -> int:
    """How many study rows exist."""
    return s.scalar(select(func.count()).select_from(Study)) or 0
