"""Task scores of Lost in Conversation items, computed the way each task's authors compute them.

One evaluator per task family (see ``docs/scoring.md``):

- ``code``: pass@1 of the reply's last function on the item's test cases, run in a contained
  child process (:mod:`lab.scoring._sandbox`: model-written code is executed);
- ``database``: execution match of the SQL on the item's Spider database (value plugging;
  row order only where the reference orders); ``needs_database`` without the database;
- ``actions``: the reply parsed as function calls and checked by BFCL's AST checker;
- ``data2text`` and ``translation``: ``sacrebleu.corpus_bleu`` / 100 against the references;
- ``summary``: SummHay joint coverage × citation score from the study's judge model;
  ``needs_judge`` without one;
- ``math``: the lab's answer rules (the final number).

Each :class:`Evaluation` names its evaluator and version and is stored with the
conversation (:mod:`lab.scoring._store`); ``python -m lab score SLUG`` scores a study again
after an evaluator changes.
"""

from ._dispatch import (
    DEFERRED,
    EVERY_REPLY_ATTEMPTS,
    FAMILIES,
    TASK_FAMILIES,
    Family,
    aevaluate,
    describe,
    evaluate,
    evaluator_of,
    family_of,
    quick,
    score,
)
from ._evaluation import NOT_SCORED_REASONS, Evaluation, Status
from ._family_report import NOT_YET, FamilyScores, family_scores, format_family_scores
from ._rescore import (
    NO_ATTEMPT,
    SINGLE_TURN_REVEALS,
    ScoreRun,
    conclude,
    is_attempt,
    last_attempt,
    no_attempt_evaluation,
    reason_of,
    score_study,
    settle,
    study_judge,
)
from ._sandbox import Limits, RunResult, arun_tests, network_isolation, run_tests
from ._store import SCORE_EVENT, latest_scores, store

__all__ = [
    "DEFERRED",
    "EVERY_REPLY_ATTEMPTS",
    "FAMILIES",
    "NOT_SCORED_REASONS",
    "NOT_YET",
    "NO_ATTEMPT",
    "SINGLE_TURN_REVEALS",
    "SCORE_EVENT",
    "TASK_FAMILIES",
    "Evaluation",
    "Family",
    "FamilyScores",
    "Limits",
    "RunResult",
    "ScoreRun",
    "Status",
    "aevaluate",
    "arun_tests",
    "conclude",
    "describe",
    "evaluate",
    "evaluator_of",
    "family_of",
    "family_scores",
    "format_family_scores",
    "is_attempt",
    "last_attempt",
    "latest_scores",
    "network_isolation",
    "no_attempt_evaluation",
    "quick",
    "reason_of",
    "run_tests",
    "score",
    "score_study",
    "settle",
    "store",
    "study_judge",
]
