"""Held-out items: which items of a study may train a model and which are kept to evaluate it.

``python -m lab split SLUG --heldout 0.3 --seed 0`` draws a share of a study's items (all
versions of its slug, by item id) for evaluation, stratified by task family (the scoring
family, else the item kind), and stores the draw in ``item_split``. Training exports leave
held-out items out and say how many; ``simulate --split heldout`` runs only those items, to
evaluate a model tuned on the rest. Each stratum holds out ``round(share × size)`` items,
at least one when the stratum has two or more, so every family is evaluated.

Some source datasets are published as test sets only (:data:`TEST_ONLY_DATASETS`); their
items never enter a training file unless the experimenter says so explicitly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from .errors import LabError
from .items import parse_item
from .schema import SPLITS, ItemRow, ItemSplit, Study

TEST_ONLY_DATASETS: dict[str, str] = {
    "falseqa": "FalseQA's pairs come from its test split (dataset/test.csv)",
    "clamber": "CLAMBER is released as an evaluation benchmark only",
}
"""Source datasets whose items are for evaluation only, with the reason."""


class SplitError(LabError, ValueError):
    """A split that cannot be made or used, with the reason."""


@dataclass
class SplitResult:
    """A study's split as stored."""

    slug: str
    heldout: float
    seed: int
    by_family: dict[str, dict[str, int]] = field(default_factory=dict)
    """family → {"train": n, "heldout": n}."""
    replaced: bool = False
    """An earlier split was replaced."""

    def format(self) -> str:
        """The split as lines for the terminal."""
        total = {k: sum(v.get(k, 0) for v in self.by_family.values()) for k in SPLITS}
        lines = [
            f"study '{self.slug}': {total['heldout']} of {sum(total.values())} items held out "
            f"(share {self.heldout:g}, seed {self.seed}, stratified by task family)"
        ]
        for family, counts in sorted(self.by_family.items()):
            lines.append(f"  {family:<14} train {counts.get('train', 0):>4}  held out {counts.get('heldout', 0):>4}")
        return "\n".join(lines)


def _family(row: ItemRow) -> str:
    from .scoring import family_of

    try:
        item = parse_item(row.payload, row.key)
    except Exception:  # noqa: BLE001 - an item that no longer parses is still split by its kind
        return row.kind
    return family_of(item) or row.kind


def study_items(s: Session, slug: str) -> dict[str, ItemRow]:
    """Every item id of a study's versions, with its newest row.

    Raises:
        SplitError: no study with that slug.
    """
    rows = s.execute(
        select(ItemRow).join(Study, Study.id == ItemRow.study_id).where(Study.slug == slug).order_by(Study.version)
    ).scalars()
    out = {row.key: row for row in rows}
    if not out and s.scalar(select(Study.id).where(Study.slug == slug)) is None:
        raise SplitError(f"no study with slug '{slug}'")
    return out


def make_split(engine: Engine, slug: str, heldout: float, seed: int = 0, *, replace: bool = False) -> SplitResult:
    """Draw and store a study's held-out items.

    Args:
        engine: The lab database.
        slug: The study.
        heldout: Share of each family's items held out, more than 0 and less than 1.
        seed: Seeds the draw; the same items, share and seed give the same split.
        replace: Replace an existing split (models trained on the old one then saw held-out items).

    Raises:
        SplitError: a bad share, a study without items, or an existing split without ``replace``.
    """
    if not 0 < heldout < 1:
        raise SplitError(f"--heldout must be more than 0 and less than 1 (got {heldout:g})")
    with Session(engine) as s, s.begin():
        items = study_items(s, slug)
        if not items:
            raise SplitError(f"study '{slug}' has no items to split")
        existing = s.scalar(select(ItemSplit.id).where(ItemSplit.study_slug == slug).limit(1))
        if existing is not None and not replace:
            raise SplitError(
                f"study '{slug}' already has a split: pass --replace to draw a new one "
                "(a model trained on the old split has seen some of the new held-out items)"
            )
        s.execute(delete(ItemSplit).where(ItemSplit.study_slug == slug))
        strata: dict[str, list[str]] = defaultdict(list)
        for key, row in items.items():
            strata[_family(row)].append(key)
        result = SplitResult(slug, heldout, seed, replaced=existing is not None)
        for family, keys in sorted(strata.items()):
            keys.sort()
            n = round(heldout * len(keys))
            if len(keys) >= 2:
                n = min(max(n, 1), len(keys) - 1)
            chosen = set(random.Random(f"{seed}:{family}").sample(keys, n))
            for key in keys:
                split = "heldout" if key in chosen else "train"
                s.add(ItemSplit(study_slug=slug, item_key=key, split=split, family=family, heldout=heldout, seed=seed))
                result.by_family.setdefault(family, {"train": 0, "heldout": 0})[split] += 1
        return result


def item_splits(engine: Engine, slug: str) -> dict[str, str]:
    """Item id → ``train`` or ``heldout`` for a study (empty when it has no split)."""
    with engine.connect() as conn:
        rows = conn.execute(select(ItemSplit.item_key, ItemSplit.split).where(ItemSplit.study_slug == slug)).all()
    return {k: v for k, v in rows}


def split_items(engine: Engine, slug: str, split: str) -> list[str]:
    """The ids of a study's items in one split.

    Raises:
        SplitError: an unknown split name, or a study without a split.
    """
    if split not in SPLITS:
        raise SplitError(f"--split must be one of {', '.join(SPLITS)} (got '{split}')")
    found = item_splits(engine, slug)
    if not found:
        raise SplitError(f"study '{slug}' has no split yet: run `python -m lab split {slug} --heldout 0.3` first")
    return sorted(k for k, v in found.items() if v == split)


def evaluation_only_items(engine: Engine, slug: str) -> dict[str, str]:
    """Item id → source dataset, for a study's items from a dataset published for testing only."""
    with Session(engine) as s:
        return {
            key: row.source_dataset
            for key, row in study_items(s, slug).items()
            if row.source_dataset and row.source_dataset.lower() in TEST_ONLY_DATASETS
        }


def cmd_split(args: Any) -> None:
    """``python -m lab split``: draw and store the held-out items."""
    from .db import get_engine

    engine = get_engine()
    result = make_split(engine, args.slug, args.heldout, args.seed, replace=args.replace)
    print(result.format())
    flagged = evaluation_only_items(engine, args.slug)
    if flagged:
        names = ", ".join(sorted(set(flagged.values())))
        print(
            f"note: {len(flagged)} item(s) come from datasets published for testing only ({names}); "
            "training files leave them out whatever their split unless --allow-test-items is given"
        )


def register(sub: Any) -> None:
    """Add ``split`` to the command line."""
    sp = sub.add_parser(
        "split",
        help="hold out a share of a study's items for evaluation (stratified by task family); training files leave them out",
    )
    sp.add_argument("slug")
    sp.add_argument("--heldout", type=float, default=0.3, metavar="SHARE", help="share of each family held out (default 0.3)")
    sp.add_argument("--seed", type=int, default=0, help="seeds the draw (default 0)")
    sp.add_argument("--replace", action="store_true", help="replace an existing split")
    sp.set_defaults(func=cmd_split)
