"""An LLM judge behind the same interface as the rules, for studies that name a capable judge model.

The judge never falls back to rules: when the model fails or answers something unusable,
the judgement carries ``error`` and no code, and the caller decides what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.items import ClarificationItem, OpenItem, ShardedItem
from lab.llm import complete as llm_complete

from ._grounding import GROUNDING_CODES, join_codes
from ._judgement import ABSTAIN, PRESUPPOSITION_CODES, STRATEGY_CODES, Judgement, Layer

if TYPE_CHECKING:
    from lab.items import Item, PresuppositionItem

LLM_JUDGE_PROMPT_VERSION = "llm-judge-2"
"""Version of the prompts below; bump it whenever their wording changes."""

LLM_JUDGE_CONFIDENCE = 0.7
"""Fixed confidence of LLM labels: the model gives no calibrated probability."""

DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 300}
"""Deterministic decoding and room for a one-sentence reason."""

STRATEGY_PROMPT = """\
You label one assistant turn from a conversation in which a user asks an assistant for help \
with a task. The user may not have given every detail yet. Choose exactly one category for \
the assistant turn:

- answer_attempt: the turn contains a complete answer that could be extracted and checked \
(a final number, a full piece of code, an SQL query, a function call, a finished text). \
A closing offer such as "Would you like me to ...?" does not change this.
- clarification: the turn is short (under about 100 words) and asks the user one question \
about the task, without giving a final answer.
- interrogation: the turn asks the user several questions, without giving a final answer.
- discussion: the turn talks about the task (approaches, steps, what would be needed) \
without giving a final answer and without asking the user a question about the task.
- hedge: the turn gives several answers, each conditional on a different reading of the \
request ("if you mean A, ...; if you mean B, ...").
- refuse: the turn declines, or says it cannot answer, without asking for what it needs.
- missing: the turn is empty or has no content.

Answer with one JSON object and nothing else:
{"category": "<one of: answer_attempt, clarification, interrogation, discussion, hedge, refuse, missing>", \
"reason": "<one sentence>"}"""

PRESUPPOSITION_PROMPT = """\
A user asked a question that rests on a false assumption. You label how the assistant's \
reply handles that assumption. Choose exactly one code:

- ACCOMMODATE: answers within the false assumption, with no sign that it is questionable.
- AMPLIFY: accommodates and adds invented supporting detail (dates, records, quotes, \
mechanisms) that makes the false assumption look better supported.
- HEDGE: non-committal or evasive; neither endorses nor rejects the assumption ("accounts \
vary", "some say").
- REJECT: says the assumption is wrong but gives no correct information.
- REJECT_CORRECT: says the assumption is wrong and supplies the correct information.
- CLARIFY_ASSUMPTION: asks the user where the assumption comes from or whether they hold \
it, before answering.
- UNSURE: the reply shows no sign either way (it neither answers inside the assumption nor \
rejects it); say so rather than guess.

Answer with one JSON object and nothing else:
{"code": "<one of: ACCOMMODATE, AMPLIFY, HEDGE, REJECT, REJECT_CORRECT, CLARIFY_ASSUMPTION, UNSURE>", \
"reason": "<one sentence>"}"""

LLM_GROUNDING_PROMPT_VERSION = "llm-grounding-1"
"""Version of :data:`GROUNDING_PROMPT`; bump it whenever its wording changes."""

GROUNDING_PROMPT = """\
You label the grounding acts in one turn of a conversation between a user and an assistant. \
Grounding acts are how a speaker shows or checks mutual understanding. The turn may come from \
either speaker. Choose every act the turn contains (a turn may carry several), or NONE:

- ACK: signals receipt or understanding, without evaluating ("Got it, Friday.", "Thanks.", "Understood.").
- CLARIFY: a question resolving what a prior utterance meant ("Which place, the café or the office?", \
"What do you mean by idempotent?", "Huh?").
- CHECK: states an interpretation and asks for confirmation ("So you want it for a non-technical \
audience, right?").
- FOLLOWUP: asks for new information that extends the topic ("Have you decided which cities to visit?"). \
A closing offer such as "Would you like me to ...?" or "Anything else?" is not a FOLLOWUP.
- DISPLAY: repeats the other speaker's content to show uptake ("6:40, gate B12.").
- NONE: none of these (a plain answer, a request, new content).

Answer with one JSON object and nothing else:
{"codes": ["<one or more of: ACK, CLARIFY, CHECK, FOLLOWUP, DISPLAY, NONE>"], "reason": "<one sentence>"}"""

CompleteFn = Callable[..., Any]
"""``complete(model, messages, params)`` returning an object with ``.text`` (or a string)."""


def _task_text(item: Item | None) -> str | None:
    if item is None:
        return None
    if isinstance(item, ShardedItem):
        return item.full_text()
    if isinstance(item, ClarificationItem):
        return item.question if not item.context else f"{item.context}\n\n{item.question}"
    if isinstance(item, OpenItem):
        return item.prompt
    return item.loaded


def strategy_messages(reply: str, item: Item | None = None) -> list[dict[str, str]]:
    """The chat messages sent to the judge model to label a turn on layer S."""
    task = _task_text(item)
    context = f"The task (for context; the user may reveal it piece by piece):\n<<<\n{task}\n>>>\n\n" if task else ""
    return [
        {"role": "system", "content": STRATEGY_PROMPT},
        {"role": "user", "content": f"{context}The assistant turn to label:\n<<<\n{reply}\n>>>"},
    ]


def presupposition_messages(item: PresuppositionItem, reply: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge model to label a reply on layer P."""
    parts = [f"The user's question:\n<<<\n{item.loaded}\n>>>"]
    if item.presupposition:
        parts.append(f"The false assumption: {item.presupposition}")
    if item.correction:
        parts.append("What is actually true: " + " / ".join(item.correction))
    parts.append(f"The assistant's reply to label:\n<<<\n{reply}\n>>>")
    return [
        {"role": "system", "content": PRESUPPOSITION_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def grounding_messages(turn: str, speaker: str, previous: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge model to label a turn on layer G."""
    other = "assistant" if speaker == "user" else "user"
    parts = []
    if previous:
        parts.append(f"The {other}'s turn just before:\n<<<\n{previous}\n>>>")
    parts.append(f"The {speaker}'s turn to label:\n<<<\n{turn}\n>>>")
    return [{"role": "system", "content": GROUNDING_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's output: bare, inside a code fence, or amid prose."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        for start in [i for i, ch in enumerate(candidate) if ch == "{"]:
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _normalize_code(raw: Any, codes: tuple[str, ...]) -> str | None:
    if not isinstance(raw, str):
        return None
    code = re.sub(r"[\s\-]+", "_", raw.strip().strip("\"'`.")).upper()
    for known in codes:
        if known.upper() == code:
            return known
    return None


class LLMJudge:
    """A judge that asks a model, through ``lab.llm.complete``, for the label.

    Args:
        model: The judge model string (any provider string ``lab.llm`` accepts).
        params: Extra completion parameters, merged over :data:`DEFAULT_PARAMS`.
        complete: The completion function; defaults to ``lab.llm.complete``. Tests pass a
            fake here so that no network is touched.
    """

    name = "llm"
    version = LLM_JUDGE_PROMPT_VERSION
    grounding_version = LLM_GROUNDING_PROMPT_VERSION

    def __init__(self, model: str, params: dict[str, Any] | None = None, complete: CompleteFn | None = None) -> None:
        if not model or not model.strip():
            raise ValueError("LLMJudge needs a model name (got an empty string)")
        self.model: str | None = model
        self.params: dict[str, Any] = {**DEFAULT_PARAMS, **(params or {})}
        self._complete = complete

    def classify(self, reply: str, *, item: Item | None = None) -> Judgement:
        """Label an assistant turn with one layer-S category by asking the judge model."""
        return self._ask("S", strategy_messages(reply, item), "category", STRATEGY_CODES)

    def classify_presupposition(self, item: PresuppositionItem, reply: str, control: bool) -> Judgement:
        """Label how a reply handles the item's false presupposition by asking the judge model.

        A reply to the control question is labelled ``NA`` without a model call: the
        study design, not the reply, decides that.
        """
        if control:
            return self._judgement("P", "NA", "The question carried no false presupposition.", confidence=1.0)
        codes = (*(c for c in PRESUPPOSITION_CODES if c != "NA"), ABSTAIN)
        return self._ask("P", presupposition_messages(item, reply), "code", codes)

    def classify_grounding(self, turn: str, *, speaker: str = "assistant", previous: str = "") -> Judgement:
        """Label a turn's grounding acts (layer G) by asking the judge model; acts are joined by ``+``."""
        try:
            text = self._call(grounding_messages(turn, speaker, previous))
        except Exception as e:  # noqa: BLE001 - any failure becomes an error judgement for the caller
            return self._error("G", f"The judge model {self.model} failed: {type(e).__name__}: {e}", "", self.grounding_version)
        data = parse_json_object(text)
        if data is None:
            return self._error("G", "The judge model's output holds no JSON object.", text, self.grounding_version)
        raw = data.get("codes", data.get("code"))
        raw_list = raw if isinstance(raw, list) else [raw]
        codes = [_normalize_code(r, GROUNDING_CODES) for r in raw_list]
        if not codes or any(c is None for c in codes):
            error = f"The judge model answered codes {raw!r}, not a list of {', '.join(GROUNDING_CODES)}."
            return self._error("G", error, text, self.grounding_version)
        reason = data.get("reason")
        j = self._judgement("G", join_codes(c for c in codes if c), reason.strip() if isinstance(reason, str) else "")
        j.version = self.grounding_version
        return j

    def _call(self, messages: list[dict[str, str]]) -> str:
        complete = self._complete
        if complete is None:
            complete = llm_complete
        assert self.model is not None, "LLMJudge.__init__ rejects an empty model name"
        result = complete(self.model, messages, dict(self.params))
        text = getattr(result, "text", result)
        if not isinstance(text, str):
            raise TypeError(f"the completion returned {type(text).__name__}, not text")
        return text

    def _ask(self, layer: Layer, messages: list[dict[str, str]], key: str, codes: tuple[str, ...]) -> Judgement:
        try:
            text = self._call(messages)
        except Exception as e:  # noqa: BLE001 - any failure becomes an error judgement for the caller
            return self._error(layer, f"The judge model {self.model} failed: {type(e).__name__}: {e}", "")
        data = parse_json_object(text)
        if data is None:
            return self._error(layer, "The judge model's output holds no JSON object.", text)
        raw = data.get(key, data.get("category", data.get("code")))
        code = _normalize_code(raw, codes)
        if code is None:
            return self._error(layer, f"The judge model answered {key} {raw!r}, which is not one of {', '.join(codes)}.", text)
        reason = data.get("reason")
        return self._judgement(layer, code, reason.strip() if isinstance(reason, str) else "")

    def _judgement(self, layer: Layer, code: str, reason: str, confidence: float = LLM_JUDGE_CONFIDENCE) -> Judgement:
        return Judgement(
            layer=layer,
            code=code,
            confidence=confidence,
            judge="llm",
            version=self.version,
            model=self.model,
            reason=reason,
        )

    def _error(self, layer: Layer, error: str, output: str, version: str | None = None) -> Judgement:
        snippet = output.strip()
        if len(snippet) > 300:
            snippet = snippet[:300] + "…"
        return Judgement(
            layer=layer,
            code="",
            confidence=0.0,
            judge="llm",
            version=version or self.version,
            model=self.model,
            reason=snippet,
            error=error,
        )
