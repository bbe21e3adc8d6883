"""Which model, with which parameters, a conversation calls when a model replaces its condition's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.setup import override_model
from lab.spec import load_spec_file

ROOT = Path(__file__).resolve().parent.parent


def test_a_replacing_model_is_sampled_as_the_spec_samples_it_or_its_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = load_spec_file(ROOT / "studies" / "demo.yaml")
    demo = {"temperature": 0.0, "max_tokens": 256, "seed": 0}
    assert override_model(d, "smollm2") == ("local/smollm2-135m", demo)
    # The string the spec's model calls is that model, with its parameters.
    assert override_model(d, "local/smollm2-135m") == ("local/smollm2-135m", demo)
    # A tuned model is sampled as its base, named by its training card.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tuned").mkdir(parents=True)
    card = {"base": {"name": "local/smollm2-135m"}}
    (tmp_path / "models" / "tuned" / "training.json").write_text(json.dumps(card))
    assert override_model(d, "local/models/tuned") == ("local/models/tuned", demo)
    # Anything else runs with its own defaults.
    (tmp_path / "models" / "other").mkdir()
    assert override_model(d, "local/models/other") == ("local/models/other", {})
    assert override_model(d, "openai/gpt-4o") == ("openai/gpt-4o", {})
