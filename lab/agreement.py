"""Inter-annotator agreement: raw agreement, Cohen's κ, Krippendorff's α (nominal) and Gwet's AC1.

Every figure comes with the number of units it rests on and a bootstrap 95 % interval that
resamples conversations (a cluster bootstrap: the turns of a conversation are drawn
together, since they are not independent), per layer and code; without conversations given,
it resamples units. α and κ are computed from coincidence and confusion sums, and checked
against the ``krippendorff`` and ``scikit-learn`` packages (``library_check=True`` takes
the point estimates from them; the tests compare both on random data); AC1 and raw
agreement follow Gwet (2014), *Handbook of Inter-Rater Reliability*, for any number of
raters with missing ratings. The tests check all four against published worked examples
and against a second, plain implementation.

The bootstrap needs the same figures thousands of times, so each measure is written as a
function of per-unit sums (for α the unit's coincidences, for AC1 its category shares, for
κ its joint category of each coder pair). Units with the same sums are interchangeable, so
a resample is a multinomial draw over the distinct unit patterns: the interval costs no
more for 100,000 units than for 100. With conversations, each conversation's sums are its
units' sums, and a resample is a multinomial draw over conversations.

Comparisons, per layer and per code (one code against the rest):

- ``humans``: all human annotators together (κ is Light's κ, the mean of Cohen's κ over
  pairs of annotators who share units);
- ``<annotator> vs gold``: each human against the adjudicated label;
- ``auto:<judge> vs majority``: each automatic judge against the human majority.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

MEASURES: tuple[str, ...] = ("raw", "kappa", "alpha", "ac1")
"""Measures in report order."""
RELIABLE = 0.8
TENTATIVE = 0.667
"""Krippendorff's conventional bars for α."""
ALL = "(all)"
"""The ``code`` of a row computed over every code of the layer."""
DEFAULT_BOOTSTRAP = 1000

Ratings = dict[Any, dict[str, str]]
"""unit → {coder: code}; a coder absent from a unit did not rate it."""


@dataclass(frozen=True)
class AgreementRow:
    """One figure of the agreement table."""

    comparison: str
    """``humans``, ``<annotator> vs gold`` or ``auto:<judge> vs majority``."""
    layer: str
    code: str
    """A code (that code against the rest) or ``(all)``."""
    measure: str
    """raw, kappa, alpha or ac1."""
    value: float | None
    """None when the measure is undefined (too few units, or no variation)."""
    low: float | None
    high: float | None
    """Bootstrap 95 % interval over units."""
    units: int
    """Units rated by at least two of the coders compared."""

    @property
    def verdict(self) -> str:
        """Verdict for α: reliable (≥ 0.8), tentative (0.667–0.8) or unreliable, for α; empty otherwise."""
        if self.measure != "alpha" or self.value is None:
            return ""
        return "reliable" if self.value >= RELIABLE else "tentative" if self.value >= TENTATIVE else "unreliable"


# --- per-unit sums ------------------------------------------------------------------------------


def _counts(ratings: Ratings, coders: list[str], cats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(units × coders) category index with -1 for missing, and (units × categories) counts."""
    index = {c: i for i, c in enumerate(cats)}
    units = list(ratings)
    codes = np.full((len(units), len(coders)), -1, dtype=np.int64)
    cpos = {c: j for j, c in enumerate(coders)}
    for i, u in enumerate(units):
        for coder, code in ratings[u].items():
            if coder in cpos and code in index:
                codes[i, cpos[coder]] = index[code]
    n = np.zeros((len(units), len(cats)))
    for j in range(len(coders)):
        rated = codes[:, j] >= 0
        np.add.at(n, (np.nonzero(rated)[0], codes[rated, j]), 1)
    return codes, n


def _alpha_parts(n: np.ndarray) -> np.ndarray:
    """Per unit: the diagonal of its coincidence matrix, then its pairable values per category."""
    r = n.sum(axis=1, keepdims=True)
    pairable = r >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        diag = np.where(pairable, n * (n - 1) / np.maximum(r - 1, 1), 0.0)
    return np.hstack([diag, np.where(pairable, n, 0.0)])


def _alpha_from(sums: np.ndarray, q: int) -> np.ndarray:
    diag, nc = sums[..., :q], sums[..., q:]
    total = nc.sum(axis=-1)
    observed = total - diag.sum(axis=-1)
    expected = total**2 - (nc**2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1 - (total - 1) * observed / expected
    return np.where((expected > 0) & (total > 1), out, np.nan)


def _ac1_parts(n: np.ndarray) -> np.ndarray:
    """Per unit: pairable, its agreement share, rated, its category shares.

    As Gwet's own ``gwet.ac1.raw`` (R package irrCAC; Gwet 2008, *Br. J. Math. Stat. Psychol.*
    61: 29–48) computes them: p_a averages Σ_k r_ik(r_ik − 1) / (r_i(r_i − 1)) over units rated
    at least twice; π_k averages r_ik / r_i over units rated at least once; p_e = Σ_k π_k(1 − π_k) / (q − 1).
    """
    r = n.sum(axis=1, keepdims=True)
    pairable = (r >= 2).astype(float)
    rated = (r >= 1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.where(r >= 2, (n * (n - 1)).sum(axis=1, keepdims=True) / (r * (r - 1)), 0.0)
        share = np.where(r >= 1, n / np.maximum(r, 1), 0.0)
    return np.hstack([pairable, pa, rated, share])


def _ac1_from(sums: np.ndarray, q: int) -> np.ndarray:
    n2, pa_sum, n1, share = sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3 : 3 + q]
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = pa_sum / n2
        pi = share / n1[..., None]
        pe = (pi * (1 - pi)).sum(axis=-1) / (q - 1)
        out = (pa - pe) / (1 - pe)
    return np.where((n2 > 0) & (pe < 1), out, np.nan)


def _raw_parts(n: np.ndarray) -> np.ndarray:
    """Per unit: agreeing pairs of ratings and all pairs."""
    r = n.sum(axis=1)
    return np.stack([(n * (n - 1) / 2).sum(axis=1), r * (r - 1) / 2], axis=1)


def _raw_from(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], np.nan)


def _kappa_parts(codes: np.ndarray, pairs: list[tuple[int, int]], q: int) -> np.ndarray:
    """Per unit and coder pair: the one-hot joint category (q × q) when both rated it."""
    out = np.zeros((codes.shape[0], len(pairs) * q * q))
    for p, (a, b) in enumerate(pairs):
        both = (codes[:, a] >= 0) & (codes[:, b] >= 0)
        rows = np.nonzero(both)[0]
        out[rows, p * q * q + codes[rows, a] * q + codes[rows, b]] = 1
    return out


def _kappa_from(sums: np.ndarray, n_pairs: int, q: int) -> np.ndarray:
    """Light's κ: the mean over coder pairs (with shared units and variation) of Cohen's κ."""
    shape = sums.shape[:-1]
    joint = sums.reshape(*shape, n_pairs, q, q)
    total = joint.sum(axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        po = np.trace(joint, axis1=-2, axis2=-1) / total
        pe = (joint.sum(axis=-1) * joint.sum(axis=-2)).sum(axis=-1) / total**2
        kappa = np.where((total > 0) & (pe < 1), (po - pe) / (1 - pe), np.nan)
    if not n_pairs:
        return np.full(shape, np.nan)
    defined = np.isfinite(kappa)
    count = defined.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.where(defined, kappa, 0.0).sum(axis=-1) / count, np.nan)


# --- point estimates from the libraries ------------------------------------------------------------


def krippendorff_alpha(ratings: Ratings) -> float | None:
    """Nominal α with the ``krippendorff`` package (None when undefined)."""
    import krippendorff

    coders = sorted({c for codes in ratings.values() for c in codes})
    cats = sorted({v for codes in ratings.values() for v in codes.values()})
    codes, _ = _counts(ratings, coders, cats)
    data = np.where(codes.T >= 0, codes.T.astype(float), np.nan)
    pairable = (codes >= 0).sum(axis=1) >= 2
    if len(cats) < 2 or pairable.sum() == 0:
        return None
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(
                krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=list(range(len(cats))))
            )
    except (ValueError, ZeroDivisionError):
        return None
    return None if np.isnan(value) else value


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's κ of two coders' codes on the same units, with scikit-learn (None when undefined)."""
    from sklearn.metrics import cohen_kappa_score  # type: ignore[import-untyped]  # scikit-learn ships no type information

    if not a or len(set(a) | set(b)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(cohen_kappa_score(a, b))
    return None if np.isnan(value) else value


def gwet_ac1(ratings: Ratings, categories: list[str] | None = None) -> float | None:
    """Gwet's AC1 for any number of raters with missing ratings (None when undefined).

    Args:
        ratings: unit → {coder: code}.
        categories: Every category that could be chosen (default: those observed).
    """
    cats = categories or sorted({v for codes in ratings.values() for v in codes.values()})
    if len(cats) < 2:
        return None
    coders = sorted({c for codes in ratings.values() for c in codes})
    _, n = _counts(ratings, coders, cats)
    value = float(_ac1_from(_ac1_parts(n).sum(axis=0), len(cats)))
    return None if np.isnan(value) else value


def raw_agreement(ratings: Ratings) -> float | None:
    """Share of agreeing pairs of ratings among all pairs within units (None without pairs)."""
    cats = sorted({v for codes in ratings.values() for v in codes.values()})
    coders = sorted({c for codes in ratings.values() for c in codes})
    _, n = _counts(ratings, coders, cats)
    value = float(_raw_from(_raw_parts(n).sum(axis=0)))
    return None if np.isnan(value) else value


# --- one comparison, every code, with intervals ---------------------------------------------------------


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def compare(
    ratings: Ratings,
    *,
    comparison: str,
    layer: str,
    categories: list[str] | None = None,
    per_code: bool = True,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    library_check: bool = False,
    clusters: dict[Any, Any] | None = None,
) -> list[AgreementRow]:
    """All four measures on one set of ratings, over all codes and per code, with intervals.

    Args:
        ratings: unit → {coder: code}.
        comparison: Name of the comparison for the rows.
        layer: The layer for the rows.
        categories: The layer's codes (AC1 counts every possible code); default the observed ones.
        per_code: Add one-against-the-rest rows for each observed code.
        bootstrap: Resamples of units for the intervals (0: no intervals).
        seed: Seeds the resampling, so figures repeat exactly.
        library_check: Take the point estimates of α and κ from ``krippendorff`` and
            ``scikit-learn`` instead (slower; the tests check both give the same figures).
        clusters: unit → its conversation; the intervals then resample conversations.
    """
    ratings = {u: codes for u, codes in ratings.items() if codes}
    observed = sorted({v for codes in ratings.values() for v in codes.values()})
    cats = list(categories) if categories else observed
    cats += [c for c in observed if c not in cats]
    coders = sorted({c for codes in ratings.values() for c in codes})
    if not ratings or len(coders) < 2:
        return []
    all_codes, _ = _counts(ratings, coders, cats)
    libs = _library_points(ratings, coders, cats, observed, per_code) if library_check else {}
    cluster_of = None
    if clusters is not None:
        cluster_of = np.unique(np.array([str(clusters.get(u, u)) for u in ratings]), return_inverse=True)[1]
    return compare_codes(
        all_codes,
        coders,
        cats,
        comparison=comparison,
        layer=layer,
        per_code=per_code,
        bootstrap=bootstrap,
        seed=seed,
        libs=libs,
        clusters=cluster_of,
    )


def compare_codes(
    all_codes: np.ndarray,
    coders: list[str],
    cats: list[str],
    *,
    comparison: str,
    layer: str,
    per_code: bool = True,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    libs: dict[tuple[str, str], float | None] | None = None,
    clusters: np.ndarray | None = None,
) -> list[AgreementRow]:
    """:func:`compare` on a (units × coders) matrix of category indexes, -1 where a coder did not rate.

    Args:
        all_codes: One row per unit; rows without any rating are ignored.
        coders: Column names.
        cats: Category names the indexes refer to.
        comparison: Name of the comparison for the rows.
        layer: The layer for the rows.
        per_code: Add one-against-the-rest rows for each observed code.
        bootstrap: Resamples of units for the intervals (0: no intervals).
        seed: Seeds the resampling.
        libs: Point estimates to use instead of the computed ones, by (code, measure).
        clusters: The conversation of each unit (row); the intervals then resample
            conversations with all their units instead of units.
    """
    libs = libs or {}
    rated = (all_codes >= 0).any(axis=1)
    all_codes = all_codes[rated]
    if clusters is not None:
        clusters = np.unique(np.asarray(clusters)[rated], return_inverse=True)[1]
    if len(all_codes) == 0 or len(coders) < 2:
        return []
    observed = {cats[i] for i in np.unique(all_codes[all_codes >= 0])}
    # A unit's codes per coder determine all its sums: work on the distinct patterns, weighted.
    codes, pattern_of, counts = np.unique(all_codes, axis=0, return_inverse=True, return_counts=True)
    _, n = _counts({i: {coders[j]: cats[c] for j, c in enumerate(row) if c >= 0} for i, row in enumerate(codes)}, coders, cats)
    pairs = [(a, b) for a, b in combinations(range(len(coders)), 2) if ((codes[:, a] >= 0) & (codes[:, b] >= 0)).any()]
    pairable = int(counts[(codes >= 0).sum(axis=1) >= 2].sum())
    blocks = _blocks(codes, n, pairs, cats, observed if per_code else set())
    x = np.hstack([b[2] for b in blocks])
    widths = np.cumsum([0] + [b[2].shape[1] for b in blocks])
    point = counts @ x
    intervals: list[tuple[float | None, float | None]] = [(None, None)] * len(blocks)
    if bootstrap > 0:
        sums = _bootstrap_sums(x, counts, pattern_of, clusters, bootstrap, seed)
        intervals = []
        for i, (_, _, _, fn) in enumerate(blocks):
            values = fn(sums[:, widths[i] : widths[i + 1]])
            values = values[np.isfinite(values)]
            intervals.append(
                (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))) if len(values) else (None, None)
            )
    rows = []
    for i, (code, measure, _, fn) in enumerate(blocks):
        value = libs.get((code, measure), _finite(float(fn(point[widths[i] : widths[i + 1]]))))
        low, high = intervals[i]
        rows.append(
            AgreementRow(
                comparison,
                layer,
                code,
                measure,
                value,
                low if value is not None else None,
                high if value is not None else None,
                pairable,
            )
        )
    return rows


Block = tuple[str, str, np.ndarray, Any]
"""One figure of the table: (code, measure, its parts per pattern, the figure as a function of summed parts)."""


def _blocks(codes: np.ndarray, n: np.ndarray, pairs: list[tuple[int, int]], cats: list[str], split: set[str]) -> list[Block]:
    """Raw agreement, κ, α and AC1 over all codes, then one against the rest for each code in ``split``."""
    blocks: list[Block] = []

    def add(code: str, n_: np.ndarray, codes_: np.ndarray, q: int) -> None:
        blocks.append((code, "raw", _raw_parts(n_), _raw_from))
        blocks.append((code, "kappa", _kappa_parts(codes_, pairs, q), lambda x, q=q: _kappa_from(x, len(pairs), q)))
        blocks.append((code, "alpha", _alpha_parts(n_), lambda x, q=q: _alpha_from(x, q)))
        blocks.append((code, "ac1", _ac1_parts(n_), lambda x, q=q: _ac1_from(x, q)))

    add(ALL, n, codes, len(cats))
    for ci, cat in enumerate(cats):
        if cat not in split:
            continue
        binary = np.where(codes < 0, -1, (codes == ci).astype(np.int64))
        nb = np.stack([n.sum(axis=1) - n[:, ci], n[:, ci]], axis=1)
        add(cat, nb, binary, 2)
    return blocks


def _bootstrap_sums(
    x: np.ndarray, counts: np.ndarray, pattern_of: np.ndarray, clusters: np.ndarray | None, bootstrap: int, seed: int
) -> np.ndarray:
    """The summed parts (draws × columns of ``x``) of ``bootstrap`` resamples of units or of conversations.

    Args:
        x: The parts of each distinct pattern of codes (patterns × columns).
        counts: How many units have each pattern.
        pattern_of: Each unit's pattern.
        clusters: Each unit's conversation (then whole conversations are resampled), or None.
        bootstrap: Resamples.
        seed: Seeds the resampling.
    """
    rng = np.random.default_rng(seed)
    if clusters is None:
        draws = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=bootstrap).astype(float)
        return draws @ x
    # Conversations × patterns counts, so each conversation's sums are one matrix product.
    n_clusters, n_patterns = int(clusters.max()) + 1, len(counts)
    per = np.bincount(clusters * n_patterns + pattern_of.ravel(), minlength=n_clusters * n_patterns)
    per = per.reshape(n_clusters, n_patterns).astype(float)
    picks = rng.integers(0, n_clusters, size=(bootstrap, n_clusters)) + (np.arange(bootstrap) * n_clusters)[:, None]
    draws = np.bincount(picks.ravel(), minlength=bootstrap * n_clusters).reshape(bootstrap, n_clusters)
    draws = draws.astype(np.float32)
    # Single precision halves the cost of draws × conversations × columns; the sums are
    # counts and shares far below 2**24, and only their percentiles are used.
    return (draws @ (per @ x).astype(np.float32)).astype(float)


def _library_points(
    ratings: Ratings, coders: list[str], cats: list[str], observed: list[str], per_code: bool
) -> dict[tuple[str, str], float | None]:
    """α from ``krippendorff`` and κ from ``scikit-learn`` for the table's point estimates."""
    out: dict[tuple[str, str], float | None] = {}
    targets: list[tuple[str, Ratings]] = [(ALL, ratings)]
    if per_code:
        targets += [
            (c, {u: {k: ("1" if v == c else "0") for k, v in codes.items()} for u, codes in ratings.items()}) for c in observed
        ]
    for code, data in targets:
        out[(code, "alpha")] = krippendorff_alpha(data)
        kappas = []
        for a, b in combinations(coders, 2):
            shared = [u for u, codes in data.items() if a in codes and b in codes]
            if shared:
                k = cohen_kappa([data[u][a] for u in shared], [data[u][b] for u in shared])
                if k is not None:
                    kappas.append(k)
        out[(code, "kappa")] = float(np.mean(kappas)) if kappas else None
    return out


# --- a study's agreement table -----------------------------------------------------------------------------


def study_agreement(
    s: Session,
    slug: str,
    layers: Iterable[str] | None = None,
    *,
    per_code: bool = True,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> list[AgreementRow]:
    """Every agreement figure of a study: humans together, each human vs gold, each judge vs the human majority.

    The human majority of a turn is its strictly most frequent human code (a tie is none).

    Raises:
        AnnotationError: for a layer the study does not use.
    """
    from .annotation import AUTO_PREFIX, GOLD, study_annotation

    sa = study_annotation(s, slug)
    rows: list[AgreementRow] = []
    for layer in layers or sa.layers:
        sa.used_layer(layer)
        turn_ids, annotators, labels, sessions = _current_labels(s, sa.study_ids, layer)
        if len(turn_ids) == 0:
            continue
        cats = sa.codebook.layer(layer).code_names()
        cats += sorted(set(labels.tolist()) - set(cats))
        units, unit_of = np.unique(turn_ids, return_inverse=True)
        conversation = np.zeros(len(units), dtype=np.int64)
        conversation[unit_of] = sessions
        index = {c: i for i, c in enumerate(cats)}
        code_of = np.array([index[c] for c in labels.tolist()], dtype=np.int64)
        is_auto = np.char.startswith(annotators.astype(str), AUTO_PREFIX)
        is_gold = annotators == GOLD
        human = ~is_auto & ~is_gold
        names = sorted(set(annotators[human]))

        opts: dict[str, Any] = {"layer": layer, "per_code": per_code, "bootstrap": bootstrap, "seed": seed}
        columns = [_column(len(units), unit_of, code_of, human & (annotators == h)) for h in names]
        matrix = np.stack(columns, axis=1) if names else np.empty((len(units), 0), np.int64)
        rows += compare_codes(matrix, names, cats, comparison="humans", clusters=conversation, **opts)
        gold = _column(len(units), unit_of, code_of, is_gold)
        for j, h in enumerate(names):
            both = (matrix[:, j] >= 0) & (gold >= 0)
            rows += compare_codes(
                np.stack([matrix[both, j], gold[both]], axis=1),
                [h, GOLD],
                cats,
                comparison=f"{h} vs gold",
                clusters=conversation[both],
                **opts,
            )
        counts = np.zeros((len(units), len(cats)))
        np.add.at(counts, (unit_of[human], code_of[human]), 1)
        top = counts.argmax(axis=1)
        ordered = np.sort(counts, axis=1)
        second = ordered[:, -2] if len(cats) > 1 else np.zeros(len(units))
        majority = np.where((ordered[:, -1] > 0) & (ordered[:, -1] > second), top, -1)
        for judge in sorted(set(annotators[is_auto])):
            auto = _column(len(units), unit_of, code_of, is_auto & (annotators == judge))
            both = (auto >= 0) & (majority >= 0)
            pair = np.stack([auto[both], majority[both]], axis=1)
            rows += compare_codes(
                pair, [judge, "majority"], cats, comparison=f"{judge} vs majority", clusters=conversation[both], **opts
            )
    return rows


def _column(n_units: int, unit_of: np.ndarray, code_of: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One coder's category index per unit (-1 where the rows in ``mask`` do not rate it)."""
    col = np.full(n_units, -1, dtype=np.int64)
    col[unit_of[mask]] = code_of[mask]
    return col


def _current_labels(s: Session, study_ids: tuple[int, ...], layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Current labels of one layer as arrays (turn ids, annotators, codes, conversations): the newest per turn and annotator."""
    from sqlalchemy import select

    from .schema import ChatSession, Label, Turn, participant_conversation

    # Plain driver tuples: SQLAlchemy's per-row objects are most of the cost for 100,000s of labels.
    result = s.connection().execute(
        select(Label.turn_id, Label.annotator, Label.code, Turn.session_id)
        .join(Turn, Turn.id == Label.turn_id)
        .join(ChatSession, ChatSession.id == Turn.session_id)
        .where(ChatSession.study_id.in_(study_ids), participant_conversation(), Label.layer == layer)
        .order_by(Label.id)
    )
    try:
        rows = result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()
    if not rows:
        return np.empty(0, np.int64), np.empty(0, object), np.empty(0, object), np.empty(0, np.int64)
    tids, who_col, code_col, session_col = zip(*rows, strict=True)
    turn_ids = np.array(tids, dtype=np.int64)
    annotators = np.array(who_col, dtype=object)
    codes = np.array(code_col, dtype=object)
    names, who = np.unique(annotators.astype(str), return_inverse=True)
    key = turn_ids * len(names) + who
    # Rows are in label order, so the last row of each (turn, annotator) is the current label.
    _, last = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(key) - 1 - last)
    return turn_ids[keep], annotators[keep], codes[keep], np.array(session_col, dtype=np.int64)[keep]


def confusion(ratings: Ratings) -> list[tuple[str, str, float]]:
    """Coincidence counts of codes between annotators: (code, code, pairs), both orders counted.

    Each unit's ordered pairs of different annotators' codes count ``1 / (m - 1)`` (Krippendorff's
    coincidence matrix), so every rating adds one in total and the matrix is symmetric.
    """
    cells: dict[tuple[str, str], float] = {}
    for codes in ratings.values():
        values = list(codes.values())
        m = len(values)
        if m < 2:
            continue
        for i in range(m):
            for j in range(m):
                if i != j:
                    key = (values[i], values[j])
                    cells[key] = cells.get(key, 0.0) + 1 / (m - 1)
    return sorted((a, b, round(v, 6)) for (a, b), v in cells.items())


def format_rows(rows: list[AgreementRow], fmt: str = "table") -> str:
    """The agreement rows as a text table, CSV or JSON."""
    if fmt == "json":
        return json.dumps([asdict(r) | {"verdict": r.verdict} for r in rows], indent=2)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["comparison", "layer", "code", "measure", "value", "low", "high", "units", "verdict"])
        for r in rows:
            w.writerow([r.comparison, r.layer, r.code, r.measure, _fmt(r.value), _fmt(r.low), _fmt(r.high), r.units, r.verdict])
        return buf.getvalue()
    if not rows:
        return "no units rated by two or more annotators yet"
    lines = [
        f"{'comparison':<28} {'layer':<5} {'code':<22} {'measure':<7} {'value':>7}  {'95% interval':<17} {'units':>6}  verdict"
    ]
    for r in rows:
        interval = f"[{_fmt(r.low)}, {_fmt(r.high)}]" if r.low is not None else "–"
        value = _fmt(r.value) or "–"
        lines.append(
            f"{r.comparison:<28} {r.layer:<5} {r.code:<22} {r.measure:<7} {value:>7}  {interval:<17} {r.units:>6}  {r.verdict}"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"
