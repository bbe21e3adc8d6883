"""The lab's own errors: one base, so a caller can tell a refusal it can explain from a bug.

Every error the lab raises on purpose derives from :class:`LabError`, and its message is
written for the person who caused it (``file:line: field: problem``, "no study with slug
…"). The command line prints such a message as one line; anything else is a bug and is
reported as unexpected. The classes stay in the module of the rule they enforce
(``SpecError`` in ``lab.spec``, ``AccountError`` in ``lab.accounts`` …); each also keeps
the built-in base it had (``ValueError``, ``LookupError`` …) so existing ``except``
clauses still catch it.
"""

from __future__ import annotations


class LabError(Exception):
    """A refusal the lab can explain; ``str(error)`` is the explanation."""


class CommandError(LabError):
    """A command that cannot go on; its message is printed as is."""
