"""A bundle's self-description: provenance, Frictionless data package and dataset card.

``bundle.json`` holds the provenance, ``datapackage.json`` the Frictionless Table Schemas,
and ``README.md`` the data dictionary as a Hugging Face dataset card.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .. import codebook as books
from ..schema import Base
from ._dictionary import JSON_TYPES, TABLES, Table, fate

FOREIGN_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "conversations": [("participant_id", "participants", "id"), ("item_id", "items", "id")],
    "turns": [("session_id", "conversations", "id")],
    "labels": [("turn_id", "turns", "id")],
    "repair_sequences": [("session_id", "conversations", "id")],
    "responses": [("participant_id", "participants", "id"), ("session_id", "conversations", "id")],
    "events": [("participant_id", "participants", "id"), ("session_id", "conversations", "id")],
    "items": [],
}
"""Links between the bundle's tables, for ``datapackage.json``."""

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "jsonl": "application/jsonl"}


def prompt_versions() -> dict[str, str | None]:
    """Versions of the judge and simulator prompts and rules this lab build uses."""
    # Imported here for start-up time: reading a bundle (lab.bundle imports lab.export) would
    # otherwise load the judges and the simulator, a second or more on a busy machine.
    from ..judge import LLM_JUDGE_PROMPT_VERSION, RULES_VERSION
    from ..simulate import CONSISTENCY_PROMPT_VERSION, SCRIPTED_VERSION, SIMULATOR_PROMPT_VERSION

    return {
        "judge_rules": RULES_VERSION,
        "judge_llm_prompt": LLM_JUDGE_PROMPT_VERSION,
        "simulator_prompt": SIMULATOR_PROMPT_VERSION,
        "simulator_scripted": SCRIPTED_VERSION,
        "simulator_consistency_prompt": CONSISTENCY_PROMPT_VERSION,
    }


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def codebook() -> tuple[str, Any]:
    """The lab's codebook (``lab/codebook.yaml``) as ``(version, content)``."""
    book = books.base_codebook()
    return book.version, json.loads(json.dumps(book, default=_jsonable, ensure_ascii=False))


def write_codebook(out: Path) -> dict[str, Any]:
    """``codebook.json``; returns its ``bundle.json`` entry."""
    version, content = codebook()
    (out / "codebook.json").write_text(
        json.dumps({"version": version, "codebook": content}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return {"version": version, "file": "codebook.json"}


def table_file(name: str, fmt: str) -> str:
    """Path of a table inside the bundle.

    A folder per table, so tools that take a folder (``datasets.load_dataset("parquet",
    data_dir=…)``, ``pandas.read_parquet``) read one table.
    """
    return f"data/{name}/{name}.{fmt}"


def _field(c: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"name": c.name, "type": c.type, "description": c.description}
    if c.type == "datetime":
        f["format"] = "any"
    if c.required:
        f["constraints"] = {"required": True}
    return f


def table_schema(t: Table) -> dict[str, Any]:
    """The table's Frictionless Table Schema."""
    schema: dict[str, Any] = {"fields": [_field(c) for c in t.columns], "missingValues": [""]}
    if t.primary_key:
        schema["primaryKey"] = [t.primary_key]
    fks = FOREIGN_KEYS.get(t.name, [])
    if fks:
        schema["foreignKeys"] = [{"fields": [f], "reference": {"resource": r, "fields": [rf]}} for f, r, rf in fks]
    return schema


def datapackage(slug: str, fmt: str, rows: dict[str, int], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """``datapackage.json``: one resource per table with its schema, plus the bundle's other files."""
    resources = []
    for t in TABLES:
        res: dict[str, Any] = {
            "name": t.name,
            "path": table_file(t.name, fmt),
            "profile": "tabular-data-resource",
            "format": fmt,
            "mediatype": MEDIA_TYPES[fmt],
            "encoding": "utf-8",
            "description": t.description,
            "schema": table_schema(t),
        }
        if fmt == "csv":
            res["dialect"] = {"delimiter": ",", "quoteChar": '"', "header": True}
        res["rows"] = rows.get(t.name, 0)
        resources.append(res)
    return {
        "profile": "tabular-data-package",
        "name": f"repair-lab-{slug}".lower().replace("_", "-"),
        "title": f"Repair Lab study '{slug}'",
        "resources": resources + extra,
    }


def _yaml_configs(fmt: str, names: list[str], default: str) -> str:
    lines = ["configs:"]
    for name in names:
        lines.append(f"- config_name: {name}")
        lines.append(f"  data_files: {table_file(name, fmt)}")
        if name == default:
            lines.append("  default: true")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def dictionary_markdown() -> str:
    """The data dictionary: every column of every table, then what happens to every database column."""
    out = []
    for t in TABLES:
        out.append(f"### `{t.name}`\n\n{t.description}\n")
        out.append("| column | type | meaning |\n|---|---|---|")
        for c in t.columns:
            kind = c.type + (" (JSON text)" if c.type in JSON_TYPES else "")
            out.append(f"| `{c.name}` | {kind} | {_md_cell(c.description)} |")
        out.append("")
    out.append("### Database columns and where they went\n")
    out.append("Every column of the lab's database, and what a bundle does with it.\n")
    out.append("| database column | in this bundle |\n|---|---|")
    for table in Base.metadata.sorted_tables:
        for col in table.columns:
            key = f"{table.name}.{col.name}"
            out.append(f"| `{key}` | {_md_cell(fate(key) or 'UNDOCUMENTED')} |")
    return "\n".join(out) + "\n"


def readme(slug: str, fmt: str, meta: dict[str, Any]) -> str:
    """README.md: a Hugging Face dataset card whose body is the data dictionary."""
    names = [t.name for t in TABLES]
    rows = meta["rows"]
    versions = ", ".join(f"v{s['version']} (`{s['spec_sha256'][:12]}…`)" for s in meta["studies"])
    front = "\n".join(
        [
            "---",
            f"pretty_name: Repair Lab study {slug}",
            "tags:",
            "- conversational-repair",
            "- dialogue",
            "- human-ai-interaction",
            _yaml_configs(fmt, names, "conversations"),
            "---",
        ]
    )
    counts = "\n".join(f"| `{n}` | {rows.get(n, 0)} | `{table_file(n, fmt)}` |" for n in names)
    load = {
        "parquet": 'pandas.read_parquet("data/turns")',
        "csv": f'pandas.read_csv("{table_file("turns", fmt)}")',
        "jsonl": f'pandas.read_json("{table_file("turns", fmt)}", lines=True)',
    }[fmt]
    builder = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}[fmt]
    return f"""{front}

# Repair Lab study `{slug}`

Conversations between people (or simulated users) and language models, recorded by Repair
Lab, with every turn, its timing and cost, the labels of people and automatic judges, repair
sequences, survey answers and the event log. Study versions: {versions}.

Exported {meta["created_at"]} by Repair Lab {meta["lab_version"]} (database revision
`{meta["migration_revision"]}`). Filters: `{json.dumps(meta["filters"])}`.

## Files

| table | rows | file |
|---|---|---|
{counts}

- `spec/v<version>.json`: the study spec as stored (items inlined); `bundle.json` gives its sha256.
- `bundle.json`: provenance (lab version, migration revision, judge and simulator prompt versions,
  codebook version, filters, row counts).
- `datapackage.json`: the same tables as a Frictionless data package (Table Schema per table).
- `codebook.json`: the annotation codebook, when the lab that made the bundle has one.

## Loading

```python
import pandas
turns = {load}

from lab.bundle import read_bundle          # with Repair Lab installed: every table, typed
tables = read_bundle(".")

import datasets                             # Hugging Face: one config per table
turns = datasets.load_dataset(".", "turns")["train"]
turns = datasets.load_dataset("{builder}", data_dir="data/turns")["train"]
```

Each table sits in its own folder under `data/`, so anything that reads a folder reads one
table. (`datasets` cannot load a table with no rows; pandas and pyarrow can.)

Times are UTC. Participants carry a pseudonymous id, numbered within this bundle only.
Columns typed `object`/`array`/`any` hold JSON text (JSON values in JSONL bundles).
Turns are sorted by conversation and `index`. Prolific ids, link tokens and their hashes,
staff account names, IP-derived data, private notes and API keys are not in this bundle.

## Data dictionary

{dictionary_markdown()}"""


def write_docs(out: Path, slug: str, fmt: str, meta: dict[str, Any], extra_resources: list[dict[str, Any]]) -> None:
    """Write ``bundle.json``, ``datapackage.json`` and ``README.md``."""
    (out / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    package = datapackage(slug, fmt, meta["rows"], extra_resources)
    (out / "datapackage.json").write_text(json.dumps(package, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(slug, fmt, meta), encoding="utf-8")
