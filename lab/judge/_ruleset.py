"""Documented rules of the rule judges: the record every rule table holds, and the judgements rules give.

Each layer keeps its rules as a table of :class:`Rule` records keyed by id
(:func:`rule_table`); ``lab/judge/RULES.md`` documents the same tables for readers. A label
decided by one rule carries that rule's code and prior confidence (:func:`decided`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._judgement import RULES_VERSION, Judgement, Layer


@dataclass(frozen=True)
class Rule:
    """One documented rule of a layer."""

    id: str
    """Stable id reported in :attr:`Judgement.rules` (layer R: recorded with each candidate)."""

    detects: str
    """What it looks for, in one line."""

    code: str
    """What it assigns: a layer-S category, a layer-P or layer-G code, a layer-R initiation type;
    ``(count)`` or ``(frame)`` for rules that only feed other rules."""

    confidence: float = 0.0
    """Prior confidence of a label decided by this rule."""


def rule_table(rules: Iterable[Rule]) -> dict[str, Rule]:
    """A layer's rules keyed by id, in the order given.

    Raises:
        ValueError: two rules share an id (the later one would silently replace the earlier).
    """
    table: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in table:
            raise ValueError(f"rule id {rule.id} is listed twice")
        table[rule.id] = rule
    return table


def decided(
    layer: Layer,
    rule: Rule,
    reason: str,
    *,
    evidence: Sequence[str] = (),
    n_questions: int | None = None,
    extracted: str | None = None,
    version: str = RULES_VERSION,
) -> Judgement:
    """The judgement of a label one rule decided.

    Args:
        layer: The codebook layer.
        rule: The deciding rule; its code and confidence become the label's.
        reason: One sentence saying why.
        evidence: Ids of rules that fired before it and fed the decision; reported first.
        n_questions: Questions the turn asks, where the layer counts them.
        extracted: The extracted answer of an answer attempt.
        version: The rule set's version.
    """
    return Judgement(
        layer=layer,
        code=rule.code,
        confidence=rule.confidence,
        judge="rules",
        version=version,
        model=None,
        rules=[*evidence, rule.id],
        reason=reason,
        n_questions=n_questions,
        extracted=extracted,
    )


def nothing_to_label(layer: Layer, version: str, error: str) -> Judgement:
    """The judgement of a turn with no text to label: no code, confidence 0, ``error`` saying why."""
    return Judgement(layer=layer, code="", confidence=0.0, judge="rules", version=version, model=None, error=error)
