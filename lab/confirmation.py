"""Asking the person at the terminal to confirm a step that cannot be undone."""

from __future__ import annotations

import sys

from .errors import CommandError


def confirm(what: str, word: str, *, yes: bool, flag: str = "--yes") -> None:
    """Go on only when the person confirms ``what`` by typing ``word`` (or passed ``flag``).

    Args:
        what: The step and why it is final, as a sentence ("close study 'demo' for good").
        word: The word to type at the prompt.
        yes: Whether the command was given ``flag`` (no question asked).
        flag: The option that skips the question, named when there is no terminal.

    Raises:
        CommandError: no terminal to ask and no ``flag``, or the answer was not ``word``.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{what}: this cannot be undone, so pass {flag} to confirm when there is no terminal")
    answer = input(f"{what}? This cannot be undone. Type '{word}' to confirm: ")
    if answer.strip() != word:
        raise CommandError("nothing done: the confirmation was not typed")
