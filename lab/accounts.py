"""Staff accounts: experimenters, annotators and admins, with Argon2id password hashes."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .schema import Account, utcnow

ROLES = ("admin", "experimenter", "annotator")
"""admin manages accounts and does everything an experimenter does."""
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown user like a real one.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


class AccountError(ValueError):
    """An account that cannot be created or changed, with the reason."""


def hash_password(password: str) -> str:
    """Argon2id hash with a random salt."""
    return _hasher.hash(password)


def create_account(s: Session, username: str, role: str, password: str) -> Account:
    """Add a staff account.

    Raises:
        AccountError: bad name, role or password, or the name is taken.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}", username):
        raise AccountError("username: use 2-64 letters, digits and _ . @ -")
    if role not in ROLES:
        raise AccountError(f"role: '{role}' is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    if s.scalar(select(Account).where(func.lower(Account.username) == username.lower())):
        raise AccountError(f"username: '{username}' is taken")
    account = Account(username=username, role=role, password_hash=hash_password(password))
    s.add(account)
    s.flush()
    return account


def authenticate(s: Session, username: str, password: str) -> Account | None:
    """The active account whose password matches, else None (same work either way)."""
    account = s.scalar(select(Account).where(func.lower(Account.username) == username.lower()))
    stored = account.password_hash if account is not None and account.active else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None or not account.active:
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.last_login_at = utcnow()
    return account


def count_accounts(s: Session) -> int:
    """How many staff accounts exist."""
    return s.scalar(select(func.count()).select_from(Account)) or 0
