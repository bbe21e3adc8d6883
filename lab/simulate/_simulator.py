"""User simulators: what writes a simulated participant's messages.

A simulator plays the participant under the rules humans get (``docs/measures.md``, "Reveal modes"):
in SHARDED, SNOWBALL and RECAP it reveals at most one shard per message, the one most
relevant to what the assistant just said (else the most basic remaining one), rephrased
briefly and casually; it answers questions it holds no shard for with "I don't know",
never asks questions, and says when it is satisfied. In ON_REQUEST it reveals a shard only
when the assistant asks for it. The opening message (the first shard, the full
instruction, the loaded question) is sent as written by the runner, not by the simulator.

:class:`ScriptedSimulator` sends shards verbatim and in order; :class:`LLMSimulator` asks a
model with the lab's prompt (versioned by :data:`SIMULATOR_PROMPT_VERSION`) for a JSON move.
Neither is trusted: the runner checks every move mechanically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import llm
from ..dialogue import Conversation
from ..judge import parse_json_object
from ..reveal import GO_AHEAD, full_instruction, requested_shard
from ._checks import questions

SIMULATOR_PROMPT_VERSION = "sim-1"
"""Version of the simulator prompts below; bump it whenever their wording changes."""

SCRIPTED_VERSION = "scripted-1"
"""Version of the scripted simulator's rules."""

DONT_KNOW = "I don't know."
"""What a simulated participant says to a question it holds no shard for."""

DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.7, "max_tokens": 300}
"""Decoding for a simulator model the study gives no parameters for."""

ROLE = (
    "You play a user chatting with an AI assistant. You want the assistant's help with a task "
    "that you know in full, but you share it piece by piece. The pieces are called shards."
)

SHARDED_RULES = """\
Rules for every message you write:
1. Reveal at most one new shard per message, taken from the shards not yet shared.
2. Pick the shard most relevant to what the assistant just said; if none is relevant, pick \
the most basic one left (the lowest number).
3. Rephrase the shard briefly and casually, as a person typing in a chat. Keep its numbers, \
names and constraints exactly; add nothing that is not in it.
4. If the assistant asked something no shard answers, say "I don't know" to that part (and \
still share one shard if any are left).
5. Never ask the assistant a question.
6. If the assistant's last message fully solves your task, do not share a shard: say you are \
satisfied."""

ON_REQUEST_RULES = """\
Rules for every message you write:
1. Reveal a shard only when the assistant's last message asks for what it holds; then reveal \
that one shard, rephrased briefly and casually, keeping its numbers and names exactly.
2. If the assistant did not ask for anything a shard holds, reveal nothing: tell it to go \
ahead with what it has.
3. If the assistant asked something no shard answers, say "I don't know" to that part.
4. Never ask the assistant a question.
5. If the assistant's last message fully solves your task, say you are satisfied."""

ANSWER_FORMAT = (
    'Reply with one JSON object and nothing else: {"shard": <number of the shard you reveal, or null>, '
    '"message": "<your message to the assistant>", "satisfied": <true or false>}'
)


def prompt_texts() -> dict[str, str]:
    """The simulator's prompt parts as stored with each run."""
    return {
        "version": SIMULATOR_PROMPT_VERSION,
        "role": ROLE,
        "sharded_rules": SHARDED_RULES,
        "on_request_rules": ON_REQUEST_RULES,
        "answer_format": ANSWER_FORMAT,
    }


def simulator_instructions(conv: Conversation, persona: str | None) -> str:
    """The system prompt a simulator model gets for a conversation: role, rules, persona."""
    rules = ON_REQUEST_RULES if conv.reveal == "ON_REQUEST" else SHARDED_RULES
    parts = [ROLE, rules]
    if persona:
        parts.append(f"Your persona: {persona.strip()}\nWrite as this person would, without breaking the rules.")
    parts.append(ANSWER_FORMAT)
    return "\n\n".join(parts)


def task_view(conv: Conversation, before: int | None = None) -> str:
    """What the simulated participant knows: the task and which shards are shared.

    Args:
        conv: The conversation.
        before: Show the state before the turn with this index (default: now).
    """
    revealed = {i for t in conv.turns if t.role == "user" and (before is None or t.index < before) for i in t.shards}
    shared = [s for s in conv.shards if s.id in revealed]
    left = [s for s in conv.shards if s.id not in revealed]
    lines = [f"Your whole task (the assistant has not seen it): {full_instruction(conv.item, conv.condition)}", ""]
    lines.append("Shards already shared:")
    lines += [f"[{s.id}] {s.text}" for s in shared] or ["(none)"]
    lines.append("Shards not yet shared:")
    lines += [f"[{s.id}] {s.text}" for s in left] or ["(none)"]
    return "\n".join(lines)


def transcript(conv: Conversation) -> str:
    """The conversation as the participant saw it (their own words, the assistant's replies)."""
    lines = []
    for t in conv.turns:
        if t.role == "user":
            lines.append(f"You: {t.content}")
        elif t.role == "assistant" and t.error is None and t.content:
            lines.append(f"Assistant: {t.content}")
    return "\n\n".join(lines)


def last_reply(conv: Conversation) -> str:
    """The assistant's last reply (empty when there is none)."""
    for t in reversed(conv.turns):
        if t.role == "assistant" and t.error is None:
            return t.content
    return ""


@dataclass(frozen=True)
class UserMove:
    """What a simulator wants to send next."""

    text: str
    """The message."""

    shards: tuple[int, ...] = ()
    """Shard ids the simulator says the message reveals."""

    satisfied: bool = False
    """The simulator says its task is done; nothing is sent and the conversation ends."""

    raw: str | None = None
    """The simulator model's output as received."""

    problems: tuple[str, ...] = field(default_factory=tuple)
    """Drift found while reading the output (``unparsable``, ``empty``)."""


class Simulator(ABC):
    """Writes a simulated participant's messages after the opening."""

    kind: ClassVar[str]
    """``scripted`` or ``llm``."""

    model: str | None = None
    """The litellm model string it calls (None for the scripted simulator)."""

    model_id: str | None = None
    """The study's id for that model, when it is one of the study's models."""

    persona: str | None = None
    """The persona it follows."""

    prompt_version: str = SCRIPTED_VERSION
    """Version of its rules or prompt."""

    def record(self) -> dict[str, Any]:
        """What is stored in each simulated participant's ``simulator`` field."""
        return {
            "kind": self.kind,
            "model": self.model or self.kind,
            "model_id": self.model_id,
            "prompt_version": self.prompt_version,
            "persona": self.persona,
        }

    @abstractmethod
    async def next_move(self, conv: Conversation) -> UserMove:
        """The next message of the participant, given the conversation so far.

        Raises:
            lab.llm.ModelError: the simulator model could not be reached.
        """


class ScriptedSimulator(Simulator):
    """Shards verbatim and in order; in ON_REQUEST the shard the assistant asked for.

    In ON_REQUEST, a question it holds no shard for gets "I don't know." before the
    go-ahead; a reply that asks nothing gets the go-ahead alone.
    """

    kind = "scripted"

    async def next_move(self, conv: Conversation) -> UserMove:
        """See :meth:`Simulator.next_move`."""
        remaining = conv.remaining
        if conv.reveal == "ON_REQUEST":
            reply = last_reply(conv)
            shard = requested_shard(reply, remaining)
            if shard is not None:
                return UserMove(shard.text, (shard.id,))
            return UserMove(f"{DONT_KNOW} {GO_AHEAD}" if questions(reply) else GO_AHEAD)
        if remaining:
            return UserMove(remaining[0].text, (remaining[0].id,))
        return UserMove("", satisfied=True)


class LLMSimulator(Simulator):
    """A model plays the participant with the lab's prompt; its JSON move is parsed, not trusted.

    Args:
        model: litellm model string.
        params: Call parameters (default :data:`DEFAULT_PARAMS`).
        model_id: The study's id for the model, if any.
        persona: A persona to follow.
        timeout: Seconds one call may take.
    """

    kind = "llm"
    prompt_version = SIMULATOR_PROMPT_VERSION

    def __init__(
        self,
        model: str,
        params: dict[str, Any] | None = None,
        *,
        model_id: str | None = None,
        persona: str | None = None,
        timeout: float = llm.DEFAULT_TIMEOUT,
    ) -> None:
        self.model = model
        self.params = dict(params) if params else dict(DEFAULT_PARAMS)
        self.model_id = model_id
        self.persona = persona
        self.timeout = timeout

    def record(self) -> dict[str, Any]:
        """See :meth:`Simulator.record`; adds the call parameters."""
        return super().record() | {"params": self.params}

    def messages(self, conv: Conversation) -> list[dict[str, str]]:
        """The chat messages sent to the simulator model."""
        user = f"{task_view(conv)}\n\nThe conversation so far:\n\n{transcript(conv)}\n\nWrite your next message."
        return [
            {"role": "system", "content": simulator_instructions(conv, self.persona)},
            {"role": "user", "content": user},
        ]

    async def next_move(self, conv: Conversation) -> UserMove:
        """See :meth:`Simulator.next_move`."""
        assert self.model is not None
        result = await llm.acomplete(self.model, self.messages(conv), dict(self.params), timeout=self.timeout)
        return parse_move(result.text)


def _shard_ids(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            out.append(v)
        elif isinstance(v, str) and v.strip().lstrip("[").rstrip("]").isdigit():
            out.append(int(v.strip().lstrip("[").rstrip("]")))
    return out


def parse_move(output: str) -> UserMove:
    """Read a simulator model's output: ``{"shard": …, "message": …, "satisfied": …}``.

    Output without such an object is sent as the message itself and marked
    ``unparsable``; a list of shards is kept as said (the runner sends at most one).
    """
    data = parse_json_object(output)
    if data is None or not isinstance(data.get("message", ""), str):
        return UserMove(output.strip(), (), False, output, ("unparsable",))
    message = str(data.get("message") or "").strip()
    shards = tuple(_shard_ids(data.get("shard", data.get("shards"))))
    satisfied = data.get("satisfied") is True
    problems = ("empty",) if not message and not satisfied else ()
    return UserMove(message, shards, satisfied, output, problems)
