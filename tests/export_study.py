"""A small labelled study written row by row, for the export, bundle, withdrawal and training tests.

Every value a test checks is chosen here: unicode of every kind, a 100 kB turn, an empty
conversation, error and cut replies, labels from a judge, a person (superseded once) and a
gold coder, repair sequences, survey answers, and private values that must never leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lab.accounts import create_account
from lab.labels import add_label
from lab.schema import ChatSession, Condition, Event, ItemRow, Participant, RepairSequence, Response, Turn
from lab.spec import load_spec_file
from lab.studies import load_study

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=UTC)

UNICODE = 'héllo — مرحبا بالعالم 👋🏽\nsecond line\r\nthird\ttabbed "quoted" ,comma, 中文'
RTL = "שלום, האם אתה בטוח? ‏(RTL)‏"
BIG = ("A hundred kilobytes of text, line after line. 🧪\n" * 2200)[:100_000]
MARKER = "ZEBRA-MARKER-7781"
"""Appears only in participant 1's turns: withdrawal must remove it from the database files."""

SECRETS = {
    "prolific": "PROLIFICSECRETPID0001",
    "prolific3": "PROLIFICSECRETPID0003",
    "prolific_study": "PROLIFICSTUDYSECRET",
    "prolific_session": "PROLIFICSESSIONSECRET",
    "completion": "COMPLETIONSECRET1",
    "token_hash": "feedface" * 8,
    "experimenter": "alice_experimenter",
    "annotator": "bob_annotator",
    "ip": "203.0.113.77",
    "private_note": "participant seemed upset today",
    "param_key": "sk-param-secret-abcdef123",
    "sim_key": "sk-simulator-secret-456789",
    "env_key": "sk-env-secret-99999999",
}
"""Values that must never appear in a bundle (the env key is set as OPENAI_API_KEY by the tests)."""


@dataclass
class Built:
    """Ids of what :func:`build_study` wrote."""

    participants: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)


def _turn(s: Session, session_id: int, index: int, role: str, content: str, at: datetime, **kw: object) -> Turn:
    t = Turn(
        session_id=session_id,
        index=index,
        role=role,
        content=content,
        sent_at=at,
        source=kw.pop("source", "participant" if role == "user" else "model"),
        **kw,
    )
    s.add(t)
    s.flush()
    return t


def _assistant(s: Session, session_id: int, index: int, content: str, at: datetime, **kw: object) -> Turn:
    defaults: dict[str, object] = {
        "first_token_at": at + timedelta(milliseconds=250),
        "last_token_at": at + timedelta(seconds=2, microseconds=5),
        "model": "lab/scripted",
        "params": {"temperature": 0.0, "max_tokens": 256, "api_key": SECRETS["param_key"]},
        "tokens_in": 40 + index,
        "tokens_out": 12 + index,
        "cost": 0.000125 * index,
        "latency_ms": 2000.5,
        "ttft_ms": 250.25,
        "finish_reason": "stop",
    }
    defaults.update(kw)
    return _turn(s, session_id, index, "assistant", content, at, **defaults)


def build_study(engine: Engine) -> Built:
    """Write the study: the demo spec, three participants, six conversations, labels and the rest."""
    b = Built()
    with Session(engine) as s, s.begin():
        study = load_study(s, load_spec_file(ROOT / "studies" / "demo.yaml"), "/home/secret-path/demo.yaml").study
        bob = create_account(s, SECRETS["annotator"], "annotator", "correct horse battery")
        create_account(s, SECRETS["experimenter"], "experimenter", "correct horse battery")
        conds = {c.key: c.id for c in s.scalars(select(Condition).where(Condition.study_id == study.id))}
        items = {i.key: i.id for i in s.scalars(select(ItemRow).where(ItemRow.study_id == study.id))}

        p1 = Participant(
            study_id=study.id,
            kind="human",
            status="completed",
            token_hash=SECRETS["token_hash"],
            prolific_pid=SECRETS["prolific"],
            prolific_study_id=SECRETS["prolific_study"],
            prolific_session_id=SECRETS["prolific_session"],
            completion_code=SECRETS["completion"],
            plan=[["math-bakery", "sharded"], ["presup-goldfish", "loaded"]],
            position=2,
            created_at=T0,
            updated_at=T0 + timedelta(hours=1),
            consented_at=T0 + timedelta(minutes=1),
            completed_at=T0 + timedelta(hours=1),
        )
        p2 = Participant(
            study_id=study.id,
            kind="simulated",
            status="completed",
            plan=[["math-bakery", "sharded"], ["presup-goldfish", "loaded"]],
            position=2,
            simulator={
                "kind": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt_version": "sim-1",
                "api_key": SECRETS["sim_key"],
                "persona": "terse",
            },
            created_at=T0 + timedelta(days=30),
            updated_at=T0 + timedelta(days=30),
            completed_at=T0 + timedelta(days=30, hours=1),
        )
        p3 = Participant(
            study_id=study.id,
            kind="human",
            status="active",
            prolific_pid=SECRETS["prolific3"],
            plan=[["math-train", "sharded"], ["math-paint", "full"]],
            position=1,
            created_at=T0 + timedelta(days=60),
            updated_at=T0 + timedelta(days=60),
            consented_at=T0 + timedelta(days=60),
        )
        s.add_all([p1, p2, p3])
        s.flush()
        b.participants = {"p1": p1.id, "p2": p2.id, "p3": p3.id}

        def chat(name: str, p: Participant, item: str, cond: str, pos: int, at: datetime, **kw: object) -> int:
            c = ChatSession(
                study_id=study.id,
                participant_id=p.id,
                item_id=items[item],
                condition_id=conds[cond],
                position=pos,
                model="lab/scripted",
                model_params={"temperature": 0.0, "api_key": SECRETS["param_key"]},
                started_at=at,
                **kw,
            )
            s.add(c)
            s.flush()
            b.sessions[name] = c.id
            return c.id

        # S1: participant 1, a sharded item: a clarifying question, then an answer, then an error and a cut reply.
        s1 = chat(
            "s1",
            p1,
            "math-bakery",
            "sharded",
            0,
            T0 + timedelta(minutes=2),
            status="ended",
            outcome="answered",
            score=0.0,
            ended_at=T0 + timedelta(minutes=9),
        )
        b.turns["s1u1"] = _turn(
            s,
            s1,
            1,
            "user",
            f"{UNICODE} {MARKER}",
            T0 + timedelta(minutes=2),
            shards=[1],
            client={"typing_started": "2026-01-05T09:31:00Z", "edits": 3},
        ).id
        b.turns["s1a1"] = _assistant(s, s1, 2, "Which price applies to the muffins sold late?", T0 + timedelta(minutes=3)).id
        b.turns["s1u2"] = _turn(s, s1, 3, "user", f"{RTL} {MARKER}", T0 + timedelta(minutes=4), shards=[2]).id
        b.turns["s1a2"] = _assistant(s, s1, 4, "So the total is $245.", T0 + timedelta(minutes=5)).id
        b.turns["s1u3"] = _turn(s, s1, 5, "user", "Line one\nLine two", T0 + timedelta(minutes=6), shards=[3]).id
        b.turns["s1err"] = _assistant(
            s,
            s1,
            6,
            "",
            T0 + timedelta(minutes=7),
            error=f"AuthenticationError: Incorrect API key provided: {SECRETS['env_key']}",
            finish_reason=None,
        ).id
        b.turns["s1cut"] = _assistant(s, s1, 7, "Half an ans", T0 + timedelta(minutes=8), partial=True, finish_reason=None).id

        # S2: the simulated participant on the same item: answers at once (premature), then misrepairs.
        s2 = chat(
            "s2",
            p2,
            "math-bakery",
            "sharded",
            0,
            T0 + timedelta(days=30),
            status="ended",
            outcome="answered",
            score=1.0,
            ended_at=T0 + timedelta(days=30, minutes=5),
        )
        b.turns["s2u1"] = _turn(
            s, s2, 1, "user", "Bakery: muffins $3, loaves $5.", T0 + timedelta(days=30), shards=[1], source="simulator"
        ).id
        b.turns["s2a1"] = _assistant(s, s2, 2, "The bakery took in $245.", T0 + timedelta(days=30, minutes=1)).id
        b.turns["s2u2"] = _turn(
            s, s2, 3, "user", "No, I meant only Saturday.", T0 + timedelta(days=30, minutes=2), shards=[2], source="simulator"
        ).id
        b.turns["s2a2"] = _assistant(s, s2, 4, "Sorry: on Sunday it was $100.", T0 + timedelta(days=30, minutes=3)).id

        # S3 and S4: the loaded goldfish question, corrected by one and accommodated by the other.
        s3 = chat(
            "s3",
            p1,
            "presup-goldfish",
            "loaded",
            1,
            T0 + timedelta(minutes=10),
            status="ended",
            outcome="answered",
            probe={"question": "How long is a goldfish's memory?", "reply": "Months.", "score": 1.0},
            ended_at=T0 + timedelta(minutes=12),
        )
        b.turns["s3u1"] = _turn(s, s3, 1, "user", "Why do goldfish only remember three seconds?", T0 + timedelta(minutes=10)).id
        b.turns["s3a1"] = _assistant(s, s3, 2, "They don't: goldfish remember for months.", T0 + timedelta(minutes=11)).id
        s4 = chat(
            "s4",
            p2,
            "presup-goldfish",
            "loaded",
            1,
            T0 + timedelta(days=30, minutes=10),
            status="ended",
            outcome="answered",
            ended_at=T0 + timedelta(days=30, minutes=12),
        )
        b.turns["s4u1"] = _turn(
            s,
            s4,
            1,
            "user",
            "Why do goldfish only remember three seconds?",
            T0 + timedelta(days=30, minutes=10),
            source="simulator",
        ).id
        b.turns["s4a1"] = _assistant(s, s4, 2, "Because their brains are tiny.", T0 + timedelta(days=30, minutes=11)).id

        # S5: an empty conversation; S6: a 100 kB turn.
        chat("s5", p3, "math-train", "sharded", 0, T0 + timedelta(days=60), status="active")
        s6 = chat("s6", p3, "math-paint", "full", 1, T0 + timedelta(days=60, minutes=5), status="active")
        b.turns["s6u1"] = _turn(s, s6, 1, "user", BIG, T0 + timedelta(days=60, minutes=5), shards=[1, 2, 3]).id

        auto = "auto:rules"
        meta = {"judge": "rules", "version": "rules-1"}
        add_label(s, b.turns["s1a1"], auto, "S", "clarification", confidence=0.9, meta=meta)
        add_label(s, b.turns["s1a2"], auto, "S", "answer_attempt", confidence=0.9, meta=meta)
        add_label(s, b.turns["s2a1"], auto, "S", "answer_attempt", confidence=0.9, meta=meta)
        add_label(s, b.turns["s2a2"], auto, "S", "discussion", confidence=0.5, meta=meta)
        add_label(s, b.turns["s1a1"], SECRETS["annotator"], "G", "ACK", account_id=bob.id, meta={"codebook_version": "cb-1"})
        add_label(
            s,
            b.turns["s1a1"],
            SECRETS["annotator"],
            "G",
            "CLARIFY",
            account_id=bob.id,
            meta={"codebook_version": "cb-1", "private_note": SECRETS["private_note"]},
        )
        add_label(s, b.turns["s3a1"], auto, "P", "REJECT", meta=meta)
        add_label(s, b.turns["s3a1"], "gold:expert", "P", "REJECT_CORRECT", meta={"codebook_version": "cb-1"})
        add_label(s, b.turns["s4a1"], auto, "P", "ACCOMMODATE", meta=meta)
        s.add_all(
            [
                RepairSequence(
                    session_id=s1,
                    annotator=SECRETS["annotator"],
                    trouble_turn_id=b.turns["s1u1"],
                    initiation_turn_id=b.turns["s1a1"],
                    repair_turn_id=b.turns["s1a2"],
                    initiation="OI-restricted-request",
                    initiator="assistant",
                    trouble_type="missing information",
                    outcome="resolved",
                    turns_to_resolution=2,
                    created_at=T0 + timedelta(days=90),
                ),
                RepairSequence(
                    session_id=s2,
                    annotator=SECRETS["annotator"],
                    trouble_turn_id=b.turns["s2a1"],
                    initiation_turn_id=b.turns["s2u2"],
                    repair_turn_id=b.turns["s2a2"],
                    initiation="TPR",
                    initiator="user",
                    trouble_type="intent",
                    outcome="misrepair",
                    turns_to_resolution=None,
                    created_at=T0 + timedelta(days=90),
                ),
                Response(
                    participant_id=p1.id,
                    session_id=s1,
                    question="difficulty",
                    value={"value": "إجابة 😀"},
                    created_at=T0 + timedelta(minutes=9),
                ),
                Response(
                    participant_id=p1.id,
                    session_id=None,
                    question="comments",
                    value={"value": f"multi\nline {MARKER}"},
                    created_at=T0 + timedelta(hours=1),
                ),
                Event(participant_id=p1.id, kind="consent", data={"agreed": True}, created_at=T0 + timedelta(minutes=1)),
                Event(
                    participant_id=p1.id,
                    session_id=s1,
                    kind="page_hidden",
                    data={"client_at": "2026-01-05T09:35:00Z", "ip": SECRETS["ip"]},
                    created_at=T0 + timedelta(minutes=5),
                ),
                Event(
                    participant_id=p3.id,
                    kind="timed_out",
                    data={"by": SECRETS["experimenter"], "was": "active"},
                    created_at=T0 + timedelta(days=61),
                ),
                Event(
                    kind="simulate_run",
                    data={"run": "r1", "study": "demo", "study_id": study.id, "command": "python -m lab simulate demo"},
                    created_at=T0 + timedelta(days=30),
                ),
                Event(
                    kind="simulate_run",
                    data={"run": "r0", "study": "other", "study_id": study.id + 1000},
                    created_at=T0 + timedelta(days=30),
                ),
            ]
        )
    return b
