"""Simulated participants: whole studies run without humans, recorded like human ones.

A simulator plays the participant under the rules humans get; every simulated participant
is an ordinary participant with ``kind = simulated`` whose ``simulator`` field records the
simulator's model, prompt version and persona, and the run it belongs to. ``python -m lab
simulate`` runs a study's grid with bounded concurrency and per-model rate limits, shows
progress, and continues an interrupted run without duplicating finished conversations;
``--processes`` spreads a run over several worker processes to use more than one core;
``--worker`` lets any number of processes on any hosts share a run through the database.
Every simulator line is checked mechanically against the reveal rules; a judge model, when
given, scores prompt-to-line and line-to-line consistency.

```python
plan = plan_run(study, definition(study), ScriptedSimulator().record(), repeats=3)
result = asyncio.run(run_simulation(engine, plan, ScriptedSimulator(), concurrency=4))
print(run_report(session, plan.run_id).format())
```
"""

from ._breaker import BREAKER_SECONDS, Breaker
from ._checks import DRIFT_KINDS, Drift, check_message, mentions
from ._cli import judge_for, make_simulator, register
from ._consistency import CONSISTENCY_PROMPT_VERSION, Consistency, LineVerdict, judge_consistency
from ._grid import Cell, PlanError, RunPlan, Unit, plan_run
from ._launch import RunOptions, run_simulation
from ._progress import ProgressLine, RunProgress, run_progress
from ._report import ArmSummary, ReportError, RunReport, run_report
from ._runner import Limits, RunBusy, RunResult, RunStatus, ending, run_lock
from ._simulator import (
    DONT_KNOW,
    SCRIPTED_VERSION,
    SIMULATOR_PROMPT_VERSION,
    LLMSimulator,
    ScriptedSimulator,
    Simulator,
    UserMove,
    parse_move,
)

__all__ = [
    "BREAKER_SECONDS",
    "Breaker",
    "CONSISTENCY_PROMPT_VERSION",
    "DONT_KNOW",
    "DRIFT_KINDS",
    "SCRIPTED_VERSION",
    "SIMULATOR_PROMPT_VERSION",
    "ArmSummary",
    "Cell",
    "Consistency",
    "Drift",
    "LLMSimulator",
    "Limits",
    "LineVerdict",
    "PlanError",
    "ProgressLine",
    "ReportError",
    "RunBusy",
    "RunOptions",
    "RunPlan",
    "RunProgress",
    "RunReport",
    "RunResult",
    "RunStatus",
    "ScriptedSimulator",
    "Simulator",
    "Unit",
    "UserMove",
    "check_message",
    "ending",
    "judge_consistency",
    "judge_for",
    "make_simulator",
    "mentions",
    "parse_move",
    "plan_run",
    "register",
    "run_lock",
    "run_progress",
    "run_report",
    "run_simulation",
]
