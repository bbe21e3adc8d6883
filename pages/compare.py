"""Model comparison: the field's measures per model × condition with 95 % intervals, as charts."""

from __future__ import annotations

from typing import Any

import streamlit as st

from lab import analysis_data, charts, metrics, report, training_effect
from lab.ui import engine, pick_study, staff_header
from lab.web.guard import require_role

visitor = require_role("experimenter")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Compare models")

SOURCES = {
    "best": "best available (gold, else human majority, else automatic)",
    "gold": "adjudicated gold only",
    "majority": "human majority only",
    "auto": "automatic judge only",
}
PARTICIPANTS = {
    "apart": "human and simulated, kept apart",
    "human": "human participants only",
    "simulated": "simulated participants only",
    "pooled": "human and simulated, pooled",
}


@st.cache_resource(show_spinner="Loading the study…", max_entries=4)
def load(slug: str, version: int, state: tuple[Any, ...]) -> analysis_data.AnalysisData:
    """The study's frames, shared (not copied) by every viewer until its data change."""
    return analysis_data.load_study(engine(), slug, version)


@st.cache_data(show_spinner="Computing figures and intervals…", max_entries=32)
def figures(
    slug: str,
    version: int,
    state: tuple[Any, ...],
    models: tuple[str, ...],
    conditions: tuple[str, ...],
    kinds: tuple[str, ...],
    participants: str,
    source: str,
    draws: int,
) -> dict[str, Any]:
    """Every figure for one selection, cached per study version, label state and filters.

    Only the small tables are cached (cached values are copied on every hit).
    """
    data = load(slug, version, state)
    kinds_p = None if participants in ("apart", "pooled") else [participants]
    data = metrics.select(
        data, models=list(models), conditions=list(conditions), item_kinds=list(kinds), participant_kinds=kinds_p
    )
    options = metrics.Options(source=source, draws=draws, pool_participants=participants == "pooled")
    c = report.build(data, options)
    return {
        "table": c.table,
        "laban": c.laban,
        "pairwise": c.pairwise,
        "conversations": len(c.data.conversations),
        "families": report.by_family(data, options),
    }


@st.cache_data(show_spinner="Computing the training effect…", max_entries=8)
def effect_of(slug: str, version: int, state: tuple[Any, ...], pair: tuple[str, str], source: str, draws: int) -> Any:
    """Tuned − base on the held-out items, cached per study version and label state."""
    options = metrics.Options(source=source, draws=draws)
    items = training_effect.heldout_items(engine(), slug)
    return training_effect.training_effect(load(slug, version, state), pair[0], pair[1], items=items, options=options)


slug = pick_study()
if slug is None:
    st.stop()
versions = analysis_data.study_versions(engine(), slug)
c1, c2, c3 = st.columns(3)
version = c1.selectbox("Version", versions[::-1], help="Figures never mix study versions.")
state = analysis_data.data_state(engine(), slug, version)
data = load(slug, version, state)
conv = data.conversations
if conv.empty:
    st.info("This study version has no conversations yet: run a simulated pilot (`python -m lab simulate`) or open it.")
    st.stop()

all_models = sorted(conv["model"].dropna().unique())
all_conditions = sorted(conv["condition_key"].dropna().unique())
all_kinds = sorted(conv["item_kind"].dropna().unique())
judges = sorted(a for a in data.labels["annotator"].astype(str).unique() if a.startswith(analysis_data.AUTO_PREFIX))
source_options = {**SOURCES, **{j: f"{j} only" for j in judges}}
source = c2.selectbox(
    "Labels",
    list(source_options),
    format_func=source_options.get,
    key="compare_source",
    help="Which labels every figure uses; each figure names its source.",
)
participants = c3.selectbox("Participants", list(PARTICIPANTS), format_func=PARTICIPANTS.get, key="compare_participants")
c1, c2, c3 = st.columns(3)
models = c1.multiselect("Models", all_models, default=all_models, key="compare_models")
conditions = c2.multiselect("Conditions", all_conditions, default=all_conditions)
kinds = c3.multiselect("Item kinds", all_kinds, default=all_kinds)
c1, c2 = st.columns(2)
measure = c1.selectbox("Measure for the first chart", list(charts.MEASURE_LABELS), format_func=charts.MEASURE_LABELS.get)
draws = c2.select_slider(
    "Bootstrap draws", options=[200, 500, 1000, 2000], value=1000, help="Resamples participants and items, never turns."
)

comparison = figures(slug, version, state, tuple(models), tuple(conditions), tuple(kinds), participants, source, draws)
st.caption(
    f"{comparison['conversations']} conversations · version {version} · 95 % intervals from {draws} cluster-bootstrap draws "
    "over participants and items · cells with fewer than 5 conversations are drawn hollow and flagged, never hidden."
)

for fig in charts.all_figures(comparison["table"], comparison["laban"], measure):
    st.subheader(fig.title)
    st.altair_chart(fig.chart, width="stretch")
    st.caption(fig.caption)
    d1, d2, d3 = st.columns([1, 1, 6])
    d1.download_button(
        "CSV", fig.data.to_csv(index=False), file_name=f"{slug}-v{version}-{fig.key}.csv", mime="text/csv", key=f"csv-{fig.key}"
    )
    d2.download_button(
        "PNG",
        lambda chart=fig.chart: charts.image(chart, "png"),
        file_name=f"{slug}-v{version}-{fig.key}.png",
        mime="image/png",
        key=f"png-{fig.key}",
    )

st.subheader("Model differences in P")
if comparison["pairwise"].empty:
    st.write("Only one model in the selection.")
else:
    st.dataframe(comparison["pairwise"], hide_index=True, width="stretch")
    st.caption(
        "Differences in averaged performance P between two models in the same condition, with 95 % intervals from the same draws."
    )

st.subheader("Training effect on held-out items")
pairs = training_effect.effect_pairs(all_models)
if not pairs:
    st.write(
        "No tuned model ran beside its base in this version. After `python -m lab train`, simulate both on the "
        "held-out items: `python -m lab simulate SLUG --split heldout --models BASE,local/models/NAME`."
    )
else:
    pair = st.selectbox("Tuned model", pairs, format_func=lambda p: f"{p[1]} over its base {p[0]}")
    try:
        effect = effect_of(slug, version, state, pair, source, draws)
    except training_effect.EffectError as e:
        st.info(str(e))
    else:
        st.dataframe(effect.drop(columns=["base", "tuned", "verdict"]), hide_index=True, width="stretch")
        for verdict in effect["verdict"]:
            st.write(verdict)
        st.caption(
            "Tuned − base per measure, on the study's held-out items only, with 95 % intervals from the same "
            "cluster-bootstrap draws for both models (paired over items)."
        )

st.subheader("Per task family")
families = comparison["families"]
if families.empty:
    st.write("No scored conversation on items of a task family with these filters.")
else:
    st.caption(
        "P, A90 and U90_10 per task family (×100; A90 and U90_10 only where every item has 10 runs), and the "
        "FULL → SHARDED degradation per family; the headline degradation above averages these over families, "
        "as the Lost in Conversation paper does."
    )
    tasks = sorted(families["task"].dropna().unique())
    for start in range(0, len(tasks), 3):
        for col, task in zip(st.columns(3), tasks[start : start + 3], strict=False):
            col.markdown(f"**{task}**")
            col.dataframe(families[families["task"] == task].drop(columns=["task"]), hide_index=True, width="stretch")

with st.expander("All figures"):
    st.dataframe(comparison["table"], hide_index=True, width="stretch")
    st.download_button(
        "CSV of every figure",
        comparison["table"].to_csv(index=False),
        file_name=f"{slug}-v{version}-figures.csv",
        mime="text/csv",
    )
