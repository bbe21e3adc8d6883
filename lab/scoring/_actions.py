"""Actions items (BFCL): the reply as function calls, checked by the BFCL AST checker.

As the Lost in Conversation actions task scores them (``tasks/actions``), which uses the
Berkeley Function Calling Leaderboard's AST checker as vendored by the authors:

- **Parsing (the whole reply is the answer).** Leading `````tool_code``/`````python``/
  `````json``/````` ``/`` ` `` and a trailing fence are dropped, line breaks become spaces,
  outer ``[``, ``]`` and ``'`` are stripped, and the rest must be one Python expression: a
  call, or calls separated by commas. A call's name may be dotted (``math.hypot``); only
  keyword arguments count. Argument values are literals, lists, dicts, tuples, names (kept
  as their text), calls without keywords (kept as their text), calls with keywords (as
  nested calls) and subscripts (as their text); a unary operator on a literal gives its
  negation, as the authors' parser does. Anything else, or text around the calls, fails
  to parse and scores 0.
- **Checking.** By the item's ``test_category``: ``parallel`` (any order), ``multiple``
  (one call, chosen among several functions) or simple (exactly one call). Each call must
  name a function of the item, give every required parameter, no unknown one, values of
  the declared type (an int is accepted for a float; a tuple for a tuple) and each value
  among the reference's accepted values; strings compare without case, spaces and
  ``,./-_*^``, lists element-wise, dicts key by key. A reference parameter whose accepted
  values include ``""`` may be left out. Valid → 1, else 0.

The ``bfcl-eval`` package itself is not used: its checker module imports every model
provider's SDK, and installing it would pull PyTorch and pin other libraries. This module
implements the same definitions; a binary operation is evaluated only on numeric literals
(the authors' parser ``eval``s any, which the lab will not do with model text).
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any, cast

from ..errors import LabError
from ._evaluation import Evaluation, not_scored

EVALUATOR = "lic-actions-bfcl-ast"
VERSION = "1"
FAMILY = "actions"

_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class CallParseError(LabError, ValueError):
    """The reply is not a list of function calls."""


def parse_calls(reply: str) -> list[dict[str, dict[str, Any]]]:
    """The calls in a reply as ``[{name: {param: value}}]``.

    Raises:
        CallParseError: when the reply is not function calls.
    """
    text = reply.strip()
    for start in ("```tool_code", "```python", "```json", "```", "`"):
        if text.startswith(start):
            text = text[len(start) :]
    for end in ("```", "`"):
        if text.endswith(end):
            text = text[: -len(end)]
    text = text.strip().replace("\n", " ").strip("[]'")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise CallParseError(f"not Python calls ({e.msg})") from None
    body = tree.body
    if isinstance(body, ast.Call):
        return [_call(body)]
    elements = getattr(body, "elts", None)
    if elements is None:
        raise CallParseError(f"expected function calls, found {type(body).__name__}")
    calls = []
    for element in elements:
        if not isinstance(element, ast.Call):
            raise CallParseError(f"expected a function call, found {type(element).__name__}")
        calls.append(_call(element))
    return calls


def _call(node: ast.Call) -> dict[str, dict[str, Any]]:
    parts: list[str] = []
    func: ast.expr = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return {".".join(reversed(parts)): {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg is not None}}


def _value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.operand, ast.Constant):
            raise CallParseError("a unary operator applies only to a literal")
        number = node.operand.value
        if not isinstance(number, int | float | complex):
            raise CallParseError("a unary operator applies only to a number")
        return -number
    if isinstance(node, ast.List):
        return [_value(v) for v in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise CallParseError("dict unpacking is not a value")
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.BinOp):
        return _arithmetic(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return ast.unparse(node) if not node.keywords else _call(node)
    if isinstance(node, ast.Tuple):
        return tuple(_value(v) for v in node.elts)
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.value) + "[" + ast.unparse(node.slice) + "]"
    raise CallParseError(f"unsupported argument: {type(node).__name__}")


def _arithmetic(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise CallParseError("an exponent this large is not evaluated")
        try:
            return _BINARY[type(node.op)](left, right)
        except (ArithmeticError, ValueError) as e:
            raise CallParseError(f"arithmetic fails: {e}") from None
    raise CallParseError("only arithmetic on numbers is evaluated in an argument")


# --- the AST checker -----------------------------------------------------------------


def _fail(error: str, kind: str) -> dict[str, Any]:
    return {"valid": False, "error": [error], "error_type": kind}


_OK: dict[str, Any] = {"valid": True, "error": []}


def standardize(text: str) -> str:
    """Lower-case, without spaces and ``,./-_*^``, single quotes as double (BFCL's string form)."""
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _answer_type(accepted: list[Any]) -> type | None:
    for answer in accepted:
        if answer != "":
            return type(answer)
    return None


def _type_check(
    param: str, value: Any, accepted: list[Any], declared: str, expected: type, nested: type | None
) -> dict[str, Any]:
    answer_type = _answer_type(accepted)
    is_variable = answer_type is not None and answer_type != expected
    if type(value) is expected:
        if nested is None:
            return {"valid": True, "error": [], "is_variable": is_variable}
        for option in accepted:
            fits = True
            if type(option) is list:
                for element in cast(list[Any], value):  # type(value) is list here: ``expected`` is list
                    if not _type_check(param, element, option, str(nested), nested, None)["valid"]:
                        fits = False
                        break
            if fits:
                return {"valid": True, "error": [], "is_variable": is_variable}
        result = _fail(f"Nested type checking failed for parameter {param!r}.", "type_error:nested")
        result["is_variable"] = False
        if answer_type is not None and type(value) is answer_type:
            result["is_variable"] = True
            return result
        result["error"].append(f"Incorrect type for parameter {param!r}. Expected type {declared}, got {type(value).__name__}.")
        result["error_type"] = "type_error:simple"
        return result
    if answer_type is not None and type(value) is answer_type:
        return {"valid": True, "error": [], "is_variable": True}
    result = _fail(
        f"Incorrect type for parameter {param!r}. Expected type {declared}, got {type(value).__name__}.", "type_error:simple"
    )
    result["is_variable"] = False
    return result


def _string_check(param: str, value: str, accepted: list[Any]) -> dict[str, Any]:
    if standardize(value) not in [standardize(a) for a in accepted if type(a) is str]:
        return _fail(f"Invalid value for parameter {param!r}: {value!r}. Expected one of {accepted}.", "value_error:string")
    return _OK


def _list_check(param: str, value: list[Any], accepted: list[Any]) -> dict[str, Any]:
    mine = [standardize(v) if type(v) is str else v for v in value]
    options = [[standardize(v) if type(v) is str else v for v in option] for option in accepted]
    if mine not in options:
        return _fail(f"Invalid value for parameter {param!r}: {value!r}. Expected one of {accepted}.", "value_error:list/tuple")
    return _OK


def _dict_check(param: str, value: dict[str, Any], accepted: list[Any]) -> dict[str, Any]:
    result = _fail("", "dict_checker:unclear")
    result["error"] = []
    for option in accepted:
        if option == "":
            continue
        result = {"valid": False, "error": [], "error_type": "dict_checker:unclear"}
        fits = True
        for key, given in value.items():
            if key not in option:
                result = _fail(f"Unexpected dict key parameter: '{key}'.", "value_error:dict_key")
                fits = False
                break
            mine = standardize(given) if type(given) is str else given
            theirs = [standardize(v) if type(v) is str else v for v in option[key]]
            if mine not in theirs:
                result = _fail(
                    f"Invalid value for parameter {key!r}: {given!r}. Expected one of {theirs}.", "value_error:dict_value"
                )
                fits = False
                break
        for key, values in option.items():
            if key not in value and "" not in values:
                result = _fail(f"Missing dict key parameter: '{key}'.", "value_error:dict_key")
                fits = False
                break
        if fits:
            return _OK
    return result


def _list_dict_check(param: str, value: list[Any], accepted: list[Any]) -> dict[str, Any]:
    result = _fail("", "list_dict_checker:unclear")
    result["error"] = []
    for option in accepted:
        if len(value) != len(option):
            result = _fail("Wrong number of dictionaries in the list.", "value_error:list_dict_count")
            continue
        fits = True
        for given, wanted in zip(value, option, strict=True):
            result = _dict_check(param, given, [wanted])
            if not result["valid"]:
                fits = False
                break
        if fits:
            return _OK
    return result


def check_call(function: dict[str, Any], call: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Check one call against one function description and one reference call (BFCL's simple checker)."""
    accepted_params = next(iter(reference.values()))
    name = function["name"]
    properties = function["parameters"]["properties"]
    required = function["parameters"].get("required", [])
    if name not in call:
        return _fail(f"Function name {name!r} not found in model output.", "simple_function_checker:wrong_func_name")
    given = call[name]
    for param in required:
        if param not in given:
            return _fail(f"Missing required parameter: {param!r}.", "simple_function_checker:missing_required")
    for param, value in given.items():
        if param not in properties or param not in accepted_params:
            return _fail(f"Unexpected parameter: {param!r}.", "simple_function_checker:unexpected_param")
        declared = properties[param]["type"]
        if declared not in _TYPES:
            return _fail(f"Unknown parameter type {declared!r} for {param!r}.", "type_error:unknown")
        expected = _TYPES[declared]
        nested = _TYPES.get(properties[param].get("items", {}).get("type", ""), None) if declared in _NESTED else None
        if declared == "tuple" and type(value) is tuple:
            value = list(value)
        if declared == "float" and type(value) is int:
            value = float(value)
        checked = _type_check(param, value, accepted_params[param], declared, expected, nested)
        if not checked["valid"]:
            return checked
        if not checked["is_variable"]:
            special = None
            if expected is dict:
                special = _dict_check(param, value, accepted_params[param])
            elif expected is list and nested is dict:
                special = _list_dict_check(param, value, accepted_params[param])
            elif expected is str:
                special = _string_check(param, value, accepted_params[param])
            elif expected is list:
                special = _list_check(param, value, accepted_params[param])
            if special is not None:
                if not special["valid"]:
                    return special
                continue
        if value not in accepted_params[param]:
            return _fail(
                f"Invalid value for parameter {param!r}: {value!r}. Expected one of {accepted_params[param]}.",
                "value_error:others",
            )
    for param, values in accepted_params.items():
        if param not in given and "" not in values:
            return _fail(
                f"Optional parameter {param!r} not provided and not marked as optional.",
                "simple_function_checker:missing_optional",
            )
    return {"valid": True, "error": [], "error_type": "simple_function_checker:unclear"}


def _describe(functions: Any, name: str) -> dict[str, Any] | None:
    if isinstance(functions, list):
        return next((f for f in functions if f.get("name") == name), None)
    return functions


def check_calls(functions: Any, calls: list[dict[str, Any]], reference: list[dict[str, Any]], category: str) -> dict[str, Any]:
    """BFCL's AST check of parsed calls against the reference, by test category."""
    if "parallel" in category:
        if len(calls) != len(reference):
            return _fail("Wrong number of functions.", "parallel_function_checker_no_order:wrong_count")
        matched: set[int] = set()
        for i, wanted in enumerate(reference):
            function = _describe(functions, next(iter(wanted)))
            if function is None:
                return _fail(
                    f"No description of function {next(iter(wanted))!r}.", "parallel_function_checker_no_order:no_description"
                )
            found = False
            for j, call in enumerate(calls):
                if j in matched:
                    continue
                if check_call(function, call, wanted)["valid"]:
                    matched.add(j)
                    found = True
                    break
            if not found:
                return _fail(
                    f"Could not find a matching function among the calls for reference call {i}.",
                    "parallel_function_checker_no_order:cannot_find_match",
                )
        return _OK
    if "multiple" in category:
        if len(calls) != len(reference):
            return _fail("Wrong number of functions.", "multiple_function_checker:wrong_count")
        function = _describe(functions, next(iter(reference[0])))
        if function is None:
            return _fail("No description of the reference function.", "multiple_function_checker:no_description")
        return check_call(function, calls[0], reference[0])
    if len(calls) != 1:
        return _fail("Wrong number of functions.", "simple_function_checker:wrong_count")
    first = functions[0] if isinstance(functions, list) else functions
    return check_call(first, calls[0], reference[0])


def evaluate(gold: dict[str, Any], reply: str) -> Evaluation:
    """Score an actions reply: parse the whole reply as calls and run the AST check."""
    functions, reference = gold.get("function"), gold.get("reference_answer")
    if not functions or not isinstance(reference, list) or not reference:
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", "The item has no function list or reference_answer.")
    language = gold.get("language", "Python")
    if language != "Python":
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", f"Only Python calls are checked, not {language}.")
    category = str(gold.get("test_category") or "simple")
    extracted = reply.strip()
    try:
        calls = parse_calls(reply)
    except CallParseError as e:
        return Evaluation(
            FAMILY, EVALUATOR, VERSION, "scored", 0.0, f"The reply cannot be parsed as function calls: {e}.", extracted, {}
        )
    try:
        result = check_calls(functions, calls, reference, category)
    except (KeyError, TypeError, AttributeError, StopIteration) as e:
        return Evaluation(
            FAMILY, EVALUATOR, VERSION, "scored", 0.0, f"The calls do not fit the check ({type(e).__name__}).", extracted, {}
        )
    details = {"calls": _jsonable(calls), "category": category, "error_type": result.get("error_type")}
    if result["valid"]:
        return Evaluation(FAMILY, EVALUATOR, VERSION, "scored", 1.0, "The calls match the reference answer.", extracted, details)
    error = "; ".join(str(e) for e in result["error"]) or "invalid"
    return Evaluation(FAMILY, EVALUATOR, VERSION, "scored", 0.0, f"The calls do not match: {error}", extracted, details)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
