"""SFT and DPO exports on a small labelled study, against records built by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lab.export import ExportOptions
from lab.export._pairs import DPO_SCHEMA
from lab.export._training import SFT_SCHEMA, TrainingFilter, validate_records
from lab.export._training_files import export_training, training_notice
from tests.export_study import MARKER, RTL, SECRETS, UNICODE, build_study


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


GOLDFISH = "Why do goldfish only remember three seconds?"


def test_sft_matches_hand_built_records(engine: Engine, tmp_path: Path) -> None:
    b = build_study(engine)
    r = export_training(engine, "demo", tmp_path / "sft", "sft")
    s = b.sessions
    common = {"item_kind": "sharded", "condition": "sharded", "model": "lab/scripted", "outcome": "answered"}
    expected = [
        {
            "messages": [
                _u(f"{UNICODE} {MARKER}"),
                _a("Which price applies to the muffins sold late?"),
                _u(f"{RTL} {MARKER}"),
                _a("So the total is $245."),
                _u("Line one\nLine two"),
            ],
            "conversation_id": s["s1"],
            "participant_kind": "human",
            "item": "math-bakery",
            "score": 0.0,
            "shard_order": [1, 2, 3],
            "labels": ["CLARIFY", "answer_attempt", "clarification"],
        }
        | common,
        {
            "messages": [
                _u("Bakery: muffins $3, loaves $5."),
                _a("The bakery took in $245."),
                _u("No, I meant only Saturday."),
                _a("Sorry: on Sunday it was $100."),
            ],
            "conversation_id": s["s2"],
            "participant_kind": "simulated",
            "item": "math-bakery",
            "score": 1.0,
            "shard_order": [1, 2],
            "labels": ["answer_attempt", "discussion"],
        }
        | common,
        {
            "messages": [_u(GOLDFISH), _a("They don't: goldfish remember for months.")],
            "conversation_id": s["s3"],
            "participant_kind": "human",
            "item": "presup-goldfish",
            "item_kind": "presupposition",
            "condition": "loaded",
            "model": "lab/scripted",
            "outcome": "answered",
            "score": None,
            "shard_order": [],
            "labels": ["REJECT_CORRECT"],
        },
        {
            "messages": [_u(GOLDFISH), _a("Because their brains are tiny.")],
            "conversation_id": s["s4"],
            "participant_kind": "simulated",
            "item": "presup-goldfish",
            "item_kind": "presupposition",
            "condition": "loaded",
            "model": "lab/scripted",
            "outcome": "answered",
            "score": None,
            "shard_order": [],
            "labels": ["ACCOMMODATE"],
        },
    ]
    assert _lines(tmp_path / "sft" / "data" / "sft.jsonl") == expected
    assert r.rows == 4
    schema = json.loads((tmp_path / "sft" / "schema" / "sft.schema.json").read_text())
    assert schema == SFT_SCHEMA and validate_records(expected, schema) == []
    assert validate_records([{"messages": [{"role": "robot", "content": "x"}]}], schema)[0].startswith("line 1:")


def test_sft_filters(engine: Engine, tmp_path: Path) -> None:
    b = build_study(engine)
    s = b.sessions

    def ids(flt: TrainingFilter, **kw: object) -> list[int]:
        export_training(engine, "demo", tmp_path / "f", "sft", ExportOptions(**kw), flt)  # type: ignore[arg-type]
        return [r["conversation_id"] for r in _lines(tmp_path / "f" / "data" / "sft.jsonl")]

    assert ids(TrainingFilter(conditions=("loaded",))) == [s["s3"], s["s4"]]
    assert ids(TrainingFilter(labels=("misrepair",))) == [s["s2"]]
    assert ids(TrainingFilter(labels=("REJECT_CORRECT", "ACCOMMODATE"))) == [s["s3"], s["s4"]]
    assert ids(TrainingFilter(outcomes=("gave_up",))) == []
    assert ids(TrainingFilter(), participants="human") == [s["s1"], s["s3"]]


def _branch(engine: Engine, point: int, text: str, *, prompt_sha256: str | None = None) -> int:
    """Store a branch reply at a point as ``python -m lab branch`` does; returns its turn id."""
    from sqlalchemy.orm import Session

    from lab.branch import branch_participant, point_prompt
    from lab.branch import prompt_sha256 as digest
    from lab.dialogue import Conversation
    from lab.schema import ChatSession, Turn

    with Session(engine) as s, s.begin():
        original = s.get(Turn, point)
        assert original is not None
        chat = s.get(ChatSession, original.session_id)
        assert chat is not None
        prompt = point_prompt(Conversation.load(engine, chat.id), original.index)
        assert prompt is not None
        branch = ChatSession(
            study_id=chat.study_id,
            participant_id=branch_participant(s, chat.study_id),
            item_id=chat.item_id,
            condition_id=chat.condition_id,
            model="lab/scripted",
            model_params={},
            status="ended",
            outcome="branch",
            kind="branch",
            point_turn_id=point,
        )
        s.add(branch)
        s.flush()
        turn = Turn(
            session_id=branch.id,
            index=original.index,
            role="assistant",
            source="model",
            content=text,
            model="lab/scripted",
            params={"branch": {"sample": 0, "prompt_sha256": prompt_sha256 or digest(prompt)}},
        )
        s.add(turn)
        s.flush()
        return turn.id


def test_dpo_pairs_only_replies_at_the_same_point(engine: Engine, tmp_path: Path) -> None:
    from lab.branch import prompt_sha256

    b = build_study(engine)
    t, s = b.turns, b.sessions
    # S3 corrects and S4 accommodates the same loaded question, but in different conversations: no pair.
    r = export_training(engine, "demo", tmp_path / "none", "dpo")
    assert r.rows == 0 and r.empty_reason is not None and "python -m lab branch" in r.empty_reason
    assert training_notice(engine, "demo", "dpo") == r.empty_reason
    assert training_notice(engine, "demo", "sft") is None
    gone = training_notice(engine, "demo", "sft", flt=TrainingFilter(outcomes=("gave_up",)))
    assert gone is not None and "no conversation matches" in gone
    branch = _branch(engine, t["s3a1"], "Because their brains are tiny.")
    assert training_notice(engine, "demo", "dpo") is None
    _branch(engine, t["s3a1"], "Goldfish forget everything.", prompt_sha256="0" * 64)  # sampled from another prompt
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    with Session(engine) as db, db.begin():
        add_label(db, branch, "auto:rules", "P", "ACCOMMODATE", meta={"judge": "rules", "version": "rules-1"})
    r = export_training(engine, "demo", tmp_path / "dpo", "dpo")
    expected = [
        {
            "prompt": [_u(GOLDFISH)],
            "chosen": [_a("They don't: goldfish remember for months.")],
            "rejected": [_a("Because their brains are tiny.")],
            "rule": "correct_premise",
            "item": "presup-goldfish",
            "point": {
                "turn_id": t["s3a1"],
                "conversation_id": s["s3"],
                "assistant_turn": 1,
                "revealed": [],
                "prompt_sha256": prompt_sha256([_u(GOLDFISH)]),
            },
            "chosen_label": "P:REJECT_CORRECT",
            "rejected_label": "P:ACCOMMODATE",
            "chosen_source": "gold",
            "rejected_source": "auto:rules",
            "chosen_reply": {
                "turn_id": t["s3a1"],
                "kind": "original",
                "model": "lab/scripted",
                "labels": {"P": {"code": "REJECT_CORRECT", "source": "gold"}},
                "rollouts": None,
            },
            "rejected_reply": {
                "turn_id": branch,
                "kind": "branch",
                "model": "lab/scripted",
                "labels": {"P": {"code": "ACCOMMODATE", "source": "auto:rules"}},
                "rollouts": None,
            },
            "decided_by": {},
            "chosen_turn_id": t["s3a1"],
            "rejected_turn_id": branch,
        },
    ]
    assert _lines(tmp_path / "dpo" / "data" / "dpo.jsonl") == expected
    assert r.by_rule == {"correct_premise": 1}
    schema = json.loads((tmp_path / "dpo" / "schema" / "dpo.schema.json").read_text())
    assert schema == DPO_SCHEMA and validate_records(expected, schema) == []
    meta = json.loads((tmp_path / "dpo" / "bundle.json").read_text())
    assert set(meta["rules"]) == {"outcome", "clarify_when_needed", "correct_premise", "human_preference"}
    assert meta["sources"] == {"gold": 1, "auto:rules": 1}
    card = (tmp_path / "dpo" / "README.md").read_text()
    assert "`auto:rules` 50%" in card and "automatic judges' guesses" in card


def test_label_source_filters_pairs_decided_by_judges(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    b = build_study(engine)
    branch = _branch(engine, b.turns["s3a1"], "Because their brains are tiny.")
    with Session(engine) as s, s.begin():
        add_label(s, branch, "auto:rules", "P", "ACCOMMODATE", meta={"judge": "rules", "version": "rules-1"})
    r = export_training(engine, "demo", tmp_path / "human", "dpo", flt=TrainingFilter(label_source="human"))
    assert r.rows == 0 and r.empty_reason is not None and "--label-source human" in r.empty_reason
    with Session(engine) as s, s.begin():
        add_label(s, branch, "carol", "P", "ACCOMMODATE")
        add_label(s, branch, "dave", "P", "ACCOMMODATE")
        add_label(s, branch, "erin", "P", "REJECT")
    r = export_training(engine, "demo", tmp_path / "human2", "dpo", flt=TrainingFilter(label_source="human"))
    (pair,) = _lines(tmp_path / "human2" / "data" / "dpo.jsonl")
    assert (pair["chosen_source"], pair["rejected_source"]) == ("gold", "majority")
    r = export_training(engine, "demo", tmp_path / "gold", "dpo", flt=TrainingFilter(label_source="gold"))
    assert r.rows == 0


def test_people_who_disagree_make_no_pair(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    b = build_study(engine)
    branch = _branch(engine, b.turns["s3a1"], "Because their brains are tiny.")
    with Session(engine) as s, s.begin():
        add_label(s, branch, "auto:rules", "P", "ACCOMMODATE", meta={"judge": "rules", "version": "rules-1"})
        add_label(s, branch, "carol", "P", "ACCOMMODATE")
        add_label(s, branch, "dave", "P", "REJECT")
    r = export_training(engine, "demo", tmp_path / "dpo", "dpo")
    assert r.by_rule == {}


def test_training_files_carry_no_secret(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["env_key"])
    build_study(engine)
    for kind in ("sft", "dpo"):
        export_training(engine, "demo", tmp_path / kind, kind)
        text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / kind).rglob("*") if p.is_file())
        for name, secret in SECRETS.items():
            assert secret not in text, (kind, name)


def test_loads_with_datasets(engine: Engine, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    b = build_study(engine)
    branch = _branch(engine, b.turns["s3a1"], "Because their brains are tiny.")
    with Session(engine) as s, s.begin():
        add_label(s, branch, "auto:rules", "P", "ACCOMMODATE", meta={"judge": "rules", "version": "rules-1"})
    export_training(engine, "demo", tmp_path / "sft", "sft")
    export_training(engine, "demo", tmp_path / "dpo", "dpo")
    sft = datasets.load_dataset("json", data_files=str(tmp_path / "sft" / "data" / "sft.jsonl"))["train"]
    assert sft.num_rows == 4 and sft[0]["messages"][1]["role"] == "assistant"
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "dpo" / "data" / "dpo.jsonl"))["train"]
    assert dpo["rule"] == ["correct_premise"]


def test_question_for_a_missing_shard_beats_an_early_answer(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    b = build_study(engine)
    early = _branch(engine, b.turns["s1a1"], "The bakery took in $245.")
    with Session(engine) as s, s.begin():
        add_label(s, early, "auto:rules", "S", "answer_attempt", meta={"judge": "rules", "version": "rules-1"})
    export_training(engine, "demo", tmp_path / "dpo", "dpo")
    (pair,) = _lines(tmp_path / "dpo" / "data" / "dpo.jsonl")
    assert pair["rule"] == "clarify_when_needed" and pair["decided_by"]["case"] == "asked_when_needed"
    assert (pair["chosen_turn_id"], pair["rejected_turn_id"]) == (b.turns["s1a1"], early)
    # "Which price applies to the muffins sold late?" shares two words with shard 4 ("sold", "muffins")
    # and with shard 6 ("muffins", "price"), both unrevealed; ties go to the earliest shard.
    assert pair["decided_by"]["asked_for_shard"] == 4
    assert (pair["chosen_label"], pair["chosen_source"]) == ("S:clarification", "auto:rules")
    assert pair["chosen_reply"]["labels"]["G"] == {"code": "CLARIFY", "source": "majority"}
    r = export_training(engine, "demo", tmp_path / "human", "dpo", flt=TrainingFilter(label_source="human"))
    assert r.rows == 0


def test_filter_choices_are_the_study_conditions_and_the_outcomes_it_has(sqlite_engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from lab.export import filter_choices

    build_study(sqlite_engine)
    with Session(sqlite_engine) as s:
        conditions, outcomes = filter_choices(s, "demo")
        assert filter_choices(s, "nosuch") == ([], [])
    assert conditions == ["control", "full", "loaded", "on-request", "sharded", "sharded-gpt", "sharded-mediator"]
    assert outcomes == ["answered"]
