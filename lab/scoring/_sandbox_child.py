"""The child process that runs model-written code against test cases.

This file is run as a script (``python -I _sandbox_child.py``) by :mod:`lab.scoring._sandbox`,
never imported by the lab: it must not import anything from the project. It reads one JSON
request from standard input, limits itself (memory, CPU time, file size, open files,
processes), gives up root for the ``nobody`` user when it has root, installs an audit hook
that refuses network, process creation, native-code loading and file writes outside its
working directory, and only then compiles the model's code. The verdict goes to the file
descriptor the request names (``result_fd``) as one JSON object.

Grading follows the LiveCodeBench runner the Lost in Conversation authors use: with a
function name, every test input line is a JSON argument and the return value must equal
the JSON output (a tuple counts as a list); without one, the code is a program that reads
standard input, and its output must match line by line (exactly, or as decimals). Each test
has its own time limit; the first failure ends the run.
"""

from __future__ import annotations

import ast
import io
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import partial
from types import ModuleType
from typing import Any
from unittest import mock

PRELUDE = "\n".join(
    [f"from {m} import *" for m in ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random")]
    + [f"from {m} import *" for m in ("statistics", "itertools", "functools", "operator", "io", "sys", "json")]
    + ["from builtins import *", "from typing import *"]
    + [f"import {m}" for m in ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random")]
    + [f"import {m}" for m in ("statistics", "itertools", "functools", "operator", "io", "sys", "json")]
    + ["sys.setrecursionlimit(50000)", ""]
)
"""The names the LiveCodeBench runner makes available to every solution."""

_RESULT_FD = 3
_NOBODY = 65534
_DENIED_EVENTS = (
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "pty.",
    "ctypes.",
    "os.chroot",
    "os.setuid",
    "os.chown",
    "os.chmod",
    "os.link",
    "os.symlink",
    "sys._current_frames",
    "resource.setrlimit",
    "resource.prlimit",
    "webbrowser.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "telnetlib.",
    "shutil.",
)
_DENIED_MODULES = frozenset(
    {"ctypes", "_ctypes", "cffi", "_cffi_backend", "multiprocessing", "_posixsubprocess", "socket", "_socket"}
)
_PATH_EVENTS = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.utime", "os.replace"})


class TestTimeout(Exception):
    """A test ran past its time limit."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise TestTimeout


_PRELOADED = (
    "string re datetime collections heapq bisect copy math random statistics itertools functools operator "
    "json typing fractions decimal array dataclasses enum numbers textwrap calendar time hashlib cmath queue "
    "graphlib string unicodedata pprint abc contextlib"
).split()
"""Modules imported before the child gives up root: afterwards it may not be able to read them."""


def _limit(request: dict[str, Any]) -> None:
    for name in _PRELOADED:
        __import__(name)
    limits = request["limits"]
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    if os.getuid() == 0 and request.get("drop_root", True):
        # RLIMIT_NPROC binds only users other than root, so it is set for nobody.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"], limits["processes"]))
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)


def _inside(path: Any, root: str) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor was checked when it was opened
    try:
        full = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return full == root or full.startswith(root + os.sep)


def _guard(root: str) -> None:
    """Refuse what model code must not do; an audit hook cannot be removed once added."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "import" and args and str(args[0]).split(".")[0] in _DENIED_MODULES:
            raise ImportError(f"the scoring sandbox does not allow importing {args[0]}")
        if event.startswith(_DENIED_EVENTS):
            raise PermissionError(f"the scoring sandbox does not allow {event}")
        if event == "open" and len(args) >= 2:
            path, mode = args[0], args[1]
            flags = args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
            )
            if writing and not _inside(path, root):
                raise PermissionError(f"the scoring sandbox allows writing only inside its own directory, not {path!r}")
        if event in _PATH_EVENTS and args and not all(_inside(a, root) for a in args[:2] if isinstance(a, (str, bytes))):
            raise PermissionError(f"the scoring sandbox allows {event} only inside its own directory")

    sys.addaudithook(hook)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit // 2] + "…" + text[-limit // 2 :]


def _compile(code: str, timeout: int) -> Any:
    signal.alarm(timeout)
    try:
        module = ModuleType("solution")
        exec(code, module.__dict__)  # noqa: S102 - running the model's code is the point, contained by this process
        return module.Solution() if "class Solution" in code else module
    finally:
        signal.alarm(0)


def _attempt(call: Callable[[], Any], timeout: int) -> tuple[Any, tuple[int, str] | None]:
    """One test's call under its time limit.

    Returns:
        The call's value and None; or None and, when the call did not return, the test's
        result code (-3 past the time limit, -4 raised) with the error that stopped it.
    """
    signal.alarm(timeout)
    try:
        got = call()
        signal.alarm(0)
    except TestTimeout:
        return None, (-3, "time limit exceeded")
    except BaseException as e:  # noqa: BLE001 - any failure of the model's code fails the test
        signal.alarm(0)
        return None, (-4, f"runtime error: {_short(repr(e))}")
    return got, None


def _failed(results: list[Any], error: str, given: Any, **shown: Any) -> dict[str, Any]:
    """The verdict once a test failed: results so far, why, and the input and ``shown`` values, shortened."""
    return {"results": results, "passed": False, "error": error, "input": _short(given)} | {
        k: _short(v) for k, v in shown.items()
    }


def _call_based(code: str, inputs: list[str], outputs: list[str], fn_name: str, timeout: int) -> dict[str, Any]:
    solution = _compile(PRELUDE + "\n\n" + code, timeout)
    method = getattr(solution, fn_name, None)
    if method is None:
        return {"results": [], "passed": False, "error": f"the code defines no '{fn_name}'"}
    args_per_test = [[json.loads(line) for line in inp.split("\n")] for inp in inputs]
    expected_per_test = [json.loads(out) for out in outputs]
    results: list[Any] = []
    for args, expected in zip(args_per_test, expected_per_test, strict=False):
        got, stopped = _attempt(partial(method, *args), timeout)
        if stopped is not None:
            results.append(stopped[0])
            return _failed(results, stopped[1], args)
        if isinstance(got, tuple):
            got = list(got)
        ok = got == expected
        results.append(bool(ok))
        if not ok:
            return _failed(results, "wrong answer", args, expected=expected, output=got)
    return {"results": results, "passed": True, "error": None}


def _program(code: str) -> str:
    """The program wrapped in a function, imports kept at the top (as the runner does)."""
    try:
        tree = ast.parse(code)
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)  # type: ignore[arg-type]  # unparse walks a list of nodes too
    except (SyntaxError, ValueError):
        pass
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        rest = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        wrapped = ast.FunctionDef(
            name="wrapped_function",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=rest,
            decorator_list=[],
            lineno=-1,
        )
        return PRELUDE + "\n" + ast.unparse(imports) + "\n" + ast.unparse(wrapped)  # type: ignore[arg-type]
    except (SyntaxError, ValueError, TypeError):
        return code


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(x) for x in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _same_output(got: str, expected: str) -> bool:
    got_lines, expected_lines = _lines(got), _lines(expected)
    if len(got_lines) != len(expected_lines):
        return False
    for a, b in zip(got_lines, expected_lines, strict=True):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        if da is None or db is None or da != db:
            return False
    return True


def _feed(method: Callable[[], Any], text: str) -> str:
    """What the program prints when standard input (and any file it opens) holds ``text``."""
    lines = iter(text.split("\n"))
    captured = io.StringIO()
    real_stdout = sys.stdout
    with (
        mock.patch("builtins.open", mock.mock_open(read_data=text)),
        mock.patch("sys.stdin", io.StringIO(text)),
        mock.patch("sys.stdin.readline", lambda *a: next(lines)),
        mock.patch("sys.stdin.readlines", lambda *a: text.split("\n")),
        mock.patch("sys.stdin.read", lambda *a: text),
    ):
        sys.stdout = captured
        try:
            method()
        except SystemExit:
            pass
        finally:
            sys.stdout = real_stdout
    return captured.getvalue()


def _standard_input(code: str, inputs: list[str], outputs: list[str], timeout: int) -> dict[str, Any]:
    solution = _compile(_program(code), timeout)
    method = getattr(solution, "wrapped_function", None)
    if method is None:
        return {"results": [], "passed": False, "error": "the program could not be wrapped"}
    results: list[Any] = []
    for given, expected in zip(inputs, outputs, strict=False):
        text = "\n".join(given) if isinstance(given, list) else given
        printed, stopped = _attempt(partial(_feed, method, text), timeout)
        if stopped is not None:
            results.append(stopped[0])
            return _failed(results, stopped[1], text)
        ok = _same_output(printed, expected)
        results.append(True if ok else -2)
        if not ok:
            return _failed(results, "wrong answer", text, expected=expected, output=printed)
    return {"results": results, "passed": True, "error": None}


def _run(request: dict[str, Any]) -> dict[str, Any]:
    timeout = int(request["timeout"])
    inputs, outputs = request["inputs"], request["outputs"]
    fn_name = request.get("fn_name")
    try:
        if fn_name:
            return _call_based(request["code"], inputs, outputs, fn_name, timeout)
        return _standard_input(request["code"], inputs, outputs, timeout)
    except TestTimeout:
        return {"results": [-3], "passed": False, "error": "time limit exceeded while loading the code"}
    except BaseException as e:  # noqa: BLE001 - code that does not even load fails every test
        return {"results": [-4], "passed": False, "error": f"the code does not run: {_short(repr(e))}"}


def main() -> None:
    """Read the request, contain this process, run the tests, write the verdict."""
    request = json.loads(sys.stdin.read())
    root = os.path.realpath(os.getcwd())
    sys.stdin = io.StringIO("")
    # What the code prints must not reach the verdict channel or the parent.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    signal.signal(signal.SIGALRM, _on_alarm)
    _limit(request)
    _guard(root)
    verdict = _run(request)
    sys.stdout = io.StringIO()
    os.write(int(request.get("result_fd", _RESULT_FD)), json.dumps(verdict, default=repr).encode("utf-8")[:60000])


if __name__ == "__main__":
    main()
