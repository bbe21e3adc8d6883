"""YAML syntax errors in a spec name where the broken construct starts, not only where reading failed."""

from __future__ import annotations

import pytest

from lab.spec import SpecError, parse_spec

SPEC = """\
slug: tiny
title: Tiny study
consent: You agree.
instructions: Chat.
models:
  bot:
    model: lab/scripted
conditions:
  full:
    model: bot
items:
  - {id: q1, kind: open, prompt: Hello}
"""


def problem(text: str) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(text, "s.yaml")
    [line] = e.value.problems
    return line


def test_unterminated_quote_is_reported_where_it_starts() -> None:
    p = problem(SPEC.replace("title: Tiny study", "title: 'Tiny study"))
    assert p.startswith("s.yaml:2: YAML syntax error:"), p
    assert "quoted scalar that starts at line 2, column 8" in p
    assert "found unexpected end of stream at line 13" in p  # where reading stopped: the end of the file


def test_unclosed_bracket_names_both_places() -> None:
    p = problem(SPEC.replace("  - {id: q1, kind: open, prompt: Hello}", "  - {id: q1, kind: open, prompt: Hello"))
    assert p.startswith("s.yaml:12: YAML syntax error:"), p
    assert "flow mapping that starts at line 12, column 5" in p


def test_error_without_a_construct_keeps_its_own_line() -> None:
    p = problem(SPEC.replace("consent: You agree.", "consent: You agree.\n  extra: indented"))
    assert p.startswith("s.yaml:4: YAML syntax error: mapping values are not allowed here at line 4"), p
