"""The report of a simulation run: conversations, turns, outcomes, scores, drift, consistency.

Drift is checked again here from the stored turns (the shard bookkeeping and the text), so
the report holds for any simulator and for conversations written by earlier invocations;
what only the simulator knew (the shards it claimed, unusable output) comes from its
``simulator_turn`` events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import reveal as rules
from ..errors import ReportError
from ..items import Item, parse_item
from ..schema import ChatSession, Condition, Event, ItemRow, Participant, Study, Turn
from ..scoring import FamilyScores, family_scores, format_family_scores
from ..spec import ConditionSpec
from ..studies import definition
from ._checks import DRIFT_KINDS, Drift, check_message
from ._consistency import CONSISTENCY_EVENT
from ._runner import RUN_EVENT, TURN_EVENT, _chunks


@dataclass
class ArmSummary:
    """One (condition, model) pair of a run."""

    condition: str
    model: str
    conversations: int = 0
    ended: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    scored: int = 0
    """Conversations with an automatic score (their last answer attempt was scorable)."""
    mean_score: float | None = None
    user_turns: int = 0
    """Messages of the simulated participants (openings included, recaps not)."""


@dataclass
class RunReport:
    """Everything the run report says."""

    run_id: str
    study: str
    version: int
    mode: str
    size: int
    simulator: dict[str, Any]
    total: int
    """Conversations planned."""
    ended: int = 0
    unfinished: int = 0
    user_turns: int = 0
    assistant_turns: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    arms: list[ArmSummary] = field(default_factory=list)
    lines_checked: int = 0
    """Simulator messages after the opening, checked against the reveal rules."""
    drift: Counter[str] = field(default_factory=Counter)
    """Lines showing each kind of drift."""
    drifted_lines: int = 0
    drifted_conversations: int = 0
    examples: list[Drift] = field(default_factory=list)
    """Every drift found, in conversation and turn order."""
    judged_conversations: int = 0
    judged_lines: int = 0
    prompt_to_line: float | None = None
    """Share of judged simulator lines consistent with the simulator's prompt."""
    line_to_line: float | None = None
    """Share of judged simulator lines consistent with its own earlier lines."""
    judge_model: str | None = None
    families: list[FamilyScores] = field(default_factory=list)
    """Mean task score per task family, and the conversations not scored with their reasons."""

    def format(self, examples: int = 5) -> str:
        """The report as text for the terminal."""
        sim = self.simulator
        lines = [
            f"run {self.run_id} · study '{self.study}' v{self.version} · {self.mode} {self.size} · "
            f"simulator {sim.get('model') or sim.get('kind')} ({sim.get('prompt_version')})"
            + (f", persona: {sim['persona']}" if sim.get("persona") else ""),
            f"conversations: {self.total} planned, {self.ended} ended, {self.unfinished} unfinished · "
            f"{self.user_turns} participant turns, {self.assistant_turns} replies",
        ]
        if self.outcomes:
            lines.append("outcomes: " + " · ".join(f"{k} {n}" for k, n in self.outcomes.most_common()))
        if self.arms:
            width = max(9, *(len(a.condition) for a in self.arms))
            mwidth = max(5, *(len(a.model) for a in self.arms))
            lines.append(f"{'condition':<{width}}  {'model':<{mwidth}}  convs  ended  turns  scored  mean score")
            for a in self.arms:
                mean = f"{a.mean_score:.2f}" if a.mean_score is not None else "—"
                lines.append(
                    f"{a.condition:<{width}}  {a.model:<{mwidth}}  {a.conversations:>5}  {a.ended:>5}  "
                    f"{a.user_turns:>5}  {a.scored:>6}  {mean:>10}"
                )
        lines += format_family_scores(self.families)
        if not self.drift:
            lines.append(f"drift: none in {self.lines_checked} simulator lines")
        else:
            counts = " · ".join(f"{k} {n}" for k, n in self.drift.most_common())
            lines.append(
                f"drift: {counts} — in {self.drifted_lines} of {self.lines_checked} simulator lines "
                f"({self.drifted_conversations} conversations)"
            )
            for d in self.examples[:examples]:
                where = f"turn {d.turn_index}" if d.turn_index is not None else "final move"
                lines.append(f"  conversation {d.session_id} {where}: {d.kind} — {d.detail or DRIFT_KINDS.get(d.kind, '')}")
        if self.judged_lines:
            p2l = f"{self.prompt_to_line:.2f}" if self.prompt_to_line is not None else "—"
            l2l = f"{self.line_to_line:.2f}" if self.line_to_line is not None else "—"
            lines.append(
                f"consistency ({self.judge_model}): prompt-to-line {p2l}, line-to-line {l2l} "
                f"over {self.judged_lines} lines in {self.judged_conversations} conversations"
            )
        return "\n".join(lines)


def _run_event(s: Session, run_id: str) -> dict[str, Any]:
    found = None
    for ev in s.scalars(select(Event).where(Event.kind == RUN_EVENT).order_by(Event.id)):
        if (ev.data or {}).get("run") == run_id:
            found = ev.data
    if found is None:
        raise ReportError(f"no simulation run '{run_id}'")
    return found


def run_report(s: Session, run_id: str) -> RunReport:
    """Build the report of a run from the database.

    Raises:
        ReportError: no run with that id.
    """
    data = _run_event(s, run_id)
    study = s.get(Study, data["study_id"])
    if study is None:
        raise ReportError(f"the study of run '{run_id}' no longer exists")
    d = definition(study)
    report = RunReport(
        run_id=run_id,
        study=study.slug,
        version=study.version,
        mode=str(data.get("mode")),
        size=int(data.get("size") or 0),
        simulator=dict(data.get("simulator") or {}),
        total=int(data.get("total") or 0),
    )
    cond_keys = dict(s.execute(select(Condition.id, Condition.key).where(Condition.study_id == study.id)).all())
    items = {row.id: row for row in s.scalars(select(ItemRow).where(ItemRow.study_id == study.id))}
    chats = _run_conversations(s, study.id, run_id)
    turns, claims, consistency = _run_records(s, [c.id for c in chats])

    arms: dict[tuple[str, str], ArmSummary] = {}
    drifted_sessions: set[int] = set()
    for chat in chats:
        cond_key = cond_keys[chat.condition_id]
        arm = arms.setdefault((cond_key, chat.model), ArmSummary(cond_key, chat.model))
        arm.conversations += 1
        if chat.status == "ended":
            report.ended += 1
            arm.ended += 1
            arm.outcomes[chat.outcome or "?"] += 1
            report.outcomes[chat.outcome or "?"] += 1
        else:
            report.unfinished += 1
        item = parse_item(items[chat.item_id].payload, items[chat.item_id].key)
        if _check_conversation(report, arm, chat, d.spec.conditions[cond_key], item, turns[chat.id], claims):
            drifted_sessions.add(chat.id)
    for chat in chats:
        arm = arms[(cond_keys[chat.condition_id], chat.model)]
        if chat.score is not None:
            arm.mean_score = ((arm.mean_score or 0.0) * arm.scored + chat.score) / (arm.scored + 1)
            arm.scored += 1
    report.arms = sorted(arms.values(), key=lambda a: (list(d.spec.conditions).index(a.condition), a.model))
    parsed = {key: parse_item(row.payload, row.key) for key, row in items.items()}
    report.families = family_scores(s.connection(), [(c.id, c.score, parsed[c.item_id]) for c in chats])
    report.drifted_conversations = len(drifted_sessions)
    _add_consistency(report, consistency)
    return report


def _run_conversations(s: Session, study_id: int, run_id: str) -> list[ChatSession]:
    """The run's conversations (abandoned ones left out), in the order they were started."""
    pids = [
        pid
        for pid, sim in s.execute(
            select(Participant.id, Participant.simulator).where(Participant.study_id == study_id, Participant.kind == "simulated")
        )
        if isinstance(sim, dict) and sim.get("run") == run_id
    ]
    chats: list[ChatSession] = []
    for chunk in _chunks(pids):
        chats += s.scalars(select(ChatSession).where(ChatSession.participant_id.in_(chunk)).order_by(ChatSession.id))
    return [c for c in chats if c.status != "abandoned"]


Claims = dict[tuple[int | None, int | None], dict[str, Any]]
"""What the simulator said of each of its lines, by ``(conversation, turn index)``; index None: its final move."""


def _run_records(s: Session, sids: list[int]) -> tuple[dict[int, list[Turn]], Claims, list[dict[str, Any]]]:
    """The conversations' turns in order, the simulator's claims, and the judge's consistency records."""
    turns: dict[int, list[Turn]] = {sid: [] for sid in sids}
    claims: Claims = {}
    consistency: list[dict[str, Any]] = []
    for chunk in _chunks(sids):
        for t in s.scalars(select(Turn).where(Turn.session_id.in_(chunk)).order_by(Turn.session_id, Turn.index)):
            turns[t.session_id].append(t)
        for ev in s.scalars(
            select(Event).where(Event.session_id.in_(chunk), Event.kind.in_([TURN_EVENT, CONSISTENCY_EVENT])).order_by(Event.id)
        ):
            if ev.kind == TURN_EVENT:
                claims[(ev.session_id, (ev.data or {}).get("index"))] = ev.data or {}
            else:
                consistency.append(ev.data or {})
    return turns, claims, consistency


def _check_conversation(
    report: RunReport,
    arm: ArmSummary,
    chat: ChatSession,
    condition: ConditionSpec,
    item: Item,
    turns: list[Turn],
    claims: Claims,
) -> bool:
    """Count one conversation's turns and check each simulator line against the reveal rules.

    Returns:
        Whether any of its lines (or its final move) drifted.
    """
    shards = rules.item_shards(item, condition)
    drifted = False
    last_assistant = ""
    opened = False
    for t, revealed in rules.progression(turns):
        if t.role == "assistant":
            if t.error is None:
                report.assistant_turns += 1
                last_assistant = t.content
            continue
        if t.role != "user":
            continue
        sent = list(t.shards or [])
        if t.source != "lab":
            report.user_turns += 1
            arm.user_turns += 1
        if t.source == "simulator" and opened:
            claim = claims.get((chat.id, t.index), {})
            problems = check_message(
                reveal=condition.reveal,
                shards=shards,
                revealed=set(revealed),
                assistant_text=last_assistant,
                text=t.content,
                sent=sent,
                claimed=claim.get("claimed") if claim else None,
            )
            details = dict(claim.get("details") or {})
            found = {k: dt for k, dt in problems}
            for kind in claim.get("drift") or []:
                found.setdefault(kind, details.get(kind, ""))
            report.lines_checked += 1
            if found:
                report.drifted_lines += 1
                drifted = True
            for kind, detail in found.items():
                report.drift[kind] += 1
                report.examples.append(Drift(chat.id, t.index, kind, detail))
        if t.source != "lab":
            opened = True
    final = claims.get((chat.id, None))
    if final:
        for kind in final.get("drift") or []:
            report.drift[kind] += 1
            report.examples.append(Drift(chat.id, None, kind, ""))
            drifted = True
    return drifted


def _add_consistency(report: RunReport, consistency: list[dict[str, Any]]) -> None:
    """Add the judge's prompt-to-line and line-to-line consistency to the report."""
    p2l: list[bool] = []
    l2l: list[bool] = []
    for c in consistency:
        report.judged_conversations += 1
        report.judge_model = c.get("model")
        for line in c.get("lines") or []:
            report.judged_lines += 1
            if isinstance(line.get("prompt_to_line"), bool):
                p2l.append(line["prompt_to_line"])
            if isinstance(line.get("line_to_line"), bool):
                l2l.append(line["line_to_line"])
    report.prompt_to_line = sum(p2l) / len(p2l) if p2l else None
    report.line_to_line = sum(l2l) / len(l2l) if l2l else None
