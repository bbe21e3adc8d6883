"""The codebook as data, study codes validated with file and line, and ``python -m lab codebook``."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import main
from lab.codebook import base_codebook, codebook_for
from lab.spec import SpecError, load_spec_file, parse_spec

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "G": ["ACK", "CLARIFY", "CHECK", "FOLLOWUP", "DISPLAY", "NONE"],
    "R": ["SI", "OI-open", "OI-restricted-request", "OI-restricted-offer", "TPR", "FOURTH", "NONE"],
    "P": ["ACCOMMODATE", "AMPLIFY", "HEDGE", "REJECT", "REJECT_CORRECT", "CLARIFY_ASSUMPTION", "NA"],
    "S": ["answer_attempt", "clarification", "interrogation", "discussion", "hedge", "refuse", "missing", "overresponse"],
}


def test_every_layer_and_code_with_definition_example_and_a_distinct_key() -> None:
    book = base_codebook()
    assert {k: v.code_names() for k, v in book.layers.items()} == EXPECTED
    for layer in book.layers.values():
        assert all(c.definition and c.example for c in layer.codes)
        keys = [c.key for c in layer.codes]
        assert None not in keys and len(set(keys)) == len(keys)
    assert book.version == "codebook-1"
    assert book.outcome_names() == ["resolved", "partial", "misrepair", "unresolved"]
    assert "factual/presupposition" in book.trouble_types


def test_judge_codes_are_in_the_codebook() -> None:
    from lab.judge._judgement import PRESUPPOSITION_CODES, STRATEGY_CODES

    book = base_codebook()
    assert set(STRATEGY_CODES) <= set(book.layers["S"].code_names())
    assert set(PRESUPPOSITION_CODES) == set(book.layers["P"].code_names())


SPEC = (ROOT / "studies" / "demo.yaml").read_text()


def with_annotation(block: str) -> str:
    head, _, _ = SPEC.partition("annotation:\n")
    return head + "annotation:\n" + block


def test_study_codes_extend_the_selected_layers_and_change_the_version() -> None:
    d = parse_spec(
        with_annotation(
            "  layers: [G, S]\n  codes:\n    G:\n      - {code: REPEAT, definition: Repeats its own turn., key: e}\n"
        ),
        "demo.yaml",
        ROOT / "studies",
    )
    book = codebook_for(d.spec.annotation)
    assert list(book.layers) == ["G", "S"]
    assert book.layers["G"].code_names()[-1] == "REPEAT" and book.layers["G"].get("REPEAT").study  # type: ignore[union-attr]
    assert book.version.startswith("codebook-1+study.")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "  layers: [G]\n  codes:\n    P:\n      - {code: X, definition: d}\n",
            "annotation.codes.P: layer 'P' is not in annotation.layers (G)",
        ),
        (
            "  layers: [G]\n  codes:\n    G:\n      - {code: ACK, definition: d}\n",
            "annotation.codes.G.0.code: code 'ACK' already exists in layer G",
        ),
        (
            "  layers: [G]\n  codes:\n    G:\n      - {code: NEW, definition: d, key: a}\n",
            "annotation.codes.G.0.key: shortcut key 'a' is already used",
        ),
        (
            "  layers: [G]\n  codes:\n    G:\n      - {code: 'bad code', definition: d}\n",
            "annotation.codes.G.0.code: 'bad code' does not match",
        ),
        ("  prelabels: sometimes\n", "annotation.prelabels: got 'sometimes'; expected 'hidden', 'shown' or 'half'"),
        ("  scope: {conditions: [nope]}\n", "annotation.scope.conditions: unknown condition 'nope'"),
    ],
)
def test_bad_annotation_blocks_name_file_line_and_field(block: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(with_annotation(block), "demo.yaml", ROOT / "studies")
    line = SPEC.partition("annotation:\n")[0].count("\n") + 1
    found = [p for p in e.value.problems if message in p]
    assert found, e.value.problems
    assert found[0].startswith("demo.yaml:") and int(found[0].split(":")[1]) >= line


def test_demo_spec_still_valid() -> None:
    d = load_spec_file(ROOT / "studies" / "demo.yaml")
    assert d.spec.annotation.prelabels == "hidden" and d.spec.annotation.claim_minutes == 30


def test_codebook_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codebook", "--layer", "R"]) == 0
    out = capsys.readouterr().out
    assert "R — Repair initiation" in out and "OI-restricted-offer" in out and "No, I meant the Indy 500." in out
    assert "outcomes: resolved" in out and "ACK" not in out
    assert main(["codebook"]) == 0
    out = capsys.readouterr().out
    assert all(f"{k} — " in out for k in "GRPS")
