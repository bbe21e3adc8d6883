"""Streamlit-side helpers shared by the pages (the only module here that imports streamlit)."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine


@st.cache_resource(show_spinner=False)
def engine() -> Engine:
    """The database engine, migrated once per server process (under the migration lock)."""
    from .db import get_engine, migrate

    eng = get_engine()
    migrate(eng)
    return eng
