"""Progress of simulation runs: a line in the terminal, and figures for the experimenter console."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..schema import ChatSession, Event, Participant, Study
from ._runner import RUN_EVENT, RunStatus


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_rate(per_second: float) -> str:
    """Conversations per second, or per minute when slower than one a second."""
    return f"{per_second:.1f}/s" if per_second >= 1 else f"{per_second * 60:.1f}/min"


def status_line(label: str, status: RunStatus, bar: int = 0) -> str:
    """One line: done/total, share, rate and time left.

    Args:
        label: What runs.
        status: Where it stands.
        bar: Width of a progress bar drawn before the figures (0: none).
    """
    share = status.done / status.total if status.total else 1.0
    drawn = f" [{'#' * round(share * bar):.<{bar}}]" if bar else ""
    parts = [f"{label}:{drawn} {status.done}/{status.total} conversations ({share:.0%})"]
    ran = status.done - status.done_at_start
    if ran > 0 and status.elapsed > 0:
        rate = ran / status.elapsed
        parts.append(format_rate(rate))
        left = status.total - status.done
        parts.append(f"ETA {format_duration(left / rate)}" if left else f"took {format_duration(status.elapsed)}")
    if status.failed:
        parts.append(f"{status.failed} stopped by errors")
    return " · ".join(parts)


BAR_WIDTH = 20
"""Characters of the progress bar drawn on a terminal."""

TROUBLE_REPEAT_SECONDS = 5.0
"""Off a terminal, how often an unchanged account of failing models is written again (with its new figures)."""

_FIGURES = re.compile(r"\d+(?:\.\d+)?")


def _gist(trouble: tuple[str, ...]) -> tuple[str, ...]:
    """What each trouble line says has gone wrong, without its figures and its next step."""
    return tuple(_FIGURES.sub("#", line.split(" — ", 1)[0]) for line in trouble)


class ProgressLine:
    """A progress line on stderr: rewritten in place on a terminal, one line per ~5% otherwise.

    While calls to a model fail, the line says so (which model, since when, why, and when
    the next attempt goes): on a terminal after the figures, otherwise on lines of its own,
    written when the account changes and every few seconds while it lasts.
    """

    def __init__(self, label: str, stream: TextIO | None = None, *, min_interval: float = 0.1) -> None:
        """Create the line.

        Args:
            label: What runs (``simulate demo``).
            stream: Where to write (default: stderr).
            min_interval: Seconds between redraws on a terminal.
        """
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval
        self._last_draw = 0.0
        self._last_step = -1
        self._width = 0
        self._status: RunStatus | None = None
        self._trouble: tuple[str, ...] = ()
        self._trouble_at = float("-inf")

    def __call__(self, status: RunStatus) -> None:
        """Show a new status."""
        self._status = status
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= self.min_interval or status.done >= status.total:
                self._draw(status)
                self._last_draw = now
            return
        step = int(20 * status.done / status.total) if status.total else 20
        if step != self._last_step:
            self._last_step = step
            self.stream.write(status_line(self.label, status) + "\n")
            self.stream.flush()
        self._say_trouble(status.trouble)

    def _say_trouble(self, trouble: tuple[str, ...]) -> None:
        """Off a terminal: write what fails when that changes, and again every few seconds while it lasts."""
        now = time.monotonic()
        changed = _gist(trouble) != _gist(self._trouble)
        if not trouble:
            if changed:
                self.stream.write(f"{self.label}: model calls succeed again\n")
                self.stream.flush()
            self._trouble = trouble
            return
        if changed or now - self._trouble_at >= TROUBLE_REPEAT_SECONDS:
            self._trouble, self._trouble_at = trouble, now
            for line in trouble:
                self.stream.write(f"{self.label}: {line}\n")
            self.stream.flush()

    def _draw(self, status: RunStatus) -> None:
        line = " · ".join([status_line(self.label, status, bar=BAR_WIDTH), *status.trouble])
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Draw the last status and end the line."""
        if self.tty and self._status is not None:
            self._draw(self._status)
            self.stream.write("\n")
            self.stream.flush()


@dataclass(frozen=True)
class RunProgress:
    """How far one simulation run of a study has come, from the database."""

    run_id: str
    study: str
    version: int
    command: str | None
    """The command line that started it (latest invocation)."""
    mode: str
    size: int
    simulator: str
    """The simulator's model (``scripted`` for the scripted simulator)."""
    total: int
    ended: int
    """Conversations that have ended."""
    unfinished: int
    """Conversations started and not ended (running now, or left by an interruption)."""
    started_at: datetime
    """First invocation."""
    resumed_at: datetime
    """Latest invocation."""
    updated_at: datetime | None
    """When the latest conversation ended."""
    rate_per_minute: float | None
    """Conversations ended per minute since the latest invocation."""
    eta_seconds: float | None
    """Time left at that rate (None when unknown or finished)."""

    @property
    def fraction(self) -> float:
        """Share of conversations that have ended."""
        return self.ended / self.total if self.total else 1.0

    @property
    def finished(self) -> bool:
        """Every conversation has ended."""
        return self.ended >= self.total


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def run_progress(s: Session, study_slug: str) -> list[RunProgress]:
    """Every simulation run of a study (all versions), newest first.

    Args:
        s: Open session.
        study_slug: The study.

    Returns:
        One :class:`RunProgress` per run.
    """
    study_ids = set(s.scalars(select(Study.id).where(Study.slug == study_slug)))
    runs: dict[str, list[Event]] = {}
    for ev in s.scalars(select(Event).where(Event.kind == RUN_EVENT).order_by(Event.id)):
        data = ev.data or {}
        if data.get("study_id") in study_ids and data.get("run"):
            runs.setdefault(data["run"], []).append(ev)
    if not runs:
        return []
    sessions: dict[str, list[tuple[str, datetime | None]]] = {rid: [] for rid in runs}
    q = (
        select(Participant.simulator, ChatSession.status, ChatSession.ended_at)
        .join(ChatSession, ChatSession.participant_id == Participant.id)
        .where(Participant.study_id.in_(study_ids), Participant.kind == "simulated")
    )
    for sim, status, ended_at in s.execute(q):
        rid = sim.get("run") if isinstance(sim, dict) else None
        if rid in sessions:
            sessions[rid].append((status, _aware(ended_at)))
    out = []
    for rid, events in runs.items():
        first, last = events[0], events[-1]
        data = last.data or {}
        total = int(data.get("total") or 0)
        rows = sessions[rid]
        ended_times = [t for status, t in rows if status == "ended" and t is not None]
        ended = sum(1 for status, _ in rows if status == "ended")
        unfinished = sum(1 for status, _ in rows if status == "active")
        resumed_at = _aware(last.created_at)
        assert resumed_at is not None
        updated = max(ended_times) if ended_times else None
        recent = [t for t in ended_times if t >= resumed_at]
        rate = eta = None
        if recent and updated is not None and updated > resumed_at:
            rate = len(recent) / (updated - resumed_at).total_seconds() * 60
            eta = (total - ended) / rate * 60 if ended < total else None
        sim = data.get("simulator") or {}
        out.append(
            RunProgress(
                run_id=rid,
                study=study_slug,
                version=int(data.get("version") or 0),
                command=data.get("command"),
                mode=str(data.get("mode")),
                size=int(data.get("size") or 0),
                simulator=str(sim.get("model") or sim.get("kind") or "scripted"),
                total=total,
                ended=ended,
                unfinished=unfinished,
                started_at=_aware(first.created_at) or resumed_at,
                resumed_at=resumed_at,
                updated_at=updated,
                rate_per_minute=rate,
                eta_seconds=eta,
            )
        )
    out.sort(key=lambda p: p.resumed_at, reverse=True)
    return out
