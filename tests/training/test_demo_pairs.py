"""The demo study end to end: simulate → split → branch → export, on the scripted model.

The demo's model (scripted) asks which scale a temperature is in, then answers 86; three
fixed models give branches that correct or accommodate a false premise, or guess. Every
rule must yield pairs, each pair's prompt must be exactly what both of its replies were
generated from, every deciding label must name its source, and no held-out item may
reach a training file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.branch import point_prompt, prompt_sha256
from lab.cli import main
from lab.db import get_engine
from lab.dialogue import Conversation
from lab.schema import Turn
from lab.split import item_splits, make_split

MODELS = (
    'model: lab/scripted\n    params: {script: sequence, replies: ["Is that 30 degrees Celsius or Fahrenheit?", '
    '"The answer is 86."]}\n'
    '  corrector: {model: lab/scripted, params: {script: fixed, reply: "That is not true: the premise of your question '
    'is false."}}\n'
    '  accommodator: {model: lab/scripted, params: {script: fixed, reply: "Sure! Here is why that happens, as you say."}}\n'
    '  guesser: {model: lab/scripted, params: {script: fixed, reply: "The answer is 42."}}'
)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_pairs_under_every_rule(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path, tmp_path: Path) -> None:
    text = scripted_demo_path.read_text()
    old = "model: lab/scripted\n    params: {temperature: 0.0, max_tokens: 256, seed: 0}"
    assert old in text
    scripted_demo_path.write_text(text.replace(old, MODELS))
    assert run(capsys, "migrate")[0] == 0
    assert run(capsys, "study", "load", str(scripted_demo_path))[0] == 0
    engine = get_engine()
    # A seed that keeps the item the clarifying question fits in training (the draw is reproducible).
    seed = next(
        n
        for n in range(20)
        if make_split(engine, "demo", 0.3, n, replace=True) and item_splits(engine, "demo")["clarify-temperature"] == "train"
    )
    assert run(capsys, "split", "demo", "--heldout", "0.3", "--seed", str(seed), "--replace")[0] == 0
    heldout = {k for k, v in item_splits(engine, "demo").items() if v == "heldout"}
    code, _, err = run(capsys, "simulate", "demo", "--repeats", "1", "--conditions", "on-request", "loaded")
    assert code == 0, err
    code, out, err = run(
        capsys, "branch", "demo", "--k", "4", "--models", "corrector", "accommodator", "guesser", "smollm2", "--rollouts", "2"
    )
    assert code == 0, err
    code, out, err = run(capsys, "export", "demo", "--format", "dpo", "--out", str(tmp_path / "dpo"))
    assert code == 0, err
    pairs = [json.loads(x) for x in (tmp_path / "dpo" / "data" / "dpo.jsonl").read_text().splitlines()]
    assert {p["rule"] for p in pairs} == {"outcome", "clarify_when_needed", "correct_premise"}
    with Session(engine) as s:
        params = dict(s.execute(select(Turn.id, Turn.params)).all())
    for p in pairs:
        digest = prompt_sha256(p["prompt"])
        assert digest == p["point"]["prompt_sha256"]
        for side in ("chosen_reply", "rejected_reply"):
            reply = p[side]
            if reply["kind"] == "branch":
                assert params[reply["turn_id"]]["branch"]["prompt_sha256"] == digest
            else:
                assert reply["turn_id"] == p["point"]["turn_id"]
                conv = Conversation.load(engine, p["point"]["conversation_id"])
                index = next(t.index for t in conv.turns if t.id == reply["turn_id"])
                assert prompt_sha256(point_prompt(conv, index) or []) == digest
        sources = {p["chosen_source"], p["rejected_source"]}
        assert sources <= {"rollout"} if p["rule"] == "outcome" else all(x.startswith("auto:") for x in sources)
        assert all(lab["source"] for r in (p["chosen_reply"], p["rejected_reply"]) for lab in r["labels"].values())
    assert "Deciding labels by source" in (tmp_path / "dpo" / "README.md").read_text()
    code, _, err = run(capsys, "export", "demo", "--format", "sft", "--out", str(tmp_path / "sft"))
    assert code == 0, err
    for kind in ("dpo", "sft"):
        lines = [json.loads(x) for x in (tmp_path / kind / "data" / f"{kind}.jsonl").read_text().splitlines()]
        assert lines and not {r["item"] for r in lines} & heldout
