"""The server's start-up work: a warm-up model call, then the heap frozen for the collector."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc
from lab.web.startup import warm_up
assert gc.get_freeze_count() == 0
warm_up()
import litellm  # already loaded by the warm-up call
print(gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_warm_up_loads_the_gateway_and_freezes_what_it_built() -> None:
    # A process of its own: freezing the heap is process-wide.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LAB_ENV_FILE": os.devnull}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, tracked = (int(x) for x in out.stdout.split())
    # What the collector still walks is a small fraction of what was alive after the warm-up.
    assert frozen > 100_000
    assert tracked < frozen / 10
