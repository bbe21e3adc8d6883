"""Layer G: grounding acts (any speaker), by transparent rules.

A turn may carry several acts; one label holds them all, joined by ``+`` in codebook order
(``ACK+FOLLOWUP``), so a newer label of the same judge supersedes the whole set at once.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUNDING_CODES: tuple[str, ...] = ("ACK", "CLARIFY", "CHECK", "FOLLOWUP", "DISPLAY", "NONE")
"""Layer G codes in codebook order (RESEARCH.md, "Codebook")."""


def join_codes(codes: Iterable[str]) -> str:
    """One label code for a set of acts: codebook order, joined by ``+`` (``NONE`` only alone)."""
    wanted = set(codes)
    unknown = wanted - set(GROUNDING_CODES)
    if unknown:
        raise ValueError(f"unknown grounding code(s): {', '.join(sorted(unknown))}")
    acts = [c for c in GROUNDING_CODES if c in wanted and c != "NONE"]
    return "+".join(acts) if acts else "NONE"


def split_codes(code: str) -> list[str]:
    """The acts of a stored G label code (the inverse of :func:`join_codes`)."""
    return [c for c in code.split("+") if c]
