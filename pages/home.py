"""Landing page: a welcome for visitors, shortcuts for signed-in staff."""

import streamlit as st

from lab.navigation import pages_for
from lab.ui import staff_header
from lab.web.guard import current_visitor

visitor = current_visitor()
if visitor.is_staff:
    staff_header(visitor)
st.title("Repair Lab")
st.write(
    "A lab for studies of conversational repair: whether language models ask the clarifying "
    "question, correct a false assumption, and recover when a task arrives in pieces."
)
if visitor.is_staff:
    sections, _ = pages_for(visitor, {})
    for pages in sections.values():
        for page in pages:
            st.page_link(page.path, label=page.title, icon=page.icon)
else:
    st.info("Taking part in a study? Please use the link you were given.")
    st.page_link("pages/login.py", label="Staff sign in", icon=":material/login:")
