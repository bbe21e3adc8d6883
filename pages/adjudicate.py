"""Adjudication: an experimenter walks the turns annotators disagree on and decides the code."""

import pandas as pd
import streamlit as st

from lab import adjudication
from lab import annotation as ann
from lab.ui import flash, pick_study, reading, staff_header, stored_text, writing
from lab.web.guard import require_role

visitor = require_role("experimenter")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Adjudicate")
flash("adjudicate_flash")

slug = pick_study()
if slug is None:
    st.stop()
with reading() as s:
    sa = ann.study_annotation(s, slug)
layer = st.radio(
    "Layer", sa.layers, horizontal=True, key="adjudicate_layer", format_func=lambda k: f"{k} · {sa.codebook.layers[k].name}"
)
show_decided = st.toggle("Include decided turns", value=False)
with reading() as s:
    found = adjudication.disagreements(s, slug, layer, include_decided=show_decided)
    rate = adjudication.change_rate(s, slug, layer)
cols = st.columns(3)
cols[0].metric("Disagreements shown", len(found))
cols[1].metric("Turns decided", rate.adjudicated)
cols[2].metric(
    "Gold ≠ majority",
    f"{rate.rate:.0%}" if rate.rate is not None else "–",
    help=f"{rate.changed} of {rate.with_majority} decided turns with a majority",
)
if not found:
    st.success("Nothing to decide on this layer.")
    st.stop()

key = f"adjudicate_pos_{slug}_{layer}"
pos = min(st.session_state.get(key, 0), len(found) - 1)
d = found[pos]


def decide(code: str) -> None:
    """Store the decision as annotator ``gold`` and move to the next disagreement."""
    try:
        with writing() as s:
            adjudication.adjudicate(s, slug, d.turn_id, layer, code, visitor.account_id)  # type: ignore[arg-type]
        st.session_state["adjudicate_flash"] = (
            "success",
            f"Decided {code} for turn {d.position} of conversation {d.session_id}.",
        )
    except ann.AnnotationError as e:
        st.session_state["adjudicate_flash"] = ("error", str(e))
    st.session_state[key] = pos + 1 if show_decided else pos


nav = st.columns([1, 1, 4])
nav[0].button("Previous", disabled=pos == 0, on_click=lambda: st.session_state.__setitem__(key, pos - 1), shortcut="Left")
nav[1].button(
    "Next", disabled=pos >= len(found) - 1, on_click=lambda: st.session_state.__setitem__(key, pos + 1), shortcut="Right"
)
nav[2].caption(f"Disagreement {pos + 1} of {len(found)} · conversation {d.session_id}, turn {d.position} ({d.role})")

left, right = st.columns([3, 2], gap="large")
with left:
    with reading() as s:
        context = adjudication.side_by_side(s, slug, d.session_id, layer)
    names = sorted({a for t in context for a in t.codes}, key=lambda a: (a == "gold", a.startswith("auto:"), a))
    frame = pd.DataFrame(
        [
            {"▶": "▶" if t.turn_id == d.turn_id else "", "turn": t.position, "role": t.role, "text": t.content}
            | {a: t.codes.get(a, "") for a in names}
            for t in context
        ]
    )
    st.dataframe(frame, hide_index=True)
with right:
    with st.container(border=True):
        st.markdown(f"**Turn {d.position} · {d.role}**")
        stored_text(d.role, d.content)
    st.markdown("**Annotators' codes**")
    for a, c in sorted(d.codes.items()):
        st.markdown(f"- {a}: `{c}`")
    if d.auto:
        st.caption("Automatic: " + ", ".join(f"{a} {c}" for a, c in sorted(d.auto.items())))
    st.caption(f"Majority: {d.majority or '(tie)'}" + (f" · decided: {d.gold}" if d.gold else ""))
    for code in sorted(set(d.codes.values())):
        st.button(f"Decide {code}", key=f"decide_{code}", on_click=decide, args=(code,), type="primary", width="stretch")
    lay = sa.codebook.layers[layer]
    other = st.selectbox(
        "Or another code",
        lay.code_names(),
        key="adjudicate_other",
        help="Definitions: " + "; ".join(f"{c.code}: {c.definition}" for c in lay.codes),
    )
    st.button("Decide this code", on_click=lambda: decide(other), width="stretch")
