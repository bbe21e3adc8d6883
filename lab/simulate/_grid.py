"""The grid a simulation run covers, and the run's identity.

``--repeats R`` runs every active condition on every item it applies to, R times; each
such conversation is one simulated participant (a unit of one cell). ``--participants N``
creates N simulated participants who each do the spec's per-participant plan, made as
:mod:`lab.assign` makes human participants' plans (balance, design and order of the spec)
and reproducible from the study's seed.

``--models`` crosses models with conditions: each listed model (a model id of the study or
a litellm string) runs under every selected condition in place of the condition's own
model, as the engine's ``model_override`` does for pilots; the session records the model
actually called, so analyses group by condition and model. With ``--participants`` the
listed models take turns: participant ``i`` talks to model ``i mod len(models)``. Without
``--models`` every condition runs with its own model.

A run is identified by a hash of the study version and the grid (mode and size,
conditions, models, simulator and its prompt version), so the same command finds the same
run again and continues it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import llm
from ..errors import LabError, UnknownName
from ..schema import Study
from ..spec import StudyDefinition


class PlanError(LabError, ValueError):
    """A simulation that cannot be planned, with the reason."""


@dataclass(frozen=True)
class Cell:
    """One conversation of the grid: an item under a condition (and maybe another model)."""

    item: str
    """The item's id."""

    condition: str
    """The condition's key."""

    model: str | None = None
    """Model id or litellm string replacing the condition's model (None: the condition's own)."""

    def key(self) -> str:
        """A stable text key."""
        return f"{self.condition}/{self.model or '-'}/{self.item}"


@dataclass(frozen=True)
class Unit:
    """One simulated participant: the cells it converses through, in order."""

    key: str
    """Stable key within the run (``r2/full/-/math-bakery`` or ``p7``)."""

    cells: tuple[Cell, ...]
    """Its conversations in order."""

    repeat: int | None = None
    """Repeat index (``--repeats``)."""

    index: int | None = None
    """Participant index (``--participants``)."""


@dataclass(frozen=True)
class RunPlan:
    """Everything a simulation run will do, before anything is written."""

    run_id: str
    """Hash identifying the run (same study version and grid: same run)."""

    study_id: int
    study_slug: str
    study_version: int
    spec_sha256: str
    mode: Literal["repeats", "participants"]
    size: int
    """R for ``--repeats``, N for ``--participants``."""

    conditions: tuple[str, ...]
    models: tuple[str, ...]
    """Models crossed with the conditions (empty: each condition's own)."""

    simulator: dict[str, Any]
    """The simulator's record (kind, model, prompt version, persona)."""

    units: tuple[Unit, ...] = field(repr=False)

    @property
    def total(self) -> int:
        """Conversations in the run."""
        return sum(len(u.cells) for u in self.units)

    def describe(self) -> dict[str, Any]:
        """The run's definition as stored with it."""
        return {
            "run": self.run_id,
            "study": self.study_slug,
            "study_id": self.study_id,
            "version": self.study_version,
            "spec_sha256": self.spec_sha256,
            "mode": self.mode,
            "size": self.size,
            "conditions": list(self.conditions),
            "models": list(self.models),
            "simulator": self.simulator,
            "total": self.total,
            "units": len(self.units),
        }

    def cells_by_condition(self) -> Counter[tuple[str, str | None]]:
        """Conversations per (condition, model) pair."""
        return Counter((c.condition, c.model) for u in self.units for c in u.cells)


def run_id_for(
    spec_sha256: str,
    mode: str,
    size: int,
    conditions: list[str],
    models: list[str],
    simulator: dict[str, Any],
    items: list[str] | None = None,
) -> str:
    """The identity of a run: the same inputs give the same id (a run over every item keeps its old id)."""
    extra = {"items": items} if items is not None else {}
    blob = json.dumps(
        extra
        | {
            "spec": spec_sha256,
            "mode": mode,
            "size": size,
            "conditions": sorted(conditions),
            "models": sorted(models),
            "simulator": {k: simulator.get(k) for k in ("kind", "model", "params", "prompt_version", "persona")},
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def usable_model(d: StudyDefinition, name: str, what: str) -> tuple[str, dict[str, Any], str | None]:
    """A model id of the study or a litellm string, checked for use.

    Args:
        d: The study.
        name: The model id or litellm string.
        what: What the model is for, as the error names it (``model``, ``simulator``, ``judge``).

    Returns:
        ``(model, params, id)``; the id is None for a litellm string.

    Raises:
        PlanError: the model string or its parameters are wrong, or a key it needs is not set.
    """
    spec = d.spec.models.get(name)
    model, params, model_id = (spec.model, dict(spec.params), name) if spec else (name, {}, None)
    problems = llm.check_model(model, params)
    if problems:
        raise PlanError(f"{what} '{name}': {problems[0]}")
    missing = llm.missing_env(model, params)
    if missing:
        raise PlanError(f"{what} '{name}' ({model}) needs {', '.join(missing)} to be set")
    return model, params, model_id


def _conditions(d: StudyDefinition, wanted: list[str] | None) -> list[str]:
    active = d.active_conditions()
    if not wanted:
        if not active:
            raise PlanError("no condition can run: every condition's model lacks its key")
        return list(active)
    for key in wanted:
        if key not in d.spec.conditions:
            raise PlanError(str(UnknownName("condition", key, d.spec.conditions)))
        if key not in active:
            model = d.spec.models[d.spec.conditions[key].model]
            missing = ", ".join(llm.missing_env(model.model, model.params))
            raise PlanError(f"condition '{key}' cannot run: its model {model.model} needs {missing} to be set")
    return [k for k in d.spec.conditions if k in wanted]


def plan_run(
    study: Study,
    d: StudyDefinition,
    simulator: dict[str, Any],
    *,
    repeats: int | None = None,
    participants: int | None = None,
    conditions: list[str] | None = None,
    models: list[str] | None = None,
    items: list[str] | None = None,
) -> RunPlan:
    """Plan a run over a study version.

    Args:
        study: The study row (its newest version).
        d: Its definition.
        simulator: The simulator's record (see :meth:`Simulator.record`).
        repeats: Run every cell this many times.
        participants: Or: this many simulated participants doing the spec's plan.
        conditions: Condition keys to run (default: every active condition).
        models: Models to cross with the conditions (default: each condition's own).
        items: Only these item ids (``--split``; default: every item).

    Raises:
        PlanError: a bad size, an unknown or inactive condition, an unusable model, or a
            grid without a single conversation.
    """
    if (repeats is None) == (participants is None):
        raise PlanError("give either --repeats or --participants")
    size = repeats if repeats is not None else participants
    assert size is not None
    if size < 1:
        raise PlanError(f"{'--repeats' if repeats is not None else '--participants'} must be at least 1, got {size}")
    keys = _conditions(d, conditions)
    model_list = list(dict.fromkeys(models or []))
    for m in model_list:
        usable_model(d, m, "model")
    # No --models: each condition keeps its own model (None).
    arm_models: list[str | None] = [*model_list] or [None]
    arms: list[tuple[str, str | None]] = [(c, m) for c in keys for m in arm_models]
    wanted = set(items) if items is not None else None
    fits = {
        arm: [it.id for it in d.items if d.spec.conditions[arm[0]].applies_to(it) and (wanted is None or it.id in wanted)]
        for arm in arms
    }
    mode: Literal["repeats", "participants"] = "repeats" if repeats is not None else "participants"
    run_id = run_id_for(
        study.spec_sha256, mode, size, keys, model_list, simulator, sorted(wanted) if wanted is not None else None
    )
    if mode == "repeats":
        units = tuple(
            Unit(f"r{r}/{Cell(item, c, m).key()}", (Cell(item, c, m),), repeat=r)
            for r in range(size)
            for (c, m) in arms
            for item in fits[(c, m)]
        )
    else:
        plans = [
            [c for c in cells if wanted is None or c.item in wanted] for cells in _participant_plans(d, keys, model_list, size)
        ]
        units = tuple(Unit(f"p{i}", tuple(cells), index=i) for i, cells in enumerate(plans) if cells)
    if not units:
        raise PlanError("the grid is empty: no selected condition applies to any item")
    return RunPlan(
        run_id=run_id,
        study_id=study.id,
        study_slug=study.slug,
        study_version=study.version,
        spec_sha256=study.spec_sha256,
        mode=mode,
        size=size,
        conditions=tuple(keys),
        models=tuple(model_list),
        simulator=simulator,
        units=units,
    )


def _participant_plans(d: StudyDefinition, conditions: list[str], models: list[str], n: int) -> list[list[Cell]]:
    """Per-participant plans made the way human participants get theirs (:mod:`lab.assign`).

    The run's own participants fill the cells, from empty, in index order; ties are broken
    by the study seed and the participant index. With ``models``, participant ``i`` talks
    to ``models[i % len(models)]`` throughout.
    """
    from ..assign import Fill, make_plan

    spec = d.spec.model_copy(update={"conditions": {k: d.spec.conditions[k] for k in conditions}})
    restricted = d.model_copy(update={"spec": spec})
    fill = Fill()
    plans: list[list[Cell]] = []
    for i in range(n):
        steps = make_plan(restricted, fill, random.Random(f"{d.spec.plan.seed}:{i}"))
        fill.add(steps)
        model = models[i % len(models)] if models else None
        plans.append([Cell(step.item, step.condition, model) for step in steps])
    return plans
