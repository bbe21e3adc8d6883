"""Simulator consistency from a judge model (docs/measures.md, "Simulator consistency").

For every simulator line after the opening, a judge model says whether the line is
consistent with the simulator's prompt (its rules, persona and task: prompt-to-line) and
with the simulator's own earlier lines (line-to-line). The shares are reported per run;
the verdicts are stored with the conversation as a ``sim_consistency`` event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import llm
from ..dialogue import Conversation
from ..judge import parse_json_object
from ._simulator import simulator_instructions, task_view

CONSISTENCY_PROMPT_VERSION = "sim-consistency-1"
"""Version of the judge prompts below; bump it whenever their wording changes."""

CONSISTENCY_EVENT = "sim_consistency"
"""Event kind holding a conversation's consistency verdicts."""

DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 200}
"""Deterministic decoding and room for a one-sentence reason."""

_ANSWER = 'Answer with one JSON object and nothing else: {"consistent": true or false, "reason": "<one sentence>"}'

PROMPT_TO_LINE = f"""\
You check a simulated user. The simulated user was given the instructions below and then \
wrote one line of a conversation with an assistant. Decide whether the line is consistent \
with the instructions: it follows their rules, keeps the persona if one is given, and says \
nothing that contradicts the task.

{_ANSWER}"""

LINE_TO_LINE = f"""\
You check a simulated user. Below are the lines the simulated user wrote earlier in a \
conversation with an assistant, then a new line. Decide whether the new line is consistent \
with the earlier lines: it contradicts nothing the user said before (facts, numbers, \
preferences, tone or persona).

{_ANSWER}"""

Acquire = Callable[[str], Awaitable[None]]
"""Waits until one more call to a model may be sent (rate limiting)."""


@dataclass
class LineVerdict:
    """The judge's verdicts on one simulator line."""

    turn_id: int
    index: int
    prompt_to_line: bool | None
    """Consistent with the simulator's prompt; None when the judge gave no usable answer."""
    line_to_line: bool | None
    """Consistent with its earlier lines; None when the judge gave no usable answer."""
    reasons: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Consistency:
    """A conversation's consistency verdicts."""

    model: str
    version: str
    lines: list[LineVerdict]

    @staticmethod
    def _share(values: list[bool | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    @property
    def prompt_to_line(self) -> float | None:
        """Share of judged lines consistent with the prompt."""
        return self._share([v.prompt_to_line for v in self.lines])

    @property
    def line_to_line(self) -> float | None:
        """Share of judged lines consistent with the earlier lines."""
        return self._share([v.line_to_line for v in self.lines])

    def to_json(self) -> dict[str, Any]:
        """The event payload."""
        return {
            "model": self.model,
            "version": self.version,
            "prompt_to_line": self.prompt_to_line,
            "line_to_line": self.line_to_line,
            "lines": [asdict(v) for v in self.lines],
        }


def _verdict(text: str) -> tuple[bool | None, str, str | None]:
    data = parse_json_object(text)
    if data is None:
        return None, "", "the judge's output holds no JSON object"
    value = data.get("consistent")
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        value = value.strip().lower() in ("true", "yes")
    if not isinstance(value, bool):
        return None, "", f"the judge answered consistent={value!r}, not true or false"
    reason = data.get("reason")
    return value, reason.strip() if isinstance(reason, str) else "", None


async def judge_consistency(
    conv: Conversation,
    model: str,
    params: dict[str, Any] | None = None,
    *,
    persona: str | None = None,
    acquire: Acquire | None = None,
    store: bool = True,
) -> Consistency:
    """Judge every simulator line of a conversation (after the opening) on both measures.

    Args:
        conv: The conversation.
        model: The judge model string.
        params: Its call parameters (default :data:`DEFAULT_PARAMS`).
        persona: The persona the simulator was given.
        acquire: Called with the model before each call (rate limiting).
        store: Write the verdicts as a ``sim_consistency`` event.

    Returns:
        The verdicts; a failed judge call leaves that verdict None with its error.
    """
    params = dict(params) if params else dict(DEFAULT_PARAMS)
    instructions = simulator_instructions(conv, persona)
    lines = [t for t in conv.turns if t.role == "user" and t.source == "simulator"]
    verdicts: list[LineVerdict] = []
    for n, line in enumerate(lines[1:], start=1):
        before = [t for t in conv.turns if t.index < line.index and t.role == "assistant" and t.error is None]
        last = before[-1].content if before else ""
        asks = {
            "prompt_to_line": [
                {"role": "system", "content": PROMPT_TO_LINE},
                {
                    "role": "user",
                    "content": f"Instructions the simulated user was given:\n<<<\n{instructions}\n\n"
                    f"{task_view(conv, before=line.index)}\n>>>\n\nThe assistant's last message:\n<<<\n{last}\n>>>\n\n"
                    f"The simulated user's line:\n<<<\n{line.content}\n>>>",
                },
            ],
            "line_to_line": [
                {"role": "system", "content": LINE_TO_LINE},
                {
                    "role": "user",
                    "content": "Earlier lines of the simulated user:\n"
                    + "\n".join(f"{i}. {t.content}" for i, t in enumerate(lines[:n], start=1))
                    + f"\n\nThe new line:\n<<<\n{line.content}\n>>>",
                },
            ],
        }
        verdict = LineVerdict(line.id, line.index, None, None)
        for measure, messages in asks.items():
            if acquire is not None:
                await acquire(model)
            try:
                result = await llm.acomplete(model, messages, dict(params))
            except llm.ModelError as e:
                verdict.errors[measure] = e.message
                continue
            value, reason, error = _verdict(result.text)
            setattr(verdict, measure, value)
            if reason:
                verdict.reasons[measure] = reason
            if error:
                verdict.errors[measure] = error
        verdicts.append(verdict)
    out = Consistency(model, CONSISTENCY_PROMPT_VERSION, verdicts)
    if store:
        conv.log_event(CONSISTENCY_EVENT, out.to_json())
    return out
