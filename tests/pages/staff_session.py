"""What the staff page tests share: who the page run is signed in as, and what it rendered."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab.db import get_engine
from lab.schema import Account
from lab.web import guard
from lab.web.visitor import cookie_for


def copy_database(template: Path, target: Path) -> None:
    """Copy a SQLite database through SQLite itself, so that what its write-ahead log holds comes too.

    Copying the file alone misses transactions not yet checkpointed into it (an engine still
    open on the template, such as the lab's cached one after a command ran, keeps the log).
    """
    target.unlink(missing_ok=True)
    source, copy = sqlite3.connect(template), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def fresh_copy(template: Path) -> Iterator[Engine]:
    """Make the configured database a fresh copy of ``template``; yield its engine.

    The lab's cached engine and Streamlit's caches are cleared before and after, so no page
    run sees another test's database or cached data.
    """
    import streamlit as st

    import lab.ui
    from lab.settings import load_settings

    def clear() -> None:
        lab.ui.engine.clear()
        st.cache_data.clear()
        st.cache_resource.clear()

    clear()
    target = Path(load_settings().database_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_database(template, target)
    yield get_engine()
    clear()


def sign_in_as(monkeypatch: pytest.MonkeyPatch, engine: Engine, username: str | None) -> None:
    """Make page runs carry the signed cookie of ``username``'s account (none when None)."""
    cookie = None
    if username is not None:
        with Session(engine) as s:
            cookie = cookie_for(s.scalars(select(Account).where(Account.username == username)).one())
    monkeypatch.setattr(guard, "_request_cookie", lambda: cookie)


def texts(at: AppTest) -> str:
    """Every text the page rendered, tables included."""
    out = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        value = getattr(node, "value", None)
        if hasattr(value, "to_string"):
            out.append(value.to_string())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)
