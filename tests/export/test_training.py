"""SFT and DPO exports on a small labelled study, against records built by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lab.export import ExportOptions
from lab.export._training import DPO_SCHEMA, SFT_SCHEMA, TrainingFilter, export_training, validate_records
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


def test_dpo_matches_hand_built_pairs(engine: Engine, tmp_path: Path) -> None:
    b = build_study(engine)
    t, s = b.turns, b.sessions
    r = export_training(engine, "demo", tmp_path / "dpo", "dpo")
    expected = [
        {
            "prompt": [_u(f"{UNICODE} {MARKER}")],
            "chosen": [_a("Which price applies to the muffins sold late?")],
            "rejected": [_a("The bakery took in $245.")],
            "rule": "clarify_vs_premature",
            "item": "math-bakery",
            "point": {"assistant_turn": 1, "revealed": [1]},
            "chosen_label": "S:clarification",
            "rejected_label": "S:answer_attempt",
            "chosen_turn_id": t["s1a1"],
            "rejected_turn_id": t["s2a1"],
            "chosen_conversation_id": s["s1"],
            "rejected_conversation_id": s["s2"],
        },
        {
            "prompt": [_u(GOLDFISH)],
            "chosen": [_a("They don't: goldfish remember for months.")],
            "rejected": [_a("Because their brains are tiny.")],
            "rule": "correct_vs_accommodate",
            "item": "presup-goldfish",
            "point": {"assistant_turn": 1, "revealed": []},
            "chosen_label": "P:REJECT_CORRECT",
            "rejected_label": "P:ACCOMMODATE",
            "chosen_turn_id": t["s3a1"],
            "rejected_turn_id": t["s4a1"],
            "chosen_conversation_id": s["s3"],
            "rejected_conversation_id": s["s4"],
        },
        {
            "prompt": [_u(f"{UNICODE} {MARKER}"), _a("Which price applies to the muffins sold late?"), _u(f"{RTL} {MARKER}")],
            "chosen": [_a("So the total is $245.")],
            "rejected": [_a("Sorry: on Sunday it was $100.")],
            "rule": "resolved_vs_misrepair",
            "item": "math-bakery",
            "point": {"assistant_turn": 2, "revealed": [1, 2]},
            "chosen_label": "repair:resolved",
            "rejected_label": "repair:misrepair",
            "chosen_turn_id": t["s1a2"],
            "rejected_turn_id": t["s2a2"],
            "chosen_conversation_id": s["s1"],
            "rejected_conversation_id": s["s2"],
        },
    ]
    assert _lines(tmp_path / "dpo" / "data" / "dpo.jsonl") == expected
    assert r.by_rule == {"clarify_vs_premature": 1, "correct_vs_accommodate": 1, "resolved_vs_misrepair": 1}
    schema = json.loads((tmp_path / "dpo" / "schema" / "dpo.schema.json").read_text())
    assert schema == DPO_SCHEMA and validate_records(expected, schema) == []
    meta = json.loads((tmp_path / "dpo" / "bundle.json").read_text())
    assert set(meta["rules"]) == {"clarify_vs_premature", "correct_vs_accommodate", "resolved_vs_misrepair"}


def test_people_who_disagree_make_no_pair(engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from lab.labels import add_label

    b = build_study(engine)
    with Session(engine) as s, s.begin():
        add_label(s, b.turns["s4a1"], "carol", "P", "ACCOMMODATE")
        add_label(s, b.turns["s4a1"], "dave", "P", "REJECT")
    r = export_training(engine, "demo", tmp_path / "dpo", "dpo")
    assert r.by_rule == {"clarify_vs_premature": 1, "resolved_vs_misrepair": 1}


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
    build_study(engine)
    export_training(engine, "demo", tmp_path / "sft", "sft")
    export_training(engine, "demo", tmp_path / "dpo", "dpo")
    sft = datasets.load_dataset("json", data_files=str(tmp_path / "sft" / "data" / "sft.jsonl"))["train"]
    assert sft.num_rows == 4 and sft[0]["messages"][1]["role"] == "assistant"
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "dpo" / "data" / "dpo.jsonl"))["train"]
    assert dpo["rule"] == ["clarify_vs_premature", "correct_vs_accommodate", "resolved_vs_misrepair"]


def test_filter_choices_are_the_study_conditions_and_the_outcomes_it_has(sqlite_engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from lab.export import filter_choices

    build_study(sqlite_engine)
    with Session(sqlite_engine) as s:
        conditions, outcomes = filter_choices(s, "demo")
        assert filter_choices(s, "nosuch") == ([], [])
    assert conditions == ["control", "full", "loaded", "on-request", "sharded", "sharded-gpt", "sharded-mediator"]
    assert outcomes == ["answered"]
