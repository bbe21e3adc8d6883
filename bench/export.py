"""How fast a large study exports to Parquet, against the database's own plain dump.

Prints figures, not a test. A synthetic study (``lab.synth``) of 100,000 conversations of
5 exchanges each (1,000,000 turns, about 1.5 million labels) is written once into a SQLite
file (reused on later runs) or into Postgres, then exported as a Parquet bundle in a fresh
child process, so its peak memory is the export's alone. Printed:

- **time** of the whole bundle and of the turn table alone, rows per second, size on disk
  (targets: ≤ 20 s for the bundle, peak memory ≤ 2 GB);
- **plain dump**: the database's own fastest dump of the turn table to a CSV file (the
  ``sqlite3`` command line's ``.mode csv`` or Postgres ``COPY turn TO STDOUT (FORMAT csv)``),
  and the ratio of the turn table's export time to it.

Usage: ``python bench/export.py [--db sqlite|postgres] [--url URL] [--conversations N]
[--exchanges E] [--fresh] [--format parquet|csv|jsonl]``. Postgres uses ``--url`` or
``TEST_DATABASE_URL`` (its schema is dropped and rebuilt when the study is written).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SLUG = "bench-export"


def _url(args: argparse.Namespace) -> str:
    if args.db == "postgres":
        url = args.url or os.environ.get("TEST_DATABASE_URL")
        if not url:
            sys.exit("--db postgres needs --url or TEST_DATABASE_URL")
        return url
    folder = Path(tempfile.gettempdir()) / "repair-lab-bench"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / f'export-{args.conversations}x{args.exchanges}.db'}"


def _prepare(args: argparse.Namespace, url: str) -> None:
    """Write the synthetic study unless the database already holds it."""
    from sqlalchemy import select, text

    from lab import synth
    from lab.db import make_engine, migrate
    from lab.schema import Study

    engine = make_engine(url)
    fresh = args.fresh
    if not fresh:
        try:
            with engine.connect() as conn:
                fresh = conn.execute(select(Study.id).where(Study.slug == SLUG)).first() is None
        except Exception:  # noqa: BLE001 - an unmigrated or missing database is simply rebuilt
            fresh = True
    if fresh:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        elif engine.url.database:
            engine.dispose()
            for p in Path(engine.url.database).parent.glob(Path(engine.url.database).name + "*"):
                p.unlink()
            engine = make_engine(url)
        migrate(engine)
        t = time.perf_counter()
        r = synth.make_study(engine, SLUG, args.conversations, exchanges=args.exchanges, items_per_kind=200, seed=1)
        print(
            f"wrote {r.conversations:,} conversations, {r.turns:,} turns, {r.labels:,} labels in {time.perf_counter() - t:.1f} s"
        )
    else:
        migrate(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def _child(url: str, out: str, fmt: str) -> None:
    """Export in this process and print what it cost as JSON."""
    import resource

    from lab.db import make_engine
    from lab.export import ExportOptions, export_study

    engine = make_engine(url)
    t, cpu = time.perf_counter(), time.process_time()
    r = export_study(engine, SLUG, out, ExportOptions(format=fmt))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    turn_bytes = sum((Path(out) / f).stat().st_size for f in r.files if str(f).startswith("data/turns/"))
    report = {"seconds": seconds, "cpu": cpu, "rows": r.rows, "table_seconds": r.seconds, "bytes": r.bytes}
    print(json.dumps(report | {"peak_mb": peak_mb, "turn_bytes": turn_bytes}))


def _plain_dump(url: str, target: Path) -> tuple[float, float, int]:
    """The database's own fastest dump of the turn table to CSV: seconds, CPU seconds of the ``sqlite3`` process, bytes."""
    import resource

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if parsed.get_backend_name() == "sqlite":
        with target.open("wb") as f:
            subprocess.run(["sqlite3", "-csv", parsed.database, "SELECT * FROM turn"], stdout=f, check=True)
    else:
        import psycopg

        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as conn, conn.cursor() as cur, target.open("wb") as f:
            with cur.copy("COPY turn TO STDOUT (FORMAT csv)") as copy:
                for chunk in copy:
                    f.write(chunk)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.perf_counter() - t, cpu, target.stat().st_size


def main() -> None:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--url")
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--exchanges", type=int, default=5)
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"], default="parquet")
    p.add_argument("--fresh", action="store_true", help="rewrite the synthetic study")
    p.add_argument("--child", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.format)
        return
    url = _url(args)
    _prepare(args, url)
    with tempfile.TemporaryDirectory(prefix="lab-bench-export-") as tmp:
        out = Path(tmp) / "bundle"
        command = [sys.executable, __file__, "--format", args.format, "--child", url, str(out)]
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        if run.returncode:
            sys.exit(run.stderr)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        dump_s, dump_cpu, dump_bytes = _plain_dump(url, Path(tmp) / "turn.csv")
        shutil.rmtree(out, ignore_errors=True)
    total_rows = sum(r["rows"].values())
    turns, turn_s = r["rows"]["turns"], r["table_seconds"]["turns"]
    load = os.getloadavg()[0]
    print(f"database: {args.db}; format: {args.format}; load average {load:.1f} on {os.cpu_count()} cores")
    rate = total_rows / r["seconds"]
    print(f"bundle: {total_rows:,} rows in {r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU ({rate:,.0f} rows/s); target ≤ 20 s")
    print(
        f"  size on disk {r['bytes'] / 1e6:.0f} MB; per table: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in r["table_seconds"].items())
    )
    print(f"turn table: {turns:,} rows in {turn_s:.1f} s ({turns / turn_s:,.0f} rows/s), {r['turn_bytes'] / 1e6:.0f} MB")
    dump_cpu_text = f", {dump_cpu:.1f} s CPU in sqlite3" if args.db == "sqlite" else ""
    print(f"plain CSV dump of the turn table: {dump_s:.1f} s wall{dump_cpu_text}, {dump_bytes / 1e6:.0f} MB")
    print(f"turn table export / plain dump (wall): {turn_s / dump_s:.2f}×")
    print(f"peak memory of the export process: {r['peak_mb']:,.0f} MB; target ≤ 2,048 MB")


if __name__ == "__main__":
    main()
