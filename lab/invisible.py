"""Invisible characters: which ones could disguise a message, and the text without them.

Tab and newline stay; so does whatever Unicode builds visible text with (emoji sequences,
subdivision flags, one variation selector after a visible character, Arabic and Indic
joiners). The rules a message must pass (empty, too long, control characters refused)
are in :mod:`lab.reveal`.
"""

from __future__ import annotations

import re
import unicodedata

_EMOJI_TAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
"""A subdivision flag (England, Scotland, Wales): a black flag, tag letters, a cancel tag."""
_JOINERS = frozenset("\u200c\u200d")
"""Zero-width non-joiner and joiner: they build emoji sequences and shape Arabic and Indic
script; they hide nothing."""
_PREPENDED = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd")
"""Visible format characters (Arabic and Kaithi number signs)."""


def _variation_selector(ch: str) -> bool:
    return "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def _hidden(text: str) -> list[bool]:
    """Which characters of a text are invisible controls that could disguise it.

    Refused: control characters other than tab and newline, and format characters (bidi
    overrides and marks, zero-width space, word joiner, byte order mark, tag characters…),
    except what Unicode builds visible text with: the zero-width joiner and non-joiner, tag
    characters inside a subdivision flag, and one variation selector after a visible
    character (a run of them can carry hidden data). Unassigned code points are kept, so
    emoji newer than Python's Unicode tables pass.
    """
    in_flag = [False] * len(text)
    for m in _EMOJI_TAG_SEQUENCE.finditer(text):
        for i in range(m.start() + 1, m.end()):
            in_flag[i] = True
    out = [False] * len(text)
    for i, ch in enumerate(text):
        if ch in "\t\n" or in_flag[i]:
            continue
        if _variation_selector(ch):
            prev = text[i - 1] if i else ""
            out[i] = not prev or prev.isspace() or out[i - 1] or _variation_selector(prev)
            continue
        cat = unicodedata.category(ch)
        out[i] = cat in ("Cc", "Cs") or (cat == "Cf" and ch not in _JOINERS and ch not in _PREPENDED)
    return out


def strip_hidden(text: str) -> str:
    """The text without invisible controls (see :func:`_hidden`); emoji are kept whole."""
    if text.isascii():
        return text if text.isprintable() else "".join(ch for ch in text if " " <= ch < "\x7f" or ch in "\t\n")
    return "".join(ch for ch, hide in zip(text, _hidden(text), strict=True) if not hide)
