"""Models saved as Hugging Face folders, run in-process by transformers: how tuned models are served.

``python -m lab train`` writes a model folder (``config.json``, safetensors weights,
tokenizer with its chat template); ``local/<that folder>`` is then a model string like the
embedded one, usable in a study spec, ``chat``, ``simulate`` and the Models page check.
Replies stream: ``generate`` runs in a thread and hands decoded pieces over as they come.

As with the GGUF engine, each folder is loaded once per process and one lock per folder
keeps it to one generation at a time (a model's key/value cache belongs to one call).
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from . import _generation
from ._generation import LocalTimeout

DEFAULT_MAX_NEW_TOKENS = 512
"""Reply length when the call names none (the GGUF engine's default is of the same order)."""


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a saved Hugging Face model (a folder with ``config.json``)."""
    return path.is_dir() and (path / "config.json").is_file()


SERVING_PACKAGES = ("torch", "transformers")
"""What serving a model folder needs: part of the training stack (``make train-setup``)."""


def stack_problem() -> str | None:
    """Why a model folder cannot be served here, or None when torch and transformers are installed."""
    missing = []
    for name in SERVING_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        return (
            f"serving a model folder needs {', '.join(missing)}, which is not installed: "
            "install the training stack with `make train-setup`."
        )
    return None


class Engine:
    """One loaded model folder and the lock that keeps it to one generation at a time."""

    def __init__(self, path: Path) -> None:
        """Load the folder's tokenizer and weights (on the CPU, or the GPU when torch sees one)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = path
        self.lock = threading.Lock()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        self.model = model.to(self.device)
        self.model.eval()

    def prompt_ids(self, messages: list[dict[str, Any]]) -> Any:
        """The chat template applied to ``messages``, ready for the assistant's reply."""
        ids: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not hasattr(ids, "shape"):  # a BatchEncoding in newer releases
            ids = ids["input_ids"]
        return ids.to(self.device)


_engines: dict[Path, Engine] = {}
_engines_lock = threading.Lock()


def engine(path: Path) -> Engine:
    """The process's one `Engine` for a model folder, loaded on first use."""
    with _engines_lock:
        loaded = _engines.get(path)
        if loaded is None:
            loaded = _engines[path] = Engine(path)
        return loaded


@atexit.register
def close_all() -> None:
    """Forget every loaded model (frees their memory once no generation holds them)."""
    with _engines_lock:
        _engines.clear()


def _sampling(params: dict[str, Any], eos: Any) -> dict[str, Any]:
    """The ``generate`` arguments for OpenAI-style call parameters."""
    limit = params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_NEW_TOKENS
    temperature = params.get("temperature")
    kwargs: dict[str, Any] = {"max_new_tokens": int(limit), "eos_token_id": eos, "pad_token_id": eos}
    if temperature is None or float(temperature) > 0:
        kwargs["do_sample"] = True
        if temperature is not None:
            kwargs["temperature"] = float(temperature)
        if params.get("top_p") is not None:
            kwargs["top_p"] = float(params["top_p"])
    else:
        kwargs["do_sample"] = False
    return kwargs


class Generation(_generation.Generation):
    """One reply from a model folder, read piece by piece (the same interface as the GGUF engine's).

    Iterate `pieces()` for the text; afterwards `finish_reason`, `tokens_in` and `tokens_out`
    are set.
    """

    def pieces(self) -> Generator[str, None, None]:
        """Generate the reply, yielding non-empty pieces of text.

        Raises:
            LocalTimeout: When the model is busy or generating past the timeout.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model = engine(self.path)
        self.hold(model.lock)
        stop = threading.Event()
        generation = self

        class Halt(StoppingCriteria):
            """Ends generation when the reader has gone or the deadline has passed."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = stop.is_set() or generation.late()
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        failure: list[BaseException] = []
        try:
            ids = model.prompt_ids(self.messages)
            if self.params.get("seed") is not None:
                torch.manual_seed(int(self.params["seed"]))
            eos = model.tokenizer.eos_token_id
            streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.timeout)
            kwargs = _sampling(self.params, eos) | {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([Halt()]),
            }
            output: list[Any] = []

            def run() -> None:
                try:
                    with torch.no_grad():
                        output.append(model.model.generate(**kwargs))
                except BaseException as error:  # noqa: BLE001 — raised again in the reading thread
                    failure.append(error)
                    streamer.end()

            worker = threading.Thread(target=run, name="lab-llm-hf", daemon=True)
            worker.start()
            parts: list[str] = []
            try:
                for piece in streamer:
                    if piece:
                        parts.append(piece)
                        yield piece
                    if self.late():
                        raise LocalTimeout(f"the local model did not finish within {self.timeout:g} s")
            finally:
                stop.set()
                worker.join()
            if failure:
                raise failure[0]
            self.text = "".join(parts)
            self.tokens_in = int(ids.shape[-1])
            new = output[0][0][ids.shape[-1] :] if output else []
            self.tokens_out = len(new)
            ended_on_eos = len(new) > 0 and int(new[-1]) == eos
            self.finish_reason = "length" if not ended_on_eos and self.tokens_out >= kwargs["max_new_tokens"] else "stop"
        finally:
            model.lock.release()
