"""What a conversation is made of: its item, condition and models, resolved once from a study version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import reveal as rules
from .errors import LabError
from .items import Item, parse_item
from .schema import Condition, ItemRow, Study
from .settings import load_settings
from .spec import ConditionSpec, ModelSpec, PlanSpec, StudyDefinition
from .studies import definition


class UnknownName(LabError, LookupError):
    """A condition or item the study does not have."""


class ConditionMismatch(LabError, ValueError):
    """A condition that does not apply to the item asked for."""


@dataclass(frozen=True)
class Setup:
    """What a conversation is made of, resolved once from a study version.

    Many conversations share one (a simulated grid starts hundreds from a handful), so the
    lookups and the item's parsing are done once; :func:`resolve_setup` makes it.
    """

    study_id: int
    item_id: int
    item_key: str
    item: Item
    """The parsed item."""
    condition_id: int
    condition_key: str
    condition: ConditionSpec
    model: str
    """The model under test (the condition's, or the override)."""
    params: dict[str, Any]
    mediator: ModelSpec | None
    """The mediator model of a ``mediator`` condition."""
    turn_limit: int
    max_message_chars: int
    carried_cards: rules.CarriedCards = "ask"
    """The study's rule for a message that carries more than one new card."""


def override_model(d: StudyDefinition, name: str) -> tuple[str, dict[str, Any]]:
    """The model string and parameters a conversation calls when ``name`` replaces its condition's model.

    A model id of the spec brings its parameters. A litellm string that one spec model calls
    (``local/smollm2-135m`` for the demo's ``smollm2``) brings that model's parameters, and
    so does a tuned model whose training card names such a base: compared with its base,
    a tuned model must be sampled as its base is (temperature, reply length, seed), or the
    comparison measures the engines' defaults. Any other string runs with its defaults.
    """
    if name in d.spec.models:
        return d.spec.models[name].model, dict(d.spec.models[name].params)
    from .training_effect import model_card

    card = model_card(name) if name.startswith("local/") else None
    base = (card or {}).get("base", {}).get("name")
    for candidate in (name, base):
        # Only an unambiguous match: two spec models calling one string differ in parameters.
        calling = [m for m in d.spec.models.values() if candidate and m.model == candidate]
        if len(calling) == 1:
            return name, dict(calling[0].params)
    return name, {}


def resolve_setup(s: Session, study: Study, item_key: str, condition_key: str, model_override: str | None = None) -> Setup:
    """Look up what a conversation of one item under one condition is made of.

    Args:
        s: Open session.
        study: The study version.
        item_key: The item's id in the study.
        condition_key: The condition's name in the spec.
        model_override: A model id of the spec, or a litellm string, replacing the
            condition's model (pilots, simulation grids and the ``chat`` command).

    Raises:
        UnknownName: unknown item or condition.
        ConditionMismatch: the condition does not fit the item.
    """
    d = definition(study)
    if condition_key not in d.spec.conditions:
        raise UnknownName(
            f"unknown condition '{condition_key}' (study has: {', '.join(d.spec.conditions)}); use one of those names"
        )
    cond = d.spec.conditions[condition_key]
    item_row = s.scalar(select(ItemRow).where(ItemRow.study_id == study.id, ItemRow.key == item_key))
    if item_row is None:
        raise UnknownName(f"unknown item '{item_key}': use the id of one of the study's items")
    cond_row = s.scalar(select(Condition).where(Condition.study_id == study.id, Condition.key == condition_key))
    assert cond_row is not None
    model_spec = d.spec.models[cond.model]
    model, params = model_spec.model, dict(model_spec.params)
    if model_override:
        model, params = override_model(d, model_override)
    setup = setup_of(study, item_row, cond_row, model, params)
    if not cond.applies_to(setup.item):
        raise ConditionMismatch(
            f"condition '{condition_key}' does not apply to item '{item_key}' ({setup.item.kind}); "
            "pick an item of a kind the condition lists"
        )
    return setup


def setup_of(study: Study, item_row: ItemRow, cond_row: Condition, model: str, params: dict[str, Any]) -> Setup:
    """A setup from the rows of a study version and the model actually called."""
    d = definition(study)
    cond = d.spec.conditions[cond_row.key]
    return Setup(
        study_id=study.id,
        item_id=item_row.id,
        item_key=item_row.key,
        item=parse_item(item_row.payload, item_row.key),
        condition_id=cond_row.id,
        condition_key=cond_row.key,
        condition=cond,
        model=model,
        params=params,
        mediator=d.mediator(cond_row.key, model, params),
        turn_limit=d.spec.plan.turn_limit,
        max_message_chars=message_limit(d),
        carried_cards=d.spec.plan.carried_cards,
    )


_SPEC_MESSAGE_LIMIT = PlanSpec.model_fields["max_message_chars"].default


def message_limit(d: StudyDefinition) -> int:
    """The longest message a participant may send.

    A study is stored with its defaults filled in, so one that leaves
    ``plan.max_message_chars`` at the spec's default cannot be told from one that writes
    it out; both take the deployment's ``LAB_MAX_MESSAGE_CHARS`` (itself 4000 by default).

    Returns:
        The study's ``plan.max_message_chars``, or ``LAB_MAX_MESSAGE_CHARS`` when the study
        leaves it at the spec's default.
    """
    chars = d.spec.plan.max_message_chars
    return load_settings().max_message_chars if chars == _SPEC_MESSAGE_LIMIT else chars
