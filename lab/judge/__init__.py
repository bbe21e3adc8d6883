"""Automatic judges: turn categories, presupposition handling, grounding acts, repairs and scores.

Layers S, P and G are labelled per turn; layer R gets repair-sequence candidates.

The offline default is :class:`RuleJudge`, a documented rule set (``lab/judge/RULES.md``);
:class:`LLMJudge` asks a model named by the study. Judges are pure: they return
:class:`Judgement` records and the caller stores them as ``auto:<judge>`` labels
(:func:`label_annotator`); a judge that finds no evidence abstains with code
:data:`ABSTAIN`. :func:`lab.relabel.relabel_study` labels a whole study in batch, and
:func:`evaluate` measures a judge on labelled and published text. Automatic labels are
pre-annotation, not ground truth.
"""

from collections.abc import Callable

from ._evaluate import EvalSet, Evaluation, default_sets, evaluate, format_evaluation
from ._grounding import (
    GROUNDING_CODES,
    GROUNDING_RULES,
    GROUNDING_VERSION,
    classify_grounding,
    join_codes,
    split_codes,
)
from ._judgement import (
    ABSTAIN,
    ANSWERING_CODES,
    ASKING_CODES,
    PRESUPPOSITION_CODES,
    RULES_VERSION,
    STRATEGY_CODES,
    Judge,
    Judgement,
    is_abstention,
    judge_annotator,
    label_annotator,
    premature,
)
from ._llm_judge import LLM_GROUNDING_PROMPT_VERSION, LLM_JUDGE_PROMPT_VERSION, LLMJudge, parse_json_object
from ._presupposition import CORRECTION_OVERLAP, PRESUPPOSITION_RULES, classify_presupposition
from ._repair import REPAIR_RULES, REPAIR_VERSION, RepairCandidate, TurnText, find_repairs
from ._rules import CLARIFICATION_MAX_WORDS, RULES, RuleJudge, classify_turn, task_of
from ._scoring import (
    NEEDS_JUDGE,
    ClarificationScore,
    Score,
    clarification_score,
    extract_answer_text,
    normalize_answer,
    score_answer,
    score_probe,
)

JUDGES: dict[str, Callable[[str], Judge]] = {
    "rules": lambda _name: RuleJudge(),
    "llm": LLMJudge,
}
"""Judges by name, each made from the name a study gives (``judge.model``): ``rules`` takes
no model; ``llm`` asks the model named, and judges any name not in this table."""


def get_judge(model: str | None) -> Judge:
    """The judge a study asks for.

    Args:
        model: A judge's name in :data:`JUDGES`, a judge model string, or None (or ``"rules"``)
            for the rule judge.

    Returns:
        :class:`RuleJudge` for None/``"rules"``, the judge registered under ``model``, otherwise
        an :class:`LLMJudge` for ``model``.
    """
    name = "rules" if model is None or not model.strip() else model.strip()
    return JUDGES.get(name, JUDGES["llm"])(name)


__all__ = [
    "ABSTAIN",
    "GROUNDING_CODES",
    "JUDGES",
    "GROUNDING_RULES",
    "GROUNDING_VERSION",
    "LLM_GROUNDING_PROMPT_VERSION",
    "REPAIR_RULES",
    "REPAIR_VERSION",
    "EvalSet",
    "Evaluation",
    "RepairCandidate",
    "TurnText",
    "classify_grounding",
    "default_sets",
    "evaluate",
    "find_repairs",
    "format_evaluation",
    "is_abstention",
    "join_codes",
    "split_codes",
    "ANSWERING_CODES",
    "ASKING_CODES",
    "CLARIFICATION_MAX_WORDS",
    "CORRECTION_OVERLAP",
    "LLM_JUDGE_PROMPT_VERSION",
    "NEEDS_JUDGE",
    "PRESUPPOSITION_CODES",
    "PRESUPPOSITION_RULES",
    "RULES",
    "RULES_VERSION",
    "STRATEGY_CODES",
    "ClarificationScore",
    "Judge",
    "Judgement",
    "LLMJudge",
    "RuleJudge",
    "Score",
    "classify_presupposition",
    "classify_turn",
    "clarification_score",
    "extract_answer_text",
    "get_judge",
    "judge_annotator",
    "label_annotator",
    "normalize_answer",
    "parse_json_object",
    "premature",
    "score_answer",
    "score_probe",
    "task_of",
]
