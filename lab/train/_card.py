"""The model card written beside a tuned model's weights.

``README.md`` is a Hugging Face model card (YAML front matter, then prose) that says what
the model was trained from and how; ``training.json`` holds the same facts for programs;
``loss.png`` is the training loss per step. Someone given only the folder can tell which
study, version and split it learned from, which rules and label sources made its pairs,
every hyperparameter and seed, and the library versions.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._stack import versions

if TYPE_CHECKING:
    from ._base import BaseModel
    from ._data import TrainingData
    from ._options import TrainOptions
    from ._run import TrainResult

CARD_FILE = "training.json"
"""The machine-readable card."""


def loss_png(losses: list[tuple[int, float]], path: Path) -> bool:
    """Draw the loss curve as a PNG (offline, with the lab's chart renderer).

    Returns:
        False when there is nothing to draw.
    """
    if not losses:
        return False
    import altair as alt
    import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed

    from ..charts import image

    frame = pd.DataFrame(losses, columns=["step", "loss"])
    chart = (
        alt.Chart(frame, title="Training loss")
        .mark_line(point=True)
        .encode(x=alt.X("step:Q", title="optimizer step"), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)))
        .properties(width=480, height=240)
    )
    path.write_bytes(image(chart, "png"))
    return True


def _split_text(split: Any) -> str:
    """What the export's split record says, in words."""
    if not isinstance(split, dict) or not split.get("made"):
        return "all items (the study has no held-out split)"
    held = len(split.get("heldout_items_left_out", []))
    return f"train split ({held} held-out item(s) left out)"


def card_facts(options: TrainOptions, data: TrainingData, base: BaseModel, result: TrainResult) -> dict[str, Any]:
    """Everything the card states, as one JSON-ready dictionary."""
    from .. import __version__

    provenance = data.provenance
    return {
        "model": options.out.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": options.method,
        "base": base.describe(),
        "data": {
            "study": provenance.get("study"),
            "versions": provenance.get("studies", []),
            "split": _split_text(provenance.get("split")),
            "records": provenance.get("records"),
            "items": provenance.get("items"),
            "by_rule": provenance.get("by_rule", {}),
            "label_sources": provenance.get("label_sources", {}),
            "export": str(data.source),
        },
        "hyperparameters": options.hyperparameters(),
        "seed": options.seed,
        "result": {
            "steps": result.steps,
            "losses": result.losses,
            "seconds": round(result.seconds, 2),
            "tokens": result.tokens,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "peak_memory_mb": round(result.peak_memory_mb, 1) if result.peak_memory_mb is not None else None,
            "resumed_from": result.resumed_from,
        },
        "versions": {"lab": __version__, "python": platform.python_version(), **versions()},
    }


def _table(rows: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v} |" for k, v in rows.items())


def card_markdown(facts: dict[str, Any], has_plot: bool) -> str:
    """The README model card for ``facts`` (see :func:`card_facts`)."""
    data, result, hp = facts["data"], facts["result"], facts["hyperparameters"]
    base_name = facts["base"]["name"]
    last = f"{result['losses'][-1][1]:.4f}" if result["losses"] else "–"
    rules = ", ".join(f"{k} {v}" for k, v in data["by_rule"].items()) or "–"
    sources = ", ".join(f"{k} {v}" for k, v in data["label_sources"].items()) or "–"
    lines = [
        "---",
        f"base_model: {base_name}",
        "library_name: transformers",
        f"tags: [repair-lab, {facts['method']}, lora]",
        "---",
        "",
        f"# {facts['model']}",
        "",
        f"{facts['method'].upper()} with LoRA on study `{data['study']}`, merged into `{base_name}`. "
        f"Serve it in the lab as `local/<this folder>`.",
        "",
        "## Data",
        "",
        "| | |",
        "|---|---|",
        _table(
            {
                "study": data["study"],
                "versions": ", ".join(f"v{v['version']}" for v in data["versions"]) or "–",
                "split": data["split"],
                "records": data["records"],
                "items": data["items"],
                "pairs by rule": rules,
                "label sources": sources,
                "export": f"`{data['export']}`",
            }
        ),
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        _table({k: hp[k] for k in ("lora_r", "lora_alpha", "epochs", "lr", "max_length", "batch_size", "grad_accum", "device")}),
        _table({"seed": facts["seed"], "steps": result["steps"], "last loss": last, "seconds": result["seconds"]}),
        _table({"tokens per second": result["tokens_per_second"], "peak memory (MiB)": result["peak_memory_mb"]}),
        "",
    ]
    if has_plot:
        lines += ["![training loss](loss.png)", ""]
    lines += [
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in facts["versions"].items()),
        "",
        "## Limits",
        "",
        "A model tuned on one study's conversations is evaluated on that study's held-out items "
        "(`python -m lab simulate SLUG --split heldout`); what it learned need not carry to other items, "
        "and pairs built from automatic labels teach what the automatic judge rewards.",
        "",
    ]
    return "\n".join(lines)


def write_card(options: TrainOptions, data: TrainingData, base: BaseModel, result: TrainResult) -> dict[str, Any]:
    """Write ``README.md``, ``training.json`` and ``loss.png`` into the model folder.

    Returns:
        The card's facts.
    """
    facts = card_facts(options, data, base, result)
    has_plot = loss_png(result.losses, options.out / "loss.png")
    (options.out / CARD_FILE).write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (options.out / "README.md").write_text(card_markdown(facts, has_plot), encoding="utf-8")
    return facts
