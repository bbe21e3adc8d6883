"""Data-to-text and translation items: corpus BLEU / 100, equal to sacrebleu's own."""

from __future__ import annotations

import pytest
import sacrebleu
from conftest import fixture_record, shared_records

from lab.scoring._bleu import bleu, evaluate


def test_bleu_equals_sacrebleus_own_on_the_same_strings() -> None:
    hyp = "  In 2001 the player joined Harbour FC.  "
    refs = ["In 2001 the player was at Harbour FC.", " The player played for Harbour FC in 2001. "]
    expected = sacrebleu.corpus_bleu([hyp.strip()], [[r.strip()] for r in refs]).score / 100
    assert bleu(hyp, refs) == expected
    assert 0 < expected < 1


def test_data2text_on_the_project_fixture() -> None:
    item = fixture_record("data2text")
    exact = evaluate("data2text", item, item["references"][0])
    assert (exact.status, exact.evaluator, exact.version) == ("scored", "lic-data2text-bleu", "1")
    # sacrebleu says 100.00000000000004 for a perfect match; the score is its value / 100, unrounded.
    assert exact.value == pytest.approx(1.0)
    other = evaluate("data2text", item, "A table about a football club.")
    assert other.value == sacrebleu.corpus_bleu(["A table about a football club."], [[r] for r in item["references"]]).score / 100


def test_translation_on_the_project_fixture() -> None:
    item = fixture_record("translation")
    assert evaluate("translation", item, item["document_en"]).value == pytest.approx(1.0)
    assert evaluate("translation", item, item["document_de"]).value < 0.2
    assert evaluate("translation", {}, "x").status == "not_scorable"


def test_real_items() -> None:
    for record in shared_records("data2text"):
        assert evaluate("data2text", record, record["references"][0]).value == pytest.approx(1.0)
    record = shared_records("translation")[0]
    half = " ".join(record["document_en"].split()[: len(record["document_en"].split()) // 2])
    ev = evaluate("translation", record, half)
    assert ev.value == sacrebleu.corpus_bleu([half], [[record["document_en"].strip()]]).score / 100
    assert 0 < ev.value < 1
