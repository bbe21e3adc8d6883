"""Code items: extraction as the authors do it, pass@1, and the containment of the executed code."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import time
import zlib
from pathlib import Path

import pytest
from conftest import fixture_record, shared_records

from lab.scoring import Limits, network_isolation, run_tests
from lab.scoring._code import aevaluate, evaluate, extract_code, load_test_cases, prepare

FAST = Limits(timeout=2, memory_bytes=512 << 20)


def double_item() -> dict:
    return fixture_record("code")


# --- extraction ------------------------------------------------------------------------


def test_extraction_takes_the_last_block_with_a_function_and_its_imports() -> None:
    reply = (
        "First try:\n```python\ndef f(x):\n    return x\n```\nBetter:\n```python\nimport math\n\n"
        "def helper(y):\n    return y\n\ndef g(x):\n    return math.floor(x)\n\nprint(g(2))\n```\nDone."
    )
    assert extract_code(reply) == "import math\n\ndef g(x):\n    return math.floor(x)"


def test_extraction_without_blocks_reads_from_the_last_def() -> None:
    reply = "You can write it like this: def triple(xs):\n    return [3 * x for x in xs]"
    assert extract_code(reply) == "def triple(xs):\n    return [3 * x for x in xs]"


def test_extraction_of_prose_only_is_empty() -> None:
    assert extract_code("I would loop over the list and double each number.") == ""
    assert extract_code("```python\nx = 1\n```") == ""


def test_renaming_replaces_the_first_function_name_everywhere_and_adds_prompt_imports() -> None:
    gold = {
        "prompt": "from typing import List\n\ndef double(xs: List[int]) -> List[int]:\n    pass\n",
        "metadata": {"func_name": "double"},
    }
    code = prepare("def twice(xs):\n    return [x for x in xs] if twice else []", gold)
    assert code == "from typing import List\n\ndef double(xs):\n    return [x for x in xs] if double else []"
    assert prepare("just prose", gold) is None


# --- pass@1 ------------------------------------------------------------------------------


def test_correct_and_wrong_function_on_the_project_fixture() -> None:
    item = double_item()
    right = evaluate(item, "```python\ndef times_two(values):\n    return [v * 2 for v in values]\n```", FAST)
    assert (right.status, right.value, right.evaluator, right.version) == ("scored", 1.0, "lic-code", "1")
    wrong = evaluate(item, "```python\ndef times_two(values):\n    return values\n```", FAST)
    assert wrong.value == 0.0
    assert wrong.details["error"] == "wrong answer"
    assert wrong.details["failure"]["expected"] == "[2, 4]"
    prose = evaluate(item, "Multiply each number by two.", FAST)
    assert (prose.status, prose.value) == ("scored", 0.0)


def test_real_humaneval_items() -> None:
    records = {r["metadata"]["func_name"]: r for r in shared_records("code")}
    by_length = records["by_length"]
    names = "['One', 'Two', 'Three', 'Four', 'Five', 'Six', 'Seven', 'Eight', 'Nine']"
    right = (
        f"```python\ndef solve(arr):\n    names = {names}\n"
        "    return [names[x - 1] for x in sorted((x for x in arr if 1 <= x <= 9), reverse=True)]\n```"
    )
    assert evaluate(by_length, right).value == 1.0
    # Forgetting to reverse fails the first test case.
    assert evaluate(by_length, right.replace(", reverse=True", "")).value == 0.0
    histogram = records["histogram"]
    reply = (
        "```python\nfrom collections import Counter\n\ndef histogram(test):\n    counts = Counter(test.split())\n"
        "    if not counts:\n        return {}\n    top = max(counts.values())\n"
        "    return {k: v for k, v in counts.items() if v == top}\n```"
    )
    assert evaluate(histogram, reply).value == 1.0


def test_program_reading_standard_input() -> None:
    # Items without a function name are programs: their output is compared line by line.
    program = (
        "def main():\n    a = int(input())\n    b = int(input())\n    print(a + b)\n\nif __name__ == '__main__':\n    main()\n"
    )
    assert run_tests(program, ["3\n4\n", "10\n-2"], ["7\n", "8.0"], None, FAST).passed
    wrong = run_tests(program.replace("a + b", "a * b"), ["3\n4\n"], ["7\n"], None, FAST)
    assert (wrong.passed, wrong.results, wrong.error) == (False, [-2], "wrong answer")


def test_private_test_cases_are_decoded_without_running_pickled_code() -> None:
    cases = json.dumps([{"input": "[5]", "output": "[10]"}])
    packed = base64.b64encode(zlib.compress(pickle.dumps(cases))).decode()
    gold = {"public_test_cases": "[]", "private_test_cases": packed, "metadata": {"func_name": "double"}}
    assert load_test_cases(gold) == (["[5]"], ["[10]"], "double")

    class Sneaky:
        def __reduce__(self) -> tuple:
            return (print, ("ran",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Sneaky()))).decode()
    bad = evaluate({"public_test_cases": "[]", "private_test_cases": evil, "metadata": {"func_name": "f"}}, "def f(): pass")
    assert bad.status == "not_scorable"
    assert "objects" in bad.reason


# --- containment --------------------------------------------------------------------------


def test_an_endless_loop_is_stopped_by_the_per_test_limit() -> None:
    started = time.monotonic()
    result = evaluate(double_item(), "```python\ndef double(xs):\n    while True:\n        pass\n```", FAST)
    assert result.value == 0.0
    assert result.details["error"] == "time limit exceeded"
    assert time.monotonic() - started < 30


def test_a_loop_inside_c_code_is_killed_from_outside() -> None:
    # sum() over a huge range never returns to the interpreter, so the alarm cannot fire there:
    # the CPU limit or the parent's wall clock ends the child.
    run = run_tests("def f():\n    return sum(range(10**13))\n", ["[]"], ["0"], "f", Limits(timeout=1))
    assert not run.passed
    assert run.results == [-1] or run.results[-1] in (-3, -4)


def test_unbounded_allocation_hits_the_memory_limit() -> None:
    code = "```python\ndef double(xs):\n    hoard = []\n    while True:\n        hoard.append(bytearray(50_000_000))\n```"
    result = evaluate(double_item(), code, Limits(timeout=6, memory_bytes=256 << 20))
    assert result.value == 0.0
    assert "MemoryError" in result.details["error"]


def test_a_socket_cannot_be_opened() -> None:
    code = (
        "```python\nimport socket\n\ndef double(xs):\n    s = socket.create_connection(('127.0.0.1', 9))\n"
        "    return [2 * x for x in xs]\n```"
    )
    result = evaluate(double_item(), code, FAST)
    assert result.value == 0.0
    assert "socket" in result.details["error"]
    assert result.details["containment"]["network"] == ("namespace" if network_isolation() else "audit hook")


def test_writing_outside_its_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    code = f"```python\ndef double(xs):\n    open({str(target)!r}, 'w').write('out')\n    return [2 * x for x in xs]\n```"
    result = evaluate(double_item(), code, FAST)
    assert result.value == 0.0
    assert not target.exists()
    inside = "```python\ndef double(xs):\n    open('scratch.txt', 'w').write('ok')\n    return [2 * x for x in xs]\n```"
    assert evaluate(double_item(), inside, FAST).value == 1.0


def test_processes_cannot_be_started() -> None:
    code = "```python\nimport os\n\ndef double(xs):\n    os.system('true')\n    return [2 * x for x in xs]\n```"
    result = evaluate(double_item(), code, FAST)
    assert result.value == 0.0
    assert "os.system" in result.details["error"]


def test_the_environment_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_SECRET_FOR_TEST", "s3cret")
    code = (
        "```python\nimport os\n\ndef double(xs):\n"
        "    assert 'LAB_SECRET_FOR_TEST' not in os.environ\n    return [2 * x for x in xs]\n```"
    )
    assert evaluate(double_item(), code, FAST).value == 1.0


def test_the_event_loop_runs_while_code_is_scored() -> None:
    code = "```python\nimport time\n\ndef double(xs):\n    time.sleep(1.5)\n    return [2 * x for x in xs]\n```"
    marks: list[str] = []

    async def ticker() -> None:
        await asyncio.sleep(0.2)
        marks.append("tick")

    async def scored() -> None:
        result = await aevaluate(double_item(), code, FAST)
        marks.append(f"scored {result.value}")

    async def both() -> None:
        await asyncio.gather(scored(), ticker())

    asyncio.run(both())
    assert marks == ["tick", "scored 1.0"]


def test_leetcode_style_solution_class() -> None:
    gold = {
        "public_test_cases": json.dumps(
            [{"input": "[2, 7, 11]\n9", "output": "[0, 1]"}, {"input": "[3, 3]\n6", "output": "[0, 1]"}]
        ),
        "metadata": {"func_name": "twoSum"},
    }
    reply = (
        "```python\nclass Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
        "        for i, n in enumerate(nums):\n            if target - n in seen:\n                return [seen[target - n], i]\n"
        "            seen[n] = i\n```"
    )
    assert extract_code(reply).startswith("class Solution")
    assert evaluate(gold, reply, FAST).value == 1.0
    assert evaluate(gold, reply.replace("[seen[target - n], i]", "[i, seen[target - n]]"), FAST).value == 0.0
