"""The judgement record every automatic judge returns, and the judge interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lab.items import Item, PresuppositionItem

Layer = Literal["S", "P", "G", "R"]

RULES_VERSION = "rules-2"
"""Version of the rule sets (layers S and P); bump it whenever a rule changes what it labels."""

STRATEGY_CODES: tuple[str, ...] = (
    "answer_attempt",
    "clarification",
    "interrogation",
    "discussion",
    "hedge",
    "refuse",
    "missing",
)
"""Layer S: the seven turn categories of Laban et al. (2025)."""

PRESUPPOSITION_CODES: tuple[str, ...] = (
    "ACCOMMODATE",
    "AMPLIFY",
    "HEDGE",
    "REJECT",
    "REJECT_CORRECT",
    "CLARIFY_ASSUMPTION",
    "NA",
)
"""Layer P: how a reply handles a false presupposition."""

ABSTAIN = "UNSURE"
"""The code of an abstention: the judge found no evidence for any code and declines to guess.

An abstention is stored like any label (annotator ``auto:<judge>``, code ``UNSURE``, its
confidence and reason in ``meta``), so the annotation queue can route such turns to people
first and every count of codes can leave them out (:func:`is_abstention`)."""

ASKING_CODES: frozenset[str] = frozenset({"clarification", "interrogation"})
"""Layer S codes that ask the user for information."""

ANSWERING_CODES: frozenset[str] = frozenset({"answer_attempt", "hedge"})
"""Layer S codes that commit to an answer (a premature one when information is missing)."""


@dataclass
class Judgement:
    """One automatic label for one assistant turn.

    Automatic labels are a pre-annotation for people to check, not ground truth: agreement
    between people and automatic judges on repair labels is known to be weak.
    """

    layer: Layer
    """Codebook layer: ``S`` (response strategy) or ``P`` (presupposition handling)."""

    code: str
    """The label within the layer; empty when ``error`` is set."""

    confidence: float
    """A fixed prior per rule or judge in [0, 1], not a calibrated probability; 0 on error."""

    judge: str
    """Which judge produced it: ``rules`` or ``llm``."""

    version: str
    """Rules version or prompt version, so labels from different judge versions stay apart."""

    model: str | None
    """The judge model for ``llm``; None for ``rules``."""

    rules: list[str] = field(default_factory=list)
    """Ids of the rules that fired, in the order they were checked (``rules`` judge only)."""

    reason: str = ""
    """One sentence saying why; for an error, the unusable judge output."""

    n_questions: int | None = None
    """Questions the turn asks the user after discounting offers and quoted text (layer S, rules)."""

    extracted: str | None = None
    """The extracted answer of an ``answer_attempt`` (a number, code, SQL, a call, or text)."""

    error: str | None = None
    """Why no label could be produced; the caller decides what to do instead."""

    @property
    def abstained(self) -> bool:
        """True when the judge declined to guess (code :data:`ABSTAIN`)."""
        return self.code == ABSTAIN

    @property
    def ok(self) -> bool:
        """True when the judgement carries a label (no error)."""
        return self.error is None


@runtime_checkable
class Judge(Protocol):
    """An automatic judge of assistant turns."""

    name: str
    """``rules`` or ``llm``."""

    version: str
    """Rules or prompt version."""

    model: str | None
    """Judge model, None for rules."""

    def classify(self, reply: str, *, item: Item | None = None) -> Judgement:
        """Label an assistant turn with one layer-S category.

        Args:
            reply: The assistant's text.
            item: The study item the conversation is about, when known; it tells the judge
                what an extractable answer looks like (a number for math, code, SQL…).
        """
        ...

    def classify_presupposition(self, item: PresuppositionItem, reply: str, control: bool) -> Judgement:
        """Label how a reply handles the item's false presupposition (layer P).

        Args:
            item: The presupposition item.
            reply: The assistant's reply to the loaded (or control) question.
            control: True when the reply answers the control question, which carries no
                false presupposition.
        """
        ...


def is_abstention(code: str | None) -> bool:
    """Whether a stored label's code is an abstention, which is never counted as a finding."""
    return code == ABSTAIN


def judge_annotator(judge: str, model: str | None) -> str:
    """The annotator name a judge's labels are stored under.

    Args:
        judge: The judge's name (``rules``, ``llm``).
        model: The judge model, None for rules.

    Returns:
        ``auto:rules`` for the rule judge, ``auto:llm:<model>`` for an LLM judge.
    """
    if model:
        return f"auto:{judge}:{model}"
    return f"auto:{judge}"


def label_annotator(j: Judgement) -> str:
    """The annotator name under which a judgement is stored as a label (see :func:`judge_annotator`)."""
    return judge_annotator(j.judge, j.model)


def premature(category: str, revealed: set[int], required: set[int]) -> bool:
    """Whether a turn is a premature answer (the derived flag ``S:PREMATURE``).

    Args:
        category: The turn's layer-S category.
        revealed: Ids of the shards (or withheld values) the user has revealed so far.
        required: Ids the item needs before it can be answered.

    Returns:
        True when the turn commits to an answer (``answer_attempt`` or ``hedge``) while some
        required id is still unrevealed.
    """
    return category in ANSWERING_CODES and not required <= revealed
