"""The comparison as a table on the command line and as one self-contained HTML page.

``python -m lab metrics SLUG`` prints the figures of the comparison page;
``python -m lab report SLUG --out report.html`` writes every chart (as inline SVG) and
table into one file that opens without a network; ``python -m lab synth SLUG --sessions N``
writes a synthetic study with planted effects.
"""

from __future__ import annotations

import argparse
import html
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ReportError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]  # pandas-stubs is not installed
    from sqlalchemy import Engine

    from . import analysis_data, metrics

# pandas, numpy and Altair are imported inside the functions: ``python -m lab`` registers
# these commands for every run, and other commands should not pay for the imports.

BY_ALIASES = {
    "model": "model",
    "condition": "condition_key",
    "condition_key": "condition_key",
    "reveal": "reveal",
    "intervention": "intervention",
    "presupposition": "presupposition",
    "kind": "item_kind",
    "item_kind": "item_kind",
    "participant": "participant_kind",
    "participant_kind": "participant_kind",
    "task": "task",
    "family": "task",
}
"""Names ``--by`` accepts, and the conversation column each stands for."""


def parse_by(text: str) -> tuple[str, ...]:
    """``model,condition`` → the conversation columns of a cell.

    Raises:
        ReportError: An unknown name.
    """
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ReportError("--by needs at least one of: " + ", ".join(sorted(set(BY_ALIASES))))
    bad = [n for n in names if n not in BY_ALIASES]
    if bad:
        raise ReportError(f"--by: unknown '{bad[0]}'; use any of " + ", ".join(sorted(set(BY_ALIASES))))
    return tuple(dict.fromkeys(BY_ALIASES[n] for n in names))


@dataclass
class Comparison:
    """Everything the comparison page, the CLI and the report show for one selection."""

    data: analysis_data.AnalysisData
    """The (filtered) frames."""
    table: pd.DataFrame
    """Every figure (:func:`lab.metrics.comparison`)."""
    laban: pd.DataFrame
    """P, A90, A10, U90_10 by reveal mode on sharded items, task families pooled (the degradation plot)."""
    pairwise: pd.DataFrame
    """Model differences in P per condition."""
    options: metrics.Options


def build(data: analysis_data.AnalysisData, options: metrics.Options | None = None) -> Comparison:
    """Compute every figure of the comparison for already filtered frames."""
    import pandas as pd

    from . import metrics

    o = options or metrics.Options()
    figures = metrics.compute(data, o)
    deg, deg_fig = metrics.degradation_table(data, o)
    table = metrics.with_degradation(figures.table, deg)
    pw = metrics.pairwise(figures, "P", level=o.level) if "model" in figures.by else pd.DataFrame()
    return Comparison(data, table, deg_fig.table, pw, o)


def by_family(data: analysis_data.AnalysisData, options: metrics.Options | None = None) -> pd.DataFrame:
    """P, A90 and U90_10 per task family × model × condition, and each family's degradation.

    Returns:
        Rows: task, measure, model, condition (the reveal mode for degradation), value,
        lo, hi, n, note; items without a task family are left out.
    """
    import pandas as pd

    from . import metrics

    o = options or metrics.Options()
    by = tuple(dict.fromkeys((*o.by, "task")))
    conv = data.conversations
    if "task" not in conv or not conv["task"].notna().any():
        return pd.DataFrame(columns=["task", "measure", "model", "condition", "value", "lo", "hi", "n", "note"])
    o = replace(o, by=by)
    figures = metrics.compute(data, o, performance_only=True).table
    figures = figures[figures["measure"].isin(["P", "A90", "U90_10"])].rename(columns={"condition_key": "condition"})
    deg = metrics.degradation_table(data, o)[0]
    deg = deg[(deg["measure"] == "degradation") & (deg["task"] != metrics.TASK_MEAN)].rename(columns={"key": "condition"})
    deg = deg.assign(note=None)
    cols = ["task", "measure", "model", "condition", "value", "lo", "hi", "n", "note"]
    out = pd.concat([figures.reindex(columns=cols), deg.reindex(columns=cols)], ignore_index=True)
    return out[out["task"].notna() & (out["task"] != "—")].reset_index(drop=True)


def format_table(table: pd.DataFrame, fmt: str = "table") -> str:
    """The figures as an aligned text table, CSV or JSON records."""
    import pandas as pd

    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=1)
    if fmt != "table":
        raise ReportError(f"--format: unknown '{fmt}'; use table, csv or json")
    if table.empty:
        return "no figures: the study has no conversations with these filters"
    t = table.copy()
    t["value"] = t["value"].map(lambda v: f"{v:.3g}" if pd.notna(v) else "—")
    t["95% interval"] = [
        f"[{lo:.3g}, {hi:.3g}]" if pd.notna(lo) else "—" for lo, hi in zip(table["lo"], table["hi"], strict=True)
    ]
    t["flag"] = t["small"].map({True: "n<5", False: ""})
    cols = [c for c in t.columns if c not in ("lo", "hi", "small", "label_source")]
    cols = [c for c in cols if c not in ("95% interval", "flag", "n")] + ["95% interval", "n", "flag", "label_source"]
    return t[cols].fillna("").to_string(index=False)


def write_html(comparison: Comparison, path: Path | str, title: str | None = None, effect: pd.DataFrame | None = None) -> Path:
    """Write one self-contained HTML page with every chart (inline SVG) and table.

    The page needs no network: the charts are rendered to SVG here, not drawn by JavaScript.

    Args:
        comparison: The figures.
        path: The file to write.
        title: The page's title (default: the study's).
        effect: A training effect (:func:`lab.training_effect.training_effect`) to show first.
    """
    from . import charts

    c = comparison
    figs = charts.all_figures(c.table, c.laban)
    name = title or f"Model comparison — {c.data.slug}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{background:#f3f3f3}.caption{color:#444;margin:.3em 0 2em}.small{background:#fff4d6}</style></head><body>",
        f"<h1>{html.escape(name)}</h1>",
        f"<p>Study <b>{html.escape(c.data.slug)}</b>, version(s) {', '.join(map(str, c.data.versions))}; "
        f"{len(c.data.conversations)} conversations; label source <b>{html.escape(c.options.source)}</b>; "
        f"95 % intervals from {c.options.draws} cluster-bootstrap draws over participants and items. "
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Rows marked n&lt;5 rest on fewer than five conversations.</p>",
    ]
    if effect is not None and len(effect):
        parts.append("<h2>Training effect on held-out items</h2>")
        parts.append(
            f"<p class='caption'>{html.escape(str(effect['tuned'].iloc[0]))} − {html.escape(str(effect['base'].iloc[0]))}"
            ", per measure, on the study's held-out items only; 95 % intervals from the same cluster-bootstrap draws "
            "for both models (paired over items).</p>"
        )
        shown = effect.drop(columns=["base", "tuned", "verdict"])
        parts.append(shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—"))
        parts.append("<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in effect["verdict"]) + "</ul>")
    for f in figs:
        parts.append(f"<h2>{html.escape(f.title)}</h2>")
        try:
            parts.append(charts.image(f.chart, "svg").decode())
        except Exception as e:  # noqa: BLE001 - a chart that cannot render must not lose the tables
            parts.append(f"<p><i>chart could not be rendered: {html.escape(str(e))}</i></p>")
        parts.append(f"<p class='caption'>{html.escape(f.caption)}</p>")
    families = by_family(c.data, c.options)
    if len(families):
        parts.append("<h2>Per task family</h2>")
        parts.append(
            "<p class='caption'>P, A90 and U90_10 per task family, model and condition (A90 and U90_10 only where every "
            "item has the runs asked for), and each family's FULL → SHARDED degradation; the headline degradation "
            "averages these over families, as the Lost in Conversation paper does.</p>"
        )
        parts.append(families.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—"))
    if len(c.pairwise):
        parts.append("<h2>Model differences in P</h2>")
        parts.append(c.pairwise.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—"))
    parts.append("<h2>All figures</h2>")
    t = c.table.copy()
    t["small"] = t["small"].map({True: "n<5", False: ""})
    parts.append(t.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—"))
    parts.append("</body></html>")
    out = Path(path)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


# --- Command line -----------------------------------------------------------------------


def _engine() -> Engine:
    from .db import get_engine

    return get_engine()


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    def split(v: str | None) -> list[str] | None:
        return [p.strip() for p in v.split(",") if p.strip()] if v else None

    kinds = None if args.participants == "all" else [args.participants]
    return {
        "models": split(args.models),
        "conditions": split(args.conditions),
        "item_kinds": split(args.kinds),
        "participant_kinds": kinds,
    }


def _declared(slug: str) -> dict[str, set[str]]:
    """The conditions and model strings every version of a study declares (they may have no conversations yet)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from .schema import Study
    from .studies import get_study

    with Session(_engine()) as s:
        get_study(s, slug)  # a mistyped slug is named, with the close ones
        specs = s.scalars(select(Study.spec).where(Study.slug == slug)).all()
    # The stored specs as JSON: a study written in bulk (``synth``) has no items to parse.
    return {
        "models": {str(m.get("model")) for spec in specs for m in (spec.get("models") or {}).values()},
        "conditions": {str(key) for spec in specs for key in spec.get("conditions") or {}},
    }


def _check_filters(filters: dict[str, Any], data: analysis_data.AnalysisData, declared: dict[str, set[str]]) -> None:
    """Refuse a filter value the study does not have: a typo must not look like a study without data."""
    from .errors import require_known
    from .items import ITEM_KINDS

    conv = data.conversations
    known = {
        "models": ("model", set(conv["model"].dropna().astype(str)) | declared.get("models", set())),
        "conditions": ("condition", set(conv["condition_key"].dropna().astype(str)) | declared.get("conditions", set())),
        "item_kinds": ("item kind", set(ITEM_KINDS)),
    }
    for option, (what, names) in known.items():
        require_known(what, filters.get(option) or (), names)


def _comparison(args: argparse.Namespace) -> Comparison:
    from . import analysis_data, metrics

    declared: dict[str, set[str]] = {}
    if getattr(args, "bundle", None):
        from .bundle import read_bundle, to_analysis

        data = to_analysis(read_bundle(args.bundle), args.study_version)
    elif not args.slug:
        raise ReportError("name a study (SLUG) or an exported bundle (--bundle DIR)")
    else:
        declared = _declared(args.slug)
        data = analysis_data.load_study(_engine(), args.slug, args.study_version)
    filters = _filters(args)
    _check_filters(filters, data, declared)
    data = metrics.select(data, **filters)
    return build(data, _options(args))


def _options(args: argparse.Namespace) -> metrics.Options:
    from . import metrics

    return metrics.Options(
        by=parse_by(args.by),
        source=args.source,
        draws=args.draws,
        seed=args.seed,
        pool_participants=args.participants == "all" and args.pool,
        min_runs=args.min_runs,
        attempted_only=args.attempted_only,
        math_as_published=args.math_as_published,
    )


def _effect(args: argparse.Namespace) -> pd.DataFrame | None:
    """The training effect the command asks for (``--training-effect BASE TUNED``), on the held-out items."""
    if not args.training_effect:
        return None
    if getattr(args, "bundle", None) or not args.slug:
        raise ReportError("--training-effect needs the study in the database (a SLUG): its held-out items are stored there")
    from .training_effect import study_effect

    base, tuned = args.training_effect
    return study_effect(_engine(), args.slug, base, tuned, _options(args))


def cmd_metrics(args: argparse.Namespace) -> None:
    """Print every figure of the comparison page, or the training effect."""
    from .errors import require_known
    from .metrics import MEASURES

    effect = _effect(args)
    if effect is not None:
        from .training_effect import format_effect

        print(format_effect(effect, args.format))
        return
    wanted = [m.strip() for m in (args.measures or "").split(",") if m.strip()]
    require_known("measure", wanted, MEASURES)
    c = _comparison(args)
    table = c.table
    if wanted:
        table = table[table["measure"].isin(wanted)]
    print(format_table(table, args.format))


def cmd_report(args: argparse.Namespace) -> None:
    """Write the self-contained HTML report."""
    c = _comparison(args)
    out = write_html(c, args.out, effect=_effect(args))
    print(f"wrote {out} ({len(c.table)} figures, {len(c.data.conversations)} conversations)")


def cmd_synth(args: argparse.Namespace) -> None:
    """Write a synthetic study with planted effects."""
    from .synth import Truth, make_study

    truth = Truth(degradation=args.degradation, accommodate=args.accommodate)
    r = make_study(
        _engine(), args.slug, args.sessions, exchanges=args.exchanges, seed=args.seed, human_share=args.human_share, truth=truth
    )
    planted = json.dumps(truth.__dict__, default=str)
    print(f"study '{r.slug}': {r.conversations} conversations, {r.turns} turns, {r.labels} labels; planted {planted}")


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("slug", nargs="?")
    sp.add_argument("--bundle", help="compute from an exported bundle (folder) instead of the database")
    sp.add_argument("--study-version", type=int, default=None, help="study version (default: the newest)")
    sp.add_argument(
        "--by", default="model,condition", help="cell: any of model, condition, reveal, intervention, kind, participant, task"
    )
    sp.add_argument(
        "--source", default="best", help="labels: best (gold, else majority, else auto), gold, majority, auto or auto:<judge>"
    )
    sp.add_argument("--models", help="only these model strings (comma-separated)")
    sp.add_argument("--conditions", help="only these conditions (comma-separated)")
    sp.add_argument("--kinds", help="only these item kinds (comma-separated)")
    sp.add_argument(
        "--participants", choices=["all", "human", "simulated"], default="all", help="participant kind (kept apart unless --pool)"
    )
    sp.add_argument("--pool", action="store_true", help="pool human and simulated participants in one cell")
    sp.add_argument("--draws", type=int, default=1000, help="bootstrap draws (0: no intervals)")
    sp.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    sp.add_argument(
        "--min-runs",
        type=int,
        default=10,
        help="runs every item of a cell needs before A90 and U90_10 are given (default 10, the paper's count)",
    )
    sp.add_argument(
        "--attempted-only",
        action="store_true",
        help="leave out conversations that never attempted an answer (default: they score 0, as published)",
    )
    sp.add_argument(
        "--training-effect",
        nargs=2,
        metavar=("BASE", "TUNED"),
        help="tuned − base per measure on the study's held-out items, with paired intervals",
    )
    sp.add_argument(
        "--math-as-published",
        action="store_true",
        help="score math replies with the authors' string comparison (42.0 is not 42) where it was recorded",
    )


def register(sub: Any) -> None:
    """Add ``metrics``, ``report`` and ``synth`` to the ``python -m lab`` parser."""
    sp = sub.add_parser("metrics", help="print the model comparison's figures with 95 %% intervals")
    _common(sp)
    sp.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sp.add_argument("--measures", help="only these measures (comma-separated, e.g. P,premature_rate)")
    sp.set_defaults(func=cmd_metrics)
    sp = sub.add_parser("report", help="write the model comparison as one self-contained HTML page")
    _common(sp)
    sp.add_argument("--out", required=True, help="HTML file to write")
    sp.set_defaults(func=cmd_report)
    sp = sub.add_parser("synth", help="write a synthetic study with planted effects (for tests and benchmarks)")
    sp.add_argument("slug")
    sp.add_argument("--sessions", type=int, required=True, help="conversations to write")
    sp.add_argument("--exchanges", type=int, default=5, help="user-assistant exchanges per conversation")
    sp.add_argument("--degradation", type=float, default=0.4, help="share of FULL success synth/fragile loses under SHARDED")
    sp.add_argument("--accommodate", type=float, default=0.6, help="rate at which synth/fragile accommodates false premises")
    sp.add_argument("--human-share", type=float, default=0.0, help="share of participants marked human")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_synth)
