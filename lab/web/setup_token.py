"""The one-time setup link that creates the first admin while no account exists.

Nothing about a token is stored, so a copy of the database cannot be used to make one;
it is signed with the lab's secret, valid for a day, and stops working the moment the
first account exists (the setup route checks that).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired

from ..settings import load_settings
from .paths import SETUP_PATH
from .signing import serializer

SETUP_MAX_AGE = 24 * 3600
"""Seconds a setup link stays valid (and only while no account exists)."""
_SALT = "lab-setup"


def setup_token() -> str:
    """A new setup token."""
    return serializer(_SALT).dumps({"n": secrets.token_urlsafe(16)})


def setup_link(base_url: str | None = None) -> str:
    """The one-time setup link (``{LAB_PUBLIC_URL}/auth/setup?token=…``)."""
    base = (base_url or load_settings().public_url).rstrip("/")
    return f"{base}{SETUP_PATH}?token={quote(setup_token())}"


def setup_token_valid(token: str | None) -> bool:
    """Whether a setup token is genuine and unexpired (the caller also checks no account exists)."""
    if not token or len(token) > 500:
        return False
    try:
        serializer(_SALT).loads(token, max_age=SETUP_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return False
    return True
