"""The training stack: torch, transformers, peft, trl and accelerate, installed apart from the lab.

The stack is several gigabytes (torch from the package registry is a CUDA build), so it
lives in ``requirements-train.txt`` and ``make train-setup`` installs it; the web app and
every other command run without it. What needs it asks :func:`require_stack` first, which
names what is missing and how to get it instead of failing on an import deep inside.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from ..errors import LabError

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate")
"""The distributions training needs (each is also the name it is imported by)."""

INSTALL_HINT = "install the training stack with `make train-setup` (or `pip install -r requirements-train.txt`)"


class TrainingStackMissing(LabError):
    """Training (or serving a tuned model) was asked for on a machine without the training stack."""


def missing_packages(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The training packages that cannot be imported here, found without importing them.

    Args:
        packages: The names to look for.

    Returns:
        The missing names, in the order given.
    """
    missing = []
    for name in packages:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_stack(packages: tuple[str, ...] = PACKAGES, *, purpose: str = "training") -> None:
    """Refuse with the way out when a package of the training stack is missing.

    Args:
        packages: What the caller needs (serving a tuned model needs only torch and transformers).
        purpose: What the packages are needed for, for the message.

    Raises:
        TrainingStackMissing: Naming the missing packages and how to install them.
    """
    missing = missing_packages(packages)
    if missing:
        raise TrainingStackMissing(f"{purpose} needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}.")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the training stack (for the model card).

    Args:
        packages: The distributions to report.

    Returns:
        Name to version, ``"missing"`` where not installed.
    """
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found
