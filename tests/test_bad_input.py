"""Hostile and malformed input through every door a person can reach.

``tests/data/bad_inputs.jsonl`` holds the corpus: chat messages, model replies to render,
survey answers, study specs, item files, dataset files and staff form values. Each case
says which door it goes through and what must happen:

- ``refused``: the lab's own error with a message a person can act on (never a traceback
  or another exception), and nothing written;
- ``accepted``: taken as it is (``expect_value`` when the lab normalises it);
- ``safe``: a model reply whose rendering fetches nothing and runs nothing.

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
from sqlalchemy import Engine, func, select

from lab.accounts import AccountError, create_account
from lab.db import transaction
from lab.dialogue import MessageRejected
from lab.flow import AnswersRejected, check_answers, screen_message
from lab.items import ItemError, read_items
from lab.items._clamber import import_clamber
from lab.items._falseqa import import_falseqa
from lab.items._lost_in_conversation import import_lost_in_conversation
from lab.render import model_markdown
from lab.schema import Account
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


def _run(case: dict[str, Any], tmp_path: Path, engine: Engine) -> tuple[str, Any]:
    """Send one case through its door: ("refused", message) or ("accepted", value)."""
    target = case["target"]
    value = _input(case)
    try:
        if target == "chat":
            return "accepted", screen_message(value, 4000)
        if target == "reply":
            return "accepted", model_markdown(value)
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
def test_bad_input(case: dict[str, Any], tmp_path: Path, sqlite_engine: Engine) -> None:
    with transaction(sqlite_engine) as s:
        accounts_before = s.scalar(select(func.count()).select_from(Account))
    outcome, value = _run(case, tmp_path, sqlite_engine)
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
    else:
        assert expect == "safe" and outcome == "accepted"
        assert not _FETCHING_IMAGE.search(value), f"an image survives: {value!r}"
        assert not _SCRIPT_LINK.search(value), f"a script link survives: {value!r}"
