"""Every error the lab raises on purpose derives from LabError, and the command line reports it in one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import lab
from lab.errors import CommandError, LabError

INTERNAL = {"lab.llm._local.LocalTimeout", "lab.scoring._sandbox_child.TestTimeout"}
"""Caught inside their modules (a ModelError; a failed test case in the code sandbox's child); never reach a caller."""


def lab_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(lab.__path__, "lab."):
        if info.name in ("lab.__main__", "lab.ui", "lab.web.guard"):  # a command runner; Streamlit pages
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_public_lab_error_derives_from_lab_error() -> None:
    errors = lab_exceptions()
    assert len(errors) >= 13
    strays = sorted(name for name, cls in errors.items() if not issubclass(cls, LabError) and name not in INTERNAL)
    assert not strays, f"derive these from lab.errors.LabError: {strays}"


def test_errors_keep_their_built_in_bases() -> None:
    from lab.accounts import AccountError
    from lab.simulate import ReportError
    from lab.spec import SpecError
    from lab.studies import StudyError

    assert issubclass(SpecError, ValueError) and issubclass(AccountError, ValueError) and issubclass(StudyError, ValueError)
    assert issubclass(ReportError, LookupError)


def test_cli_reports_any_lab_error_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab import cli

    class Refused(LabError):
        pass

    def refuse(_args: object) -> None:
        raise Refused("study 'x': refused for a reason")

    monkeypatch.setattr(cli, "cmd_migrate", refuse)
    assert cli.main(["migrate"]) == 1
    assert capsys.readouterr().err == "error: study 'x': refused for a reason\n"
    assert issubclass(CommandError, LabError)
