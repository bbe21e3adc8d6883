"""A study keeps its spec as written (comments, order) beside the normalised form, and offers it to edit and export."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lab.console import check_spec_text, spec_source
from lab.studies import get_study, load_study, load_study_file

SPEC = """\
# A study written by hand: this comment must survive.
title: Tiny study   # the title comes first here
slug: tiny
consent: You agree.
instructions: Chat.
models:
  bot: {model: lab/scripted}
conditions:
  full: {model: bot}
items:
  - {id: q1, kind: open, prompt: Hello}
"""


def test_uploaded_text_is_kept_and_offered_for_editing(sqlite_engine: Engine) -> None:
    d = check_spec_text(SPEC, "tiny.yaml")
    with Session(sqlite_engine) as s, s.begin():
        load_study(s, d, "upload:tiny.yaml")
    with Session(sqlite_engine) as s:
        study = get_study(s, "tiny")
        assert study.spec_text == SPEC
        assert "comment" not in str(study.spec)  # the normalised form is still what the lab runs on
        text, _ = spec_source(study)
    assert text == SPEC


def test_a_file_keeps_its_text_and_new_comments_replace_it(sqlite_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    with Session(sqlite_engine) as s, s.begin():
        load_study_file(s, path)
    path.unlink()  # the file is gone: the stored text is what is offered
    recommented = SPEC.replace("must survive", "was edited")
    with Session(sqlite_engine) as s, s.begin():
        result = load_study(s, check_spec_text(recommented, "tiny.yaml"), "console:erin")
        assert result.action == "unchanged" and result.study.version == 1
    with Session(sqlite_engine) as s:
        assert spec_source(get_study(s, "tiny"))[0] == recommented


def test_text_that_no_longer_gives_the_study_is_not_offered(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as s, s.begin():
        study = load_study(s, check_spec_text(SPEC, "tiny.yaml"), "upload:tiny.yaml").study
        study.spec_text = SPEC.replace("prompt: Hello", "prompt: Goodbye")  # as if edited behind the lab's back
    with Session(sqlite_engine) as s:
        text, _ = spec_source(get_study(s, "tiny"))
    assert "Hello" in text and "comment" not in text  # the regenerated spec instead


def test_cli_exports_the_text_as_written(tmp_path: Path) -> None:
    from lab.cli import main

    assert main(["migrate"]) == 0
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    assert main(["study", "load", str(path)]) == 0
    out = tmp_path / "out.yaml"
    assert main(["study", "export", "tiny", "--out", str(out)]) == 0
    assert out.read_text() == SPEC
    assert main(["study", "export", "nope"]) == 1
