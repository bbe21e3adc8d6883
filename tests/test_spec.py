"""Study spec validation: the demo passes; every broken spec gets a message naming line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.spec import SpecError, load_spec_file, parse_spec

GOOD = """\
slug: tiny
title: Tiny study
consent: You agree.
instructions: Chat.
models:
  bot:
    model: lab/scripted
    params: {script: echo}
conditions:
  full:
    model: bot
    reveal: FULL
  sharded:
    model: bot
    reveal: SHARDED
items:
  - id: t1
    kind: sharded
    shards:
      - {id: 1, text: "Add two numbers."}
      - {id: 2, text: "The first is 2."}
      - {id: 3, text: "The second is 3."}
    answer: {type: number, value: "5"}
"""


def problems(text: str, name: str = "s.yaml") -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_spec(text, name)
    return e.value.problems


def test_demo_study_is_valid(demo_spec_path: Path) -> None:
    d = load_spec_file(demo_spec_path)
    assert d.spec.slug == "demo"
    kinds = {it.kind for it in d.items}
    assert kinds == {"sharded", "presupposition", "clarification"}
    assert {c.reveal for c in d.spec.conditions.values()} >= {"FULL", "SHARDED", "ON_REQUEST"}
    assert any(c.intervention == "mediator" for c in d.spec.conditions.values())
    # The API model is optional: without its key its condition is left out, with a warning.
    assert "sharded-gpt" not in d.active_conditions()
    assert any("OPENAI_API_KEY" in w for w in d.warnings)


def test_demo_uses_api_model_when_key_present(scripted_demo_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert "sharded-gpt" in load_spec_file(scripted_demo_path).active_conditions()


def test_good_spec_and_hash_is_stable() -> None:
    a, b = parse_spec(GOOD, "a.yaml"), parse_spec(GOOD, "b.yaml")
    assert a.sha256() == b.sha256()
    assert a.normalized()["plan"]["turn_limit"] == 12
    changed = parse_spec(GOOD.replace("Add two numbers.", "Add two whole numbers."))
    assert changed.sha256() != a.sha256()


def test_empty_file() -> None:
    [p] = problems("", "empty.yaml")
    assert p.startswith("empty.yaml:1:") and "empty" in p


def test_yaml_syntax_error_names_line() -> None:
    [p] = problems(GOOD.replace("  bot:\n", "  bot: [\n"), "bad.yaml")
    assert p.startswith("bad.yaml:") and "YAML syntax error" in p
    assert int(p.split(":")[1]) >= 6


def test_unknown_key_names_line_and_field() -> None:
    [p] = problems(GOOD.replace("    reveal: FULL\n", "    reveal: FULL\n    colour: blue\n"))
    assert p == "s.yaml:13: conditions.full.colour: unknown field"


def test_wrong_type() -> None:
    [p] = problems(GOOD + "plan:\n  turn_limit: lots\n")
    assert p.startswith("s.yaml:25: plan.turn_limit:") and "integer" in p


def test_bad_reveal_mode_lists_choices() -> None:
    [p] = problems(GOOD.replace("reveal: SHARDED", "reveal: SHREDDED"))
    assert p.startswith("s.yaml:15: conditions.sharded.reveal:") and "'FULL'" in p and "SHREDDED" in p


def test_unknown_model_reference() -> None:
    [p] = problems(GOOD.replace("    model: bot\n    reveal: SHARDED", "    model: gpt5\n    reveal: SHARDED"))
    assert p == "s.yaml:14: conditions.sharded.model: unknown model 'gpt5' (declared: bot)"


def test_unknown_model_string() -> None:
    ps = problems(GOOD.replace("model: lab/scripted", "model: nosuchprovider/xyz"))
    assert len(ps) == 1 and ps[0].startswith("s.yaml:7: models.bot.model:") and "nosuchprovider/xyz" in ps[0]


def test_missing_required_field() -> None:
    [p] = problems(GOOD.replace("consent: You agree.\n", ""))
    assert p == "s.yaml:1: consent: required field is missing"


def test_bad_item_inline() -> None:
    [p] = problems(GOOD.replace('value: "5"}', 'value: "5"}\n    colour: red'))
    assert p.startswith("s.yaml:17: items.0:") and "colour: unknown field" in p


def test_missing_item_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.split("items:")[0] + "items:\n  - file: nothere.jsonl\n")
    with pytest.raises(SpecError) as e:
        load_spec_file(path)
    [p] = e.value.problems
    assert p.startswith(f"{path}:17: items.0.file:") and "file not found" in p


def test_bad_item_file_line(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"id": "a", "kind": "open", "prompt": "hi"}\n{"id": "b", "kind": "open"}\n')
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.split("items:")[0].replace("reveal: SHARDED", "reveal: FULL") + "items:\n  - file: items.jsonl\n")
    with pytest.raises(SpecError) as e:
        load_spec_file(path)
    assert "items.jsonl:2: prompt: required field is missing" in e.value.problems[0]


def test_condition_without_items() -> None:
    text = GOOD.replace("conditions:\n", "conditions:\n  loaded:\n    model: bot\n    presupposition: loaded\n")
    [p] = problems(text)
    assert p.startswith("s.yaml:10: conditions.loaded:") and "no item fits" in p


def test_duplicate_key() -> None:
    [p] = problems(GOOD.replace("title: Tiny study\n", "title: Tiny study\ntitle: Again\n"))
    assert p == "s.yaml:3: title: duplicate key"


def test_not_a_mapping() -> None:
    [p] = problems("- just\n- a list\n")
    assert p.startswith("s.yaml:1:") and "mapping" in p


def test_system_prompt_intervention_needs_prompt() -> None:
    [p] = problems(GOOD.replace("    reveal: FULL\n", "    reveal: FULL\n    intervention: system-prompt\n"))
    assert p.startswith("s.yaml:10: conditions.full:") and "system_prompt" in p


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fixtures" / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_broken_spec_corpus(path: Path) -> None:
    """Each broken spec's first line is a comment giving the expected message."""
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(SpecError) as e:
        load_spec_file(path)
    assert any(expected in p for p in e.value.problems), e.value.problems


def test_every_problem_is_reported_in_one_pass_each_at_its_own_field() -> None:
    """Structural errors do not hide the checks across fields (keys in params, unknown models)."""
    text = """\
slug: Bad Slug
title: Five problems
consent: You agree.
instructions: Chat.
models:
  m1:
    model: openai/gpt-4o-mini
    params:
      temperature: hot
      api_key: sk-abc
conditions:
  full:
    model: m1
    reveal: SHREDDED
  other:
    model: m2
    reveal: FULL
items:
  - id: t1
    kind: open
    prompt: Hello
plan:
  turn_limit: lots
"""
    ps = problems(text)
    assert [p.split(": ", 2)[:2] for p in ps] == [
        ["s.yaml:1", "slug"],
        ["s.yaml:9", "models.m1.params.temperature"],
        ["s.yaml:10", "models.m1.params.api_key"],
        ["s.yaml:14", "conditions.full.reveal"],
        ["s.yaml:16", "conditions.other.model"],
        ["s.yaml:23", "plan.turn_limit"],
    ], ps
    assert "must be a number from 0 to 2, not 'hot'" in ps[1]
    assert "unknown model 'm2' (declared: m1)" in ps[4]


def test_a_reference_to_a_broken_model_is_not_called_unknown() -> None:
    ps = problems(GOOD.replace("    params: {script: echo}\n", "    params: {script: echo}\n    colour: red\n"))
    assert len(ps) == 1 and ps[0].startswith("s.yaml:9: models.bot.colour: unknown field"), ps
