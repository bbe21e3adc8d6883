"""Who is visiting: anyone, or a staff member known by a signed ``HttpOnly`` cookie.

The cookie carries the account id and a digest of its password hash, signed with the
lab's secret. A new password therefore ends every older sign-in, and a disabled account
loses access at its next page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy.orm import Session

from ..accounts import ROLES, password_fingerprint
from ..db import get_engine
from ..schema import Account
from .signing import serializer

COOKIE = "lab_staff"
"""Name of the staff sign-in cookie."""
COOKIE_MAX_AGE = 14 * 24 * 3600
"""Seconds a sign-in lasts."""
_SALT = "lab-staff-cookie"


@dataclass(frozen=True)
class Visitor:
    """The person behind the current page session."""

    role: str | None = None
    """admin, experimenter, annotator, or None for anyone not signed in."""
    username: str | None = None
    """The account's name, for staff."""
    account_id: int | None = None
    """The account's id, for staff."""

    @property
    def is_staff(self) -> bool:
        """Whether the visitor is signed in with a staff role."""
        return self.role in ROLES

    def can(self, *roles: str) -> bool:
        """Whether the visitor has one of ``roles`` (admins have every staff role)."""
        return self.role is not None and (self.role in roles or (self.role == "admin" and bool(set(roles) & set(ROLES))))


def sign_account(account_id: int, fingerprint: str) -> str:
    """Cookie value for a signed-in account.

    Args:
        account_id: The account's id.
        fingerprint: :func:`lab.accounts.password_fingerprint` of its current password hash.
    """
    return serializer(_SALT).dumps({"a": account_id, "f": fingerprint})


def cookie_for(account: Any) -> str:
    """Cookie value for an ``Account`` row."""
    return sign_account(account.id, password_fingerprint(account.password_hash))


def account_from_cookie(value: str | None) -> tuple[int, str] | None:
    """The account id and password fingerprint in a valid, unexpired cookie value."""
    if not value or len(value) > 4096:
        return None
    try:
        data = serializer(_SALT).loads(value, max_age=COOKIE_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict):
        return None
    account, fingerprint = data.get("a"), data.get("f")
    if not isinstance(account, int) or not isinstance(fingerprint, str):
        return None
    return account, fingerprint


def visitor_from_cookie(value: str | None) -> Visitor:
    """Resolve a cookie value against the database (anyone not signed in when it fails)."""
    found = account_from_cookie(value)
    if found is None:
        return Visitor()
    account_id, fingerprint = found
    with Session(get_engine()) as s:
        account = s.get(Account, account_id)
        if account is None or not account.active:
            return Visitor()
        if not secrets.compare_digest(password_fingerprint(account.password_hash), fingerprint):
            return Visitor()
        return Visitor(account.role, account.username, account.id)
