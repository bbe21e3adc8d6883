"""What one training run is asked to do: method, base model, output folder and hyperparameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import LabError

Method = Literal["sft", "dpo"]
Device = Literal["auto", "cpu", "cuda"]

METHODS: tuple[Method, ...] = ("sft", "dpo")
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")

DEFAULT_BASE = "local/smollm2-135m"
"""The embedded model: its GGUF file loads into transformers (de-quantised to float32)."""

DEFAULT_LR: dict[str, float] = {"sft": 2e-4, "dpo": 5e-5}
"""Learning rates for LoRA adapters: SFT tolerates a large one; DPO moves a policy away from
its reference and is steadier an order of magnitude lower."""


class TrainOptionError(LabError):
    """A training option out of its range, named with the reason."""


@dataclass(frozen=True)
class TrainOptions:
    """One training run."""

    method: Method
    """``sft`` (imitate the chosen conversations) or ``dpo`` (prefer chosen over rejected replies)."""
    out: Path
    """Folder for the tuned model, its card and checkpoints; ``local/<out>`` serves it afterwards."""
    base: str = DEFAULT_BASE
    """``local/smollm2-135m``, a GGUF file, or a Hugging Face causal-LM folder."""
    lora_r: int = 16
    """LoRA rank; alpha is twice the rank."""
    epochs: float = 1.0
    """Passes over the training records."""
    lr: float | None = None
    """Learning rate; None takes :data:`DEFAULT_LR` for the method."""
    max_length: int = 1024
    """Tokens per record; longer records are cut from the end."""
    batch_size: int = 4
    """Records per device step."""
    grad_accum: int = 1
    """Steps whose gradients are summed before an update."""
    device: Device = "auto"
    """``auto`` takes a GPU when torch sees one."""
    seed: int = 0
    """Seeds data order, LoRA initialisation and dropout."""
    max_steps: int | None = None
    """Stop after this many updates (for smoke runs and benchmarks); None trains ``epochs``."""
    beta: float = 0.1
    """DPO's strength of the pull towards the reference model."""
    save_steps: int = 50
    """Updates between checkpoints, from which an interrupted run resumes."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainOptionError(f"--method must be one of {', '.join(METHODS)} (got '{self.method}')")
        if self.device not in DEVICES:
            raise TrainOptionError(f"--device must be one of {', '.join(DEVICES)} (got '{self.device}')")
        for name in ("lora_r", "max_length", "batch_size", "grad_accum", "save_steps"):
            if getattr(self, name) < 1:
                raise TrainOptionError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.epochs <= 0:
            raise TrainOptionError(f"--epochs must be above 0 (got {self.epochs})")
        if self.lr is not None and not 0 < self.lr < 1:
            raise TrainOptionError(f"--lr must be between 0 and 1 (got {self.lr})")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainOptionError(f"--max-steps must be at least 1 (got {self.max_steps})")

    @property
    def learning_rate(self) -> float:
        """The learning rate in force."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def hyperparameters(self) -> dict[str, Any]:
        """The options as the model card records them."""
        found = asdict(self)
        found["out"] = str(self.out)
        found["lr"] = self.learning_rate
        found["lora_alpha"] = 2 * self.lora_r
        return found
