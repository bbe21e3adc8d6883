"""What the staff page tests share: who the page run is signed in as, and what it rendered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lab.schema import Account
from lab.web import guard
from lab.web.visitor import cookie_for


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
