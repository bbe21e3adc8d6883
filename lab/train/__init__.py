"""Training a model on a study's own data, and serving the result as a model of the lab.

``python -m lab train SLUG --method sft|dpo --out models/NAME`` exports the study's
training records (train split only), trains LoRA adapters on a base model with TRL's SFT or
DPO trainer, merges them, and writes a plain model folder with a model card;
``local/models/NAME`` then serves it in-process (see `lab.llm._hf`) in a spec, ``chat``,
``simulate`` and the comparison. The heavy stack (torch, transformers, peft, trl,
accelerate) is optional: ``requirements-train.txt``, installed by ``make train-setup``.
"""

from __future__ import annotations

from ._base import BaseModel, BaseModelError, resolve_base
from ._data import TrainingData, TrainingDataError, read_records, study_data
from ._options import DEFAULT_BASE, METHODS, TrainOptionError, TrainOptions
from ._run import TrainResult, last_checkpoint, train
from ._stack import PACKAGES, TrainingStackMissing, missing_packages, require_stack

__all__ = [
    "DEFAULT_BASE",
    "METHODS",
    "PACKAGES",
    "BaseModel",
    "BaseModelError",
    "TrainOptionError",
    "TrainOptions",
    "TrainResult",
    "TrainingData",
    "TrainingDataError",
    "TrainingStackMissing",
    "last_checkpoint",
    "missing_packages",
    "read_records",
    "require_stack",
    "resolve_base",
    "study_data",
    "train",
]
