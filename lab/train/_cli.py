"""``python -m lab train``: tune a model on a study's training export."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._options import DEFAULT_BASE, DEVICES, METHODS


def cmd_train(args: argparse.Namespace) -> None:
    """Export the study's records for the method, train, and print where the model and its card are."""
    from ..db import get_engine
    from ._data import study_data
    from ._options import TrainOptions
    from ._run import train
    from ._stack import require_stack

    require_stack()
    options = TrainOptions(
        method=args.method,
        out=Path(args.out),
        base=args.base,
        lora_r=args.lora_r,
        epochs=args.epochs,
        lr=args.lr,
        max_length=args.max_length,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        device=args.device,
        seed=args.seed,
        max_steps=args.max_steps,
        beta=args.beta,
        save_steps=args.save_steps,
    )
    data = study_data(get_engine(), args.slug, args.method, options.out, data=Path(args.data) if args.data else None)
    print(f"training on {len(data.records)} {args.method} records of study '{args.slug}' ({data.provenance.get('items')} items)")
    result = train(options, data)
    last = f", last loss {result.losses[-1][1]:.4f}" if result.losses else ""
    print(
        f"saved {options.out} after {result.steps} steps{last} ({result.tokens_per_second:.0f} tokens/s); "
        f"serve it as local/{args.out}; its card is {options.out / 'README.md'}"
    )


def register(sub: Any) -> None:
    """Add ``train`` to the command parser."""
    sp = sub.add_parser(
        "train",
        help="tune a model with LoRA on a study's SFT or DPO export (needs `make train-setup`)",
        description="Export the study's training records (held-out items left out), train LoRA adapters with TRL, "
        "merge them into the base and save a model folder with its card. Resumes from the last checkpoint in --out. "
        "On several GPUs run the same command under `accelerate launch -m lab train …`.",
    )
    sp.add_argument("slug")
    sp.add_argument("--method", required=True, choices=METHODS)
    sp.add_argument("--out", required=True, help="folder for the model, e.g. models/NAME (served as local/models/NAME)")
    sp.add_argument("--base", default=DEFAULT_BASE, help=f"base model: {DEFAULT_BASE}, a .gguf file or a model folder")
    sp.add_argument("--data", help="train on this export folder instead of exporting the study afresh")
    sp.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha is twice it)")
    sp.add_argument("--epochs", type=float, default=1.0)
    sp.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-4 for sft, 5e-5 for dpo)")
    sp.add_argument("--max-length", type=int, default=1024, help="tokens per record")
    sp.add_argument("--batch-size", type=int, default=4)
    sp.add_argument("--grad-accum", type=int, default=1, help="steps per optimizer update")
    sp.add_argument("--device", choices=DEVICES, default="auto")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--max-steps", type=int, default=None, help="stop after this many updates (smoke runs)")
    sp.add_argument("--beta", type=float, default=0.1, help="dpo: pull towards the reference model")
    sp.add_argument("--save-steps", type=int, default=50, help="updates between checkpoints")
    sp.set_defaults(func=cmd_train)
