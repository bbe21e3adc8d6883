"""The progress line of a run."""

from __future__ import annotations

import io

from lab.simulate import (
    ProgressLine,
    RunStatus,
)


def test_progress_line() -> None:
    out = io.StringIO()
    line = ProgressLine("simulate demo", out)
    for done in range(0, 41):
        line(RunStatus(total=40, done=done, done_at_start=0, failed=0, elapsed=done * 0.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 21  # one per 5 %
    assert lines[0] == "simulate demo: 0/40 conversations (0%)"
    assert lines[10] == "simulate demo: 20/40 conversations (50%) · 2.0/s · ETA 10s"
    assert lines[-1] == "simulate demo: 40/40 conversations (100%) · 2.0/s · took 20s"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    line = ProgressLine("simulate demo", tty, min_interval=0)
    line(RunStatus(total=10, done=2, done_at_start=1, failed=1, elapsed=120))
    line.close()
    drawn = "\rsimulate demo: [####................] 2/10 conversations (20%) · 0.5/min · ETA 16m00s · 1 stopped by errors"
    assert tty.getvalue() == drawn * 2 + "\n"
