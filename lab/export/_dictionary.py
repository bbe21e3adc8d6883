"""The bundle's data dictionary: every exported column, and every database column's fate.

Each database column is exported (possibly renamed or pseudonymized), withheld, or stored
elsewhere in the bundle.

The dictionary is the single source for the Parquet/CSV schemas, ``datapackage.json`` and
the README's tables, so what a bundle holds and what its documentation says cannot differ.
A test checks that every column of every database table has an entry here: a column added
to the schema without one fails the suite instead of leaking into (or silently missing
from) a published bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information

JSON_TYPES = ("object", "array", "any")
"""Frictionless types stored as JSON text in Parquet and CSV (objects in JSONL)."""

ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "object": pa.string(),
    "array": pa.string(),
    "any": pa.string(),
}
"""How each Frictionless type is stored in Parquet."""


@dataclass(frozen=True)
class Column:
    """One column of a bundle table."""

    name: str
    """Column name; the database's own name wherever the value comes straight from a column."""
    type: str
    """Frictionless Table Schema type: integer, number, string, boolean, datetime, object, array, any."""
    description: str
    """What the value means, for the data dictionary."""
    source: str | None = None
    """``table.column`` in the database when the value comes from one column (possibly pseudonymized)."""
    required: bool = False
    """True when the value is never missing."""

    @property
    def arrow_type(self) -> pa.DataType:
        """The column's Parquet type."""
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    """One table of a bundle."""

    name: str
    """File and config name (``data/<name>.parquet``)."""
    description: str
    """What one row is."""
    columns: tuple[Column, ...]
    """In file order."""
    primary_key: str | None = "id"
    """Column that identifies a row, when there is one."""

    def schema(self) -> pa.Schema:
        """The table's Arrow schema."""
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in self.columns])

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]


def _c(name: str, type_: str, description: str, source: str | None = None, required: bool = False) -> Column:
    return Column(name, type_, description, source, required)


PARTICIPANTS = Table(
    "participants",
    "One person or simulated user who took part in the study (one row per participant).",
    (
        _c(
            "id",
            "integer",
            "Pseudonymous participant id, numbered 1, 2, … in order of arrival; stable within this bundle only.",
            "participant.id",
            True,
        ),
        _c(
            "study_version",
            "integer",
            "Version of the study (see `bundle.json` → `studies`) the participant took part in.",
            None,
            True,
        ),
        _c(
            "kind",
            "string",
            "`human`, `simulated` (a simulated user) or `pilot` (staff trying the study in a terminal).",
            "participant.kind",
            True,
        ),
        _c(
            "status",
            "string",
            "invited, consented, active, completed, declined, withdrawn or timed_out.",
            "participant.status",
            True,
        ),
        _c(
            "plan", "array", "Assigned `[item key, condition key]` pairs in the order they were given (JSON).", "participant.plan"
        ),
        _c(
            "position",
            "integer",
            "Index into `plan` of the item the participant reached (0-based).",
            "participant.position",
            True,
        ),
        _c(
            "simulator",
            "object",
            "For simulated participants: simulator kind, model, prompt version, persona, run (JSON; secrets removed).",
            "participant.simulator",
        ),
        _c("created_at", "datetime", "When the participant record was created (UTC).", "participant.created_at", True),
        _c("updated_at", "datetime", "Last change to the participant record (UTC).", "participant.updated_at", True),
        _c("consented_at", "datetime", "When consent was given (UTC); empty without consent.", "participant.consented_at"),
        _c("completed_at", "datetime", "When the participant finished the whole study (UTC).", "participant.completed_at"),
    ),
)

CONVERSATIONS = Table(
    "conversations",
    "One conversation: a participant working on one item under one condition with one model.",
    (
        _c("id", "integer", "Conversation id (the database's session id).", "session.id", True),
        _c("participant_id", "integer", "Pseudonymous participant id (`participants.id`).", "session.participant_id", True),
        _c("study_version", "integer", "Study version the conversation belongs to.", None, True),
        _c("item_id", "integer", "Database id of the item (unique within the study version).", "session.item_id", True),
        _c("item", "string", "The item's key in the study spec.", "item.key", True),
        _c("item_kind", "string", "sharded, presupposition, clarification or open.", "item.kind", True),
        _c("condition_id", "integer", "Database id of the condition.", "session.condition_id", True),
        _c("condition", "string", "The condition's key in the study spec.", "condition.key", True),
        _c("reveal", "string", "The condition's reveal mode (FULL, CONCAT, SHARDED, ON_REQUEST, …).", "condition.reveal", True),
        _c(
            "presupposition",
            "string",
            "For presupposition designs: `loaded` or `control`; empty otherwise.",
            "condition.presupposition",
        ),
        _c(
            "intervention",
            "string",
            "The condition's intervention (none, recap, snowball, mediator, …).",
            "condition.intervention",
            True,
        ),
        _c("model_key", "string", "The spec's id of the model under test.", "condition.model_key", True),
        _c("position", "integer", "Order of this item in the participant's plan (0-based).", "session.position", True),
        _c("model", "string", "The litellm model string actually called.", "session.model", True),
        _c(
            "model_params",
            "object",
            "Model parameters used (temperature, max_tokens, seed, …; secrets removed) (JSON).",
            "session.model_params",
            True,
        ),
        _c("status", "string", "pending, active, ended or abandoned.", "session.status", True),
        _c(
            "outcome",
            "string",
            "Why it ended: answered, correct, all_revealed, turn_limit, gave_up, abandoned.",
            "session.outcome",
        ),
        _c("score", "number", "Automatic score of the last answer attempt (0–1), when the item is scorable.", "session.score"),
        _c("probe", "object", "Knowledge probe for presupposition items: question, reply, score (JSON).", "session.probe"),
        _c("started_at", "datetime", "When the conversation started (UTC).", "session.started_at", True),
        _c("ended_at", "datetime", "When it ended (UTC); empty while open.", "session.ended_at"),
    ),
)

ITEMS = Table(
    "items",
    "One task or question of the study (one row per item and study version).",
    (
        _c("id", "integer", "Item id (`conversations.item_id`).", "item.id", True),
        _c("study_version", "integer", "Study version the item belongs to.", None, True),
        _c("key", "string", "The item's id in its item file (`conversations.item`).", "item.key", True),
        _c("kind", "string", "sharded, presupposition, clarification or open.", "item.kind", True),
        _c(
            "payload",
            "object",
            "The item record: shards, gold answer, false presupposition and correction, probe… (JSON).",
            "item.payload",
            True,
        ),
        _c("source_dataset", "string", "Dataset the item was imported from.", "item.source_dataset"),
        _c("source_id", "string", "The item's id in that dataset.", "item.source_id"),
        _c(
            "task",
            "string",
            "Task family that scores the item (code, database, actions, data2text, translation, summary, math, "
            "other); empty when nothing scores it. Derived from the payload.",
        ),
    ),
)

TURNS = Table(
    "turns",
    "One message of a conversation, in order (sorted by conversation, then `index`).",
    (
        _c("id", "integer", "Turn id.", "turn.id", True),
        _c("session_id", "integer", "The conversation (`conversations.id`).", "turn.session_id", True),
        _c(
            "index",
            "integer",
            "Position of the turn in its conversation (increasing from the first turn, no gaps).",
            "turn.index",
            True,
        ),
        _c("role", "string", "system, user, assistant, mediator (a rewrite by a second model) or probe.", "turn.role", True),
        _c(
            "source",
            "string",
            "Who wrote it: participant, simulator, model or lab (engine-made turns such as a recap).",
            "turn.source",
            True,
        ),
        _c("content", "string", "Exactly what was written (participant text verbatim, newlines kept).", "turn.content", True),
        _c(
            "model_content",
            "string",
            "What the model saw for this turn when it differs (SNOWBALL restatements).",
            "turn.model_content",
        ),
        _c("shards", "array", "Shard ids this user turn reveals, in the order revealed (JSON list).", "turn.shards"),
        _c("sent_at", "datetime", "When the turn was sent or the request started (UTC).", "turn.sent_at", True),
        _c("first_token_at", "datetime", "First streamed token of a model turn (UTC).", "turn.first_token_at"),
        _c("last_token_at", "datetime", "Last streamed token of a model turn (UTC).", "turn.last_token_at"),
        _c("model", "string", "Model string that produced the turn (model turns).", "turn.model"),
        _c("params", "object", "Model parameters of the call (JSON; secrets removed).", "turn.params"),
        _c("tokens_in", "integer", "Prompt tokens.", "turn.tokens_in"),
        _c("tokens_out", "integer", "Completion tokens.", "turn.tokens_out"),
        _c("cost", "number", "Cost of the call in US dollars (0 for local and scripted models).", "turn.cost"),
        _c("latency_ms", "number", "Request start to last token, milliseconds.", "turn.latency_ms"),
        _c("ttft_ms", "number", "Request start to first token, milliseconds.", "turn.ttft_ms"),
        _c("finish_reason", "string", "The provider's finish reason (stop, length, …).", "turn.finish_reason"),
        _c("error", "string", "Provider error of an error turn (secrets removed); empty otherwise.", "turn.error"),
        _c("partial", "boolean", "True when the stream was cut (stop, refresh, crash).", "turn.partial", True),
        _c("client", "object", "Browser timing of a participant turn: typing started, edits, visibility (JSON).", "turn.client"),
    ),
)

LABELS = Table(
    "labels",
    "One code on one turn from a person or an automatic judge; newer labels supersede older ones (all are kept).",
    (
        _c("id", "integer", "Label id.", "label.id", True),
        _c("turn_id", "integer", "The labelled turn (`turns.id`).", "label.turn_id", True),
        _c(
            "annotator",
            "string",
            "`auto:<judge>` for automatic judges, `gold:<name>` for gold labels, "
            "else a pseudonym `annotator-N` stable within the bundle.",
            "label.annotator",
            True,
        ),
        _c("source", "string", "human, auto or gold.", None, True),
        _c("codebook_version", "string", "Codebook version the label was made under, when recorded.", None),
        _c(
            "layer",
            "string",
            "Codebook layer: G (grounding), R (repair), P (presupposition), S (response strategy).",
            "label.layer",
            True,
        ),
        _c("code", "string", "The code within its layer (e.g. CLARIFY, REJECT_CORRECT, answer_attempt).", "label.code", True),
        _c("confidence", "number", "Judge confidence (0–1), when given.", "label.confidence"),
        _c("target_turn_id", "integer", "Turn the label points at (e.g. a repair's trouble source).", "label.target_turn_id"),
        _c("span_start", "integer", "Start character of the labelled span in `content`.", "label.span_start"),
        _c("span_end", "integer", "End character (exclusive) of the labelled span.", "label.span_end"),
        _c(
            "meta",
            "object",
            "Judge name, model, rules/prompt version, reasons; for adjudication the decider and each annotator's code "
            "(JSON; private notes removed, staff usernames replaced by their `annotator-N`).",
            "label.meta",
        ),
        _c("supersedes_id", "integer", "The label this one replaces (same annotator, turn and layer).", "label.supersedes_id"),
        _c("created_at", "datetime", "When the label was made (UTC).", "label.created_at", True),
    ),
)

REPAIR_SEQUENCES = Table(
    "repair_sequences",
    "One repair sequence: trouble source → initiation → repair → outcome across turns of a conversation.",
    (
        _c("id", "integer", "Sequence id.", "repair_sequence.id", True),
        _c("session_id", "integer", "The conversation (`conversations.id`).", "repair_sequence.session_id", True),
        _c("annotator", "string", "Who coded it (same pseudonyms as `labels.annotator`).", "repair_sequence.annotator", True),
        _c("trouble_turn_id", "integer", "Turn holding the trouble source.", "repair_sequence.trouble_turn_id"),
        _c("initiation_turn_id", "integer", "Turn initiating the repair.", "repair_sequence.initiation_turn_id"),
        _c("repair_turn_id", "integer", "Turn carrying the repair.", "repair_sequence.repair_turn_id"),
        _c(
            "initiation",
            "string",
            "SI, OI-open, OI-restricted-request, OI-restricted-offer, TPR or FOURTH.",
            "repair_sequence.initiation",
        ),
        _c("initiator", "string", "user or assistant.", "repair_sequence.initiator"),
        _c(
            "trouble_type",
            "string",
            "perception, reference, word sense, intent, missing information, factual/presupposition, format.",
            "repair_sequence.trouble_type",
        ),
        _c("outcome", "string", "resolved, partial, misrepair or unresolved.", "repair_sequence.outcome"),
        _c("turns_to_resolution", "integer", "Turns from initiation to resolution.", "repair_sequence.turns_to_resolution"),
        _c("created_at", "datetime", "When it was coded (UTC).", "repair_sequence.created_at", True),
        _c(
            "span_start",
            "integer",
            "Start of the trouble source within its turn's text (character offset).",
            "repair_sequence.span_start",
        ),
        _c(
            "span_end",
            "integer",
            "End of the trouble source within its turn's text (character offset, exclusive).",
            "repair_sequence.span_end",
        ),
        _c("updated_at", "datetime", "When it was last edited (UTC), if it was.", "repair_sequence.updated_at"),
    ),
)

RESPONSES = Table(
    "responses",
    "A participant's answer to a post-item or post-study question.",
    (
        _c("id", "integer", "Response id.", "response.id", True),
        _c("participant_id", "integer", "Pseudonymous participant id (`participants.id`).", "response.participant_id", True),
        _c(
            "session_id",
            "integer",
            "The conversation a post-item answer is about; empty for post-study answers.",
            "response.session_id",
        ),
        _c("question", "string", "The question's key in the study spec.", "response.question", True),
        _c("value", "object", 'The answer as `{"value": …}` (JSON).', "response.value", True),
        _c("created_at", "datetime", "When it was answered (UTC).", "response.created_at", True),
    ),
)

EVENTS = Table(
    "events",
    "Append-only log: consent, start, reveal, retry, stop, error, page hidden, simulation runs…",
    (
        _c("id", "integer", "Event id.", "event.id", True),
        _c(
            "participant_id",
            "integer",
            "Pseudonymous participant id; empty for study-level events (simulation runs).",
            "event.participant_id",
        ),
        _c("session_id", "integer", "The conversation, when the event belongs to one.", "event.session_id"),
        _c(
            "kind",
            "string",
            "What happened (consent, start, end, item_done, completed, page_hidden, simulate_run, …).",
            "event.kind",
            True,
        ),
        _c("data", "object", "Details of the event (JSON; staff names replaced by `staff`, secrets removed).", "event.data"),
        _c("created_at", "datetime", "When it happened (UTC).", "event.created_at", True),
    ),
)

TABLES: tuple[Table, ...] = (PARTICIPANTS, CONVERSATIONS, TURNS, LABELS, REPAIR_SEQUENCES, RESPONSES, EVENTS, ITEMS)
"""The bundle's tables in file order."""

TABLES_BY_NAME = {t.name: t for t in TABLES}

_BRANCHES = (
    "a bundle holds participants' own conversations only (`kind = conversation`); branches and rollouts reach "
    "the DPO training file, as each pair's `point` and `rollouts`"
)
_SPLIT = "`bundle.json` → `item_split` (item id → `train` or `heldout`); training files' `bundle.json` → `split`"

ELSEWHERE: dict[str, str] = {
    "study.id": "replaced by `study_version` in the tables",
    "study.slug": "`bundle.json` → `study`",
    "study.version": "`study_version` columns and `bundle.json` → `studies`",
    "study.title": "`bundle.json` → `studies[].title`",
    "study.spec": "`spec/v<version>.json` (the normalized spec as stored, items inlined)",
    "study.spec_sha256": "`bundle.json` → `studies[].spec_sha256` (sha256 of the spec's canonical JSON)",
    "study.status": "`bundle.json` → `studies[].status`",
    "study.seed": "`bundle.json` → `studies[].seed`",
    "study.created_at": "`bundle.json` → `studies[].created_at`",
    "condition.id": "`conversations.condition_id`",
    "condition.study_id": "`conversations.study_version`",
    "condition.config": "the spec (`spec/v<version>.json` → `conditions`)",
    "item.study_id": "`items.study_version`",
    "participant.study_id": "`participants.study_version`",
    "session.study_id": "`conversations.study_version`",
    "session.kind": _BRANCHES,
    "session.point_turn_id": _BRANCHES,
    "session.reply_turn_id": _BRANCHES,
    "item_split.id": _SPLIT,
    "item_split.study_slug": _SPLIT,
    "item_split.item_key": _SPLIT,
    "item_split.split": _SPLIT,
    "item_split.family": _SPLIT,
    "item_split.heldout": _SPLIT,
    "item_split.seed": _SPLIT,
    "item_split.created_at": _SPLIT,
}
"""Database columns whose content reaches the bundle in another form or file."""

_ANNOTATION_BOOKKEEPING = "annotation bookkeeping (who holds which conversation, gold checks) stays in the lab"
_SIMULATION_CLAIMS = "which simulation worker runs which unit is bookkeeping of a run: the conversations carry the run"
_SIGN_IN_GUARD = "failed staff sign-ins (client addresses, usernames tried) feed the sign-in limits: never exported"
_PREFERENCES = (
    "people's preferences between replies at a point reach training files as pairs (`--format dpo`, rule "
    "`human_preference`, without annotator names); bundles hold the participants' conversations only"
)

WITHHELD: dict[str, str] = {
    "participant.token_hash": "a hash of the personal link token: never exported",
    "participant.prolific_pid": "Prolific id: only with `--include-prolific-ids`, in the separate `private/prolific_ids.csv`",
    "participant.prolific_study_id": "Prolific id: only with `--include-prolific-ids`, in `private/prolific_ids.csv`",
    "participant.prolific_session_id": "Prolific id: only with `--include-prolific-ids`, in `private/prolific_ids.csv`",
    "participant.completion_code": "payment code: only with `--include-prolific-ids`, in `private/prolific_ids.csv`",
    "study.source_path": "a path on the lab's server: never exported",
    "study.updated_at": "bookkeeping of the lab's server: not exported",
    "study.spec_text": "the spec as written may hold comments and keys: the bundle carries the normalized spec instead",
    "repair_sequence.account_id": "a staff account: never exported (`annotator` carries a pseudonym)",
    "label.account_id": "a staff account: never exported (`annotator` carries a pseudonym)",
    "account.id": "staff accounts are never exported",
    "account.username": "staff accounts are never exported",
    "account.role": "staff accounts are never exported",
    "account.password_hash": "staff accounts are never exported",
    "account.active": "staff accounts are never exported",
    "account.created_at": "staff accounts are never exported",
    "account.last_login_at": "staff accounts are never exported",
    "participant_withdrawal.id": "withdrawal records hold no content and stay in the lab",
    "participant_withdrawal.study_id": "withdrawal records stay in the lab",
    "participant_withdrawal.kind": "withdrawal records stay in the lab",
    "participant_withdrawal.status": "withdrawal records stay in the lab",
    "participant_withdrawal.withdrawn_at": "withdrawal records stay in the lab",
    "participant_withdrawal.by": "withdrawal records stay in the lab",
    "annotation_assignment.id": _ANNOTATION_BOOKKEEPING,
    "annotation_assignment.study_slug": _ANNOTATION_BOOKKEEPING,
    "annotation_assignment.account_id": _ANNOTATION_BOOKKEEPING,
    "annotation_assignment.per_conversation": _ANNOTATION_BOOKKEEPING,
    "annotation_assignment.sees_prelabels": _ANNOTATION_BOOKKEEPING,
    "annotation_assignment.created_at": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.id": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.study_slug": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.session_id": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.slot": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.account_id": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.status": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.claimed_at": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.touched_at": _ANNOTATION_BOOKKEEPING,
    "annotation_slot.done_at": _ANNOTATION_BOOKKEEPING,
    "annotation_check.id": _ANNOTATION_BOOKKEEPING,
    "annotation_check.turn_id": _ANNOTATION_BOOKKEEPING,
    "annotation_check.layer": _ANNOTATION_BOOKKEEPING,
    "annotation_check.code": _ANNOTATION_BOOKKEEPING,
    "annotation_check.account_id": _ANNOTATION_BOOKKEEPING,
    "annotation_check.created_at": _ANNOTATION_BOOKKEEPING,
    "repair_sequence.meta": "edit history and rule versions, which may name staff accounts: not exported",
    "sign_in_failure.id": _SIGN_IN_GUARD,
    "sign_in_failure.kind": _SIGN_IN_GUARD,
    "sign_in_failure.key": _SIGN_IN_GUARD,
    "sign_in_failure.failed_at": _SIGN_IN_GUARD,
    "simulation_claim.id": _SIMULATION_CLAIMS,
    "simulation_claim.run_id": _SIMULATION_CLAIMS,
    "simulation_claim.study_id": _SIMULATION_CLAIMS,
    "simulation_claim.unit": _SIMULATION_CLAIMS,
    "simulation_claim.position": _SIMULATION_CLAIMS,
    "simulation_claim.state": _SIMULATION_CLAIMS,
    "simulation_claim.participant_id": _SIMULATION_CLAIMS,
    "simulation_claim.worker": _SIMULATION_CLAIMS,
    "simulation_claim.attempts": _SIMULATION_CLAIMS,
    "simulation_claim.claimed_at": _SIMULATION_CLAIMS,
    "simulation_claim.expires_at": _SIMULATION_CLAIMS,
    "simulation_claim.done_at": _SIMULATION_CLAIMS,
    "preference_judgement.id": _PREFERENCES,
    "preference_judgement.study_slug": _PREFERENCES,
    "preference_judgement.point_turn_id": _PREFERENCES,
    "preference_judgement.reply_a_turn_id": _PREFERENCES,
    "preference_judgement.reply_b_turn_id": _PREFERENCES,
    "preference_judgement.left": _PREFERENCES,
    "preference_judgement.choice": _PREFERENCES,
    "preference_judgement.reason": _PREFERENCES,
    "preference_judgement.annotator": _PREFERENCES,
    "preference_judgement.account_id": _PREFERENCES,
    "preference_judgement.seconds": _PREFERENCES,
    "preference_judgement.supersedes_id": _PREFERENCES,
    "preference_judgement.created_at": _PREFERENCES,
}
"""Database columns that never enter a bundle (unless a flag named here asks for them)."""


def exported_sources() -> dict[str, str]:
    """``table.column`` → ``bundle_table.column`` for every database column exported directly."""
    return {c.source: f"{t.name}.{c.name}" for t in TABLES for c in t.columns if c.source is not None}


def fate(db_column: str) -> str | None:
    """What happens to a database column (``table.column``) in a bundle, or None when undocumented."""
    exported = exported_sources().get(db_column)
    if exported is not None:
        return f"exported as `{exported}`"
    if db_column in ELSEWHERE:
        return ELSEWHERE[db_column]
    if db_column in WITHHELD:
        return f"withheld: {WITHHELD[db_column]}"
    return None
