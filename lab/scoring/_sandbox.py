"""Running model-written code in a contained child process.

Model code is executed, so it runs apart from the lab: in a new process (never the server
or the simulation's own), started with an empty environment in a throw-away directory,
through :mod:`lab.scoring._sandbox_child`, which before touching the code

- sets resource limits: address space (memory), CPU seconds, size of any file written,
  open files, no core dumps, and (for the ``nobody`` user) the number of processes;
- gives up root for ``nobody`` when it runs as root, so file permissions apply;
- installs an audit hook refusing sockets, subprocesses, ``fork``/``exec``/``system``,
  ``ctypes``, signals to other processes, and writing, renaming or removing files outside
  its directory.

Where ``unshare`` can create a network namespace the child also runs without any network
interface (``network: namespace`` in the result); otherwise only the audit hook keeps it off
the network (``network: audit hook``). The parent waits with a wall-clock limit and kills the
child's whole process group when it is exceeded. This is containment for honest mistakes
and careless code (endless loops, runaway memory, stray writes), not a security boundary
against code crafted to escape CPython: run the lab on a machine you would let the model's
code run on.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_sandbox_child.py")
"""The script the child process runs."""

_RESULT_CAP = 65536
_SLOTS = threading.BoundedSemaphore(max(1, (os.cpu_count() or 1)))
"""At most one sandboxed run per core at a time, whichever thread asks."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    timeout: int = 6
    """Seconds per test case (the Lost in Conversation authors use 6)."""

    memory_bytes: int = 1 << 30
    """Address space of the child (1 GiB)."""

    file_bytes: int = 8 << 20
    """Largest file the child may write (8 MiB)."""

    open_files: int = 64
    """Open file descriptors."""

    processes: int = 1
    """Processes the ``nobody`` user may have (blocks fork bombs when the lab runs as root)."""


@dataclass(frozen=True)
class RunResult:
    """What happened when the tests ran."""

    passed: bool
    """Every test case passed."""

    results: list[Any] = field(default_factory=list)
    """Per test, in order, up to the first failure: True, or -2 wrong answer, -3 time limit,
    -4 runtime error, -1 the whole run was stopped (the LiveCodeBench codes)."""

    error: str | None = None
    """Why it failed, in words."""

    detail: dict[str, Any] = field(default_factory=dict)
    """The failing test's input, expected and actual output (cut short)."""

    containment: dict[str, str] = field(default_factory=dict)
    """How the run was contained: ``network`` (namespace or audit hook), ``user``."""

    seconds: float = 0.0
    """Wall-clock time of the run."""


@lru_cache(maxsize=1)
def network_isolation() -> tuple[str, ...]:
    """The command prefix that runs a program without network, or () when none works here."""
    tool = shutil.which("unshare")
    if tool is None:
        return ()
    candidates: list[tuple[str, ...]] = [(tool, "--net")] if os.geteuid() == 0 else []
    candidates.append((tool, "--user", "--net"))
    for prefix in candidates:
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, env={})
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return prefix
    return ()


def _nobody() -> int | None:
    """The uid of ``nobody`` when the child could still run as it (Python readable by others)."""
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None
    return uid if _readable_by_others(Path(sysconfig.get_paths()["stdlib"])) and _readable_by_others(CHILD.parent) else None


@lru_cache(maxsize=4)
def _readable_by_others(path: Path) -> bool:
    """Whether a user with no rights of its own can read ``path`` (every parent searchable)."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])
    except OSError:
        return False


def run_tests(
    code: str,
    inputs: list[str],
    outputs: list[str],
    fn_name: str | None,
    limits: Limits | None = None,
) -> RunResult:
    """Run code against test cases in a contained child process (blocks; see :func:`arun_tests`).

    Args:
        code: The full program (imports and the function).
        inputs: Test inputs (call-based: one JSON argument per line; otherwise standard input).
        outputs: Expected outputs (call-based: JSON; otherwise the printed text).
        fn_name: The function to call, or None for a program reading standard input.
        limits: Time, memory and file limits.

    Returns:
        The verdict; a child that crashed, was killed or said nothing fails every test.
    """
    limits = limits or Limits()
    as_root = os.geteuid() == 0
    nobody = _nobody() if as_root else None
    prefix = network_isolation()
    containment = {
        "network": "namespace" if prefix else "audit hook",
        "user": "nobody" if nobody is not None else ("root" if as_root else "the lab's user"),
    }
    cpu = (limits.timeout + 1) * max(1, len(inputs)) + 5
    request = _request(code, inputs, outputs, fn_name, limits, cpu, drop_root=nobody is not None)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    started = time.monotonic()
    with _SLOTS, tempfile.TemporaryDirectory(prefix="lab-score-") as work:
        if nobody is not None:
            os.chown(work, nobody, nobody)
        env |= {"HOME": work, "TMPDIR": work}
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(
                [*prefix, sys.executable, "-I", str(CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=work,
                env=env,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        except OSError as e:
            os.close(read_end)
            os.close(write_end)
            return RunResult(False, [-1], f"the sandbox could not start: {e}", containment=containment)
        os.close(write_end)
        # The child is told the number of the pipe's write end, where its verdict goes.
        verdict = _await(proc, json.dumps(request | {"result_fd": write_end}), read_end, cpu + 5)
    verdict_seconds = time.monotonic() - started
    if verdict is None:
        return RunResult(
            False,
            [-1] * max(1, len(inputs)),
            "the run was stopped: it exceeded its time or memory, or crashed",
            containment=containment,
            seconds=verdict_seconds,
        )
    detail: dict[str, Any] = {k: verdict[k] for k in ("input", "expected", "output") if k in verdict}
    return RunResult(
        bool(verdict.get("passed")),
        list(verdict.get("results") or []),
        verdict.get("error"),
        detail,
        containment,
        verdict_seconds,
    )


def _request(
    code: str, inputs: list[str], outputs: list[str], fn_name: str | None, limits: Limits, cpu: int, *, drop_root: bool
) -> dict[str, Any]:
    """What the child is sent: the program, its tests, and the limits it sets on itself before running it."""
    return {
        "code": code,
        "inputs": inputs,
        "outputs": outputs,
        "fn_name": fn_name,
        "timeout": limits.timeout,
        "drop_root": drop_root,
        "limits": {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": cpu,
            "file_bytes": limits.file_bytes,
            "open_files": limits.open_files,
            "processes": limits.processes,
        },
    }


def _await(proc: subprocess.Popen[bytes], request: str, read_end: int, wall: float) -> dict[str, Any] | None:
    """Send the request, wait up to ``wall`` seconds, read the verdict; kill the group on overrun."""
    chunks: list[bytes] = []

    def reader() -> None:
        size = 0
        while size < _RESULT_CAP:
            chunk = os.read(read_end, 8192)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(request.encode("utf-8"))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait(timeout=wall)
    except subprocess.TimeoutExpired:
        _kill(proc)
    finally:
        _kill(proc)
        thread.join(timeout=2)
        os.close(read_end)
    if proc.returncode != 0:
        return None
    try:
        verdict = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return verdict if isinstance(verdict, dict) else None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


async def arun_tests(
    code: str, inputs: list[str], outputs: list[str], fn_name: str | None, limits: Limits | None = None
) -> RunResult:
    """:func:`run_tests` in a worker thread, so the event loop goes on while the code runs."""
    return await asyncio.to_thread(run_tests, code, inputs, outputs, fn_name, limits)
