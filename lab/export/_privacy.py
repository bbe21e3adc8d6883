"""What never leaves the lab: secrets, staff names and private notes inside JSON values.

Columns that are private as a whole (Prolific ids, link token hashes, account ids) are
simply not selected (see ``_dictionary.WITHHELD``). This module cleans what remains: JSON
values (model parameters, simulator settings, label meta, event data) and error texts,
which may carry an API key a provider echoed or a staff member's username.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "[redacted]"
"""What a removed secret becomes."""

SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|secret|secret[_-]?key|password|passwd|token|access[_-]?token|auth[_-]?token|refresh[_-]?token|"
    r"bearer|authorization|credentials?|access[_-]?key|private[_-]?key|session[_-]?key)$",
    re.I,
)
"""JSON keys whose values are secrets (model parameters such as ``api_key``)."""

PRIVATE_KEYS = frozenset(
    {
        "ip",
        "ip_address",
        "remote_addr",
        "client_address",
        "user_agent",
        "prolific_pid",
        "prolific_session_id",
        "prolific_study_id",
        "username",
        "account",
        "account_id",
        "email",
    }
)
"""JSON keys holding identifying or IP-derived data; removed wherever they appear."""

PRIVATE_NOTE_KEYS = frozenset({"private_note", "private_notes", "note_private"})
"""Notes an annotator or experimenter marked private."""

STAFF_KEYS = frozenset({"by"})
"""JSON keys naming the staff member who did something; their value becomes ``staff``."""

_MACHINE_ACTORS = frozenset({"timeout", "system", "lab", "simulator", "auto"})
"""Values of ``by`` that name no person and stay as they are."""

_CACHE_SIZE = 4096
"""Cleaned JSON texts remembered per export: model parameters repeat on every turn."""

_WORD = re.compile(r"[A-Za-z0-9_.@-]+")
"""A run of the characters a username, a Prolific id or a completion code is made of."""

_MIN_SECRET_LEN = 8
_MISSING = object()


def secret_values() -> list[str]:
    """Values of environment variables that hold secrets (``*_API_KEY``, ``*_TOKEN``, …)."""
    out = []
    for name, value in os.environ.items():
        if value and len(value) >= _MIN_SECRET_LEN and SECRET_KEY.search(name):
            out.append(value)
    return sorted(set(out), key=len, reverse=True)


def _keep(name: str) -> str:
    return name


class Scrubber:
    """Cleans JSON texts and free texts for a bundle; built once per export."""

    def __init__(
        self,
        secrets: list[str] | None = None,
        *,
        staff: Iterable[str] = (),
        rename: Callable[[str], str] = _keep,
        external_ids: Iterable[str] = (),
    ) -> None:
        """Start with the secrets of the current environment (or the ones given).

        Args:
            secrets: Strings replaced by ``[redacted]`` wherever they appear (default: the
                values of the environment's secret variables).
            staff: Staff usernames: a JSON key or string value that is one becomes
                ``rename(name)``, and one standing as a word inside a longer string too.
            rename: The bundle's pseudonym for a staff username (``annotator-N``).
            external_ids: Participants' outside ids (Prolific ids, completion codes):
                replaced by ``[redacted]`` as keys, values and words inside strings.
        """
        self.secrets = secret_values() if secrets is None else secrets
        """Exact strings replaced by ``[redacted]`` wherever they appear."""
        self.staff = frozenset(n for n in staff if n)
        """Staff usernames, replaced by their pseudonym."""
        self.rename = rename
        """Staff username → pseudonym."""
        self.external_ids = frozenset(i for i in external_ids if i)
        """Participants' outside ids, replaced by ``[redacted]``."""
        self._people = self.staff | self.external_ids
        self._cache: dict[str, str | None] = {}

    def _person(self, name: str) -> str:
        return self.rename(name) if name in self.staff else REDACTED

    def text(self, value: str | None) -> str | None:
        """A free text with every known secret value and person's name or id replaced."""
        if not value:
            return value
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if self._people:
            if value in self._people:
                return self._person(value)
            value = _WORD.sub(self._swap, value)
        return value

    def _swap(self, match: re.Match[str]) -> str:
        # A name inside a longer string counts only as a whole word ("a1" must not hit "data1");
        # a full stop after it ends a sentence, not the name.
        word = match.group(0)
        name = word.rstrip(".")
        return self._person(name) + word[len(name) :] if name in self._people else word

    def value(self, obj: Any) -> Any:
        """A JSON value with secrets, identifying keys and private notes removed."""
        if isinstance(obj, dict):
            if obj.get("private") is True:
                return None
            out = {}
            for k, v in obj.items():
                key = str(k)
                if key.lower() in PRIVATE_KEYS or key.lower() in PRIVATE_NOTE_KEYS:
                    continue
                # A key may itself be a person (an adjudication's codes by annotator).
                new_key = self.text(key) if self._people else k
                if SECRET_KEY.search(key) and not isinstance(v, (bool, int, float)) and v is not None:
                    out[new_key] = REDACTED
                elif key in STAFF_KEYS and isinstance(v, str) and v not in _MACHINE_ACTORS:
                    out[new_key] = "staff"
                else:
                    out[new_key] = self.value(v)
            return out
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def json_text(self, raw: str | None) -> str | None:
        """A JSON text cleaned by :meth:`value`, re-serialized only when something was removed."""
        if raw is None:
            return None
        found = self._cache.get(raw, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        parsed = json.loads(raw)
        cleaned = self.value(parsed)
        result = raw if cleaned == parsed else (None if cleaned is None else json.dumps(cleaned, ensure_ascii=False))
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[raw] = result
        return result
