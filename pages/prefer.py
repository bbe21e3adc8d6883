"""Compare replies: an annotator chooses, blind, which of two replies at the same point serves the user better."""

import time

import streamlit as st

from lab import annotation as ann
from lab import preference as pref
from lab.render import escape_markdown
from lab.ui import assigned_study, flash, reading, staff_header, stored_text, writing
from lab.web.guard import require_role

visitor = require_role("annotator")
st.set_page_config(layout="wide")
staff_header(visitor)
st.title("Compare replies")
assert visitor.account_id is not None
me = visitor.account_id

slug = assigned_study(me, key="prefer_study")
if slug is None:
    st.stop()
flash("prefer_flash")

with reading() as s:
    view = pref.next_comparison(s, slug, me)
if view is None:
    st.success("Nothing left for you to compare in this study. Thank you!")
    st.stop()

key = view.comparison.key
if st.session_state.get("prefer_seen") != key:
    st.session_state["prefer_seen"] = key
    st.session_state["prefer_started"] = time.monotonic()

st.progress((view.number - 1) / view.total, text=f"Comparison {view.number} of {view.total}")
st.subheader(escape_markdown(view.title))
st.caption("The conversation so far. Then two possible replies to the participant's last message.")
for turn in view.history:
    with st.chat_message("user" if turn.role == "user" else "assistant"):
        st.markdown("**Participant**" if turn.role == "user" else "**Assistant**")
        stored_text(turn.role, turn.content)

# Two columns side by side on a wide screen; Streamlit stacks them on a phone.
for column, name, text in zip(st.columns(2, gap="large"), ("Reply 1", "Reply 2"), (view.reply_1, view.reply_2), strict=True):
    with column, st.container(border=True):
        st.markdown(f"**{name}**")
        stored_text("assistant", text)

SIDES = {"Reply 1": "left", "Reply 2": "right", "Tie": "tie"}
with st.form(f"prefer_{key}"):
    choice = st.radio(pref.QUESTION, list(SIDES), index=None, horizontal=True, key=f"prefer_choice_{key}")
    reason = st.text_area(
        "Your reason (required)",
        key=f"prefer_reason_{key}",
        max_chars=pref.MAX_REASON_CHARS,
        placeholder="In a few words: what makes one reply better for the user here, or why neither is",
    )
    if st.form_submit_button("Save and next", type="primary", icon=":material/arrow_forward:"):
        seconds = time.monotonic() - st.session_state.get("prefer_started", time.monotonic())
        try:
            with writing() as s:
                pref.save_judgement(
                    s, slug, me, view.comparison, left=view.left, side=SIDES.get(choice or "", ""), reason=reason, seconds=seconds
                )
        except pref.PreferenceError as e:
            st.error(escape_markdown(str(e)), icon=":material/error:")
        except ann.NotYours:
            st.error("This comparison is not yours any more: the study's annotators changed. Reload the page for your next one.")
        else:
            st.session_state["prefer_flash"] = ("success", f"Saved comparison {view.number} of {view.total}.")
            st.rerun()
