"""Actions items: the reply parsed as calls and checked with the BFCL AST checker's definitions."""

from __future__ import annotations

import pytest
from conftest import fixture_record, shared_records

from lab.scoring._actions import CallParseError, check_calls, evaluate, parse_calls, standardize


def test_correct_and_wrong_calls_on_the_project_fixture() -> None:
    item = fixture_record("actions")
    right = evaluate(item, "[get_weather(city='Graz'), get_weather(city='Lyon')]")
    assert (right.status, right.value, right.evaluator) == ("scored", 1.0, "lic-actions-bfcl-ast")
    assert right.details["calls"] == [{"get_weather": {"city": "Graz"}}, {"get_weather": {"city": "Lyon"}}]
    assert evaluate(item, "[get_weather(city='Lyon')]").value == 0.0
    assert evaluate(item, "[get_weather(city='Lyon'), get_weather(city='Paris')]").value == 0.0
    assert evaluate(item, "[get_weather(town='Lyon'), get_weather(city='Graz')]").value == 0.0


def test_the_whole_reply_must_be_calls() -> None:
    item = fixture_record("actions")
    prose = evaluate(item, "Sure! I will call get_weather(city='Lyon') and get_weather(city='Graz').")
    assert (prose.status, prose.value) == ("scored", 0.0)
    assert "cannot be parsed" in prose.reason
    fenced = evaluate(item, "```python\n[get_weather(city='lyon'),\n get_weather(city='GRAZ')]\n```")
    assert fenced.value == 1.0


def test_real_bfcl_items() -> None:
    for record in shared_records("actions"):
        calls = []
        for reference in record["reference_answer"]:
            ((name, params),) = reference.items()
            args = ", ".join(f"{k}={v[0]!r}" for k, v in params.items() if v and v[0] != "")
            calls.append(f"{name}({args})")
        assert evaluate(record, "[" + ", ".join(reversed(calls)) + "]").value == 1.0, record["task_id"]
        assert evaluate(record, "[" + calls[0] + "]").value == 0.0


def test_real_item_with_optional_and_alternative_values() -> None:
    record = next(r for r in shared_records("actions") if r["task_id"] == "sharded-BFCL/parallel_198")
    reply = (
        "[lawsuit_search(entity='Google', county='Santa Clara', state='CA'), "
        "lawsuit_search(entity='Facebook', county='San Mateo')]"
    )
    assert evaluate(record, reply).value == 1.0
    assert evaluate(record, reply.replace("'CA'", "'Texas'")).value == 0.0


def test_types_follow_the_function_description() -> None:
    functions = [
        {
            "name": "area",
            "parameters": {
                "type": "dict",
                "properties": {"base": {"type": "float"}, "n": {"type": "integer"}},
                "required": ["base"],
            },
        }
    ]
    reference = [{"area": {"base": [10.0], "n": [3, ""]}}]
    assert check_calls(functions, parse_calls("area(base=10)"), reference, "simple")["valid"]  # an int is a float
    assert check_calls(functions, parse_calls("area(base=10, n=3)"), reference, "simple")["valid"]
    assert not check_calls(functions, parse_calls("area(base=10, n=3.0)"), reference, "simple")["valid"]
    assert not check_calls(functions, parse_calls("area(base='10')"), reference, "simple")["valid"]
    assert not check_calls(functions, parse_calls("area(n=3)"), reference, "simple")["valid"]


def test_parsing_follows_the_authors_parser() -> None:
    assert parse_calls("math.hypot(x=3, y=-4)") == [{"math.hypot": {"x": 3, "y": -4}}]
    assert parse_calls("f(a=[1, 2], b={'k': (1, 2)}, c=data, d=g(1), e=h(x=1))") == [
        {"f": {"a": [1, 2], "b": {"k": (1, 2)}, "c": "data", "d": "g(1)", "e": {"h": {"x": 1}}}}
    ]
    assert parse_calls("f(x=2*3+1)") == [{"f": {"x": 7}}]
    with pytest.raises(CallParseError):
        parse_calls("f(x=__import__('os').getcwd() + 'a')")  # never evaluated
    with pytest.raises(CallParseError):
        parse_calls("f(x=lambda y: y)")
    with pytest.raises(CallParseError):
        parse_calls("x = 1")
    assert standardize("April 1, 2024") == "april12024"


def test_categories() -> None:
    functions = [
        {"name": "a", "parameters": {"type": "dict", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
        {"name": "b", "parameters": {"type": "dict", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
    ]
    reference = [{"b": {"x": [1]}}]
    assert check_calls(functions, parse_calls("b(x=1)"), reference, "multiple")["valid"]
    assert not check_calls(functions, parse_calls("a(x=1)"), reference, "multiple")["valid"]
    assert not check_calls(functions, parse_calls("[b(x=1), b(x=1)]"), reference, "multiple")["valid"]
    both = [{"a": {"x": [1]}}, {"b": {"x": [2]}}]
    assert check_calls(functions, parse_calls("[b(x=2), a(x=1)]"), both, "parallel_multiple")["valid"]


def test_items_without_gold_are_not_scorable() -> None:
    assert evaluate({}, "f()").status == "not_scorable"
    item = fixture_record("actions") | {"language": "Java"}
    assert evaluate(item, "f()").status == "not_scorable"
