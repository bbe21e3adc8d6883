"""``python -m lab train``: SFT and DPO on a tiny model of the embedded model's architecture, the card, serving the result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lab.cli import main
from lab.train import TrainingDataError, TrainingStackMissing, TrainOptionError, TrainOptions, read_records, train

from .conftest import write_export


def _chat(user: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


SFT_RECORDS = [{"messages": _chat("add two numbers", "which numbers do you mean ?"), "item": f"i{k}"} for k in range(6)]

DPO_RECORDS = [
    {
        "prompt": [{"role": "user", "content": "add two numbers"}],
        "chosen": [{"role": "assistant", "content": "which numbers do you mean ?"}],
        "rejected": [{"role": "assistant", "content": "the answer is 5 ."}],
        "rule": "clarify_when_needed",
        "item": f"i{k}",
    }
    for k in range(6)
]


def _options(tmp_path: Path, tiny_base: Path, method: str, **kw: Any) -> TrainOptions:
    fields: dict[str, Any] = {"max_steps": 3, "batch_size": 2, "device": "cpu", "save_steps": 1} | kw
    return TrainOptions(method=method, out=tmp_path / "model", base=str(tiny_base), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_a_few_steps_move_a_finite_loss_and_leave_a_servable_model_with_its_card(
    method: str, tmp_path: Path, tiny_base: Path
) -> None:
    records = SFT_RECORDS if method == "sft" else DPO_RECORDS
    data = read_records(write_export(tmp_path / "export", method, records), method)
    lines: list[str] = []
    result = train(_options(tmp_path, tiny_base, method, lr=0.05), data, say=lines.append)

    assert result.steps == 3
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[-1] != losses[0], "three updates at a high learning rate must move the loss"
    assert any("ETA" in line for line in lines)
    # Each step's line shows that step's own loss (the trainer logs it after the step ends).
    printed = [line for line in lines if line.startswith("step ")]
    assert len(printed) == 3
    for step, loss in result.losses:
        assert any(line.startswith(f"step {step}/3 loss {loss:.4f} ·") for line in printed), (step, loss, printed)
    out = result.out
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not (out / "checkpoints").exists(), "a finished run leaves no checkpoints behind"
    card = json.loads((out / "training.json").read_text())
    assert card["method"] == method and card["seed"] == 0
    assert card["hyperparameters"]["lora_r"] == 16 and card["hyperparameters"]["lr"] == 0.05
    assert card["data"]["study"] == "demo" and card["data"]["records"] == 6
    assert card["result"]["losses"] == [list(x) for x in result.losses]
    assert {"torch", "transformers", "peft", "trl", "accelerate"} <= set(card["versions"])
    readme = (out / "README.md").read_text()
    assert "base_model:" in readme and "study `demo`" in readme
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tuned_model_answers_a_chat_turn_through_the_gateway(tmp_path: Path, tiny_base: Path) -> None:
    from lab.llm import complete, stream

    data = read_records(write_export(tmp_path / "export", "sft", SFT_RECORDS), "sft")
    out = train(_options(tmp_path, tiny_base, "sft"), data, say=lambda _: None).out
    model = f"local/{out}"
    messages = [{"role": "user", "content": "add two numbers"}]
    reply = complete(model, messages, {"max_tokens": 6, "temperature": 0})
    assert reply.text.strip() and reply.tokens_out and reply.tokens_out <= 6
    assert reply.finish_reason in ("stop", "length")
    pieces = list(stream(model, messages, {"max_tokens": 6, "temperature": 0}))
    assert "".join(pieces) == reply.text, "greedy decoding gives the same reply streamed or whole"


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path, tiny_base: Path) -> None:
    from transformers import TrainerCallback

    import lab.train._run as run

    data = read_records(write_export(tmp_path / "export", "sft", SFT_RECORDS), "sft")
    options = _options(tmp_path, tiny_base, "sft", max_steps=4, save_steps=2)

    class Crash(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2:
                raise KeyboardInterrupt

    real = run.build_trainer

    def crashing(*a: Any, **kw: Any) -> Any:
        trainer, tokenizer = real(*a, **kw)
        trainer.add_callback(Crash())
        return trainer, tokenizer

    run.build_trainer = crashing  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            train(options, data, say=lambda _: None)
    finally:
        run.build_trainer = real  # type: ignore[assignment]
    assert run.last_checkpoint(options.out / "checkpoints") is not None
    result = train(options, data, say=lambda _: None)
    assert result.resumed_from == "checkpoint-2"
    assert result.steps == 4
    assert [step for step, _ in result.losses] == [1, 2, 3, 4], "the card's loss curve spans both sittings"


def test_held_out_items_never_reach_the_trainer(tmp_path: Path) -> None:
    folder = write_export(tmp_path / "export", "sft", SFT_RECORDS)
    with pytest.raises(TrainingDataError, match=r"held-out item.*i2"):
        read_records(folder, "sft", refused_items=frozenset({"i2"}))
    empty = write_export(tmp_path / "empty", "dpo", [], {"empty_reason": "no pair rule matched"})
    with pytest.raises(TrainingDataError, match="nothing to train on: no pair rule matched"):
        read_records(empty, "dpo")
    with pytest.raises(TrainingDataError, match="holds no dpo export"):
        read_records(folder, "dpo")


def test_bad_options_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(TrainOptionError, match="--lora-r must be at least 1"):
        TrainOptions(method="sft", out=tmp_path, lora_r=0)
    with pytest.raises(TrainOptionError, match="--method must be one of sft, dpo"):
        TrainOptions(method="ppo", out=tmp_path)  # type: ignore[arg-type]


def test_the_command_trains_on_the_study_export(
    tmp_path: Path, tiny_base: Path, scripted_demo_init: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    assert main(["simulate", "demo", "--repeats", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "models" / "tuned"
    code = main(["train", "demo", "--method", "sft", "--base", str(tiny_base), "--out", str(out), "--max-steps", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"serve it as local/{out}" in printed.out
    card = json.loads((out / "training.json").read_text())
    assert card["data"]["study"] == "demo" and card["data"]["records"] > 0
    exported = [json.loads(x) for x in (out / "data-export" / "data" / "sft.jsonl").read_text().splitlines()]
    assert len(exported) == card["data"]["records"], "the exact records trained on stay beside the model"


def test_without_the_stack_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("trl", "peft") else real(name, *a))
    with pytest.raises(TrainingStackMissing, match=r"needs peft, trl.*make train-setup"):
        from lab.train import require_stack

        require_stack()
    assert main(["train", "demo", "--method", "sft", "--out", str(tmp_path / "m")]) == 1
    assert "make train-setup" in capsys.readouterr().err


def test_a_model_folder_is_refused_clearly_without_torch(monkeypatch: pytest.MonkeyPatch, tiny_base: Path) -> None:
    import importlib.util

    from lab.llm._local import problems

    assert problems(str(tiny_base)) == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert any("make train-setup" in p for p in problems(str(tiny_base)))
