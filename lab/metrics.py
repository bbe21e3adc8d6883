"""The field's measures of repair, per model × condition, with cluster-bootstrap intervals.

Pure functions from the frames of :mod:`lab.analysis_data` to tidy DataFrames, usable from
a notebook. Definitions follow ``docs/measures.md`` ("Measures"):

- **score**: mean task score per conversation (``session.score``, the automatic scorer).
- **P, A90, U90_10** (Laban et al. 2025): per item × cell, the mean, the 90th percentile and
  the 90th − 10th percentile of the item's scores (×100), then averaged over items.
  Percentiles are ``numpy.percentile`` with its default linear interpolation, the function
  the Lost in Conversation code uses; P averages item means as its ``compute_results`` does
  (items without conversations in a cell are skipped). **Degradation** =
  (P_FULL − P_other) / P_FULL for SHARDED and CONCAT.
- **premature_rate**: share of conversations with information still unrevealed in which the
  assistant committed to an answer (``answer_attempt`` or ``hedge``) before it was all
  revealed; **first_answer_turn** (assistant turn number of the first attempt);
  **score_by_first_answer** (score binned by the share of information revealed at the
  first attempt); **answer_chars** (characters of the k-th answer attempt).
- **grounding_rate** BR_a(role) and **grounding_gap** (BR_a(assistant) − BR_a(user)) /
  BR_a(user) in the same cell.
- **rejection_rate**, **correction_rate**, **knows_but_accommodates**, and the share of
  each presupposition code, on loaded presupposition items.
- **ask_rate** (clarification items that need it), **over_ask_rate** (items that do not),
  **clarified_score** (score where the assistant asked on an item that needs it).
- **repair_success** (resolved sequences / sequences with an outcome), **repair_outcome**
  shares, **turns_to_resolution**.
- **interactivity** (×100): per conversation where information was missing, 1 when the
  assistant asked before its first answer attempt, 0.5 when it asked only later, 0 when it
  never asked — a rule-based stand-in for CollabLLM's judged ITR; **tokens_read**:
  assistant tokens per conversation (characters / 4 where a turn has no token count).

Uncertainty: 95 % intervals from a two-way cluster bootstrap. Each draw resamples
participants and items with replacement; a conversation's weight is the product of its
participant's and its item's multiplicities (Owen's pigeonhole bootstrap), so intervals
respect both kinds of clustering and never resample turns. Every ratio measure is a ratio
of weighted sums over conversations, computed for all measures at once by one matrix
product per cell. A90 and U90_10 are item-level statistics of each item's runs, so their
intervals resample items only. Every row carries its conversation count ``n`` and a
``small`` flag for fewer than :data:`SMALL_CELL` conversations; cells are never hidden.
Human and simulated participants stay in separate cells unless ``pool_participants``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import cast

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed

from .analysis_data import AnalysisData, resolve_labels
from .reveal import INCREMENTAL

SMALL_CELL = 5
"""Cells with fewer conversations than this are flagged ``small``."""

DEFAULT_BY = ("model", "condition_key")
"""Default cell: model × condition."""

ASKING = ("clarification", "interrogation")
ANSWERING = ("answer_attempt", "hedge")
GROUNDING_ACTS = ("ACK", "CLARIFY", "CHECK", "FOLLOWUP", "DISPLAY")
PRESUPPOSITION_CODES = ("ACCOMMODATE", "AMPLIFY", "HEDGE", "REJECT", "REJECT_CORRECT", "CLARIFY_ASSUMPTION")
REPAIR_OUTCOMES = ("resolved", "partial", "misrepair", "unresolved")
FIRST_ANSWER_BINS = ("0-20%", "20-40%", "40-60%", "60-80%", "80-100%", "all revealed")
INCREMENTAL_REVEALS = tuple(sorted(INCREMENTAL))
"""Reveal modes in which information arrives over several turns."""
SCORE_SOURCE = "session.score"
"""Label source named on figures computed from the automatic task score."""

RESULT_COLUMNS = ("measure", "key", "value", "lo", "hi", "n", "small", "label_source", "runs", "note", "scoring")
MIN_RUNS = 10
"""Runs per item the paper uses (N = 10); A90 and U90_10 need this many for every item of a cell."""
PUBLISHED = "as published"
"""``scoring`` of score-based rows by default: a conversation without an answer attempt scores 0."""
ATTEMPTED_ONLY = "attempted only"
"""``scoring`` of score-based rows computed without conversations that never attempted an answer."""
SCORE_MEASURES = frozenset(
    {"score", "P", "A90", "A10", "U90_10", "degradation", "degradation_pooled", "score_by_first_answer", "clarified_score"}
)
"""Measures computed from the task score (their rows say which scoring they use)."""

MEASURES = (
    "score",
    "P",
    "A90",
    "A10",
    "U90_10",
    "degradation",
    "degradation_pooled",
    "premature_rate",
    "first_answer_turn",
    "score_by_first_answer",
    "answer_chars",
    "grounding_rate",
    "grounding_gap",
    "rejection_rate",
    "correction_rate",
    "knows_but_accommodates",
    "presupposition_share",
    "ask_rate",
    "over_ask_rate",
    "clarified_score",
    "repair_success",
    "repair_outcome",
    "turns_to_resolution",
    "interactivity",
    "tokens_read",
)
"""Every measure name a figure table can hold (``--measures`` refuses any other)."""


@dataclass(frozen=True)
class Options:
    """How to compute figures."""

    by: tuple[str, ...] = DEFAULT_BY
    """Conversation columns that define a cell."""
    source: str = "best"
    """Label source: best, gold, majority, auto or auto:<judge>."""
    draws: int = 1000
    """Bootstrap draws; 0 gives point estimates only."""
    seed: int = 0
    """Seeds the bootstrap, so figures are reproducible."""
    level: float = 0.95
    """Coverage of the intervals."""
    pool_participants: bool = False
    """Pool human and simulated participants in one cell."""
    chunk: int = 100
    """Draws computed at once (memory: chunk × conversations floats)."""
    min_runs: int = MIN_RUNS
    """Runs every item of a cell needs before its A90, A10 and U90_10 are given."""
    attempted_only: bool = False
    """Leave out conversations that never attempted an answer instead of scoring them 0."""
    math_as_published: bool = False
    """Score math replies with the authors' string comparison (``42.0`` is not ``42``) where it was recorded."""


@dataclass
class Figures:
    """Every measure's rows, and the bootstrap draws behind them for pairwise differences."""

    table: pd.DataFrame
    """One row per measure × key × cell: value, lo, hi, n, small, label_source."""
    by: tuple[str, ...]
    """The cell columns (plus ``participant_kind`` unless pooled)."""
    draws: dict[tuple[str, str, tuple[object, ...]], np.ndarray] = field(default_factory=dict)
    """(measure, key, cell) → the measure's bootstrap draws."""


# --- Bootstrap ------------------------------------------------------------------------


class Resampler:
    """Two-way cluster bootstrap draws over participants and items, shared by every measure."""

    def __init__(
        self,
        participant: np.ndarray,
        item: np.ndarray,
        draws: int,
        seed: int,
        chunk: int = 100,
        n_participants: int | None = None,
    ) -> None:
        """Draw participant and item multiplicities.

        Args:
            participant: Participant code (0..P-1) of each conversation.
            item: Item code (0..I-1) of each conversation.
            draws: Number of bootstrap draws.
            seed: Random seed.
            chunk: Draws per weight block.
            n_participants: P, when the codes index a larger set of participants than
                these conversations have (a study's participants, so computations on parts
                of a study share one draw of participants).
        """
        self.participant = participant
        self.item = item
        self.draws = draws
        self.chunk = max(1, chunk)
        n_p = n_participants if n_participants is not None else (int(participant.max()) + 1 if len(participant) else 0)
        n_i = int(item.max()) + 1 if len(item) else 0
        self.cp = _participant_multiplicities(seed, n_p, draws)
        self.ci = _multiplicities(np.random.default_rng([seed, 1]), n_i, draws)

    def weights(self, rows: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Blocks of conversation weights (draws × conversations), optionally for some rows."""
        p = self.participant if rows is None else self.participant[rows]
        i = self.item if rows is None else self.item[rows]
        for start in range(0, self.draws, self.chunk):
            sl = slice(start, min(start + self.chunk, self.draws))
            yield sl, self.cp[sl][:, p] * self.ci[sl][:, i]


@lru_cache(maxsize=2)
def _participant_multiplicities(seed: int, n: int, draws: int) -> np.ndarray:
    """Participant multiplicities, kept for the next computation with the same study and seed."""
    out = _multiplicities(np.random.default_rng([seed, 0]), n, draws)
    out.flags.writeable = False
    return out


def _multiplicities(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """How often each of ``n`` clusters is drawn in each of ``draws`` resamples of size ``n``."""
    if n == 0:
        return np.zeros((draws, 0), np.float32)
    picks = rng.integers(0, n, size=(draws, n)) + (np.arange(draws) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float32)


def _one_blas_thread() -> AbstractContextManager[object]:
    """BLAS limited to one thread for the bootstrap's many small matrix products.

    Measured here: several times faster single-threaded on a shared machine, where
    OpenBLAS threads spin while they wait for each other.
    """
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # threadpoolctl ships no type information
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of a draws × k array, ignoring undefined (NaN) draws.

    Linear interpolation between order statistics, as ``numpy.percentile``; NaN for a
    column without any defined draw.
    """
    if draws.size == 0:
        return np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
    d = np.where(np.isfinite(draws), draws, np.nan)
    d = np.sort(d, axis=0)  # NaN sorts last
    n = np.isfinite(d).sum(axis=0)
    cols = np.arange(d.shape[1])
    out = []
    for q in ((1 - level) / 2, 1 - (1 - level) / 2):
        h = (np.maximum(n, 1) - 1) * q
        lo_i = np.floor(h).astype(int)
        hi_i = np.minimum(lo_i + 1, np.maximum(n - 1, 0))
        frac = h - lo_i
        v = d[lo_i, cols] + (d[hi_i, cols] - d[lo_i, cols]) * frac
        out.append(np.where(n > 0, v, np.nan))
    return out[0], out[1]


def _fill_intervals(rows: list[dict[str, object]], draws: list[np.ndarray | None], level: float) -> None:
    """Set lo/hi of every row with draws, all columns at once."""
    idx = [i for i, d in enumerate(draws) if d is not None]
    if not idx:
        return
    mat = np.column_stack([d for d in draws if d is not None])
    lo, hi = _interval(mat, level)
    for j, i in enumerate(idx):
        rows[i]["lo"], rows[i]["hi"] = float(lo[j]), float(hi[j])


# --- Per-conversation quantities -------------------------------------------------------


@dataclass
class _Ratio:
    """A measure as Σ num / Σ den over the conversations of a cell."""

    measure: str
    key: str
    num: np.ndarray
    den: np.ndarray
    source: str
    scale: float = 1.0


@dataclass
class _Rows:
    """The figures table being built: one row per measure × key × cell, and the draws behind each."""

    by: tuple[str, ...]
    cells: pd.DataFrame
    """The values of ``by`` of each cell, by cell code."""
    rows: list[dict[str, object]] = field(default_factory=list)
    draws: dict[tuple[str, str, tuple[object, ...]], np.ndarray] = field(default_factory=dict)

    def cell_values(self, code: int) -> tuple[object, ...]:
        """The values of ``by`` of one cell."""
        return tuple(self.cells.iloc[int(code)])

    def add(
        self,
        measure: str,
        key: str,
        cell: tuple[object, ...],
        value: object,
        n: int,
        source: object,
        draws: np.ndarray | None,
        *,
        runs: int | None = None,
        note: str | None = None,
    ) -> None:
        """Add a row; its interval is filled in from its draws once every row is in."""
        if draws is not None:
            self.draws[(measure, key, cell)] = draws
        self.rows.append(
            {
                "measure": measure,
                "key": key,
                **dict(zip(self.by, cell, strict=True)),
                "value": value,
                "lo": np.nan,
                "hi": np.nan,
                "n": n,
                "label_source": source,
                "runs": runs,
                "note": note,
            }
        )


@dataclass
class ConversationTable:
    """Per-conversation quantities, and the per-turn tables some measures sum."""

    conversations: pd.DataFrame
    """The conversations frame plus premature_any, first_answer_turn, first_answer_bin,
    asked, first_ask_turn, interactivity, presupposition_code, tokens_read, labelled_s."""
    answers: pd.DataFrame
    """Answer attempts: session_id, attempt (1, 2, …), content_chars."""
    grounding: pd.DataFrame
    """Turns with a grounding-act label: session_id, role, g_code."""
    sources: dict[str, str]
    """Layer → the label source(s) its codes came from."""


def conversation_table(data: AnalysisData, source: str = "best") -> ConversationTable:
    """Per-conversation quantities every measure is built from."""
    conv = data.conversations.copy()
    turns = data.turns
    labels = resolve_labels(data, source, layers=("S", "P", "G"))
    sources = {
        layer: "+".join(sorted(labels.loc[labels["layer"] == layer, "label_source"].dropna().unique()))
        for layer in ("S", "P", "G")
    }
    t = turns[["id", "session_id", "index", "role", "n_shards", "content_chars", "tokens_out"]].copy()
    t["revealed"] = t.groupby("session_id", sort=False)["n_shards"].cumsum()
    s_codes = labels.loc[labels["layer"] == "S", ["turn_id", "code"]].rename(columns={"turn_id": "id", "code": "s_code"})
    t = t.merge(s_codes, on="id", how="left")
    asst = t[t["role"] == "assistant"].copy()
    asst["asst_no"] = asst.groupby("session_id", sort=False).cumcount() + 1
    need = conv.set_index("id")["n_required"]
    asst["n_required"] = asst["session_id"].map(need).fillna(0).to_numpy()
    asst["answering"] = asst["s_code"].isin(ANSWERING).to_numpy(dtype=bool)
    asst["asking"] = asst["s_code"].isin(ASKING).to_numpy(dtype=bool)
    asst["premature"] = asst["answering"] & (asst["revealed"] < asst["n_required"])
    g = asst.groupby("session_id", sort=False)
    per = pd.DataFrame(
        {
            "labelled_s": g["s_code"].count(),
            "premature_any": g["premature"].any(),
            "asked": g["asking"].any(),
            "tokens_read": g["tokens_out"].sum(min_count=1),
        }
    )
    chars = g["content_chars"].sum()
    per["tokens_read"] = per["tokens_read"].fillna(chars / 4.0)
    answers = asst[asst["answering"]]
    first = answers.groupby("session_id", sort=False).first()
    per["first_answer_turn"] = first["asst_no"]
    share = (first["revealed"] / first["n_required"].where(first["n_required"] > 0)).clip(upper=1.0)
    bins = pd.cut(share, [-0.001, 0.2, 0.4, 0.6, 0.8, 0.999999], labels=list(FIRST_ANSWER_BINS[:5]))
    per["first_answer_bin"] = bins.astype("string").where(share < 0.999999, FIRST_ANSWER_BINS[5])
    first_ask = asst[asst["asking"]].groupby("session_id", sort=False)["asst_no"].min()
    per["first_ask_turn"] = first_ask
    conv = conv.merge(per, left_on="id", right_index=True, how="left")
    conv["labelled_s"] = conv["labelled_s"].fillna(0)
    conv["premature_any"] = conv["premature_any"].astype("boolean").fillna(False).astype(bool)
    conv["asked"] = conv["asked"].astype("boolean").fillna(False).astype(bool)
    conv["tokens_read"] = conv["tokens_read"].astype(float)
    # Interactivity: asked before the first answer attempt (1), only later (0.5), never (0).
    before = conv["first_ask_turn"].notna() & (
        conv["first_answer_turn"].isna() | (conv["first_ask_turn"] < conv["first_answer_turn"])
    )
    conv["interactivity"] = np.where(before, 1.0, np.where(conv["asked"], 0.5, 0.0))
    # Presupposition handling: the code of the first assistant reply carrying a P label.
    p_codes = labels.loc[labels["layer"] == "P", ["turn_id", "code"]].rename(columns={"turn_id": "id", "code": "p_code"})
    pt = t[t["role"] == "assistant"][["id", "session_id", "index"]].merge(p_codes, on="id")
    p_first = pt.sort_values(["session_id", "index"]).groupby("session_id", sort=False)["p_code"].first()
    conv["presupposition_code"] = conv["id"].map(p_first).astype("string")
    # Answer attempt lengths by attempt number.
    answers = answers.copy()
    answers["attempt"] = answers.groupby("session_id", sort=False).cumcount() + 1
    # Grounding acts by role: counts of labelled turns and of each act.
    g_codes = labels.loc[labels["layer"] == "G", ["turn_id", "code"]].rename(columns={"turn_id": "id", "code": "g_code"})
    gt = t[["id", "session_id", "role"]].merge(g_codes, on="id")
    return ConversationTable(
        conv, answers[["session_id", "attempt", "content_chars"]], gt[["session_id", "role", "g_code"]], sources
    )


def _session_sum(conv_ids: np.ndarray, session_ids: pd.Series, values: np.ndarray | pd.Series) -> np.ndarray:
    """Sum of values per conversation, aligned with ``conv_ids`` (0 where none)."""
    s = pd.Series(np.asarray(values, dtype=float)).groupby(session_ids.to_numpy()).sum()
    return s.reindex(conv_ids).fillna(0.0).to_numpy()


def _ratios(ct: ConversationTable, data: AnalysisData, source: str) -> list[_Ratio]:
    """Every ratio measure's per-conversation numerator and denominator, in ``ct``'s row order."""
    conv, sources = ct.conversations, ct.sources
    ids = conv["id"].to_numpy()
    score = conv["score"].to_numpy(dtype=float)
    has_score = np.isfinite(score)
    score0 = np.where(has_score, score, 0.0)
    s_src, p_src, g_src = sources["S"] or "none", sources["P"] or "none", sources["G"] or "none"
    out: list[_Ratio] = [_Ratio("score", "", score0, has_score.astype(float), SCORE_SOURCE)]
    incremental = conv["reveal"].isin(INCREMENTAL_REVEALS).to_numpy(dtype=bool) & (conv["n_required"].to_numpy() > 0)
    labelled = conv["labelled_s"].to_numpy() > 0
    out += _timing_ratios(conv, score0, has_score, (incremental & labelled).astype(float), s_src)
    out += _answer_length_ratios(ids, ct.answers, s_src)
    out += _grounding_ratios(ids, ct.grounding, g_src)
    out += _presupposition_ratios(conv, p_src)
    out += _clarification_ratios(conv, score0, has_score, incremental, labelled, s_src)
    tok = conv["tokens_read"].to_numpy(dtype=float)
    has_tok = np.isfinite(tok)
    out.append(_Ratio("tokens_read", "", np.where(has_tok, tok, 0.0), has_tok.astype(float), "turn.tokens_out"))
    out += _repair_ratios(ids, data.repair_sequences, source)
    return out


def _timing_ratios(conv: pd.DataFrame, score0: np.ndarray, has_score: np.ndarray, den: np.ndarray, s_src: str) -> list[_Ratio]:
    """When the first answer came, over labelled incremental conversations (``den``): too early, which turn, its score."""
    out = [_Ratio("premature_rate", "", conv["premature_any"].to_numpy(dtype=float) * den, den, s_src)]
    fat = conv["first_answer_turn"].to_numpy(dtype=float)
    has_fat = np.isfinite(fat) & (den > 0)
    out.append(_Ratio("first_answer_turn", "", np.where(has_fat, fat, 0.0), has_fat.astype(float), s_src))
    bins = conv["first_answer_bin"].astype("string").fillna("")
    for b in FIRST_ANSWER_BINS:
        m = ((bins == b).to_numpy(dtype=bool) & has_score & (den > 0)).astype(float)
        out.append(_Ratio("score_by_first_answer", b, score0 * m, m, f"{s_src}; {SCORE_SOURCE}"))
    return out


def _answer_length_ratios(ids: np.ndarray, answers: pd.DataFrame, s_src: str) -> list[_Ratio]:
    """Characters per answer attempt, by the attempt's number (1 to 4, then 5 and later)."""
    out = []
    for k in range(1, 6):
        sel = answers["attempt"] == k if k < 5 else answers["attempt"] >= 5
        a = answers[sel]
        key = str(k) if k < 5 else "5+"
        out.append(
            _Ratio(
                "answer_chars",
                key,
                _session_sum(ids, a["session_id"], a["content_chars"]),
                _session_sum(ids, a["session_id"], np.ones(len(a))),
                s_src,
            )
        )
    return out


def _grounding_ratios(ids: np.ndarray, gt: pd.DataFrame, g_src: str) -> list[_Ratio]:
    """Each grounding act's share of each speaker's labelled turns."""
    out = []
    for role in ("assistant", "user"):
        r = gt[gt["role"] == role]
        den_g = _session_sum(ids, r["session_id"], np.ones(len(r)))
        for act in GROUNDING_ACTS:
            out.append(
                _Ratio(
                    "grounding_rate",
                    f"{role}:{act}",
                    _session_sum(ids, r["session_id"], (r["g_code"] == act).to_numpy(dtype=float)),
                    den_g,
                    g_src,
                )
            )
    return out


def _presupposition_ratios(conv: pd.DataFrame, p_src: str) -> list[_Ratio]:
    """How labelled loaded questions were handled, and accommodation by models that know better."""
    pcode = conv["presupposition_code"].astype("string")
    loaded = (conv["presupposition"] == "loaded").fillna(False).to_numpy(dtype=bool) & pcode.notna().to_numpy(dtype=bool)
    lden = loaded.astype(float)
    pc = pcode.fillna("")
    out = [
        _Ratio("rejection_rate", "", pc.isin(["REJECT", "REJECT_CORRECT"]).to_numpy(dtype=float) * lden, lden, p_src),
        _Ratio("correction_rate", "", (pc == "REJECT_CORRECT").to_numpy(dtype=float) * lden, lden, p_src),
    ]
    for code in PRESUPPOSITION_CODES:
        out.append(_Ratio("presupposition_share", code, (pc == code).to_numpy(dtype=float) * lden, lden, p_src))
    knows = loaded & (conv["probe_score"].to_numpy(dtype=float) >= 1.0)
    out.append(
        _Ratio(
            "knows_but_accommodates",
            "",
            pc.isin(["ACCOMMODATE", "AMPLIFY"]).to_numpy(dtype=float) * knows,
            knows.astype(float),
            f"{p_src}; probe score",
        )
    )
    return out


def _clarification_ratios(
    conv: pd.DataFrame, score0: np.ndarray, has_score: np.ndarray, incremental: np.ndarray, labelled: np.ndarray, s_src: str
) -> list[_Ratio]:
    """Asking when information is missing (and when it is not), and how interactive conversations were."""
    clar = (conv["item_kind"] == "clarification").fillna(False).to_numpy(dtype=bool) & labelled
    needs = conv["needs_clarification"].fillna(False).to_numpy(dtype=bool)
    asked = conv["asked"].to_numpy(dtype=bool)
    cm = (asked & clar & needs & has_score).astype(float)
    missing = (incremental | (clar & needs)) & labelled
    return [
        _Ratio("ask_rate", "", (asked & clar & needs).astype(float), (clar & needs).astype(float), s_src),
        _Ratio("over_ask_rate", "", (asked & clar & ~needs).astype(float), (clar & ~needs).astype(float), s_src),
        _Ratio("clarified_score", "", score0 * cm, cm, f"{s_src}; {SCORE_SOURCE}"),
        _Ratio("interactivity", "", conv["interactivity"].to_numpy(dtype=float) * missing, missing.astype(float), s_src, 100.0),
    ]


def _repair_ratios(ids: np.ndarray, repair_sequences: pd.DataFrame, source: str) -> list[_Ratio]:
    """Repair outcomes' shares, success, and turns to resolution, from the chosen source's sequences."""
    rs, r_src = _repair_rows(repair_sequences, source)
    with_outcome = rs[rs["outcome"].notna()]
    den_r = _session_sum(ids, with_outcome["session_id"], np.ones(len(with_outcome)))
    out = [
        _Ratio(
            "repair_outcome",
            oc,
            _session_sum(ids, with_outcome["session_id"], (with_outcome["outcome"] == oc).to_numpy(dtype=float)),
            den_r,
            r_src,
        )
        for oc in REPAIR_OUTCOMES
    ]
    out.append(
        _Ratio(
            "repair_success",
            "",
            _session_sum(ids, with_outcome["session_id"], (with_outcome["outcome"] == "resolved").to_numpy(dtype=float)),
            den_r,
            r_src,
        )
    )
    ttr = rs[(rs["outcome"] == "resolved") & rs["turns_to_resolution"].notna()]
    out.append(
        _Ratio(
            "turns_to_resolution",
            "",
            _session_sum(ids, ttr["session_id"], ttr["turns_to_resolution"]),
            _session_sum(ids, ttr["session_id"], np.ones(len(ttr))),
            r_src,
        )
    )
    return out


def _repair_rows(rs: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str]:
    """Repair sequences from the chosen source: per conversation, the best annotator class present."""
    if rs.empty:
        return rs, "none"
    a = rs["annotator"].astype("string")
    rank = np.where(a == "gold", 0, np.where(a.str.startswith("auto:"), 2, 1))
    rs = rs.assign(_rank=rank)
    allowed = {"gold": [0], "majority": [1], "best": [0, 1, 2]}.get(source, [2])
    rs = rs[rs["_rank"].isin(allowed)]
    if source.startswith("auto:"):
        rs = rs[rs["annotator"] == source]
    if rs.empty:
        return rs.drop(columns="_rank"), "none"
    best = rs.groupby("session_id")["_rank"].transform("min")
    rs = rs[rs["_rank"] == best]
    names = {0: "gold", 1: "human", 2: "auto"}
    src = "+".join(sorted({names[int(r)] for r in rs["_rank"].unique()}))
    return rs.drop(columns="_rank"), f"repair_sequence ({src})"


# --- Cells ----------------------------------------------------------------------------


def _cells(conv: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Cell code of each conversation and the cells' key values."""
    keys = conv[list(by)].astype("string").fillna("—")
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    cells = pd.DataFrame(list(uniques), columns=list(by)) if len(uniques) else pd.DataFrame(columns=list(by))
    return np.asarray(codes), cells


def _cluster_codes(conv: pd.DataFrame, participants: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Participant codes over the study's participants, item codes over these conversations."""
    universe = np.union1d(participants["id"].to_numpy(dtype=np.int64), conv["participant_id"].to_numpy(dtype=np.int64))
    p = np.searchsorted(universe, conv["participant_id"].to_numpy(dtype=np.int64))
    i = pd.factorize(conv["item_id"])[0]
    return p.astype(np.int64), i.astype(np.int64), len(universe)


def compute(
    data: AnalysisData, options: Options | None = None, *, performance_only: bool = False, run_intervals: bool = True
) -> Figures:
    """Every measure of the comparison, per cell, with intervals.

    Args:
        data: The study's frames (filter them first with :func:`select`).
        options: Cells, label source, bootstrap draws.
        performance_only: Only P, A90, A10 and U90_10 (no labels needed).
        run_intervals: Give A90, A10 and U90_10 intervals (they resample each item's runs);
            False leaves them out where only the points are shown.

    Returns:
        Figures whose table has one row per measure × key × cell.
    """
    o = options or Options()
    by = tuple(o.by) if o.pool_participants or "participant_kind" in o.by else (*o.by, "participant_kind")
    empty = Figures(pd.DataFrame(columns=[*RESULT_COLUMNS[:2], *by, *RESULT_COLUMNS[2:]]), by)
    data = replace(data, conversations=scored_conversations(data.conversations, o.attempted_only, o.math_as_published))
    if performance_only:
        ct = ConversationTable(data.conversations, pd.DataFrame(), pd.DataFrame(), {})
    else:
        ct = conversation_table(data, o.source)
    conv = ct.conversations
    if conv.empty:
        return empty
    cell, cells = _cells(conv, by)
    order = np.lexsort((pd.factorize(conv["item_id"])[0], cell))
    conv = conv.iloc[order].reset_index(drop=True)
    ct.conversations = conv
    cell = cell[order]
    p_codes, i_codes, n_p = _cluster_codes(conv, data.participants)
    res = Resampler(p_codes, i_codes, o.draws, o.seed, o.chunk, n_participants=n_p) if o.draws > 0 else None
    out = _Rows(by, cells)
    if not performance_only:
        _ratio_rows(_ratios(ct, data, o.source), cell, res, o, out)
    _laban_rows(conv, cell, res, o, out, run_intervals)
    _derived_rows(out)
    rows, draws_out = out.rows, out.draws
    _fill_intervals(rows, [draws_out.get((str(r["measure"]), str(r["key"]), tuple(r[b] for b in by))) for r in rows], o.level)
    if not rows:
        return empty
    table = pd.DataFrame(rows)
    table["small"] = table["n"] < SMALL_CELL
    scoring = ATTEMPTED_ONLY if o.attempted_only else PUBLISHED
    table["scoring"] = table["measure"].map(lambda m: scoring if m in SCORE_MEASURES else None)
    cols = ["measure", "key", *by, *RESULT_COLUMNS[2:]]
    return Figures(table[cols].sort_values(["measure", "key", *by], kind="stable").reset_index(drop=True), by, draws_out)


def scored_conversations(conv: pd.DataFrame, attempted_only: bool = False, math_as_published: bool = False) -> pd.DataFrame:
    """The conversations with the score the figures use.

    As published, a conversation whose stored evaluation says it never attempted an answer
    scores 0 (also when it was stored without a score, before the lab scored it so);
    ``attempted_only`` leaves those conversations out of every score-based measure instead.
    ``math_as_published`` takes the authors' math comparison (``score_authors``) where the
    evaluation recorded one.
    """
    none = conv["no_attempt"].fillna(False).to_numpy(dtype=bool) if "no_attempt" in conv else np.zeros(len(conv), bool)
    authors = conv["score_authors"].to_numpy(dtype=float) if math_as_published and "score_authors" in conv else None
    if not none.any() and (authors is None or not np.isfinite(authors).any()):
        return conv
    conv = conv.copy()
    score = conv["score"].to_numpy(dtype=float).copy()
    if authors is not None:
        score = np.where(np.isfinite(authors), authors, score)
    score[none] = np.nan if attempted_only else np.where(np.isfinite(score[none]), score[none], 0.0)
    conv["score"] = score
    return conv


def _ratio_rows(ratios: list[_Ratio], cell: np.ndarray, res: Resampler | None, o: Options, out: _Rows) -> None:
    # Columns are deduplicated (ratios share denominators), and each cell multiplies only
    # the columns that are non-zero in it: the bootstrap costs draws × conversations ×
    # the columns a cell actually uses.
    column_of: dict[int, int] = {}
    arrays: list[np.ndarray] = []
    index: list[tuple[int, int]] = []
    for r in ratios:
        pair = []
        for arr in (r.num, r.den):
            if id(arr) not in column_of:
                column_of[id(arr)] = len(arrays)
                arrays.append(arr)
            pair.append(column_of[id(arr)])
        index.append((pair[0], pair[1]))
    k = len(arrays)
    v = np.empty((len(cell), k), dtype=np.float32)
    for j, arr in enumerate(arrays):
        v[:, j] = arr
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if len(cell) else np.array([], int)
    ends = np.r_[starts[1:], len(cell)]
    n_cells = len(starts)
    point = np.add.reduceat(v.astype(np.float64), starts, axis=0) if n_cells else np.zeros((0, k))
    counts = np.add.reduceat((v > 0).astype(np.int64), starts, axis=0) if n_cells else np.zeros((0, k), int)
    boot = None
    if res is not None:
        boot = np.zeros((o.draws, n_cells, k), dtype=np.float64)
        used = [np.flatnonzero(np.any(v[s:e] != 0, axis=0)) for s, e in zip(starts, ends, strict=True)]
        blocks = [np.ascontiguousarray(v[s:e][:, u]) for (s, e), u in zip(zip(starts, ends, strict=True), used, strict=True)]
        with _one_blas_thread():
            for start in range(0, o.draws, res.chunk):
                sl = slice(start, min(start + res.chunk, o.draws))
                cp, ci = res.cp[sl], res.ci[sl]
                for c, (s, e) in enumerate(zip(starts, ends, strict=True)):
                    if len(used[c]):
                        w = cp[:, res.participant[s:e]] * ci[:, res.item[s:e]]
                        boot[sl, c, used[c]] = w @ blocks[c]
    for c in range(n_cells):
        key_vals = out.cell_values(cell[starts[c]])
        for r, (jn, jd) in zip(ratios, index, strict=True):
            n = int(counts[c, jd])
            if n == 0:
                continue
            d = None
            if boot is not None:
                with np.errstate(all="ignore"):
                    d = boot[:, c, jn] / boot[:, c, jd] * r.scale
            out.add(r.measure, r.key, key_vals, point[c, jn] / point[c, jd] * r.scale, n, r.source, d)


def _laban_rows(
    conv: pd.DataFrame, cell: np.ndarray, res: Resampler | None, o: Options, out: _Rows, run_intervals: bool = True
) -> None:
    """P (mean of item means), A90, A10 and U90_10 per cell, ×100.

    A90, A10 and U90_10 are given only where every item of the cell has at least
    ``o.min_runs`` runs; otherwise their value is NaN and ``note`` says how many the fewest
    item has. Their intervals resample items and, within each item, its runs.
    """
    score = conv["score"].to_numpy(dtype=float)
    ok = np.isfinite(score)
    if not ok.any():
        return
    idx = np.flatnonzero(ok)
    s = score[idx] * 100.0
    c = cell[idx]
    item = conv["item_id"].to_numpy()[idx]
    human = (conv["participant_kind"].astype("string") == "human").fillna(False).to_numpy(dtype=bool)[idx]
    group = pd.MultiIndex.from_arrays([c, item]).factorize()[0]
    # Conversations are sorted by cell then item, so groups are contiguous.
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    g_cell = c[starts]
    frame = pd.DataFrame({"g": group, "s": s})
    stats = frame.groupby("g", sort=True)["s"]
    means = stats.mean().to_numpy()
    a90 = stats.quantile(0.9).to_numpy()
    a10 = stats.quantile(0.1).to_numpy()
    u = a90 - a10
    per_item = {"P": means, "A90": a90, "A10": a10, "U90_10": u}
    cell_starts = np.flatnonzero(np.r_[True, g_cell[1:] != g_cell[:-1]])
    cell_bounds = np.r_[np.flatnonzero(np.r_[True, c[1:] != c[:-1]]), len(s)]
    n_conv = np.diff(cell_bounds)
    fewest = np.minimum.reduceat(sizes, cell_starts)
    any_human = np.maximum.reduceat(human.astype(int), cell_bounds[:-1]) > 0
    boots: dict[str, np.ndarray] = {}
    if res is not None:
        boots = _laban_draws(res, o, idx, s, starts, sizes, cell_starts, fewest, run_intervals)
    for name, vals in per_item.items():
        point = np.add.reduceat(vals, cell_starts) / np.diff(np.r_[cell_starts, len(vals)])
        for j, cs in enumerate(cell_starts):
            d = boots[name][:, j] if name in boots else None
            value = float(point[j])
            notes = []
            if name != "P" and fewest[j] < o.min_runs:
                value, d = float("nan"), None
                notes.append(f"not enough runs: the fewest item has {int(fewest[j])} of {o.min_runs}")
            if name == "U90_10" and any_human[j]:
                notes.append("between-participant spread")
            out.add(
                name,
                "",
                out.cell_values(g_cell[cs]),
                value,
                int(n_conv[j]),
                SCORE_SOURCE,
                d,
                runs=int(fewest[j]),
                note="; ".join(notes) or None,
            )


def _laban_draws(
    res: Resampler,
    o: Options,
    idx: np.ndarray,
    s: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    cell_starts: np.ndarray,
    fewest: np.ndarray,
    run_intervals: bool,
) -> dict[str, np.ndarray]:
    """Bootstrap draws (draws × cells) of P, and of A90, A10 and U90_10 when ``run_intervals``.

    Args:
        res: The resampler of the whole analysis.
        o: The options (draws, seed, min_runs).
        idx: Rows of the scored conversations in the resampler's order.
        s: Their scores ×100, grouped by cell then item.
        starts: Where each cell × item group begins in ``s``.
        sizes: Each group's number of runs.
        cell_starts: Where each cell's first group is among the groups.
        fewest: Each cell's fewest runs of an item.
        run_intervals: Also resample runs within items for A90, A10 and U90_10.
    """
    boots: dict[str, np.ndarray] = {}
    ci_g = res.ci[:, res.item[idx][starts]]
    p_draws = np.zeros((o.draws, len(cell_starts)))
    for sl, w in res.weights(idx):
        sw = np.add.reduceat(w * s[None, :].astype(np.float32), starts, axis=1)
        sc = np.add.reduceat(w, starts, axis=1)
        with np.errstate(all="ignore"):
            m = np.where(sc > 0, sw / np.where(sc > 0, sc, 1), 0.0)
        wi = ci_g[sl] * (sc > 0)
        num = np.add.reduceat(wi * m, cell_starts, axis=1)
        den = np.add.reduceat(wi, cell_starts, axis=1)
        with np.errstate(all="ignore"):
            p_draws[sl] = num / den
    boots["P"] = p_draws
    enough = np.repeat(fewest >= o.min_runs, np.diff(np.r_[cell_starts, len(starts)]))
    runs = _run_percentiles(s, starts, sizes, o.draws, o.seed, enough) if run_intervals else {}
    den = np.add.reduceat(ci_g, cell_starts, axis=1)
    for name, vals in runs.items():
        num = np.add.reduceat(ci_g * vals, cell_starts, axis=1)
        with np.errstate(all="ignore"):
            boots[name] = num / den
    return boots


def _run_percentiles(
    s: np.ndarray, starts: np.ndarray, sizes: np.ndarray, draws: int, seed: int, wanted: np.ndarray
) -> dict[str, np.ndarray]:
    """A90, A10 and U90_10 of each item (draws × items), its runs resampled with replacement in each draw.

    A resample of an item's n runs is ``v[floor(U·n)]`` for n uniform draws U, with v the
    sorted runs, so its p-th smallest value is ``v[floor(U_(p)·n)]`` for the p-th smallest
    uniform. The percentiles (linear between the order statistics at (n − 1)·q, as
    ``numpy.percentile``) need only the four uniform order statistics around the 10th and
    90th percentile, drawn exactly and jointly: U_(p) ~ Beta(p, n − p + 1), and given
    U_(p) = u, U_(p') = u + (1 − u)·Beta(p' − p, n − p' + 1). Items not ``wanted`` (in
    cells without enough runs) are NaN.
    """
    rng = np.random.default_rng([seed, 2])
    out = {name: np.full((draws, len(starts)), np.nan) for name in ("A90", "A10", "U90_10")}
    for size in np.unique(sizes[wanted]):
        n = int(size)
        groups = np.flatnonzero((sizes == size) & wanted)
        values = np.sort(s[starts[groups][:, None] + np.arange(n)[None, :]], axis=1)  # items × sorted runs
        # 1-based ranks of the order statistics each percentile interpolates between.
        ranks = {q: (int(np.floor((n - 1) * q)) + 1, min(int(np.floor((n - 1) * q)) + 2, n)) for q in (0.1, 0.9)}
        at: dict[int, np.ndarray] = {}
        u_prev, p_prev = np.zeros((draws, len(groups))), 0
        for p in sorted({r for pair in ranks.values() for r in pair}):
            u_prev = u_prev + (1 - u_prev) * rng.beta(p - p_prev, n - p + 1, size=u_prev.shape)
            p_prev = p
            index = np.minimum((u_prev * n).astype(np.int64), n - 1)
            at[p] = np.take_along_axis(values, index.T, axis=1).T
        q_values = {}
        for q, (lo, hi) in ranks.items():
            frac = (n - 1) * q - (lo - 1)
            q_values[q] = at[lo] + (at[hi] - at[lo]) * frac
        out["A90"][:, groups], out["A10"][:, groups] = q_values[0.9], q_values[0.1]
        out["U90_10"][:, groups] = q_values[0.9] - q_values[0.1]
    return out


def _derived_rows(out: _Rows) -> None:
    """The grounding gap (from the grounding rates of both roles in a cell), with its draws."""
    rates = {(str(r["key"]), tuple(r[b] for b in out.by)): r for r in out.rows if r["measure"] == "grounding_rate"}
    for (key, key_vals), r in list(rates.items()):
        if not key.startswith("assistant:"):
            continue
        act = key.split(":", 1)[1]
        human = rates.get((f"user:{act}", key_vals))
        if human is None or not human["value"]:
            continue
        base = float(human["value"])  # type: ignore[arg-type]
        da, du = out.draws.get(("grounding_rate", key, key_vals)), out.draws.get(("grounding_rate", f"user:{act}", key_vals))
        d = None
        if da is not None and du is not None:
            with np.errstate(all="ignore"):
                d = (da - du) / du
            d[~np.isfinite(d)] = np.nan
        value = (float(cast(float, r["value"])) - base) / base
        out.add("grounding_gap", act, key_vals, value, min(int(r["n"]), int(human["n"])), r["label_source"], d)  # type: ignore[call-overload]


DEGRADATION_MODES = ("SHARDED", "CONCAT", "SNOWBALL", "RECAP")
"""Reveal modes compared with FULL."""
TASK_MEAN = "mean over tasks"
"""``task`` of the paper's aggregate degradation: per-family degradations averaged over families."""
TASK_POOLED = "pooled"
"""``task`` of ``degradation_pooled``: P over every item of the cell, families pooled."""


def degradation_figures(data: AnalysisData, options: Options | None = None, *, by_task: bool = True) -> Figures:
    """P, A90 and U90_10 of sharded items per model × intervention × reveal mode (for :func:`degradation`).

    Args:
        data: The study's frames.
        options: Cells, bootstrap draws.
        by_task: Split every cell by task family (the paper's per-task figures); False pools them.
    """
    o = options or Options()
    by = tuple(b for b in o.by if b not in ("condition_key", "reveal", "intervention", "task"))
    by = (*by, *(("task",) if by_task else ()), "intervention", "reveal")
    conv = data.conversations
    # Only the conversations are needed for P, A90 and U90_10, so turns and labels stay as they are.
    sharded = replace(
        data, conversations=conv[(conv["item_kind"] == "sharded").fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
    )
    if "task" not in sharded.conversations:
        sharded = replace(sharded, conversations=sharded.conversations.assign(task=pd.NA))
    # Degradation needs P's draws; A90 and U90_10 are shown here as points only.
    return compute(sharded, replace(o, by=by), performance_only=True, run_intervals=False)


def degradation(figures: Figures, level: float = 0.95) -> pd.DataFrame:
    """FULL → SHARDED (and CONCAT, SNOWBALL, RECAP) degradation of P.

    Each non-FULL cell is compared with the FULL cell that has the same keys apart from
    ``reveal`` and ``intervention`` (a mediator acts only once information is split).
    Needs figures with ``reveal`` among the cell keys (:func:`degradation_figures`). When
    the cells are split by ``task``, the paper's aggregate follows the per-family rows:
    their degradations averaged over the families that have one (``task`` =
    :data:`TASK_MEAN`; the authors' ``shard / full`` column is 1 − this), with draws
    averaged the same way.

    Returns:
        Rows: the other cell keys, ``mode`` (``SHARDED``, ``SHARDED+mediator``…), P_FULL,
        P_mode, value = (P_FULL − P_mode) / P_FULL with lo/hi from the same bootstrap
        draws, n (conversations behind both cells), small.
    """
    t = figures.table
    by = figures.by
    if "reveal" not in by:
        raise ValueError("degradation needs figures computed by reveal (see degradation_figures)")
    others = [b for b in by if b not in ("reveal", "intervention")]
    cols = [*others, "mode", "P_FULL", "P_mode", "value", "lo", "hi", "n", "small"]
    p = t[t["measure"] == "P"]
    out: list[dict[str, object]] = []
    draws: list[np.ndarray | None] = []
    groups = p.groupby(others, dropna=False, sort=True) if others else [((), p)]
    for keys, grp in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        full = grp[grp["reveal"] == "FULL"]
        if full.empty:
            continue
        f = full.sort_values("n", ascending=False).iloc[0]
        f_key = tuple(f[b] for b in by)
        for _, r in grp[grp["reveal"].isin(DEGRADATION_MODES)].iterrows():
            r_key = tuple(r[b] for b in by)
            pf, pm = float(f["value"]), float(r["value"])
            mode = str(r["reveal"]) + (
                f"+{r['intervention']}" if "intervention" in by and str(r["intervention"]) not in ("none", "—") else ""
            )
            df_, dm = figures.draws.get(("P", "", f_key)), figures.draws.get(("P", "", r_key))
            d = None
            if df_ is not None and dm is not None:
                with np.errstate(all="ignore"):
                    d = (df_ - dm) / df_
                d[~np.isfinite(d)] = np.nan
            draws.append(d)
            out.append(
                {
                    **dict(zip(others, keys, strict=True)),
                    "mode": mode,
                    "P_FULL": pf,
                    "P_mode": pm,
                    "value": (pf - pm) / pf if pf else np.nan,
                    "lo": np.nan,
                    "hi": np.nan,
                    "n": int(f["n"] + r["n"]),
                    "small": bool(f["n"] < SMALL_CELL or r["n"] < SMALL_CELL),
                }
            )
    if "task" in others:
        _task_means(out, draws, [b for b in others if b != "task"])
    _fill_intervals(out, draws, level)
    return pd.DataFrame(out, columns=cols)


def _task_means(rows: list[dict[str, object]], draws: list[np.ndarray | None], keys: list[str]) -> None:
    """Append the paper's aggregate: per-family degradations averaged over families, per cell and mode."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, r in enumerate(rows):
        if np.isfinite(cast(float, r["value"])):
            groups.setdefault((*(r[k] for k in keys), r["mode"]), []).append(i)
    for (*key_vals, mode), idx in groups.items():
        d = None
        if all(draws[i] is not None for i in idx):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a draw in which every family is undefined
                d = np.nanmean(np.column_stack([cast(np.ndarray, draws[i]) for i in idx]), axis=1)
        draws.append(d)
        rows.append(
            {
                **dict(zip(keys, key_vals, strict=True)),
                "task": TASK_MEAN,
                "mode": mode,
                "P_FULL": float(np.mean([cast(float, rows[i]["P_FULL"]) for i in idx])),
                "P_mode": float(np.mean([cast(float, rows[i]["P_mode"]) for i in idx])),
                "value": float(np.mean([cast(float, rows[i]["value"]) for i in idx])),
                "lo": np.nan,
                "hi": np.nan,
                "n": int(sum(cast(int, rows[i]["n"]) for i in idx)),
                "small": any(bool(rows[i]["small"]) for i in idx),
            }
        )


def degradation_table(data: AnalysisData, options: Options | None = None) -> tuple[pd.DataFrame, Figures]:
    """Every degradation row the comparison shows, and the pooled figures behind the degradation chart.

    Returns:
        Rows with measure ``degradation`` (per family when ``task`` is among the cell keys,
        and always the paper's aggregate, ``task`` = :data:`TASK_MEAN`) and
        ``degradation_pooled`` (``task`` = :data:`TASK_POOLED`), in the shape of
        :func:`with_degradation`; and the figures by reveal mode with families pooled.
    """
    o = options or Options()
    pooled_fig = degradation_figures(data, o, by_task=False)
    pooled = degradation(pooled_fig, o.level)
    conv = data.conversations
    sharded = conv[(conv["item_kind"] == "sharded").fillna(False).to_numpy(dtype=bool)]
    tasks = sharded["task"].astype("string").fillna("—").unique() if "task" in sharded else np.array(["—"])
    if len(tasks) <= 1:
        # One family: its figures are the pooled ones, and so is their mean.
        one = pooled.assign(task=str(tasks[0]) if len(tasks) else "—")
        mean = one[np.isfinite(one["value"].to_numpy(dtype=float))].assign(task=TASK_MEAN)
        per_task = pd.concat([one, mean], ignore_index=True)
    else:
        per_task = degradation(degradation_figures(data, o), o.level)
    if "task" not in o.by and len(per_task):
        per_task = per_task[per_task["task"] == TASK_MEAN]
    pooled = pooled.assign(task=TASK_POOLED)
    rows = _degradation_rows(per_task, "degradation", o)
    rows_pooled = _degradation_rows(pooled, "degradation_pooled", o)
    return pd.concat([r for r in (rows, rows_pooled) if len(r)] or [rows], ignore_index=True), pooled_fig


def _degradation_rows(deg: pd.DataFrame, measure: str, o: Options) -> pd.DataFrame:
    rows = deg.rename(columns={"mode": "key"}).drop(columns=["P_FULL", "P_mode"])
    rows.insert(0, "measure", measure)
    rows["label_source"] = SCORE_SOURCE
    rows["scoring"] = ATTEMPTED_ONLY if o.attempted_only else PUBLISHED
    return rows


def pairwise(figures: Figures, measure: str, key: str = "", level: float = 0.95, between: str = "model") -> pd.DataFrame:
    """Differences between models (or another cell key) in one measure, with intervals.

    Both models' draws come from the same resampled participants and items, so the
    difference's interval accounts for the shared clustering.

    Returns:
        Rows: the other cell keys, ``a``, ``b``, diff = value(a) − value(b), lo, hi,
        n (conversations behind both), small.
    """
    t = figures.table
    t = t[(t["measure"] == measure) & (t["key"] == key)]
    others = [b for b in figures.by if b != between]
    out: list[dict[str, object]] = []
    draws: list[np.ndarray | None] = []
    groups = t.groupby(others, dropna=False, sort=True) if others else [((), t)]
    for keys, grp in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        rs = grp.sort_values(between).to_dict("records")
        for i, a in enumerate(rs):
            for b in rs[i + 1 :]:
                da = figures.draws.get((measure, key, tuple(a[c] for c in figures.by)))
                db = figures.draws.get((measure, key, tuple(b[c] for c in figures.by)))
                draws.append(da - db if da is not None and db is not None else None)
                n = int(a["n"] + b["n"])
                out.append(
                    {
                        **dict(zip(others, keys, strict=True)),
                        "a": a[between],
                        "b": b[between],
                        "diff": float(a["value"] - b["value"]),
                        "lo": np.nan,
                        "hi": np.nan,
                        "n": n,
                        "small": bool(a["n"] < SMALL_CELL or b["n"] < SMALL_CELL),
                    }
                )
    _fill_intervals(out, draws, level)
    return pd.DataFrame(out, columns=[*others, "a", "b", "diff", "lo", "hi", "n", "small"])


def with_degradation(table: pd.DataFrame, deg: pd.DataFrame) -> pd.DataFrame:
    """The figures table with degradation rows appended.

    ``deg`` holds :func:`degradation_table`'s rows, or :func:`degradation`'s (measure
    ``degradation``, key = mode).
    """
    if deg.empty:
        return table
    if "measure" not in deg:
        deg = deg.rename(columns={"mode": "key"}).drop(columns=["P_FULL", "P_mode"])
        deg.insert(0, "measure", "degradation")
        deg["label_source"] = SCORE_SOURCE
    return pd.concat([table, deg], ignore_index=True)


def comparison(data: AnalysisData, options: Options | None = None) -> pd.DataFrame:
    """Every figure of the comparison page in one table: the measures and the degradation.

    Degradation rows have measure ``degradation`` (per family with ``task`` in the cell
    keys, and the paper's aggregate over families) or ``degradation_pooled``, the reveal
    mode as key, and no condition; the same bootstrap seed is used for every computation.
    """
    o = options or Options()
    return with_degradation(compute(data, o).table, degradation_table(data, o)[0])


# --- Filters and summaries ---------------------------------------------------------------


def select(
    data: AnalysisData,
    *,
    models: Iterable[str] | None = None,
    conditions: Iterable[str] | None = None,
    item_kinds: Iterable[str] | None = None,
    participant_kinds: Iterable[str] | None = None,
) -> AnalysisData:
    """The same frames restricted to some models, conditions, item kinds or participant kinds."""
    conv = data.conversations
    mask = pd.Series(True, index=conv.index)
    if models is not None:
        mask &= conv["model"].isin(list(models))
    if conditions is not None:
        mask &= conv["condition_key"].isin(list(conditions))
    if item_kinds is not None:
        mask &= conv["item_kind"].isin(list(item_kinds))
    if participant_kinds is not None:
        mask &= conv["participant_kind"].isin(list(participant_kinds))
    if bool(mask.all()):
        return data
    conv = conv[mask.to_numpy(dtype=bool)].reset_index(drop=True)
    keep = conv["id"]
    turns = data.turns[data.turns["session_id"].isin(keep)].reset_index(drop=True)
    labels = data.labels[data.labels["turn_id"].isin(turns["id"])].reset_index(drop=True)
    rs = data.repair_sequences[data.repair_sequences["session_id"].isin(keep)].reset_index(drop=True)
    return AnalysisData(
        slug=data.slug,
        versions=data.versions,
        participants=data.participants[data.participants["id"].isin(conv["participant_id"])].reset_index(drop=True),
        conversations=conv,
        turns=turns,
        labels=labels,
        repair_sequences=rs,
        responses=data.responses,
        events=data.events,
        judge_versions=data.judge_versions,
    )
