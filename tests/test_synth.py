"""The synthetic study generator: planted effects come back out of the measures, within their intervals."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from lab import metrics, synth
from lab.analysis_data import load_study
from lab.cli import main


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[metrics.Figures, metrics.Figures, synth.Truth]:
    from lab.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('synth') / 'lab.db'}")
    migrate(engine)
    truth = synth.Truth(degradation=0.5, accommodate=0.7)
    synth.make_study(engine, "planted", 3000, exchanges=4, items_per_kind=30, truth=truth, seed=11)
    data = load_study(engine, "planted")
    options = metrics.Options(draws=400, seed=1)
    return metrics.compute(data, options), metrics.degradation_figures(data, options), truth


def one(table, measure: str, key: str = "", **cell: str):  # noqa: ANN001, ANN201 - a test lookup
    t = table[(table["measure"] == measure) & (table["key"] == key)]
    for k, v in cell.items():
        t = t[t[k] == v]
    assert len(t) == 1
    return t.iloc[0]


def test_degradation_is_recovered(planted: tuple[metrics.Figures, metrics.Figures, synth.Truth]) -> None:
    _, deg_fig, truth = planted
    deg = metrics.degradation(deg_fig)
    # The headline: per-family degradations averaged over families (one, unnamed, here).
    sharded = deg[(deg["mode"] == "SHARDED") & (deg["task"] == metrics.TASK_MEAN)].set_index("model")
    fragile, steady = sharded.loc[synth.FRAGILE], sharded.loc[synth.STEADY]
    assert fragile["lo"] <= truth.degradation <= fragile["hi"]
    assert steady["lo"] <= 0.0 <= steady["hi"]
    assert fragile["lo"] > steady["hi"]  # the planted difference is detected


def test_accommodation_premature_and_repair_are_recovered(planted: tuple[metrics.Figures, metrics.Figures, synth.Truth]) -> None:
    fig, _, truth = planted
    t = fig.table
    acc_f = one(t, "presupposition_share", "ACCOMMODATE", model=synth.FRAGILE)
    acc_s = one(t, "presupposition_share", "ACCOMMODATE", model=synth.STEADY)
    assert acc_f["lo"] <= truth.accommodate <= acc_f["hi"]
    assert acc_s["lo"] <= truth.steady_accommodate <= acc_s["hi"]
    pre = one(t, "premature_rate", model=synth.FRAGILE, condition_key="sharded")
    assert pre["lo"] <= truth.premature <= pre["hi"]
    assert one(t, "premature_rate", model=synth.STEADY, condition_key="sharded")["value"] == 0.0
    rep = one(t, "repair_success", model=synth.STEADY)
    assert rep["lo"] <= truth.repair_resolved[synth.STEADY] <= rep["hi"]
    ack = one(t, "grounding_rate", "user:ACK", model=synth.STEADY, condition_key="full")
    assert ack["lo"] <= truth.human_ack <= ack["hi"]


def test_synth_command_and_clear_errors(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(sqlite_engine.url))
    assert main(["synth", "cli-study", "--sessions", "12", "--exchanges", "2"]) == 0
    assert "12 conversations, 48 turns" in capsys.readouterr().out
    assert main(["synth", "cli-study", "--sessions", "12"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["synth", "other", "--sessions", "0"]) == 1
    assert "--sessions must be at least 1" in capsys.readouterr().err
