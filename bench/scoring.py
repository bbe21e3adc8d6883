"""What scoring one answer attempt costs, per task family.

Prints figures, not a test: the median wall time of scoring a correct reply of each family
of the project's Lost in Conversation fixture (``tests/fixtures``), with a small SQLite
database made here for the database item. Code runs in its contained child process, so its
figure is mostly that process's start (Python, the runner's imports, the network namespace).
Summaries need a judge model and are left out.

Usage: ``python bench/scoring.py [--runs N]``
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLIES = {
    "code": "```python\ndef twice(xs):\n    return [2 * x for x in xs]\n```",
    "database": "```sql\nSELECT author FROM book GROUP BY author HAVING COUNT(*) > 2\n```",
    "actions": "[get_weather(city='Lyon'), get_weather(city='Graz')]",
    "data2text": "In 2001 the player was at Harbour FC.",
    "translation": "The town council met on Monday.",
    "math": "#### 1200",
}


def main() -> None:
    """Score each family's reply ``--runs`` times and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    from lab.items import import_lost_in_conversation
    from lab.scoring import evaluate, network_isolation

    with tempfile.TemporaryDirectory() as tmp:
        spider = Path(tmp) / "library"
        spider.mkdir()
        conn = sqlite3.connect(spider / "library.sqlite")
        conn.executescript(
            "CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, author TEXT);"
            "INSERT INTO book VALUES (1, 'a', 'Ann'), (2, 'b', 'Ann'), (3, 'c', 'Ann'), (4, 'd', 'Bob');"
        )
        conn.commit()
        conn.close()
        fixture = ROOT / "tests" / "fixtures" / "datasets" / "lost_in_conversation" / "sample.json"
        items = {i.source.task: i for i in import_lost_in_conversation(fixture, spider_databases=tmp).items}
        print(f"code containment: network {'namespace' if network_isolation() else 'audit hook'}")
        for family, reply in REPLIES.items():
            item = items[family]
            evaluate(item, reply)  # imports and caches stay out of the figure
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                ev = evaluate(item, reply)
                times.append(time.perf_counter() - started)
            print(f"{family:<12} median {statistics.median(times) * 1000:8.1f} ms over {args.runs} runs (score {ev.value:.3f})")


if __name__ == "__main__":
    main()
