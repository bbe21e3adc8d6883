"""Links that bring participants into a study.

Two kinds:

- **Personal links** ``{LAB_PUBLIC_URL}/?t=<token>``: one per invited participant. Only the
  token's hash is stored, so the links exist once, in the CSV made when they are
  generated; they cannot be shown again later.
- **The open Prolific link** ``{LAB_PUBLIC_URL}/?study=SLUG&PROLIFIC_PID={{%PROLIFIC_PID%}}…``:
  one link for a whole Prolific study; Prolific fills in the participant, study and session
  ids, and each visit with a new ``PROLIFIC_PID`` becomes a participant. At the end,
  participants are sent back to Prolific with the study's completion code.
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .participants import create_participant, new_token
from .schema import Participant, Study
from .settings import load_settings
from .studies import StudyError

MAX_LINKS = 10_000
"""Most personal links made in one go."""
PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
"""URL parameters Prolific fills in, each written as ``{{%NAME%}}`` in the study URL."""
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc="
"""Where Prolific expects participants to return with the completion code."""


class LinkError(StudyError):
    """Links that cannot be made, with the reason."""


@dataclass(frozen=True)
class PersonalLink:
    """One participant's link (the only time the token is known)."""

    participant_id: int
    url: str


@dataclass(frozen=True)
class OpenLink:
    """What to paste into Prolific for a study."""

    url: str
    """The study URL with Prolific's parameters in place."""
    completion_code: str | None
    """The code Prolific checks; None when the spec sets none."""
    completion_url: str | None
    """Prolific's return URL with the code."""


def _base(public_url: str | None) -> str:
    return (public_url or load_settings().public_url).rstrip("/")


def personal_link(token: str, public_url: str | None = None) -> str:
    """The URL of a personal link token."""
    return f"{_base(public_url)}/?t={quote(token, safe='')}"


def make_personal_links(s: Session, study: Study, count: int, public_url: str | None = None) -> list[PersonalLink]:
    """Invite ``count`` participants, each with a new personal link (the caller commits).

    Raises:
        LinkError: ``count`` out of range, or the study is closed or superseded.
    """
    if not 1 <= count <= MAX_LINKS:
        raise LinkError(f"count: make between 1 and {MAX_LINKS} links at a time (got {count})")
    if study.status in ("closed", "superseded"):
        raise LinkError(f"study '{study.slug}' version {study.version} is {study.status}: no new links")
    out = []
    for _ in range(count):
        token = new_token()
        p = create_participant(s, study, kind="human", token=token, status="invited")
        out.append(PersonalLink(p.id, personal_link(token, public_url)))
    return out


def links_csv(study: Study, links: list[PersonalLink]) -> str:
    """The CSV handed to the experimenter: one row per link."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["study", "version", "participant", "link"])
    for link in links:
        writer.writerow([study.slug, study.version, link.participant_id, link.url])
    return buf.getvalue()


def issued_links(s: Session, study: Study) -> int:
    """How many personal links a study version has (used or not)."""
    q = select(func.count()).select_from(Participant).where(Participant.study_id == study.id, Participant.token_hash.is_not(None))
    return s.scalar(q) or 0


def open_link(study: Study, public_url: str | None = None) -> OpenLink:
    """The open Prolific link of a study and its completion code."""
    params = "&".join(f"{name}={{{{%{name}%}}}}" for name in PROLIFIC_PARAMS)
    url = f"{_base(public_url)}/?study={quote(study.slug, safe='')}&{params}"
    code = ((study.spec.get("completion") or {}).get("code")) or None
    return OpenLink(url=url, completion_code=code, completion_url=f"{PROLIFIC_COMPLETE}{code}" if code else None)


def write_links_file(slug: str, count: int, out: str | Path) -> tuple[Study, int]:
    """Make personal links for the newest version of a study and write them as CSV.

    The file is written before the links are committed, so a file that cannot be written
    leaves no unreachable participants behind.

    Returns:
        The study version and the number of links written.
    """
    from .db import get_engine, transaction
    from .studies import get_study

    path = Path(out)
    if path.exists() and path.is_dir():
        raise LinkError(f"--out: '{path}' is a folder; name a file")
    if not path.parent.exists():
        raise LinkError(f"--out: the folder '{path.parent}' does not exist")
    with transaction(get_engine()) as s:
        study = get_study(s, slug)
        links = make_personal_links(s, study, count)
        try:
            path.write_text(links_csv(study, links), encoding="utf-8")
        except OSError as e:
            raise LinkError(f"--out: cannot write '{path}': {e.strerror}") from None
        return study, len(links)


def _cmd_links(args: argparse.Namespace) -> None:
    study, n = write_links_file(args.slug, args.count, args.out)
    print(f"wrote {n} personal links for study '{study.slug}' version {study.version} to {args.out}")
    print("keep this file: only the links' hashes are stored, so they cannot be shown again")
    if args.prolific:
        link = open_link(study)
        print(f"open Prolific link: {link.url}")


def _cmd_prolific(args: argparse.Namespace) -> None:
    from .db import get_engine, transaction
    from .studies import get_study

    with transaction(get_engine()) as s:
        link = open_link(get_study(s, args.slug))
    print(f"study URL for Prolific: {link.url}")
    if link.completion_code:
        print(f"completion code: {link.completion_code}")
        print(f"completion URL: {link.completion_url}")
    else:
        print("no completion code: set completion.code in the spec so Prolific can check who finished")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``links`` and ``prolific-link`` to the command line."""
    sp = sub.add_parser("links", help="make N personal participant links for a study and write them to a CSV file")
    sp.add_argument("slug")
    sp.add_argument("--count", type=int, required=True, help="how many links")
    sp.add_argument("--out", required=True, help="CSV file to write (the links cannot be shown again)")
    sp.add_argument("--prolific", action="store_true", help="also print the open Prolific link")
    sp.set_defaults(func=_cmd_links)
    sp = sub.add_parser("prolific-link", help="print a study's open Prolific link and completion code")
    sp.add_argument("slug")
    sp.set_defaults(func=_cmd_prolific)
