"""Participant links: personal links in a CSV (tokens stored only as hashes), the open Prolific link."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.links import LinkError, issued_links, links_csv, make_personal_links, open_link
from lab.participants import by_token
from lab.schema import Participant
from lab.spec import load_spec_file, parse_spec
from lab.studies import get_study, load_study, set_status


@pytest.fixture
def demo(sqlite_engine: Engine, scripted_demo_path: Path) -> Engine:
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, load_spec_file(scripted_demo_path))
    return sqlite_engine


def _token(url: str) -> str:
    return parse_qs(urlparse(url).query)["t"][0]


def test_personal_links_invite_participants_and_store_only_hashes(demo: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_PUBLIC_URL", "https://lab.example.org/")
    with Session(demo) as s, s.begin():
        study = get_study(s, "demo")
        links = make_personal_links(s, study, 25)
        text = links_csv(study, links)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 25 and rows[0].keys() == {"study", "version", "participant", "link"}
    assert all(r["link"].startswith("https://lab.example.org/?t=") for r in rows)
    tokens = [_token(r["link"]) for r in rows]
    assert len(set(tokens)) == 25 and all(len(t) >= 40 for t in tokens)
    with Session(demo) as s:
        participants = s.scalars(select(Participant)).all()
        assert {p.status for p in participants} == {"invited"} and {p.kind for p in participants} == {"human"}
        stored = " ".join(f"{p.token_hash} {p.plan} {p.prolific_pid}" for p in participants)
        for row, token in zip(rows, tokens, strict=True):
            assert token not in stored
            found = by_token(s, token)
            assert found is not None and found.id == int(row["participant"])
        assert issued_links(s, get_study(s, "demo")) == 25


@pytest.mark.parametrize("count", [0, -1, 10_001])
def test_link_count_is_bounded(demo: Engine, count: int) -> None:
    with Session(demo) as s, s.begin(), pytest.raises(LinkError, match="between 1 and"):
        make_personal_links(s, get_study(s, "demo"), count)


def test_no_links_for_a_closed_study(demo: Engine) -> None:
    with Session(demo) as s, s.begin():
        set_status(s, "demo", "close")
    with Session(demo) as s, s.begin(), pytest.raises(LinkError, match="closed"):
        make_personal_links(s, get_study(s, "demo"), 1)


def test_open_prolific_link_and_completion_code(demo: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_PUBLIC_URL", "https://lab.example.org")
    with Session(demo) as s:
        link = open_link(get_study(s, "demo"))
    assert link.url == (
        "https://lab.example.org/?study=demo&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert link.completion_code == "RLDEMO01"
    assert link.completion_url == "https://app.prolific.com/submissions/complete?cc=RLDEMO01"


def test_open_link_without_a_completion_code(sqlite_engine: Engine, study_spec: Callable[..., str]) -> None:
    text = study_spec(
        "nocode",
        conditions={"full": {"model": "bot"}},
        items=[{"id": "a", "kind": "sharded", "shards": [{"id": 1, "text": "task"}]}],
    )
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, parse_spec(text, "nocode.yaml")).study
        link = open_link(study, "http://x")
    assert link.completion_code is None and link.completion_url is None
    assert link.url.startswith("http://x/?study=nocode&PROLIFIC_PID=")


@pytest.mark.usefixtures("scripted_demo_init")
def test_links_command_writes_the_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main
    from lab.db import get_engine

    assert main(["init"]) == 0
    out = tmp_path / "links.csv"
    assert main(["links", "demo", "--count", "7", "--out", str(out), "--prolific"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 7 personal links" in printed and "cannot be shown again" in printed and "PROLIFIC_PID" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7
    with Session(get_engine()) as s:
        assert all(by_token(s, _token(r["link"])) is not None for r in rows)


@pytest.mark.usefixtures("scripted_demo_init")
def test_links_command_errors_are_one_line_and_leave_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main
    from lab.db import get_engine

    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["links", "demo", "--count", "3", "--out", str(tmp_path / "missing" / "links.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --out: the folder") and err.count("\n") == 1
    assert main(["links", "nope", "--count", "3", "--out", str(tmp_path / "l.csv")]) == 1
    assert "no study with slug 'nope'" in capsys.readouterr().err
    with Session(get_engine()) as s:
        assert s.scalars(select(Participant)).all() == []


@pytest.mark.usefixtures("scripted_demo_init")
def test_prolific_link_command(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["init"]) == 0
    assert main(["prolific-link", "demo"]) == 0
    out = capsys.readouterr().out
    assert "?study=demo&PROLIFIC_PID={{%PROLIFIC_PID%}}" in out and "completion code: RLDEMO01" in out
