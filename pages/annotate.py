"""Labelling screen: an annotator labels one conversation's turns on the study's layers, blind to model and condition."""

import time

import pandas as pd
import streamlit as st

from lab import annotation as ann
from lab.render import escape_markdown
from lab.ui import assigned_study, flash, reading, staff_header, stored_text, writing
from lab.web.guard import require_role

visitor = require_role("annotator")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Annotate")
assert visitor.account_id is not None
me = visitor.account_id

slug = assigned_study(me, key="annotate_study")
if slug is None:
    st.stop()
slot_key = f"annotate_slot_{slug}"
flash("annotate_flash")


def claim() -> None:
    """Claim the next conversation for this annotator."""
    with writing() as s:
        slot = ann.claim_next(s, slug, me)
        st.session_state[slot_key] = slot.id if slot is not None else None
    st.session_state["annotate_turn"] = 0


def act(action: str, slot_id: int) -> None:
    """Skip, finish or resume a conversation, then move on."""
    with writing() as s:
        if action == "skip":
            ann.skip(s, slot_id, me)
            st.session_state["annotate_flash"] = (
                "info",
                "Put aside: it stays yours for a while; find it under “Your conversations”.",
            )
        elif action == "done":
            ann.finish(s, slot_id, me)
            st.session_state["annotate_flash"] = ("success", "Conversation done.")
        else:
            ann.resume(s, slot_id, me)
            st.session_state[slot_key] = slot_id
            st.session_state["annotate_turn"] = 0
            return
    st.session_state[slot_key] = None
    claim()


def own_next() -> None:
    """Leave a conversation that is not this annotator's for their own next one."""
    st.query_params.pop("c", None)
    st.session_state[slot_key] = None
    claim()


requested = st.query_params.get("c")
# A conversation named in the address is opened once; moving on from it is not undone by the address.
if requested and requested.isdigit() and st.session_state.get("annotate_requested") != requested:
    st.session_state["annotate_requested"] = requested
    st.session_state[slot_key] = int(requested)
    st.session_state["annotate_turn"] = 0
if st.session_state.get(slot_key) is None:
    claim()
slot_id = st.session_state.get(slot_key)

with st.sidebar:
    st.subheader("Your conversations")
    with reading() as s:
        mine = ann.my_conversations(s, slug, me)
    for n, sl in enumerate(mine, start=1):
        if sl.status in ("skipped", "done", "claimed"):
            marker = {"skipped": "put aside", "done": "done", "claimed": "open"}[sl.status]
            st.button(
                f"Conversation {n} · {marker}",
                key=f"resume_{sl.id}",
                on_click=act,
                args=("resume", sl.id),
                disabled=sl.id == slot_id,
            )
    left = sum(1 for sl in mine if sl.status in ("open", "claimed", "skipped"))
    st.caption(f"{sum(1 for sl in mine if sl.status == 'done')} done · {left} to do")

if slot_id is None:
    st.success("Nothing left for you in this study. Thank you!")
    st.stop()

try:
    with reading() as s:
        view = ann.conversation_view(s, slot_id, me)
except ann.NotYours:
    st.error(
        "This conversation is not yours: it is another annotator's, or it went back to the pool after it was left "
        "too long. Your own work is under “Your conversations”.",
        icon=":material/block:",
    )
    st.button("Go to my next conversation", on_click=own_next, type="primary", icon=":material/arrow_forward:")
    st.stop()

turns = view.turns
if not turns:
    st.warning("This conversation has no turns to label.")
    st.stop()
pos = min(max(st.session_state.get("annotate_turn", 0), 0), len(turns) - 1)
turn = turns[pos]
if st.session_state.get("annotate_turn_seen") != (slot_id, turn.id):
    st.session_state["annotate_turn_seen"] = (slot_id, turn.id)
    st.session_state["annotate_turn_started"] = time.monotonic()


def move(step: int) -> None:
    """Go to the previous or next turn."""
    st.session_state["annotate_turn"] = min(max(pos + step, 0), len(turns) - 1)


def choose(layer: str, code: str) -> None:
    """Store a code for the turn under work at once."""
    seconds = time.monotonic() - st.session_state.get("annotate_turn_started", time.monotonic())
    confidence = st.session_state.get("annotate_confidence")
    note = st.session_state.get(f"annotate_note_{turn.id}_{layer}", "")
    try:
        with writing() as s:
            ann.record_label(s, slot_id, me, turn.id, layer, code, confidence=confidence, note=note, seconds=seconds)
    except ann.AnnotationError as e:
        st.session_state["annotate_flash"] = ("error", str(e))
    except ann.NotYours:
        st.session_state["annotate_flash"] = ("error", "This conversation is not yours any more (it was left too long).")


st.subheader(escape_markdown(view.title))
labelled = sum(1 for t in turns if all((t.id, layer) in view.labels for layer in view.layers_for(t)))
st.progress(labelled / len(turns), text=f"{labelled} of {len(turns)} turns labelled on every layer")
chat, work = st.columns([3, 2], gap="large")

with chat:
    for t in turns:
        speaker = "Participant" if t.role == "user" else "Assistant"
        codes = " · ".join(
            f"{layer} {view.labels[(t.id, layer)].code}" for layer in view.codebook.layers if (t.id, layer) in view.labels
        )
        if t.id == turn.id:
            with st.container(border=True):
                st.markdown(f"**▶ Turn {t.position} · {speaker}** (under work)")
                stored_text(t.role, t.content)
                if codes:
                    st.caption(codes)
        else:
            with st.chat_message("user" if t.role == "user" else "assistant"):
                st.markdown(f"**Turn {t.position} · {speaker}**")
                stored_text(t.role, t.content)
                if codes:
                    st.caption(codes)

with work:
    st.markdown(f"#### Turn {turn.position} of {len(turns)} · {'Participant' if turn.role == 'user' else 'Assistant'}")
    nav = st.columns(2)
    nav[0].button("Previous turn", on_click=move, args=(-1,), shortcut="Left", disabled=pos == 0, width="stretch")
    nav[1].button("Next turn", on_click=move, args=(1,), shortcut="Right", disabled=pos == len(turns) - 1, width="stretch")
    if turn.shards:
        with st.container(border=True):
            st.caption("What the participant had revealed by this turn")
            for text in turn.shards:
                st.text(("new: " if text in turn.new_shards else "") + text)
    layers = view.layers_for(turn)
    if not layers:
        st.info("No layer of this study applies to this turn.")
    else:
        layer = st.radio(
            "Layer",
            layers,
            horizontal=True,
            key="annotate_layer",
            format_func=lambda k: f"{k} · {view.codebook.layers[k].name}",
        )
        lay = view.codebook.layers[layer]
        current = view.labels.get((turn.id, layer))
        st.caption(f"Current: **{current.code}**" if current else "Not labelled yet")
        if (turn.id, layer) in view.prelabels:
            st.caption("Pre-label (automatic, may be wrong): " + ", ".join(view.prelabels[(turn.id, layer)]))
        grid = st.columns(2)
        for i, code in enumerate(lay.codes):
            grid[i % 2].button(
                code.code,
                key=f"code_{layer}_{code.code}",
                on_click=choose,
                args=(layer, code.code),
                shortcut=code.key.upper() if code.key else None,
                type="primary" if current and current.code == code.code else "secondary",
                help=code.definition,
                width="stretch",
            )
        with st.popover("Codebook definitions", icon=":material/menu_book:"):
            st.markdown(f"**{layer} — {lay.name}.** {lay.description}")
            st.dataframe(
                pd.DataFrame(
                    [{"code": c.code, "key": c.key or "", "definition": c.definition, "example": c.example} for c in lay.codes]
                ),
                hide_index=True,
            )
        st.slider("Confidence", 0.0, 1.0, 1.0, 0.25, key="annotate_confidence", help="Stored with the next code you choose.")
        st.text_area(
            "Note (optional)",
            value=current.note or "" if current else "",
            key=f"annotate_note_{turn.id}_{layer}",
            max_chars=None,
            help="Stored with the next code you choose; choose the code again to store a changed note.",
        )

st.divider()
st.subheader("Repair sequences")
by_id = {t.id: t for t in turns}


def turn_name(tid: int | None) -> str:
    """Turn number and speaker, as annotators see them."""
    if tid is None or tid not in by_id:
        return "–"
    t = by_id[tid]
    return f"{t.position} ({'participant' if t.role == 'user' else 'assistant'})"


if view.sequences:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": i,
                    "trouble source": turn_name(q.trouble_turn_id),
                    "span": by_id[q.trouble_turn_id].content[q.span[0] : q.span[1]]
                    if q.span and q.trouble_turn_id in by_id
                    else "",
                    "initiation": f"{turn_name(q.initiation_turn_id)} {q.initiation}",
                    "repair": turn_name(q.repair_turn_id),
                    "trouble type": q.trouble_type or "",
                    "outcome": q.outcome or "",
                }
                for i, q in enumerate(view.sequences, start=1)
            ]
        ),
        hide_index=True,
    )
else:
    st.caption("No repair sequence yet.")

if "R" in view.codebook.layers:
    options = {"New sequence": None} | {f"Edit sequence {i}": q for i, q in enumerate(view.sequences, start=1)}
    picked = st.selectbox("Make or edit", list(options), key="annotate_seq_pick")
    editing = options[picked]
    ids = [t.id for t in turns]
    r_codes = [c for c in view.codebook.layers["R"].code_names() if c != "NONE"]

    def index_of(tid: int | None, default: int = 0) -> int:
        """Position of a turn among the shown turns."""
        return ids.index(tid) if tid in ids else default

    # The widgets keep their values until a save succeeds: a refused save shows what to fix
    # next to the choices made; a successful one starts a fresh form (a new generation of keys).
    generation = st.session_state.get("annotate_seq_generation", 0)
    wkey = f"annotate_seq_{slot_id}_{generation}_{picked}"

    def save_span(trouble_id: int, words: str) -> tuple[int, int] | None:
        """The span of ``words`` in the trouble-source turn (None: the whole turn, or the sequence's span when editing)."""
        if not words:
            return editing.span if editing and editing.span and editing.trouble_turn_id == trouble_id else None
        at = by_id[trouble_id].content.find(words)
        if at < 0:
            raise ann.AnnotationError(
                f"Trouble span: “{words}” is not in turn {turn_name(trouble_id)}, the trouble-source turn. "
                "Copy the words exactly as they appear there, choose the turn that holds them, or leave the span empty "
                "for the whole turn."
            )
        return (at, at + len(words))

    with st.form(f"annotate_sequence_{wkey}"):
        c1, c2, c3 = st.columns(3)
        trouble = c1.selectbox(
            "Trouble-source turn",
            ids,
            index=index_of(editing.trouble_turn_id if editing else turn.id),
            format_func=turn_name,
            key=f"{wkey}_trouble",
        )
        old_span = (
            by_id[editing.trouble_turn_id].content[editing.span[0] : editing.span[1]]
            if editing and editing.span and editing.trouble_turn_id in by_id
            else ""
        )
        span_text = c1.text_input(
            "Trouble span (copy the words from the turn)",
            value=old_span,
            help="Leave empty for the whole turn.",
            key=f"{wkey}_span",
        )
        init_turn = c2.selectbox(
            "Initiation turn",
            ids,
            index=index_of(editing.initiation_turn_id if editing else turn.id),
            format_func=turn_name,
            key=f"{wkey}_init_turn",
        )
        initiation = c2.selectbox(
            "Initiation type",
            r_codes,
            index=r_codes.index(editing.initiation) if editing and editing.initiation in r_codes else 0,
            key=f"{wkey}_initiation",
        )
        repair_ids: list[int | None] = [None, *ids]
        repair = c3.selectbox(
            "Repair turn",
            repair_ids,
            index=repair_ids.index(editing.repair_turn_id) if editing else 0,
            format_func=turn_name,
            key=f"{wkey}_repair",
        )
        outcomes: list[str | None] = [None, *view.codebook.outcome_names()]
        outcome = c3.selectbox(
            "Outcome",
            outcomes,
            index=outcomes.index(editing.outcome) if editing else 0,
            format_func=lambda o: o or "–",
            key=f"{wkey}_outcome",
        )
        types: list[str | None] = [None, *view.codebook.trouble_types]
        trouble_type = c1.selectbox(
            "Trouble type",
            types,
            index=types.index(editing.trouble_type) if editing else 0,
            format_func=lambda o: o or "–",
            key=f"{wkey}_type",
        )
        if st.form_submit_button("Save sequence"):
            try:
                span = save_span(trouble, span_text.strip())
                with writing() as s:
                    ann.save_sequence(
                        s,
                        slot_id,
                        me,
                        trouble_turn_id=trouble,
                        span=span,
                        initiation_turn_id=init_turn,
                        initiation=initiation,
                        repair_turn_id=repair,
                        outcome=outcome,
                        trouble_type=trouble_type,
                        sequence_id=editing.id if editing else None,
                    )
            except (ann.AnnotationError, ann.NotYours) as e:
                # Shown literally (it may quote the turn) and the choices stay as they are.
                st.error(escape_markdown(str(e)), icon=":material/error:")
            else:
                st.session_state["annotate_flash"] = ("success", "Repair sequence saved.")
                st.session_state["annotate_seq_generation"] = generation + 1
                st.rerun()

st.divider()
end = st.columns(3)
end[0].button("Skip for now", on_click=act, args=("skip", slot_id), icon=":material/skip_next:", width="stretch")
end[1].button(
    "Done with this conversation",
    on_click=act,
    args=("done", slot_id),
    type="primary",
    icon=":material/check:",
    width="stretch",
)
