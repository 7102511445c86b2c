"""The ``ftn`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(steps=args.steps, seed=args.seed, groups=args.groups)
    return 0


def _cmd_complexity(args: argparse.Namespace) -> int:
    from .eval.complexity import format_table, table4

    rows = table4(args.arch, args.size, macs=not args.params_only)
    title = {"adafm_net": "AdaFM-Net (denoising)", "cfsnet": "CFSNet-30 (x2 super-resolution)"}.get(args.arch, args.arch)
    print(f"{title}, {args.size}x{args.size} RGB input; MACs counted with torch.utils.flop_counter")
    if args.size != 256:
        print("note: the paper's GFLOPs are for a 256x256 input; compare the overhead percentages instead")
    print(format_table(rows, markdown=args.markdown))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from .io import read_metadata

    print(json.dumps(read_metadata(args.model), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftn", description="Continuous-level image processing with Filter Transition Networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a small denoiser for two noise levels and slide alpha between them (about a minute, no data)")
    demo.add_argument("--steps", type=int, default=200, help="training steps per stage (default 200)")
    demo.add_argument("--groups", type=int, default=1, help="FTN groups (default 1: adapts fastest on this tiny budget)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    complexity = sub.add_parser("complexity", help="parameters and MACs of each method, beside the paper's Table 4")
    complexity.add_argument("--arch", choices=["adafm_net", "cfsnet"], default="adafm_net")
    complexity.add_argument("--size", type=int, default=256, help="input height and width (default 256, the paper's)")
    complexity.add_argument("--markdown", action="store_true", help="print a markdown table")
    complexity.add_argument("--params-only", action="store_true", help="skip the (slower) MAC counting")
    complexity.set_defaults(func=_cmd_complexity)

    info = sub.add_parser("info", help="print a model file's metadata")
    info.add_argument("model", help="path to a .safetensors model")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ftn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
