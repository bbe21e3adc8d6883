"""The codebook as data: layers G, R, P, S with every code, its definition and an example.

The codes live in ``lab/codebook.yaml``; a study selects layers with ``annotation.layers``
and may add codes of its own with ``annotation.codes``. Every human label stores the
codebook version it was made under (:func:`Codebook.version`), which names the study's
additions when there are any, so a changed definition never passes for the old one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import LabError

DATA_FILE = Path(__file__).with_name("codebook.yaml")
LAYERS: tuple[str, ...] = ("G", "R", "P", "S")
"""Every layer the lab knows, in display order."""


class CodebookError(LabError, KeyError):
    """A layer or code the codebook in use does not have; the message names the ones it has."""

    def __str__(self) -> str:
        # KeyError quotes its argument; the message is meant to be read as written.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Code:
    """One code of a layer."""

    code: str
    """The value stored in ``label.code``."""
    definition: str
    """One line saying when the code applies."""
    example: str = ""
    """One short example turn."""
    key: str | None = None
    """Keyboard shortcut on the labelling screen."""
    study: bool = False
    """Added by the study's spec rather than the lab's codebook."""


@dataclass(frozen=True)
class Layer:
    """One independent layer of the codebook."""

    key: str
    """G, R, P or S."""
    name: str
    description: str
    applies_to: str
    """``any`` speaker or ``assistant`` turns only."""
    codes: tuple[Code, ...]

    def code_names(self) -> list[str]:
        """The codes' values in display order."""
        return [c.code for c in self.codes]

    def get(self, code: str) -> Code | None:
        """The code with this value, if the layer has it."""
        return next((c for c in self.codes if c.code == code), None)

    def applies(self, role: str) -> bool:
        """Whether turns of this role are labelled on this layer."""
        return self.applies_to == "any" or self.applies_to == role


@dataclass(frozen=True)
class Codebook:
    """The codebook a study's annotators use: its layers (possibly with study codes)."""

    base_version: str
    """The version of ``lab/codebook.yaml``."""
    layers: dict[str, Layer]
    trouble_types: tuple[str, ...]
    """Trouble types of a repair sequence."""
    outcomes: tuple[Code, ...]
    """Outcomes of a repair sequence."""
    additions: tuple[tuple[str, str], ...] = field(default=())
    """(layer, code) pairs the study added."""

    @property
    def version(self) -> str:
        """Version stored with every label: the base version, plus a digest of the study's codes."""
        if not self.additions:
            return self.base_version
        extra = [
            {"layer": layer, "code": code, "definition": self.layers[layer].get(code).definition}  # type: ignore[union-attr]
            for layer, code in self.additions
        ]
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.base_version}+study.{digest}"

    def layer(self, key: str) -> Layer:
        """One layer; raises :class:`CodebookError` (a ``KeyError``) naming the layers in use."""
        try:
            return self.layers[key]
        except KeyError:
            raise CodebookError(f"layer '{key}' is not used (layers: {', '.join(self.layers)})") from None

    def outcome_names(self) -> list[str]:
        """Repair outcomes' values."""
        return [c.code for c in self.outcomes]


@cache
def _raw() -> dict[str, Any]:
    data = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def base_codebook() -> Codebook:
    """The lab's codebook with every layer and no study additions."""
    data = _raw()
    layers = {
        key: Layer(
            key=key,
            name=spec["name"],
            description=" ".join(str(spec.get("description", "")).split()),
            applies_to=spec.get("applies_to", "any"),
            codes=tuple(
                Code(str(c["code"]), c["definition"], c.get("example", ""), str(c["key"]) if c.get("key") else None)
                for c in spec["codes"]
            ),
        )
        for key, spec in data["layers"].items()
    }
    repair = data["repair"]
    outcomes = tuple(Code(o["code"], o["definition"]) for o in repair["outcomes"])
    return Codebook(data["version"], layers, tuple(repair["trouble_types"]), outcomes)


def codebook_for(annotation: Any) -> Codebook:
    """The codebook of a study: its ``annotation.layers``, with its ``annotation.codes`` appended.

    Args:
        annotation: The spec's ``AnnotationSpec`` (validated, so additions do not clash).
    """
    base = base_codebook()
    added: list[tuple[str, str]] = []
    layers: dict[str, Layer] = {}
    extra = getattr(annotation, "codes", None) or {}
    for key in annotation.layers:
        layer = base.layers[key]
        codes = list(layer.codes)
        for c in extra.get(key, []):
            codes.append(Code(c.code, c.definition, c.example or "", c.key, study=True))
            added.append((key, c.code))
        layers[key] = Layer(layer.key, layer.name, layer.description, layer.applies_to, tuple(codes))
    return Codebook(base.base_version, layers, base.trouble_types, base.outcomes, tuple(added))


def annotation_problems(annotation: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Problems with a spec's added codes, as (field location, message) pairs.

    A study code must belong to a layer the study uses, must not repeat a codebook code of
    that layer or another study code, and its shortcut key must be free.
    """
    base = base_codebook()
    problems: list[tuple[tuple[Any, ...], str]] = []
    for layer_key, codes in (getattr(annotation, "codes", None) or {}).items():
        if layer_key not in annotation.layers:
            problems.append(
                (
                    ("annotation", "codes", layer_key),
                    f"layer '{layer_key}' is not in annotation.layers ({', '.join(annotation.layers)})",
                )
            )
            continue
        layer = base.layers[layer_key]
        taken = set(layer.code_names())
        keys = {c.key for c in layer.codes if c.key}
        for i, c in enumerate(codes):
            if c.code in taken:
                where = "the codebook" if layer.get(c.code) else "this study"
                problems.append(
                    (
                        ("annotation", "codes", layer_key, i, "code"),
                        f"code '{c.code}' already exists in layer {layer_key} ({where})",
                    )
                )
            taken.add(c.code)
            if c.key:
                if c.key in keys:
                    problems.append(
                        (
                            ("annotation", "codes", layer_key, i, "key"),
                            f"shortcut key '{c.key}' is already used in layer {layer_key}",
                        )
                    )
                keys.add(c.key)
    return problems


def format_codebook(book: Codebook, layer: str | None = None) -> str:
    """The codebook as plain text, for the terminal.

    Args:
        book: The codebook.
        layer: One layer only.

    Raises:
        CodebookError: for a layer the codebook does not have.
    """
    keys = [book.layer(layer).key] if layer else list(book.layers)
    lines = [f"Codebook {book.version}"]
    for key in keys:
        lay = book.layers[key]
        who = "any speaker" if lay.applies_to == "any" else f"{lay.applies_to} turns"
        lines += ["", f"{key} — {lay.name} ({who})", f"  {lay.description}"]
        width = max(len(c.code) for c in lay.codes)
        lines.append(f"  key  {'code':<{width}}  definition")
        for c in lay.codes:
            mark = " [study]" if c.study else ""
            lines.append(f"  {c.key or '–':<3}  {c.code:<{width}}  {c.definition}{mark}")
            if c.example:
                lines.append(f"  {'':<3}  {'':<{width}}  e.g. “{c.example}”")
        if key == "R":
            lines.append(f"  trouble types: {', '.join(book.trouble_types)}")
            lines.append("  outcomes: " + "; ".join(f"{o.code} ({o.definition.rstrip('.')})" for o in book.outcomes))
    return "\n".join(lines)
