"""Reading an assistant reply: code blocks, prose sentences, questions and numbers.

Everything here is plain pattern matching so that every decision can be explained by the
rule that made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# Inline code stands in prose as one word; the private-use character keeps it apart from a real "CODE".
_CODE_PLACEHOLDER = "CODE\ue000"
_SPECIAL_TOKENS = re.compile(r"<\|[^|>]*\|>|</?s>|<pad>|<unk>")
_HEADING = re.compile(r"^(#{1,6}\s+.+|\*\*[^*]+\*\*:?|__[^_]+__:?)$")
_BULLET = re.compile(r"^([-*+•]|\d{1,2}[.)])\s+")
# Abbreviations whose dot must not end a sentence.
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|vs|etc(?=\.\s+[a-z])|approx|Mr|Mrs|Dr)\.", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_DECOR = "*_\"'“”‘’)]»` "

_WH = r"(?:what|which|who|whom|whose|when|where|why|how)"
_AUX = r"(?:do|does|did|is|are|was|were|can|could|would|will|should|shall|may|might|have|has)"
_SUBJECT = r"(?:you|it|this|that|these|those|the|there|we|i|your|they|she|he|each|any|a|an)"
_WH_QUESTION = re.compile(
    rf"^{_WH}\s+(?:{_AUX}|kind|type|sort|format|language|version|many|much|long|often|exactly)\b"
    rf"|^{_WH}\s+(?:[\w'-]+\s+){{1,2}}{_AUX}\s+{_SUBJECT}\b",
    re.I,
)
# Without a question mark, "Do the following" and "Have a look" are instructions: only an
# auxiliary followed by a subject that cannot start an imperative opens a question.
_AUX_QUESTION = re.compile(
    r"^(?:(?:do|did|have)(?:n't)?\s+(?:you|we|i|they)"
    r"|(?:does|did|has)(?:n't)?\s+(?:it|this|that|she|he|the|your)"
    r"|(?:is|are|was|were|can|could|would|will|should|shall|may|might)(?:n't)?\s+"
    r"(?:you|it|this|that|these|those|there|we|i|they|she|he|the|your))\b",
    re.I,
)
_NOT_A_QUESTION = re.compile(
    r"^(which is why|what is more|how is that for|should you (need|have|want|wish|require)|"
    r"were (it|you) (not|to))\b",
    re.I,
)
_INFO_REQUEST = re.compile(
    r"(?:^|[,;]\s*)(?:please\s+(?:let me know|tell me|specify|clarify|confirm|share|provide|give me|send me|indicate)"
    r"|let me know|tell me)\b"
    # A bare imperative is an instruction ("Specify the path with --input") unless it asks for a choice.
    r"|^(?:specify|clarify|confirm|share|provide|indicate)\s+(?:me\b|which|what|whether|if|how|where|when|who)\b"
    r"|^(?:i|we)(?:'d| would)? (?:need|have) to know\b",
    re.I,
)
_OFFER = re.compile(
    r"^(?:would you like|do you want|want me to|shall i|should i (?:also|go ahead|add|include|explain|expand)|"
    r"would it help|let me know if|feel free|hope (?:this|that|it) helps|"
    r"(?:does|do) (?:this|that|it|these) (?:help|make sense|work|answer|look)|is (?:this|that) (?:what you|helpful|clear)|"
    r"if you(?:'d| would) like|if you want,? i|if you need|happy to|i can also|i(?:'d| would) be happy)",
    re.I,
)
_GENERIC_OFFER = re.compile(
    # "…, a movie, or something else?" offers alternatives; only a bare "something else" is generic.
    r"\b(?:anything else|(?<!or )something else|any (?:other|further|more) questions|further questions|"
    r"other questions|more questions|else i can help|else you(?:'d| would) like)\b",
    re.I,
)
_COMPOUND = re.compile(rf"[,;]?\s+(?:and|also|plus)\s+(?:{_WH}\s|{_AUX}\s+{_SUBJECT}\b)", re.I)
# "I need a few details:" opens questions; "You'll need the following:" opens instructions.
_LIST_INTRO = re.compile(
    r"\b(?:I(?:'d| would)? need|I(?:'d| would) like to know|questions?|(?:some|a few|more|couple of) details"
    r"|clarif\w*|confirm)\b",
    re.I,
)

# "Which one: the film, or the book" asks for a choice without a question mark.
_CHOICE_FRAGMENT = re.compile(
    r"^(?:(?:in|for|from|at|on|of|by) )?(?:which|what)(?:\s+(?!(?:i|we|you|they|he|she|it)\b)[\w-]+){0,2}\s*:\s*\S.*\bor\b",
    re.I,
)

OFFER_CONTEXT_WORDS = 12
"""A closing offer is discounted only after at least this many words of other prose (or after a
code block): alone, "Would you like me to use Python or JavaScript?" is a real question."""

INTERROGATIVE_MAX_WORDS = 30
"""Longer sentences without a question mark are not taken for questions."""

ALTERNATIVES_MAX_WORDS = 6
"""A short "A or B?" fragment right after a question belongs to that question."""


@dataclass
class Sentence:
    """One prose sentence of a reply."""

    text: str
    """The sentence with list markers removed and inline code replaced by ``CODE``."""

    source: str
    """The sentence as written (inline code kept), for extracting answers."""

    line: int
    """Index of its line in the reply."""

    position: int
    """Index of the segment (sentence or code block) in reading order."""

    heading: bool = False
    """It forms a Markdown heading or a line that is entirely bold."""

    bullet: bool = False
    """It starts a list item."""

    kind: str = "statement"
    """``question``, ``interrogative``, ``request``, ``offer``, ``generic_offer``,
    ``list_intro`` or ``statement``."""

    counted: bool = False
    """It counts as a question put to the user."""

    why: str = ""
    """Id of the rule that decided whether it counts."""

    @property
    def offers(self) -> bool:
        """It offers more help ("Would you like…?", "Anything else?") rather than stating or asking something."""
        return self.kind in ("offer", "generic_offer")

    @property
    def asks(self) -> bool:
        """It counts as a question and is no offer: something the reply needs answered."""
        return self.counted and not self.offers


@dataclass
class CodeBlock:
    """A fenced code block."""

    language: str
    """The fence's language tag, lower-cased ("" when absent)."""

    text: str
    """The code between the fences."""

    position: int
    """Index of the segment (sentence or code block) in reading order."""


@dataclass
class Reading:
    """A reply split into code blocks and prose sentences, with its questions counted."""

    raw: str
    code: list[CodeBlock] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    """Block-quote lines, which are left out of the prose."""

    prose_lines: list[str] = field(default_factory=list)
    """Prose lines as written (Markdown kept), without code blocks and quotes."""

    ignored: list[str] = field(default_factory=list)
    """Ids of rules that kept text out of the question count without a sentence to show it."""

    @property
    def prose(self) -> str:
        """The prose without code blocks and quotes, one sentence per line."""
        return "\n".join(s.text for s in self.sentences)

    @property
    def words(self) -> int:
        """Words of prose (code blocks and quotes excluded)."""
        return count_words(self.prose)

    @property
    def questions(self) -> list[Sentence]:
        """Sentences that count as questions to the user."""
        return [s for s in self.sentences if s.counted]

    @property
    def n_questions(self) -> int:
        """Questions put to the user; a sentence joining questions with "and" counts each."""
        return sum(1 + len(_COMPOUND.findall(_plain(s.text))) if s.why == "Q-compound" else 1 for s in self.questions)

    @property
    def without_offers(self) -> list[Sentence]:
        """Sentences that state or ask something, offers of more help left out."""
        return [s for s in self.sentences if not s.offers]

    @property
    def statements(self) -> list[Sentence]:
        """Sentences that neither ask nor offer."""
        return [s for s in self.sentences if s.kind == "statement"]

    def fired(self) -> list[str]:
        """Ids of the question rules that decided something, in first-use order."""
        ids: list[str] = list(self.ignored)
        for s in self.sentences:
            if s.why and s.why not in ids:
                ids.append(s.why)
        return ids


def count_words(text: str) -> int:
    """Number of words (letters/digits runs) in a text."""
    return len(_WORD.findall(text))


def is_blank(reply: str | None) -> bool:
    """True when a reply has no letters or digits once special tokens are removed."""
    if not reply:
        return True
    return not re.search(r"\w", _SPECIAL_TOKENS.sub("", reply))


def _undecorate(text: str) -> str:
    return text.strip().strip(_DECOR).strip()


_LEAD_IN = re.compile(
    r"^(?:also|and|but|so|first|second|third|finally|lastly|then|next|plus|oh|ok|okay|great|sure|alright|one more thing)"
    r"(?:ly)?[,:]?\s+",
    re.I,
)
_ASKING_OFFER = re.compile(r"^(?:would you like|do you want|want me to|shall i|should i|would it help|let me know if)", re.I)


def _plain(text: str) -> str:
    return _LEAD_IN.sub("", _undecorate(text))


def _kind(text: str) -> str:
    plain = _plain(text)
    if _GENERIC_OFFER.search(plain):
        return "generic_offer"
    if _OFFER.match(plain):
        return "offer"
    if plain.endswith("?"):
        return "question"
    if _NOT_A_QUESTION.match(plain):
        return "statement"
    if count_words(plain) <= INTERROGATIVE_MAX_WORDS and _CHOICE_FRAGMENT.match(plain):
        return "interrogative"
    if plain.endswith(":"):
        if _INFO_REQUEST.search(plain) or _WH_QUESTION.match(plain) or _AUX_QUESTION.match(plain) or _LIST_INTRO.search(plain):
            return "list_intro"
        return "statement"
    if _INFO_REQUEST.search(plain):
        return "request"
    if count_words(plain) <= INTERROGATIVE_MAX_WORDS and (_WH_QUESTION.match(plain) or _AUX_QUESTION.match(plain)):
        return "interrogative"
    return "statement"


def read_reply(reply: str) -> Reading:
    """Split a reply into code blocks and prose sentences and decide which sentences ask.

    Questions are counted by these rules (ids as reported in judgements):

    - ``Q-mark``: a prose sentence ending in "?".
    - ``Q-interrogative``: a sentence of at most 30 words without "?" that opens like a
      question ("Which language do you want", "Do you need negatives handled"), or offers
      a choice after a colon ("Which one: the film, or the book").
    - ``Q-request``: an imperative or indirect request for information ("Please specify
      the table", "Let me know which year", "I need to know the rate").
    - ``Q-list``: a request ending in ":" followed by list items; each item is one question.
    - ``Q-alternatives``: a short "A or B?" fragment right after a question is part of it.
    - ``Q-compound``: a question joining further questions with "and" ("How many games,
      and how many points?") counts one per question.
    - ``X-code``: text in fenced or inline code and block quotes is never a question.
    - ``X-offer``: a closing offer ("Would you like me to…?", "Let me know if…") after
      other content is not a question to answer; alone, or offering alternatives ("…in
      Python or JavaScript?"), it is one.
    - ``X-generic-offer``: "Anything else…?", "Any other questions?" never count.
    - ``X-heading``: a heading or entirely bold line followed by more text is a title.
    """
    reading = Reading(raw=reply)
    text = _SPECIAL_TOKENS.sub("", reply).replace("\r\n", "\n").replace("’", "'")
    position = 0
    in_code = False
    fence = ""
    code_lines: list[str] = []
    language = ""
    for line_no, line in enumerate(text.split("\n")):
        m = _FENCE.match(line)
        if in_code:
            if m and m.group(1) == fence and not line.strip()[3:].strip():
                reading.code.append(CodeBlock(language, "\n".join(code_lines), position))
                position += 1
                in_code = False
            else:
                code_lines.append(line)
            continue
        if m:
            in_code, fence, code_lines = True, m.group(1), []
            language = line.strip()[3:].strip().lower()
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">"):
            reading.quoted.append(stripped)
            continue
        reading.prose_lines.append(stripped)
        heading = bool(_HEADING.match(stripped))
        bullet = bool(_BULLET.match(stripped))
        body = _BULLET.sub("", stripped)
        body = body.lstrip("#").strip() if body.startswith("#") else body
        spans = _INLINE_CODE.findall(body)
        body = _INLINE_CODE.sub(_CODE_PLACEHOLDER, body)
        body = _ABBREVIATIONS.sub(lambda mm: mm.group(0).replace(".", ""), body)
        for part in _SENTENCE_END.split(body):
            if not re.search(r"\w", part):
                continue
            part = part.strip()
            source = part
            while _CODE_PLACEHOLDER in source and spans:
                source = source.replace(_CODE_PLACEHOLDER, spans.pop(0), 1)
            text = part.replace(_CODE_PLACEHOLDER, "CODE")
            reading.sentences.append(Sentence(text, source, line_no, position, heading=heading, bullet=bullet))
            position += 1
            bullet = False  # only the first sentence of a list item opens it
    if in_code:
        # An unterminated fence still holds code, not prose.
        reading.code.append(CodeBlock(language, "\n".join(code_lines), position))
    _count_questions(reading)
    return reading


def _count_questions(reading: Reading) -> None:
    sentences = reading.sentences
    last_position = max([s.position for s in sentences] + [c.position for c in reading.code], default=0)
    words_before = 0
    code_positions = [c.position for c in reading.code]
    previous_counted = False
    i = 0
    while i < len(sentences):
        s = sentences[i]
        s.kind = _kind(s.text)
        plain = _plain(s.text)
        code_before = any(p < s.position for p in code_positions)
        if s.kind == "generic_offer":
            s.why = "X-generic-offer"
        elif s.kind == "offer" and (words_before >= OFFER_CONTEXT_WORDS or code_before) and not re.search(r"\bor\b", plain, re.I):
            s.why = "X-offer"
        elif s.kind in ("question", "interrogative", "request", "offer") and s.heading and s.position < last_position:
            s.why = "X-heading"
        elif s.kind == "list_intro":
            items = _list_items_after(sentences, i)
            if len(items) >= 2 and not any(_kind(t.text) == "question" for t in items):
                for t in items:
                    t.kind, t.counted, t.why = "question", True, "Q-list"
                words_before += sum(count_words(t.text) for t in items) + count_words(s.text)
                i += len(items) + 1
                previous_counted = True
                continue
            s.kind = "statement"
        elif s.kind == "offer" and not (plain.endswith("?") or _ASKING_OFFER.match(plain)):
            s.why = ""  # "Happy to help." offers nothing to answer
        elif s.kind in ("question", "offer"):
            if (
                previous_counted
                and count_words(plain) <= ALTERNATIVES_MAX_WORDS
                and re.search(r"\bor\b", plain, re.I)
                and not re.match(rf"^(?:{_WH}|{_AUX})\b", plain, re.I)
            ):
                s.why = "Q-alternatives"
            else:
                s.counted, s.why = True, "Q-mark" if plain.endswith("?") else "Q-interrogative"
                if plain.endswith("?") and _COMPOUND.search(plain):
                    s.why = "Q-compound"
        elif s.kind == "interrogative":
            s.counted, s.why = True, "Q-interrogative"
        elif s.kind == "request":
            s.counted, s.why = True, "Q-request"
        previous_counted = s.counted
        if s.kind == "statement":
            words_before += count_words(s.text)
        i += 1
    inline_questions = any("?" in m.group(0) for m in _INLINE_CODE.finditer(reading.raw))
    if inline_questions or any("?" in q for q in reading.quoted) or any("?" in c.text for c in reading.code):
        reading.ignored.append("X-code")


def _list_items_after(sentences: list[Sentence], i: int) -> list[Sentence]:
    items: list[Sentence] = []
    line = sentences[i].line
    for t in sentences[i + 1 :]:
        if not t.bullet and t.line == (items[-1].line if items else line):
            continue  # a second sentence of the same list item
        if not t.bullet:
            break
        items.append(t)
    return items


_NUMBER = re.compile(
    r"(?<![\w.,/])(?P<sign>[-−](?=\$?\d)|\$-|\$−)?\$?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\w]|[.,]\d)"
)


@dataclass
class Number:
    """A number found in text."""

    text: str
    """As written, e.g. ``$1,234.50``."""

    value: Decimal
    """Its value (thousands separators and currency removed)."""

    start: int
    """Offset in the searched text."""

    def plain(self) -> str:
        """The value written plainly, without trailing zeros ("42.0" → "42")."""
        return format_number(self.value)


def format_number(value: Decimal) -> str:
    """Write a number without exponent or trailing zeros."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def find_numbers(text: str) -> list[Number]:
    """All numbers in a text, in order.

    Handles thousands separators ("1,234"), decimals ("42.0"), a currency sign ("$5") and
    a leading minus ("-3", "−3", "$-3"). A hyphen between two numbers ("3-5") is a range,
    not a sign. Numbers in words are not read.
    """
    found: list[Number] = []
    for m in _NUMBER.finditer(text):
        try:
            value = Decimal(m.group("num").replace(",", ""))
        except InvalidOperation:
            continue
        if m.group("sign"):
            value = -value
        found.append(Number(m.group(0).strip(), value, m.start()))
    return found


def parse_number(text: str) -> Decimal | None:
    """The value of a text that is one number (a gold answer), or None."""
    numbers = find_numbers(text.strip())
    if len(numbers) != 1:
        return None
    rest = text.replace(numbers[0].text, "", 1)
    if re.search(r"[A-Za-z0-9]", rest.replace("%", "")):
        return None
    return numbers[0].value


HASH_ANSWER = re.compile(r"####\s*([^\n]*)")
BOXED = re.compile(r"\\boxed\{([^{}\n]*)\}")
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:|=|would be|will be|comes to)\s*([^\n]{0,80})", re.I)
_TOTAL_IS = re.compile(
    r"\b(?:total|sum|altogether|in all|overall)\b[^.?!\n]{0,40}?(?:\bis\b|\bof\b|=|\bcomes to\b|\bequals\b|"
    r"\bwould be\b|\bwill be\b|:)\s*([^\n]{0,40})",
    re.I,
)


def marked_number(lines: list[str]) -> tuple[Number, str] | None:
    r"""The number an explicit marker points at, searching prose lines from the end.

    Markers, strongest first: ``#### N`` (GSM8K), ``\boxed{N}``, "answer is N" /
    "Answer: N", "total is N" / "a total of N" / "altogether: N". The first number after
    the last such marker is taken.

    Returns:
        The number and the marker's name, or None when no marker is followed by a number.
    """
    text = "\n".join(lines)
    for name, pattern in (("####", HASH_ANSWER), ("boxed", BOXED), ("answer is", _ANSWER_IS), ("total is", _TOTAL_IS)):
        matches = list(pattern.finditer(text))
        for m in reversed(matches):
            numbers = find_numbers(m.group(1))
            if numbers:
                return numbers[0], name
    return None


def final_number(reply: str) -> tuple[Number | None, str]:
    """The number a reply gives as its final answer.

    The number after an explicit marker wins (see :func:`marked_number`); otherwise the
    last number in the prose statements (questions, offers, code blocks and quotes
    skipped, so "Want me to explain step 2?" does not answer 2); otherwise the last number
    anywhere in the reply.

    Returns:
        The number (None when the reply has none) and how it was found: ``####``,
        ``boxed``, ``answer is``, ``total is``, ``last statement number``, ``last number``
        or ``none``.
    """
    reading = read_reply(reply)
    marked = marked_number(reading.prose_lines)
    if marked:
        return marked
    numbers = find_numbers("\n".join(s.text for s in reading.statements))
    if numbers:
        return numbers[-1], "last statement number"
    numbers = find_numbers(reply)
    if numbers:
        return numbers[-1], "last number"
    return None, "none"
