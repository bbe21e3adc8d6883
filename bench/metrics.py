"""How fast the model comparison loads and computes on a large study.

Prints figures, not a test. A synthetic study (``lab.synth``) of 100,000 conversations of
5 exchanges each (1,000,000 turns, about 1.5 million labels) is written once into a
database file (reused on later runs) or into Postgres, then:

- **load**: :func:`lab.analysis_data.load_study` reads every frame (target ≤ 10 s);
- **measures**: every figure of the comparison page with 95 % intervals from 1,000
  cluster-bootstrap draws (:func:`lab.report.build`: all measures, degradation, pairwise
  differences; target ≤ 3 s once loaded), with a breakdown by phase;
- **plain mean**: a pandas ``groupby(...).mean()`` of the score over the same frame, and the
  ratio of each figure to it, so a reader sees what the intervals cost;
- **peak memory** of the process (target ≤ 3 GB).

Usage: ``python bench/metrics.py [--db sqlite|postgres] [--url URL] [--conversations N]
[--exchanges E] [--draws B] [--fresh]``. Postgres uses ``--url`` or ``TEST_DATABASE_URL``
(its schema is dropped and rebuilt when the study is written).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SLUG = "bench-metrics"


def _engine(args: argparse.Namespace) -> tuple[object, bool]:
    """The benchmark database, and whether the study must be written."""
    from sqlalchemy import select, text

    from lab.db import make_engine, migrate
    from lab.schema import Study

    if args.db == "postgres":
        url = args.url or os.environ.get("TEST_DATABASE_URL")
        if not url:
            sys.exit("--db postgres needs --url or TEST_DATABASE_URL")
        engine = make_engine(url)
        if args.fresh:
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
    else:
        path = Path(args.url or Path(tempfile.gettempdir()) / f"lab-bench-metrics-{args.conversations}-{args.exchanges}.db")
        if args.fresh and path.exists():
            path.unlink()
        engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as conn:
        exists = conn.execute(select(Study.id).where(Study.slug == SLUG)).first() is not None
    return engine, not exists


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Write (once), load and compute; print the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--url", help="database URL (postgres) or file (sqlite)")
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--exchanges", type=int, default=5)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--fresh", action="store_true", help="write the study again")
    args = p.parse_args()

    from lab import analysis_data, metrics, report, synth

    engine, write = _engine(args)
    if write:
        t = time.perf_counter()
        r = synth.make_study(engine, SLUG, args.conversations, exchanges=args.exchanges, items_per_kind=200, seed=1)
        secs = time.perf_counter() - t
        print(f"wrote {r.conversations:,} conversations, {r.turns:,} turns, {r.labels:,} labels in {secs:.1f} s ({args.db})")

    t, cpu = time.perf_counter(), time.process_time()
    data = analysis_data.load_study(engine, SLUG)
    load_s, load_cpu = time.perf_counter() - t, time.process_time() - cpu
    sizes = f"{len(data.conversations):,} conversations, {len(data.turns):,} turns, {len(data.labels):,} current labels"
    print(f"database: {args.db}; {sizes}")
    print(f"load (every frame)                      {load_s:7.2f} s   target ≤ 10 s   (CPU {load_cpu:.2f} s)")

    conv = data.conversations
    t = time.perf_counter()
    for _ in range(5):
        conv.groupby(["model", "condition_key"])["score"].mean()
    plain = (time.perf_counter() - t) / 5
    print(f"plain pandas groupby mean of the score  {plain * 1000:7.1f} ms")

    options = metrics.Options(draws=args.draws)
    phases: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    t = time.perf_counter()
    metrics.conversation_table(data, options.source)
    phases.append(("per-conversation quantities (labels resolved)", time.perf_counter() - t))
    t = time.perf_counter()
    figures = metrics.compute(data, options)
    phases.append(("every measure by model × condition, with intervals", time.perf_counter() - t))
    t = time.perf_counter()
    deg = metrics.degradation(metrics.degradation_figures(data, options))
    phases.append(("degradation (P, A90, U90_10 by reveal mode)", time.perf_counter() - t))
    t = time.perf_counter()
    metrics.pairwise(figures, "P")
    phases.append(("pairwise model differences", time.perf_counter() - t))
    t, cpu = time.perf_counter(), time.process_time()
    c = report.build(data, options)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"measures: {len(c.table):,} figures, {args.draws} bootstrap draws over participants and items")
    for name, secs in phases:
        print(f"  {name:<52} {secs:6.2f} s   {secs / plain:8.0f}× plain mean")
    name = "every figure of the comparison page (report.build)"
    print(f"{name:<54} {build_s:6.2f} s   {build_s / plain:8.0f}× plain mean   target ≤ 3 s   (CPU {build_cpu:.2f} s)")
    print(f"(phases above, run one after another: {time.perf_counter() - t0 - build_s:.2f} s)")
    print(
        f"load average of the machine during the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)"
    )
    print(f"peak memory                              {_peak_mb():7.0f} MB  target ≤ 3072 MB")
    sharded = deg[deg["mode"] == "SHARDED"]
    for _, r in sharded.iterrows():
        print(f"check: FULL→SHARDED degradation {r['model']}: {r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]")


if __name__ == "__main__":
    main()
