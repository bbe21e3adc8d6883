"""Charts build valid Vega-Lite with empty and full data; the CLI and the HTML report show the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from lab import charts, metrics, report, synth
from lab.analysis_data import load_study
from lab.cli import main


@pytest.fixture
def study(sqlite_engine: Engine) -> Engine:
    synth.make_study(sqlite_engine, "charts", 240, exchanges=3, items_per_kind=6, seed=5)
    return sqlite_engine


def test_every_chart_is_valid_vega_lite_with_full_and_empty_data(study: Engine) -> None:
    c = report.build(load_study(study, "charts"), metrics.Options(draws=50))
    full = charts.all_figures(c.table, c.laban)
    empty = charts.all_figures(c.table.iloc[0:0], c.laban.iloc[0:0])
    assert [f.key for f in full] == ["models", "degradation", "premature", "presupposition", "grounding", "repair"]
    for f in full + empty:
        spec = f.chart.to_dict(validate=True)
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        assert f.caption.endswith(".")
    for f in full:
        assert "conversations" in f.caption and len(f.data) > 0
    for f in empty:
        assert f.data.empty and "No " in f.caption
    assert "FULL → SHARDED degradation: synth/fragile" in full[1].caption


def test_images_render_offline(study: Engine) -> None:
    c = report.build(load_study(study, "charts"), metrics.Options(draws=20))
    fig = charts.models_by_conditions(c.table)
    assert charts.image(fig.chart, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert charts.image(fig.chart, "svg").lstrip().startswith(b"<svg")
    with pytest.raises(ValueError, match="unknown image format"):
        charts.image(fig.chart, "gif")


def test_small_cells_are_flagged_in_chart_data() -> None:
    table = pd.DataFrame(
        [
            {
                "measure": "P",
                "key": "",
                "model": "a",
                "condition_key": "full",
                "participant_kind": "human",
                "value": 50.0,
                "lo": 40.0,
                "hi": 60.0,
                "n": 3,
                "small": True,
                "label_source": "session.score",
            },
            {
                "measure": "P",
                "key": "",
                "model": "b",
                "condition_key": "full",
                "participant_kind": "human",
                "value": 70.0,
                "lo": 60.0,
                "hi": 80.0,
                "n": 30,
                "small": False,
                "label_source": "session.score",
            },
        ]
    )
    fig = charts.models_by_conditions(table)
    assert list(fig.data["few"]) == ["fewer than 5 conversations", ""]
    assert "33 conversations, 1 cell(s) with fewer than 5 drawn hollow" in fig.caption


def test_cli_metrics_prints_the_same_numbers_as_the_library(
    study: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(study.url))
    assert main(["metrics", "charts", "--format", "json", "--draws", "100", "--seed", "3"]) == 0
    printed = pd.DataFrame(json.loads(capsys.readouterr().out))
    expected = metrics.comparison(load_study(study, "charts"), metrics.Options(draws=100, seed=3))
    assert len(printed) == len(expected)
    assert printed["value"].to_numpy() == pytest.approx(expected["value"].to_numpy(), nan_ok=True)
    assert printed["lo"].to_numpy() == pytest.approx(expected["lo"].to_numpy(), nan_ok=True)
    assert main(["metrics", "charts", "--by", "model,reveal", "--measures", "P", "--draws", "0"]) == 0
    out = capsys.readouterr().out
    assert "SHARDED" in out and "synth/fragile" in out and "95% interval" in out
    assert main(["metrics", "charts", "--by", "colour"]) == 1
    assert "--by: unknown 'colour'" in capsys.readouterr().err
    assert main(["metrics", "missing"]) == 1
    assert "no study with slug 'missing'" in capsys.readouterr().err


def test_report_is_one_self_contained_page(
    study: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(study.url))
    out = tmp_path / "report.html"
    assert main(["report", "charts", "--out", str(out), "--draws", "50"]) == 0
    page = out.read_text()
    assert page.count("<svg") == 6 and "<script" not in page
    assert "Model differences in P" in page and "All figures" in page
    # No resource is fetched: the only URLs are XML namespaces inside the SVGs.
    for url in set(part.split('"')[0] for part in page.split("http")[1:]):
        assert url.startswith("://www.w3.org/")


def test_the_confusion_matrix_draws_a_cell_per_code_pair() -> None:
    chart = charts.confusion_chart([("ACK", "ACK", 2.0), ("ACK", "CLARIFY", 1.0), ("CLARIFY", "ACK", 1.0)])
    svg = charts.image(chart, "svg").decode()
    assert svg.count('aria-roledescription="rect"') >= 3 or svg.count("<path") >= 3
    assert "other annotator&apos;s code" in svg or "other annotator's code" in svg


def _one_cell(measure: str, keys: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "measure": measure,
                "key": key,
                "model": "lab/scripted",
                "condition_key": "full",
                "participant_kind": "simulated",
                "value": value,
                "lo": value,
                "hi": value,
                "n": 6,
                "small": False,
                "label_source": "gold",
            }
            for key, value in keys.items()
        ]
    )


def test_stacked_shares_show_every_code_in_the_legend_and_keep_the_bar_height() -> None:
    # One cell, every repair unresolved: the legend still lists each outcome, and the chart
    # is at least its plotting height plus an axis, in the page as in the image.
    fig = charts.repair_outcomes(_one_cell("repair_outcome", {"unresolved": 1.0}))
    svg = charts.image(fig.chart, "svg", scale=1).decode()
    for outcome in metrics.REPAIR_OUTCOMES:
        assert f">{outcome}<" in svg, outcome
    spec = fig.chart.to_dict()
    assert spec["autosize"] == {"type": "fit-x", "contains": "padding"}  # how Streamlit is told not to squeeze it
    fig = charts.presupposition_bars(_one_cell("presupposition_share", {"ACCOMMODATE": 0.5, "REJECT": 0.5}))
    svg = charts.image(fig.chart, "svg", scale=1).decode()
    for code in metrics.PRESUPPOSITION_CODES:
        assert f">{code}<" in svg, code


def test_a_measure_with_no_spread_reads_as_plain_numbers() -> None:
    svg = charts.image(charts.models_by_conditions(_one_cell("P", {"": 0.0})).chart, "svg").decode()
    assert "0.000000" not in svg and ">0<" in svg
