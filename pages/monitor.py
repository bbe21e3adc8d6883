"""Live monitor: participants arriving, cells filling, time per item, errors; refreshed every few seconds."""

from typing import Any

import pandas as pd
import streamlit as st

from lab import monitor
from lab.schema import Study
from lab.studies import get_study
from lab.ui import flash, pick_study, reading, staff_header, stored_text, writing
from lab.web.guard import require_role

visitor = require_role("experimenter")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Live monitor")

REFRESH_SECONDS = 5


@st.cache_data(ttl=REFRESH_SECONDS - 1, show_spinner=False)
def read_snapshot(study_id: int, target: int) -> tuple[monitor.Snapshot, list[monitor.ConversationView]]:
    """One snapshot shared by every open monitor for a few seconds, so more viewers cost no more queries."""
    with reading() as s:
        study = s.get(Study, study_id)
        return monitor.snapshot(s, study, target), monitor.latest_conversations(s, study_id, limit=3)


@st.cache_data(ttl=REFRESH_SECONDS - 1, show_spinner=False)
def simulation_runs(slug: str) -> list[Any]:
    """Simulation runs of the study, when the simulation module is installed."""
    try:
        from lab.simulate import run_progress
    except ImportError:
        return []
    with reading() as s:
        return run_progress(s, slug)


slug = pick_study()
if slug is None:
    st.stop()
with reading() as s:
    study = get_study(s, slug)
    suggested = monitor.default_target(s, study)
target = st.number_input(
    "Target participants",
    min_value=0,
    value=max(suggested, 1),
    step=1,
    help="Cell targets spread this many participants' plans over every cell.",
)


def ask_time_out() -> None:
    """Ask once more before timing out the chosen participant."""
    st.session_state["timeout_pending"] = st.session_state.get("timeout_choice")


def cancel_time_out() -> None:
    """Forget the pending question."""
    st.session_state.pop("timeout_pending", None)


def confirm_time_out(label: str, participant_id: int) -> None:
    """Time the participant out before the monitor is drawn again, so it shows them gone at once."""
    st.session_state.pop("timeout_pending", None)
    with writing() as s:
        done = monitor.time_out(s, s.get(Study, study.id), participant_id, visitor.username or "staff")
    read_snapshot.clear()
    st.session_state["timeout_msg"] = (
        ("success", f"{label} timed out; their cells are free again.")
        if done
        else ("info", f"{label} had already finished or left.")
    )


def headline(snap: monitor.Snapshot) -> None:
    """Participants by status, time per item and turn problems."""
    figures = monitor.headline(snap)
    for row in (figures[:4], figures[4:]):
        for col, figure in zip(st.columns(4), row, strict=True):
            col.metric(figure.label, figure.value, help=figure.help)
    with st.expander("Participants by status"):
        st.dataframe(pd.DataFrame(monitor.status_rows(snap)), hide_index=True)


def cells(snap: monitor.Snapshot) -> None:
    """Conversations against target in every condition × item cell."""
    st.subheader("Cells: conversations against target")
    if not snap.cells:
        st.info("No condition can run: check the Models page.")
        return
    top = monitor.cell_scale(snap)
    st.dataframe(
        pd.DataFrame(monitor.cell_rows(snap)),
        hide_index=True,
        width="stretch",
        column_config={"started": st.column_config.ProgressColumn("started", format="%d", min_value=0, max_value=top)},
    )


def runs(snap: monitor.Snapshot) -> None:
    """Progress of this version's simulation runs and of any still running."""
    lines = monitor.run_lines(simulation_runs(snap.slug), snap.version)
    if lines:
        st.subheader("Simulation runs")
        for fraction, line in lines:
            st.progress(fraction, text=line)


def time_out_form(snap: monitor.Snapshot) -> None:
    """Pick a stuck participant and time them out, after asking once more."""
    labels = {p.label: p.id for p in snap.live}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.selectbox("Stuck participant", list(labels), key="timeout_choice")
    c2.button(
        "Time out",
        key="timeout_button",
        help="Ends their part and frees their cells for new participants.",
        on_click=ask_time_out,
    )
    # Timing someone out cannot be undone: it is asked once more before it is done.
    pending = st.session_state.get("timeout_pending")
    if pending is not None and pending in labels:
        st.warning(
            f"Time out {pending}? Their link stops working (they are told their time ran out) "
            "and their cells are freed. This cannot be undone."
        )
        yes, no = st.columns(2)
        yes.button(
            f"Yes, time out {pending}",
            key="timeout_confirm",
            type="primary",
            on_click=confirm_time_out,
            args=(pending, labels[pending]),
        )
        no.button("Cancel", key="timeout_cancel", on_click=cancel_time_out)


def in_progress(snap: monitor.Snapshot) -> None:
    """The participants in the middle of the study, and the form to time one out."""
    st.subheader("In progress")
    flash("timeout_msg")
    if not snap.live:
        st.write("Nobody is in the middle of the study.")
        return
    st.dataframe(pd.DataFrame(monitor.live_rows(snap)), hide_index=True, width="stretch")
    time_out_form(snap)
    st.caption(
        f"Participants idle for more than {snap.timeout_minutes} minutes are timed out automatically "
        "when the next participant arrives."
    )


def latest(conversations: list[monitor.ConversationView]) -> None:
    """The newest conversations turn by turn, the first one open."""
    st.subheader("Latest conversations")
    if not conversations:
        st.write("No conversations yet.")
    for conv in conversations:
        with st.expander(monitor.conversation_title(conv), expanded=conv is conversations[0]):
            for t in conv.turns:
                if t.role == "system":
                    continue
                name = "user" if t.role == "user" else "assistant"
                with st.chat_message(name):
                    if t.role not in ("user", "assistant"):
                        st.caption(t.role)
                    stored_text(t.role, t.content)
                    if t.error:
                        st.error(f"error: {t.error}")
                    elif t.partial:
                        st.caption("cut short (partial)")


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    """The figures, redrawn every few seconds without rerunning the page."""
    snap, conversations = read_snapshot(study.id, int(target))
    st.caption(
        f"Version {snap.version} · {snap.status} · updated {snap.taken_at:%H:%M:%S} UTC · refreshes every {REFRESH_SECONDS} s"
    )
    headline(snap)
    cells(snap)
    runs(snap)
    in_progress(snap)
    latest(conversations)


live()
