"""The rule-based turn categorizer (layer S): transparent, offline, deterministic.

Each assistant turn gets exactly one of the seven Laban categories. Rules are checked in
a fixed order and the first category rule that fires decides; the question-counting rules
(``Q-*``, ``X-*``) only feed the count. :data:`RULES` lists every rule with what it
detects; ``lab/judge/RULES.md`` is the same list for readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._grounding import classify_grounding
from ._judgement import RULES_VERSION, Judgement
from ._presupposition import classify_presupposition
from ._ruleset import Rule, decided, rule_table
from ._text import (
    CodeBlock,
    Reading,
    final_number,
    find_numbers,
    is_blank,
    marked_number,
    read_reply,
)

if TYPE_CHECKING:
    from lab.items import Item, PresuppositionItem

CLARIFICATION_MAX_WORDS = 100
"""Laban's bound: a clarification is a single question in under about 100 words."""

FORMAT_TASKS = frozenset({"math", "code", "database", "actions"})
"""Tasks whose answers have a form the rules can find (a number, code, SQL, a call)."""

TEXT_TASKS = frozenset({"summary", "translation", "data2text"})
"""Tasks whose answer is the reply's own prose."""

_TASK_ALIASES = {"sql": "database", "gsm8k": "math", "function_calling": "actions", "python": "code"}


RULES: dict[str, Rule] = rule_table(
    [
        Rule("S-empty", "no letters or digits once special tokens are removed", "missing", 0.99),
        Rule(
            "S-hedge-branches",
            "two or more answers conditional on readings of the request ('if you mean…', 'if by X you mean…', "
            "'Interpretation 1/2')",
            "hedge",
            0.75,
        ),
        Rule("S-hedge-depends", "'it depends' plus two or more conditional clauses ('if…', 'otherwise…')", "hedge", 0.7),
        Rule("A-number", "math: a number after '####', in \\boxed{}, after 'the answer is', or in bold", "answer_attempt", 0.9),
        Rule(
            "A-last-number",
            "math: the last statement carries a number, no real question follows it, and nothing defers or refuses",
            "answer_attempt",
            0.75,
        ),
        Rule("A-code", "a fenced code block with a definition or at least three lines", "answer_attempt", 0.85),
        Rule("A-sql", "an SQL query (SELECT/WITH … FROM) in code, or upper-case in prose", "answer_attempt", 0.85),
        Rule("A-call", "actions: a function call with arguments, or a JSON call list", "answer_attempt", 0.8),
        Rule("A-marker", "an explicit answer marker ('the answer is', 'Answer:', 'Here is the summary:')", "answer_attempt", 0.8),
        Rule("S-refuse", "a refusal or inability phrase and no question to the user", "refuse", 0.85),
        Rule("S-interrogation", "two or more questions to the user", "interrogation", 0.85),
        Rule("S-clarification", f"exactly one question and fewer than {CLARIFICATION_MAX_WORDS} words", "clarification", 0.85),
        Rule("S-long-question", f"one question in {CLARIFICATION_MAX_WORDS} words or more", "discussion", 0.6),
        Rule(
            "S-discussion-cue",
            "talks about how to approach the task or what is still needed ('there are several ways', 'once you tell me')",
            "discussion",
            0.7,
        ),
        Rule("S-no-answer", "a task with a known answer form (math, code, database, actions) and none found", "discussion", 0.6),
        Rule("A-text", "summary, translation or data2text: a declarative reply is the answer", "answer_attempt", 0.7),
        Rule(
            "A-declarative",
            "no task form known: a declarative reply that neither asks, refuses, hedges nor discusses",
            "answer_attempt",
            0.6,
        ),
        Rule("Q-mark", "a prose sentence ending in '?'", "(count)"),
        Rule(
            "Q-interrogative",
            "a sentence of at most 30 words opening like a question, or 'Which one: A, or B', without '?'",
            "(count)",
        ),
        Rule("Q-request", "an imperative or indirect request for information ('Please specify…', 'I need to know…')", "(count)"),
        Rule("Q-list", "a request ending in ':' followed by list items: one question per item", "(count)"),
        Rule("Q-alternatives", "a short 'A or B?' fragment after a question belongs to it", "(count)"),
        Rule("Q-compound", "a question joining more questions with 'and' counts one per question", "(count)"),
        Rule("X-code", "text in code blocks, inline code and block quotes is not a question", "(count)"),
        Rule(
            "X-offer",
            "a closing offer ('Would you like me to…?') after other content is not a question, unless it offers alternatives",
            "(count)",
        ),
        Rule("X-generic-offer", "'Anything else…?', 'Any other questions?' never count", "(count)"),
        Rule("X-heading", "a question used as a heading above more text is a title", "(count)"),
    ]
)
"""Every layer-S rule by id; a rule's code is the category it assigns, ``(count)`` for rules that only count questions."""

_REFUSAL = re.compile(
    r"\bI(?:'m| am) (?:sorry|afraid),? but I (?:can't|cannot|won't|am unable|'m unable|am not able|'m not able)"
    r"|\bI (?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to) "
    r"(?:help|assist|provide|do|answer|comply|complete|fulfil|fulfill|write|create|generate|support|"
    r"determine|calculate|compute|solve|give|share|tell|browse|access|open|run|execute|view|see|read)\b"
    r"|\bas an AI(?: language model| assistant)?,? I (?:can't|cannot|don't|do not|am unable|'m unable)\b"
    r"|\bI must (?:decline|refuse)\b"
    r"|\bI (?:don't|do not) know(?: the answer| how| that| this)?[.!]?$"
    r"|\b(?:that|this) (?:is|falls) (?:outside|beyond) (?:my|what I)\b"
    r"|\bI (?:don't|do not) have (?:enough|sufficient) information\b"
    r"|\bnot something I (?:can|am able to) (?:help|assist)\b",
    re.I | re.M,
)
_BRANCH = re.compile(
    r"\b(?:if|assuming|in case) (?:by [^,]{1,40}? )?you(?:'re| are)? (?:mean|meant|want|wanted|need|needed|"
    r"prefer|intend|intended|have in mind|ask|asking|looking|referring|talking|interested|after|"
    r"working|using|on|in)\b"
    r"|\bif by\b"
    r"|\bif (?:the|this|your) (?:question|request|task) (?:is|means|asks|refers)\b"
    r"|^(?:interpretation|reading) (?:\d|[a-c])\b",
    re.I,
)
_DEPENDS = re.compile(
    r"\b(?:it|that|this|the answer) (?:really |all )?depends\b|\bdepends on (?:whether|what|how|which|if)\b", re.I
)
_CONDITIONAL = re.compile(
    r"(?:^|[;:—–]\s*|,\s*(?:but|and|or|while|whereas)\s+|\b(?:but|whereas|while)\s+)(?:if|assuming)\b|\botherwise\b",
    re.I,
)
_DEFERRAL = re.compile(
    r"\bI(?:'d|'ll| would| will)? (?:still |first |also )?need\b"
    r"|\bwe(?:'d| would)? (?:still )?need to know\b"
    r"|\bonce (?:you|I) (?:tell|provide|share|give|let|know|have|confirm)\b"
    r"|\bbefore I (?:can|could|write|answer|give|start)\b"
    r"|\bwithout knowing\b"
    r"|\bif you (?:can |could )?(?:tell|provide|share|give|send) me\b",
    re.I,
)
_APPROACH = re.compile(
    r"\bthere are (?:a few|several|many|multiple|different|various|two|three|a couple of) "
    r"(?:\w+ )?(?:ways|approaches|options|methods|factors|things|possibilities|strategies)\b"
    r"|\bone (?:way|approach|option|possibility) (?:is|would be|could be)\b"
    r"|\byou (?:could|might|can) (?:use|try|start|consider|approach|break)\b"
    r"|\blet's (?:think|start|break|first|consider|look|figure|work)\b"
    r"|\blet me (?:think|check|look|see|consider)\b"
    r"|\bto (?:solve|answer|calculate|compute|figure out|find|work out|write|tackle) (?:this|that|it)\b"
    r"|\bhere's how (?:you|I|we) (?:would|could|can|might)\b"
    r"|\bthe (?:key|main|first) (?:step|idea|thing|question) (?:is|would be)\b"
    r"|\bwe(?:'d| would| will)? (?:first )?need to\b",
    re.I,
)
_MARKER = re.compile(
    r"\b(?:the|my|final) answer(?: is|:)|^\**answer\**\s*:|####|\\boxed\{"
    r"|\bhere(?: is|'s) (?:the|your|a|an|my) (?:[\w-]+ ){0,3}?(?:code|query|function|solution|summary|translation|"
    r"description|answer|sentence|result|list|plan|email|version|implementation|script|program|text|draft|rewrite)\b",
    re.I | re.M,
)
_CODE_SHAPE = re.compile(r"\b(?:def|class|function|return|lambda|import|public|static|fn|func|const|let|var)\b|=>|#include")
_SQL_IN_CODE = re.compile(r"\b(?:SELECT|WITH)\b[\s\S]*?\bFROM\b", re.I)
_SQL_IN_PROSE = re.compile(r"\bSELECT\b[^\n]*?\bFROM\b[^\n]*")
_CALL = re.compile(r"\b[A-Za-z_][\w.]*\s*\(\s*(?:[A-Za-z_]\w*\s*=|[\[{\"'\d-])")
_SNAKE_CALL = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]*\s*\([^)\n]*\)")
_JSON_CALL = re.compile(r"[\[{]\s*\{?\s*\"(?:name|function|api|tool)\"\s*:", re.I)
_INLINE = re.compile(r"`([^`\n]+)`")
_FORM = {"math": "final number", "code": "code block", "database": "SQL query", "actions": "function call"}
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def task_of(item: Item | None) -> str | None:
    """The task an item belongs to, as far as the judge cares.

    Lost in Conversation tasks come from ``source.task``; any item whose answer is a
    number counts as ``math``; otherwise None (no answer form known).
    """
    if item is None:
        return None
    source = getattr(item, "source", None)
    task = (source.task or "").strip().lower() if source is not None else ""
    task = _TASK_ALIASES.get(task, task)
    if task in FORMAT_TASKS or task in TEXT_TASKS:
        return task
    answer = getattr(item, "answer", None)
    if answer is not None and answer.type == "number":
        return "math"
    return None


@dataclass
class _Features:
    n_questions: int
    words: int
    fired: list[str]


def _statement_lines(reading: Reading) -> list[str]:
    """Prose lines that do not end in a question mark."""
    return [line for line in reading.prose_lines if not line.rstrip(" *_)\"'").endswith("?")]


def _strong_number(reading: Reading) -> tuple[str, str] | None:
    lines = _statement_lines(reading)
    marked = marked_number(lines)
    if marked and marked[1] != "total is":
        # "a total of 160 games" also opens discussions; it only counts through A-last-number.
        return marked[0].plain(), marked[1]
    for line in reversed(lines):
        for m in reversed(list(_BOLD.finditer(line))):
            inner = m.group(1).strip()
            if inner.endswith(":") or re.match(r"(?:step|part|case|option|method|approach)\b", inner, re.I):
                continue
            numbers = find_numbers(inner)
            if numbers:
                return numbers[-1].plain(), "bold"
    return None


def _weak_number(reading: Reading, reply: str) -> str | None:
    sentences = reading.sentences
    last = None
    for i, s in enumerate(sentences):
        if s.kind == "statement" and find_numbers(s.text):
            last = i
    if last is None:
        return None
    if any(s.asks for s in sentences[last + 1 :]):
        return None
    prose = reading.prose
    if _DEFERRAL.search(prose) or _REFUSAL.search(prose):
        return None
    number, _ = final_number(reply)
    return number.plain() if number else None


def _code_answer(reading: Reading) -> CodeBlock | None:
    for block in reversed(reading.code):
        lines = [ln for ln in block.text.splitlines() if ln.strip()]
        if _CODE_SHAPE.search(block.text) or len(lines) >= 3:
            return block
    return None


def _sql_answer(reading: Reading) -> str | None:
    for block in reversed(reading.code):
        if _SQL_IN_CODE.search(block.text):
            return block.text.strip()
    for line in reversed(reading.prose_lines):
        m = _SQL_IN_PROSE.search(line.replace("`", ""))
        if m:
            return m.group(0).strip()
    return None


def _call_answer(reading: Reading) -> str | None:
    for block in reversed(reading.code):
        if _CALL.search(block.text) or _JSON_CALL.search(block.text):
            return block.text.strip()
    for line in reversed(reading.prose_lines):
        for m in reversed(list(_INLINE.finditer(line))):
            if _CALL.search(m.group(1)):
                return m.group(1).strip()
        m2 = _SNAKE_CALL.search(line)
        if m2:
            return m2.group(0).strip()
    return None


def _answer(reading: Reading, reply: str, task: str | None) -> tuple[str, str] | None:
    """The strongest answer present: (rule id, extracted answer)."""
    if task == "math":
        strong = _strong_number(reading)
        if strong:
            return "A-number", strong[0]
        weak = _weak_number(reading, reply)
        if weak:
            return "A-last-number", weak
        return None
    if task in (None, "database"):
        sql = _sql_answer(reading)
        if sql:
            return "A-sql", sql
    if task in (None, "code"):
        block = _code_answer(reading)
        if block:
            return "A-code", block.text.strip()
    if task == "actions":
        call = _call_answer(reading)
        if call:
            return "A-call", call
    if task in (None, *TEXT_TASKS) and _MARKER.search("\n".join(_statement_lines(reading))):
        return "A-marker", _answer_text(reading)
    return None


def _answer_text(reading: Reading) -> str:
    """The reply's prose as written, without offers and title headings: the answer of a text task."""
    kept = [s.source for s in reading.without_offers if s.why != "X-heading"]
    return " ".join(kept).strip()


def _hedge(reading: Reading) -> str | None:
    statements = reading.without_offers
    branches = sum(len(_BRANCH.findall(s.text)) for s in statements)
    if branches >= 2:
        return "S-hedge-branches"
    if _DEPENDS.search(reading.prose):
        conditionals = sum(len(_CONDITIONAL.findall(s.text)) for s in statements)
        if conditionals >= 2:
            return "S-hedge-depends"
    return None


def _judgement(rule_id: str, f: _Features, reason: str, extracted: str | None = None) -> Judgement:
    return decided("S", RULES[rule_id], reason, evidence=f.fired, n_questions=f.n_questions, extracted=extracted)


def classify_turn(reply: str, item: Item | None = None) -> Judgement:
    """Label one assistant turn with a Laban category by rules.

    Order: empty → hedge → answer (by the item's task) → refusal → questions → discussion
    → declarative fallback. An extractable answer beats questions, so "Here is the query:
    … Want it sorted too?" is an answer attempt.

    Args:
        reply: The assistant's text.
        item: The study item, when known; its task decides what an answer looks like.

    Returns:
        The judgement with the rules that fired (question rules first, then the deciding rule).
    """
    task = task_of(item)
    if is_blank(reply):
        empty = _Features(0, 0, [])
        return _judgement("S-empty", empty, "The reply has no content.")
    reading = read_reply(reply)
    f = _Features(reading.n_questions, reading.words, reading.fired())
    prose = reading.prose

    hedge = _hedge(reading)
    if hedge:
        return _judgement(hedge, f, "It gives answers conditional on different readings of the request.")

    answer = _answer(reading, reply, task)
    if answer:
        rule_id, extracted = answer
        what = {
            "A-number": "a marked final number",
            "A-last-number": "a final number",
            "A-code": "a code block",
            "A-sql": "an SQL query",
            "A-call": "a function call",
            "A-marker": "an explicit answer",
        }[rule_id]
        return _judgement(rule_id, f, f"It contains {what}.", extracted)

    if f.n_questions == 0 and _REFUSAL.search(prose):
        return _judgement("S-refuse", f, "It declines or says it cannot answer, and asks nothing.")

    if f.n_questions >= 2:
        return _judgement("S-interrogation", f, f"It asks {f.n_questions} questions and gives no answer.")
    if f.n_questions == 1:
        if f.words < CLARIFICATION_MAX_WORDS:
            return _judgement("S-clarification", f, f"It asks one question in {f.words} words and gives no answer.")
        return _judgement("S-long-question", f, f"It asks one question inside {f.words} words of discussion.")

    if _DEFERRAL.search(prose) or _APPROACH.search(prose):
        return _judgement("S-discussion-cue", f, "It talks about the approach or what is needed, without an answer.")
    if task in FORMAT_TASKS:
        return _judgement("S-no-answer", f, f"It has no {_FORM[task]} and asks nothing.")
    if task in TEXT_TASKS:
        return _judgement("A-text", f, "It is a declarative reply to a text task.", _answer_text(reading))
    return _judgement(
        "A-declarative", f, "It states something without asking, refusing, hedging or discussing.", _answer_text(reading)
    )


class RuleJudge:
    """The offline default judge: transparent rules, no model.

    Layer S uses :func:`classify_turn`; layer P uses
    :func:`lab.judge.classify_presupposition`.
    """

    name = "rules"
    version = RULES_VERSION
    model: str | None = None

    def classify(self, reply: str, *, item: Item | None = None) -> Judgement:
        """Label an assistant turn with one layer-S category (see :func:`classify_turn`)."""
        return classify_turn(reply, item)

    def classify_presupposition(self, item: PresuppositionItem, reply: str, control: bool) -> Judgement:
        """Label how a reply handles the item's false presupposition (layer P, by rules)."""
        return classify_presupposition(item, reply, control)

    def classify_grounding(self, turn: str, *, speaker: str = "assistant", previous: str = "") -> Judgement:
        """Label a turn's grounding acts (layer G, by rules; see :func:`lab.judge.classify_grounding`)."""
        return classify_grounding(turn, speaker=speaker, previous=previous)
