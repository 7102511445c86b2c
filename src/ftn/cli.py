"""The ``ftn`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .eval.sweep import calibrate, parse_alpha_grid, plot_sweep, sweep
    from .io import load, save
    from .levels import Levels, with_calibration
    from .methods import TunableModel
    from .tasks import get_task

    model = load(args.model)
    if not isinstance(model, TunableModel):
        raise ValueError(f"{args.model} is a plain network; a sweep needs a tunable model (one with a method attached)")
    meta = model.metadata
    if "task" not in meta or "levels" not in meta:
        raise ValueError(f"{args.model} does not say its task and levels in its metadata; save it with task=..., levels=[...]")
    task = get_task(meta["task"], **meta.get("task_options", {}))
    # The anchors from the levels alone: a calibration already there (even a broken one) is about to be replaced.
    anchors = Levels.from_metadata({k: v for k, v in meta.items() if k != "calibration"}).axis(task.level_name).anchors
    if anchors is None:
        raise ValueError(f"{args.model}: its levels do not give {task.level_name} at both ends")
    train_levels = list(anchors)
    levels = args.levels or list(task.test_levels)
    alphas = parse_alpha_grid(args.alphas)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = sweep(model, args.data, task, levels, alphas, train_levels=train_levels, limit=args.limit, seed=args.seed,
                   crop_border=args.crop_border, y_channel=args.y, crop=args.crop)
    out = Path(args.out)
    written = result.write(out)
    written.append(plot_sweep(result, out / "sweep.png"))
    print(f"{'level':>12} {'input':>8} {'best alpha':>10} {'best PSNR':>10}")
    for level, inp in zip(result.levels, result.input_psnr):
        key = f"{level:g}"
        print(f"{task.label(level):>12} {inp:8.2f} {result.best_alpha[key]:10.2f} {result.best_psnr[key]:10.2f}")
    calibration = calibrate(result)
    print("calibration (level -> alpha):", ", ".join(f"{lv:g} -> {a:.2f}" for lv, a in zip(calibration["levels"], calibration["alphas"])))
    if args.calibrate:
        model.metadata = with_calibration(meta, calibration)
        save(model, args.model)
        print(f"calibration written into {args.model}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from .app import app_config, launch  # light: Gradio is imported by launch only

    config = app_config(host=args.host, port=args.port, max_megapixels=args.max_megapixels,
                        max_upload_mb=args.max_upload_mb, allow_local_models=args.allow_local_models)
    try:
        launch(config)
    except ModuleNotFoundError as err:
        print(f"ftn app: error: the web app needs {err.name or 'gradio'}; install it with: pip install -e .[app]", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the port is taken
        print(f"ftn app: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
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

    sweep = sub.add_parser("sweep", help="PSNR against alpha at several test levels; best alpha per level; calibration")
    sweep.add_argument("--model", required=True, help="a tunable model file (.safetensors)")
    sweep.add_argument("--data", required=True, help="folder of clean test images (degraded deterministically per level)")
    sweep.add_argument("--levels", type=float, nargs="+", help="test levels (default: the task's, e.g. sigma 20 30 ... 80)")
    sweep.add_argument("--alphas", default="0:1:0.05", help="alpha grid, start:stop:step or a comma list (default 0:1:0.05)")
    sweep.add_argument("--limit", type=int, help="use the first N images only")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the test degradations")
    sweep.add_argument("--crop-border", type=int, default=0)
    sweep.add_argument("--crop", type=int, help="evaluate a centre crop of this size (after degrading), for speed")
    sweep.add_argument("--y", action="store_true", help="PSNR on the Y channel (default RGB)")
    sweep.add_argument("--threads", type=int, help="torch threads")
    sweep.add_argument("--out", default="runs/sweep", help="folder for sweep.csv, sweep.json and sweep.png")
    sweep.add_argument("--calibrate", action="store_true", help="write the level -> alpha calibration into the model file")
    sweep.set_defaults(func=_cmd_sweep)

    from .export_cli import add_parser as add_export_parser
    from .infer.cli import add_parser as add_run_parser
    from .info_cli import add_parser as add_info_parser
    from .train.cli import add_parser as add_train_parser
    from .tuning.cli import add_parser as add_tune_parser

    add_run_parser(sub)
    add_train_parser(sub)
    add_tune_parser(sub)

    app = sub.add_parser("app", help="start the web app (needs: pip install -e .[app])")
    app.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens the app to the network)")
    app.add_argument("--allow-local-models", action="store_true",
                     help="offer the box that loads a .safetensors file from this server's disk (off by default)")
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument("--max-megapixels", type=float, default=16.0, help="refuse larger uploads (default 16)")
    app.add_argument("--max-upload-mb", type=float, default=50.0, help="refuse larger upload files, in MB (default 50)")
    app.set_defaults(func=_cmd_app)

    add_export_parser(sub)
    add_info_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ftn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (`ftn info m | head`): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
