"""One reply from an in-process model, read piece by piece: what the GGUF and model-folder engines share.

Both engines keep one lock per loaded model, because a model's state belongs to one
generation at a time; a call waits for the lock no longer than its timeout allows.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


class LocalTimeout(Exception):
    """The local model did not finish within the call's timeout (or stayed busy past it)."""


class Generation:
    """A reply's inputs and, once its pieces are read, its text, finish reason and token counts."""

    def __init__(self, path: Path, messages: list[dict[str, Any]], params: dict[str, Any], timeout: float | None):
        """Prepare the generation.

        Args:
            path: The model's file or folder.
            messages: The conversation.
            params: Sampling parameters; ones the engine does not take are ignored.
            timeout: Seconds the whole call may take, waiting for the model included.
        """
        self.path = path
        self.messages = messages
        self.params = params
        self.timeout = timeout
        self.finish_reason: str | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.text = ""
        self.deadline = time.monotonic() + timeout if timeout else None
        """When the call must end (None: no limit)."""

    def hold(self, lock: threading.Lock) -> None:
        """Take the model's lock, waiting no longer than the call's deadline allows.

        Raises:
            LocalTimeout: When other conversations keep the model past the deadline.
        """
        wait = max(0.0, self.deadline - time.monotonic()) if self.deadline else -1
        if not lock.acquire(timeout=wait):
            raise LocalTimeout(f"the local model stayed busy with other conversations for {self.timeout:g} s")

    def late(self) -> bool:
        """Whether the call's deadline has passed."""
        return self.deadline is not None and time.monotonic() > self.deadline
