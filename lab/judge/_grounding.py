"""Layer G: grounding acts of any speaker's turn, by transparent rules.

The codebook (``docs/measures.md``, "Codebook") defines six codes: ``ACK`` (receipt or understanding, no
evaluation), ``CLARIFY`` (a question resolving what a prior utterance meant), ``CHECK`` (an
interpretation put up for confirmation), ``FOLLOWUP`` (a question for new information that
extends the topic), ``DISPLAY`` (repeating the other's content to show uptake) and ``NONE``.
A turn may carry several acts; one label holds them all, joined by ``+`` in codebook order
(``ACK+FOLLOWUP``), so a newer label of the same judge supersedes the whole set at once.

The rules read the turn and the other speaker's turn just before it; :data:`GROUNDING_RULES`
lists them and ``lab/judge/RULES.md`` documents them for readers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._judgement import Judgement
from ._presupposition import content_words
from ._ruleset import Rule, nothing_to_label, rule_table
from ._text import is_blank, read_reply

GROUNDING_CODES: tuple[str, ...] = ("ACK", "CLARIFY", "CHECK", "FOLLOWUP", "DISPLAY", "NONE")
"""Layer G codes in codebook order (``docs/measures.md``, "Codebook")."""

GROUNDING_VERSION = "grounding-rules-1"
"""Version of the layer-G rules; bump it whenever a rule changes what it labels."""

DISPLAY_MAX_WORDS = 8
"""A displayed repeat is a short fragment: the turn's first clause of at most this many words."""

SHORT_ACK_WORDS = 12
"""'Sure' and 'right' acknowledge only in a short turn; longer, they open an answer or a request."""


CODE_MAX_CHARS = 32
"""Length of ``label.code``; the five acts together need 34 characters."""


def join_codes(codes: Iterable[str]) -> str:
    """One label code for a set of acts: codebook order, joined by ``+`` (``NONE`` only alone).

    A turn carrying all five acts keeps four: ``ACK`` is left out, since the label column
    holds :data:`CODE_MAX_CHARS` characters and the other four say more.
    """
    wanted = set(codes)
    unknown = wanted - set(GROUNDING_CODES)
    if unknown:
        raise ValueError(f"unknown grounding code(s): {', '.join(sorted(unknown))}")
    acts = [c for c in GROUNDING_CODES if c in wanted and c != "NONE"]
    joined = "+".join(acts)
    if len(joined) > CODE_MAX_CHARS:
        joined = "+".join(a for a in acts if a != "ACK")
    return joined or "NONE"


def split_codes(code: str) -> list[str]:
    """The acts of a stored G label code (the inverse of :func:`join_codes`)."""
    return [c for c in code.split("+") if c]


GROUNDING_RULES: dict[str, Rule] = rule_table(
    [
        Rule(
            "G-ack",
            "the turn opens with a receipt token ('ok', 'got it', 'thanks', 'understood', 'I see'; 'sure'/'right' only "
            f"in a turn under {SHORT_ACK_WORDS} words)",
            "ACK",
            0.75,
        ),
        Rule(
            "G-clarify-meaning",
            "a question about what was meant ('what do you mean', 'did you mean', 'which one', 'huh?', 'I didn't follow')",
            "CLARIFY",
            0.75,
        ),
        Rule(
            "G-clarify-which",
            "a 'which/what X' question whose X the other speaker just used ('Which file?' after 'the file')",
            "CLARIFY",
            0.6,
        ),
        Rule(
            "G-check",
            "an interpretation put up for confirmation ('…, right?', 'is that right?', 'just to check', 'so you want…?', "
            "'you mean…?')",
            "CHECK",
            0.7,
        ),
        Rule(
            "G-followup",
            "any other question after the other speaker's turn (closing offers, 'anything else?' and an opening "
            "question excluded)",
            "FOLLOWUP",
            0.6,
        ),
        Rule(
            "G-display",
            f"the first clause (at most {DISPLAY_MAX_WORDS} words, no 'I'/'you') repeats only words and numbers of the "
            "other's turn ('6:40, gate B12.')",
            "DISPLAY",
            0.6,
        ),
        Rule("G-none", "none of the above", "NONE", 0.6),
    ]
)
"""Every layer-G rule by id; a rule's code is the act it adds."""

_ACK = re.compile(
    r"^(?:ok(?:ay)?|k|got it|gotcha|thanks|thank you|thx|understood|i see|alright|all right|noted|great|perfect|"
    r"cool|nice|sounds good|will do|makes sense|fair enough|i understand|roger)\b",
    re.I,
)
_SHORT_ACK = re.compile(r"^(?:sure|right|yes|yeah|yep|of course|certainly)\b", re.I)
# The cues of asking what was meant without naming the trouble are shared with layer R, whose
# open-class initiation (lab/judge/_repair.py) is a whole turn made of one of them.
WHAT_MEANT = r"what do you mean|what did you mean"
"""Pattern alternatives asking what the other speaker meant."""
NOT_FOLLOWING = r"(?:didn't|did not|don't|do not) (?:quite )?(?:follow|understand|get|catch)"
"""Pattern of saying the other's turn was not followed ("didn't quite follow", "don't understand")."""
OPEN_WORD = r"(?:huh|what|sorry|pardon|excuse me)"
"""Pattern of the words that, standing alone, ask what was meant ("Huh?", "Sorry?")."""
_MEANING = re.compile(
    rf"\b(?:{WHAT_MEANT}|do you mean|did you mean|what does (?:that|this|it|\w+) mean|"
    r"what is meant|which one|who do you mean|which (?:\w+ )?do you mean|meaning what|"
    rf"(?:i )?{NOT_FOLLOWING}|"
    r"could you (?:clarify|rephrase|explain what you mean)|come again)\b"
    rf"|^{OPEN_WORD}\s*[?!.]*$|^(?:huh|sorry|pardon)\b[?,!]",
    re.I,
)
_WHICH = re.compile(r"\b(?:which|what) (?P<noun>[a-z][a-z-]+)", re.I)
_CHECK = re.compile(
    r"(?:,\s*(?:right|correct|yes|yeah|ok|okay)\s*\?$)"
    r"|\b(?:is that (?:right|correct)|did i get that right|am i right|have i got that right|"
    r"just to (?:check|confirm|be sure|clarify)|to confirm|if i understand (?:you )?correctly|"
    r"it sounds like you|do i understand)\b"
    r"|^(?:so|you mean|you want|you're saying|you are saying|so you)\b.*\?$",
    re.I,
)
_PERSON = re.compile(r"\b(?:i|i'm|i'll|i'd|i've|me|my|you|you're|your|we|we're|let's)\b", re.I)
_CLAUSE = re.compile(r"[.;:!?—–]|,\s|\s-\s")
_NUMBER_TOKEN = re.compile(r"\$?\d+(?:[.:,]\d+)*")


def _questions(turn: str) -> list[str]:
    """Questions put to the other speaker; offers ("Would you like the plural too?") ground nothing."""
    reading = read_reply(turn)
    return [s.text for s in reading.sentences if s.asks]


def _first_clause(turn: str) -> str:
    text = turn.strip()
    m = _ACK.match(text) or _SHORT_ACK.match(text)
    if m:
        text = text[m.end() :].lstrip(" ,.!—–-:")
    parts = [p for p in _CLAUSE.split(text) if p.strip()]
    return parts[0].strip() if parts else ""


def _displays(turn: str, previous: str) -> bool:
    clause = _first_clause(turn)
    if not clause or _PERSON.search(clause):
        return False
    after = turn[turn.find(clause) + len(clause) :].lstrip(" *_\"'")
    if after.startswith("?"):
        return False  # "Which report?" asks; it does not display
    words = re.findall(r"[\w$'.:-]+", clause)
    if not words or len(words) > DISPLAY_MAX_WORDS:
        return False
    said = content_words(previous) | set(_NUMBER_TOKEN.findall(previous))
    mine = content_words(clause) | set(_NUMBER_TOKEN.findall(clause))
    return bool(mine) and mine <= said


def classify_grounding(turn: str, *, speaker: str = "assistant", previous: str = "") -> Judgement:
    """Label one turn's grounding acts by rules.

    Args:
        turn: The turn's text.
        speaker: ``user`` or ``assistant`` (the rules are the same for both; the speaker is
            recorded so base rates can be compared by role).
        previous: The other speaker's turn just before (empty for an opening turn).

    Returns:
        A layer-G judgement whose code joins the acts found (``NONE`` when there is none);
        an empty turn gets an error and no code.
    """
    if is_blank(turn):
        return nothing_to_label("G", GROUNDING_VERSION, "The turn is empty, so there is no grounding act to label.")
    text = turn.strip()
    fired: list[str] = []
    words = len(text.split())
    if _ACK.match(text) or (_SHORT_ACK.match(text) and words < SHORT_ACK_WORDS and not text.rstrip().endswith("?")):
        fired.append("G-ack")
    previous_words = content_words(previous)
    for q in _questions(text):
        plain = q.strip()
        if _CHECK.search(plain):
            rule = "G-check"
        elif _MEANING.search(plain):
            rule = "G-clarify-meaning"
        elif any(w in previous_words for w in content_words(" ".join(m.group("noun") for m in _WHICH.finditer(plain)))):
            rule = "G-clarify-which"
        elif previous.strip():
            rule = "G-followup"
        else:
            continue  # an opening question starts the topic; nothing is extended or grounded
        if rule not in fired:
            fired.append(rule)
    if not any(r.startswith("G-clarify") for r in fired) and _MEANING.search(text.splitlines()[0]):
        fired.append("G-clarify-meaning")  # "Huh? What do you mean" or "Sorry, I didn't follow" without a counted question
    if previous and _displays(text, previous):
        fired.append("G-display")
    codes = [GROUNDING_RULES[r].code for r in fired]
    if not codes:
        fired.append("G-none")
        codes = ["NONE"]
    code = join_codes(codes)
    confidence = min(GROUNDING_RULES[r].confidence for r in fired)
    reason = "No grounding act found." if code == "NONE" else "Acts found: " + ", ".join(split_codes(code)) + "."
    return Judgement(
        layer="G",
        code=code,
        confidence=confidence,
        judge="rules",
        version=GROUNDING_VERSION,
        model=None,
        rules=fired,
        reason=f"{reason} (speaker: {speaker})",
    )
