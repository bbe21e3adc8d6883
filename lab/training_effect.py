"""The training effect: a tuned model against its base, on the study's held-out items only.

After ``python -m lab train`` and ``python -m lab simulate SLUG --split heldout --models
BASE,TUNED``, the question the study asks is whether the tuned model repairs better than
the model it was tuned from on items it never saw. Each measure below is computed for both
models from the same held-out conversations, and the difference (tuned − base) gets an
interval from the comparison's own two-way cluster bootstrap: both models' figures come
from the same resampled items (and participants), so the interval is a paired one. A
sentence says whether the interval excludes zero, and in which direction is better.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LabError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed
    from sqlalchemy import Engine

    from .analysis_data import AnalysisData
    from .metrics import Options

CARD_FILE = "training.json"
"""The machine-readable model card a training run writes beside the weights (`lab.train`)."""


class EffectError(LabError):
    """A training effect that cannot be computed, with the reason and what to do."""


@dataclass(frozen=True)
class EffectMeasure:
    """One measure of the training-effect view."""

    name: str
    """The measure's name in the comparison's figures (``degradation_pooled`` is computed here)."""
    label: str
    """What it counts, in words."""
    higher_is_better: bool
    """Which direction of the difference is an improvement."""


EFFECT_MEASURES: tuple[EffectMeasure, ...] = (
    EffectMeasure("score", "task score", True),
    EffectMeasure("ask_rate", "asks when information is missing", True),
    EffectMeasure("over_ask_rate", "asks when nothing is missing", False),
    EffectMeasure("premature_rate", "answers before the task is complete", False),
    EffectMeasure("rejection_rate", "rejects a false presupposition", True),
    EffectMeasure("degradation_pooled", "FULL → SHARDED degradation (task families pooled)", False),
)
"""The measures of the view, in the order shown."""

COLUMNS = [
    "measure",
    "participant_kind",
    "base",
    "tuned",
    "base_value",
    "tuned_value",
    "diff",
    "lo",
    "hi",
    "n",
    "items",
    "verdict",
]
"""Columns of :func:`training_effect`'s table."""


def model_card(model: str) -> dict[str, Any] | None:
    """The training card of ``local/<folder>`` (or a folder path), None for any other model."""
    folder = Path(model.split("/", 1)[1] if model.startswith("local/") else model).expanduser()
    card = folder / CARD_FILE
    if not card.is_file():
        return None
    try:
        found = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def effect_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """``(base, tuned)`` pairs among ``models``: a tuned model whose card names a base that ran too."""
    present = list(dict.fromkeys(models))
    pairs = []
    for tuned in present:
        card = model_card(tuned)
        base = (card or {}).get("base", {}).get("name")
        if base in present and base != tuned:
            pairs.append((str(base), tuned))
    return pairs


def _verdict(m: EffectMeasure, base_value: float, tuned_value: float, lo: float, hi: float, items: int) -> str:
    import math

    diff = tuned_value - base_value
    if not math.isfinite(diff):
        missing = [who for who, v in (("the base", base_value), ("the tuned model", tuned_value)) if not math.isfinite(v)]
        whom = "either model" if len(missing) == 2 else missing[0]
        why = " (a drop relative to FULL is undefined where FULL scores 0)" if m.name == "degradation_pooled" else ""
        return f"{m.label}: no figure for {whom} on these items{why}."
    way = "higher" if diff > 0 else "lower" if diff < 0 else "no different"
    text = f"{m.label}: the tuned model is {abs(diff):.3g} {way} than its base" if diff else f"{m.label}: no difference"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} (no interval) on {items} held-out item(s)."
    if lo > 0 or hi < 0:
        better = (diff > 0) == m.higher_is_better
        judged = "an improvement" if better else "a deterioration"
        return f"{text} (95 % interval {lo:+.3g} to {hi:+.3g}, which excludes zero: {judged}) on {items} held-out item(s)."
    return f"{text} (95 % interval {lo:+.3g} to {hi:+.3g}, which includes zero: no clear effect) on {items} held-out item(s)."


def _interval(draws: Any, level: float) -> tuple[float, float]:
    import numpy as np

    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def _pooled_degradation(data: AnalysisData, o: Options, models: tuple[str, str]) -> dict[tuple[str, str], tuple[float, Any, int]]:
    """(model, participant kind) → (degradation, its draws, conversations) from FULL and SHARDED without a mediator."""
    import numpy as np

    from . import metrics

    fig = metrics.degradation_figures(data, replace(o, by=("model",)), by_task=False)
    t = fig.table
    p = t[(t["measure"] == "P") & (t["intervention"].astype(str).isin(["none", "—"]))]
    out: dict[tuple[str, str], tuple[float, Any, int]] = {}
    for (model, kind), grp in p.groupby(["model", "participant_kind"], dropna=False):
        if model not in models:
            continue
        full, sharded = grp[grp["reveal"] == "FULL"], grp[grp["reveal"] == "SHARDED"]
        if full.empty or sharded.empty:
            continue
        f, s = full.iloc[0], sharded.iloc[0]
        value = (f["value"] - s["value"]) / f["value"] if f["value"] else float("nan")
        df_ = fig.draws.get(("P", "", tuple(f[b] for b in fig.by)))
        ds = fig.draws.get(("P", "", tuple(s[b] for b in fig.by)))
        draws = None
        if df_ is not None and ds is not None:
            with np.errstate(all="ignore"):
                draws = (df_ - ds) / df_
        out[(str(model), str(kind))] = (float(value), draws, int(f["n"] + s["n"]))
    return out


def _only(data: AnalysisData, ids: Any) -> AnalysisData:
    """The frames of these conversations alone (turns and labels with them)."""
    conv = data.conversations[data.conversations["id"].isin(ids)].reset_index(drop=True)
    turns = data.turns[data.turns["session_id"].isin(conv["id"])].reset_index(drop=True)
    labels = data.labels[data.labels["turn_id"].isin(turns["id"])].reset_index(drop=True)
    rs = data.repair_sequences[data.repair_sequences["session_id"].isin(conv["id"])].reset_index(drop=True)
    return replace(data, conversations=conv, turns=turns, labels=labels, repair_sequences=rs)


def format_effect(table: pd.DataFrame, fmt: str = "table") -> str:
    """The effect as an aligned table followed by its sentences, or as CSV or JSON records."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=1)
    if table.empty:
        return "no training effect: neither model has a figure for these measures on the held-out items"
    t = table.copy()
    for col in ("base_value", "tuned_value", "diff"):
        t[col] = t[col].map(lambda v: f"{v:.3g}")
    t["95% interval"] = [f"[{lo:+.3g}, {hi:+.3g}]" for lo, hi in zip(table["lo"], table["hi"], strict=True)]
    cols = ["measure", "participant_kind", "base_value", "tuned_value", "diff", "95% interval", "n", "items"]
    head = f"training effect of {table['tuned'].iloc[0]} over {table['base'].iloc[0]} (tuned − base), held-out items only"
    return "\n".join([head, t[cols].to_string(index=False), "", *table["verdict"]])


def training_effect(
    data: AnalysisData,
    base: str,
    tuned: str,
    *,
    items: Collection[str] | None = None,
    options: Options | None = None,
) -> pd.DataFrame:
    """Tuned − base for every measure of :data:`EFFECT_MEASURES`, with paired intervals.

    Args:
        data: The study's frames.
        base: The base model's string, as the conversations record it.
        tuned: The tuned model's string.
        items: The item ids to compare on (the held-out ones); None compares on all.
        options: Label source, bootstrap draws and seed, level (cells are the model).

    Returns:
        One row per measure and participant kind (:data:`COLUMNS`); ``verdict`` says in a
        sentence whether the interval excludes zero and whether that is an improvement.

    Raises:
        EffectError: When either model has no conversations on those items.
    """
    import numpy as np
    import pandas as pd

    from . import metrics

    o = replace(options or metrics.Options(), by=("model",))
    conv = data.conversations
    mask = conv["model"].isin([base, tuned])
    if items is not None:
        mask &= conv["item_key"].isin(list(items))
    missing = [m for m in (base, tuned) if not (mask & (conv["model"] == m)).any()]
    if missing:
        where = "the held-out items" if items is not None else "this study"
        raise EffectError(
            f"no conversations of {', '.join(missing)} on {where}: run "
            f"`python -m lab simulate {data.slug} --split heldout --models {base},{tuned}` first"
        )
    keep = conv[mask.to_numpy(dtype=bool)]
    data = _only(metrics.select(data, models=[base, tuned]), keep["id"])
    n_items = int(keep["item_key"].nunique())
    figures = metrics.compute(data, o)
    t = figures.table
    rows: list[dict[str, Any]] = []
    for m in EFFECT_MEASURES:
        if m.name == "degradation_pooled":
            found = _pooled_degradation(data, o, (base, tuned))
            for kind in sorted({k for _, k in found}):
                b, tu = found.get((base, kind)), found.get((tuned, kind))
                if b is None or tu is None:
                    continue
                lo, hi = _interval(tu[1] - b[1], o.level) if b[1] is not None and tu[1] is not None else (np.nan, np.nan)
                rows.append(_row(m, kind, base, tuned, b[0], tu[0], lo, hi, b[2] + tu[2], n_items))
            continue
        cells = t[(t["measure"] == m.name) & (t["key"] == "")]
        for kind, grp in cells.groupby("participant_kind", dropna=False):
            by_model = {r["model"]: r for _, r in grp.iterrows()}
            if base not in by_model or tuned not in by_model:
                continue
            b, tu = by_model[base], by_model[tuned]
            db = figures.draws.get((m.name, "", tuple(b[c] for c in figures.by)))
            dt = figures.draws.get((m.name, "", tuple(tu[c] for c in figures.by)))
            lo, hi = _interval(dt - db, o.level) if db is not None and dt is not None else (np.nan, np.nan)
            rows.append(_row(m, str(kind), base, tuned, b["value"], tu["value"], lo, hi, int(b["n"] + tu["n"]), n_items))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(
    m: EffectMeasure,
    kind: str,
    base: str,
    tuned: str,
    base_value: float,
    tuned_value: float,
    lo: float,
    hi: float,
    n: int,
    items: int,
) -> dict[str, Any]:
    return {
        "measure": m.name,
        "participant_kind": kind,
        "base": base,
        "tuned": tuned,
        "base_value": float(base_value),
        "tuned_value": float(tuned_value),
        "diff": float(tuned_value) - float(base_value),
        "lo": float(lo),
        "hi": float(hi),
        "n": n,
        "items": items,
        "verdict": _verdict(m, float(base_value), float(tuned_value), float(lo), float(hi), items),
    }


def heldout_items(engine: Engine, slug: str) -> list[str]:
    """The study's held-out items.

    Raises:
        EffectError: When the study has no split: the effect is measured on items the tuned
            model never saw, and without a split there are none.
    """
    from .split import item_splits

    splits = item_splits(engine, slug)
    if not splits:
        raise EffectError(
            f"study '{slug}' has no held-out items: run `python -m lab split {slug} --heldout 0.3` before training, "
            "so that the tuned model is measured on items it never saw"
        )
    return sorted(k for k, v in splits.items() if v == "heldout")


def study_effect(engine: Engine, slug: str, base: str, tuned: str, options: Options | None = None) -> pd.DataFrame:
    """:func:`training_effect` of a study in the database, on its held-out items."""
    from .analysis_data import load_study

    items = heldout_items(engine, slug)
    return training_effect(load_study(engine, slug), base, tuned, items=items, options=options)
