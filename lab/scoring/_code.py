"""Code items (HumanEval and LiveCodeBench): pass@1 of the reply's last function.

As the Lost in Conversation code scores them (``tasks/code``):

- **Extraction.** The reply's fenced code blocks are searched from the last to the first
  for one holding a top-level function; the answer is that block's last top-level function,
  from its first decorator to its end, preceded by every import statement of the block.
  Without fenced blocks the reply is read from its last ``import`` (or else its last
  ``def``) on. A reply with ``class Solution`` gives its last block holding that class.
- **Evaluation.** No ``def`` scores 0. The imports of the item's ``prompt`` are put in
  front; the name of the first function defined is replaced, everywhere in the text, by the
  item's ``metadata.func_name`` (a plain text replacement, as the authors do); the code then
  runs against every test case of ``public_test_cases`` (and ``private_test_cases`` when the
  item has them), each with a 6-second limit, in a contained child process
  (:mod:`lab.scoring._sandbox`). All pass → 1, else 0.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickle
import re
import zlib
from typing import Any

from ._evaluation import Evaluation, not_scored
from ._sandbox import Limits, RunResult, arun_tests, run_tests

EVALUATOR = "lic-code"
VERSION = "1"
FAMILY = "code"

_FENCE = re.compile(r"```(?:python)?\s*(.*?)\s*```", re.DOTALL)


def extract_code(reply: str) -> str:
    """The function a code reply offers, extracted as the authors' ``extract_answer`` does.

    Returns:
        The function with the imports of its block in front, or "" when there is none.
    """
    blocks = _FENCE.findall(reply)
    if "class Solution" in reply:
        holding = [b for b in blocks if "class Solution" in b]
        return holding[-1] if holding else ""
    if blocks:
        for block in reversed(blocks):
            found = _last_function(block)
            if found:
                return found
        return ""
    text = reply.strip()
    if text.startswith("`"):
        text = text[text.find("\n") :].strip()
    start = text.rfind("import")
    if start < 0:
        start = text.rfind("def")
    if start >= 0:
        text = text[start:]
    return _last_function(text)


def _last_function(code: str) -> str:
    """The last top-level function of ``code`` with every import of ``code`` in front."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return ""
    imports = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if not functions:
        return ""
    last = functions[-1]
    start = (last.decorator_list[0].lineno if last.decorator_list else last.lineno) - 1
    text = "\n".join(code.splitlines()[start : last.end_lineno])
    return "\n".join(imports) + "\n\n" + text if imports else text


class _OnlyPlainData(pickle.Unpickler):
    """Unpickles strings, numbers, lists and dicts; refuses any class (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"test cases may not hold objects ({module}.{name})")


def load_test_cases(gold: dict[str, Any]) -> tuple[list[str], list[str], str | None]:
    """The item's test inputs, expected outputs and function name, as the authors load them.

    ``public_test_cases`` is a JSON list of ``{input, output}``; ``private_test_cases``
    (LiveCodeBench) is the same as JSON or base64 of zlib of a pickled JSON string.

    Raises:
        ValueError: when the test cases cannot be read.
    """
    public = _cases(gold.get("public_test_cases"), "public_test_cases")
    private = _cases(gold.get("private_test_cases"), "private_test_cases") if "private_test_cases" in gold else []
    cases = public + private
    metadata = gold.get("metadata")
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    return [str(c["input"]) for c in cases], [str(c["output"]) for c in cases], fn_name or None


def _cases(raw: Any, name: str) -> list[dict[str, Any]]:
    if isinstance(raw, list):
        value: Any = raw
    elif isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            try:
                packed = zlib.decompress(base64.b64decode(raw.encode("utf-8")))
                value = json.loads(_OnlyPlainData(io.BytesIO(packed)).load())
            except (ValueError, zlib.error, pickle.UnpicklingError, EOFError, TypeError) as e:
                raise ValueError(f"{name} cannot be read: {e}") from None
    else:
        raise ValueError(f"{name} is missing")
    if not isinstance(value, list) or not all(isinstance(c, dict) and "input" in c and "output" in c for c in value):
        raise ValueError(f"{name} is not a list of {{input, output}} cases")
    return value


def prepare(extracted: str, gold: dict[str, Any]) -> str | None:
    """The program to run: prompt imports in front, the function renamed; None without ``def``."""
    code = extracted.replace("```python", "").replace("```", "")
    if "def " not in code:
        return None
    prompt = gold.get("prompt")
    if isinstance(prompt, str):
        try:
            tree = ast.parse(prompt)
        except (SyntaxError, ValueError):
            tree = None
        imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] if tree else []
        if imports:
            code = "\n".join(imports) + "\n\n" + code
    metadata = gold.get("metadata")
    target = metadata.get("func_name") if isinstance(metadata, dict) else None
    if target:
        old = code.split("def ")[1].split("(")[0].strip()
        if old:
            code = code.replace(old, target)
    return code


def _verdict(extracted: str, run: RunResult, n_tests: int) -> Evaluation:
    passed = sum(1 for r in run.results if r is True)
    details = {
        "tests": n_tests,
        "passed_before_failure": passed,
        "error": run.error,
        "failure": run.detail,
        "containment": run.containment,
        "seconds": round(run.seconds, 3),
    }
    if run.passed:
        return Evaluation(
            FAMILY, EVALUATOR, VERSION, "scored", 1.0, f"The function passes all {n_tests} test cases.", extracted, details
        )
    return Evaluation(
        FAMILY,
        EVALUATOR,
        VERSION,
        "scored",
        0.0,
        f"The function fails a test case ({run.error or 'failed'}).",
        extracted,
        details,
    )


def _setup(gold: dict[str, Any], reply: str) -> Evaluation | tuple[str, str, list[str], list[str], str | None]:
    extracted = extract_code(reply)
    try:
        inputs, outputs, fn_name = load_test_cases(gold)
    except ValueError as e:
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", f"The item's test cases cannot be used: {e}.")
    if not inputs:
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", "The item has no test cases.")
    program = prepare(extracted, gold)
    if program is None:
        return Evaluation(FAMILY, EVALUATOR, VERSION, "scored", 0.0, "The reply holds no function definition.", extracted, {})
    return extracted, program, inputs, outputs, fn_name


def evaluate(gold: dict[str, Any], reply: str, limits: Limits | None = None) -> Evaluation:
    """Score a code reply (blocks while the code runs; see :func:`aevaluate`)."""
    setup = _setup(gold, reply)
    if isinstance(setup, Evaluation):
        return setup
    extracted, program, inputs, outputs, fn_name = setup
    return _verdict(extracted, run_tests(program, inputs, outputs, fn_name, limits), len(inputs))


async def aevaluate(gold: dict[str, Any], reply: str, limits: Limits | None = None) -> Evaluation:
    """Score a code reply; the code runs in a child process watched from a worker thread."""
    setup = _setup(gold, reply)
    if isinstance(setup, Evaluation):
        return setup
    extracted, program, inputs, outputs, fn_name = setup
    return _verdict(extracted, await arun_tests(program, inputs, outputs, fn_name, limits), len(inputs))
