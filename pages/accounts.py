"""Accounts (admins): who may use the lab, with which role."""

import pandas as pd
import streamlit as st

from lab.accounts import (
    MIN_PASSWORD_LENGTH,
    ROLES,
    AccountError,
    create_account,
    list_accounts,
    reset_password,
    set_active,
    set_role,
)
from lab.ui import flash, reading, staff_header, writing
from lab.web.guard import require_role

visitor = require_role("admin")
staff_header(visitor)
st.title("Accounts")
st.caption(
    "admin: manages accounts and does everything an experimenter does · "
    "experimenter: studies, links, monitor, models · annotator: the annotation queue"
)
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

NEW_ACCOUNT_DEFAULTS = {"new_username": "", "new_role": "experimenter", "new_password": ""}


def add_account() -> None:
    """Create the account from the form (a callback: it runs before the form is drawn, so it may clear it)."""
    state = st.session_state
    username, role, password = state["new_username"].strip(), state["new_role"], state["new_password"]
    try:
        with writing() as s:
            create_account(s, username, role, password)
    except AccountError as e:
        st.session_state["new_account_error"] = str(e)  # the form keeps what was typed, to correct it
    else:
        st.session_state["accounts_msg"] = ("success", f"Account '{username}' ({role}) added.")
        st.session_state.update(NEW_ACCOUNT_DEFAULTS)


with st.form("new_account"):
    st.subheader("Add an account")
    st.text_input("Username", key="new_username")
    st.selectbox("Role", ROLES, index=ROLES.index(NEW_ACCOUNT_DEFAULTS["new_role"]), key="new_role")
    st.text_input(
        f"Initial password (at least {MIN_PASSWORD_LENGTH} characters, hard to guess; hand it over privately, "
        "they can change it)",
        type="password",
        key="new_password",
    )
    st.form_submit_button("Add account", on_click=add_account)
    if error := st.session_state.pop("new_account_error", None):
        st.error(error)

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
