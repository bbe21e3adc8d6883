"""Settings from the environment and an optional ``.env`` file.

Every setting has an environment variable; ``.env`` in the working directory (or the
file named by ``LAB_ENV_FILE``) is read first and never overrides variables already set.
Provider keys (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY`` …) are left in the environment,
where litellm reads them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The project folder (holds ``app.py``, ``migrations/``, ``studies/``)."""

SETTINGS: dict[str, str] = {
    "DATABASE_URL": "SQLAlchemy URL of the lab database (default: SQLite at data/lab.db).",
    "LAB_DATA_DIR": "Folder for the SQLite database and the generated secret (default: data/).",
    "LAB_SECRET_KEY": "Secret for signing staff cookies and link tokens (default: generated once into data/secret_key).",
    "LAB_MAX_MESSAGE_CHARS": "Longest participant message accepted when a study does not set one (default: 4000).",
    "LAB_LOCAL_THREADS": "CPU threads for the embedded local model (default: min(2, cores)).",
    "LAB_PUBLIC_URL": "Base URL that participant links are built on (default: http://localhost:8501).",
    "LAB_ENV_FILE": "Path of the .env file to read (default: .env in the working directory).",
    "LITELLM_LOCAL_MODEL_COST_MAP": "Keep litellm's price map local (set to True by the lab).",
}
"""Every environment variable the lab reads, with what it does (the README lists them all)."""


@dataclass(frozen=True)
class Settings:
    """The lab's configuration, resolved once per process."""

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


def _load_dotenv() -> None:
    from dotenv import load_dotenv

    env_file = os.environ.get("LAB_ENV_FILE")
    load_dotenv(env_file or Path.cwd() / ".env", override=False)


def _secret(data_dir: Path) -> str:
    if key := os.environ.get("LAB_SECRET_KEY"):
        return key
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


def load_settings() -> Settings:
    """Read the settings from ``.env`` and the environment.

    Returns:
        The resolved settings.
    """
    _load_dotenv()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    data_dir = Path(os.environ.get("LAB_DATA_DIR") or ROOT / "data")
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'lab.db'}"
    return Settings(
        database_url=url,
        data_dir=data_dir,
        secret_key=_secret(data_dir),
        max_message_chars=int(os.environ.get("LAB_MAX_MESSAGE_CHARS", "4000")),
        public_url=os.environ.get("LAB_PUBLIC_URL", "http://localhost:8501").rstrip("/"),
    )
