"""Study specs: a YAML file declares a whole study; it is validated fully before anything is written.

Every error names the file, the line and the field, and says what is expected, e.g.
``studies/demo.yaml:14: conditions.sharded.model: unknown model 'gpt5' (declared: smollm2)``.
The normalized spec (item files inlined, defaults filled) is what the database stores,
with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from .errors import LabError
from .items import Item, ItemError, parse_item, read_items
from .items._item import format_validation_error

RevealMode = Literal["FULL", "CONCAT", "SHARDED", "SNOWBALL", "RECAP", "ON_REQUEST"]
REVEAL_MODES: tuple[str, ...] = ("FULL", "CONCAT", "SHARDED", "SNOWBALL", "RECAP", "ON_REQUEST")
Intervention = Literal["none", "system-prompt", "mediator"]
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Spec):
    """A model the study may call, under an id the rest of the spec uses."""

    model: str = Field(min_length=1)
    """litellm model string, e.g. ``local/smollm2-135m``, ``openai/gpt-4o-mini``, ``lab/scripted``."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Passed to every call: temperature, max_tokens, seed, api_base…"""

    optional: bool = False
    """When its API key is missing, conditions using it are left out instead of failing."""


class ConditionSpec(_Spec):
    """One cell of the design."""

    model: str
    """Id of the model under test (a key of ``models``)."""

    reveal: RevealMode = "FULL"
    """How the task reaches the model: FULL, CONCAT, SHARDED, SNOWBALL, RECAP, ON_REQUEST."""

    presupposition: Literal["loaded", "control"] | None = None
    """For presupposition items: ask the loaded question or its control twin."""

    intervention: Intervention = "none"
    """none, system-prompt (``system_prompt`` replaces the default) or mediator."""

    system_prompt: str | None = None
    """System prompt for the model under test (required by the system-prompt intervention)."""

    mediator_model: str | None = None
    """Model id that rewrites the history for the mediator intervention (default: ``model``)."""

    kinds: list[Literal["sharded", "presupposition", "clarification", "open"]] | None = None
    """Item kinds this condition applies to (default: presupposition items when
    ``presupposition`` is set, every other kind otherwise)."""

    items: list[str] | None = None
    """Restrict the condition to these item ids."""

    label: str | None = None
    """Name shown to experimenters (never to participants)."""

    @model_validator(mode="after")
    def _intervention_needs(self) -> ConditionSpec:
        if self.intervention == "system-prompt" and not self.system_prompt:
            raise ValueError("intervention 'system-prompt' needs a 'system_prompt'")
        if self.mediator_model and self.intervention != "mediator":
            raise ValueError("'mediator_model' is only used with intervention 'mediator'")
        return self

    def applies_to(self, item: Item) -> bool:
        """Whether an item can be run under this condition."""
        if self.items is not None and item.id not in self.items:
            return False
        if self.kinds is not None:
            return item.kind in self.kinds
        if self.presupposition is not None:
            return item.kind == "presupposition"
        return item.kind != "presupposition"


class PlanSpec(_Spec):
    """How items and conditions are handed to each participant."""

    items_per_participant: int | None = Field(default=None, ge=1)
    """How many items one participant does (default: all items, each under one condition)."""

    design: Literal["within", "between"] = "within"
    """within: a participant meets several conditions; between: one condition per participant."""

    balance: Literal["latin-square", "least-filled", "random"] = "least-filled"
    """How cells are filled evenly across participants."""

    order: Literal["random", "fixed"] = "random"
    """Item order per participant (random is reproducible from the seed)."""

    seed: int = 0
    """Seeds assignment and item order."""

    turn_limit: int = Field(default=12, ge=1, le=200)
    """Most user turns in one conversation."""

    max_message_chars: int = Field(default=4000, ge=1, le=100_000)
    """Longest message a participant may send."""

    timeout_minutes: int = Field(default=90, ge=1)
    """A participant inactive this long is timed out and releases their cells."""

    carried_cards: Literal["ask", "record"] = "ask"
    """A participant message whose text carries more than one new card (or a first message
    that carries a card beyond card 1): ``ask`` refuses it and asks for one card per
    message; ``record`` records every card it carries. Either way the detection is logged."""


class QuestionSpec(_Spec):
    """A survey question after each item or at the end."""

    key: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    text: str = Field(min_length=1)
    type: Literal["likert", "yesno", "choice", "text", "number"] = "likert"
    options: list[str] = Field(default_factory=list)
    """Choices for ``choice``; the scale's end labels for ``likert`` (two strings)."""
    scale: int = Field(default=5, ge=2, le=11)
    """Points of a likert scale."""
    required: bool = True

    @model_validator(mode="after")
    def _options(self) -> QuestionSpec:
        if self.type == "choice" and len(self.options) < 2:
            raise ValueError("a 'choice' question needs at least two 'options'")
        return self


class QuestionsSpec(_Spec):
    """Questions asked after each item and at the end of the study."""

    post_item: list[QuestionSpec] = Field(default_factory=list)
    """Asked after each item."""
    post_study: list[QuestionSpec] = Field(default_factory=list)
    """Asked once at the end."""

    @model_validator(mode="after")
    def _unique(self) -> QuestionsSpec:
        keys = [q.key for q in self.post_item + self.post_study]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"question keys must be unique; repeated: {', '.join(dup)}")
        return self


class CompletionSpec(_Spec):
    """How a participant finishes: the completion code and where to send them."""

    code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Completion code shown at the end (Prolific's code)."""
    redirect: str | None = Field(default=None, pattern=r"^https?://")
    """Where to send participants at the end; ``{code}`` is replaced by the code."""


class CodeSpec(_Spec):
    """A code a study adds to a codebook layer."""

    code: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    definition: str = Field(min_length=1, max_length=300)
    """One line saying when the code applies."""
    example: str | None = Field(default=None, max_length=300)
    key: str | None = Field(default=None, pattern=r"^[abd-qs-z0-9]$")
    """Keyboard shortcut on the labelling screen: one lowercase letter or digit (c and r are the browser's)."""


class AnnotationScopeSpec(_Spec):
    """Which conversations go to annotators."""

    participants: Literal["any", "human", "simulated"] = "any"
    completed_only: bool = True
    """Only conversations that ended."""
    conditions: list[str] | None = None
    """Only these condition keys (default: all)."""
    models: list[str] | None = None
    """Only conversations with these model ids (keys of ``models``; default: all)."""


_LAYERS: tuple[Literal["G", "R", "P", "S"], ...] = ("G", "R", "P", "S")


class AnnotationSpec(_Spec):
    """How annotators label the study's conversations."""

    layers: list[Literal["G", "R", "P", "S"]] = Field(default_factory=lambda: list(_LAYERS))
    """Codebook layers annotators label."""
    annotators_per_turn: int = Field(default=2, ge=1, le=20)
    blind: bool = True
    """Hide model and condition from annotators."""
    codes: dict[Literal["G", "R", "P", "S"], list[CodeSpec]] = Field(default_factory=dict)
    """Codes the study adds to a layer, e.g. ``{G: [{code: REPEAT, definition: …}]}``."""
    prelabels: Literal["hidden", "shown", "half"] = "hidden"
    """Whether annotators see automatic labels: hidden, shown, or half (a random, recorded half of the annotators)."""
    claim_minutes: int = Field(default=30, ge=1, le=24 * 60)
    """A claimed conversation left this long goes back to the pool."""
    max_note_chars: int = Field(default=2000, ge=0, le=20_000)
    """Longest note an annotator may attach to a label."""
    scope: AnnotationScopeSpec = Field(default_factory=AnnotationScopeSpec)


class JudgeSpec(_Spec):
    """The automatic judge that labels replies."""

    model: str | None = None
    """Model id for the LLM judge; without one the rule-based judge labels turns."""


class SimulatorSpec(_Spec):
    """The simulated participant used by ``python -m lab simulate``."""

    model: str | None = None
    """Model id playing the participant; without one the scripted simulator is used."""
    persona: str | None = None
    """A persona the simulated participant follows."""


class ItemFileRef(_Spec):
    """A reference to an item file, optionally cut to its first items."""

    file: str
    """Item file (JSONL), relative to the spec file."""
    limit: int | None = Field(default=None, ge=1)
    """Take only the first N items."""


class StudySpec(_Spec):
    """A whole study."""

    slug: str = Field(pattern=SLUG_PATTERN)
    """URL name: lowercase letters, digits and hyphens."""
    title: str = Field(min_length=1, max_length=300)
    description: str | None = None
    """For experimenters."""
    consent: str = Field(min_length=1)
    """Consent text shown first; the participant agrees or declines."""
    instructions: str = Field(min_length=1)
    debrief: str | None = None
    """Shown at the end (e.g. that some questions contained false assumptions)."""
    contact: str | None = Field(default=None, max_length=500)
    """Whom participants may contact about the study (an email address or a sentence); shown
    to a participant whose time ran out."""
    models: dict[str, ModelSpec] = Field(min_length=1)
    conditions: dict[str, ConditionSpec] = Field(min_length=1)
    items: list[dict[str, Any]] = Field(min_length=1)
    """Inline items and ``{file: …}`` references; the normalized spec holds items only."""
    plan: PlanSpec = Field(default_factory=PlanSpec)
    questions: QuestionsSpec = Field(default_factory=QuestionsSpec)
    completion: CompletionSpec = Field(default_factory=CompletionSpec)
    annotation: AnnotationSpec = Field(default_factory=AnnotationSpec)
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    simulator: SimulatorSpec = Field(default_factory=SimulatorSpec)

    @field_validator("models", "conditions")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", str(key)):
                raise ValueError(f"'{key}' is not a valid id (letters, digits, _ . -; at most 64)")
        return value


class ConditionNotRunnable(LabError, LookupError):
    """A condition whose model cannot be called now (a malformed model string or a missing key)."""


class SpecError(LabError, ValueError):
    """A spec that cannot be used; ``problems`` holds one line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StudyDefinition(BaseModel):
    """A validated study: the spec with its items parsed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: StudySpec
    items: list[Item]
    warnings: list[str] = Field(default_factory=list)
    """Problems that do not stop the study (an optional model without its key)."""
    text: str | None = None
    """The YAML as written (comments and order kept), when parsed from text; not part of the hash."""

    def normalized(self) -> dict[str, Any]:
        """The spec as stored: defaults filled, items inlined in file order."""
        data = self.spec.model_dump(mode="json")
        data["items"] = [it.model_dump(mode="json") for it in self.items]
        return data

    def sha256(self) -> str:
        """Hash of the normalized spec."""
        return spec_hash(self.normalized())

    def active_conditions(self) -> dict[str, ConditionSpec]:
        """Conditions whose models are usable now (optional models need their keys)."""
        from . import llm

        out = {}
        for key, cond in self.spec.conditions.items():
            model = self.spec.models[cond.model]
            if model.optional and llm.missing_env(model.model, model.params):
                continue
            out[key] = cond
        return out

    def mediator(self, condition: str, model: str, params: dict[str, Any]) -> ModelSpec | None:
        """The model that rewrites the history in a ``mediator`` condition (None in any other).

        A condition's ``mediator_model`` serves when it names a model other than the
        condition's own; otherwise the mediator is the model actually called, so a model
        replaced for a run (``--models``, ``--model``) is replaced in both roles.

        Args:
            condition: The condition's key.
            model: The model string actually called for the condition.
            params: Its parameters.
        """
        cond = self.spec.conditions[condition]
        if cond.intervention != "mediator":
            return None
        if cond.mediator_model and cond.mediator_model != cond.model:
            return self.spec.models[cond.mediator_model]
        return ModelSpec(model=model, params=dict(params))

    def require_runnable(self, condition: str, model: str | None = None) -> None:
        """Refuse a condition that cannot run now, as :meth:`active_conditions` and ``validate`` see it.

        Args:
            condition: The condition's key.
            model: A model id of the study or a litellm string replacing the condition's model.

        Raises:
            UnknownName: no such condition (the close ones are named).
            ConditionNotRunnable: its model (or ``model``) is malformed or lacks its key.
        """
        from . import llm
        from .errors import require_known

        require_known("condition", [condition], self.spec.conditions)
        name = model or self.spec.conditions[condition].model
        spec = self.spec.models.get(name)
        string, params = (spec.model, spec.params) if spec else (name, {})
        problems = llm.check_model(string, params)
        if problems:
            raise ConditionNotRunnable(f"condition '{condition}' cannot run with model '{name}': {problems[0]}")
        missing = llm.missing_env(string, params)
        if missing:
            left_out = " (validate leaves it out)" if spec is not None and spec.optional and not model else ""
            raise ConditionNotRunnable(
                f"condition '{condition}' cannot run{left_out}: model '{name}' ({string}) needs {', '.join(missing)} to be set"
            )


def spec_hash(normalized: dict[str, Any]) -> str:
    """sha256 of a normalized spec in canonical JSON."""
    blob = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


# --- YAML with line numbers -------------------------------------------------------------


MAX_SPEC_CHARS = 1_000_000
"""Longest spec file the validator reads (items usually live in their own files)."""


class _DuplicateKey(Exception):
    def __init__(self, line: int, field: str) -> None:
        self.line = line
        self.field = field


class _Alias(Exception):
    """A node reached twice: the spec uses an anchor and alias (``&name`` / ``*name``)."""

    def __init__(self, line: int) -> None:
        self.line = line


def _to_python(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], seen: set[int] | None = None) -> Any:
    # Aliases are refused: no spec needs them, and nested ones expand exponentially
    # ("billion laughs"), which would hang the validator on a hostile upload.
    seen = set() if seen is None else seen
    if id(node) in seen:
        raise _Alias(node.start_mark.line + 1)
    seen.add(id(node))
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(key_node, yaml.ScalarNode) else key_node.value
            if key in out:
                raise _DuplicateKey(key_node.start_mark.line + 1, ".".join(map(str, path + (key,))))
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, path + (key,), lines, seen)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(child, path + (i,), lines, seen) for i, child in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _syntax_problem(e: yaml.MarkedYAMLError, name: str) -> str:
    """One line for a YAML syntax error: where the broken construct starts, and where reading failed.

    PyYAML notices an unterminated quote or bracket only where the file stops making sense,
    often its last line; the construct's start (the error's context mark) is where to look.
    """

    def at(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    start, failed = e.context_mark, e.problem_mark
    problem = e.problem or e.context or "the file cannot be read"
    if start is not None and e.context and failed is not None and (start.line, start.column) != (failed.line, failed.column):
        return f"{name}:{start.line + 1}: YAML syntax error: {problem} at {at(failed)}, {e.context} that starts at {at(start)}"
    mark = failed or start
    return f"{name}:{mark.line + 1 if mark else '?'}: YAML syntax error: {problem}" + (f" at {at(mark)}" if mark else "")


def _load_yaml(text: str, name: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError([f"{name}: the file is {len(text):,} characters long; a study spec may have at most {MAX_SPEC_CHARS:,}"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise SpecError([f"{name}: YAML nested too deeply to be a study spec"]) from None
    except yaml.MarkedYAMLError as e:
        raise SpecError([_syntax_problem(e, name)]) from None
    except yaml.YAMLError as e:
        raise SpecError([f"{name}: YAML error: {e}"]) from None
    if node is None:
        raise SpecError(
            [f"{name}:1: the file is empty; a study spec needs slug, title, consent, instructions, models, conditions and items"]
        )
    lines: dict[tuple[Any, ...], int] = {}
    try:
        return _to_python(node, (), lines), lines
    except _DuplicateKey as e:
        raise SpecError([f"{name}:{e.line}: {e.field}: duplicate key"]) from None
    except _Alias as e:
        raise SpecError(
            [f"{name}:{e.line}: YAML anchors and aliases (&name, *name) are not supported; write the value out"]
        ) from None
    except RecursionError:
        raise SpecError([f"{name}: YAML nested too deeply to be a study spec"]) from None


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _describe(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"got {err.get('input')!r}; expected {err['ctx']['expected']}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{err['msg'].lower()} (got {type(err.get('input')).__name__} {err.get('input')!r})"
    if kind == "string_pattern_mismatch":
        return f"{err.get('input')!r} does not match the expected form {err['ctx']['pattern']}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_spec(text: str, name: str = "spec", base_dir: Path | None = None) -> StudyDefinition:
    """Parse and validate a spec; nothing is written.

    Args:
        text: YAML source.
        name: File name used in messages.
        base_dir: Folder item files are relative to.

    Returns:
        The validated study.

    Raises:
        SpecError: with one line per problem (``file:line: field: message``).
    """
    data, lines = _load_yaml(text, name)
    if not isinstance(data, dict):
        raise SpecError([f"{name}:1: a study spec is a mapping of fields (slug, title, …), got {type(data).__name__}"])
    found: list[tuple[int, str]] = []
    warnings: list[str] = []

    def problem(loc: tuple[Any, ...], msg: str) -> None:
        field = ".".join(map(str, loc)) or "(spec)"
        found.append((_line_for(loc, lines), f"{name}:{_line_for(loc, lines)}: {field}: {msg}"))

    spec: StudySpec | None = None
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            problem(tuple(err["loc"]), _describe(err))
    # Every part that is well formed is checked further even when another part is not, so one
    # pass reports every problem.
    parts = _Parts.of(spec) if spec is not None else _Parts.salvage(data)

    items, seen, items_ok = _check_items(parts, base_dir, problem)
    _check_models(parts, problem, warnings)
    _check_conditions(parts, items, seen, items_ok, problem)
    for key, named in (("judge", parts.judge_model), ("simulator", parts.simulator_model)):
        if named is not None and named not in parts.model_keys:
            problem((key, "model"), f"unknown model '{named}' (declared: {', '.join(parts.model_keys)})")
    if parts.annotation is not None:
        _check_annotation(parts, parts.annotation, problem)
    completion = parts.completion
    if completion is not None and completion.redirect and "{code}" in completion.redirect and not completion.code:
        problem(("completion", "redirect"), "uses {code} but 'completion.code' is not set")
    if found:
        # In file order, so the list reads top to bottom like the file.
        raise SpecError([message for _, message in sorted(found, key=lambda f: f[0])])
    assert spec is not None  # a spec that failed validation has at least one problem
    return StudyDefinition(spec=spec, items=items, warnings=warnings, text=text)


Problem = Callable[[tuple[Any, ...], str], None]
"""Records one problem of a spec at a field's location (``("conditions", "full", "model")``)."""


def _check_items(parts: _Parts, base_dir: Path | None, problem: Problem) -> tuple[list[Item], set[str], bool]:
    """Read the spec's items, inline and from files.

    Returns:
        The items, their ids, and whether all of them could be read without a duplicate id
        (checks of item references are only meaningful then).
    """
    items: list[Item] = []
    items_ok = True
    for i, entry in enumerate(parts.items):
        if not isinstance(entry, dict):
            items_ok = False
            continue
        if "file" in entry:
            try:
                ref = ItemFileRef.model_validate(entry)
            except ValidationError as e:
                problem(("items", i), format_validation_error(e))
                items_ok = False
                continue
            path = (base_dir or Path.cwd()) / ref.file
            try:
                loaded = read_items(path)
            except ItemError as e:
                problem(("items", i, "file"), str(e))
                items_ok = False
                continue
            items.extend(loaded[: ref.limit] if ref.limit else loaded)
        else:
            try:
                items.append(parse_item(entry, "item"))
            except ItemError as e:
                problem(("items", i), e.message)
                items_ok = False
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            problem(("items",), f"duplicate item id '{item.id}'")
            items_ok = False
        seen.add(item.id)
    return items, seen, items_ok


def _check_models(parts: _Parts, problem: Problem, warnings: list[str]) -> None:
    """Check each model's string and parameters; warn of optional models whose key is not set."""
    from . import llm
    from .llm._validation import model_findings

    for key, model in parts.models.items():
        for where, msg in model_findings(model.model, model.params):
            problem(("models", key, *where.split(".", 1)), msg)
        missing = llm.missing_env(model.model, model.params)
        if missing and model.optional:
            warnings.append(
                f"model '{key}' ({model.model}) is optional and {', '.join(missing)} is not set: its conditions are left out"
            )


def _check_conditions(parts: _Parts, items: list[Item], seen: set[str], items_ok: bool, problem: Problem) -> None:
    """Check each condition's models and items, and that some item fits it."""
    declared = ", ".join(parts.model_keys)
    for key, cond in parts.conditions.items():
        if cond.model not in parts.model_keys:
            problem(("conditions", key, "model"), f"unknown model '{cond.model}' (declared: {declared})")
        if cond.mediator_model and cond.mediator_model not in parts.model_keys:
            problem(("conditions", key, "mediator_model"), f"unknown model '{cond.mediator_model}' (declared: {declared})")
        for item_id in cond.items or []:
            if items_ok and item_id not in seen:
                problem(("conditions", key, "items"), f"unknown item '{item_id}'")
        if items and items_ok and not any(cond.applies_to(it) for it in items):
            problem(("conditions", key), "no item fits this condition (check presupposition, kinds and items)")
        if cond.presupposition is not None and cond.reveal not in ("FULL",):
            problem(("conditions", key, "reveal"), "a presupposition condition asks one question: use reveal FULL")


def _check_annotation(parts: _Parts, annotation: AnnotationSpec, problem: Problem) -> None:
    """Check the annotation settings and that their scope names declared conditions and models."""
    from .codebook import annotation_problems

    for loc, msg in annotation_problems(annotation):
        problem(loc, msg)
    for key in annotation.scope.conditions or []:
        if key not in parts.condition_keys:
            problem(
                ("annotation", "scope", "conditions"),
                f"unknown condition '{key}' (declared: {', '.join(parts.condition_keys)})",
            )
    for key in annotation.scope.models or []:
        if key not in parts.model_keys:
            problem(("annotation", "scope", "models"), f"unknown model '{key}' (declared: {', '.join(parts.model_keys)})")


class _Parts(BaseModel):
    """The well-formed parts of a spec, for the checks that look across fields."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_keys: list[str]
    """Every declared model id, well formed or not (a reference to a broken model is not 'unknown')."""
    condition_keys: list[str]
    """Every declared condition key."""
    models: dict[str, ModelSpec]
    conditions: dict[str, ConditionSpec]
    items: list[Any]
    judge_model: str | None = None
    simulator_model: str | None = None
    annotation: AnnotationSpec | None = None
    completion: CompletionSpec | None = None

    @classmethod
    def of(cls, spec: StudySpec) -> _Parts:
        """The parts of a valid spec."""
        return cls(
            model_keys=list(spec.models),
            condition_keys=list(spec.conditions),
            models=spec.models,
            conditions=spec.conditions,
            items=spec.items,
            judge_model=spec.judge.model,
            simulator_model=spec.simulator.model,
            annotation=spec.annotation,
            completion=spec.completion,
        )

    @classmethod
    def salvage(cls, data: dict[Any, Any]) -> _Parts:
        """The parts of an invalid spec that validate on their own."""

        def valid(kind: type[_Spec], value: Any) -> Any:
            try:
                return kind.model_validate({} if value is None else value)
            except ValidationError:
                return None

        def mapping(key: str) -> dict[str, Any]:
            value = data.get(key)
            return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}

        models, conditions = mapping("models"), mapping("conditions")
        judge, simulator = valid(JudgeSpec, data.get("judge")), valid(SimulatorSpec, data.get("simulator"))
        items = data.get("items")
        return cls(
            model_keys=list(models),
            condition_keys=list(conditions),
            models={k: m for k, v in models.items() if (m := valid(ModelSpec, v)) is not None},
            conditions={k: c for k, v in conditions.items() if (c := valid(ConditionSpec, v)) is not None},
            items=items if isinstance(items, list) else [],
            judge_model=judge.model if judge else None,
            simulator_model=simulator.model if simulator else None,
            annotation=valid(AnnotationSpec, data.get("annotation")),
            completion=valid(CompletionSpec, data.get("completion")),
        )


def load_spec_file(path: str | Path) -> StudyDefinition:
    """Read and validate a spec file.

    Raises:
        SpecError: naming the file, line and field of each problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: file not found"]) from None
    except UnicodeDecodeError:
        raise SpecError([f"{path}: not UTF-8 text"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a folder, not a spec file"]) from None
    return parse_spec(text, str(path), path.parent)


def study_from_normalized(data: dict[str, Any]) -> StudyDefinition:
    """Rebuild a validated study from the JSON stored in the database (no file access)."""
    spec_data = dict(data)
    items = [parse_item(d, f"item {d.get('id')}") for d in spec_data["items"]]
    return StudyDefinition(spec=StudySpec.model_validate(spec_data), items=items)
