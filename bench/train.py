"""Training throughput: ``python -m lab train`` against a plain TRL script on the same data and machine.

Prints figures, not a test. The demo study is simulated with the scripted model into a
temporary SQLite database (``--repeats`` runs of every condition and item), labelled by
the rule judges, and exported as SFT records and DPO pairs. Then, for each method, two
runs train LoRA adapters (rank 16 on the attention projections, batch 4, ``--max-length``
tokens, one epoch) on SmolLM2-135M-Instruct, the embedded model de-quantised to float32:

- **lab**: what ``python -m lab train`` runs (`lab.train.train`: the export read back,
  progress with ETA, checkpoints, merging and the card);
- **plain**: the same model, data and trainer arguments handed straight to TRL's trainer,
  with nothing of the lab around it.

Each run is its own process, so peak memory (resident set size on the CPU, allocated
memory on a GPU) is the run's alone. Throughput is training tokens (chat template applied,
cut at the maximum length, both sides of a pair for DPO) per second of ``trainer.train``;
the lab's time excludes merging and the card, which the plain script does not do. Target:
the lab's throughput at least 0.9× the plain script's. On a GPU machine ``--device cuda``.

Usage: ``python bench/train.py [--repeats N] [--max-length T] [--methods sft,dpo] [--device cpu|cuda|auto] [--max-steps S]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def make_exports(folder: Path, repeats: int) -> dict[str, Path]:
    """Simulate the demo with the scripted model, judge it by rules, export SFT and DPO (printing to stderr)."""
    import shutil

    import lab.cli
    from lab.cli import main

    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'lab.db'}"
    os.environ["LAB_DATA_DIR"] = str(folder)
    # The demo with the scripted model in every role (assistant and mediator), so the
    # records are made in seconds; what is measured is the training, not the simulation.
    (folder / "items").mkdir()
    shutil.copy(ROOT / "studies" / "items" / "demo.jsonl", folder / "items" / "demo.jsonl")
    demo = (ROOT / "studies" / "demo.yaml").read_text().replace("model: local/smollm2-135m", "model: lab/scripted")
    (folder / "demo.yaml").write_text(demo)
    lab.cli.DEMO_SPEC = folder / "demo.yaml"
    for argv in (["init"], ["simulate", "demo", "--repeats", str(repeats)], ["judge", "demo"]):
        if main(argv) != 0:
            raise SystemExit(f"bench: `python -m lab {' '.join(argv)}` failed")
    exports = {}
    for method in ("sft", "dpo"):
        out = folder / f"export-{method}"
        main(["export", "demo", "--format", method, "--out", str(out)])
        exports[method] = out
    return exports


def worker(runner: str, method: str, export: Path, out: Path, args: argparse.Namespace) -> dict:
    """One training run in this process; returns its figures."""
    from lab.train import TrainOptions, read_records, resolve_base
    from lab.train._run import _count_tokens, build_trainer, peak_memory_mb, resolve_device, train

    data = read_records(export, method)
    options = TrainOptions(
        method=method,  # type: ignore[arg-type]
        out=out,
        max_length=args.max_length,
        batch_size=4,
        device=args.device,
        max_steps=args.max_steps,
        save_steps=10_000,
    )
    device = resolve_device(args.device)
    if runner == "lab":
        result = train(options, data, say=lambda _line: None)
        steps, seconds, tokens = result.steps, result.seconds, result.tokens
    else:
        trainer, tokenizer = build_trainer(options, data, resolve_base(options.base), lambda _line: None)
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
        steps = trainer.state.global_step
        epochs = min(options.epochs, trainer.state.epoch or options.epochs)
        tokens = int(_count_tokens(tokenizer, data, options.max_length) * epochs)
    return {
        "runner": runner,
        "method": method,
        "records": len(data.records),
        "steps": steps,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "peak_mb": peak_memory_mb(device),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--repeats", type=int, default=1, help="simulated runs of every demo condition and item")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--methods", default="sft,dpo")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--max-steps", type=int, default=None, help="cap each run (default: one epoch)")
    p.add_argument("--worker", nargs=4, metavar=("RUNNER", "METHOD", "EXPORT", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        runner, method, export, out = args.worker
        print(json.dumps(worker(runner, method, Path(export), Path(out), args)))
        return

    from lab.train import missing_packages

    if missing_packages():
        raise SystemExit(f"bench: the training stack is missing ({', '.join(missing_packages())}): run `make train-setup`")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        exports = make_exports(folder, args.repeats)
        print(f"demo simulated, judged and exported in {time.monotonic() - started:.0f} s")
        rows = []
        for method in args.methods.split(","):
            if not (exports[method] / "data" / f"{method}.jsonl").read_text().strip():
                print(f"{method}: the export has no records; skipped")
                continue
            for runner in ("plain", "lab"):
                cmd = [sys.executable, __file__, "--max-length", str(args.max_length), "--device", args.device]
                if args.max_steps:
                    cmd += ["--max-steps", str(args.max_steps)]
                cmd += ["--worker", runner, method, str(exports[method]), str(folder / f"model-{runner}-{method}")]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"bench: the {runner} {method} run failed:\n{done.stderr[-2000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    head = ("records", "steps", "tokens", "seconds", "tokens/s", "peak MiB")
    print(f"\n{'method':<6} {'runner':<6} " + " ".join(f"{h:>9}" for h in head))
    for r in rows:
        print(
            f"{r['method']:<6} {r['runner']:<6} {r['records']:>9} {r['steps']:>9} {r['tokens']:>9} "
            f"{r['seconds']:>9.1f} {r['tokens_per_s']:>9.1f} {r['peak_mb']:>9.0f}"
        )
    for method in args.methods.split(","):
        pair = {r["runner"]: r for r in rows if r["method"] == method}
        if len(pair) == 2 and pair["plain"]["tokens_per_s"]:
            ratio = pair["lab"]["tokens_per_s"] / pair["plain"]["tokens_per_s"]
            verdict = "met" if ratio >= 0.9 else "NOT met"
            print(f"{method}: lab / plain throughput = {ratio:.2f}× (target ≥ 0.9×: {verdict})")


if __name__ == "__main__":
    main()
