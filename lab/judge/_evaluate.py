"""Measured accuracy of the automatic judges on labelled and published text.

A judge is scored on *evaluation sets*: hand-labelled replies kept in ``tests/data`` (a
development half the rules were written from and a held-out half that never was), and
human-written text from published datasets when ``../shared/datasets`` (or a folder named
on the command line) is present: FalseQA's rebuttals, each judged as a reply to its own
loaded question with the item's *other* rebuttals as its correction list, and CLAMBER's gold
clarifying questions. Published sets are split by record parity into a development half
(odd records, which rules may be checked against) and a held-out half (even records).

Every figure counts abstentions (code :data:`~lab.judge.ABSTAIN`) apart: precision and
recall are computed over the cases a judge labelled, and the abstention rate says how often
it declined to guess.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lab.items import Answer, ClarificationItem, PresuppositionItem, Shard, ShardedItem, Source, import_clamber, import_falseqa

from ._grounding import GROUNDING_CODES, join_codes, split_codes
from ._judgement import ABSTAIN, Judgement, judge_annotator
from ._repair import TurnText, find_repairs

if TYPE_CHECKING:
    from lab.items import Item

Split = Literal["development", "held-out", "published-development", "published-held-out"]

ERROR = "(error)"
"""The column of cases the judge could not label at all (a failed model call)."""


@dataclass(frozen=True)
class Case:
    """One reply with its expected label."""

    id: str
    """Stable id within its set."""

    reply: str
    """The text to label."""

    expected: str
    """The gold label: a code, or for published text a name for what it is (``rebuttal``)."""

    accept: frozenset[str]
    """Codes that count as correct (one code for labelled sets; several for published text)."""

    item: Item | None = None
    """The item the reply answers (its task, loaded question, corrections)."""

    control: bool = False
    """Layer P: the reply answers the control question."""

    speaker: str = "assistant"
    """Layer G: who speaks the turn (``user`` or ``assistant``)."""

    previous: str = ""
    """Layer G: the other speaker's turn just before it."""


@dataclass
class EvalSet:
    """A named set of cases on one layer."""

    name: str
    """Short name printed in reports (``heldout-S``, ``falseqa``…)."""

    layer: str
    """Codebook layer: S, P or G."""

    split: Split
    """Whether rules were written from it (development) or not (held-out)."""

    cases: list[Case]
    """The cases, in file order."""

    note: str = ""
    """What a reader needs to know about the set (its source, how gold was obtained)."""


@dataclass(frozen=True)
class CodeFigures:
    """Per-code figures of one evaluation."""

    code: str
    """The code (a row of the confusion matrix or a predicted column)."""

    support: int
    """Cases whose gold label is this code."""

    predicted: int
    """Cases the judge gave this code."""

    precision: float | None
    """Share of the judge's uses of the code that were correct; None when never used."""

    recall: float | None
    """Share of the code's cases labelled correctly (abstentions count as misses); None without support."""

    abstained: float | None
    """Share of the code's cases on which the judge abstained; None without support."""


@dataclass
class Evaluation:
    """A judge scored on one evaluation set."""

    set: EvalSet
    """What was scored."""

    judge: str
    """Annotator name of the judge (``auto:rules``, ``auto:llm:<model>``)."""

    predicted: list[str]
    """The judge's code per case (``UNSURE`` for abstentions, ``(error)`` for failures); G codes joined by ``+``."""

    correct: list[bool]
    """Whether each prediction is acceptable."""

    per_code: list[CodeFigures] = field(default_factory=list)
    """Precision, recall and abstention per code."""

    @property
    def n(self) -> int:
        """Number of cases."""
        return len(self.predicted)

    @property
    def abstention_rate(self) -> float:
        """Share of cases the judge abstained on."""
        return sum(p == ABSTAIN for p in self.predicted) / self.n if self.n else 0.0

    @property
    def error_rate(self) -> float:
        """Share of cases the judge failed on (no label, no abstention)."""
        return sum(p == ERROR for p in self.predicted) / self.n if self.n else 0.0

    @property
    def accuracy(self) -> float:
        """Share of all cases labelled acceptably (abstentions count as misses)."""
        return sum(self.correct) / self.n if self.n else 0.0

    @property
    def answered_accuracy(self) -> float | None:
        """Share of the labelled (not abstained, not failed) cases labelled acceptably."""
        answered = [c for c, p in zip(self.correct, self.predicted, strict=True) if p not in (ABSTAIN, ERROR)]
        return sum(answered) / len(answered) if answered else None

    def share(self, codes: Iterable[str]) -> float:
        """Share of all cases the judge gave one of ``codes``."""
        wanted = set(codes)
        return sum(p in wanted for p in self.predicted) / self.n if self.n else 0.0

    def confusion(self) -> dict[str, Counter[str]]:
        """Gold label → counts of the judge's codes."""
        matrix: dict[str, Counter[str]] = {}
        for case, p in zip(self.set.cases, self.predicted, strict=True):
            matrix.setdefault(case.expected, Counter())[p] += 1
        return matrix


# ---------------------------------------------------------------- loading sets


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_for_task(task: str | None) -> Item | None:
    """A Lost-in-Conversation-like item of a task, so the judge knows the answer form (math has a number answer)."""
    if task is None:
        return None
    answer = Answer(type="number", value="0") if task == "math" else Answer()
    return ShardedItem(
        id=f"labelled-{task}",
        shards=[Shard(id=1, text="the opening request"), Shard(id=2, text="one more detail")],
        answer=answer,
        source=Source(dataset="lost_in_conversation", task=task),
    )


def labelled_strategy(path: Path, name: str, split: Split) -> EvalSet:
    """Layer-S replies labelled by hand: ``{id, task, expected, reason, reply}`` per line."""
    cases = [
        Case(r["id"], r["reply"], r["expected"], frozenset({r["expected"]}), item_for_task(r.get("task"))) for r in _jsonl(path)
    ]
    return EvalSet(name, "S", split, cases, f"{path.name}: assistant replies labelled by the codebook")


def labelled_presupposition(path: Path, name: str, split: Split) -> EvalSet:
    """Layer-P replies labelled by hand: ``{id, item: {loaded, presupposition, correction}, expected, reason, reply}``."""
    cases = []
    for r in _jsonl(path):
        spec = r["item"]
        item = PresuppositionItem(
            id=spec.get("id", r["id"]),
            loaded=spec["loaded"],
            presupposition=spec.get("presupposition"),
            correction=spec.get("correction", []),
        )
        cases.append(Case(r["id"], r["reply"], r["expected"], frozenset({r["expected"]}), item, bool(r.get("control"))))
    return EvalSet(name, "P", split, cases, f"{path.name}: replies to loaded questions labelled by the codebook")


def labelled_grounding(path: Path, name: str, split: Split) -> EvalSet:
    """Layer-G turns labelled by hand: ``{id, speaker, previous, turn, expected: [codes], reason}``."""
    cases = []
    for r in _jsonl(path):
        gold = join_codes(r["expected"])
        cases.append(Case(r["id"], r["turn"], gold, frozenset({gold}), speaker=r["speaker"], previous=r.get("previous", "")))
    return EvalSet(name, "G", split, cases, f"{path.name}: user and assistant turns labelled by the codebook")


def _half(record: int, held_out: bool) -> bool:
    return (record % 2 == 0) == held_out


def falseqa_rebuttals(path: Path, *, held_out: bool) -> EvalSet:
    """FalseQA's human rebuttals as replies to their own loaded questions.

    Each rebuttal of a false-premise question is one case; the item's correction list is
    the question's *other* rebuttals (a rebuttal is never compared with itself, nor with a
    copy of itself that the dataset lists twice). Every
    rebuttal rejects the premise, so ``REJECT`` and ``REJECT_CORRECT`` are both correct.

    Args:
        path: FalseQA's ``test.csv``.
        held_out: The even pairs (held out) or the odd pairs (development).
    """
    report = import_falseqa(path)
    cases = []
    for item in report.items:
        if not isinstance(item, PresuppositionItem) or "loaded" not in item.tags:
            continue
        pair = int(item.gold["pair"])
        if not _half(pair, held_out):
            continue
        for i, rebuttal in enumerate(item.correction):
            # A rebuttal listed twice must not be its own correction.
            others = [c for c in item.correction if c.strip().lower() != rebuttal.strip().lower()]
            as_reply = item.model_copy(update={"correction": others})
            cases.append(Case(f"{item.id}/{i + 1}", rebuttal, "rebuttal", frozenset({"REJECT", "REJECT_CORRECT"}), as_reply))
    split: Split = "published-held-out" if held_out else "published-development"
    half = "even" if held_out else "odd"
    return EvalSet(
        f"falseqa-{'heldout' if held_out else 'dev'}",
        "P",
        split,
        cases,
        f"FalseQA test.csv, {half} pairs: human rebuttals judged as replies to their loaded question",
    )


def clamber_questions(path: Path, *, held_out: bool) -> EvalSet:
    """CLAMBER's gold clarifying questions as replies to the queries that need them.

    Asking is correct: ``clarification`` or ``interrogation``.

    Args:
        path: ``clamber_benchmark.jsonl``.
        held_out: The even lines (held out) or the odd lines (development).
    """
    report = import_clamber(path)
    cases = []
    for item in report.items:
        if not isinstance(item, ClarificationItem) or not item.needs_clarification or not item.clarifying_question:
            continue
        if not _half(int(item.source.id or 0), held_out):
            continue
        cases.append(
            Case(item.id, item.clarifying_question, "clarifying question", frozenset({"clarification", "interrogation"}), item)
        )
    split: Split = "published-held-out" if held_out else "published-development"
    return EvalSet(
        f"clamber-{'heldout' if held_out else 'dev'}",
        "S",
        split,
        cases,
        f"CLAMBER, {'even' if held_out else 'odd'} lines needing clarification: the gold clarifying question as the reply",
    )


def default_sets(root: Path, datasets: Path | None, layers: Iterable[str] = ("S", "P", "G")) -> list[EvalSet]:
    """Every evaluation set that is present.

    Args:
        root: The project folder (``tests/data`` and ``tests/judge`` are read from it).
        datasets: The folder holding ``falseqa/test.csv`` and ``clamber/clamber_benchmark.jsonl``;
            published sets are skipped when it (or a file) is absent.
        layers: Layers to include.
    """
    wanted = set(layers)
    data = root / "tests" / "data"
    sets: list[EvalSet] = []
    candidates: list[tuple[str, Path, Callable[[Path, str, Split], EvalSet], str, Split]] = [
        ("S", root / "tests" / "judge" / "labelled_turns.jsonl", labelled_strategy, "dev-S", "development"),
        ("S", data / "heldout_strategy.jsonl", labelled_strategy, "heldout-S", "held-out"),
        ("P", data / "dev_presupposition.jsonl", labelled_presupposition, "dev-P", "development"),
        ("P", data / "heldout_presupposition.jsonl", labelled_presupposition, "heldout-P", "held-out"),
        ("G", data / "dev_grounding.jsonl", labelled_grounding, "dev-G", "development"),
        ("G", data / "heldout_grounding.jsonl", labelled_grounding, "heldout-G", "held-out"),
    ]
    for layer, path, load, name, split in candidates:
        if layer in wanted and path.exists():
            sets.append(load(path, name, split))
    if datasets is not None:
        falseqa = datasets / "falseqa" / "test.csv"
        clamber = datasets / "clamber" / "clamber_benchmark.jsonl"
        if "P" in wanted and falseqa.exists():
            sets += [falseqa_rebuttals(falseqa, held_out=False), falseqa_rebuttals(falseqa, held_out=True)]
        if "S" in wanted and clamber.exists():
            sets += [clamber_questions(clamber, held_out=False), clamber_questions(clamber, held_out=True)]
    return sets


# ---------------------------------------------------------------- scoring


def _label(j: Judgement) -> str:
    return ERROR if j.error else j.code


def judge_case(judge: Any, layer: str, case: Case) -> Judgement:
    """Run one judge on one case of a layer."""
    if layer == "S":
        return judge.classify(case.reply, item=case.item)
    if layer == "P":
        return judge.classify_presupposition(case.item, case.reply, case.control)
    if layer == "G":
        return judge.classify_grounding(case.reply, speaker=case.speaker, previous=case.previous)
    raise ValueError(f"layer {layer!r}: expected S, P or G")


def evaluate(judge: Any, evalset: EvalSet, annotator: str | None = None) -> Evaluation:
    """Score a judge on an evaluation set.

    Args:
        judge: A judge with ``classify`` (S), ``classify_presupposition`` (P) and, for G,
            ``classify_grounding``.
        evalset: The cases.
        annotator: The name to report (default ``auto:<judge.name>``).

    Returns:
        Predictions, correctness and per-code figures.
    """
    predicted = [_label(judge_case(judge, evalset.layer, case)) for case in evalset.cases]
    correct = [p in case.accept for p, case in zip(predicted, evalset.cases, strict=True)]
    name = annotator or judge_annotator(judge.name, getattr(judge, "model", None))
    ev = Evaluation(evalset, name, predicted, correct)
    ev.per_code = _per_code(ev)
    return ev


def _per_code(ev: Evaluation) -> list[CodeFigures]:
    if ev.set.layer == "G":
        return _per_code_multilabel(ev)
    gold = [c.expected for c in ev.set.cases]
    codes = sorted(set(gold) | {p for p in ev.predicted if p not in (ABSTAIN, ERROR)})
    figures = []
    for code in codes:
        support = [i for i, g in enumerate(gold) if g == code]
        used = [i for i, p in enumerate(ev.predicted) if p == code]
        figures.append(
            CodeFigures(
                code,
                len(support),
                len(used),
                sum(ev.correct[i] for i in used) / len(used) if used else None,
                sum(ev.correct[i] for i in support) / len(support) if support else None,
                sum(ev.predicted[i] == ABSTAIN for i in support) / len(support) if support else None,
            )
        )
    return figures


def _per_code_multilabel(ev: Evaluation) -> list[CodeFigures]:
    gold = [set(split_codes(c.expected)) for c in ev.set.cases]
    pred = [set() if p in (ABSTAIN, ERROR) else set(split_codes(p)) for p in ev.predicted]
    figures = []
    for code in GROUNDING_CODES:
        support = [i for i, g in enumerate(gold) if code in g]
        used = [i for i, p in enumerate(pred) if code in p]
        hits = [i for i in used if code in gold[i]]
        abstained = [i for i in support if ev.predicted[i] == ABSTAIN]
        figures.append(
            CodeFigures(
                code,
                len(support),
                len(used),
                len(hits) / len(used) if used else None,
                len(hits) / len(support) if support else None,
                len(abstained) / len(support) if support else None,
            )
        )
    return figures


# ---------------------------------------------------------------- reporting


def _pct(x: float | None) -> str:
    return "   –" if x is None else f"{x:4.0%}"


TARGETS: dict[str, tuple[str, Callable[[Evaluation], float], str, float]] = {
    "falseqa": ("labelled ACCOMMODATE or AMPLIFY", lambda e: e.share({"ACCOMMODATE", "AMPLIFY"}), "<=", 0.10),
    "clamber": ("labelled clarification or interrogation", lambda e: e.share({"clarification", "interrogation"}), ">=", 0.90),
}
"""Targets on published text: (what, figure, comparison, bound) by set family."""

ABSTENTION_TARGET = 0.25
"""A judge that abstains on a quarter of the cases or more leaves too much to people."""


def target_lines(ev: Evaluation) -> list[str]:
    """The target checks that apply to an evaluation (published sets), each with ``met``/``NOT met``."""
    family = ev.set.name.split("-")[0]
    lines = []
    if family in TARGETS:
        what, figure, op, bound = TARGETS[family]
        if ev.error_rate >= 1.0:
            return [f"target: {what} — not judged: no usable judge output"]
        value = figure(ev)
        # Unusable output could have been anything: a bound is met only if it holds whatever they were.
        met = value + ev.error_rate <= bound if op == "<=" else value >= bound
        lines.append(f"target: {what} {value:.1%} (want {op} {bound:.0%}) — {'met' if met else 'NOT met'}")
        met = ev.abstention_rate + ev.error_rate < ABSTENTION_TARGET
        lines.append(
            f"target: abstention {ev.abstention_rate:.1%} (want < {ABSTENTION_TARGET:.0%}) — {'met' if met else 'NOT met'}"
        )
    return lines


def format_evaluation(ev: Evaluation) -> str:
    """A plain-text report: summary line, per-code table, confusion matrix, target checks."""
    s = ev.set
    out = [
        f"== {s.name} (layer {s.layer}, {s.split}, {ev.n} cases) — {ev.judge}",
        f"   {s.note}",
        f"   accuracy {ev.accuracy:.1%} · on labelled cases {_pct(ev.answered_accuracy).strip()} · "
        f"abstained {ev.abstention_rate:.1%}" + (f" · errors {ev.error_rate:.1%}" if ev.error_rate else ""),
    ]
    out += ["   " + line for line in target_lines(ev)]
    out.append(f"   {'code':<22} {'gold':>5} {'used':>5} {'prec':>5} {'recall':>6} {'abstain':>7}")
    for f in ev.per_code:
        out.append(
            f"   {f.code:<22} {f.support:>5} {f.predicted:>5} {_pct(f.precision):>5} {_pct(f.recall):>6} {_pct(f.abstained):>7}"
        )
    matrix = ev.confusion()
    columns = sorted({p for row in matrix.values() for p in row}, key=lambda c: (c in (ABSTAIN, ERROR), c))
    widths = [max(len(c), 4) for c in columns]
    out.append("   confusion (rows gold, columns judge):")
    out.append("   " + " " * 22 + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for gold in sorted(matrix):
        row = matrix[gold]
        out.append(f"   {gold[:22]:<22}" + " ".join(f"{row.get(c, 0):>{w}}" for c, w in zip(columns, widths, strict=True)))
    return "\n".join(out)


def format_summary(evaluations: list[Evaluation], rates: list[float] | None = None) -> str:
    """One line per evaluation (share right, right among labelled, abstention), with target checks.

    Args:
        evaluations: The evaluations to list.
        rates: Cases per second for each evaluation, when measured (bench/judge_accuracy.py).
    """
    head = f"{'set':<18} {'layer':>5} {'split':<22} {'cases':>6} {'right':>6} {'labelled right':>14} {'abstain':>7}"
    out = [head + (f" {'cases/s':>8}" if rates else "")]
    for i, ev in enumerate(evaluations):
        answered = "–" if ev.answered_accuracy is None else f"{ev.answered_accuracy:.1%}"
        line = (
            f"{ev.set.name:<18} {ev.set.layer:>5} {ev.set.split:<22} {ev.n:>6} {ev.accuracy:>6.1%} {answered:>14} "
            f"{ev.abstention_rate:>7.1%}"
        )
        if rates:
            line += f" {rates[i]:>8.0f}"
        if ev.error_rate:
            line += f"  ({ev.error_rate:.0%} unusable judge output)"
        out.append(line)
        out += [f"{'':<18} {t}" for t in target_lines(ev)]
    return "\n".join(out)


# ---------------------------------------------------------------- layer R


@dataclass
class RepairEvaluation:
    """The repair-candidate finder scored on conversations with hand-marked repair sequences."""

    name: str
    """Set name (``heldout-R``)."""

    conversations: int
    """Conversations scored."""

    expected: list[tuple[str, int, str]]
    """Marked sequences as (conversation, initiation turn position, initiation type)."""

    found: list[tuple[str, int, str]]
    """Candidates as (conversation, initiation turn position, initiation type)."""

    @property
    def detection(self) -> tuple[float | None, float | None]:
        """Precision and recall of initiation turns, whatever their type."""
        expected = {(c, t) for c, t, _ in self.expected}
        found = {(c, t) for c, t, _ in self.found}
        hits = len(expected & found)
        return (hits / len(found) if found else None, hits / len(expected) if expected else None)

    def per_type(self) -> list[CodeFigures]:
        """Precision and recall per initiation type (a candidate must match turn and type)."""
        expected, found = set(self.expected), set(self.found)
        types = sorted({k for _, _, k in expected | found})
        out = []
        for kind in types:
            e = {x for x in expected if x[2] == kind}
            f = {x for x in found if x[2] == kind}
            hits = len(e & f)
            out.append(CodeFigures(kind, len(e), len(f), hits / len(f) if f else None, hits / len(e) if e else None, None))
        return out


def evaluate_repairs(path: Path, name: str = "heldout-R") -> RepairEvaluation:
    """Score :func:`lab.judge.find_repairs` on hand-marked conversations.

    Each line: ``{id, turns: [{role, content}], expected: [{initiation, initiation_turn, …}], reason}``;
    turn positions count from 0.
    """
    expected: list[tuple[str, int, str]] = []
    found: list[tuple[str, int, str]] = []
    rows = _jsonl(path)
    for r in rows:
        turns = [TurnText(i, t["role"], t["content"]) for i, t in enumerate(r["turns"])]
        expected += [(r["id"], e["initiation_turn"], e["initiation"]) for e in r["expected"]]
        found += [(r["id"], c.initiation_turn_id, c.initiation) for c in find_repairs(turns)]
    return RepairEvaluation(name, len(rows), expected, found)


def format_repair_evaluation(ev: RepairEvaluation) -> str:
    """A plain-text report of the repair-candidate finder's figures."""
    precision, recall = ev.detection
    out = [
        f"== {ev.name} (layer R, held-out, {ev.conversations} conversations, {len(ev.expected)} marked sequences) — auto:rules",
        f"   initiation turns found: precision {_pct(precision).strip()} · recall {_pct(recall).strip()}",
        f"   {'initiation':<22} {'gold':>5} {'found':>5} {'prec':>5} {'recall':>6}",
    ]
    for f in ev.per_type():
        out.append(f"   {f.code:<22} {f.support:>5} {f.predicted:>5} {_pct(f.precision):>5} {_pct(f.recall):>6}")
    return "\n".join(out)
