"""Staff accounts: experimenters, annotators and admins, with Argon2id password hashes.

There is no default account and no default password. The first account is an admin made
through the one-time setup link (``python -m lab init`` prints it while no account
exists) or ``python -m lab user add NAME --role admin``. The last active admin can be
neither disabled nor demoted, so the lab never locks its own accounts page away.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # zxcvbn ships no type information

from .errors import LabError
from .schema import Account, utcnow

ROLES = ("admin", "experimenter", "annotator")
"""admin manages accounts and does everything an experimenter does."""
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
"""Longer passwords are refused so one request cannot make the server hash megabytes."""
MIN_PASSWORD_SCORE = 3
"""Lowest zxcvbn score (0-4) accepted: 3 is "safely unguessable" for an online attack with rate limits."""
_SCORED_LENGTH = 100
_LAB_WORDS = ("repair", "lab", "repairlab", "staff", "admin", "experimenter", "annotator")
_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown user like a real one.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")
_PG_FIRST_ACCOUNT_LOCK = 0x6C61_625F_6669  # one advisory lock id for creating the first admin


class AccountError(LabError, ValueError):
    """An account that cannot be created or changed, with the reason."""


@dataclass(frozen=True)
class AccountInfo:
    """An account as the accounts page lists it (never the hash)."""

    id: int
    username: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None


def hash_password(password: str) -> str:
    """Argon2id hash with a random salt."""
    return _hasher.hash(password)


def password_fingerprint(password_hash: str) -> str:
    """A short digest of a password hash; sign-in cookies carry it, so a new password ends old sign-ins."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def check_password(password: str, username: str | None = None) -> None:
    """Refuse a password that is too short, too long, or easy to guess.

    Guessability is zxcvbn's estimate (common passwords, words, names, keyboard runs,
    repeats, dates, and the username itself); a score below :data:`MIN_PASSWORD_SCORE`
    is refused with zxcvbn's own advice.

    Raises:
        AccountError: naming the rule.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"password: use at most {MAX_PASSWORD_LENGTH} characters")
    # zxcvbn's matching grows quickly with length; a long password is judged by its start.
    estimate = zxcvbn(password[:_SCORED_LENGTH], user_inputs=[u for u in (username, *_LAB_WORDS) if u])
    if estimate["score"] < MIN_PASSWORD_SCORE:
        feedback = estimate["feedback"]
        advice = " ".join(part for part in [feedback.get("warning") or "", *feedback.get("suggestions", [])] if part)
        raise AccountError(f"password: too easy to guess. {advice or 'Use a few uncommon words.'}".strip())


def _by_name(s: Session, username: str) -> Account | None:
    return s.scalar(select(Account).where(func.lower(Account.username) == username.lower()))


def create_account(s: Session, username: str, role: str, password: str) -> Account:
    """Add a staff account.

    Raises:
        AccountError: bad name, role or password, or the name is taken.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}", username):
        raise AccountError("username: use 2-64 letters, digits and _ . @ -")
    if role not in ROLES:
        raise AccountError(f"role: '{role}' is not one of {', '.join(ROLES)}")
    check_password(password, username)
    if _by_name(s, username) is not None:
        raise AccountError(f"username: '{username}' is taken")
    account = Account(username=username, role=role, password_hash=hash_password(password))
    s.add(account)
    s.flush()
    return account


def create_first_admin(s: Session, username: str, password: str) -> Account:
    """Create the first account, an admin, only while no account exists (the caller commits).

    Two setup forms sent at the same instant cannot both succeed: the count is taken under
    the database's write lock (SQLite) or an advisory lock (Postgres).

    Raises:
        AccountError: an account exists already, or the name or password is refused.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_FIRST_ACCOUNT_LOCK})
    account = create_account(s, username, "admin", password)
    # The insert above took SQLite's write lock, so this count sees every committed account.
    if count_accounts(s) != 1:
        raise AccountError("setup: an account exists already; sign in instead")
    return account


def authenticate(s: Session, username: str, password: str) -> Account | None:
    """The active account whose password matches, else None (same work either way)."""
    # Refused before any lookup, so the answer says nothing about whether the name exists.
    if len(password) > MAX_PASSWORD_LENGTH or len(username) > 200:
        return None
    account = _by_name(s, username)
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


def list_accounts(s: Session) -> list[AccountInfo]:
    """Every account, by name."""
    rows = s.scalars(select(Account).order_by(func.lower(Account.username)))
    return [AccountInfo(a.id, a.username, a.role, a.active, a.created_at, a.last_login_at) for a in rows]


def _get(s: Session, account_id: int) -> Account:
    account = s.get(Account, account_id)
    if account is None:
        raise AccountError(f"account {account_id}: no such account")
    return account


def _other_active_admins(s: Session, account_id: int) -> int:
    q = (
        select(func.count())
        .select_from(Account)
        .where(Account.role == "admin", Account.active.is_(True), Account.id != account_id)
    )
    return s.scalar(q) or 0


def change_password(s: Session, account_id: int, current: str, new: str) -> None:
    """Change one's own password after checking the current one.

    Raises:
        AccountError: the current password is wrong or the new one is refused.
    """
    account = _get(s, account_id)
    try:
        _hasher.verify(account.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise AccountError("current password: it does not match") from None
    check_password(new, account.username)
    account.password_hash = hash_password(new)


def reset_password(s: Session, account_id: int, new: str) -> None:
    """Set another account's password (admins); the account's sign-ins end.

    Raises:
        AccountError: no such account or the password is refused.
    """
    account = _get(s, account_id)
    check_password(new, account.username)
    account.password_hash = hash_password(new)


def set_role(s: Session, account_id: int, role: str) -> None:
    """Change an account's role; the last active admin keeps theirs.

    Raises:
        AccountError: unknown role or account, or it would leave no active admin.
    """
    if role not in ROLES:
        raise AccountError(f"role: '{role}' is not one of {', '.join(ROLES)}")
    account = _get(s, account_id)
    if account.role == "admin" and role != "admin" and account.active and not _other_active_admins(s, account_id):
        raise AccountError(f"role: '{account.username}' is the last active admin; make another admin first")
    account.role = role


def set_active(s: Session, account_id: int, active: bool) -> None:
    """Enable or disable an account; a disabled account is signed out at its next page.

    Raises:
        AccountError: unknown account, or it would leave no active admin.
    """
    account = _get(s, account_id)
    if not active and account.role == "admin" and account.active and not _other_active_admins(s, account_id):
        raise AccountError(f"active: '{account.username}' is the last active admin and cannot be disabled")
    account.active = active
