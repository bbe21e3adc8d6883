"""Accounts (admins): who may use the lab, with which role."""

import pandas as pd
import streamlit as st

from lab.accounts import ROLES, AccountError, create_account, list_accounts, reset_password, set_active, set_role
from lab.ui import flash, reading, staff_header, writing
from lab.web.guard import require_role

visitor = require_role("admin")
staff_header(visitor)
st.title("Accounts")
st.caption("admin: manages accounts and does everything an experimenter does · experimenter: studies, links, monitor, models · annotator: the annotation queue")
flash("accounts_msg")

with reading() as s:
    accounts = list_accounts(s)
st.dataframe(
    pd.DataFrame(
        [
            {"username": a.username, "role": a.role, "active": a.active, "created": a.created_at, "last sign-in": a.last_login_at}
            for a in accounts
        ]
    ),
    hide_index=True,
    width="stretch",
)

with st.form("new_account"):
    st.subheader("Add an account")
    username = st.text_input("Username", key="new_username")
    role = st.selectbox("Role", ROLES, index=1, key="new_role")
    password = st.text_input("Initial password (hand it over privately; they can change it)", type="password", key="new_password")
    if st.form_submit_button("Add account"):
        try:
            with writing() as s:
                create_account(s, username.strip(), role, password)
        except AccountError as e:
            st.error(str(e))
        else:
            st.session_state["accounts_msg"] = ("success", f"Account '{username.strip()}' ({role}) added.")
            for key in ("new_username", "new_password"):
                st.session_state.pop(key, None)
            st.rerun()

st.subheader("Change an account")
by_name = {a.username: a for a in accounts}
chosen = st.selectbox("Account", list(by_name), key="account_choice")
if chosen:
    a = by_name[chosen]
    with st.form(f"edit_{a.id}"):
        new_role = st.selectbox("Role", ROLES, index=ROLES.index(a.role) if a.role in ROLES else 0)
        active = st.checkbox("Active (a disabled account is signed out at its next page)", value=a.active)
        new_password = st.text_input("New password (leave empty to keep)", type="password")
        if st.form_submit_button("Save changes"):
            try:
                with writing() as s:
                    if new_role != a.role:
                        set_role(s, a.id, new_role)
                    if active != a.active:
                        set_active(s, a.id, active)
                    if new_password:
                        reset_password(s, a.id, new_password)
            except AccountError as e:
                st.error(str(e))
            else:
                st.session_state["accounts_msg"] = ("success", f"Account '{a.username}' saved.")
                st.rerun()
