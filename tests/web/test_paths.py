"""Where links lead: the address a page was opened at against LAB_PUBLIC_URL."""

from __future__ import annotations

import pytest

from lab.web.paths import elsewhere


@pytest.mark.parametrize(
    ("public", "opened"),
    [
        ("http://localhost:8501", "http://localhost:8501/links"),
        ("http://localhost:8501/", "http://LOCALHOST:8501/links"),
        ("https://lab.example.org", "https://lab.example.org:443/links"),
        ("https://lab.example.org/repair", "https://lab.example.org/repair/links"),
        ("http://localhost:8501", None),
        ("http://localhost:8501", ""),
    ],
)
def test_the_same_address_gives_no_warning(public: str, opened: str | None) -> None:
    assert elsewhere(public, opened) is None


@pytest.mark.parametrize(
    ("public", "opened", "found"),
    [
        ("http://localhost:8501", "http://10.0.0.5:8501/links", "http://10.0.0.5:8501"),
        ("http://localhost:8501", "https://lab.example.org/links", "https://lab.example.org"),
        ("http://lab.example.org", "https://lab.example.org/links", "https://lab.example.org"),
        ("https://lab.example.org:8443", "https://lab.example.org/links", "https://lab.example.org"),
        ("https://lab.example.org/repair", "https://lab.example.org/links", "https://lab.example.org"),
        ("https://lab.example.org/repair", "https://lab.example.org/repairs/links", "https://lab.example.org"),
    ],
)
def test_another_address_is_named(public: str, opened: str, found: str) -> None:
    assert elsewhere(public, opened) == found
