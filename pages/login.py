"""Staff sign-in: the browser goes straight on to the form of the ``/auth/login`` route, which sets the HttpOnly cookie."""

import streamlit as st

from lab.web.guard import current_visitor, go_to
from lab.web.paths import link, safe_next, sign_in_url

visitor = current_visitor()
st.title("Staff sign in")
if visitor.is_staff:
    st.success(f"You are signed in as {visitor.username} ({visitor.role}).")
    st.markdown(link("/auth/logout", "Sign out"), unsafe_allow_html=True)
else:
    form = sign_in_url(safe_next(st.query_params.get("next")))
    go_to(form)
    # Shown only while the browser moves on (or if it does not run the page's script).
    st.write("Opening the sign-in form…")
    st.markdown(link(form, "Open the sign-in form"), unsafe_allow_html=True)
    st.caption("Taking part in a study? Use the link you were given; no sign-in is needed.")
