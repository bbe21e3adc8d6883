"""Safe display of chat text: model text as Markdown that loads nothing, participant text verbatim.

A model can write anything, including Markdown that makes the browser fetch a remote
image (``![](https://host/?q=secret)``), which would leak the conversation and load
content nobody checked. :func:`model_markdown` prepares model text for ``st.markdown``
with raw HTML off:

- Safety does not depend on telling code from prose: every ``![`` in the text gets an
  invisible word joiner between its two characters, and no image syntax (inline,
  reference, collapsed, shortcut, nested in a link) survives that.
- Links whose address is a script or an embedded document (``javascript:``, ``vbscript:``,
  ``data:``, ``file:``) keep their text, and their address becomes an inert ``#`` fragment.
- For readability, inline images in prose become a link labelled ``image: <alt>`` (or
  plain text for addresses that are not http, https or mailto), and ``$`` is escaped so
  amounts are not typeset as mathematics. Fenced code blocks and code spans are left as
  written; when this guess about code is wrong, only the look suffers.

Participant text is never interpreted: pages show it with ``st.text``, and
:func:`escape_markdown` makes any text literal where it must go through Markdown.
"""

from __future__ import annotations

import re

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_IMAGE = re.compile(
    r"!\[(?P<alt>[^\[\]\n]*)\]"
    r"\(\s*(?:<(?P<angle>[^<>\n]*)>|(?P<url>(?:[^\s()<>]|\([^\s()<>]*\))*))"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"
)
# A link whose address would run or embed something when clicked (``javascript:``, ``data:``…),
# inline or as a reference definition; the address is turned into an inert fragment (``#…``).
_UNSAFE_LINK = re.compile(r"\]\(\s*<?\s*(?=(?:javascript|vbscript|data|file)\s*:)", re.IGNORECASE)
_UNSAFE_DEFINITION = re.compile(
    r"^ {0,3}\[[^\]\n]+\]:\s*<?\s*(?=(?:javascript|vbscript|data|file)\s*:)", re.IGNORECASE | re.MULTILINE
)
_SAFE_URL = re.compile(r"^(?:https?://|mailto:)[^\s]*$", re.IGNORECASE)
WORD_JOINER = "\u2060"
"""Invisible; placed inside every ``![`` so no image syntax can form."""


def escape_markdown(text: str) -> str:
    r"""Text that Markdown shows literally (every ASCII punctuation mark backslash-escaped).

    Args:
        text: Any text.

    Returns:
        The text with ``\\`` before each ASCII punctuation character and newlines kept as
        hard line breaks.
    """
    escaped = "".join("\\" + c if c in _PUNCTUATION else c for c in text)
    return escaped.replace("\r\n", "\n").replace("\n", "  \n")


def _escaped(text: str, i: int) -> bool:
    """Whether the character at ``i`` is preceded by an odd number of backslashes."""
    n = 0
    j = i - 1
    while j >= 0 and text[j] == "\\":
        n += 1
        j -= 1
    return n % 2 == 1


def _image_replacement(match: re.Match[str]) -> str:
    alt = match.group("alt").strip()
    url = (match.group("angle") if match.group("angle") is not None else match.group("url") or "").strip()
    label = f"image: {escape_markdown(alt)}" if alt else "image"
    if url and _SAFE_URL.match(url):
        return f"[{label}](<{url}>)"
    return label + (f" ({escape_markdown(url)})" if url else "")


def _neutralize_prose(text: str) -> str:
    """Rewrite image syntax and escape ``$`` in text that holds no code."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "!" and text.startswith("![", i) and not _escaped(text, i):
            m = _INLINE_IMAGE.match(text, i)
            if m:
                out.append(_image_replacement(m))
                i = m.end()
                continue
            # Reference, collapsed or shortcut image (``![a][r]``, ``![a][]``, ``![a]``):
            # an escaped "!" leaves a plain link or bracketed text.
            out.append("\\!")
            i += 1
            continue
        if c == "$" and not _escaped(text, i):
            out.append("\\$")
            i += 1
            continue
        out.append(c)
        i += 1
    prose = _UNSAFE_LINK.sub(lambda m: m.group(0) + "#", "".join(out))
    return _UNSAFE_DEFINITION.sub(lambda m: m.group(0) + "#", prose)


def _split_inline_code(line_block: str) -> list[tuple[bool, str]]:
    """Split one line into (is_code, piece) by code spans (matching backtick runs)."""
    pieces: list[tuple[bool, str]] = []
    i = 0
    start = 0
    n = len(line_block)
    while i < n:
        if line_block[i] == "`" and not _escaped(line_block, i):
            j = i
            while j < n and line_block[j] == "`":
                j += 1
            run = j - i
            k = j
            close = -1
            while k < n:
                if line_block[k] == "`":
                    m = k
                    while m < n and line_block[m] == "`":
                        m += 1
                    if m - k == run:
                        close = k
                        break
                    k = m
                else:
                    k += 1
            if close == -1:
                i = j  # an unmatched run is literal backticks
                continue
            if i > start:
                pieces.append((False, line_block[start:i]))
            pieces.append((True, line_block[i : close + run]))
            i = start = close + run
            continue
        i += 1
    if start < n:
        pieces.append((False, line_block[start:]))
    return pieces


def model_markdown(text: str) -> str:
    """Model text as Markdown that is safe to show with ``st.markdown`` (raw HTML off).

    No image of any form is left, so nothing is fetched without a click: inline images in
    prose become a link labelled ``image: <alt>`` (http, https and mailto addresses) or
    plain text, and every other ``![`` is broken by an invisible word joiner (inside code
    too, where it looks unchanged). ``$`` outside code is escaped so amounts are not read
    as mathematics. An unclosed fence (a reply still streaming) runs to the end of the text.

    Args:
        text: What the model wrote (complete or partial).

    Returns:
        Markdown to pass to ``st.markdown(..., unsafe_allow_html=False)``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None

    def flush() -> None:
        for line in prose:
            out.append("".join(p if code else _neutralize_prose(p) for code, p in _split_inline_code(line)))
        prose.clear()

    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in line[m.end() :]):
                flush()
                fence = m.group(1)
                out.append(line)
            else:
                prose.append(line)
        else:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end() :].strip():
                fence = None
    flush()
    return "".join(out).replace("![", "!" + WORD_JOINER + "[")
