"""The experimenter console's study work: checking uploaded or edited specs and previewing them.

An uploaded spec is validated in full before anything is written; a spec with errors never
reaches the database. Item files named by the spec are taken from the upload first, then
from the folder the spec came from (``studies/`` for a new upload), and must stay inside
it: a spec cannot read files elsewhere on the server.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .assign import Method, cells, method, plan_length
from .schema import Study
from .settings import ROOT
from .spec import SpecError, StudyDefinition, parse_spec

STUDIES_DIR = ROOT / "studies"
"""Where item files of a new upload are looked for when not uploaded with it."""
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Preview:
    """What a validated spec would create."""

    slug: str
    title: str
    items: list[dict[str, Any]]
    """One row per item: id, kind, title, source, conditions that apply."""
    conditions: list[dict[str, Any]]
    """One row per condition: key, label, model, reveal, presupposition, intervention, items, active."""
    method: Method
    plan_length: int
    cells: int
    warnings: list[str]


def _item_refs(text: str) -> list[str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    entries = data.get("items") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [str(e["file"]) for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)]


def check_spec_text(
    text: str, name: str, base_dir: Path | None = None, uploads: Mapping[str, bytes] | None = None
) -> StudyDefinition:
    """Validate a spec's YAML with its item files; nothing is written.

    Args:
        text: The YAML source.
        name: File name used in messages.
        base_dir: Folder item files are looked for in when not uploaded (default: ``studies/``).
        uploads: Uploaded item files by file name.

    Raises:
        SpecError: one line per problem.
    """
    base = (base_dir or STUDIES_DIR).resolve()
    uploads = dict(uploads or {})
    if sum(len(v) for v in uploads.values()) + len(text) > MAX_UPLOAD_BYTES:
        raise SpecError([f"{name}: the upload is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MB"])
    problems = []
    for ref in _item_refs(text):
        p = PurePosixPath(ref)
        if p.is_absolute() or ".." in p.parts:
            problems.append(f"{name}: items: file '{ref}' must be a path inside the spec's folder (no '..', not absolute)")
    if problems:
        raise SpecError(problems)
    with tempfile.TemporaryDirectory(prefix="lab-spec-") as tmp:
        root = Path(tmp)
        for ref in _item_refs(text):
            target = root / ref
            target.parent.mkdir(parents=True, exist_ok=True)
            uploaded = uploads.get(ref) or uploads.get(PurePosixPath(ref).name)
            if uploaded is not None:
                target.write_bytes(uploaded)
            elif (base / ref).is_file():
                target.write_bytes((base / ref).read_bytes())
        try:
            return parse_spec(text, name, root)
        except SpecError as e:
            # Messages name the temporary copy; show the names the experimenter wrote.
            raise SpecError([line.replace(f"{root}/", "").replace(str(root), "") for line in e.problems]) from None


def spec_source(study: Study) -> tuple[str, Path | None]:
    """YAML to edit (and export) for a stored study, and the folder its item files are in.

    The text as uploaded or last edited is offered first (comments and order as written),
    then the file the study was loaded from; each only when it still gives the stored
    spec (its item files may be gone). Otherwise the stored spec itself, items inline.
    """
    path = Path(study.source_path) if study.source_path else None
    folder = path.parent if path is not None and path.is_file() else None
    candidates: list[tuple[str | None, Path | None]] = [(study.spec_text, folder or STUDIES_DIR)]
    if path is not None and path.is_file():
        try:
            candidates.append((path.read_text(encoding="utf-8"), path.parent))
        except (OSError, UnicodeDecodeError):
            pass
    for text, base in candidates:
        if text is None:
            continue
        try:
            if check_spec_text(text, f"{study.slug}.yaml", base).sha256() == study.spec_sha256:
                return text, base
        except SpecError:
            continue
    stored = _without_nulls(json.loads(json.dumps(study.spec)))
    return yaml.safe_dump(stored, sort_keys=False, allow_unicode=True, width=100), None


def _without_nulls(value: Any) -> Any:
    # Unset fields default to null, so leaving them out keeps the spec the same and shorter to read.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def preview(d: StudyDefinition) -> Preview:
    """Items, conditions and the assignment plan a validated spec would create."""
    active = d.active_conditions()
    items = []
    for it in d.items:
        applies = [c for c, cond in d.spec.conditions.items() if cond.applies_to(it)]
        items.append(
            {
                "id": it.id,
                "kind": it.kind,
                "title": getattr(it, "title", None) or "",
                "source": f"{it.source.dataset}:{it.source.id}" if it.source.id else it.source.dataset,
                "conditions": ", ".join(applies),
            }
        )
    conditions = []
    for key, cond in d.spec.conditions.items():
        conditions.append(
            {
                "condition": key,
                "label": cond.label or "",
                "model": f"{cond.model} ({d.spec.models[cond.model].model})",
                "reveal": cond.reveal,
                "presupposition": cond.presupposition or "",
                "intervention": cond.intervention,
                "items": sum(1 for it in d.items if cond.applies_to(it)),
                "active": key in active,
            }
        )
    return Preview(
        slug=d.spec.slug,
        title=d.spec.title,
        items=items,
        conditions=conditions,
        method=method(d),
        plan_length=plan_length(d),
        cells=len(cells(d)),
        warnings=list(d.warnings),
    )
