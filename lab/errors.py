"""The lab's own errors: one base, so a caller can tell a refusal it can explain from a bug.

Every error the lab raises on purpose derives from :class:`LabError`, and its message is
written for the person who caused it (``file:line: field: problem``, "no study with slug
…"). The command line prints such a message as one line; anything else is a bug and is
reported as unexpected. The classes stay in the module of the rule they enforce
(``SpecError`` in ``lab.spec``, ``AccountError`` in ``lab.accounts`` …); each also keeps
the built-in base it had (``ValueError``, ``LookupError`` …) so existing ``except``
clauses still catch it. A plain ``ValueError``/``LookupError``/``KeyError`` is raised only
for a programming error (``tests/test_errors.py`` keeps the list of those).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LabError(Exception):
    """A refusal the lab can explain; ``str(error)`` is the explanation."""


class CommandError(LabError):
    """A command that cannot go on; its message is printed as is."""


class UnknownName(LabError, LookupError, ValueError):
    """A name (study, condition, measure…) that is not among the known ones, with the close ones.

    A mistyped name must never look like an empty result: the message names what is
    unknown, suggests the closest known names (``difflib``), and lists the known ones
    when there are few. It is a ``LookupError`` (nothing has that name) and a ``ValueError``
    (the value given is wrong), so callers of either kind catch it.
    """

    def __init__(self, what: str, name: str, known: Iterable[str], *, hint: str = "") -> None:
        """Create the error.

        Args:
            what: What the name stands for ("condition", "study slug").
            name: The name given.
            known: Every name that would have been accepted.
            hint: A sentence to add (what to do besides picking a known name).
        """
        choices = sorted(dict.fromkeys(str(k) for k in known))
        close = close_names(name, choices)
        if close:
            advice = did_you_mean(close)
        elif not choices:
            advice = "there are none yet"
        elif len(choices) <= MAX_LISTED:
            advice = "known: " + ", ".join(choices)
        else:
            advice = f"{len(choices)} known, e.g. " + ", ".join(choices[:MAX_LISTED]) + ", …"
        super().__init__(f"unknown {what} '{name}': {advice}" + (f" {hint}" if hint else ""))
        self.what, self.name, self.close = what, name, close

    def __str__(self) -> str:
        return str(self.args[0])


def close_names(name: str, known: Iterable[str]) -> list[str]:
    """The known names closest to ``name`` (at most three, best first), by ``difflib``."""
    return difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)


def did_you_mean(close: list[str]) -> str:
    """``did you mean 'a' or 'b'?`` for a non-empty list of close names."""
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


MAX_LISTED = 12
"""Known names are listed in a refusal when there are at most this many."""


def require_known(what: str, names: Iterable[str], known: Iterable[str], *, hint: str = "") -> None:
    """Refuse the first of ``names`` that is not in ``known``.

    Raises:
        UnknownName: naming it, with the close known names.
    """
    accepted = set(known)
    for name in names:
        if name not in accepted:
            raise UnknownName(what, name, accepted, hint=hint)


class ReportError(LabError, ValueError, LookupError):
    """A report that cannot be made, with the reason.

    Bad options for a comparison (the message names the option), or a simulation run that
    does not exist (:func:`lab.simulate.run_report`).
    """
