"""Data-to-text (ToTTo) and translation (WMT) items: corpus BLEU of the whole reply.

As the Lost in Conversation ``data2text`` and ``translation`` tasks score them: the whole
reply is the answer (no extraction), and the score is ``sacrebleu.corpus_bleu`` of the
stripped reply against the stripped references, divided by 100. ToTTo items have several
references (each its own reference stream); a translation item has one, its English
document (``document_en``).
"""

from __future__ import annotations

from typing import Any

from ._evaluation import Evaluation, not_scored

VERSION = "1"
EVALUATORS = {"data2text": "lic-data2text-bleu", "translation": "lic-translation-bleu"}


def references(family: str, gold: dict[str, Any]) -> list[str]:
    """The item's reference texts: ToTTo ``references``, or the translation's ``document_en``."""
    if family == "translation":
        document = gold.get("document_en")
        return [document] if isinstance(document, str) and document.strip() else []
    refs = gold.get("references")
    return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []


def bleu(hypothesis: str, refs: list[str]) -> float:
    """``sacrebleu.corpus_bleu([hypothesis], [[ref] for ref in refs]).score / 100``, texts stripped."""
    import sacrebleu

    return sacrebleu.corpus_bleu([hypothesis.strip()], [[r.strip()] for r in refs]).score / 100.0


def evaluate(family: str, gold: dict[str, Any], reply: str) -> Evaluation:
    """Score a data2text or translation reply by BLEU against the item's references."""
    import sacrebleu

    evaluator = EVALUATORS[family]
    refs = references(family, gold)
    if not refs:
        return not_scored(family, evaluator, VERSION, "not_scorable", "The item has no reference text.")
    value = bleu(reply, refs)
    return Evaluation(
        family,
        evaluator,
        VERSION,
        "scored",
        value,
        f"BLEU {value * 100:.1f} against {len(refs)} reference(s).",
        reply.strip(),
        {"bleu": value * 100, "references": len(refs), "sacrebleu": sacrebleu.__version__},
    )
