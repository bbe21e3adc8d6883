"""Settings from the environment and an optional ``.env`` file: one table that parses and documents them.

Every environment variable the lab reads is a row of :data:`SETTINGS`, with its parser,
its default and what it does; the README's configuration table lists the same rows (a
test checks both ways). ``.env`` in the working directory (or the file named by
``LAB_ENV_FILE``) is read once per process and never overrides variables already set.
Provider keys (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY`` …) are left in the environment,
where litellm reads them.

:func:`load_settings` resolves the table once and returns the same :class:`Settings`
until one of the variables changes (tests change them freely); the secret file is read
only when resolving. :func:`reset_settings` forgets everything, ``.env`` included.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabError

ROOT = Path(__file__).resolve().parent.parent
"""The project folder (holds ``app.py``, ``migrations/``, ``studies/``)."""


class SettingError(LabError, ValueError):
    """An environment variable with a value the lab cannot use, named with the reason."""


def _text(value: str) -> str:
    return value


def _path(value: str) -> Path:
    return Path(value)


def _positive_int(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got '{value}'") from None
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1 or 0 (true/false, yes/no, on/off), got '{value}'")


def _database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value).get_dialect()
    except ArgumentError as e:  # NoSuchModuleError too: a database kind SQLAlchemy does not know
        raise ValueError(
            f"'{value}' is not a database URL SQLAlchemy can use ({e}); e.g. sqlite:///data/lab.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    return value


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// address, got '{value}'")
    return value.rstrip("/")


@dataclass(frozen=True)
class Setting:
    """One environment variable: how it is read and what it does."""

    name: str
    """The environment variable."""
    help: str
    """What it does, with its default (the README's configuration table says the same)."""
    attribute: str | None = None
    """The :class:`Settings` field it fills; None for a variable only a library reads."""
    parse: Callable[[str], Any] = _text
    """Turns the text into the field's value; raises ``ValueError`` with the reason."""
    default: Any = None
    """The value when the variable is unset or empty (None: worked out from other settings)."""


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("LAB_ENV_FILE", "Path of the .env file to read (default: .env in the working directory).", "env_file", _path),
        Setting(
            "DATABASE_URL", "SQLAlchemy URL of the lab database (default: SQLite at data/lab.db).", "database_url", _database_url
        ),
        Setting(
            "LAB_DATA_DIR",
            "Folder for the SQLite database and the generated secret (default: data/).",
            "data_dir",
            _path,
            ROOT / "data",
        ),
        Setting(
            "LAB_SECRET_KEY",
            "Secret for signing staff cookies and setup links (default: generated once into data/secret_key).",
            "secret_key",
        ),
        Setting(
            "LAB_MAX_MESSAGE_CHARS",
            "Longest participant message accepted when a study does not set one (default: 4000).",
            "max_message_chars",
            _positive_int,
            4000,
        ),
        Setting(
            "LAB_PUBLIC_URL",
            "Base URL participant links are built on (default: http://localhost:8501).",
            "public_url",
            _url,
            "http://localhost:8501",
        ),
        Setting(
            "LAB_LOCAL_THREADS",
            "CPU threads for the embedded local model (default: min(2, cores)).",
            "local_threads",
            _positive_int,
        ),
        Setting(
            "LAB_LOCAL_EXTRA_BUFFERS",
            "1 lets llama.cpp use its extra (AMX) weight buffers on CPUs that advertise AMX "
            "(default: 0, plain buffers: some VMs advertise AMX without enabling it).",
            "local_extra_buffers",
            _flag,
            False,
        ),
        Setting(
            "LAB_DEBUG", "1 makes the command line print a traceback with its one-line error (default: 0).", "debug", _flag, False
        ),
        Setting("LAB_PASSWORD", "Password for `python -m lab user add` when stdin is not a terminal.", "password"),
        Setting("LITELLM_LOCAL_MODEL_COST_MAP", "Keep litellm's price map local (set to True by the lab unless already set)."),
    )
}
"""Every environment variable the lab reads, with how it is parsed and what it does (the README lists them all)."""


@dataclass(frozen=True)
class Settings:
    """The lab's configuration, resolved once per process (see :func:`load_settings`)."""

    database_url: str
    """Where every study, turn and label is stored."""

    data_dir: Path
    """Folder for local state (SQLite file, secret key)."""

    secret_key: str = field(repr=False)
    """Signs staff cookies; generated on first use, never a fixed default."""

    max_message_chars: int = 4000
    """Default limit on one participant message."""

    public_url: str = "http://localhost:8501"
    """Base of participant links."""

    env_file: Path | None = None
    """The .env file named by ``LAB_ENV_FILE`` (None: .env in the working directory)."""

    local_threads: int | None = None
    """Threads for the embedded local model (None: at most 2 of the usable cores)."""

    local_extra_buffers: bool = False
    """Let llama.cpp use its extra weight buffers on AMX CPUs."""

    debug: bool = False
    """Show tracebacks on the command line."""

    password: str | None = field(default=None, repr=False)
    """A new account's password for ``user add`` without a terminal."""


_cache: dict[tuple[str | None, ...], Settings] = {}
_dotenv_read: set[str] = set()
_lock = threading.Lock()


def _load_dotenv() -> None:
    from dotenv import load_dotenv

    named = os.environ.get("LAB_ENV_FILE")
    if named and not Path(named).exists():
        # A named file that is not there would otherwise leave every setting in it unset, silently.
        raise SettingError(f"LAB_ENV_FILE: '{named}' does not exist; name an existing .env file or unset LAB_ENV_FILE")
    env_file = named or str(Path.cwd() / ".env")
    if env_file not in _dotenv_read:
        load_dotenv(env_file, override=False)
        _dotenv_read.add(env_file)


def _secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting together must agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _resolve() -> Settings:
    values: dict[str, Any] = {}
    for setting in SETTINGS.values():
        if setting.attribute is None:
            continue
        raw = os.environ.get(setting.name, "")
        if raw == "":
            values[setting.attribute] = setting.default
            continue
        try:
            values[setting.attribute] = setting.parse(raw)
        except ValueError as e:
            raise SettingError(f"{setting.name}: {e}") from None
    data_dir: Path = values["data_dir"]
    values["database_url"] = values["database_url"] or f"sqlite:///{data_dir / 'lab.db'}"
    values["secret_key"] = values["secret_key"] or _secret(data_dir)
    return Settings(**values)


def load_settings() -> Settings:
    """The settings from ``.env`` and the environment, resolved once per process.

    Returns:
        The resolved settings; the same object until one of :data:`SETTINGS` changes.

    Raises:
        SettingError: a variable has a value the lab cannot use, or ``LAB_ENV_FILE`` names
            a file that does not exist.
    """
    _load_dotenv()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    key = tuple(os.environ.get(name) for name in SETTINGS)
    found = _cache.get(key)
    if found is None:
        with _lock:
            found = _cache.get(key)
            if found is None:
                found = _resolve()
                _cache.clear()  # only the newest environment is worth keeping
                _cache[key] = found
    return found


def reset_settings() -> None:
    """Forget the resolved settings and which ``.env`` files were read (for tests)."""
    with _lock:
        _cache.clear()
        _dotenv_read.clear()
