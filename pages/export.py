"""Export: download a study as an analysis bundle or as training data; withdraw a participant."""

from datetime import UTC, datetime, time

import streamlit as st

from lab.export import FORMATS, ExportOptions, TrainingFilter, export_zip, filter_choices, training_notice
from lab.ui import engine, pick_study, reading, staff_header
from lab.web.guard import require_role
from lab.withdraw import WithdrawError, find_participants, withdraw

visitor = require_role("experimenter")
staff_header(visitor)
st.title("Export")

KINDS = {
    "parquet": "Parquet bundle (pandas, R, DuckDB, Hugging Face)",
    "csv": "CSV bundle",
    "jsonl": "JSONL bundle",
    "sft": "SFT: chat messages, one conversation per line (JSONL)",
    "dpo": "DPO: preference pairs {prompt, chosen, rejected} (JSONL)",
}

slug = pick_study()
if slug is None:
    st.stop()

with reading() as s:
    conditions, outcomes = filter_choices(s, slug)

kind = st.radio("What to download", list(KINDS), format_func=KINDS.get, key="export_kind")
c1, c2, c3 = st.columns(3)
who = c1.selectbox("Participants", ["all", "human", "simulated"], key="export_participants")
completed = c2.checkbox("Completed only", key="export_completed")
since = c3.date_input("Arrived since", value=None, key="export_since", help="Leave empty for everyone.")
flt = None
if kind in ("sft", "dpo"):
    f1, f2, f3 = st.columns(3)
    picked_outcomes = f1.multiselect("Outcomes", outcomes, key="export_outcomes")
    picked_conditions = f2.multiselect("Conditions", conditions, key="export_conditions")
    labels = f3.text_input("Labels (codes, comma separated)", key="export_labels", help="e.g. CLARIFY, REJECT_CORRECT, misrepair")
    flt = TrainingFilter(
        tuple(picked_outcomes), tuple(x.strip() for x in labels.split(",") if x.strip()), tuple(picked_conditions)
    )
options = ExportOptions(
    format=kind if kind in FORMATS else "parquet",
    participants=who,
    completed_only=completed,
    since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
)
eng = engine()
if kind in ("sft", "dpo"):
    empty = training_notice(eng, slug, kind, options, flt)
    if empty:
        st.warning(
            f"This download will hold no {'conversations' if kind == 'sft' else 'pairs'}: {empty}.", icon=":material/info:"
        )
st.download_button(
    f"Download {slug}-{kind}.zip",
    data=lambda: export_zip(eng, slug, kind, options, flt),
    file_name=f"{slug}-{kind}.zip",
    mime="application/zip",
    on_click="ignore",
    type="primary",
    icon=":material/download:",
    key="export_download",
)
st.caption(
    "Built when you click. Bundles hold pseudonymous participants only: no Prolific ids, link tokens, staff names, "
    "private notes or API keys. For payment reconciliation use `python -m lab export SLUG --include-prolific-ids`."
)

st.subheader("Withdraw a participant")
st.write(
    "Deletes every record of the participant (conversations, answers, labels on their turns, events). "
    "Only the fact that someone withdrew is kept."
)
ref = st.text_input("Participant id or Prolific id", key="withdraw_who").strip()
if ref:
    try:
        with reading() as s:
            people = find_participants(s, ref, slug)
    except WithdrawError as e:
        st.warning(str(e))
        people = []
    if people:
        st.write("; ".join(f"participant #{p.id}: {p.kind}, {p.status}, arrived {p.created_at:%Y-%m-%d %H:%M}" for p in people))
        sure = st.checkbox("I understand this cannot be undone", key="withdraw_sure")
        if st.button("Withdraw and delete", disabled=not sure, type="primary", key="withdraw_button"):
            result = withdraw(eng, ref, slug=slug, by=visitor.username or "staff")
            deleted = ", ".join(f"{n} {t}" for t, n in result.rows.items() if n)
            st.success(f"Withdrew {result.participants} participant(s): deleted {deleted}.")
