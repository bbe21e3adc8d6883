"""What an evaluator says about one answer attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["scored", "needs_database", "needs_judge", "not_scorable", "error"]
"""``scored``: ``value`` holds the score; ``needs_database``: a Spider item without its
database; ``needs_judge``: a summary with no judge model; ``not_scorable``: no evaluator
applies (no gold data, no task); ``error``: the evaluator itself failed (a judge model error)."""

NOT_SCORED_REASONS: dict[str, str] = {
    "needs_database": "needs database",
    "needs_judge": "needs judge",
    "not_scorable": "not scorable",
    "error": "evaluator error",
}
"""Short reason shown in reports for each status that is not a score."""


@dataclass(frozen=True)
class Evaluation:
    """One answer attempt scored (or not) the way the task's authors score it."""

    family: str
    """Task family: ``code``, ``database``, ``actions``, ``data2text``, ``translation``,
    ``summary``, ``math``, or ``other``."""

    evaluator: str
    """Which evaluator ran, e.g. ``lic-code``."""

    version: str
    """The evaluator's version; a changed evaluator gets a new version so that studies
    can be re-scored (``python -m lab score SLUG``)."""

    status: Status
    """Whether ``value`` is a score, and if not, why."""

    value: float | None
    """The score in [0, 1] when ``status`` is ``scored``, else None."""

    reason: str
    """One sentence saying why."""

    extracted: str | None = None
    """The part of the reply that was evaluated (the answer extraction's result)."""

    details: dict[str, Any] = field(default_factory=dict)
    """Evaluator-specific facts (tests passed, BLEU, coverage per insight…), JSON-ready."""

    @property
    def scored(self) -> bool:
        """True when ``value`` is a score."""
        return self.status == "scored"

    def record(self) -> dict[str, Any]:
        """The evaluation as stored with the conversation (JSON-ready; long text cut)."""
        extracted = self.extracted
        if extracted is not None and len(extracted) > 4000:
            extracted = extracted[:4000] + "…"
        return {
            "family": self.family,
            "evaluator": self.evaluator,
            "version": self.version,
            "status": self.status,
            "value": self.value,
            "reason": self.reason,
            "extracted": extracted,
            "details": self.details,
        }


def not_scored(family: str, evaluator: str, version: str, status: Status, reason: str, **details: Any) -> Evaluation:
    """An evaluation that holds no score."""
    return Evaluation(family, evaluator, version, status, None, reason, None, dict(details))
