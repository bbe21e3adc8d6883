"""The training effect: tuned − base per measure, on held-out items, with paired intervals and a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from lab.analysis_data import load_study
from lab.metrics import Options, degradation_table
from lab.synth import FRAGILE, STEADY, Truth, make_study
from lab.training_effect import EffectError, effect_pairs, format_effect, training_effect


@pytest.fixture
def synth(sqlite_engine: Engine) -> Engine:
    """A synthetic study whose fragile model degrades, accommodates and answers early; the steady one does not."""
    make_study(sqlite_engine, "fx", 600, seed=1, truth=Truth(degradation=0.5, accommodate=0.8))
    return sqlite_engine


def test_each_measure_is_tuned_minus_base_with_a_paired_interval_and_a_verdict(synth: Engine) -> None:
    data = load_study(synth, "fx")
    effect = training_effect(data, FRAGILE, STEADY, options=Options(draws=300, seed=0))
    rows = {r["measure"]: r for _, r in effect.iterrows()}
    assert set(rows) >= {"score", "rejection_rate", "premature_rate", "degradation_pooled"}
    conv = data.conversations
    for measure in ("score",):
        r = rows[measure]
        assert r["diff"] == pytest.approx(r["tuned_value"] - r["base_value"])
    # The planted effects: the steady model accommodates less, answers early less, degrades less.
    assert rows["rejection_rate"]["lo"] > 0 and "excludes zero: an improvement" in rows["rejection_rate"]["verdict"]
    # Degradation agrees with the comparison's own pooled figure for each model (FULL → SHARDED).
    deg, _ = degradation_table(data, Options(draws=0))
    pooled = deg[(deg["measure"] == "degradation_pooled") & (deg["key"] == "SHARDED")].set_index("model")["value"]
    assert rows["degradation_pooled"]["diff"] == pytest.approx(pooled[STEADY] - pooled[FRAGILE])
    r = rows["degradation_pooled"]
    assert ("includes zero" in r["verdict"]) == (r["lo"] <= 0 <= r["hi"])
    assert rows["premature_rate"]["hi"] < 0 and "an improvement" in rows["premature_rate"]["verdict"]
    # Swapping the models flips every difference and turns improvements into deteriorations.
    back = training_effect(data, STEADY, FRAGILE, options=Options(draws=300, seed=0))
    back_rows = {r["measure"]: r for _, r in back.iterrows()}
    for name, r in rows.items():
        assert back_rows[name]["diff"] == pytest.approx(-r["diff"])
    assert "deterioration" in back_rows["rejection_rate"]["verdict"]
    assert np.isfinite(rows["score"]["lo"]) and len(conv)


def test_only_the_items_asked_for_count(synth: Engine) -> None:
    data = load_study(synth, "fx")
    some = sorted(data.conversations["item_key"].unique())[:3]
    effect = training_effect(data, FRAGILE, STEADY, items=some, options=Options(draws=0))
    assert set(effect["items"]) == {len(some)}
    assert effect["n"].max() <= int(data.conversations["item_key"].isin(some).sum())
    with pytest.raises(EffectError, match="no conversations of synth/none on the held-out items"):
        training_effect(data, "synth/none", STEADY, items=some)


def test_a_tuned_model_is_paired_with_the_base_its_card_names(tmp_path: Path) -> None:
    tuned = tmp_path / "models" / "t"
    tuned.mkdir(parents=True)
    (tuned / "training.json").write_text(json.dumps({"base": {"name": "local/smollm2-135m"}}))
    pairs = effect_pairs(["local/smollm2-135m", f"local/{tuned}", "lab/scripted"])
    assert pairs == [("local/smollm2-135m", f"local/{tuned}")]
    assert effect_pairs([f"local/{tuned}"]) == [], "a base that did not run gives no pair"


def test_the_table_reads_as_a_table_and_sentences(synth: Engine) -> None:
    effect = training_effect(load_study(synth, "fx"), FRAGILE, STEADY, options=Options(draws=100))
    text = format_effect(effect)
    assert text.startswith("training effect of synth/steady over synth/fragile (tuned − base), held-out items only")
    assert "95% interval" in text and text.count("held-out item(s).") == len(effect)
    assert json.loads(format_effect(effect, "json"))[0]["measure"] == effect["measure"].iloc[0]


def test_a_measure_without_a_figure_names_whose_is_missing() -> None:
    """On items where FULL scores 0 neither model has a degradation; the sentence says so, and why."""
    from lab.training_effect import EFFECT_MEASURES, _verdict

    by_name = {m.name: m for m in EFFECT_MEASURES}
    nan = float("nan")
    both = _verdict(by_name["degradation_pooled"], nan, nan, nan, nan, 4)
    assert both == (
        "FULL → SHARDED degradation (task families pooled): no figure for either model on these items"
        " (a drop relative to FULL is undefined where FULL scores 0)."
    )
    assert "no figure for the tuned model on these items." in _verdict(by_name["score"], 0.5, nan, nan, nan, 4)
    assert "no figure for the base on these items" in _verdict(by_name["score"], nan, 0.5, nan, nan, 4)
    assert _verdict(by_name["score"], 0.2, 0.2, 0.0, 0.0, 4).startswith("task score: no difference")
