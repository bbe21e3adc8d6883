"""Altair charts of the comparison figures, each with the sentence printed under it.

Every chart takes the tidy table of :func:`lab.metrics.comparison` (or a slice of it) and
returns a Vega-Lite chart that builds with empty data too (it then says there is no data).
Cells with fewer than :data:`lab.metrics.SMALL_CELL` conversations are drawn hollow and
named in the tooltip, never hidden. :func:`image` renders a chart to PNG or SVG offline
with ``vl-convert-python``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed

from .metrics import FIRST_ANSWER_BINS, PRESUPPOSITION_CODES, REPAIR_OUTCOMES

WIDTH = 520
"""Default chart width in pixels."""

MEASURE_LABELS = {
    "P": "averaged performance P (0–100)",
    "A90": "aptitude A90 (0–100)",
    "U90_10": "unreliability U90_10 (0–100)",
    "score": "task score (mean)",
    "premature_rate": "premature answer rate",
    "first_answer_turn": "assistant turn of the first answer attempt",
    "rejection_rate": "presupposition rejection rate",
    "correction_rate": "presupposition correction rate",
    "knows_but_accommodates": "knows but accommodates",
    "ask_rate": "clarification ask rate",
    "over_ask_rate": "over-ask rate",
    "clarified_score": "score after asking",
    "repair_success": "repair success rate",
    "turns_to_resolution": "turns to resolution",
    "interactivity": "interactivity (0–100)",
    "tokens_read": "assistant tokens read per conversation",
}
"""Axis titles of the measures."""


@dataclass(frozen=True)
class Figure:
    """One chart, the sentence under it, and the rows it draws."""

    key: str
    """Short name, used in file names."""
    title: str
    chart: alt.TopLevelMixin
    data: pd.DataFrame
    """The rows drawn (for the CSV download)."""
    caption: str
    """What the chart shows and how many conversations it rests on."""


_NO_DATA = "No data for this chart with the current filters."
"""What a chart without rows says unless its figure says more."""


def _empty(message: str) -> alt.Chart:
    return (
        alt.Chart(pd.DataFrame({"text": [message]}))
        .mark_text(size=14, color="gray")
        .encode(text="text:N")
        .properties(width=WIDTH, height=60)
    )


_Drawn = tuple[alt.TopLevelMixin, pd.DataFrame, str]
"""A drawn chart, the rows it draws and its caption."""


FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
"""How every unfaceted chart is sized: its width fits the page (or ``WIDTH``), and its height
is the plotting area's, with axes and legends added around it. Streamlit would otherwise fit
the whole chart, axes and legend included, into the given height, leaving a short chart no
room to draw (the offline images use the same sizing, so page and download agree)."""


def _sized(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """``chart`` with :data:`FIT_WIDTH`, unless it is faceted (a facet cannot be fitted and keeps its own size)."""
    spec = chart.to_dict(validate=False)
    if "facet" in spec or any(k in spec.get("encoding", {}) for k in ("row", "column", "facet")):
        return chart
    return chart.properties(autosize=FIT_WIDTH)


def _figure(
    key: str,
    title: str,
    rows: pd.DataFrame,
    draw: Callable[[pd.DataFrame], _Drawn],
    nothing: str,
    message: str = _NO_DATA,
) -> Figure:
    """The figure of the measure rows ``rows``: drawn by ``draw``, or a note when there are none.

    Args:
        key: The figure's short name.
        title: The figure's title.
        rows: The rows of the measure the chart shows.
        draw: Draws the chart from the rows (called only when there are rows).
        nothing: The caption when there are no rows: why the chart is empty.
        message: What the chart says in place of a drawing when there are no rows.
    """
    if rows.empty:
        return Figure(key, title, _sized(_empty(message)), rows, nothing)
    chart, data, caption = draw(rows)
    return Figure(key, title, _sized(chart), data, caption)


def _few(small: pd.Series) -> pd.Series:
    """The tooltip's small-cell flag: a phrase for cells with fewer than 5 conversations, else empty."""
    return small.map({True: "fewer than 5 conversations", False: ""})


def _intervals(base: alt.Chart) -> alt.Chart:
    """Vertical rules from ``lo`` to ``hi``: the 95 % interval of each point."""
    return base.mark_rule().encode(y="lo:Q", y2="hi:Q")


def _points_with_intervals(base: alt.Chart, size: int, height: int, **point: Any) -> alt.LayerChart:
    """Filled points of ``base`` (encoded with ``point``) over their interval rules."""
    return (_intervals(base) + base.mark_point(filled=True, size=size).encode(**point)).properties(width=WIDTH, height=height)


def _stacked_shares(
    df: pd.DataFrame,
    by: str,
    whole: str,
    codes_title: str,
    codes: tuple[str, ...],
    height: tuple[int, int],
    **encodings: Any,
) -> alt.Chart:
    """One horizontal bar per ``by`` value, split into each code's share (``key``, ``value``) of the whole.

    Args:
        df: Labelled rows (:func:`_label`) with ``key`` the code and ``value`` its share.
        by: The column that names a bar.
        whole: What the shares are of, for the axis title (``share of <whole>``).
        codes_title: Legend title of the codes.
        codes: The codes in legend order.
        height: Least height and height per bar, in pixels.
        **encodings: Further channels of the bars.
    """
    least, per_bar = height
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y(f"{by}:N", title=None),
            x=alt.X("value:Q", stack="normalize", title=f"share of {whole}", axis=alt.Axis(format="%")),
            # Every code is in the legend, in codebook order and with the same colour on every chart.
            color=alt.Color("key:N", title=codes_title, scale=alt.Scale(domain=list(codes))),
            **encodings,
            tooltip=[f"{by}:N", "key:N", alt.Tooltip("value:Q", format=".1%"), "interval:N", "n:Q", "few:N"],
        )
        .properties(width=WIDTH, height=max(least, per_bar * df[by].nunique()))
    )


def _label(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``cell`` (the condition) and a readable small-cell flag for tooltips."""
    df = df.copy()
    if "condition_key" in df:
        df["condition"] = df["condition_key"].astype(str)
    df["few"] = _few(df["small"]).fillna("")
    df["interval"] = df.apply(lambda r: f"{r['lo']:.3g} – {r['hi']:.3g}" if pd.notna(r["lo"]) else "—", axis=1)
    return df


def _rows(table: pd.DataFrame, measure: str, key: str | None = "") -> pd.DataFrame:
    t = table[table["measure"] == measure]
    if key is not None:
        t = t[t["key"] == key]
    return t


def _n(rows: pd.DataFrame) -> int:
    """Conversations behind a set of rows (per-cell counts of the rows' widest measure)."""
    if rows.empty:
        return 0
    cols = [c for c in ("model", "condition_key", "participant_kind", "key") if c in rows]
    per_cell = rows.groupby([c for c in cols if c != "key"], dropna=False)["n"].max() if cols else rows["n"]
    return int(per_cell.sum())


def models_by_conditions(table: pd.DataFrame, measure: str = "P") -> Figure:
    """Points with 95 % intervals: one measure per model × condition."""
    rows = _rows(table, measure)
    rows = rows[rows["condition_key"].notna()] if "condition_key" in rows else rows
    label = MEASURE_LABELS.get(measure, measure)

    def draw(rows: pd.DataFrame) -> _Drawn:
        df = _label(rows)
        base = alt.Chart(df).encode(
            x=alt.X("condition:N", title="condition"),
            xOffset=alt.XOffset("model:N"),
            color=alt.Color("model:N", title="model"),
            tooltip=[
                "model:N",
                "condition:N",
                alt.Tooltip("value:Q", format=".3g"),
                "interval:N",
                "n:Q",
                "few:N",
                "label_source:N",
            ],
        )
        chart = _points_with_intervals(
            base,
            size=70,
            height=280,
            # ``~g``: no trailing zeros (a scale with no spread, all values 0, would read 0.000000).
            y=alt.Y("value:Q", title=label, axis=alt.Axis(format="~g")),
            shape=alt.Shape("few:N", title="small cell", legend=None),
            fillOpacity=alt.condition("datum.small", alt.value(0.15), alt.value(1.0)),
        )
        small = int(df["small"].sum())
        caption = (
            f"{label[0].upper()}{label[1:]} per model and condition with 95 % cluster-bootstrap intervals; "
            f"{_n(rows)} conversations" + (f", {small} cell(s) with fewer than 5 drawn hollow" if small else "") + "."
        )
        return chart, df, caption

    return _figure("models", f"{label} by model and condition", rows, draw, f"No conversation has a {label} with these filters.")


def degradation_plot(laban: pd.DataFrame, degradation: pd.DataFrame | None = None) -> Figure:
    """P per reveal mode with the A10–A90 band, one line per model (Lost in Conversation style).

    Args:
        laban: Rows of measures P, A90 and A10 computed by reveal (``metrics.degradation_figures``).
        degradation: The degradation rows, quoted in the caption.
    """

    def draw(p: pd.DataFrame) -> _Drawn:
        keys = [c for c in ("model", "participant_kind", "intervention", "reveal") if c in p]
        wide = p.set_index(keys)[["value", "lo", "hi", "n", "small"]]
        for m in ("A90", "A10"):
            other = _rows(laban, m, None).set_index(keys)["value"].rename(m)
            wide = wide.join(other)
        df = wide.reset_index()
        df["mode"] = df["reveal"].astype(str) + df.get("intervention", pd.Series("none", index=df.index)).astype(str).map(
            lambda v: "" if v in ("none", "—") else f"+{v}"
        )
        order = ["FULL", "CONCAT", "SHARDED", *sorted(set(df["mode"]) - {"FULL", "CONCAT", "SHARDED"})]
        df["few"] = _few(df["small"])
        base = alt.Chart(df).encode(x=alt.X("mode:N", sort=order, title="reveal mode"), color=alt.Color("model:N"))
        band = base.mark_area(opacity=0.15).encode(
            y=alt.Y("A10:Q", title="score (0–100)", axis=alt.Axis(format="~g")), y2="A90:Q"
        )
        line = base.mark_line(point=True).encode(
            y="value:Q",
            tooltip=[
                "model:N",
                "mode:N",
                alt.Tooltip("value:Q", title="P", format=".1f"),
                alt.Tooltip("A90:Q", format=".1f"),
                alt.Tooltip("A10:Q", format=".1f"),
                "n:Q",
                "few:N",
            ],
        )
        chart = (band + _intervals(base) + line).properties(width=WIDTH, height=280)
        text = ""
        if degradation is not None and len(degradation):
            parts = [
                f"{r['model']} {r['value'] * 100:.0f} % ({r['lo'] * 100:.0f} to {r['hi'] * 100:.0f})"
                for _, r in degradation[degradation["key" if "key" in degradation else "mode"] == "SHARDED"].iterrows()
                if pd.notna(r["value"])
            ]
            if parts:
                text = " FULL → SHARDED degradation: " + "; ".join(parts) + "."
        caption = (
            "Averaged performance P per reveal mode (line, 95 % interval) inside the A10–A90 band of per-item scores; "
            f"{int(df['n'].sum())} conversations on sharded items.{text}"
        )
        return chart, df, caption

    return _figure(
        "degradation",
        "FULL → SHARDED degradation",
        _rows(laban, "P", None),
        draw,
        "No scored conversation on sharded items with these filters.",
    )


def premature_timeline(table: pd.DataFrame) -> Figure:
    """Score by the share of information revealed at the first answer attempt, per model."""

    def draw(rows: pd.DataFrame) -> _Drawn:
        df = _label(rows)
        base = alt.Chart(df).encode(
            x=alt.X("key:N", sort=list(FIRST_ANSWER_BINS), title="information revealed at the first answer attempt"),
            color="model:N",
            xOffset="model:N",
            tooltip=["model:N", "condition:N", "key:N", alt.Tooltip("value:Q", format=".2f"), "interval:N", "n:Q", "few:N"],
        )
        chart = _points_with_intervals(
            base, size=60, height=260, y=alt.Y("value:Q", title="task score", axis=alt.Axis(format=".2f"))
        )
        rates = _rows(table, "premature_rate")
        rate_text = "; ".join(f"{r['model']} ({r['condition_key']}) {r['value'] * 100:.0f} %" for _, r in rates.iterrows())
        caption = (
            "Task score by how much of the task was revealed when the assistant first tried an answer; "
            f"{_n(rows)} conversations. Premature answer rate: {rate_text or 'none'}."
        )
        return chart, df, caption

    return _figure(
        "premature",
        "Premature answers",
        _rows(table, "score_by_first_answer", None),
        draw,
        "No answer attempt in a conversation with information still to come.",
    )


def grounding_profile(table: pd.DataFrame) -> Figure:
    """Grounding-act base rates of assistant turns against user turns (the human baseline)."""

    def draw(rows: pd.DataFrame) -> _Drawn:
        df = _label(rows)
        df["role"] = df["key"].str.split(":").str[0]
        df["act"] = df["key"].str.split(":").str[1]
        agg = df.groupby(["model", "role", "act"], as_index=False).agg(value=("value", "mean"), n=("n", "sum"))
        chart = (
            alt.Chart(agg)
            .mark_bar()
            .encode(
                x=alt.X("act:N", title="grounding act"),
                xOffset="role:N",
                y=alt.Y("value:Q", title="share of the role's turns", axis=alt.Axis(format="%")),
                color=alt.Color("role:N", title="role", scale=alt.Scale(domain=["assistant", "user"])),
                column=alt.Column("model:N", title=None),
                tooltip=["model:N", "role:N", "act:N", alt.Tooltip("value:Q", format=".1%"), "n:Q"],
            )
            .properties(width=max(160, WIDTH // max(1, agg["model"].nunique())), height=220)
        )
        kinds = ", ".join(sorted(df["participant_kind"].astype(str).unique())) if "participant_kind" in df else "all"
        caption = (
            f"Share of assistant and user turns carrying each grounding act (user turns are the {kinds} baseline), "
            f"averaged over conditions; {_n(rows)} conversations."
        )
        return chart, agg, caption

    return _figure(
        "grounding",
        "Grounding acts",
        _rows(table, "grounding_rate", None),
        draw,
        "No turn carries a grounding-act label with the chosen source.",
        "No grounding-act labels (layer G) yet.",
    )


def presupposition_bars(table: pd.DataFrame) -> Figure:
    """How each model handled loaded questions, as stacked shares."""

    def draw(rows: pd.DataFrame) -> _Drawn:
        df = _label(rows)
        chart = _stacked_shares(
            df, "model", "loaded questions", "handling", PRESUPPOSITION_CODES, (120, 50), order=alt.Order("key:N")
        )
        rej = _rows(table, "rejection_rate")
        kba = _rows(table, "knows_but_accommodates")
        extra = "; ".join(f"{r['model']}: rejects {r['value'] * 100:.0f} %" for _, r in rej.iterrows())
        extra2 = "; ".join(
            f"{r['model']}: knows but accommodates {r['value'] * 100:.0f} % (n={r['n']})" for _, r in kba.iterrows()
        )
        parts = [f"Replies to questions with a false presupposition by handling code; {_n(rows)} conversations", extra, extra2]
        return chart, df, ". ".join(p for p in parts if p) + "."

    return _figure(
        "presupposition",
        "Presupposition handling",
        _rows(table, "presupposition_share", None),
        draw,
        "No labelled reply to a loaded question with these filters.",
    )


def repair_outcomes(table: pd.DataFrame) -> Figure:
    """Outcomes of repair sequences per model and condition, as stacked shares."""

    def draw(rows: pd.DataFrame) -> _Drawn:
        df = _label(rows)
        df["cell"] = df["model"].astype(str) + " · " + df["condition"].astype(str)
        chart = _stacked_shares(df, "cell", "repair sequences", "outcome", REPAIR_OUTCOMES, (60, 28))
        caption = (
            "Outcome of each repair sequence (resolved, partial, misrepair, unresolved) per model and condition; "
            f"{_n(rows)} conversations with a repair sequence."
        )
        return chart, df, caption

    return _figure(
        "repair",
        "Repair outcomes",
        _rows(table, "repair_outcome", None),
        draw,
        "No repair sequence with an outcome with these filters.",
        "No repair sequences annotated yet.",
    )


def confusion_chart(cells: list[tuple[str, str, float]]) -> alt.LayerChart:
    """A heat map of code pairs between annotators, each cell labelled with its count.

    Args:
        cells: ``(code, other annotator's code, pairs)`` rows (``lab.agreement.confusion``).
    """
    # Field names stay plain words: Vega-Lite reads quotes, dots and brackets in a field
    # name as a path into the row, and an apostrophe there leaves the chart undrawn.
    df = pd.DataFrame(cells, columns=["code", "other", "pairs"])
    codes = sorted(set(df["code"]) | set(df["other"]))
    side = max(160, 34 * len(codes))
    heat = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("other:N", title="other annotator's code", sort=codes),
            y=alt.Y("code:N", title="code", sort=codes),
            color=alt.Color("pairs:Q", scale=alt.Scale(scheme="blues"), title="pairs"),
            tooltip=[
                alt.Tooltip("code:N", title="code"),
                alt.Tooltip("other:N", title="other annotator's code"),
                alt.Tooltip("pairs:Q", format=".1f"),
            ],
        )
        .properties(width=side, height=side)
    )
    text = heat.mark_text().encode(text=alt.Text("pairs:Q", format=".0f"), color=alt.value("black"))
    return heat + text


def all_figures(table: pd.DataFrame, laban: pd.DataFrame, measure: str = "P") -> list[Figure]:
    """Every chart of the comparison page, in page order."""
    deg = _rows(table, "degradation", None)
    makers: list[Callable[[], Figure]] = [
        lambda: models_by_conditions(table, measure),
        lambda: degradation_plot(laban, deg),
        lambda: premature_timeline(table),
        lambda: presupposition_bars(table),
        lambda: grounding_profile(table),
        lambda: repair_outcomes(table),
    ]
    return [m() for m in makers]


def image(chart: alt.TopLevelMixin, fmt: str = "png", scale: float = 2.0) -> bytes:
    """The chart as PNG or SVG bytes, rendered offline by vl-convert."""
    import vl_convert as vlc

    spec = chart.to_json()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=scale)
    raise ValueError(f"unknown image format '{fmt}': use png or svg")
