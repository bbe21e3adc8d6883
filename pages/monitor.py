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
STATUS_ORDER = ("invited", "consented", "active", "completed", "declined", "withdrawn", "timed_out")


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


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    """The figures, redrawn every few seconds without rerunning the page."""
    snap, conversations = read_snapshot(study.id, int(target))
    st.caption(
        f"Version {snap.version} · {snap.status} · updated {snap.taken_at:%H:%M:%S} UTC · refreshes every {REFRESH_SECONDS} s"
    )

    cols = st.columns(4)
    for col, status in zip(cols, ("consented", "active", "completed", "timed_out"), strict=True):
        col.metric(status.replace("_", " "), snap.by_status.get(status, 0))
    cols = st.columns(4)
    median = snap.median_item_seconds
    cols[0].metric(
        "median time per item",
        f"{median / 60:.1f} min" if median is not None else "–",
        help=f"over {snap.finished_conversations} finished conversations",
    )
    cols[1].metric("turns, last hour", snap.turns_last_hour)
    cols[2].metric("error turns, last hour", snap.error_turns_last_hour)
    cols[3].metric("partial turns, last hour", snap.partial_turns_last_hour)
    with st.expander("Participants by status"):
        st.dataframe(
            pd.DataFrame([{"status": k, "participants": snap.by_status.get(k, 0)} for k in STATUS_ORDER]), hide_index=True
        )

    st.subheader("Cells: conversations against target")
    if snap.cells:
        frame = pd.DataFrame(
            [
                {
                    "condition": c.condition,
                    "item": c.item,
                    "planned": c.planned,
                    "started": c.started,
                    "finished": c.ended,
                    "target": c.target,
                }
                for c in snap.cells
            ]
        )
        top = max([c.target for c in snap.cells] + [c.started for c in snap.cells] + [1])
        st.dataframe(
            frame,
            hide_index=True,
            width="stretch",
            column_config={"started": st.column_config.ProgressColumn("started", format="%d", min_value=0, max_value=top)},
        )
    else:
        st.info("No condition can run: check the Models page.")

    runs = [r for r in simulation_runs(snap.slug) if r.version == snap.version or not r.finished]
    if runs:
        st.subheader("Simulation runs")
        for r in runs[:3]:
            eta = f" · about {r.eta_seconds / 60:.0f} min left" if r.eta_seconds else ""
            rate = f" · {r.rate_per_minute:.1f}/min" if r.rate_per_minute else ""
            st.progress(
                r.fraction, text=f"{r.run_id} ({r.simulator}, v{r.version}): {r.ended} of {r.total} conversations{rate}{eta}"
            )

    st.subheader("In progress")
    flash("timeout_msg")
    if snap.live:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "participant": p.label,
                        "kind": p.kind,
                        "status": p.status,
                        "conversations": f"{p.step} of {p.steps}",
                        "idle (min)": p.idle_minutes,
                        "past time limit": p.stale,
                    }
                    for p in snap.live
                ]
            ),
            hide_index=True,
            width="stretch",
        )
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
        st.caption(
            f"Participants idle for more than {snap.timeout_minutes} minutes are timed out automatically "
            "when the next participant arrives."
        )
    else:
        st.write("Nobody is in the middle of the study.")

    st.subheader("Latest conversations")
    if not conversations:
        st.write("No conversations yet.")
    for conv in conversations:
        with st.expander(
            f"{conv.participant} ({conv.kind}) · {conv.condition} · {conv.item} · {conv.status}",
            expanded=conv is conversations[0],
        ):
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


live()
