"""``ftn tune BASE [--from SPEC] (--to SPEC | --teacher MODEL | --pairs IN TGT) -o OUT ...`` (first version).

Wired into the ``ftn`` command by :func:`add_parser`. Refusals are one line on stderr with exit
status 2, and nothing is written; Ctrl-C saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run_tune"]

DESCRIPTION = (
    "Give a level slider to a trained network: a tuner (FTN by default) learns level 2 on the frozen base, "
    "and alpha 0 stays the base exactly. Levels: noise:SIGMA[,clip|,unclipped] (clip, the default, is "
    "photo-true: clipped and 8-bit), jpeg:QUALITY; level 2 may instead be a teacher model's output "
    "(--teacher) or your own before/after pairs (--pairs, matched by file stem). First version: no "
    "calibration yet (use --alpha with ftn run), ftn and load_base bases only."
)


def add_parser(subparsers: Any) -> None:
    """Register ``tune`` on the ``ftn`` command's subparsers."""
    from .defaults import DEFAULT_BATCH, DEFAULT_ITERS, DEFAULT_LR, DEFAULT_PATCH

    p = subparsers.add_parser("tune", help="give a level slider to a trained network: train a tuner on the frozen base",
                              description=DESCRIPTION)
    p.add_argument("base", help="the base: an ftn model file, a shipped model's name, a checkpoint ftn.load_base reads, "
                                "or one spandrel recognises (pip install --no-deps 'spandrel>=0.4,<0.5')")
    p.add_argument("--from", dest="from_", metavar="SPEC", help="level 1, what the base was trained for (default: 'base')")
    p.add_argument("--to", metavar="SPEC", help="level 2: noise:SIGMA[,clip|,unclipped] or jpeg:QUALITY")
    p.add_argument("--teacher", metavar="MODEL", help="level 2 is this model's output on the same input")
    p.add_argument("--pairs", nargs=2, metavar=("INPUT_DIR", "TARGET_DIR"), help="level 2 is your own before/after pairs")
    p.add_argument("--data", metavar="DIR", help="clean images to cut training patches from (--to, --teacher)")
    p.add_argument("-o", "--out", required=True, help="the tuned model file (.safetensors)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, help=f"training steps (default {DEFAULT_ITERS})")
    budget.add_argument("--minutes", type=float, help="train for this many minutes instead")
    p.add_argument("--method", default="ftn", help="tuning method (default ftn; dni, adafm, ...)")
    p.add_argument("--groups", type=int, help="FTN groups (default: the method's)")
    p.add_argument("--batch-size", type=int, help=f"patches per step (default {DEFAULT_BATCH})")
    p.add_argument("--patch-size", type=int, help=f"patch side in pixels (default {DEFAULT_PATCH})")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    """Run ``ftn tune``; returns the exit status."""
    from .loop import tune

    options = {} if args.groups is None else {"groups": args.groups}
    try:
        out = tune(args.base, to=args.to, from_=args.from_, data=args.data, teacher=args.teacher,
                   pairs=tuple(args.pairs) if args.pairs else None, method=args.method, method_options=options,
                   iters=args.iters, minutes=args.minutes, batch_size=args.batch_size, patch_size=args.patch_size,
                   lr=args.lr, out=args.out, resume=args.resume, device=args.device, progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ftn tune: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftn tune: interrupted (continue with --resume)", file=sys.stderr)
        return 130
    print(f"tuned model: {out} (alpha 0 = the base; try: ftn run -i IMAGE -o OUT --model {out} --alpha 0.5)")
    return 0
