"""Database items: execution match on a SQLite database made here, and the importer's --spider-databases."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import FIXTURE, fixture_record, shared_records

from lab.cli import main
from lab.items import import_lost_in_conversation, read_items
from lab.scoring._database import evaluate, extract_sql, plugged_candidates, query_values, results_match


def make_library(folder: Path) -> Path:
    """A Spider-style database folder: <dir>/library/library.sqlite."""
    db = folder / "library"
    db.mkdir(parents=True)
    conn = sqlite3.connect(db / "library.sqlite")
    conn.executescript(
        "CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, author TEXT, year INTEGER);"
        "INSERT INTO book VALUES (1, 'Dawn', 'Ann', 2001), (2, 'Noon', 'Ann', 2002), (3, 'Dusk', 'Ann', 2003),"
        " (4, 'Rain', 'Bob', 2001), (5, 'Snow', 'Cy', 1999);"
    )
    conn.commit()
    conn.close()
    return db


@pytest.fixture
def library(tmp_path: Path) -> dict:
    gold = dict(fixture_record("database"))
    gold["database_path"] = str(make_library(tmp_path / "spider"))
    return gold


def test_equivalent_sql_matches(library: dict) -> None:
    reply = "Here it is:\n```sql\nSELECT author\nFROM book\nGROUP BY author\nHAVING COUNT(*) >= 3;\n```"
    ev = evaluate(library, reply)
    assert (ev.status, ev.value, ev.evaluator, ev.version) == ("scored", 1.0, "lic-database", "2")
    assert ev.extracted == "SELECT author FROM book GROUP BY author HAVING COUNT(*) >= 3;"


def test_non_equivalent_sql_does_not(library: dict) -> None:
    assert evaluate(library, "```sql\nSELECT author FROM book\n```").value == 0.0
    assert evaluate(library, "```sql\nSELECT title FROM book GROUP BY author HAVING count(*) > 2\n```").value == 0.0
    broken = evaluate(library, "```sql\nSELECT writer FROM book\n```")
    assert broken.value == 0.0
    assert "no such column" in broken.reason


def test_values_are_plugged_from_the_reference(library: dict) -> None:
    # A wrong constant still matches once the reference's value takes its place (the authors' setting).
    ev = evaluate(library, "SELECT author FROM book GROUP BY author HAVING count(*) > 9")
    assert ev.value == 1.0
    assert ev.details["matched"] == "select author from book group by author having count ( * ) > 2"


def test_order_matters_only_where_the_reference_orders(library: dict) -> None:
    ordered = library | {"reference_sql": "SELECT title FROM book WHERE year > 2000 ORDER BY year DESC"}
    assert evaluate(ordered, "SELECT title FROM book WHERE year > 2000 ORDER BY year DESC, id").value == 1.0
    assert evaluate(ordered, "SELECT title FROM book WHERE year > 2000 ORDER BY year ASC").value == 0.0
    unordered = library | {"reference_sql": "SELECT title FROM book WHERE year > 2000"}
    assert evaluate(unordered, "SELECT title FROM book WHERE year > 2000 ORDER BY title").value == 1.0


def test_columns_may_come_in_another_order_and_distinct_is_ignored(library: dict) -> None:
    pair = library | {"reference_sql": "SELECT DISTINCT author, year FROM book WHERE year < 2002"}
    assert evaluate(pair, "SELECT year, author FROM book WHERE year < 2002").value == 1.0
    assert results_match([(1, "a"), (1, "a")], [(1, "a")], False) is False
    assert results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], False) is True
    assert results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True) is False


def test_writes_and_attach_are_refused_and_the_database_is_unchanged(library: dict, tmp_path: Path) -> None:
    for sql in (
        "DELETE FROM book",
        "DROP TABLE book",
        f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x",
        "PRAGMA writable_schema = 1",
    ):
        assert evaluate(library, sql).value == 0.0
    assert not (tmp_path / "x.db").exists()
    conn = sqlite3.connect(Path(library["database_path"]) / "library.sqlite")
    assert conn.execute("SELECT count(*) FROM book").fetchone() == (5,)
    conn.close()


def test_without_a_database_the_item_needs_one(library: dict, tmp_path: Path) -> None:
    missing = evaluate({k: v for k, v in library.items() if k != "database_path"}, "SELECT 1")
    assert (missing.status, missing.value) == ("needs_database", None)
    assert "--spider-databases" in missing.reason
    moved = evaluate(library | {"database_path": str(tmp_path / "gone")}, "SELECT 1")
    assert moved.status == "needs_database"
    assert "does not exist" in moved.reason


def test_sql_extraction() -> None:
    assert extract_sql("Try:\n```sql\nSELECT 1\n```\nor\n```\nSELECT 2\n```") == "SELECT 1"
    assert extract_sql("I think this works:\nSELECT a FROM t WHERE b = 1") == "SELECT a FROM t WHERE b = 1"
    assert extract_sql("no query here") == "no query here"


def test_value_slots_follow_the_authors_tokenization() -> None:
    words, values = query_values("SELECT T1.name FROM a AS T1 WHERE T1.age > 3.5 AND T1.city = 'Lyon'")
    assert values == {"3.5", "'Lyon'"}
    assert words.count("valuerare") == 2
    assert "t1" in words
    candidates = list(plugged_candidates("SELECT a FROM t WHERE b = 'x' AND c > 2", "SELECT a FROM t WHERE b = 'y'"))
    assert candidates == ["select a from t where b = 'x'", "select a from t where b = 2"]


def test_real_spider_item_on_a_database_made_here(tmp_path: Path) -> None:
    record = next(r for r in shared_records("database") if r["db_id"] == "tvshow")
    folder = tmp_path / "tvshow"
    folder.mkdir()
    conn = sqlite3.connect(folder / "tvshow.sqlite")
    conn.executescript(
        "CREATE TABLE TV_Channel (id TEXT PRIMARY KEY, series_name TEXT, Country TEXT);"
        "CREATE TABLE Cartoon (id REAL PRIMARY KEY, Title TEXT, Written_by TEXT, Channel TEXT);"
        "INSERT INTO TV_Channel VALUES ('700', 'Sky Radio', 'Italy'), ('701', 'Sky Music', 'Italy'), ('703', 'Box', 'UK');"
        "INSERT INTO Cartoon VALUES (1, 'Rise', 'Todd Casey', '700'), (2, 'Trip', 'Todd Casey', '703'),"
        " (3, 'Fall', 'Ann', '701');"
    )
    conn.commit()
    conn.close()
    gold = record | {"database_path": str(folder)}
    right = (
        "```sql\nSELECT c.Country FROM TV_Channel c\n"
        "WHERE c.id IN (SELECT Channel FROM Cartoon WHERE Written_by = 'Todd Casey')\n```"
    )
    assert evaluate(gold, right).value == 1.0
    assert evaluate(gold, "```sql\nSELECT Country FROM TV_Channel\n```").value == 0.0


# --- the importer records each item's database ---------------------------------------------


def test_importer_records_the_database_folder(tmp_path: Path) -> None:
    make_library(tmp_path / "spider")
    report = import_lost_in_conversation(FIXTURE, spider_databases=tmp_path / "spider")
    db_items = [i for i in report.items if i.source.task == "database"]
    found = [i for i in db_items if i.gold.get("db_id") == "library"]
    assert found and found[0].gold["database_path"] == str((tmp_path / "spider" / "library").resolve())
    assert "needs-database" not in found[0].tags


def test_importer_without_databases_marks_items_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "items.jsonl"
    assert main(["import", "lost-in-conversation", str(FIXTURE), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 database item(s) have no Spider database and are tagged needs-database" in err
    assert "--spider-databases DIR" in err
    items = [i for i in read_items(out) if i.source.task == "database"]
    assert items and all("needs-database" in i.tags and "database_path" not in i.gold for i in items)


def test_importer_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "items.jsonl"
    assert (
        main(["import", "lost-in-conversation", str(FIXTURE), "--out", str(out), "--spider-databases", str(tmp_path / "none")])
        == 1
    )
    assert "the Spider databases folder does not exist" in capsys.readouterr().err
    falseqa = tmp_path / "f.csv"
    falseqa.write_text("x\n")
    assert main(["import", "falseqa", str(falseqa), "--out", str(out), "--spider-databases", str(tmp_path)]) == 1
    assert "--spider-databases applies to lost-in-conversation only" in capsys.readouterr().err


def test_spider_root_folder_is_accepted(tmp_path: Path) -> None:
    make_library(tmp_path / "spider" / "database")
    report = import_lost_in_conversation(FIXTURE, spider_databases=tmp_path / "spider")
    library = [i for i in report.items if i.gold.get("db_id") == "library"]
    assert library[0].gold["database_path"].endswith("database/library")
    assert json.dumps(library[0].gold)


def test_unfenced_sql_extraction_on_the_table_of_replies() -> None:
    """Every reply of tests/data/sql_extraction.jsonl gives its intended query (white space aside)."""
    table = Path(__file__).resolve().parents[1] / "data" / "sql_extraction.jsonl"
    rows = [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 12

    def norm(query: str) -> str:
        return re.sub(r"\s+", " ", query).strip()

    wrong = [r["reply"] for r in rows if norm(extract_sql(r["reply"])) != norm(r["sql"])]
    assert wrong == []
    # The subquery on its own line belongs to the query; the sentence after it does not.
    reply = "SELECT name FROM singer WHERE singer_id IN\n(SELECT singer_id FROM concert)\nThis returns the singers."
    assert norm(extract_sql(reply)) == "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM concert)"
