"""``ftn train CONFIG.yaml [--set key=value ...] [--resume] [--stop-after MIN] [--no-progress]``.

Wired into the ``ftn`` command by :func:`add_parser`; also runs alone, which is how ``torchrun``
starts it for data-parallel training::

    python -m ftn.train.cli configs/denoise-base.yaml --set iterations=100
    torchrun --nproc_per_node 2 -m ftn.train.cli configs/denoise-base.yaml
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_parser", "main"]


DESCRIPTION = (
    "Train one stage from a YAML config (configs/*.yaml): stage 'base' trains a network at one level, "
    "stage 'tuner' trains a method on a frozen base at a second level. Relative paths in the config are "
    "relative to the current directory. Multi-process: torchrun --nproc_per_node N -m ftn.train.cli CONFIG"
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML training config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, the value read as YAML (repeatable): "
                             "--set iterations=100 --set arch_options.channels=16")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                        help="pause after MIN minutes of this call: write the checkpoint and exit (continue with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)


def add_parser(subparsers: Any) -> None:
    """Register ``train`` on the ``ftn`` command's subparsers."""
    parser = subparsers.add_parser(
        "train",
        help="train a base network (stage 1) or a tuner on a frozen base (stage 2) from a YAML config",
        description=DESCRIPTION,
    )
    _add_arguments(parser)


def run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .loop import TrainingDiverged, train

    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        config = load_config(args.config, args.overrides)
        if args.stop_after is not None and not (args.stop_after > 0 and math.isfinite(args.stop_after)):
            raise ValueError(f"--stop-after must be a positive number of minutes, got {args.stop_after}")
        stop_after_s = None if args.stop_after is None else 60 * args.stop_after
        model_path = train(config, resume=args.resume, progress=not args.no_progress, stop_after_s=stop_after_s)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ftn train: error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"ftn train: {err}", file=sys.stderr)
        return 1
    if is_main and model_path.name == "checkpoint.safetensors":
        print(f"paused: {model_path} (continue with: ftn train {args.config} --resume"
              + "".join(f" --set {o}" for o in args.overrides) + ")")
    elif is_main:
        out_dir = model_path.parent
        print(f"model: {model_path}")
        print(f"logs: {out_dir / 'log.csv'}, config: {out_dir / 'config.yaml'}, "
              f"checkpoint: {out_dir / 'checkpoint.safetensors'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftn train", description=DESCRIPTION)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
