"""Layer R: rule-based candidates for repair sequences in one conversation.

Repair links turns: a trouble source, the turn that initiates repair, the turn that
repairs, and an outcome (``docs/measures.md``, "Codebook"). These rules propose *candidates* for
people to confirm; each is an :class:`RepairCandidate` stored as a ``repair_sequence`` row
and an ``R`` label on its initiation turn (code = the initiation type) by the annotator
``auto:rules``, with :data:`REPAIR_VERSION` and the rule id in the label's ``meta``.
:data:`REPAIR_RULES` lists the rules; ``lab/judge/RULES.md`` documents them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._grounding import NOT_FOLLOWING, OPEN_WORD, WHAT_MEANT, classify_grounding, split_codes
from ._ruleset import Rule, rule_table
from ._text import is_blank

REPAIR_VERSION = "repair-rules-1"
"""Version of the layer-R candidate rules; bump it whenever a rule changes what it finds."""


REPAIR_RULES: dict[str, Rule] = rule_table(
    [
        Rule(
            "R-tpr",
            "a user turn after an assistant reply opening 'No, I meant…', 'I meant…', 'Not quite…', 'That's not what I asked': "
            "the user repairs the assistant's reading of their earlier turn (third position)",
            "TPR",
            0.7,
        ),
        Rule(
            "R-oi-open",
            "a turn asking what the other meant without naming the trouble ('Huh?', 'What do you mean?', 'I didn't follow'), "
            "answered by the other speaker's next turn",
            "OI-open",
            0.65,
        ),
        Rule(
            "R-oi-offer",
            "a turn offering a reading for confirmation (layer G CHECK: 'You mean the 2023 report?', '…, right?'), "
            "answered by the other speaker's next turn",
            "OI-restricted-offer",
            0.55,
        ),
        Rule(
            "R-oi-request",
            "a clarifying question (layer G CLARIFY: 'Which file, the draft or the final?'), answered by the other "
            "speaker's next turn with the missing piece",
            "OI-restricted-request",
            0.55,
        ),
        Rule(
            "R-si",
            "a turn that repairs itself ('I mean', 'sorry, I meant', 'or rather', 'scratch that', 'correction:')",
            "SI",
            0.5,
        ),
    ]
)
"""Every layer-R rule by id; a rule's code is the initiation type it proposes (codebook layer R)."""

_TPR = re.compile(
    r"^(?:no|nope|not quite|not really|not exactly|actually|sorry)?[,.!]?\s*"
    r"(?:i meant|i mean|what i meant|i was (?:asking|talking) about|i said|that'?s not what i (?:meant|asked|said|wanted))\b"
    r"|^(?:no|nope|not quite|not exactly)[,.!]\s+(?:the|it'?s|that'?s|i)\b"
    r"|^that'?s not what i (?:meant|asked|said|wanted)\b",
    re.I,
)
_SELF_REPAIR = re.compile(
    r"\w[^.?!]*?\b(?:i mean|sorry,? i meant|or rather|scratch that|correction:|make that|wait,? (?:no|actually))\b",
    re.I,
)
_OPEN_CLASS = re.compile(
    rf"^(?:{OPEN_WORD}|come again)\s*[?!.]*$"
    rf"|^(?:sorry,?\s*)?(?:{WHAT_MEANT}|what was that|i {NOT_FOLLOWING}(?: that| you| it)?)\s*[?!.]*$",
    re.I,
)
_SENTENCE = re.compile(r"(?<=[?!.])\s+|\s+[—–]\s+")


@dataclass(frozen=True)
class TurnText:
    """What the finder needs of a turn."""

    id: int
    """The turn's id (or its position, for text not stored yet)."""

    role: str
    """``user`` or ``assistant`` (other roles are skipped)."""

    content: str
    """The turn's text."""


@dataclass(frozen=True)
class RepairCandidate:
    """One candidate repair sequence."""

    rule: str
    """Id of the rule that found it."""

    initiation: str
    """Initiation type (``TPR``, ``OI-open``, ``OI-restricted-request``, ``OI-restricted-offer``, ``SI``)."""

    initiator: str
    """``user`` or ``assistant``."""

    trouble_turn_id: int | None
    """The turn holding the trouble source."""

    initiation_turn_id: int
    """The turn that initiates repair."""

    repair_turn_id: int | None
    """The turn that repairs (None while nobody has)."""

    outcome: str | None
    """``resolved`` when the conversation goes on without the same repair again, ``unresolved`` when
    the initiator has to initiate again right after; None when nothing follows yet."""

    confidence: float
    """The rule's prior confidence."""


def find_repairs(turns: Sequence[TurnText]) -> list[RepairCandidate]:
    """Propose repair sequences in one conversation's turns, in order.

    Args:
        turns: The conversation's turns in order (system, mediator and empty turns are skipped).

    Returns:
        Candidates, at most one per initiation turn (the first rule that fires, in
        :data:`REPAIR_RULES` order).
    """
    talk = [t for t in turns if t.role in ("user", "assistant") and not is_blank(t.content)]
    found: list[RepairCandidate] = []
    for i, turn in enumerate(talk):
        before = talk[i - 1] if i > 0 else None
        after = talk[i + 1] if i + 1 < len(talk) else None
        later = talk[i + 2] if i + 2 < len(talk) else None
        text = turn.content.strip()
        other = "assistant" if turn.role == "user" else "user"
        if turn.role == "user" and before is not None and before.role == "assistant" and _TPR.search(text):
            trouble = talk[i - 2].id if i >= 2 and talk[i - 2].role == "user" else None
            outcome = None
            if after is not None:
                outcome = (
                    "unresolved"
                    if later is not None and later.role == "user" and _TPR.search(later.content.strip())
                    else "resolved"
                )
            found.append(_candidate("R-tpr", turn.role, trouble, turn.id, turn.id, outcome))
            continue
        if before is not None and before.role == other:
            g = classify_grounding(text, speaker=turn.role, previous=before.content)
            acts = split_codes(g.code or "NONE")
            rule = None
            if any(_OPEN_CLASS.match(part.strip()) for part in _SENTENCE.split(text)):
                rule = "R-oi-open"
            elif "CHECK" in acts:
                rule = "R-oi-offer"
            elif "CLARIFY" in acts:
                rule = "R-oi-request"
            if rule is not None:
                repair = after.id if after is not None and after.role == other else None
                outcome = None
                if repair is not None and later is not None:
                    again = classify_grounding(later.content, speaker=later.role, previous=after.content if after else "")
                    outcome = "unresolved" if {"CLARIFY", "CHECK"} & set(split_codes(again.code or "NONE")) else "resolved"
                found.append(_candidate(rule, turn.role, before.id, turn.id, repair, outcome))
                continue
        if _SELF_REPAIR.search(text):
            found.append(_candidate("R-si", turn.role, turn.id, turn.id, turn.id, "resolved"))
    return found


def _candidate(
    rule: str, initiator: str, trouble: int | None, initiation: int, repair: int | None, outcome: str | None
) -> RepairCandidate:
    r = REPAIR_RULES[rule]
    return RepairCandidate(rule, r.code, initiator, trouble, initiation, repair, outcome, r.confidence)
