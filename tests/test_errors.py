"""Every error the lab raises on purpose derives from LabError, and the command line reports it in one line."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import lab
from lab.errors import CommandError, LabError

INTERNAL = {"lab.llm._generation.LocalTimeout", "lab.scoring._sandbox_child.TestTimeout"}
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


def test_one_report_error() -> None:
    """The comparison's options and a simulation run's report refuse with the same class."""
    from lab import report, simulate

    named = sorted(name for name, cls in lab_exceptions().items() if cls.__name__ == "ReportError")
    assert named == ["lab.errors.ReportError"]
    assert simulate.ReportError is report.ReportError


ROOT = Path(__file__).resolve().parent.parent
PLAIN = frozenset({"ValueError", "LookupError", "KeyError", "IndexError"})
"""Built-in errors a refusal must never be raised as: the command line reports them as bugs."""

PROGRAMMING_ERRORS: dict[tuple[str, str], str] = {
    # Argument checks of library calls whose callers (the command line, the pages) have
    # already refused a person's bad value with a LabError: reaching these is a caller bug.
    ("lab/simulate/_runner.py", "__init__"): "rpm ≤ 0 (argparse's _positive_float refuses it first)",
    ("lab/simulate/_launch.py", "run_simulation"): "concurrency, processes < 1, worker with processes (checked by the CLI)",
    ("lab/simulate/_worker.py", "__init__"): "lease ≤ 0 (argparse's _positive_float refuses it first)",
    ("lab/llm/_rate_limiter.py", "__init__"): "rpm or burst out of range (from the runner's checked rpm)",
    ("lab/simulate/_breaker.py", "__init__"): "a breaker time ≤ 0 (run_simulation passes its own default or a test's)",
    ("lab/web/guard.py", "go_to"): "a path that is not local (the pages pass paths built on the server, through safe_next)",
    ("lab/assign.py", "release"): "a release status outside RELEASED (callers pass constants)",
    ("lab/participants.py", "create_participant"): "a participant kind outside KINDS (callers pass constants)",
    ("lab/participants.py", "insert_participant"): "a participant kind outside KINDS (callers pass constants)",
    ("lab/charts.py", "image"): "an image format other than png/svg (callers pass constants)",
    ("lab/metrics.py", "degradation"): "figures not computed by reveal (a call-order bug)",
    ("lab/judge/_llm_judge.py", "__init__"): "an empty model name (get_judge turns an empty --model into the rule judge)",
    ("lab/judge/_evaluate.py", "judge_case"): "a layer other than S, P, G (the sets are built per layer)",
    ("lab/judge/_scoring.py", "clarification_score"): "a category a judge cannot produce",
    ("lab/judge/_grounding.py", "join_codes"): "a grounding code outside the codebook (judges and pages pass codebook codes)",
    ("lab/judge/_ruleset.py", "rule_table"): "a rule table listing one id twice (the lab's own rules)",
    ("lab/llm/_errors.py", "__init__"): "a ModelError kind outside KINDS (the lab's own mappings)",
    ("lab/llm/_scripted.py", "__init__"): "a scripted failure kind outside FAILURE_KINDS (tests queue them)",
    ("lab/llm/_scripted.py", "_scripted_reply"): "an unknown script (check_params refused it when the spec was validated)",
    ("lab/llm/_scripted.py", "plan"): "unusable scripted params (check_params refused them when the spec was validated)",
    # Raised and caught inside the module, where they become a problem text or a not-scored result.
    ("lab/llm/_validation.py", "resolve_provider"): "caught by check_model and missing_env, which report it as a problem",
    ("lab/scoring/_code.py", "_cases"): "caught by _setup, which records the item as not scorable",
    # Turned into SettingError (naming the variable) by lab.settings._resolve.
    ("lab/settings.py", "_positive_int"): "converted to SettingError by _resolve",
    ("lab/settings.py", "_flag"): "converted to SettingError by _resolve",
    ("lab/settings.py", "_url"): "converted to SettingError by _resolve",
    ("lab/settings.py", "_database_url"): "converted to SettingError by _resolve",
}
"""Raises of a plain built-in error that are programming errors, not refusals, by (file, function), with why."""

VALIDATOR_DECORATORS = frozenset({"field_validator", "model_validator"})
"""pydantic turns a ValueError raised in a validator into the ValidationError the lab reports as SpecError/ItemError."""


def _plain_raises(path: Path) -> list[tuple[str, int, str]]:
    """(function, line, exception) for every ``raise ValueError(...)``-like statement outside validators."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, function: str, in_validator: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorators = {(d.func if isinstance(d, ast.Call) else d) for d in child.decorator_list}
                names = {getattr(d, "id", getattr(d, "attr", "")) for d in decorators}
                visit(child, child.name, bool(names & VALIDATOR_DECORATORS))
                continue
            if isinstance(child, ast.Raise) and child.exc is not None and not in_validator:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(exc, ast.Name) and exc.id in PLAIN:
                    found.append((function, child.lineno, exc.id))
            visit(child, function, in_validator)

    visit(ast.parse(path.read_text()), "<module>", False)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "lab").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_refusals_are_lab_errors(path: Path) -> None:
    """A refusal a person can cause is a LabError subclass; a plain built-in error only for a listed programming error."""
    rel = str(path.relative_to(ROOT))
    strays = [
        f"{rel}:{line} {function}() raises {exc}"
        for function, line, exc in _plain_raises(path)
        if (rel, function) not in PROGRAMMING_ERRORS
    ]
    assert not strays, "raise a LabError subclass that says what to do (or list a programming error with its reason): " + (
        "; ".join(strays)
    )


def test_programming_error_list_is_current() -> None:
    """Every listed exception still exists, so the list cannot keep stale permissions."""
    stale = [key for key in PROGRAMMING_ERRORS if not any(function == key[1] for function, _, _ in _plain_raises(ROOT / key[0]))]
    assert not stale, f"no longer raise a plain error, remove from PROGRAMMING_ERRORS: {stale}"


def test_cli_reports_a_plain_error_as_a_bug(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line catches LabError only: a LookupError is a bug (exit 2), never dressed as a refusal."""
    from lab import cli

    def fail(_args: object) -> None:
        raise LookupError("no such thing")

    monkeypatch.setattr(cli, "cmd_migrate", fail)
    assert cli.main(["migrate"]) == 2
    assert capsys.readouterr().err.startswith("error: unexpected LookupError: no such thing")


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
