"""Annotation for experimenters: agreement and its bars, confusion matrices, disagreements, annotators, gold checks."""

import altair as alt
import pandas as pd
import streamlit as st

from lab import adjudication, agreement, charts
from lab import annotation as ann
from lab import preference as pref
from lab.labels import newest_label_id
from lab.ui import flash, pick_study, reading, staff_header, writing
from lab.web.guard import require_role
from lab.web.paths import link

visitor = require_role("experimenter")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Annotation & agreement")
flash("agreement_flash")

slug = pick_study()
if slug is None:
    st.stop()
with reading() as s:
    try:
        sa = ann.study_annotation(s, slug)
    except LookupError as e:
        st.error(str(e))
        st.stop()
    label_mark = newest_label_id(s)


@st.cache_data(show_spinner="Computing agreement…", max_entries=32)
def figures(slug: str, layer: str, mark: int) -> list[agreement.AgreementRow]:
    """Agreement rows of one layer; ``mark`` (the newest label id) renews them when labels change."""
    with reading() as s:
        return agreement.study_agreement(s, slug, [layer])


tab_agree, tab_dis, tab_people, tab_checks, tab_prefs = st.tabs(
    ["Agreement", "Disagreements", "Annotators & progress", "Gold checks", "Reply preferences"]
)

with tab_agree:
    layer = st.radio(
        "Layer", sa.layers, horizontal=True, key="agreement_layer", format_func=lambda k: f"{k} · {sa.codebook.layers[k].name}"
    )
    rows = figures(slug, layer, label_mark)
    if not rows:
        st.info("No turn of this layer has been labelled by two annotators yet.")
    else:
        frame = pd.DataFrame(
            [
                {
                    "comparison": r.comparison,
                    "code": r.code,
                    "measure": r.measure,
                    "value": r.value,
                    "95% low": r.low,
                    "95% high": r.high,
                    "units": r.units,
                    "verdict": r.verdict,
                }
                for r in rows
            ]
        )
        alphas = frame[(frame.measure == "alpha") & frame.value.notna()]
        overall = alphas[alphas.code == agreement.ALL]
        if not overall.empty:
            cols = st.columns(min(len(overall), 4))
            for col, (_, r) in zip(cols, overall.iterrows(), strict=False):
                col.metric(f"α · {r.comparison}", f"{r.value:.3f}", help=f"{r.units} units · {r.verdict}", border=True)
        if not alphas.empty:
            base = alt.Chart(alphas).encode(y=alt.Y("code:N", sort=None, title=None))
            bars = base.mark_bar().encode(
                x=alt.X("value:Q", title="Krippendorff's α", scale=alt.Scale(domain=[min(-0.2, float(alphas.value.min())), 1])),
                color=alt.Color(
                    "verdict:N",
                    scale=alt.Scale(domain=["reliable", "tentative", "unreliable"], range=["#2e7d32", "#f9a825", "#c62828"]),
                ),
                tooltip=["comparison", "code", alt.Tooltip("value:Q", format=".3f"), "units"],
            )
            whiskers = base.mark_rule().encode(x="95% low:Q", x2="95% high:Q")
            bars_at = pd.DataFrame(
                {"bar": [agreement.TENTATIVE, agreement.RELIABLE], "label": ["tentative 0.667", "reliable 0.8"]}
            )
            rules = alt.Chart(bars_at).mark_rule(strokeDash=[4, 3]).encode(x="bar:Q", tooltip=["label"])
            st.altair_chart((bars + whiskers + rules).facet(row=alt.Row("comparison:N", title=None)), width="stretch")
        st.dataframe(
            frame,
            hide_index=True,
            column_config={
                "value": st.column_config.NumberColumn(format="%.3f"),
                "95% low": st.column_config.NumberColumn(format="%.3f"),
                "95% high": st.column_config.NumberColumn(format="%.3f"),
            },
        )
        st.download_button("Download CSV", agreement.format_rows(rows, "csv"), file_name=f"agreement-{slug}-{layer}.csv")
        with reading() as s:
            ratings = ann.layer_ratings(s, slug, layer)
        humans = {u: {a: c for a, c in codes.items() if ann.is_human(a)} for u, codes in ratings.items()}
        cells = agreement.confusion(humans)
        if cells:
            st.markdown("**Confusion between human annotators** (coincidences: each pair of codes on a turn, both ways)")
            st.altair_chart(charts.confusion_chart(cells), width="content")
        with reading() as s:
            rate = adjudication.change_rate(s, slug, layer)
        if rate.adjudicated:
            share = f"{rate.rate:.0%}" if rate.rate is not None else "–"
            st.caption(
                f"Adjudicated {rate.adjudicated} turns; gold differs from the human majority on "
                f"{rate.changed} of {rate.with_majority} ({share})."
            )

with tab_dis:
    layer_d = st.radio("Layer", sa.layers, horizontal=True, key="disagree_layer")
    with reading() as s:
        found = adjudication.disagreements(s, slug, layer_d)
    if not found:
        st.info("No disagreement on this layer.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "conversation": d.session_id,
                        "turn": d.position,
                        "role": d.role,
                        "codes": ", ".join(f"{a}: {c}" for a, c in sorted(d.codes.items())),
                        "majority": d.majority or "(tie)",
                        "gold": d.gold or "",
                        "text": d.content[:120],
                    }
                    for d in found
                ]
            ),
            hide_index=True,
        )
        sessions = sorted({d.session_id for d in found})
        opened = st.selectbox("Open conversation", sessions, key="disagree_open")
        with reading() as s:
            turns = adjudication.side_by_side(s, slug, opened, layer_d)
        names = sorted({a for t in turns for a in t.codes}, key=lambda a: (a == "gold", a.startswith("auto:"), a))
        st.dataframe(
            pd.DataFrame(
                [{"turn": t.position, "role": t.role, "text": t.content} | {a: t.codes.get(a, "") for a in names} for t in turns]
            ),
            hide_index=True,
        )
        st.markdown(link("/adjudicate", "Adjudicate these disagreements →"), unsafe_allow_html=True)

with tab_people:
    with reading() as s:
        current = ann.assigned(s, slug)
        progress = ann.progress(s, slug)
        candidates = ann.annotator_candidates(s, exclude=[r.account_id for r in current])
    already = [a.username for a in progress.annotators]
    st.caption(
        f"Assigned: {', '.join(already)}. Assigning another annotator hands them a share of the conversations nobody "
        "has opened yet."
        if already
        else "Nobody is assigned yet."
    )
    with st.form("assign"):
        chosen = st.multiselect(
            "Annotators to add" if already else "Annotators to assign",
            candidates,
            placeholder="Choose annotators" if candidates else "Every annotator account is assigned",
        )
        k = st.number_input(
            "Annotators per conversation",
            min_value=1,
            max_value=20,
            value=current[0].per_conversation if current else sa.spec.annotators_per_turn,
        )
        if st.form_submit_button("Assign"):
            try:
                with writing() as s:
                    ann.assign(s, slug, chosen, int(k))
                    held = {a.username: a.conversations - a.done for a in ann.progress(s, slug).annotators}
                st.session_state["agreement_flash"] = (
                    "success",
                    "Assigned " + ", ".join(f"{n} ({held.get(n, 0)} conversations to do)" for n in chosen) + ".",
                )
            except ann.AnnotationError as e:
                st.session_state["agreement_flash"] = ("error", str(e))
            st.rerun()
    st.caption(
        f"{progress.conversations} conversations in scope · {progress.placed} placed · {progress.complete} done by "
        f"{progress.per_conversation or '–'} annotators · pre-labels: {sa.spec.prelabels}"
    )
    if progress.annotators:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "annotator": a.username,
                        "conversations": a.conversations,
                        "done": a.done,
                        "open": a.claimed,
                        "put aside": a.skipped,
                        "labels": a.labels,
                        "gold checks": a.checks,
                        "accuracy": a.accuracy,
                        "sees pre-labels": a.sees_prelabels,
                    }
                    for a in progress.annotators
                ]
            ),
            hide_index=True,
            column_config={"accuracy": st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent")},
        )

with tab_checks:
    st.caption(
        "Mark turns whose answer you know; each annotator's accuracy on them shows under "
        "“Annotators & progress” (never while labelling)."
    )
    with st.form("check"):
        c1, c2, c3, c4 = st.columns(4)
        turn_id = c1.number_input("Turn id", min_value=1, step=1)
        layer_c = c2.selectbox("Layer", sa.layers)
        code_c = c3.text_input("Code")
        if c4.form_submit_button("Set check"):
            try:
                with writing() as s:
                    ann.set_check(s, slug, int(turn_id), layer_c, code_c.strip(), visitor.account_id)
                st.session_state["agreement_flash"] = ("success", f"Turn {int(turn_id)} checks {layer_c} = {code_c.strip()}.")
            except ann.AnnotationError as e:
                st.session_state["agreement_flash"] = ("error", str(e))
            st.rerun()

with tab_prefs:
    st.caption(
        "Annotators compare two replies at the same point of a conversation, blind, on **Compare replies** "
        f"(“{pref.QUESTION}”: reply A, reply B or a tie, with a reason). Agreement over those three choices, on the "
        "comparisons two or more of them judged; intervals resample points."
    )
    with reading() as s:
        found = pref.preference_agreement(s, slug)
    shown = st.columns(4)
    shown[0].metric(
        "Judged by two or more",
        found.shared,
        help=f"{found.judged} of {found.comparisons} comparisons judged · {found.annotators} annotators · {found.ties} ties",
        border=True,
    )
    for column, (measure, name) in zip(
        shown[1:], (("raw", "Percent agreement"), ("alpha", "Krippendorff's α"), ("ac1", "Gwet's AC1")), strict=True
    ):
        value = found.value(measure)
        text = "–" if value is None else f"{value:.0%}" if measure == "raw" else f"{value:.3f}"
        column.metric(name, text, border=True)
    if found.rows:
        st.dataframe(
            pd.DataFrame(
                [
                    {"measure": r.measure, "value": r.value, "95% low": r.low, "95% high": r.high, "comparisons": r.units}
                    for r in found.rows
                ]
            ),
            hide_index=True,
            column_config={
                "value": st.column_config.NumberColumn(format="%.3f"),
                "95% low": st.column_config.NumberColumn(format="%.3f"),
                "95% high": st.column_config.NumberColumn(format="%.3f"),
            },
        )
    else:
        st.info("No comparison has been judged by two annotators yet.")
