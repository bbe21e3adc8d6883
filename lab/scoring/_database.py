"""Database items (Spider): execution match of the predicted and the reference SQL.

As the Lost in Conversation database task scores them (``tasks/database``, after Zhong et
al.'s test-suite evaluation with value plugging and without ``DISTINCT``):

- The predicted SQL loses fenced-code markers and has its white space collapsed; both
  queries get ``> =``/``< =``/``! =`` joined and every ``DISTINCT`` removed; MySQL's
  ``YEAR(CURDATE())`` reads 2020.
- Candidates: the prediction as written, then the prediction with the reference's literal
  values plugged into its value slots in every combination, at most 100 candidates in all.
- A candidate matches when, on every ``*.sqlite`` file of the item's database folder, it
  runs and its rows equal the reference's rows up to a reordering of columns, as a bag of
  rows, and in order only when the reference has ``ORDER BY``. Any matching candidate → 1,
  else 0.

Answer extraction: the authors ask an LLM to cut the SQL out of the reply. The lab reads the
last fenced block of the reply (a ```sql block first), else the last unfenced statement: from
a line starting ``SELECT``/``WITH`` that does not continue an earlier statement, over the
lines that continue it, up to a blank line, a ``;`` or the first line of prose (measured on
``tests/data/sql_extraction.jsonl``).

The lab opens the databases read-only, refuses ``ATTACH`` and writing statements, stops a
query after 60 seconds, and reads at most one row more than the reference returned.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import LabError
from ._evaluation import Evaluation, not_scored

EVALUATOR = "lic-database"
VERSION = "2"
FAMILY = "database"

QUERY_SECONDS = 60.0
"""Longest a single query may run (the authors' limit)."""

MAX_CANDIDATES = 100
"""Candidates tried: the prediction and its value-plugged variants (the authors' cap)."""

DATABASE_FIELD = "database_path"
"""Field of an item's gold data holding its Spider database folder (set on import)."""

_SLOT = "valuerare"
_FENCED = re.compile(r"```([A-Za-z]*)[ \t]*\n?(.*?)```", re.DOTALL)
_SQL_START = re.compile(r"(?im)^\s*(select|with)\b")
_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


class DatabaseMissing(LabError, LookupError):
    """The item's database is not available."""


def extract_sql(reply: str) -> str:
    """The SQL query of a reply: its last fenced block (``sql`` first), else its last unfenced statement.

    An unfenced statement starts on a line that starts with ``SELECT``/``WITH`` and is not
    inside or continuing an earlier statement (a subquery on its own line belongs to the
    query around it); it runs over the following lines while they continue it (an open
    parenthesis, a line ending in a comma, operator or keyword, a line starting with a
    keyword or punctuation) and stops at a blank line, a ``;`` or the first line of prose.
    """
    blocks = [(lang.lower(), body.strip()) for lang, body in _FENCED.findall(reply)]
    for wanted in ("sql", None):
        chosen = [body for lang, body in blocks if (wanted is None or lang == wanted) and body]
        if chosen:
            return chosen[-1]
    lines = reply.split("\n")
    starts = [i for i, line in enumerate(lines) if _SQL_START.match(line)]
    statement: list[str] = []
    covered = -1
    for i in starts:
        if i <= covered:
            continue  # a line of the statement before (a subquery, a UNION's second half)
        statement = _statement(lines, i)
        covered = i + len(statement) - 1
    if statement:
        return "\n".join(statement).strip().rstrip(";").strip()
    return reply.strip()


_CONTINUES_AFTER = re.compile(
    r"(?i)(,|\(|=|<|>|\+|-|\*|/|\b(select|from|where|and|or|not|in|on|join|by|as|union|intersect|except|"
    r"having|between|like|is|all|distinct|with|case|when|then|else|set|values|exists))\s*$"
)
_CONTINUES_BEFORE = re.compile(
    r"(?i)^\s*([(),'\"*0-9.=<>]|(select|from|where|and|or|not|in|on|join|inner|left|right|outer|cross|natural|"
    r"group|order|by|having|limit|offset|union|intersect|except|as|asc|desc|case|when|then|else|end|between|like|"
    r"is|null|exists|all|distinct|with)\b)"
)


def _statement(lines: list[str], start: int) -> list[str]:
    """The lines of the SQL statement that starts at ``lines[start]``."""
    out: list[str] = []
    depth = 0
    for line in lines[start:]:
        if out:
            if not line.strip():
                break
            if depth <= 0 and not _CONTINUES_AFTER.search(out[-1]) and not _CONTINUES_BEFORE.match(line):
                break  # prose after a complete statement
        code, _, rest = line.partition(";")
        out.append(code)
        depth += code.count("(") - code.count(")")
        if rest or line.rstrip().endswith(";"):
            break
    return out


def clean_prediction(sql: str) -> str:
    """Fence markers dropped and white space collapsed (the authors' first step)."""
    sql = sql.replace("```sql", "").replace("```", "")
    return re.sub(r"\s+", " ", sql).strip()


def join_operators(query: str) -> str:
    """``> =``, ``< =``, ``! =`` written as one operator."""
    return query.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def _tokens(query: str) -> list[Any]:
    import sqlparse

    parsed = sqlparse.parse(query)
    return list(parsed[0].flatten()) if parsed else []


def without_distinct(query: str) -> str:
    """The query with every ``DISTINCT`` token removed."""
    return "".join(t.value for t in _tokens(query) if t.value.lower() != "distinct")


def _normalized(query: str) -> str:
    """Semicolons and tabs dropped, tokens joined by single spaces, ``T1.*`` read as ``*``."""
    from sqlparse import tokens as T

    query = query.strip().replace(";", "").replace("\t", "")
    query = " ".join(t.value for t in _tokens(query) if t.ttype != T.Whitespace)
    for alias in ("t1.*", "t2.*", "t3.*", "T1.*", "T2.*", "T3.*"):
        query = query.replace(alias, "*")
    return query


def query_values(query: str) -> tuple[list[str], set[str]]:
    """The query's tokens with its literal values replaced by a slot, and the set of values.

    Quoted strings are values; then numbers written as whole tokens (decimals, then
    integers not glued to a ``t``/``T`` alias). Tokens are lower-cased; ``T1.col`` is split
    into ``t1 . col``.
    """
    import sqlparse
    from sqlparse import tokens as T

    sql = sqlparse.format(_normalized(query), reindent=False, keyword_case="upper")
    sql = re.sub(r"(T\d+\.)\s", r"\1", sql)
    values: list[str] = []
    strings = [t.value for t in _tokens(sql) if t.ttype in (T.Literal.String.Single, T.Literal.String.Symbol)]
    for value in strings:
        values.append(value)
        sql = sql.replace(value.strip(), _SLOT.upper())
    words = sql.split()
    decimals = re.findall(r"[-+]?\d*\.\d+", sql)
    values += [w for w in words if w in decimals]
    words = [_SLOT.upper() if w in decimals else w for w in words]
    integers = [i.strip() for i in re.findall(r"[^tT]\d+", " ".join(words))]
    values += [w for w in words if w in integers]
    words = [_SLOT.upper() if w in integers else w for w in words]
    out: list[str] = []
    for word in words:
        if "." in word and re.findall(r"[Tt]\d+\.", word):
            out.extend(part.lower() for part in word.replace(".", " . ").split() if part)
        elif word:
            out.append(word.lower())
    return out, set(values)


def plugged_candidates(gold: str, pred: str) -> Iterator[str]:
    """The prediction with the reference's values in its value slots, every combination.

    The reference's values are taken in sorted order so that the candidates (and the cap on
    their number) do not depend on Python's string hashing.
    """
    _, gold_values = query_values(gold)
    pred_words, _ = query_values(pred)
    slots = [i for i, w in enumerate(pred_words) if w == _SLOT]
    for combo in itertools.product(sorted(gold_values), repeat=len(slots)):
        words = list(pred_words)
        for index, value in zip(slots, combo, strict=True):
            words[index] = value
        yield " ".join(words)


def _unordered_row(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def results_match(gold: list[tuple[Any, ...]], pred: list[tuple[Any, ...]], order_matters: bool) -> bool:
    """Whether two query results are the same table up to column order (and row order unless it matters)."""
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    width = len(gold[0])
    if len(pred[0]) != width:
        return False
    a, b = [_unordered_row(r) for r in gold], [_unordered_row(r) for r in pred]
    if (a != b) if order_matters else (set(a) != set(b)):
        return False
    columns = [{row[i] for row in gold} for i in range(width)]
    # A predicted column can stand for a reference column only if all its values occur there.
    allowed = [[j for j in range(width) if all(row[j] in columns[i] for row in pred)] for i in range(width)]
    for perm in itertools.product(*allowed):
        if len(set(perm)) != width:
            continue
        moved = pred if width == 1 else [tuple(row[j] for j in perm) for row in pred]
        if order_matters:
            if gold == moved:
                return True
        elif set(gold) == set(moved) and Counter(gold) == Counter(moved):
            return True
    return False


def _deny_writes(action: int, *args: Any) -> int:
    """Reading is allowed; anything else (writes, ATTACH, PRAGMA) is refused."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def run_query(path: Path, query: str, *, max_rows: int | None = None) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on a SQLite file (at most ``max_rows`` when given).

    Raises:
        sqlite3.Error: when the query fails, writes, or runs past :data:`QUERY_SECONDS`.
    """
    query = _CUR_YEAR.sub("2020", query)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.text_factory = lambda b: b.decode(errors="ignore")
        conn.set_authorizer(_deny_writes)
        deadline = time.monotonic() + QUERY_SECONDS
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10000)
        cursor = conn.execute(query)
        return cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows)
    finally:
        conn.close()


def database_files(folder: str | Path) -> list[Path]:
    """The ``*.sqlite`` files of an item's database folder, sorted.

    Raises:
        DatabaseMissing: when the folder does not exist or holds no such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatabaseMissing(f"the database folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if ".sqlite" in p.name and p.is_file())
    if not files:
        raise DatabaseMissing(f"the database folder {folder} holds no .sqlite file")
    return files


def execution_match(files: list[Path], pred: str, gold: str) -> tuple[bool, dict[str, Any]]:
    """Whether the prediction (or a value-plugged variant) returns the reference's rows on every file."""
    pred, gold = without_distinct(join_operators(pred)), without_distinct(join_operators(gold))
    order_matters = "order by" in gold.lower()
    gold_rows: dict[Path, list[tuple[Any, ...]]] = {}
    for f in files:
        try:
            gold_rows[f] = run_query(f, gold)
        except sqlite3.Error as e:
            return False, {"error": f"the reference SQL fails on {f.name}: {e}"}
    tried = 0
    last_error = None
    for candidate in itertools.chain([pred], plugged_candidates(gold, pred)):
        if tried >= MAX_CANDIDATES:
            return False, {"candidates": tried, "error": "too many value-plugged candidates", "order_matters": order_matters}
        tried += 1
        ok = True
        for f in files:
            try:
                rows = run_query(f, candidate, max_rows=len(gold_rows[f]) + 1)
            except sqlite3.Error as e:
                last_error = str(e)
                ok = False
                break
            if not results_match(gold_rows[f], rows, order_matters):
                ok = False
                break
        if ok:
            return True, {"candidates": tried, "matched": candidate, "order_matters": order_matters}
    return False, {"candidates": tried, "error": last_error, "order_matters": order_matters}


def evaluate(gold: dict[str, Any], reply: str) -> Evaluation:
    """Score a database reply by execution match (blocks while the queries run)."""
    folder = gold.get(DATABASE_FIELD)
    if not folder:
        return not_scored(
            FAMILY,
            EVALUATOR,
            VERSION,
            "needs_database",
            "Needs database: the item has no Spider database; import it with --spider-databases DIR.",
        )
    reference = gold.get("reference_sql")
    if not isinstance(reference, str) or not reference.strip():
        return not_scored(FAMILY, EVALUATOR, VERSION, "not_scorable", "The item has no reference_sql.")
    try:
        files = database_files(os.fspath(folder))
    except DatabaseMissing as e:
        return not_scored(FAMILY, EVALUATOR, VERSION, "needs_database", f"Needs database: {e}.")
    extracted = extract_sql(reply)
    pred = clean_prediction(extracted)
    if not pred:
        return Evaluation(FAMILY, EVALUATOR, VERSION, "scored", 0.0, "The reply holds no SQL.", extracted, {})
    try:
        matched, details = execution_match(files, pred, reference)
    except Exception as e:  # noqa: BLE001 - an unparsable prediction scores 0, as for the authors
        matched, details = False, {"error": f"{type(e).__name__}: {e}"}
    details["databases"] = [f.name for f in files]
    if matched:
        return Evaluation(FAMILY, EVALUATOR, VERSION, "scored", 1.0, "The query returns the reference's rows.", pred, details)
    why = f" ({details['error']})" if details.get("error") else ""
    return Evaluation(
        FAMILY, EVALUATOR, VERSION, "scored", 0.0, f"The query does not return the reference's rows{why}.", pred, details
    )
