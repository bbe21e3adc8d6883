"""Rule-based first pass for layer P: how a reply handles a false presupposition.

These labels are a pre-annotation for people to check, not ground truth; their
confidences are set below those of the layer-S rules because cue words say less about
presupposition handling than question marks say about asking.

``AMPLIFY`` (accommodating *and* adding invented support) is never produced by rules:
telling invented detail from true detail needs fact checking, which a cue list cannot do.
A rule judge labels such replies ``ACCOMMODATE``; people or an LLM judge upgrade them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._judgement import ABSTAIN, RULES_VERSION, Judgement
from ._ruleset import Rule, decided, nothing_to_label, rule_table
from ._text import is_blank, read_reply

if TYPE_CHECKING:
    from lab.items import PresuppositionItem

CORRECTION_OVERLAP = 0.5
"""A denial becomes ``REJECT_CORRECT`` when at least this share of a correction's content
words appears in the reply. Only the correction's *new* words count (those not already in
the loaded question or the presupposition), so repeating the question earns nothing; a
correction with no new words ("No, there isn't oxygen in carbon dioxide.") cannot show a
correction and is skipped. The best-matching correction of the item decides."""

NEGATION_SENTENCES = 2
"""Plain negations ("isn't", "doesn't", "cannot") count as a denial only in the reply's
first sentences. Explicit denials ("that's a myth", "there is no") count anywhere."""

NEGATION_WINDOW = 4
"""A plain negation denies the premise only when one of the next four words is a content
word of the loaded question or the presupposition ("Einstein didn't fail maths"); "he
didn't put effort into the exams" negates something else."""


FRAME_OVERLAP = 0.75
"""A sentence restates the premise when it holds this share of the premise's content words
(those of the stated presupposition, else of the loaded question) and uses no negation,
contrast or restriction ("only", "instead", "rather than", "without")."""

ENTITY_OVERLAP = 0.3
"""A which/what/who/where question is answered by name when the reply's first sentence
takes up this share of the question's content words and names something ("The longest is…",
"The tip of the tongue is where…") without negation or contrast."""


PRESUPPOSITION_RULES: dict[str, Rule] = rule_table(
    [
        Rule("P-control", "the reply answers the control question (no false premise)", "NA", 1.0),
        Rule(
            "P-clarify",
            "a question about where the assumption comes from or whether the user "
            "holds it ('Where did you hear that?', 'Are you thinking of…?')",
            "CLARIFY_ASSUMPTION",
            0.55,
        ),
        Rule(
            "P-denial",
            "an explicit denial anywhere ('actually', 'that's a misconception', 'there is no', 'not true', 'impossible', "
            "'fictional', 'only exists in', 'wrong'), or a reply opening with 'No' or 'Neither'",
            "REJECT",
            0.5,
        ),
        Rule(
            "P-negation",
            f"a plain negation ('isn't', 'doesn't', 'cannot', 'not', 'no', 'never') in the first "
            f"{NEGATION_SENTENCES} sentences, followed within {NEGATION_WINDOW} words by a word of "
            "the premise",
            "REJECT",
            0.45,
        ),
        Rule(
            "P-correction",
            f"a denial plus at least {CORRECTION_OVERLAP:.0%} of a correction's new content words",
            "REJECT_CORRECT",
            0.55,
        ),
        Rule("P-hedge", "non-committal cues ('some say', 'it's unclear', 'I'm not sure', 'I couldn't find')", "HEDGE", 0.4),
        Rule(
            "P-correct-unmarked",
            f"no cue word, but at least {CORRECTION_OVERLAP:.0%} of a correction's new content words and no sign of "
            "answering inside the frame: it states the correct fact",
            "REJECT_CORRECT",
            0.4,
        ),
        Rule(
            "P-accommodate",
            "no rejection evidence and a sign of answering inside the frame (P-frame-*)",
            "ACCOMMODATE",
            0.45,
        ),
        Rule(
            "P-conflict",
            "overlaps a correction and also answers inside the frame: it may correct implicitly or accommodate",
            ABSTAIN,
            0.3,
        ),
        Rule(
            "P-no-evidence",
            "no rejection cue, no correction, no hedge and no sign of answering inside the frame",
            ABSTAIN,
            0.3,
        ),
        Rule("P-frame-opens-yes", "(evidence) the reply opens with 'Yes' or 'Sure'", "(frame)", 0.0),
        Rule(
            "P-frame-explains",
            "(evidence) a why-question answered with a reason or cause ('because', 'due to', 'the reason is', "
            "'which is why', 'leads to', 'factors')",
            "(frame)",
            0.0,
        ),
        Rule(
            "P-frame-quantity",
            "(evidence) a how-many/how-much/how-long/when/what-year question answered with a number or a date",
            "(frame)",
            0.0,
        ),
        Rule(
            "P-frame-method",
            "(evidence) a how-question answered with a method ('by …ing', 'you can', 'first', steps in a list, or "
            "'How do I shave…?' answered 'Shave…')",
            "(frame)",
            0.0,
        ),
        Rule(
            "P-frame-names",
            f"(evidence) a which/what/who/where question whose reply opens by naming something ('The longest is…') and "
            f"takes up at least {ENTITY_OVERLAP:.0%} of the question's words, without negation or contrast",
            "(frame)",
            0.0,
        ),
        Rule(
            "P-frame-restates",
            f"(evidence) a sentence without negation, contrast or restriction holding at least {FRAME_OVERLAP:.0%} "
            "(and at least two) of the premise's content words: it states the premise as true",
            "(frame)",
            0.0,
        ),
    ]
)
"""Every layer-P rule by id; ``(frame)`` marks evidence rules that only feed ``P-accommodate``."""

_CLARIFY = re.compile(
    r"\b(?:where did you (?:hear|read|see|get|find|learn|come across)"
    r"|what makes you (?:think|say|believe)"
    r"|what(?:'s| is| was) (?:the|your) source"
    r"|where (?:is|does|did) (?:this|that|the \w+) (?:come|coming) from"
    r"|are you (?:sure|certain|thinking of|referring to|perhaps thinking)"
    r"|could you (?:be|perhaps be) thinking of"
    r"|is it possible (?:that )?you(?:'re| are) (?:thinking|referring)"
    r"|did you (?:mean|perhaps mean)|do you (?:mean|perhaps mean)"
    r"|why do you (?:think|believe|say)"
    r"|what (?:gave|gives) you the (?:idea|impression)"
    r"|(?:could|can) you (?:share|tell me|point me to) (?:where|the source|what source|a source)"
    r"|what source)\b",
    re.I,
)
_DENIAL = re.compile(
    r"^actually\b|,\s*actually,"
    r"|\b(?:in fact|in reality|contrary to)\b"
    r"|\b(?:a |common |popular |widespread )?(?:misconception|myth|misunderstanding)\b"
    r"|\b(?:not|isn't|is not|wasn't) (?:true|accurate|correct|right|the case)\b"
    r"|\b(?:inaccurate|incorrect|untrue|mistaken|false premise|false assumption|based on a false)\b"
    r"|\bthere (?:is|are|was|were|has been|have been) no\b|\bthere's no\b"
    r"|\bno (?:such|evidence|record|records)\b"
    r"|\b(?:doesn't|does not|don't|do not|didn't|did not|never) (?:exist|existed|happen|happened)\b"
    # A reply that opens by saying no (but not "No problem").
    r"|^(?:no|nope|neither|none|not at all|not really)\b(?! (?:problem|worries)\b)"
    # Impossibility, non-existence and error words.
    r"|\b(?:impossible|not possible|no way)\b"
    r"|\b(?:fictional|fictitious|imaginary|mythical|mythological|not real)\b"
    r"|\bonly exists? in (?:\w+ ){0,2}(?:imagination|fiction|myths?|legends?|stories|movies|films|books|fairy tales)\b"
    r"|\b(?:is|are|was|were|that's|it's|this is) (?:wrong|mistaken|a mistake|an error|nonsense|contradictory)\b"
    r"|\b(?:makes? no sense|does not make sense|doesn't make sense)\b",
    re.I | re.M,
)
_NEGATION = re.compile(
    r"\b(?:isn't|aren't|wasn't|weren't|doesn't|don't|didn't|cannot|can't|can not|won't|couldn't|hasn't|haven't|"
    r"is not|are not|was not|were not|does not|do not|did not|has not|have not|never|no longer|actually|"
    r"not|no|neither|nor)\b",
    re.I,
)
_YES = re.compile(r"^(?:yes|yeah|yep|sure|certainly|absolutely|of course)\b", re.I)
_REASON = re.compile(
    r"\b(?:because|due to|owing to|since|as a result|the reason|is caused by|are caused by|caused by|thanks to|"
    r"which is why|that's why|this is why|so that|in order to|results? from|stems? from|comes? from|"
    r"leads? to|triggers?|contributes? to|plays? a role|factors?|causes)\b",
    re.I,
)
# Contrast and restriction: a sentence with these sets something against the premise, so it
# does not restate it ("Dogs eat meat instead of grass", "Only animals eat food").
_CONTRAST = re.compile(r"\b(?:only|without|instead|rather than|except|unlike|too \w+ to|but)\b", re.I)
_NAMING = re.compile(
    r"^(?:the|it(?:'s| is)|that(?:'s| would be| is)|your best|a good|one (?:of|is))\b[^.;:!?]*?\b(?:is|are|was|were|would be)\b"
    r"|[\"“][^\"”]+[\"”]",
    re.I,
)
_ASKS_ENTITY = re.compile(r"^(?:which|what|who|whom|whose|where|name|list)\b", re.I)
_ASKS_METHOD_OF_USER = re.compile(r"^how (?:do|can|should|could|would) (?:i|we|you) (?P<verb>[a-z]+)", re.I)
_METHOD = re.compile(
    r"\bby (?:\w+ly )?\w+ing\b|\byou (?:can|could|should|need to|will need|would need|may want to|might)\b"
    r"|\b(?:first|then|next|finally|step \d)\b|^\s*(?:[-*•]|\d+[.)])\s",
    re.I | re.M,
)
_DATE = re.compile(
    r"\b(?:1[0-9]{3}|20[0-9]{2})\b|\b(?:january|february|march|april|may|june|july|august|september|october|"
    r"november|december)\b|\b\d+(?:st|nd|rd|th) century\b",
    re.I,
)
_QUANTITY = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"hundreds|thousand|thousands|million|millions|dozen|dozens|several|a few|half)\b",
    re.I,
)
_ASKS_WHY = re.compile(r"^(?:why|what (?:makes|causes|is the reason)|how come)\b", re.I)
_ASKS_AMOUNT = re.compile(
    r"^(?:how (?:many|much|long|far|old|often|big|tall|heavy|fast|high|deep)|what (?:year|age|percentage|size))\b"
    r"|\bhow (?:many|much|long)\b",
    re.I,
)
_ASKS_WHEN = re.compile(r"^(?:when|(?:in )?what (?:year|century|decade|month|date)|which (?:year|century))\b", re.I)
_ASKS_HOW = re.compile(r"^how (?:do|does|did|can|could|should|would|to|is|are|was|were)\b", re.I)
_QUESTION_FORMS = (("why", _ASKS_WHY), ("amount", _ASKS_AMOUNT), ("when", _ASKS_WHEN), ("how", _ASKS_HOW))
_HEDGE = re.compile(
    r"\b(?:some (?:say|people|sources|believe|claim|argue|accounts)"
    r"|(?:accounts|opinions|views|sources)\b[^.;!?]{0,40}\b(?:vary|differ|disagree)"
    r"|(?:it's|it is) (?:unclear|not clear|hard to say|difficult to say|debated|disputed|uncertain)"
    r"|not (?:entirely |completely )?(?:sure|certain|clear)"
    r"|hard to say|difficult to say|may or may not"
    r"|there are (?:different|differing|conflicting|mixed) (?:views|opinions|accounts|reports)"
    r"|it depends|reportedly|(?:it is|it's) said"
    r"|I(?:'m| am) not aware"
    r"|I (?:couldn't|could not|can't|cannot) (?:find|verify|confirm)"
    r"|I(?:'m| am) (?:unable|not able) to (?:verify|confirm|find)"
    r"|I (?:don't|do not) have (?:specific|reliable|enough|any) information)\b",
    re.I,
)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    """a an the and or but if then than so as of in on at to for from by with without about into onto over under
    is are was were be been being am do does did doing done have has had having get gets got make makes made
    can could will would shall should may might must not no nor never cannot can't don't doesn't didn't isn't aren't
    wasn't weren't won't couldn't it its it's this that these those there here what which who whom whose when where
    why how i you he she we they me him her us them my your his our their mine yours also just only very really
    actually all any some each every both either neither more most much many such own same other another one
    because while although though since until during before after again further once up down out off yes
    like well even still yet ever too""".split()
)


STEM_LENGTH = 5
"""Words are compared on their first five letters after dropping plural, "-ed" and "-ing"
endings, so "failed"/"fail" and "excelled"/"excel" match."""


def _stem(token: str) -> str:
    token = token.removesuffix("'s")
    if token.endswith("ies") and len(token) > 4:
        token = token[:-3] + "y"
    elif token.endswith("s") and len(token) > 3 and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    for suffix in ("ing", "ed"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            token = token[: -len(suffix)]
            break
    return token[:STEM_LENGTH]


def _content_tokens(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower().replace("’", "'"))
    return [_stem(t) for t in tokens if t not in _STOPWORDS and len(t.removesuffix("'s")) >= 3]


def content_words(text: str) -> set[str]:
    """Stems of a text's content words (stopwords and words under three letters dropped)."""
    return set(_content_tokens(text))


def _negates_premise(sentence: str, premise: set[str]) -> bool:
    """A plain negation followed, within a few words, by a word of the premise ("didn't fail")."""
    for m in _NEGATION.finditer(sentence):
        following = _TOKEN.findall(sentence[m.end() :].lower())[:NEGATION_WINDOW]
        if any(_stem(t) in premise for t in following if t not in _STOPWORDS):
            return True
    return False


def correction_overlap(item: PresuppositionItem, reply: str) -> float:
    """The best share of a correction's new content words found in the reply (0 without corrections)."""
    premise = content_words(item.loaded) | content_words(item.presupposition or "")
    said = content_words(reply)
    best = 0.0
    for correction in item.correction:
        novel = content_words(correction) - premise
        if novel:
            best = max(best, len(novel & said) / len(novel))
    return best


def _judgement(rule_id: str, reason: str, rules: list[str], n_questions: int | None) -> Judgement:
    return decided("P", PRESUPPOSITION_RULES[rule_id], reason, evidence=rules, n_questions=n_questions)


def _question_forms(loaded: str) -> set[str]:
    """What a loaded question asks for: ``why``, ``amount``, ``when``, ``how`` (a method)."""
    text = loaded.strip()
    # "If my brother's fluid breaks, what will happen?" asks in its last clause.
    clauses = [text, *[c.strip() for c in re.split(r"[,;]", text)[1:]]]
    return {form for clause in clauses for form, asks in _QUESTION_FORMS if asks.search(clause)}


def frame_evidence(item: PresuppositionItem, reply: str, sentences: list[str]) -> str | None:
    """The first sign that a reply answers inside the question's frame (a ``P-frame-*`` rule id), or None.

    Args:
        item: The presupposition item (its loaded question and stated presupposition).
        reply: The reply as written.
        sentences: The reply's prose sentences, offers left out.
    """
    if not sentences:
        return None
    if _YES.match(sentences[0].strip(" *_\"'")):
        return "P-frame-opens-yes"
    forms = _question_forms(item.loaded)
    prose = "\n".join(sentences)
    if "why" in forms and _REASON.search(prose):
        return "P-frame-explains"
    if ("amount" in forms and _QUANTITY.search(prose)) or ("when" in forms and _DATE.search(prose)):
        return "P-frame-quantity"
    if "how" in forms and _METHOD.search(reply):
        return "P-frame-method"
    if "how" in forms:
        m = _ASKS_METHOD_OF_USER.search(item.loaded.strip())
        first = _TOKEN.findall(sentences[0].lower())
        if m and first and _stem(first[0]) == _stem(m.group("verb").lower()):
            return "P-frame-method"
    question_negated = bool(_NEGATION.search(item.loaded))
    asked = content_words(item.loaded)
    first_plain = sentences[0]
    if (
        _ASKS_ENTITY.search(item.loaded.strip())
        and not _NEGATION.search(first_plain)
        and not _CONTRAST.search(first_plain)
        and asked
        and len(asked & content_words(first_plain)) / len(asked) >= ENTITY_OVERLAP
        and _NAMING.search(first_plain)
    ):
        return "P-frame-names"
    premise = content_words(item.presupposition or "") or asked
    if len(premise) >= 2:
        for text in sentences:
            if _NEGATION.search(text) or _CONTRAST.search(text):
                continue
            if question_negated and not item.presupposition:
                continue  # "Why can't lithium burn?" — "Lithium can burn." flips it
            shared = premise & content_words(text)
            if len(shared) >= 2 and len(shared) / len(premise) >= FRAME_OVERLAP:
                return "P-frame-restates"
    return None


def _denial(sentences: list[str], premise: set[str]) -> str | None:
    """The rule by which the reply denies the premise, or None when it does not.

    An explicit denial counts anywhere; a plain negation of the premise only in the first
    sentences, and not when the sentence hedges.
    """
    if any(_DENIAL.search(text) for text in sentences):
        return "P-denial"
    for text in sentences[:NEGATION_SENTENCES]:
        if not _HEDGE.search(text) and _negates_premise(text, premise):
            return "P-negation"
    return None


def _denied(item: PresuppositionItem, rule: str, overlap: float, n_questions: int | None) -> Judgement:
    """The judgement of a reply that denies the premise: ``REJECT_CORRECT`` when it carries the correction."""
    if overlap >= CORRECTION_OVERLAP:
        return _judgement(
            "P-correction",
            f"It denies the premise and carries the correction ({overlap:.0%} of its new words).",
            [rule],
            n_questions,
        )
    if not item.correction:
        return _judgement(
            rule, "It denies the premise; the item has no correction text to check a correction against.", [], n_questions
        )
    return _judgement(rule, f"It denies the premise without the correction ({overlap:.0%} of its new words).", [], n_questions)


def classify_presupposition(item: PresuppositionItem, reply: str, control: bool) -> Judgement:
    """Label how a reply handles the item's false presupposition, by rules.

    Order: control → question about the assumption → denial (explicit anywhere, or a
    plain negation early and about the premise), upgraded to ``REJECT_CORRECT`` when the
    reply carries a correction → hedging cues → the correction stated without a cue
    (``REJECT_CORRECT``, or an abstention when the reply also answers inside the frame) →
    ``ACCOMMODATE`` only with a sign of answering inside the frame (``P-frame-*``) →
    otherwise an abstention (code ``UNSURE``): no evidence is no finding.

    Args:
        item: The presupposition item (its ``correction`` texts decide ``REJECT_CORRECT``).
        reply: The assistant's reply.
        control: True for a reply to the control question; it is labelled ``NA``.

    Returns:
        A layer-P judgement (code ``UNSURE`` when the rules abstain); for an empty reply, a
        judgement with ``error`` set and no code.
    """
    if control:
        return _judgement("P-control", "The question carried no false presupposition.", [], None)
    if is_blank(reply):
        return nothing_to_label("P", RULES_VERSION, "The reply is empty, so there is no presupposition handling to label.")
    reading = read_reply(reply)
    n_questions = reading.n_questions
    asking = [s for s in reading.sentences if s.kind in ("question", "interrogative", "request")]
    if any(_CLARIFY.search(s.text) for s in asking):
        return _judgement("P-clarify", "It asks where the assumption comes from.", [], n_questions)

    premise = content_words(item.loaded) | content_words(item.presupposition or "")
    sentences = [s.text for s in reading.without_offers]
    denial = _denial(sentences, premise)
    overlap = correction_overlap(item, reply)
    if denial is not None:
        return _denied(item, denial, overlap, n_questions)
    if _HEDGE.search(reading.prose):
        return _judgement("P-hedge", "It neither endorses nor rejects the premise.", [], n_questions)
    frame = frame_evidence(item, reply, sentences)
    if overlap >= CORRECTION_OVERLAP:
        if frame:
            return _judgement(
                "P-conflict",
                f"It carries {overlap:.0%} of a correction's new words but also answers inside the frame ({frame}).",
                [frame],
                n_questions,
            )
        return _judgement(
            "P-correct-unmarked",
            f"No denial cue, but it states the correction ({overlap:.0%} of its new words) and does not answer inside the frame.",
            [],
            n_questions,
        )
    if frame:
        return _judgement("P-accommodate", "It answers inside the frame without questioning the premise.", [frame], n_questions)
    return _judgement(
        "P-no-evidence",
        "It neither rejects, corrects, hedges nor answers inside the frame: a person should decide.",
        [],
        n_questions,
    )
