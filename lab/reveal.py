"""The rules of a participant's message and of how an item's pieces (shards) reach the model.

One home for every such rule: how a message's text is cleaned and when it is refused,
which cards it may carry and which it is recorded as revealing, when ON_REQUEST lets a
card out, what the FULL and CONCAT openings say, and which reveal modes are incremental.
The conversation engine (:mod:`lab.dialogue`) reads each message once through
:meth:`Progress.read`; the simulator and the run report apply the same functions to what
simulated participants say.

Reveal modes (from the Lost in Conversation work): every item is
seen as a list of shards, shard 1 first.

- ``FULL``: the first user turn carries the fully specified instruction.
- ``CONCAT``: the first user turn carries every shard as a bullet list.
- ``SHARDED``: the first user turn is shard 1; each later user turn reveals at most one new shard.
- ``SNOWBALL``: as SHARDED, but the model sees each later user turn prefixed with every shard
  revealed so far (the participant's own words are stored as written).
- ``RECAP``: as SHARDED, plus one final lab-made user turn restating every shard once all are
  out and answered.
- ``ON_REQUEST``: after shard 1 a shard is revealed only when the assistant asks for what it
  holds; otherwise the user tells it to go ahead.

Everything here is a pure function of the item, the condition and the turns so far.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from .errors import LabError
from .invisible import strip_hidden
from .items import ClarificationItem, Item, OpenItem, PresuppositionItem, Shard, ShardedItem
from .spec import REVEAL_MODES, ConditionSpec

GO_AHEAD = "Please go ahead with what you have."
"""The user's reply in ON_REQUEST when the assistant did not ask for anything held back."""

RECAP_INTRO = "Just to recap everything I need:"
"""How the lab-made RECAP turn starts."""

SNOWBALL_INTRO = "To restate what I've told you so far:"
"""How the model's view of a SNOWBALL turn starts."""

WHOLE_TASK = frozenset({"FULL", "CONCAT"})
"""Reveal modes in which the first message carries every shard."""

INCREMENTAL = frozenset(REVEAL_MODES) - WHOLE_TASK
"""Reveal modes in which information arrives over several turns."""

ONE_PER_TURN = INCREMENTAL - {"ON_REQUEST"}
"""Reveal modes in which every later user turn should reveal one new shard."""

CARRIED_SHARE = 0.75
"""Share of a shard's content words a message must contain to count as carrying it."""

CarriedCards = Literal["ask", "record"]
"""What to do with a participant message that carries more than one new card: ask them to
share one card per message, or record every card it carries."""


class MessageRejected(LabError, ValueError):
    """A participant message the lab refuses, with the reason to show."""


class CardsRefused(MessageRejected):
    """A message refused for the cards its text carries; :attr:`found` is what was read."""

    def __init__(self, message: str, found: dict[str, list[int]] | None) -> None:
        super().__init__(message)
        self.found = found
        """What the detection read in the text (:meth:`CardCheck.record`)."""


class _UserTurn(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def shards(self) -> list[int] | None: ...


T = TypeVar("T", bound=_UserTurn)


@dataclass(frozen=True)
class Opening:
    """What the first user message should say under the condition, and what it reveals."""

    text: str
    """The canonical first message."""
    shards: list[int]
    """Shard ids it reveals."""


# --- the pieces -----------------------------------------------------------------------------


def item_shards(item: Item, condition: ConditionSpec) -> list[Shard]:
    """The pieces an item is revealed in under a condition, the opening piece first."""
    if isinstance(item, ShardedItem):
        return list(item.shards)
    if isinstance(item, ClarificationItem):
        opening_text = item.question if not item.context else f"{item.context}\n\n{item.question}"
        return [Shard(id=1, text=opening_text), *item.missing]
    if isinstance(item, PresuppositionItem):
        question = item.control if condition.presupposition == "control" and item.control else item.loaded
        return [Shard(id=1, text=question)]
    assert isinstance(item, OpenItem)
    return [Shard(id=1, text=item.prompt)]


def full_instruction(item: Item, condition: ConditionSpec) -> str:
    """The whole task in one message (FULL)."""
    if isinstance(item, ShardedItem):
        return item.full_text()
    return " ".join(s.text.strip() for s in item_shards(item, condition))


def bullet_list(shards: Iterable[Shard]) -> str:
    """Shards as a bullet list (CONCAT, RECAP, SNOWBALL)."""
    return "\n".join(f"- {s.text.strip()}" for s in shards)


def opening(reveal: str, item: Item, condition: ConditionSpec) -> Opening:
    """The canonical first user message for a condition, and the shards it reveals."""
    shards = item_shards(item, condition)
    if reveal == "FULL":
        return Opening(full_instruction(item, condition), [s.id for s in shards])
    if reveal == "CONCAT":
        return Opening(bullet_list(shards), [s.id for s in shards])
    return Opening(shards[0].text, [shards[0].id])


# --- what has been revealed -------------------------------------------------------------------


def revealed(turns: Iterable[_UserTurn]) -> set[int]:
    """Shard ids revealed by the user turns among ``turns``."""
    out: set[int] = set()
    for t in turns:
        if t.role == "user":
            out.update(t.shards or [])
    return out


def remaining(shards: Iterable[Shard], done: set[int]) -> list[Shard]:
    """Shards not yet revealed, in order."""
    return [s for s in shards if s.id not in done]


def progression(turns: Iterable[T]) -> Iterator[tuple[T, frozenset[int]]]:
    """Each turn with the shard ids revealed before it, in order (replaying a conversation)."""
    done: set[int] = set()
    for t in turns:
        yield t, frozenset(done)
        if t.role == "user":
            done.update(t.shards or [])


# --- which shards a message carries -----------------------------------------------------------


def new_shards(shards: Iterable[Shard], done: set[int], claimed: Iterable[int] | None) -> tuple[list[int], list[int]]:
    """The shards a sender says a message reveals, split into new known ones and unknown ones.

    Args:
        shards: Every shard of the item under the condition.
        done: Shard ids revealed before.
        claimed: Shard ids the sender says the message reveals.

    Returns:
        ``(new, unknown)``: claimed ids not yet revealed that the item has, in the order
        claimed and without repeats; and claimed ids the item does not have.
    """
    known = {s.id for s in shards}
    fresh = [i for i in dict.fromkeys(claimed or []) if i not in done]
    return [i for i in fresh if i in known], [i for i in fresh if i not in known]


def message_shards(
    shards: list[Shard], done: set[int], claimed: Iterable[int] | None, *, first: bool, opening: Opening
) -> list[int]:
    """Which shards a new user message reveals, enforcing the condition's rule.

    The first message reveals the opening (all shards in FULL and CONCAT); later ones at
    most one new shard.

    Raises:
        MessageRejected: more than one new shard, or an unknown shard.
    """
    if first:
        return list(opening.shards)
    new, unknown = new_shards(shards, done, claimed)
    if unknown:
        raise MessageRejected(f"Unknown card {unknown[0]}.")
    if len(new) > 1:
        raise MessageRejected("Please share one new card per message.")
    return new


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[a-z0-9]+")
_MENTION_STOP = frozenset(
    "a an the and or but if of to in on at for with by from is are was were be been it its this that these those "
    "i you we they he she my your our their me us them do does did can could would should will shall what which "
    "who whom how when where why there here so as than then also just about please tell know need want each "
    "one all any some not no yes ok okay".split()
)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _mention_words(text: str) -> set[str]:
    # Single letters are left out: "it's" would otherwise give every message an "s".
    return {w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _MENTION_STOP and not w.isdigit()}


def _plain(text: str) -> str:
    """Text compared for containment: lower case, runs of whitespace as one space."""
    return " ".join(text.lower().split())


def contains(text: str, card: str) -> bool:
    """Whether a message holds a card's text as written (case and spacing aside)."""
    card = _plain(card)
    return bool(card) and card in _plain(text)


def mentions(shard: Shard, text: str, others: Iterable[Shard] = ()) -> bool:
    """Whether a message gives away what a shard holds.

    A message that holds the shard's text (:func:`contains`) carries it. Otherwise only
    content distinctive to the shard counts: a number or word that one of ``others``
    holds too cannot stand for this shard (the opening card "convert 30 degrees" does not
    give away "30 degrees Celsius, to Fahrenheit"). A shard with numbers is given away
    when every one of its numbers appears, at least one of its other words appears, and
    something distinctive appears (a number of its own, else a word of its own); a shard
    without numbers when at least three quarters (:data:`CARRIED_SHARE`) of its content
    words (and at least three) appear, one of them its own. So another shard's text, sent
    as written, never gives a shard away.

    Args:
        shard: The shard looked for.
        text: The message.
        others: The item's other shards (none: every word of the shard is its own).
    """
    if contains(text, shard.text):
        return True
    rest = [o for o in others if o.id != shard.id]
    numbers, words = _numbers(shard.text), _mention_words(shard.text)
    own_numbers = numbers - set().union(*(_numbers(o.text) for o in rest))
    own_words = words - set().union(*(_mention_words(o.text) for o in rest))
    said = _mention_words(text)
    if numbers:
        if not numbers <= _numbers(text) or (words and not words & said):
            return False
        return bool(own_numbers) or bool(own_words & said)
    if len(words) < 3:
        return False
    return len(words & said) / len(words) >= CARRIED_SHARE and bool(own_words & said)


def carried_shards(shards: Iterable[Shard], done: Iterable[int], text: str) -> list[int]:
    """Unrevealed shards whose content a message carries (see :func:`mentions`), in order."""
    shards, done = list(shards), set(done)
    return [s.id for s in shards if s.id not in done and mentions(s, text, shards)]


@dataclass(frozen=True)
class CardCheck:
    """What a participant message reveals once its text is read, not only its tick."""

    shards: list[int]
    """Shard ids to record on the turn."""
    picked: list[int]
    """What the participant said it shares (the opening for a first message)."""
    carried: list[int]
    """Unrevealed shards beyond ``picked`` whose content the text carries."""
    refusal: str | None = None
    """Under the ``ask`` policy, the sentence asking for one card per message; the message
    is then not sent."""

    def record(self) -> dict[str, list[int]] | None:
        """What the detection adds to the log (None when the text carries nothing more)."""
        return {"picked": self.picked, "carried": self.carried, "recorded": self.shards} if self.carried else None


def check_cards(
    shards: list[Shard],
    done: set[int],
    picked: list[int],
    text: str,
    *,
    first: bool,
    reveal: str,
    policy: CarriedCards,
    opening: Opening | None = None,
) -> CardCheck:
    """Read a participant message for cards it carries beyond the one picked.

    A later message that carries exactly one new card without picking it is recorded as
    sharing that card (it still shares one card). More than one new card in one message
    (or, in a first message, any card beyond the opening) is refused under ``ask`` and
    recorded whole under ``record``.

    In FULL and CONCAT the task is one card, told in the participant's words: a message
    is recorded as revealing what it actually gives the model, never refused. One that
    holds the opening's text reveals every shard of it; any other message the shards it
    carries (:func:`mentions`), so a first message that says none of the task reveals
    nothing. (A task of one piece is revealed by the first message, as in every mode.)

    Args:
        shards: Every shard of the item under the condition.
        done: Shard ids revealed before the message.
        picked: Shard ids the message reveals by the rules (:func:`message_shards`).
        text: The message.
        first: Whether it is the conversation's first message.
        reveal: The condition's reveal mode.
        policy: The study's ``plan.carried_cards``.
        opening: The condition's opening (FULL and CONCAT: the card the participant holds).
    """
    if reveal in WHOLE_TASK and len(shards) > 1:
        if opening is not None and contains(text, opening.text):
            given = [i for i in opening.shards if i not in done]
        else:
            given = carried_shards(shards, done, text)
        return CardCheck(given, list(picked), [])
    if reveal in WHOLE_TASK:
        return CardCheck(list(picked), list(picked), [])
    carried = carried_shards(shards, done | set(picked), text)
    if not carried:
        return CardCheck(list(picked), list(picked), [])
    every = [*picked, *carried]
    refusal = None
    if (first or len(every) > 1) and policy == "ask":
        if first:
            extra = " and ".join(f"card {i}" for i in carried)
            refusal = f"Your message also gives {extra}. Please start with card 1 alone, then share one card per message."
        else:
            cards = " and ".join(f"card {i}" for i in sorted(every))
            refusal = f"Your message gives {cards}. Please share one card per message."
    return CardCheck(every, list(picked), carried, refusal)


# --- what the model sees ----------------------------------------------------------------------


def snowball_content(reveal: str, shards: list[Shard], done: set[int], new: list[int], text: str, *, first: bool) -> str | None:
    """SNOWBALL: the model's view of a later user turn (earlier shards restated first), else None."""
    if reveal != "SNOWBALL" or first:
        return None
    earlier = [s for s in shards if s.id in done and s.id not in new]
    if not earlier:
        return None
    return f"{SNOWBALL_INTRO}\n{bullet_list(earlier)}\n\n{text}"


def recap_text(shards: list[Shard]) -> str:
    """The lab-made RECAP turn restating every shard."""
    return f"{RECAP_INTRO}\n{bullet_list(shards)}"


# --- ON_REQUEST ---------------------------------------------------------------------------------

_STOP = frozenset(
    "a an the and or but if of to in on at for with by from is are was were be been it its this that these those "
    "i you we they he she my your our their me us them do does did can could would should will shall what which "
    "who whom how when where why there here so as than then also just about please tell know need want".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def requested_shard(assistant_text: str, held: list[Shard]) -> Shard | None:
    """The held-back shard an assistant's question asks for, if any (ON_REQUEST).

    A shard counts as requested when the assistant asks at least one question and the
    question shares content words with the shard; the best overlap wins, ties go to the
    earliest shard.
    """
    questions = [q for q in re.split(r"(?<=[?])\s+|\n+", assistant_text) if q.strip().endswith("?")]
    if not questions or not held:
        return None
    asked = set().union(*(_content_words(q) for q in questions))
    best: tuple[int, Shard] | None = None
    for shard in held:
        overlap = len(asked & _content_words(shard.text))
        if overlap and (best is None or overlap > best[0]):
            best = (overlap, shard)
    return best[1] if best else None


# --- the text of a message ----------------------------------------------------------------------


def clean_message(text: str | None, max_chars: int | None) -> str:
    """Strip invisible control characters (emoji are kept whole); refuse empty and oversized messages.

    Args:
        text: What the participant typed.
        max_chars: The study's limit (None: no limit).

    Returns:
        The text as stored (newlines and tabs kept).

    Raises:
        MessageRejected: empty, whitespace-only or longer than ``max_chars``.
    """
    cleaned = strip_hidden(_lines(text))
    if not cleaned.strip():
        raise MessageRejected("Please write a message before sending.")
    if max_chars is not None and len(cleaned) > max_chars:
        raise MessageRejected(f"Your message is {len(cleaned):,} characters long; the limit is {max_chars:,}. Please shorten it.")
    return cleaned


def screen_message(text: str | None, max_chars: int | None) -> str:
    """As :func:`clean_message`, but a message with control characters is refused, not cleaned.

    What a participant sends from the page is stored exactly as written (line endings
    normalized), so one that would be stored differently is given back to check.

    Raises:
        MessageRejected: with the sentence to show.
    """
    cleaned = clean_message(text, max_chars)
    if cleaned != _lines(text):
        raise MessageRejected(
            "Your message contained invisible control characters. They have been removed: "
            "please check the message below and send it again."
        )
    return cleaned


def _lines(text: str | None) -> str:
    """The text with every line ending a newline."""
    return (text or "").replace("\r\n", "\n").replace("\r", "\n")


def as_sent(text: str | None) -> str:
    """How a message that passes :func:`screen_message` is stored."""
    return _lines(text)


# --- a message read once -------------------------------------------------------------------------


class _Said(Protocol):
    """A stored turn as the rules read it."""

    @property
    def role(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def content(self) -> str: ...

    @property
    def shards(self) -> list[int]: ...

    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class Message:
    """A user message as the rules let it through."""

    content: str
    """The text as stored."""
    shards: list[int]
    """Shard ids it is recorded as revealing."""
    model_content: str | None
    """What the model sees instead of ``content`` (SNOWBALL), else None."""
    found: dict[str, list[int]] | None
    """What the text was found to carry beyond the pick, to log (:meth:`CardCheck.record`)."""


@dataclass(frozen=True)
class Progress:
    """Where a conversation stands, as the rules of its next message see it."""

    reveal: str
    """The condition's reveal mode."""
    shards: list[Shard]
    """Every piece of the task, in reveal order (:func:`item_shards`)."""
    opening: Opening
    """The condition's canonical first message."""
    turns: Sequence[_Said]
    """The conversation's turns so far, in order."""

    @property
    def user_turns(self) -> int:
        """User turns written by the participant or simulator (lab-made recaps excluded)."""
        return sum(1 for t in self.turns if t.role == "user" and t.source != "lab")

    @property
    def revealed(self) -> set[int]:
        """Shard ids revealed by user turns so far."""
        return revealed(self.turns)

    @property
    def remaining(self) -> list[Shard]:
        """Shards not yet revealed, in order."""
        return remaining(self.shards, self.revealed)

    @property
    def awaiting_reply(self) -> bool:
        """True when the last turn needs an assistant reply (a user turn, or a failed reply)."""
        convo = [t for t in self.turns if t.role in ("user", "assistant")]
        return bool(convo) and (convo[-1].role == "user" or convo[-1].error is not None)

    @property
    def whole(self) -> bool:
        """The task is one card: FULL, CONCAT, or an item of a single piece."""
        return self.reveal in WHOLE_TASK or len(self.shards) == 1

    def requested(self) -> int | None:
        """ON_REQUEST: the held card the assistant's latest reply asks for, if any."""
        if self.reveal != "ON_REQUEST" or self.user_turns == 0 or self.awaiting_reply:
            return None
        last = next((t for t in reversed(self.turns) if t.role == "assistant" and t.error is None), None)
        if last is None:
            return None
        shard = requested_shard(last.content, self.remaining)
        return shard.id if shard is not None else None

    def choices(self) -> list[int]:
        """Cards the next message may share (the first message shares the opening by itself)."""
        if self.user_turns == 0 or self.whole:
            return []
        if self.reveal == "ON_REQUEST":
            asked = self.requested()
            return [asked] if asked is not None else []
        return [s.id for s in self.remaining]

    def go_ahead(self) -> str | None:
        """ON_REQUEST: the suggested reply when the assistant asked for nothing held back."""
        if self.reveal != "ON_REQUEST" or self.user_turns == 0 or not self.remaining or self.requested() is not None:
            return None
        return GO_AHEAD

    def read(
        self,
        text: str | None,
        picked: list[int] | None,
        *,
        source: str,
        policy: CarriedCards,
        max_chars: int | None,
        exact: bool = False,
        offered_only: bool = False,
    ) -> Message:
        """Every rule a new user message passes, once: its text, its cards, the model's view.

        Args:
            text: The message as written.
            picked: Shard ids the sender says it reveals (ignored for the first message,
                which reveals the opening).
            source: ``participant`` (its text is read for the cards it carries,
                :func:`check_cards`) or ``simulator`` (checked by the simulator's own rules).
            policy: The study's ``plan.carried_cards``.
            max_chars: The study's ``plan.max_message_chars`` (None: no limit, for messages
                built from the item rather than written by a person).
            exact: Refuse a text with control characters instead of cleaning it
                (:func:`screen_message`; the participant page).
            offered_only: Refuse a pick that is not among :meth:`choices` (the participant
                page, where ON_REQUEST cards open only when asked for).

        Raises:
            MessageRejected: the text (empty, too long, control characters) or the cards
                (not offered now, unknown, more than one new); :class:`CardsRefused` when
                the text itself carries more than one new card under the ``ask`` policy.
        """
        content = screen_message(text, max_chars) if exact else clean_message(text, max_chars)
        first, done = self.user_turns == 0, self.revealed
        if offered_only and not first:
            offered = self.choices()
            for card in picked or []:
                if card not in offered and card not in done:
                    if self.reveal == "ON_REQUEST":
                        raise MessageRejected(f"Card {card} can be shared only when the assistant asks for it.")
                    raise MessageRejected(f"Card {card} cannot be shared now.")
        shards = message_shards(self.shards, done, picked, first=first, opening=self.opening)
        found = None
        if source == "participant":
            check = check_cards(
                self.shards, done, shards, content, first=first, reveal=self.reveal, policy=policy, opening=self.opening
            )
            found = check.record()
            if check.refusal is not None:
                raise CardsRefused(check.refusal, found)
            shards = check.shards
        model_content = snowball_content(self.reveal, self.shards, done, shards, content, first=first)
        return Message(content, shards, model_content, found)
