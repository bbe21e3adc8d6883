"""Landing page for visitors without a link or a sign-in."""

import streamlit as st

st.title("Repair Lab")
st.write(
    "A lab for studies of conversational repair: whether language models ask the clarifying "
    "question, correct a false assumption, and recover when a task arrives in pieces."
)
st.info("Taking part in a study? Please use the link you were given.")
st.page_link("pages/login.py", label="Staff sign in", icon=":material/login:")
