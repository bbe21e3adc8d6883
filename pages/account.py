"""My account: who I am, my password, signing out."""

import streamlit as st

from lab.accounts import MIN_PASSWORD_LENGTH, AccountError, change_password
from lab.ui import staff_header, writing
from lab.web.guard import require_role
from lab.web.paths import link, sign_in_url

visitor = require_role("experimenter", "annotator")
staff_header(visitor)
st.title("My account")
st.write(f"Username: **{visitor.username}** · role: **{visitor.role}**")

with st.form("password", clear_on_submit=True):
    st.subheader("Change password")
    current = st.text_input("Current password", type="password")
    hint = f"at least {MIN_PASSWORD_LENGTH} characters, hard to guess: a few uncommon words work well"
    new = st.text_input(f"New password ({hint})", type="password")
    again = st.text_input("New password again", type="password")
    submitted = st.form_submit_button("Change password")
if submitted:
    if new != again:
        st.error("The two new passwords differ.")
    else:
        try:
            with writing() as s:
                change_password(s, visitor.account_id, current, new)
        except AccountError as e:
            st.error(str(e))
        else:
            st.success("Your password was changed. Every sign-in with the old password has ended, this one too.")
            st.markdown(link(sign_in_url("/account"), "Sign in with the new password"), unsafe_allow_html=True)
            st.stop()

st.divider()
st.markdown(link("/auth/logout", "Sign out"), unsafe_allow_html=True)
