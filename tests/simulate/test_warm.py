"""The worker server's warm-up of litellm."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_worker_server_warms_litellm_without_leaving_threads() -> None:
    code = (
        "import asyncio\n"
        "import lab.simulate._warm as w\n"
        "assert w.threads_left() == [], w.threads_left()\n"
        "from lab import llm\n"
        "params = {'script': 'fixed', 'reply': 'ok'}\n"
        "print(asyncio.run(llm.acomplete('lab/scripted', [{'role': 'user', 'content': 'x'}], params)).text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
