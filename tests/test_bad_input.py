"""Hostile and malformed input through every door a person can reach.

``tests/data/bad_inputs.jsonl`` holds the corpus: chat messages, model replies to render,
survey answers, study specs, item files, dataset files and staff form values. Each case
says which door it goes through and what must happen:

- ``refused``: the lab's own error with a message a person can act on (never a traceback
  or another exception), and nothing written;
- ``accepted``: taken as it is (``expect_value`` when the lab normalises it);
- ``safe``: a model reply whose rendering fetches nothing and runs nothing;
- ``shown-as-text``: a participant message, stored with a model reply echoing it, shown by
  a staff page (``page-<name>``, run in-process) or written into the HTML report
  (``report``): the participant's words verbatim, never read as Markdown, and the reply as
  Markdown with no image left.

A case whose input holds the placeholder ``…BIG…`` has it replaced by ``big_len`` copies of
``big_char``, so the file stays small.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from lab.accounts import AccountError, create_account
from lab.db import transaction
from lab.dialogue import MessageRejected
from lab.flow import AnswersRejected, check_answers, screen_message
from lab.items import ItemError, read_items
from lab.items._clamber import import_clamber
from lab.items._falseqa import import_falseqa
from lab.items._lost_in_conversation import import_lost_in_conversation
from lab.render import model_markdown
from lab.schema import Account, ChatSession, Turn
from lab.spec import QuestionSpec, SpecError, load_spec_file, parse_spec

CORPUS = Path(__file__).parent / "data" / "bad_inputs.jsonl"
BIG = "\u2026BIG\u2026"
CLEAR_ERRORS = (MessageRejected, AnswersRejected, SpecError, ItemError, AccountError)

QUESTIONS = [
    QuestionSpec(key="understood", text="The assistant understood me.", type="likert", scale=5),
    QuestionSpec(key="corrected", text="Did it correct you?", type="yesno"),
    QuestionSpec(key="age", text="Your age", type="number", required=False),
    QuestionSpec(key="comments", text="Anything else?", type="text", required=False),
]


def _cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _expand(value: Any, case: dict[str, Any]) -> Any:
    if isinstance(value, str) and BIG in value:
        return value.replace(BIG, case["big_char"] * case["big_len"])
    if isinstance(value, dict):
        return {k: _expand(v, case) for k, v in value.items()}
    return value


def _input(case: dict[str, Any]) -> Any:
    if "input_b64" in case:
        return base64.b64decode(case["input_b64"])
    return _expand(case["input"], case)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def test_corpus_is_broad() -> None:
    cases = _cases()
    assert len(cases) >= 40
    assert len({c["id"] for c in cases}) == len(cases)
    doors = {c["target"] for c in cases}
    assert {"chat", "reply", "answers", "spec", "items", "account"} <= doors
    assert any(t.startswith("import-") for t in doors)


# What a rendered model reply may not contain: an image that would fetch, a script link.
_FETCHING_IMAGE = re.compile(r"!\[[^\]]*\]\s*[\(\[]")
_SCRIPT_LINK = re.compile(r"\]\(\s*<?\s*javascript:|^ {0,3}\[[^\]]+\]:\s*<?\s*javascript:", re.IGNORECASE | re.MULTILINE)


ECHO = "You said: {}"
"""The model reply stored after a ``shown-as-text`` message."""


def _stored_conversations(engine: Engine, message: str) -> None:
    """The annotation test study with two conversations whose first exchange is ``message`` and
    its echo, labelled by two annotators who disagree on it (so every staff page shows it)."""
    from annotation_data import accounts, conversations, load

    from lab import annotation as ann

    with Session(engine) as s, s.begin():
        study = load(s)
        ids = conversations(s, study, 2)
        for role, text in (("user", message), ("assistant", ECHO.format(message))):
            s.execute(update(Turn).where(Turn.session_id.in_(ids), Turn.role == role, Turn.index <= 2).values(content=text))
        names = {a.username: a.id for a in accounts(s, ["annotator1", "annotator2"])}
        accounts(s, ["experimenter1"], role="experimenter")
        ann.assign(s, "blindtest", list(names), 2)
        for name, code in (("annotator1", "ACK"), ("annotator2", "CLARIFY")):
            slot = ann.claim_next(s, "blindtest", names[name])
            assert slot is not None
            first = ann.conversation_view(s, slot.id, names[name]).turns[0]
            ann.record_label(s, slot.id, names[name], first.id, "G", code)


def _shown_by_page(name: str, message: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What a staff page shows once ``message`` is stored: ``text`` (shown verbatim), ``cells``
    (table cells) and ``markdown`` (everything Markdown renders: text, captions, alerts, headings)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import lab.ui
    from lab.db import get_engine, migrate
    from tests.pages.staff_session import sign_in_as

    lab.ui.engine.clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    engine = get_engine()
    migrate(engine)
    _stored_conversations(engine, message)
    sign_in_as(monkeypatch, engine, "annotator1" if name == "annotate" else "experimenter1")
    at = AppTest.from_file(str(Path(__file__).parents[1] / "pages" / f"{name}.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    shown: dict[str, list[str]] = {"text": [], "cells": [], "markdown": []}

    def walk(node: Any) -> None:
        value = getattr(node, "value", None)
        kind = getattr(node, "type", "")
        if hasattr(value, "to_numpy"):
            shown["cells"] += [str(v) for v in value.to_numpy().ravel()]
        elif kind == "text" and isinstance(value, str):
            shown["text"].append(value)
        elif isinstance(value, str):
            shown["markdown"].append(value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    lab.ui.engine.clear()
    return shown


def _shown_by_report(message: str, tmp_path: Path, engine: Engine) -> dict[str, list[str]]:
    """The HTML report of a study whose model string is ``message`` (a bundle can carry any)."""
    from lab import metrics, report, synth
    from lab.analysis_data import load_study

    synth.make_study(engine, "hostile", 12, exchanges=2, items_per_kind=2, seed=1)
    with Session(engine) as s, s.begin():
        s.execute(update(ChatSession).values(model=message))
    page = report.write_html(report.build(load_study(engine, "hostile"), metrics.Options(draws=10)), tmp_path / "r.html")
    return {"html": [page.read_text(encoding="utf-8")]}


def _run(case: dict[str, Any], tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """Send one case through its door: ("refused", message) or ("accepted", value)."""
    target = case["target"]
    value = _input(case)
    try:
        if target == "chat":
            return "accepted", screen_message(value, 4000)
        if target == "reply":
            return "accepted", model_markdown(value)
        if target.startswith("page-"):
            return "accepted", _shown_by_page(target.removeprefix("page-"), value, monkeypatch)
        if target == "report":
            return "accepted", _shown_by_report(value, tmp_path, engine)
        if target == "answers":
            return "accepted", check_answers(QUESTIONS, value)
        if target == "spec":
            return "accepted", parse_spec(value, "spec.yaml", base_dir=tmp_path)
        if target in ("spec-file", "items") or target.startswith("import-"):
            path = tmp_path / f"input-{case['id']}"
            path.write_bytes(_as_bytes(value))
            if target == "spec-file":
                return "accepted", load_spec_file(path)
            if target == "items":
                return "accepted", read_items(path)
            importer = {
                "import-falseqa": import_falseqa,
                "import-clamber": import_clamber,
                "import-lost-in-conversation": import_lost_in_conversation,
            }[target]
            return "accepted", importer(path)
        if target == "account":
            with transaction(engine) as s:
                return "accepted", create_account(s, value["username"], value["role"], value["password"]).username
    except CLEAR_ERRORS as e:
        return "refused", str(e)
    raise AssertionError(f"unknown door {target}")


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_bad_input(case: dict[str, Any], tmp_path: Path, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with transaction(sqlite_engine) as s:
        accounts_before = s.scalar(select(func.count()).select_from(Account))
    outcome, value = _run(case, tmp_path, sqlite_engine, monkeypatch)
    expect = case["expect"]
    if expect == "refused":
        assert outcome == "refused", f"{case['note']}: accepted as {str(value)[:200]!r}"
        assert value.strip(), "a refusal says why"
        assert "Traceback" not in value
        assert len(value) < 2000, "a refusal is a message, not a dump of the input"
        with transaction(sqlite_engine) as s:
            assert s.scalar(select(func.count()).select_from(Account)) == accounts_before, "nothing half-written"
    elif expect == "accepted":
        assert outcome == "accepted", f"{case['note']}: refused with {value!r}"
        if "expect_value" in case:
            assert value == case["expect_value"]
        elif case["target"] == "chat":
            assert value == _input(case), "participant text is kept verbatim"
    elif expect == "shown-as-text":
        assert outcome == "accepted"
        message = _input(case)
        if case["target"] == "report":
            _assert_report_shows_text(value["html"][0], message)
            return
        assert message in value["text"] or message in value["cells"], "the participant's words, verbatim"
        echo = ECHO.format(message)
        assert model_markdown(echo) in value["markdown"] or echo in value["cells"], "the reply, as safe Markdown"
        for body in value["markdown"]:
            assert message not in body, f"participant text read as Markdown: {body!r}"
            assert not _FETCHING_IMAGE.search(body), f"an image survives: {body!r}"
    else:
        assert expect == "safe" and outcome == "accepted"
        assert not _FETCHING_IMAGE.search(value), f"an image survives: {value!r}"
        assert not _SCRIPT_LINK.search(value), f"a script link survives: {value!r}"


def _assert_report_shows_text(page: str, message: str) -> None:
    """The report shows ``message`` escaped, as text, and no element of it refers outside the file."""
    import html
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.addresses: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            self.addresses += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "srcset", "action")]

    assert html.escape(message) in page, "the stored text, literally"
    found = Elements()
    found.feed(page)
    assert not {"img", "script", "iframe", "object", "link", "a"} & set(found.tags)
    assert all(a.startswith("#") for a in found.addresses), found.addresses
