"""Participant links: guessed and near-miss tokens lead nowhere, and one link never shows another's data."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.flow import Flow, LinkNotValid, Visit, resolve_link
from lab.participants import create_participant, new_token
from lab.schema import ChatSession, Participant, Turn
from lab.spec import parse_spec
from lab.studies import load_study, set_status


def open_study(engine: Engine, spec: str) -> int:
    """Load ``spec`` and open it; returns the study id."""
    with Session(engine) as s, s.begin():
        study = load_study(s, parse_spec(spec, "study.yaml")).study
        set_status(s, study.slug, "open")
        return study.id


def invite(engine: Engine, study_id: int) -> tuple[int, str]:
    """A participant with a personal link; returns their id and token."""
    token = new_token()
    with Session(engine) as s, s.begin():
        from lab.schema import Study

        study = s.get(Study, study_id)
        assert study is not None
        return create_participant(s, study, token=token).id, token


def near_misses(token: str) -> list[str]:
    """Tokens one small mistake away from ``token``: a character changed, cut, added, case flipped."""
    out: set[str] = set()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in (0, len(token) // 2, len(token) - 1):
        out.add(token[:i] + next(c for c in alphabet if c != token[i]) + token[i + 1 :])
        if token[i].isalpha():
            out.add(token[:i] + token[i].swapcase() + token[i + 1 :])
    out |= {token[:-1], token[1:], token[: len(token) // 2], token + "A", "A" + token, token + "=", token.swapcase()}
    out |= {f" {token}x", token.upper(), token.lower()}
    out.discard(token)
    return sorted(out)


def test_random_and_near_miss_tokens_never_resolve(engine: Engine, study_spec: Callable[..., str]) -> None:
    study_id = open_study(engine, study_spec("links"))
    pid, token = invite(engine, study_id)
    assert resolve_link(engine, {"t": token}) == Visit(pid)
    guesses = near_misses(token) + [new_token() for _ in range(50)] + [secrets.token_hex(32), "0" * 43, "%00", "' OR 1=1 --"]
    for guess in guesses:
        with pytest.raises(LinkNotValid):
            resolve_link(engine, {"t": guess})
        # A bad token beside a good open-study slug still leads nowhere: the token wins.
        with pytest.raises(LinkNotValid):
            resolve_link(engine, {"t": guess, "study": "links"})
    with Session(engine) as s:
        assert len(s.scalars(select(Participant)).all()) == 1, "a guessed token must never mint a participant"


def test_one_link_never_yields_another_participants_data(engine: Engine, study_spec: Callable[..., str]) -> None:
    study_id = open_study(engine, study_spec("pair"))
    people = [invite(engine, study_id) for _ in range(2)]
    sessions: dict[int, int] = {}
    for pid, token in people:
        visit = resolve_link(engine, {"t": token})
        assert visit.participant_id == pid
        flow = Flow.load(engine, visit.participant_id)
        flow.consent(True)
        flow.begin()
        conv = flow.conversation()
        conv.send(f"message only participant {pid} wrote")
        conv.reply().consume()
        sessions[pid] = conv.session_id
    assert len(set(sessions.values())) == 2
    for pid, token in people:
        flow = Flow.load(engine, resolve_link(engine, {"t": token}).participant_id)
        conv = flow.conversation()
        assert conv.session_id == sessions[pid]
        texts = " ".join(t.content for t in conv.turns)
        assert f"participant {pid} wrote" in texts
        other = next(o for o, _ in people if o != pid)
        assert f"participant {other} wrote" not in texts
    with Session(engine) as s:
        owners = {row.id: row.participant_id for row in s.execute(select(ChatSession.id, ChatSession.participant_id))}
        for turn in s.scalars(select(Turn)):
            if "wrote" in turn.content and turn.role == "user":
                assert f"participant {owners[turn.session_id]} wrote" in turn.content
