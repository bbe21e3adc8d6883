"""Values signed with the lab's secret (staff cookies, setup tokens)."""

from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer

from ..settings import load_settings


def serializer(salt: str) -> URLSafeTimedSerializer:
    """A timed serializer keyed by the lab's secret; ``salt`` keeps each use's values apart."""
    return URLSafeTimedSerializer(load_settings().secret_key, salt=salt)
