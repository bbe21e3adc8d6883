"""Mechanical checks of a simulated participant's messages against the reveal rules.

Every simulator line after the opening is checked from the shard bookkeeping and the text
itself, whatever wrote it (the scripted simulator, a model, a test double). Nothing found
here is corrected: the message is sent as the rules allow and the drift is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..items import Shard
from ..reveal import ONE_PER_TURN, mentions, requested_shard

SHARDED_FAMILY = ONE_PER_TURN
"""Reveal modes in which every later user turn should reveal one new shard."""

DRIFT_KINDS: dict[str, str] = {
    "two_shards": "revealed more than one new shard in one message",
    "nothing_new": "revealed no new shard while shards remained (SHARDED, SNOWBALL, RECAP)",
    "unclaimed_shard": "the text gives away a shard the simulator did not say it revealed",
    "asked_question": "asked the assistant a question",
    "unrequested_shard": "revealed a shard the assistant had not asked for (ON_REQUEST)",
    "ignored_request": "did not reveal the shard the assistant asked for (ON_REQUEST)",
    "unknown_shard": "named a shard the item does not have",
    "unparsable": "the simulator model's output was not the JSON it was asked for",
    "empty": "the simulator model wrote no message",
    "too_long": "the message was longer than the study allows and was cut",
}
"""Every kind of drift the run report counts, with what it means."""

_QUESTION_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Drift:
    """One rule a simulated participant's message broke."""

    session_id: int
    """The conversation."""

    turn_index: int | None
    """The user turn's index in the conversation (None for a move that sent nothing)."""

    kind: str
    """One of :data:`DRIFT_KINDS`."""

    detail: str
    """What exactly was seen."""


def questions(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Sentences of a message that end in a question mark, leaving out the allowed texts.

    Args:
        text: The message.
        allowed: Texts that may appear verbatim without counting (a shard that is itself
            a question, sent as written).
    """
    for quote in allowed:
        if quote.strip():
            text = text.replace(quote.strip(), " ")
    return [q.strip() for q in _QUESTION_SPLIT.split(text) if q.strip().endswith("?")]


def check_message(
    *,
    reveal: str,
    shards: list[Shard],
    revealed: set[int],
    assistant_text: str,
    text: str,
    sent: list[int],
    claimed: list[int] | None = None,
) -> list[tuple[str, str]]:
    """Check one simulator message (not the opening) against the reveal rules.

    Args:
        reveal: The condition's reveal mode.
        shards: Every shard of the item under the condition.
        revealed: Shard ids revealed before this message.
        assistant_text: The assistant's last reply before it.
        text: The message as sent.
        sent: Shard ids the message was recorded as revealing.
        claimed: Shard ids the simulator said it revealed, when it said more than was
            recorded (None: the same as ``sent``).

    Returns:
        ``(kind, detail)`` for every rule broken; empty when the message obeys the rules.
    """
    by_id = {s.id: s for s in shards}
    remaining = [s for s in shards if s.id not in revealed]
    claims = list(dict.fromkeys(claimed if claimed is not None else sent))
    problems: list[tuple[str, str]] = []
    unknown = [i for i in claims if i not in by_id]
    if unknown:
        problems.append(("unknown_shard", f"named shard {unknown[0]}, which the item does not have"))
    recorded_new = [i for i in dict.fromkeys(sent) if i in by_id and i not in revealed]
    claimed_new = [i for i in claims if i in by_id and i not in revealed]
    quoted = [by_id[i].text for i in recorded_new + claimed_new]
    given_away = [s.id for s in remaining if s.id not in claimed_new and s.id not in recorded_new and mentions(s, text, shards)]
    new = list(dict.fromkeys(recorded_new + claimed_new + given_away))
    if len(new) > 1:
        problems.append(("two_shards", f"revealed shards {', '.join(map(str, new))} in one message"))
    if given_away:
        problems.append(("unclaimed_shard", f"the text gives away shard {given_away[0]}"))
    if reveal in SHARDED_FAMILY and remaining and not new:
        problems.append(("nothing_new", f"{len(remaining)} shard(s) remained and none was revealed"))
    asked = questions(text, quoted + [s.text for s in shards])
    if asked:
        problems.append(("asked_question", asked[0][:200]))
    if reveal == "ON_REQUEST":
        wanted = requested_shard(assistant_text, remaining)
        unasked = [i for i in new if wanted is None or i != wanted.id]
        if unasked:
            problems.append(("unrequested_shard", f"revealed shard {unasked[0]} without being asked for it"))
        if wanted is not None and wanted.id not in new:
            problems.append(("ignored_request", f"the assistant asked for shard {wanted.id}"))
    return problems
