"""``python -m lab``: the lab's operations on the command line.

Every command honours ``DATABASE_URL``. Errors are one clear line on stderr and a
non-zero exit, never a traceback (set ``LAB_DEBUG=1`` to see one): the refusals the lab
raises on purpose derive from :class:`lab.errors.LabError` (exit 1), a database that
cannot be used is explained by :func:`lab.db.explain` (exit 1), and anything else is a bug
reported as unexpected (exit 2).

Each command group adds itself with a ``register(sub)`` function, listed once in
:func:`_registrars` (a new group adds one line there); every parser is a
:class:`LabParser`, so no option can be abbreviated.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .accounts import ROLES
from .errors import CommandError, LabError
from .settings import ROOT, SettingError, load_settings

__all__ = ["CommandError", "build_parser", "main"]

DEMO_SPEC = ROOT / "studies" / "demo.yaml"


def _engine() -> Any:
    from .db import get_engine

    return get_engine()


def _tx() -> Any:
    from .db import transaction

    return transaction(_engine())


def cmd_migrate(args: argparse.Namespace) -> None:
    from .db import current_revision, migrate

    engine = _engine()
    migrate(engine)
    print(f"database at revision {current_revision(engine)}")


def cmd_init(args: argparse.Namespace) -> None:
    """Migrate, load the demo study into an empty database, and say how to get in."""
    from .accounts import count_accounts
    from .db import migrate
    from .studies import StudyError, count_studies, load_study_file, set_status

    engine = _engine()
    migrate(engine)
    with _tx() as s:
        if count_studies(s) == 0 and DEMO_SPEC.exists():
            result = load_study_file(s, DEMO_SPEC)
            try:
                set_status(s, result.study.slug, "open")
                print(f"loaded and opened the demo study: take part at {load_settings().public_url}/?study={result.study.slug}")
            except StudyError as e:
                print(f"loaded the demo study '{result.study.slug}' as a draft ({e})")
        if count_accounts(s) == 0:
            from .web.setup_token import setup_link

            print("no staff account yet. Open this one-time link (valid 24 hours) to create the first admin:")
            print(f"  {setup_link()}")
            print("or create one here: `python -m lab user add NAME --role admin`")


def cmd_study_validate(args: argparse.Namespace) -> None:
    from .spec import load_spec_file

    d = load_spec_file(args.file)
    for w in d.warnings:
        print(f"warning: {w}", file=sys.stderr)
    kinds: dict[str, int] = {}
    for it in d.items:
        kinds[it.kind] = kinds.get(it.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{args.file}: ok — study '{d.spec.slug}', {len(d.spec.conditions)} conditions, {len(d.items)} items ({summary})")


def cmd_study_load(args: argparse.Namespace) -> None:
    from .studies import load_study_file

    with _tx() as s:
        r = load_study_file(s, args.file)
        print(f"study '{r.study.slug}' version {r.study.version}: {r.action} (status {r.study.status})")


STATUS_AFTER = {"open": "open", "pause": "paused", "close": "closed"}
"""The status each ``study`` action leads to."""


def cmd_study_status(args: argparse.Namespace) -> None:
    """Open, pause or close a study; asking again for the status it has is not an error."""
    from .confirmation import confirm
    from .studies import get_study, set_status

    with _tx() as s:
        study = get_study(s, args.slug)
        if study.status == STATUS_AFTER[args.action]:
            print(f"study '{study.slug}' version {study.version} is already {study.status}")
            return
    if args.action == "close":
        confirm(
            f"close study '{args.slug}' for good (no one can take part again, and a closed study cannot be reopened)",
            "close",
            yes=args.yes,
        )
    with _tx() as s:
        study = set_status(s, args.slug, args.action)
        print(f"study '{study.slug}' version {study.version} is {study.status}")


def cmd_study_export(args: argparse.Namespace) -> None:
    """Print or write a study's spec as written (comments kept), else the stored spec as YAML."""
    from .console import spec_source
    from .studies import get_study

    with _tx() as s:
        text, _ = spec_source(get_study(s, args.slug))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote the spec of '{args.slug}' to {args.out}")
    else:
        sys.stdout.write(text)


def cmd_study_list(args: argparse.Namespace) -> None:
    from .studies import list_studies

    with _tx() as s:
        rows = list_studies(s, include_superseded=args.all)
    if not rows:
        print("no studies yet: `python -m lab study load studies/demo.yaml`")
        return
    print(f"{'slug':<24} {'ver':>3} {'status':<10} {'people':>6} {'done':>5} {'convs':>6}  title")
    for r in rows:
        print(f"{r.slug:<24} {r.version:>3} {r.status:<10} {r.participants:>6} {r.completed:>5} {r.sessions:>6}  {r.title}")


def cmd_import(args: argparse.Namespace) -> None:
    from .items import IMPORTERS, write_items

    if args.dataset == "bundle":
        from .bundle import import_bundle

        r = import_bundle(_engine(), args.path)
        print(f"imported study '{r.slug}': " + ", ".join(f"{n} {t}" for t, n in r.rows.items()))
        return
    if not args.out:
        raise CommandError("--out is required when importing a dataset")
    options = {}
    if getattr(args, "spider_databases", None):
        if args.dataset != "lost-in-conversation":
            raise CommandError("--spider-databases applies to lost-in-conversation only")
        options["spider_databases"] = args.spider_databases
    report = IMPORTERS[args.dataset].read(args.path, **options)
    n = write_items(report.items, args.out)
    for line in report.skipped[:20]:
        print(f"skipped {line}", file=sys.stderr)
    if len(report.skipped) > 20:
        print(f"… and {len(report.skipped) - 20} more skipped", file=sys.stderr)
    for line in report.notes[:20]:
        print(f"note {line}", file=sys.stderr)
    if len(report.notes) > 20:
        print(f"… and {len(report.notes) - 20} more notes", file=sys.stderr)
    unscorable = sum(1 for item in report.items if "needs-database" in item.tags)
    if unscorable:
        print(
            f"note: {unscorable} database item(s) have no Spider database and are tagged needs-database: their answers will"
            " not be scored (import with --spider-databases DIR to score them)",
            file=sys.stderr,
        )
    print(f"wrote {n} items to {args.out}" + (f" ({report.summary()})" if hasattr(report, "summary") else ""))


def cmd_user_add(args: argparse.Namespace) -> None:
    from .accounts import create_account

    password = load_settings().password
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise CommandError("the passwords differ")
    elif not password:
        raise CommandError("no password: set LAB_PASSWORD when stdin is not a terminal")
    with _tx() as s:
        account = create_account(s, args.name, args.role, password)
        print(f"account '{account.username}' ({account.role}) created")


# --- task scores (lab.scoring) ---------------------------------------------------------


def cmd_score(args: argparse.Namespace) -> None:
    """Score the last answer attempt of every conversation of a study with the current evaluators."""
    from .scoring import score_study

    r = score_study(_engine(), args.slug, only_missing=args.only_missing, judge=args.judge)
    skipped = f" ({r.skipped} already scored by the current evaluators)" if r.skipped else ""
    print(f"scored {r.scored} of {r.conversations} conversations{skipped}")
    for family, values in sorted(r.by_family.items()):
        print(f"  {family:<12} {len(values):>5} scored, mean {sum(values) / len(values):.3f}")
    for reason, n in r.not_scored.most_common():
        print(f"  not scored: {n} {reason}")
    if r.without_gold:
        print(
            f"  left out: {r.without_gold} conversation(s) on items with nothing to score against "
            "(no answer rule or task gold: presupposition, open and clarification items without an answer)"
        )


def register_score(sub: Any) -> None:
    """Add ``score`` to the command parser."""
    sp = sub.add_parser("score", help="score every conversation's last answer attempt (again, after an evaluator changes)")
    sp.add_argument("slug")
    sp.add_argument("--only-missing", action="store_true", help="leave conversations already scored by the current evaluators")
    sp.add_argument("--judge", metavar="MODEL", help="judge model for summaries (default: the spec's judge model)")
    sp.set_defaults(func=cmd_score)


# --- annotation: codebook, assignment, progress, agreement ------------------------------------


def cmd_codebook(args: argparse.Namespace) -> None:
    """Print the codebook, or one layer of it, or a study's."""
    from .codebook import base_codebook, format_codebook

    book = base_codebook()
    if args.study:
        from .annotation import study_annotation

        with _tx() as s:
            book = study_annotation(s, args.study).codebook
    print(format_codebook(book, args.layer))


def cmd_annotate_assign(args: argparse.Namespace) -> None:
    """Assign annotators to a study and place its conversations."""
    from .annotation import assign, progress

    with _tx() as s:
        rows = assign(s, args.slug, args.annotators.split(","), args.per_conversation)
        p = progress(s, args.slug)
    seeing = sum(r.sees_prelabels for r in rows)
    print(
        f"study '{args.slug}': {len(rows)} annotators, {rows[0].per_conversation} per conversation; "
        f"{p.placed} of {p.conversations} conversations placed; {seeing} annotator(s) see pre-labels"
    )


def cmd_annotate_progress(args: argparse.Namespace) -> None:
    """Print a study's annotation progress per annotator."""
    from .annotation import progress

    with _tx() as s:
        p = progress(s, args.slug)
    k = p.per_conversation or "–"
    print(f"study '{args.slug}': {p.conversations} conversations in scope, {p.placed} placed, {p.complete} done by {k}")
    head = ("annotator", "convs", "done", "open", "skip", "labels", "checks", "accuracy", "pre-labels")
    print(f"{head[0]:<20} " + " ".join(f"{h:>8}" for h in head[1:]))
    for a in p.annotators:
        acc = f"{a.accuracy:.0%}" if a.accuracy is not None else "–"
        pre = "shown" if a.sees_prelabels else "hidden"
        cells = (a.conversations, a.done, a.claimed, a.skipped, a.labels, a.checks, acc, pre)
        print(f"{a.username:<20} " + " ".join(f"{c:>8}" for c in cells))


def cmd_agreement(args: argparse.Namespace) -> None:
    """Print a study's agreement figures and adjudication change rates."""
    from .adjudication import change_rate
    from .agreement import format_rows, study_agreement

    with _tx() as s:
        layers = [args.layer] if args.layer else None
        rows = study_agreement(s, args.slug, layers, per_code=not args.overall, bootstrap=args.bootstrap)
        rates = [change_rate(s, args.slug, r) for r in sorted({r.layer for r in rows})] if args.format == "table" else []
    print(format_rows(rows, args.format), end="" if args.format == "csv" else "\n")
    for r in rates:
        if r.adjudicated:
            rate = f"{r.rate:.0%}" if r.rate is not None else "–"
            print(
                f"adjudication {r.layer}: {r.adjudicated} turns decided; "
                f"gold differs from the human majority on {r.changed} of {r.with_majority} ({rate})"
            )


def cmd_preferences(args: argparse.Namespace) -> None:
    """Print how far annotators agree on a study's blind reply comparisons."""
    import json
    from dataclasses import asdict

    from .agreement import format_rows
    from .preference import format_agreement, preference_agreement

    with _tx() as s:
        found = preference_agreement(s, args.slug, bootstrap=args.bootstrap)
    if args.format == "table":
        print(format_agreement(found))
    elif args.format == "csv":
        print(format_rows(found.rows, "csv"), end="")
    else:
        counts = {k: v for k, v in asdict(found).items() if k != "rows"}
        print(json.dumps(counts | {"rows": json.loads(format_rows(found.rows, "json"))}, indent=2))


def _register_annotation(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("codebook", help="print the annotation codebook (layers G, R, P, S)")
    sp.add_argument("--layer", choices=["G", "R", "P", "S"], help="one layer only")
    sp.add_argument("--study", help="a study's codebook: its layers and added codes")
    sp.set_defaults(func=cmd_codebook)
    ann = sub.add_parser("annotate", help="assign annotators to a study and follow their progress")
    asub = ann.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")
    sp = asub.add_parser("assign", help="assign annotator accounts and place the study's conversations")
    sp.add_argument("slug")
    sp.add_argument("--annotators", required=True, help="comma-separated usernames, e.g. ada,bo")
    sp.add_argument(
        "--per-conversation", type=int, default=None, help="distinct annotators per conversation (default: annotators_per_turn)"
    )
    sp.set_defaults(func=cmd_annotate_assign)
    sp = asub.add_parser("progress", help="progress per annotator, with gold-check accuracy")
    sp.add_argument("slug")
    sp.set_defaults(func=cmd_annotate_progress)
    sp = sub.add_parser("agreement", help="inter-annotator agreement of a study (raw, κ, α, AC1 with 95%% intervals)")
    sp.add_argument("slug")
    sp.add_argument("--layer", choices=["G", "R", "P", "S"], help="one layer only")
    sp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sp.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals (0: none)")
    sp.add_argument("--overall", action="store_true", help="only the all-codes rows, not one row per code")
    sp.set_defaults(func=cmd_agreement)
    sp = sub.add_parser(
        "preferences",
        help="agreement of annotators' blind choices between two replies at a point (raw, κ, α, AC1 over A/B/tie)",
    )
    sp.add_argument("slug")
    sp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sp.add_argument("--bootstrap", type=int, default=1000, help="resamples of points for the 95%% intervals (0: none)")
    sp.set_defaults(func=cmd_preferences)


class LabParser(argparse.ArgumentParser):
    """An argument parser that accepts no abbreviated option (``--repeat`` is not ``--repeats``).

    Sub-commands are made with the parent's class, so every parser of the command line is
    one of these.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def _register_core(sub: argparse._SubParsersAction) -> None:
    """``migrate``, ``init``, ``study``, ``import`` and ``user``."""
    sp = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    sp.set_defaults(func=cmd_migrate)
    sp = sub.add_parser("init", help="migrate, load and open the demo study in an empty database, show how to sign in")
    sp.set_defaults(func=cmd_init)

    study = sub.add_parser("study", help="validate, load, open, pause, close and list studies")
    ssub = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    sp = ssub.add_parser("validate", help="check a spec file; nothing is written")
    sp.add_argument("file")
    sp.set_defaults(func=cmd_study_validate)
    sp = ssub.add_parser("load", help="store a spec (a changed spec on a study with data becomes a new version)")
    sp.add_argument("file")
    sp.set_defaults(func=cmd_study_load)
    helps = {
        "open": "open the newest version of a study (its models are checked first; an open study stays open)",
        "pause": "pause the newest version of a study: no new participants until it is opened again",
        "close": "close the newest version of a study for good (asks first; --yes to skip): it cannot be reopened",
    }
    for action, text in helps.items():
        sp = ssub.add_parser(action, help=text)
        sp.add_argument("slug")
        if action == "close":
            sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        sp.set_defaults(func=cmd_study_status, action=action)
    sp = ssub.add_parser("export", help="the newest version's spec as written (comments kept), to stdout or --out")
    sp.add_argument("slug")
    sp.add_argument("--out", help="file to write instead of printing")
    sp.set_defaults(func=cmd_study_export)
    sp = ssub.add_parser("list", help="studies with status and counts")
    sp.add_argument("--all", action="store_true", help="include superseded versions")
    sp.set_defaults(func=cmd_study_list)

    sp = sub.add_parser("import", help="convert a published dataset into a lab item file (JSONL), or load an exported bundle")
    # The names of lab.items.IMPORTERS, written out: importing the item modules to list them
    # would add most of a second to every command (tests/test_extending.py keeps them equal).
    sp.add_argument("dataset", choices=["lost-in-conversation", "falseqa", "clamber", "bundle"])
    sp.add_argument("path")
    sp.add_argument("--out", help="item file to write (datasets)")
    sp.add_argument(
        "--spider-databases",
        metavar="DIR",
        help="lost-in-conversation: the Spider databases folder (DIR/<db_id>/<db_id>.sqlite), to score database answers",
    )
    sp.set_defaults(func=cmd_import)

    user = sub.add_parser("user", help="staff accounts")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    sp = usub.add_parser("add", help="add an account (password from a prompt, or LAB_PASSWORD without a terminal)")
    sp.add_argument("name")
    sp.add_argument("--role", required=True, choices=ROLES)
    sp.set_defaults(func=cmd_user_add)


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Every command group's ``register(sub)``, in the order ``--help`` lists them.

    A new command group adds its ``register`` here.
    """
    from . import branch_command, links, report, simulate, split, terminal
    from .export import _cli as export_cli
    from .judge import _cli as judge_cli
    from .train import _cli as train_cli

    return [
        _register_core,
        judge_cli.register,
        export_cli.register,
        report.register,
        terminal.register,
        simulate.register,
        split.register,
        branch_command.register,
        links.register,
        train_cli.register,
        register_score,
        _register_annotation,
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (exposed for the docs test)."""
    p = LabParser(prog="python -m lab", description="Repair Lab: studies of conversational repair.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return p


def _debug() -> bool:
    try:
        return load_settings().debug
    except SettingError:
        return False


def _report(error: BaseException) -> int:
    """Print one line for an error of a command; returns the exit code."""
    from sqlalchemy.exc import SQLAlchemyError

    if _debug():
        traceback.print_exception(error)
    if isinstance(error, SQLAlchemyError):
        from .db import explain

        explained = explain(error)
        if explained is not None:
            error = explained
    if isinstance(error, LabError):
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"error: unexpected {type(error).__name__}: {error} (a bug: LAB_DEBUG=1 shows where)", file=sys.stderr)
    return 2


def _quiet_broken_pipe() -> None:
    """Send the rest of the output nowhere: the reader (``| head``) has stopped reading."""
    # Python flushes stdout again at exit; pointing its descriptor at /dev/null keeps that quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # a captured stdout (tests) has no descriptor to redirect


class ReaderSafeOutput:
    """Standard output that outlives its reader: once a pipe's reader has gone, writes are dropped.

    ``python -m lab init | head -1`` must still set the database up: a command that fails
    on its first print after ``head`` exits would roll back what it was doing.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        """Write unless the reader has gone."""
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        """Flush unless the reader has gone."""
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self._gone = True
        _quiet_broken_pipe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    try:
        load_settings()  # reads .env first: commands and their defaults see its variables
    except SettingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _report(e)
    return 0


def entry() -> int:
    """``python -m lab``: :func:`main` with an output that survives a reader closing the pipe."""
    sys.stdout = ReaderSafeOutput(sys.stdout)
    return main()
