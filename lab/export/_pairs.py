"""Preference pairs (DPO) between replies at the same point of a conversation.

A *point* is an original assistant reply with branches (:mod:`lab.branch`): the original
and every branch there were generated from the same messages, so a pair's ``prompt`` is
exactly what both sides answered (each branch stores the hash of its prompt; a branch
whose hash differs from its point's is left out). A pair is made under one of
:data:`RULES` from the replies' effective labels (:func:`lab.export._training.effective_labels`)
and rollout outcomes (:mod:`lab.rollout`), each reply at most once per rule and point, or
from people's blind choices between two of the replies (:mod:`lab.preference`): every
comparison whose majority prefers one reply is a ``human_preference`` pair. Every record
carries both sides' labels with their source, their rollout statistics, the point and what
decided the pair.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from ..schema import ChatSession, Turn
from ._bundle import Selection
from ._privacy import Scrubber
from ._training import SFT_SCHEMA, ItemGate, TrainingFilter, _chunks, _conversations, _required, effective_labels

if TYPE_CHECKING:
    from ..preference import Resolution
    from ..rollout import Outcome

_MESSAGE = SFT_SCHEMA["properties"]["messages"]["items"]
_LABEL_SOURCE = {"type": "string", "pattern": "^(gold|majority|human|auto:.+|rollout|none)$"}
_ROLLOUTS = {
    "type": ["object", "null"],
    "required": ["n", "mean", "low", "high"],
    "properties": {"n": {"type": "integer"}, "mean": {"type": "number"}, "low": {"type": "number"}, "high": {"type": "number"}},
    "additionalProperties": False,
}
_REPLY = {
    "type": "object",
    "required": ["turn_id", "kind", "model", "labels", "rollouts"],
    "properties": {
        "turn_id": {"type": "integer"},
        "kind": {"enum": ["original", "branch"]},
        "model": {"type": ["string", "null"]},
        "labels": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["code", "source"],
                "properties": {"code": {"type": "string"}, "source": _LABEL_SOURCE},
                "additionalProperties": False,
            },
        },
        "rollouts": _ROLLOUTS,
    },
    "additionalProperties": False,
}
DPO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Repair Lab DPO preference pair",
    "type": "object",
    "required": [
        "prompt",
        "chosen",
        "rejected",
        "rule",
        "item",
        "point",
        "chosen_label",
        "rejected_label",
        "chosen_source",
        "rejected_source",
        "chosen_reply",
        "rejected_reply",
        "decided_by",
        "chosen_turn_id",
        "rejected_turn_id",
    ],
    "properties": {
        "prompt": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "chosen": {"type": "array", "minItems": 1, "maxItems": 1, "items": _MESSAGE},
        "rejected": {"type": "array", "minItems": 1, "maxItems": 1, "items": _MESSAGE},
        "rule": {"enum": ["outcome", "clarify_when_needed", "correct_premise", "human_preference"]},
        "item": {"type": "string"},
        "point": {
            "type": "object",
            "required": ["turn_id", "conversation_id", "assistant_turn", "revealed", "prompt_sha256"],
            "properties": {
                "turn_id": {"type": "integer"},
                "conversation_id": {"type": "integer"},
                "assistant_turn": {"type": "integer"},
                "revealed": {"type": "array", "items": {"type": "integer"}},
                "prompt_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
            "additionalProperties": False,
        },
        "chosen_label": {"type": "string"},
        "rejected_label": {"type": "string"},
        "chosen_source": _LABEL_SOURCE,
        "rejected_source": _LABEL_SOURCE,
        "chosen_reply": _REPLY,
        "rejected_reply": _REPLY,
        "decided_by": {"type": "object"},
        "chosen_turn_id": {"type": "integer"},
        "rejected_turn_id": {"type": "integer"},
    },
    "additionalProperties": False,
}
"""One DPO pair."""


@dataclass(frozen=True)
class PairRule:
    """How one kind of preference pair is recognised."""

    name: str
    """Recorded in each pair's ``rule``."""
    description: str
    """For the README."""


RULES: tuple[PairRule, ...] = (
    PairRule(
        "outcome",
        "chosen: the reply whose rollouts reach the higher expected task score; rejected: another reply at the same "
        "point, when the difference's 95 % (Welch) interval excludes 0 (two or more rollouts each).",
    ),
    PairRule(
        "clarify_when_needed",
        "while the item still needs information: chosen, a clarifying question (S `clarification`, or a person's G "
        "`CLARIFY`) that asks for what an unrevealed shard holds, with a better expected outcome; rejected, an early "
        "answer (S `answer_attempt` or `hedge`). Once everything needed is known: chosen, an answer (S "
        "`answer_attempt`) whose expected outcome is above 0 and not lower; rejected, a question (over-asking).",
    ),
    PairRule(
        "correct_premise",
        "on a loaded question (false presupposition): chosen, P `REJECT`, `REJECT_CORRECT` or `CLARIFY_ASSUMPTION`; "
        "rejected, P `ACCOMMODATE` or `AMPLIFY`.",
    ),
    PairRule(
        "human_preference",
        'people compared the two replies blind, side by side, on the Compare replies screen ("Which reply serves the '
        'user better at this point?", with a reason): chosen, the reply most of them preferred; rejected, the other. '
        "A majority for a tie gives no pair, and a comparison without a majority is left out.",
    ),
)


# --- DPO ----------------------------------------------------------------------------------------------


LABEL_SOURCES: dict[str, tuple[str, ...] | None] = {"human": ("gold", "majority", "human"), "gold": ("gold",), "any": None}
"""``--label-source``: the sources a pair's deciding labels may come from (None: any, automatic judges too).

``human`` is the source of a pair decided by people's preferences (:mod:`lab.preference`)."""

QUESTION_CODES = ("clarification",)
"""Layer-S codes of a reply that asks the user a clarifying question."""
ANSWER_CODES = ("answer_attempt",)
"""Layer-S codes of a reply that answers the task."""
EARLY_CODES = ("answer_attempt", "hedge")
"""Layer-S codes of a reply that answers (or half-answers) before the information is in."""
CORRECTING_CODES = ("REJECT", "REJECT_CORRECT", "CLARIFY_ASSUMPTION")
"""Layer-P codes of a reply that does not go along with a false premise."""
ACCOMMODATING_CODES = ("ACCOMMODATE", "AMPLIFY")
"""Layer-P codes of a reply that answers inside a false premise."""


@dataclass
class Reply:
    """One reply at a point: the original or a branch, with its labels and rollout outcome."""

    turn_id: int
    kind: str
    """``original`` or ``branch``."""
    text: str
    model: str | None
    labels: dict[str, tuple[str, str]]
    """Layer → (code, source)."""
    outcome: Outcome | None
    prompt_sha256: str | None
    """For a branch: the hash of the prompt it was sampled from."""

    def code(self, layer: str) -> str | None:
        """The effective code on a layer, if any."""
        found = self.labels.get(layer)
        return found[0] if found else None

    def asks(self) -> bool:
        """A clarifying question (layer S, or a person's G ``CLARIFY``)."""
        return self.code("S") in QUESTION_CODES or (self.code("G") == "CLARIFY" and self.code("S") not in EARLY_CODES)

    def describe(self) -> dict[str, Any]:
        """The reply's side of a pair record (text excluded)."""
        return {
            "turn_id": self.turn_id,
            "kind": self.kind,
            "model": self.model,
            "labels": {layer: {"code": c, "source": s} for layer, (c, s) in sorted(self.labels.items())},
            "rollouts": self.outcome.as_dict() if self.outcome is not None else None,
        }


@dataclass
class PointData:
    """A point with branches: the prompt every reply there was generated from, and the replies."""

    turn_id: int
    conversation: int
    item: str
    item_kind: str
    assistant_turn: int
    revealed: list[int]
    needed: list[Any]
    """Shards the item still needs at this point (empty: everything needed is known)."""
    task: bool
    """The item is a task with information to gather (sharded or clarification), so asking can be right or wrong."""
    loaded: bool
    """The question carries a false presupposition."""
    prompt: list[dict[str, str]]
    prompt_sha256: str
    replies: list[Reply] = field(default_factory=list)
    preferences: list[Resolution] = field(default_factory=list)
    """People's decisions on comparisons of two of these replies, with a winning reply (not a tie)."""


def _point_data(
    engine: Engine, convs: dict[int, dict[str, Any]], branches: dict[int, list[tuple[int, str, str | None, str | None]]]
) -> tuple[list[PointData], int]:
    """The points of the selected conversations that have branches; also how many branches had another prompt."""
    from ..branch import point_prompt, prompt_sha256
    from ..dialogue import Conversation
    from ..items import Shard

    t = Turn.__table__.c
    with engine.connect() as conn:
        where = sorted(branches)
        points: list[Any] = []
        for chunk in _chunks(where, 2000):
            points += conn.execute(select(t.id, t.session_id, t.index, t.content, t.model).where(t.id.in_(chunk))).all()
    by_session: dict[int, list[Any]] = defaultdict(list)
    for row in points:
        if row[1] in convs:
            by_session[row[1]].append(row)
    out: list[PointData] = []
    mismatched = 0
    for sid in sorted(by_session):
        conv_row = convs[sid]
        conv = Conversation.load(engine, sid, autolabel=False)
        required = _required(conv_row)
        payload = conv_row["payload"] or {}
        shard_rows = payload.get("shards") if conv_row["item_kind"] == "sharded" else payload.get("missing")
        shards = {int(s["id"]): Shard(id=int(s["id"]), text=str(s["text"])) for s in shard_rows or []}
        loaded = conv_row["item_kind"] == "presupposition" and conv_row.get("presupposition") == "loaded"
        for row in sorted(by_session[sid], key=lambda r: r[2]):
            prompt = point_prompt(conv, row[2])
            if prompt is None:
                continue
            before = [x for x in conv.turns if x.index < row[2]]
            revealed = sorted({s for x in before if x.role == "user" for s in x.shards})
            answered = sum(1 for x in before if x.role == "assistant" and x.error is None and x.content)
            if required is None:
                needed: list[Any] = []
            elif required == {-1}:
                needed = [-1] if answered == 0 else []
            else:
                needed = [shards[i] for i in sorted(required - set(revealed)) if i in shards]
            digest = prompt_sha256(prompt)
            point = PointData(
                row[0],
                sid,
                conv_row["item"],
                conv_row["item_kind"],
                answered + 1,
                revealed,
                needed,
                conv_row["item_kind"] in ("sharded", "clarification"),
                loaded,
                prompt,
                digest,
            )
            point.replies.append(Reply(row[0], "original", row[3], row[4], {}, None, digest))
            for turn_id, text, model, branch_hash in branches[row[0]]:
                if branch_hash != digest:
                    mismatched += 1
                    continue
                point.replies.append(Reply(turn_id, "branch", text, model, {}, None, branch_hash))
            out.append(point)
    return out, mismatched


def _branches(engine: Engine, point_ids: list[int]) -> dict[int, list[tuple[int, str, str | None, str | None]]]:
    """Point turn id → its branch replies (turn id, text, model, prompt hash), in order."""
    s, t = ChatSession.__table__.c, Turn.__table__.c
    out: dict[int, list[tuple[int, str, str | None, str | None]]] = defaultdict(list)
    with engine.connect() as conn:
        for chunk in _chunks(point_ids, 2000):
            for point, turn_id, text, model, params in conn.execute(
                select(s.point_turn_id, t.id, t.content, t.model, t.params)
                .join_from(ChatSession, Turn, t.session_id == s.id)
                .where(
                    s.kind == "branch",
                    s.point_turn_id.in_(chunk),
                    t.role == "assistant",
                    t.error.is_(None),
                    t.partial.is_(False),
                )
                .order_by(t.id)
            ):
                if text.strip():
                    digest = ((params or {}).get("branch") or {}).get("prompt_sha256")
                    out[point].append((turn_id, text, model, digest))
    return out


def _assistant_turn_ids(engine: Engine, session_ids: list[int]) -> list[int]:
    t = Turn.__table__.c
    out: list[int] = []
    with engine.connect() as conn:
        for chunk in _chunks(session_ids):
            out += conn.scalars(select(t.id).where(t.session_id.in_(chunk), t.role == "assistant")).all()
    return out


@dataclass
class DpoReport:
    """What building the pairs found, for the card and for an empty file's notice."""

    points: int = 0
    """Points with branches among the selected conversations."""
    branches: int = 0
    rolled_out: int = 0
    """Replies with rollout outcomes."""
    labelled: dict[str, int] = field(default_factory=dict)
    """Replies at points with an effective label, by layer."""
    mismatched: int = 0
    """Branches whose prompt differs from their point's (the conversation changed since): left out."""
    filtered_by_source: int = 0
    """Pairs left out by ``--label-source``."""
    sources: dict[str, int] = field(default_factory=dict)
    """Deciding labels of the pairs written, by source (two per pair; ``rollout`` for outcome pairs)."""
    preferences_judged: int = 0
    """Comparisons people judged between replies at the selected points."""
    preference_ties: int = 0
    """Of those, decided as a tie by most of the people who judged them: no pair."""
    preference_unresolved: int = 0
    """Of those, without a majority (people split): left out."""


def _outcome_ok(better: Reply, worse: Reply, *, strict: bool) -> bool | None:
    """Whether ``better``'s outcome is higher (``strict``) or not lower; None when only one side was rolled out."""
    if better.outcome is None and worse.outcome is None:
        return True
    if better.outcome is None or worse.outcome is None:
        return None
    return better.outcome.mean > worse.outcome.mean if strict else better.outcome.mean >= worse.outcome.mean


def _pairs_at(point: PointData, rule: str) -> list[tuple[Reply, Reply, dict[str, Any]]]:
    """(chosen, rejected, what decided) under one rule at one point; each reply used at most once."""
    from ..reveal import requested_shard
    from ..rollout import difference

    def by_outcome(r: Reply) -> tuple[float, int]:
        return (-(r.outcome.mean if r.outcome else 0.0), r.turn_id)

    pairs: list[tuple[Reply, Reply, dict[str, Any]]] = []
    used: set[int] = set()
    if rule == "outcome":
        ranked = sorted((r for r in point.replies if r.outcome is not None and r.outcome.n >= 2), key=by_outcome)
        for good in ranked:
            for bad in reversed(ranked):
                if good.turn_id in used or bad.turn_id in used or good is bad:
                    continue
                assert good.outcome is not None and bad.outcome is not None
                diff, low, high = difference(good.outcome, bad.outcome)
                if low > 0:
                    used |= {good.turn_id, bad.turn_id}
                    pairs.append(
                        (good, bad, {"difference": {"mean": round(diff, 6), "low": round(low, 6), "high": round(high, 6)}})
                    )
                    break
        return pairs
    if rule == "clarify_when_needed":
        if not point.task:
            return []
        if point.needed:
            shards = [s for s in point.needed if s != -1]
            chosen = []
            for r in point.replies:
                if not r.asks():
                    continue
                asked = requested_shard(r.text, shards) if shards else None
                if asked is not None or point.needed == [-1]:
                    chosen.append((r, asked))
            rejected = [r for r in point.replies if r.code("S") in EARLY_CODES and not r.asks()]
            for good, asked in sorted(chosen, key=lambda x: by_outcome(x[0])):
                for bad in sorted(rejected, key=lambda r: (-by_outcome(r)[0], r.turn_id)):
                    if bad.turn_id in used or good.turn_id in used:
                        continue
                    if _outcome_ok(good, bad, strict=True):
                        used |= {good.turn_id, bad.turn_id}
                        why = {"case": "asked_when_needed", "asked_for_shard": asked.id if asked is not None else None}
                        pairs.append((good, bad, why))
                        break
            return pairs
        answers = [r for r in point.replies if r.code("S") in ANSWER_CODES and not r.asks()]
        questions = [r for r in point.replies if r.asks()]
        for good in sorted(answers, key=by_outcome):
            for bad in sorted(questions, key=lambda r: r.turn_id):
                if bad.turn_id in used or good.turn_id in used:
                    continue
                # The answer must achieve something: a wrong answer is no better than a needless question.
                if _outcome_ok(good, bad, strict=False) and (good.outcome is None or good.outcome.mean > 0):
                    used |= {good.turn_id, bad.turn_id}
                    pairs.append((good, bad, {"case": "asked_when_known"}))
                    break
        return pairs
    if rule == "human_preference":
        by_id = {r.turn_id: r for r in point.replies}
        for decided in point.preferences:
            c = decided.comparison
            chosen_id, rejected_id = (c.reply_a, c.reply_b) if decided.winner == "a" else (c.reply_b, c.reply_a)
            why = {
                "judgements": sum(decided.counts.values()),
                "for_chosen": decided.counts.get(decided.winner or "", 0),
                "for_rejected": decided.counts.get("b" if decided.winner == "a" else "a", 0),
                "ties": decided.counts.get("tie", 0),
            }
            pairs.append((by_id[chosen_id], by_id[rejected_id], why))
        return pairs
    if rule == "correct_premise" and point.loaded:
        chosen_p = sorted((r for r in point.replies if r.code("P") in CORRECTING_CODES), key=lambda r: r.turn_id)
        rejected_p = sorted((r for r in point.replies if r.code("P") in ACCOMMODATING_CODES), key=lambda r: r.turn_id)
        for good, bad in zip(chosen_p, rejected_p, strict=False):
            pairs.append((good, bad, {}))
    return pairs


def _deciding(rule: str, reply: Reply, *, chosen: bool) -> tuple[str, str]:
    """(layer:code, source) of the label that put a reply on its side."""
    if rule == "outcome":
        return "rollout", "rollout"
    if rule == "human_preference":
        return ("preference:preferred" if chosen else "preference:not_preferred"), "human"
    if rule == "correct_premise":
        layer = "P"
    else:
        # A question known only from a person's G CLARIFY is decided by that label, not by its layer-S code.
        layer = "S" if reply.code("S") in QUESTION_CODES + EARLY_CODES or reply.code("G") != "CLARIFY" else "G"
    found = reply.labels.get(layer)
    return (f"{layer}:{found[0]}", found[1]) if found else (f"{layer}:-", "none")


def _source_allowed(source: str, allowed: tuple[str, ...] | None) -> bool:
    if source == "rollout" or allowed is None:
        return True
    return source in allowed


def _attach_evidence(
    points: list[PointData], labels: Mapping[tuple[int, str], Any], outcomes: Mapping[int, Any], report: DpoReport
) -> None:
    """Give every reply at every point its effective labels and rollout outcome, and count them."""
    for p in points:
        for r in p.replies:
            r.labels = {layer: labels[(r.turn_id, layer)] for layer in ("G", "R", "P", "S") if (r.turn_id, layer) in labels}
            r.outcome = outcomes.get(r.turn_id)
            report.branches += r.kind == "branch"
            report.rolled_out += r.outcome is not None
            for layer in r.labels:
                report.labelled[layer] = report.labelled.get(layer, 0) + 1


def _attach_preferences(points: list[PointData], resolved: Mapping[Any, Resolution], report: DpoReport) -> None:
    """Give every point the people's resolved preferences between its replies; ties and splits are counted only."""
    decided: dict[int, list[Resolution]] = defaultdict(list)
    for comparison, resolution in sorted(resolved.items()):
        decided[comparison.point_turn_id].append(resolution)
    for p in points:
        reply_ids = {r.turn_id for r in p.replies}
        for resolution in decided.get(p.turn_id, []):
            comparison = resolution.comparison
            # A reply left out of the point (its branch answered another prompt) takes its comparisons with it.
            if not {comparison.reply_a, comparison.reply_b} <= reply_ids:
                continue
            report.preferences_judged += 1
            if resolution.winner == "tie":
                report.preference_ties += 1
            elif resolution.winner is None:
                report.preference_unresolved += 1
            else:
                p.preferences.append(resolution)


def dpo_records(
    engine: Engine,
    sel: Selection,
    flt: TrainingFilter,
    gate: ItemGate | None = None,
    report: DpoReport | None = None,
) -> Iterator[dict[str, Any]]:
    """Preference pairs between replies at the same point (the original and its branches), rule by rule."""
    from ..preference import resolved_preferences
    from ..rollout import reply_outcomes

    report = report if report is not None else DpoReport()
    allowed = LABEL_SOURCES[flt.label_source]
    convs = _conversations(engine, sel, flt, gate or ItemGate())
    branches = _branches(engine, _assistant_turn_ids(engine, list(convs)))
    points, report.mismatched = _point_data(engine, convs, branches)
    report.points = len(points)
    ids = [r.turn_id for p in points for r in p.replies]
    labels = effective_labels(engine, turn_ids=ids)
    outcomes = reply_outcomes(engine, [p.turn_id for p in points])
    _attach_evidence(points, labels, outcomes, report)
    _attach_preferences(points, resolved_preferences(engine, [p.turn_id for p in points]), report)
    scrub = Scrubber()
    for rule in RULES:
        for p in points:
            prompt = [{"role": m["role"], "content": scrub.text(m["content"]) or ""} for m in p.prompt]
            for good, bad, why in _pairs_at(p, rule.name):
                (good_label, good_source), (bad_label, bad_source) = (
                    _deciding(rule.name, good, chosen=True),
                    _deciding(rule.name, bad, chosen=False),
                )
                if not (_source_allowed(good_source, allowed) and _source_allowed(bad_source, allowed)):
                    report.filtered_by_source += 1
                    continue
                for src in (good_source, bad_source):
                    report.sources[src] = report.sources.get(src, 0) + 1
                yield {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": scrub.text(good.text) or ""}],
                    "rejected": [{"role": "assistant", "content": scrub.text(bad.text) or ""}],
                    "rule": rule.name,
                    "item": p.item,
                    "point": {
                        "turn_id": p.turn_id,
                        "conversation_id": p.conversation,
                        "assistant_turn": p.assistant_turn,
                        "revealed": p.revealed,
                        "prompt_sha256": p.prompt_sha256,
                    },
                    "chosen_label": good_label,
                    "rejected_label": bad_label,
                    "chosen_source": good_source,
                    "rejected_source": bad_source,
                    "chosen_reply": good.describe(),
                    "rejected_reply": bad.describe(),
                    "decided_by": why,
                    "chosen_turn_id": good.turn_id,
                    "rejected_turn_id": bad.turn_id,
                }
