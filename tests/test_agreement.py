"""Agreement figures against published worked examples and against a second, plain implementation."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations, permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from lab.agreement import (
    ALL,
    cohen_kappa,
    compare,
    format_rows,
    gwet_ac1,
    krippendorff_alpha,
    raw_agreement,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: four observers,
# twelve units, values 1–5 with missing data. The same table is Gwet's (2014) handbook data
# ("cac.raters" in his irrCAC package).
KRIPPENDORFF_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def by_unit(table: list[list[object]]) -> dict[int, dict[str, str]]:
    return {u: {f"obs{j}": str(row[u]) for j, row in enumerate(table) if row[u] is not None} for u in range(len(table[0]))}


def test_krippendorff_published_examples() -> None:
    # Example A: two observers, binary, ten units: α = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert round(krippendorff_alpha(by_unit([a, b])), 3) == 0.095  # type: ignore[arg-type]
    # Example B: two observers, nominal a–e, twelve units: α = 0.692.
    a2 = "a a b b d c c c e d d a".split()
    b2 = "b a b b b c c c e d d d".split()
    assert round(krippendorff_alpha(by_unit([a2, b2])), 3) == 0.692  # type: ignore[arg-type]
    # Example C: nominal α = 0.743 with missing data.
    assert round(krippendorff_alpha(by_unit(KRIPPENDORFF_C)), 3) == 0.743  # type: ignore[arg-type]


def test_gwet_handbook_example() -> None:
    # Gwet's irrCAC on cac.raters: AC1 = 0.77544 (pa 0.81818, pe 0.19032), α = 0.74342.
    ratings = by_unit(KRIPPENDORFF_C)
    assert gwet_ac1(ratings) == pytest.approx(0.77544, abs=5e-6)
    assert krippendorff_alpha(ratings) == pytest.approx(0.74342, abs=5e-6)


def test_cohen_textbook_example() -> None:
    # 50 cases: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → po 0.7, pe 0.5, κ = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


# --- a second implementation, written for clarity, not speed ----------------------------------


def plain_alpha(ratings: dict[int, dict[str, str]]) -> float | None:
    coincidence: Counter[tuple[str, str]] = Counter()
    for codes in ratings.values():
        values = list(codes.values())
        m = len(values)
        if m < 2:
            continue
        for i, j in permutations(range(m), 2):
            coincidence[(values[i], values[j])] += 1 / (m - 1)
    n_c: Counter[str] = Counter()
    for (c, _), v in coincidence.items():
        n_c[c] += v
    n = sum(n_c.values())
    d_o = sum(v for (c, k), v in coincidence.items() if c != k)
    d_e = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if n <= 1 or d_e == 0:
        return None
    return 1 - (n - 1) * d_o / d_e


def plain_ac1(ratings: dict[int, dict[str, str]], cats: list[str]) -> float | None:
    pairable = [list(c.values()) for c in ratings.values() if len(c) >= 2]
    rated = [list(c.values()) for c in ratings.values() if c]
    if not pairable or len(cats) < 2:
        return None
    pa = sum(sum(v.count(k) * (v.count(k) - 1) for k in cats) / (len(v) * (len(v) - 1)) for v in pairable) / len(pairable)
    pi = {k: sum(v.count(k) / len(v) for v in rated) / len(rated) for k in cats}
    pe = sum(p * (1 - p) for p in pi.values()) / (len(cats) - 1)
    return None if pe == 1 else (pa - pe) / (1 - pe)


def plain_kappa(a: list[str], b: list[str]) -> float | None:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    return None if pe == 1 else (po - pe) / (1 - pe)


def plain_raw(ratings: dict[int, dict[str, str]]) -> float | None:
    agree = total = 0
    for codes in ratings.values():
        for x, y in combinations(list(codes.values()), 2):
            agree += x == y
            total += 1
    return agree / total if total else None


CODES = ["ACK", "CLARIFY", "NONE"]
ratings_strategy = st.dictionaries(
    st.integers(0, 60),
    st.dictionaries(st.sampled_from(["ada", "bo", "cy"]), st.sampled_from(CODES), min_size=0, max_size=3),
    min_size=2,
    max_size=40,
)


def close(x: float | None, y: float | None) -> bool:
    return (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y, abs_tol=1e-9))


@settings(max_examples=150, deadline=None)
@given(ratings=ratings_strategy)
def test_library_figures_match_the_plain_implementation(ratings: dict[int, dict[str, str]]) -> None:
    ratings = {u: c for u, c in ratings.items() if c}
    assert close(krippendorff_alpha(ratings), plain_alpha(ratings)) or plain_alpha(ratings) is None
    assert close(gwet_ac1(ratings, CODES), plain_ac1(ratings, CODES))
    assert close(raw_agreement(ratings), plain_raw(ratings))
    rows = {(r.code, r.measure): r for r in compare(ratings, comparison="t", layer="G", categories=CODES, bootstrap=0)}
    if not rows:
        return
    checked = {
        (r.code, r.measure): r
        for r in compare(ratings, comparison="t", layer="G", categories=CODES, bootstrap=0, library_check=True)
    }
    for key, row in rows.items():
        assert close(row.value, checked[key].value), (key, row.value, checked[key].value)
    assert close(rows[(ALL, "ac1")].value, plain_ac1(ratings, CODES))
    assert close(rows[(ALL, "raw")].value, plain_raw(ratings))
    alpha = plain_alpha(ratings)
    if alpha is not None:
        assert close(rows[(ALL, "alpha")].value, alpha)
    shared = [u for u, c in ratings.items() if "ada" in c and "bo" in c]
    coders = {c for codes in ratings.values() for c in codes}
    if coders == {"ada", "bo"} and shared:
        expected = plain_kappa([ratings[u]["ada"] for u in shared], [ratings[u]["bo"] for u in shared])
        assert close(
            rows[(ALL, "kappa")].value, expected if len({ratings[u][k] for u in shared for k in ("ada", "bo")}) > 1 else None
        )


def test_vectorised_bootstrap_sums_agree_with_point_estimates() -> None:
    ratings = by_unit(KRIPPENDORFF_C)
    rows = compare(ratings, comparison="humans", layer="G", bootstrap=2000, seed=3)
    alpha = next(r for r in rows if r.code == ALL and r.measure == "alpha")
    ac1 = next(r for r in rows if r.code == ALL and r.measure == "ac1")
    assert alpha.value == pytest.approx(0.743421, abs=1e-6) and alpha.units == 11 and alpha.verdict == "tentative"
    assert alpha.low is not None and alpha.high is not None and alpha.low < alpha.value < alpha.high <= 1
    assert ac1.value == pytest.approx(0.775444, abs=1e-6) and ac1.low < ac1.value < ac1.high  # type: ignore[operator]
    again = compare(ratings, comparison="humans", layer="G", bootstrap=2000, seed=3)
    assert again == rows
    per_code = {r.code for r in rows}
    assert per_code == {ALL, "1", "2", "3", "4", "5"}


def test_per_code_rows_are_one_against_the_rest() -> None:
    ratings = by_unit(KRIPPENDORFF_C)
    rows = {(r.code, r.measure): r.value for r in compare(ratings, comparison="x", layer="G", bootstrap=0)}
    binary = {u: {k: "yes" if v == "3" else "no" for k, v in c.items()} for u, c in ratings.items()}
    assert rows[("3", "alpha")] == pytest.approx(plain_alpha(binary))
    assert rows[("3", "ac1")] == pytest.approx(plain_ac1(binary, ["no", "yes"]))


def test_formats() -> None:
    rows = compare(by_unit(KRIPPENDORFF_C), comparison="humans", layer="G", bootstrap=100, per_code=False)
    table = format_rows(rows)
    assert "humans" in table and "alpha" in table and "0.743" in table
    csv = format_rows(rows, "csv").splitlines()
    assert csv[0] == "comparison,layer,code,measure,value,low,high,units,verdict" and len(csv) == 5
    assert '"measure": "alpha"' in format_rows(rows, "json")


def test_intervals_resample_conversations_when_turns_are_correlated() -> None:
    # 20 conversations of 10 turns; within a conversation every turn is rated alike (the coders
    # agree on all ten or on none), so there are 20 independent observations, not 200.
    ratings: dict[int, dict[str, str]] = {}
    clusters: dict[int, int] = {}
    for c in range(20):
        agree = c % 4 != 0
        for t in range(10):
            unit = 100 * c + t
            first = "ACK" if t % 2 else "CLARIFY"
            ratings[unit] = {"a": first, "b": first if agree else ("CHECK" if first == "ACK" else "ACK")}
            clusters[unit] = c

    def width(rows: list[object], measure: str, code: str = ALL) -> float:
        row = next(r for r in rows if r.measure == measure and r.code == code)  # type: ignore[attr-defined]
        return row.high - row.low  # type: ignore[attr-defined]

    turns = compare(ratings, comparison="humans", layer="G", bootstrap=2000, seed=1)
    conversations = compare(ratings, comparison="humans", layer="G", bootstrap=2000, seed=1, clusters=clusters)
    for measure in ("raw", "kappa", "alpha", "ac1"):
        assert width(conversations, measure) > 2 * width(turns, measure), measure
    assert width(conversations, "raw", "ACK") > 2 * width(turns, "raw", "ACK")
    # The point estimates do not depend on how the intervals resample.
    assert [r.value for r in turns] == [r.value for r in conversations]


def test_a_synthetic_study_has_annotation_settings(sqlite_engine: Engine) -> None:
    """A study made by ``synth`` stores no items or models; its agreement still computes."""
    from sqlalchemy.orm import Session

    from lab import synth
    from lab.agreement import study_agreement

    synth.make_study(sqlite_engine, "syn", 20, exchanges=2, items_per_kind=2)
    with Session(sqlite_engine) as s:
        assert study_agreement(s, "syn", ["S"]) == []
