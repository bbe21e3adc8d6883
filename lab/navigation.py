"""The app's pages and who may open them; ``app.py`` builds the navigation from this table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol


class Viewer(Protocol):
    """Who is looking: what the menu needs of a visitor (:class:`lab.web.visitor.Visitor` is one).

    A protocol rather than the visitor class, so that :mod:`lab.web` imports this module and
    never the reverse.
    """

    @property
    def is_staff(self) -> bool:
        """Whether the visitor is signed in as staff."""
        ...

    def can(self, *roles: str) -> bool:
        """Whether the visitor holds one of ``roles`` (admins hold every staff role)."""
        ...


@dataclass(frozen=True)
class PageEntry:
    """One screen of the app."""

    path: str
    """Script under ``pages/``."""
    title: str
    url_path: str
    roles: tuple[str, ...]
    """Staff roles that may open it (admins may open every staff page); empty for anyone."""
    section: str = ""
    icon: str | None = None
    layout: Literal["centered", "wide"] = "centered"
    """``wide`` for pages of tables and charts; ``app.py`` sets it once per run, before the page runs."""


PARTICIPANT = PageEntry("pages/participant.py", "Study", "study", ())
HOME = PageEntry("pages/home.py", "Repair Lab", "home", ())
LOGIN = PageEntry("pages/login.py", "Sign in", "login", ())
STAFF: tuple[PageEntry, ...] = (
    PageEntry("pages/studies.py", "Studies", "studies", ("experimenter",), "Experiment", ":material/science:", layout="wide"),
    PageEntry("pages/links.py", "Links", "links", ("experimenter",), "Experiment", ":material/link:"),
    PageEntry(
        "pages/monitor.py", "Live monitor", "monitor", ("experimenter",), "Experiment", ":material/monitoring:", layout="wide"
    ),
    PageEntry("pages/models.py", "Models", "models", ("experimenter",), "Experiment", ":material/memory:"),
    PageEntry(
        "pages/compare.py", "Compare models", "compare", ("experimenter",), "Experiment", ":material/query_stats:", layout="wide"
    ),
    PageEntry("pages/export.py", "Export", "export", ("experimenter",), "Experiment", ":material/download:"),
    PageEntry(
        "pages/agreement.py",
        "Annotation & agreement",
        "agreement",
        ("experimenter",),
        "Annotation",
        ":material/rule:",
        layout="wide",
    ),
    PageEntry(
        "pages/adjudicate.py", "Adjudicate", "adjudicate", ("experimenter",), "Annotation", ":material/gavel:", layout="wide"
    ),
    PageEntry("pages/annotate.py", "Annotate", "annotate", ("annotator",), "Annotation", ":material/edit_note:", layout="wide"),
    PageEntry("pages/prefer.py", "Compare replies", "prefer", ("annotator",), "Annotation", ":material/compare:", layout="wide"),
    PageEntry("pages/accounts.py", "Accounts", "accounts", ("admin",), "Admin", ":material/group:"),
    PageEntry("pages/account.py", "My account", "account", ("experimenter", "annotator"), "Account", ":material/person:"),
)
"""Staff pages in menu order."""

PARTICIPANT_PARAMS = ("t", "study")
"""Query parameters that make a visit a participant's."""


def is_participant_visit(query: Mapping[str, Any]) -> bool:
    """A personal (``?t=``) or open study (``?study=``) link, even an empty one (the study page refuses it)."""
    return any(k in query for k in PARTICIPANT_PARAMS)


def pages_for(visitor: Viewer, query: Mapping[str, Any]) -> tuple[dict[str, list[PageEntry]], PageEntry]:
    """The sections of pages a visitor's menu shows, and the page served at ``/``.

    A participant link always shows the study page alone, whoever follows it. Staff land
    on the home page, kept out of the menu: Streamlit serves the default page only at
    ``/``, so making a menu page the default would break its own address.
    """
    if is_participant_visit(query):
        return {"": [PARTICIPANT]}, PARTICIPANT
    if not visitor.is_staff:
        return {"": [HOME, LOGIN]}, HOME
    sections: dict[str, list[PageEntry]] = {}
    for page in STAFF:
        if visitor.can(*page.roles):
            sections.setdefault(page.section, []).append(page)
    return sections, HOME


def hidden_pages(visitor: Viewer, query: Mapping[str, Any]) -> list[PageEntry]:
    """Staff pages a visitor's menu leaves out that must still answer at their address.

    A staff address opened signed out, or with a role the page is not for, must reach the
    page itself, whose role check then asks to sign in (and returns there afterwards) or
    says the page is not for this role; without it in the navigation, Streamlit would
    answer "page not found" and drop the address. A participant link never reaches them.
    """
    if is_participant_visit(query):
        return []
    shown = {p for pages in pages_for(visitor, query)[0].values() for p in pages}
    return [p for p in STAFF if p not in shown]
