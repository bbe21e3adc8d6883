"""The answer-attempt gate: which turns of an incremental conversation are answer attempts.

Under SHARDED (and the other incremental reveal modes) a conversation is scored on its last
answer attempt, so the gate decides what gets scored. Two gates:

- :class:`RuleGate`: the rule judge's layer-S category (``answer_attempt`` or not; an
  abstention is an abstention), the lab's default;
- :class:`LLMGate`: the authors' approach (``system_agent.py``): a model classifies the turn
  with the full specification in view (the first shard, every other shard, and what an
  answer to the task looks like) into the same categories, and the turn is an attempt when
  it answers ``answer_attempt``. Used when the study names a judge model.

Both are measured like a judge (:func:`evaluate_gate`, ``python -m lab judge evaluate``) on
hand-labelled turns across the task families: ``tests/data/dev_gate.jsonl`` (development)
and ``tests/data/heldout_gate.jsonl`` (held out; nothing was tuned on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.items import Item

GATE_PROMPT_VERSION = "gate-1"
"""Version of :data:`GATE_PROMPT`; bump it whenever its wording changes."""

RESPONSE_TYPES = ("answer_attempt", "clarification", "interrogation", "discussion", "hedge", "refuse", "missing")
"""The categories the authors' classifier chooses from."""

ANSWER_DESCRIPTIONS = {
    "math": "A final numerical answer to the word problem, stated as a number.",
    "code": "A complete Python function implementing the requested behaviour (not a sketch or pseudo-code).",
    "database": "A complete SQL query that can be run against the database to answer the question.",
    "actions": "One or more complete function calls with their arguments, answering the request.",
    "data2text": "A finished one-sentence description of the highlighted table cells.",
    "translation": "A full translation of the document.",
    "summary": "A finished summary of the documents, in bullet points with citations.",
}
"""What an answer looks like, per task family (the lab's wording of the authors' answer descriptions)."""

GATE_PROMPT = """\
You review the last assistant turn of a conversation in which a user gives an assistant a \
task piece by piece. Here is the full specification of the task the assistant is working on.

The user's first message:
{first}

The remaining pieces of the specification (the user may not have given them all yet):
{rest}

Classify the assistant's turn as exactly one of:
- answer_attempt: the turn contains a complete answer to the task (not a template or a \
hypothetical) that could be extracted word for word. Choose it only if the conversation \
could end here with the user holding a final answer. What an answer looks like here: {answer}
- clarification: a short turn (under about 100 words) asking the user one specific question \
about the task.
- interrogation: the turn asks the user several questions.
- discussion: the turn discusses the task without giving a final answer or asking one specific question.
- hedge: the turn gives several candidate answers conditional on different readings.
- refuse: the turn declines to answer without asking for anything.
- missing: the turn is empty.

Answer with one JSON object and nothing else: {{"response_type": "<one of the categories>"}}

The assistant's turn:
<<<
{turn}
>>>"""

CompleteFn = Callable[..., Any]
"""``complete(model, messages, params)`` returning an object with ``.text`` (or a string)."""


class RuleGate:
    """The rule judge's layer-S category decides."""

    name = "rules"

    def decide(self, item: Item | None, reply: str) -> bool | None:
        """True for an answer attempt, False for any other category, None when the rules abstain."""
        from lab.judge import ABSTAIN, RuleJudge

        code = RuleJudge().classify(reply, item=item).code
        return None if code == ABSTAIN else code == "answer_attempt"


def specification(item: Item | None) -> tuple[str, list[str]]:
    """The first shard and the other shards of an item (its full text as the first when it has no shards)."""
    shards = [s.text for s in getattr(item, "shards", None) or []]
    if shards:
        return shards[0], shards[1:]
    from lab.judge._llm_judge import _task_text

    return _task_text(item) or "", []


def gate_messages(item: Item | None, reply: str) -> list[dict[str, str]]:
    """The message sent to the gate model: the whole specification and the turn."""
    from ._dispatch import family_of

    first, rest = specification(item)
    answer = ANSWER_DESCRIPTIONS.get(family_of(item) or "", "A complete, final answer to the task.")
    text = GATE_PROMPT.format(first=first, rest=json.dumps(rest, ensure_ascii=False), answer=answer, turn=reply)
    return [{"role": "user", "content": text}]


@dataclass
class LLMGate:
    """A judge model classifies the turn with the full specification in view (the authors' approach).

    Args:
        model: The judge model string.
        params: Completion parameters (temperature 0 by default, as the authors).
        complete: The completion function (default ``lab.llm.complete``); tests pass the scripted model.
    """

    model: str
    params: dict[str, Any] | None = None
    complete: CompleteFn | None = None

    name = "llm"

    def _parse(self, text: str) -> bool | None:
        from lab.judge import parse_json_object

        data = parse_json_object(text) or {}
        found = str(data.get("response_type", "")).strip().lower()
        return None if found not in RESPONSE_TYPES else found == "answer_attempt"

    def decide(self, item: Item | None, reply: str) -> bool | None:
        """True for ``answer_attempt``; None when the model fails or answers no category (an abstention)."""
        from lab import llm

        call = self.complete or llm.complete
        try:
            out = call(self.model, gate_messages(item, reply), {"temperature": 0, **(self.params or {})})
        except Exception:  # noqa: BLE001 - a failed call abstains; the rules then decide
            return None
        return self._parse(out if isinstance(out, str) else out.text)

    async def adecide(self, item: Item | None, reply: str) -> bool | None:
        """:meth:`decide` without blocking the event loop."""
        from lab import llm

        if self.complete is not None:
            return self.decide(item, reply)
        try:
            out = await llm.acomplete(self.model, gate_messages(item, reply), {"temperature": 0, **(self.params or {})})
        except Exception:  # noqa: BLE001 - a failed call abstains; the rules then decide
            return None
        return self._parse(out.text)


# --- measured like a judge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateCase:
    """One hand-labelled turn."""

    id: str
    task: str
    attempt: bool
    reply: str
    item: Item


@dataclass
class GateEvaluation:
    """A gate scored on one set of labelled turns."""

    name: str
    gate: str
    cases: list[GateCase]
    decided: list[bool | None]

    def _count(self, gold: bool, said: bool | None) -> int:
        return sum(c.attempt == gold and d is said for c, d in zip(self.cases, self.decided, strict=True))

    @property
    def precision(self) -> float | None:
        """Share of the turns the gate called attempts that are attempts."""
        tp, fp = self._count(True, True), self._count(False, True)
        return tp / (tp + fp) if tp + fp else None

    @property
    def recall(self) -> float | None:
        """Share of the attempts the gate called attempts (abstentions count as misses)."""
        support = sum(c.attempt for c in self.cases)
        return self._count(True, True) / support if support else None

    @property
    def abstention(self) -> float:
        """Share of the turns on which the gate abstained."""
        return sum(d is None for d in self.decided) / len(self.decided) if self.decided else 0.0

    @property
    def accuracy(self) -> float:
        """Share of all turns decided correctly (abstentions count as wrong)."""
        return sum(d is c.attempt for c, d in zip(self.cases, self.decided, strict=True)) / len(self.cases) if self.cases else 0.0

    def by_task(self) -> dict[str, tuple[int, int]]:
        """Task → (turns decided correctly, turns)."""
        out: dict[str, tuple[int, int]] = {}
        for c, d in zip(self.cases, self.decided, strict=True):
            right, n = out.get(c.task, (0, 0))
            out[c.task] = (right + (d is c.attempt), n + 1)
        return out


def gate_cases(path: Path) -> list[GateCase]:
    """Labelled turns: ``{id, task, spec: [first shard, …], attempt, reason, reply}`` per line."""
    from lab.items import Shard, ShardedItem, Source

    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        item = ShardedItem(
            id=f"gate-{r['id']}",
            shards=[Shard(id=i + 1, text=t) for i, t in enumerate(r["spec"])],
            source=Source(dataset="lost_in_conversation", task=r["task"]),
        )
        cases.append(GateCase(r["id"], r["task"], bool(r["attempt"]), r["reply"], item))
    return cases


def evaluate_gate(gate: RuleGate | LLMGate, path: Path, name: str, limit: int | None = None) -> GateEvaluation:
    """Score a gate on a file of labelled turns (the first ``limit`` only, to bound a model's calls)."""
    cases = gate_cases(path)[:limit] if limit else gate_cases(path)
    label = gate.name if isinstance(gate, RuleGate) else f"llm:{gate.model}"
    return GateEvaluation(name, label, cases, [gate.decide(c.item, c.reply) for c in cases])


def format_gate(ev: GateEvaluation) -> str:
    """Precision, recall and abstention of the gate on one set, and its accuracy per task family."""

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x:.0%}"

    tasks = " · ".join(f"{t} {right}/{n}" for t, (right, n) in sorted(ev.by_task().items()))
    return "\n".join(
        [
            f"== {ev.name} (answer-attempt gate, {len(ev.cases)} turns, {sum(c.attempt for c in ev.cases)} attempts) — {ev.gate}",
            f"   precision {pct(ev.precision)} · recall {pct(ev.recall)} · abstained {ev.abstention:.0%} · "
            f"accuracy {ev.accuracy:.0%}",
            f"   right per task: {tasks}",
        ]
    )
