"""``python -m lab chat``: converse under a study condition in the terminal, logged like the web page.

The conversation is stored as a ``pilot`` participant so charts and exports can leave it
out. Shard cards are shown; in revealing conditions each message may reveal one card:

- ``/3 your words`` sends your words and reveals card 3; ``/3`` alone sends card 3 as written;
- an empty first message sends the opening card as written;
- ``/retry`` asks again after a model error, ``/cards`` shows the cards, ``/done`` ends with an answer, ``/quit`` gives up;
- Ctrl-C while the assistant writes stops the reply (what arrived is kept as partial).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TextIO

from sqlalchemy import select

from . import llm
from .db import get_engine, transaction
from .dialogue import Conversation, ConversationOver, start_session
from .errors import LabError
from .participants import create_participant
from .reveal import WHOLE_TASK, MessageRejected
from .schema import Participant
from .setup import UnknownName
from .spec import StudyDefinition
from .studies import definition, get_study

_CARD = re.compile(r"^/(\d+)(?:\s+(.*))?$", re.S)


class NoItemFits(LabError, LookupError):
    """A condition that applies to none of the study's items."""


def pick_item(d: StudyDefinition, condition: str, item_id: str | None) -> str:
    """The requested item, or the first item the condition applies to.

    Raises:
        UnknownName: the study has no item ``item_id``.
        NoItemFits: no item of the study fits the condition.
    """
    cond = d.spec.conditions[condition]
    if item_id is not None:
        if item_id not in {it.id for it in d.items}:
            raise UnknownName(f"unknown item '{item_id}': use the id of one of the study's items")
        return item_id
    for it in d.items:
        if cond.applies_to(it):
            return it.id
    raise NoItemFits(f"no item of the study fits condition '{condition}': choose another --condition")


def _show_cards(conv: Conversation, out: TextIO) -> None:
    revealed = conv.revealed
    for shard in conv.shards:
        mark = "shared " if shard.id in revealed else "       "
        out.write(f"  [{shard.id}] {mark}{shard.text}\n")


def run_chat(
    slug: str,
    condition: str,
    *,
    model: str | None = None,
    item_id: str | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run one conversation in the terminal; returns the conversation (session) id."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    engine = get_engine()
    with transaction(engine) as s:
        study = get_study(s, slug)
        d = definition(study)
        d.require_runnable(condition, model)
        key = pick_item(d, condition, item_id)
        participant = create_participant(s, study, kind="pilot", status="active")
        chat = start_session(s, participant, key, condition, model_override=model)
        session_id = chat.id
    conv = Conversation.load(engine, session_id)
    out.write(
        f"conversation {session_id}: study '{slug}', condition '{condition}' ({conv.reveal}), item '{key}', model {conv.model}\n"
    )
    _introduce(conv, out)
    outcome = _converse(conv, stdin, out)
    conv.finish(outcome)
    conv.run_probe()
    with transaction(engine) as s:
        chat_participant = s.scalar(select(Participant).where(Participant.id == participant.id))
        if chat_participant is not None:
            chat_participant.status = "completed"
    out.write(f"\nconversation {session_id} ended ({outcome}); {len(conv.turns)} turns stored.\n")
    return session_id


def _introduce(conv: Conversation, out: TextIO) -> None:
    """The commands, and the task or its cards."""
    out.write("commands: /N reveals card N, /cards, /retry, /done, /quit\n\n")
    if conv.reveal in WHOLE_TASK:
        out.write("The task (send it as is with an empty line, or in your own words):\n")
        out.write(conv.opening().text + "\n\n")
    else:
        out.write("Your task cards (card 1 opens the conversation):\n")
        _show_cards(conv, out)
        out.write("\n")


def _converse(conv: Conversation, stdin: TextIO, out: TextIO) -> str:
    """Read the participant's lines and send them until the conversation ends; return its outcome."""
    outcome = "gave_up"
    while True:
        if (turn := conv.recap_if_due()) is not None:
            out.write(f"you (recap)> {turn.content}\n")
            _stream_reply(conv, out)
            continue
        if reason := conv.over_reason():
            outcome = reason
            break
        out.write("you> ")
        out.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if line.strip() == "/quit":
            break
        if line.strip() == "/done":
            outcome = "answered"
            break
        if line.strip() == "/retry":
            if conv.awaiting_reply:
                conv.log_event("retry")
                _stream_reply(conv, out)
            continue
        if line.strip() == "/cards":
            _show_cards(conv, out)
            continue
        message = _message(conv, line)
        if isinstance(message, str):
            out.write(f"  ({message})\n")
            continue
        text, shards = message
        try:
            conv.send(text, shards, source="participant")
        except MessageRejected as e:
            out.write(f"  ({e})\n")
            continue
        except ConversationOver as e:
            out.write(f"  ({e})\n")
            outcome = "turn_limit"
            break
        _stream_reply(conv, out)
    return outcome


def _message(conv: Conversation, line: str) -> tuple[str, list[int]] | str:
    """The text to send and the card it reveals, from a typed line; or why it cannot be sent.

    ``/3 words`` sends the words and reveals card 3, ``/3`` alone sends card 3 as written,
    and an empty first line sends the opening card.
    """
    if m := _CARD.match(line.strip()):
        card = int(m.group(1))
        shard = next((x for x in conv.shards if x.id == card), None)
        if shard is None:
            return f"no card {card}"
        return m.group(2) or shard.text, [card]
    if conv.user_turns == 0 and not line.strip():
        return conv.opening().text, []
    return line, []


def _stream_reply(conv: Conversation, out: TextIO) -> None:
    out.write("assistant> ")
    out.flush()
    reply = conv.reply(stream=True)
    pieces = iter(reply)
    try:
        for piece in pieces:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        pieces.close()
        conv.log_event("stop", {"chars": len(reply.text)})
        out.write("  [stopped]")
    except llm.ModelError as e:
        out.write(f"\n  (the model failed: {e.message} — /retry, or /quit)")
    out.write("\n\n")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``chat`` to the command line."""
    sp = sub.add_parser("chat", help="converse under a study condition in the terminal (stored as a pilot)")
    sp.add_argument("slug")
    sp.add_argument("--condition", required=True)
    sp.add_argument("--model", help="a model id of the study or a litellm model string, replacing the condition's")
    sp.add_argument("--item", help="item id (default: the first item the condition applies to)")
    sp.set_defaults(func=lambda a: run_chat(a.slug, a.condition, model=a.model, item_id=a.item))
