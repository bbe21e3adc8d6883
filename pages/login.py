"""Staff sign-in: the form itself is served by the ``/auth/login`` route, which sets the HttpOnly cookie."""

import streamlit as st

from lab.web.guard import current_visitor
from lab.web.paths import link, sign_in_url

visitor = current_visitor()
st.title("Staff sign in")
if visitor.is_staff:
    st.success(f"You are signed in as {visitor.username} ({visitor.role}).")
    st.markdown(link("/auth/logout", "Sign out"), unsafe_allow_html=True)
else:
    st.write("Experimenters, annotators and admins sign in with their lab account.")
    st.markdown(link(sign_in_url("/"), "Continue to the sign-in form"), unsafe_allow_html=True)
    st.caption("Taking part in a study? Use the link you were given; no sign-in is needed.")
