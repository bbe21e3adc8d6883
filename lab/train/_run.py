"""One training run: LoRA adapters trained with TRL's SFT or DPO trainer, merged into the base and saved.

The lab writes no training loop or distributed code of its own: TRL's trainers do the
work, so ``accelerate launch -m lab train …`` spreads the same run over several GPUs. What
the lab adds is what a study needs around it: the records come from the study's own export
(train split only), progress is printed with an ETA, an interrupted run resumes from its
last checkpoint, and the result is a plain model folder with a card that the lab serves as
``local/<folder>``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._base import BaseModel, load_model, load_tokenizer, resolve_base
from ._data import TrainingData
from ._options import TrainOptions
from ._stack import require_stack

CHECKPOINTS = "checkpoints"
"""Subfolder of the output holding the trainer's checkpoints until the run ends."""

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
"""Attention projections of Llama-style models (SmolLM2 is one); other architectures fall back to all linear layers."""


@dataclass
class TrainResult:
    """What a finished run left behind."""

    out: Path
    """The model folder (weights, tokenizer, card)."""
    steps: int
    """Optimizer updates made (over every session of a resumed run)."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """``(step, training loss)`` as the trainer logged them."""
    seconds: float = 0.0
    """Wall time of this session's training."""
    tokens: int = 0
    """Tokens in the training records times the epochs trained (the throughput's numerator)."""
    resumed_from: str | None = None
    """The checkpoint this session continued from."""
    peak_memory_mb: float | None = None
    """Peak resident memory of the process (CPU) or allocated memory (GPU), in MiB."""

    @property
    def tokens_per_second(self) -> float:
        """Training tokens per second of wall time."""
        return self.tokens / self.seconds if self.seconds else 0.0


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder under ``folder``, if any."""
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda`` for ``auto``, ``cpu`` or ``cuda``; refuses cuda where torch sees no GPU."""
    import torch

    from ._options import TrainOptionError

    has_gpu = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_gpu else "cpu"
    if device == "cuda" and not has_gpu:
        raise TrainOptionError("--device cuda: torch sees no GPU here; use --device cpu or auto.")
    return device


def peak_memory_mb(device: str) -> float:
    """Peak memory of this run so far, in MiB: GPU allocations on cuda, resident set size on cpu."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _progress_callback(say: Callable[[str], None], losses: list[tuple[int, float]]) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Prints the step, its loss and the ETA; keeps the logged losses for the card.

        The trainer logs a step's loss after the step has ended, so a step's line waits for
        its log: printed at the step's end it would show the step before's loss.
        """

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step = 0
            self.pending: tuple[str, str] | None = None
            """A step that has ended, waiting for its loss: what comes before the loss and after it."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()
            self.first_step = state.global_step

        def flush(self, loss: str = "") -> None:
            if self.pending is not None:
                head, tail = self.pending
                self.pending = None
                say(f"{head}{loss}{tail}")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append((state.global_step, float(logs["loss"])))
                self.flush(f" loss {float(logs['loss']):.4f}")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.flush()  # the step before logged nothing
            done = state.global_step - self.first_step
            left = max(0, state.max_steps - state.global_step)
            rate = (time.monotonic() - self.started) / done if done else 0.0
            eta = f"{left * rate:.0f} s" if done else "…"
            self.pending = (f"step {state.global_step}/{state.max_steps}", f" · {rate:.1f} s/step · ETA {eta}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.flush()

    return Progress()


def _lora_config(model: Any, options: TrainOptions) -> Any:
    from peft import LoraConfig

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets: Any = [t for t in LORA_TARGETS if t in names] or "all-linear"
    return LoraConfig(
        r=options.lora_r, lora_alpha=2 * options.lora_r, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM"
    )


def _trainer_args(options: TrainOptions, device: str, checkpoints: Path, tokenizer: Any) -> Any:
    common: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps or -1,
        "learning_rate": options.learning_rate,
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.grad_accum,
        "max_length": options.max_length,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": options.save_steps,
        "save_total_limit": 2,
        "seed": options.seed,
        "data_seed": options.seed,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": False,
        "fp16": False,
        "dataloader_pin_memory": device == "cuda",
    }
    if options.method == "sft":
        from trl import SFTConfig

        return SFTConfig(**common)
    from trl import DPOConfig

    return DPOConfig(beta=options.beta, **common)


def _count_tokens(tokenizer: Any, data: TrainingData, max_length: int) -> int:
    """Tokens per pass over the records, as the trainer sees them (chat template applied, cut at max_length)."""
    total = 0
    for record in data.records:
        if data.method == "sft":
            convs = [record["messages"]]
        else:
            convs = [record["prompt"] + record["chosen"], record["prompt"] + record["rejected"]]
        for conv in convs:
            ids = tokenizer.apply_chat_template(conv, tokenize=True)
            if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            total += min(len(ids), max_length)
    return total


def build_trainer(options: TrainOptions, data: TrainingData, base: BaseModel, say: Callable[[str], None]) -> tuple[Any, Any]:
    """Load the base and make TRL's trainer for the run (exposed for the benchmark's comparison).

    Returns:
        ``(trainer, tokenizer)``.
    """
    import datasets  # type: ignore[import-untyped]
    from transformers import PrinterCallback, set_seed
    from transformers.utils import logging as hf_logging

    # The run prints its own progress line; the libraries' bars and log dicts would bury it.
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()

    device = resolve_device(options.device)
    set_seed(options.seed)
    say(f"loading {base.name} …")
    tokenizer = load_tokenizer(base)
    model = load_model(base)
    if device == "cuda":
        model = model.to("cuda")
    dataset = datasets.Dataset.from_list(data.records)
    args = _trainer_args(options, device, options.out / CHECKPOINTS, tokenizer)
    peft_config = _lora_config(model, options)
    trainer: Any
    if options.method == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    else:
        from trl import DPOTrainer

        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    return trainer, tokenizer


def train(options: TrainOptions, data: TrainingData, say: Callable[[str], None] | None = None) -> TrainResult:
    """Train LoRA adapters on the records, merge them into the base, save the model and its card.

    Args:
        options: The run.
        data: Records and their provenance (:func:`lab.train.study_data`).
        say: Receives progress lines (default: stderr).

    Returns:
        The saved model's folder and the run's figures.
    """
    require_stack()
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    base = resolve_base(options.base)
    options.out.mkdir(parents=True, exist_ok=True)
    checkpoints = options.out / CHECKPOINTS
    resume = last_checkpoint(checkpoints)
    trainer, tokenizer = build_trainer(options, data, base, say)
    losses: list[tuple[int, float]] = []
    trainer.add_callback(_progress_callback(say, losses))
    if resume is not None:
        say(f"resuming from {resume.name}")
        history = resume / "trainer_state.json"
        if history.is_file():
            logged = json.loads(history.read_text()).get("log_history", [])
            losses.extend((int(e["step"]), float(e["loss"])) for e in logged if "loss" in e)
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.monotonic() - started
    device = resolve_device(options.device)
    result = TrainResult(
        out=options.out,
        steps=int(trainer.state.global_step),
        losses=losses,
        seconds=seconds,
        resumed_from=resume.name if resume else None,
        peak_memory_mb=peak_memory_mb(device),
    )
    epochs_done = min(options.epochs, trainer.state.epoch or options.epochs)
    result.tokens = int(_count_tokens(tokenizer, data, options.max_length) * epochs_done)
    say("merging the adapters into the base and saving …")
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(options.out), safe_serialization=True)
    tokenizer.save_pretrained(str(options.out))
    from ._card import write_card

    write_card(options, data, base, result)
    shutil.rmtree(checkpoints, ignore_errors=True)
    if not math.isfinite(losses[-1][1] if losses else 0.0):
        say("warning: the last logged loss is not finite; the model is saved but likely broken")
    return result
