"""``ftn tune BASE [--from SPEC] (--to SPEC | --teacher MODEL | --pairs IN TGT) -o OUT ...``.

Wired into the ``ftn`` command by :func:`add_parser`. Refusals are one line on stderr with exit
status 2, and nothing is written (numbers and ``-o`` are read here rather than by argparse, whose
refusals take two lines); Ctrl-C saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run_tune"]


def _number(text: str | None, option: str, kind: type) -> Any:
    """``text`` as an int or a float (None stays None); a one-line ValueError otherwise."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{option} needs a {'whole number' if kind is int else 'number'}, got {text!r}") from None


def _try(out: Any) -> str:
    """A setting to try on the tuned file: the middle of each calibrated range (``--level``), else ``--alpha``."""
    from ..io import read_metadata
    from ..levels import Levels

    meta = read_metadata(out)
    try:
        levels = Levels.from_metadata(meta)
    except ValueError:
        return "--alpha 0.5"
    if "multi_axis" not in meta:
        calibration = levels.axes[0].calibration if len(levels.axes) == 1 else None
        if calibration is not None:
            return f"--level {(calibration.levels[0] + calibration.levels[-1]) / 2:g}"
        return "--alpha 0.5"
    parts = []
    for axis in levels.axes:
        if axis.calibration is not None:
            parts.append(f"{axis.name}={(axis.calibration.levels[0] + axis.calibration.levels[-1]) / 2:g}")
        elif axis.anchors is not None:
            parts.append(f"{axis.name}={axis.anchors[-1]:g}")
    return f"--level {','.join(parts)}" if parts else "--alpha " + ",".join("0.5" for _ in meta["multi_axis"]["axes"])


DESCRIPTION = (
    "Give a level slider to a trained network: a tuner (FTN by default) learns level 2 on the frozen base, "
    "and alpha 0 stays the base exactly. Levels: noise:SIGMA[,clip|,unclipped] (clip, the default, is "
    "photo-true: clipped and 8-bit), jpeg:QUALITY; level 2 may instead be a teacher model's output "
    "(--teacher) or your own before/after pairs (--pairs, matched by file stem). Where both ends are levels "
    "of one task, a few --data images are held out and the level -> alpha calibration is stored after "
    "training, so `ftn run --level` works; otherwise use --alpha. Batch and patch size come from free memory "
    "unless given. A tunable model grows: --axis sigma --add-anchor noise:100 adds an anchor after the axis's last, "
    "--new-axis quality --to jpeg:40 adds an axis (a one-axis model becomes a multi-axis one); only the new tuner "
    "trains, every setting the model had keeps its output bit for bit, and the new part is calibrated on held-out "
    "images; --corner sigma=50,quality=10 adds a joint correction where two axes meet at anchors. A long run goes "
    "in legs: --stop-after M pauses it at a checkpoint, and the same command with --resume continues it."
)


def add_parser(subparsers: Any) -> None:
    """Register ``tune`` on the ``ftn`` command's subparsers."""
    from .defaults import DEFAULT_HOLD_OUT, DEFAULT_ITERS, DEFAULT_LR

    p = subparsers.add_parser("tune", help="give a level slider to a trained network: train a tuner on the frozen base",
                              description=DESCRIPTION)
    p.add_argument("base", nargs="?", help="the base: an ftn model file, a shipped model's name, a checkpoint ftn.load_base "
                                           "reads, or one spandrel recognises (pip install --no-deps 'spandrel>=0.4,<0.5')")
    p.add_argument("--base", dest="base_option", metavar="MODEL", help="the base, as an option (the same as BASE)")
    p.add_argument("--from", dest="from_", metavar="SPEC", help="level 1, what the base was trained for (default: 'base')")
    p.add_argument("--to", metavar="SPEC", help="level 2: noise:SIGMA[,clip|,unclipped] or jpeg:QUALITY")
    p.add_argument("--teacher", metavar="MODEL", help="level 2 is this model's output on the same input")
    p.add_argument("--pairs", nargs=2, metavar=("INPUT_DIR", "TARGET_DIR"), help="level 2 is your own before/after pairs")
    p.add_argument("--data", metavar="DIR", help="clean images to cut training patches from (--to, --teacher)")
    # Numbers are read by run_tune, and -o checked there, so that every refusal is one line on stderr.
    p.add_argument("-o", "--out", help="the tuned model file (.safetensors; required)")
    p.add_argument("--iters", metavar="N", help=f"training steps (default {DEFAULT_ITERS})")
    p.add_argument("--minutes", metavar="M", help="train for this many minutes instead")
    p.add_argument("--method", help="tuning method (default ftn; dni, adafm, ...; growing: the base's)")
    p.add_argument("--groups", metavar="G", help="FTN groups (default: the method's)")
    p.add_argument("--batch-size", metavar="B", help="patches per step (default: from free memory, at most 8 on a CPU, 16 on a GPU)")
    p.add_argument("--patch-size", metavar="P", help="patch side in pixels (default: from free memory, at most 64 on a CPU, 96 on a GPU)")
    p.add_argument("--lr", metavar="LR", default=str(DEFAULT_LR), help=f"Adam learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--no-calibrate", action="store_true",
                   help="no level -> alpha calibration after training (and no images held out for it)")
    p.add_argument("--hold-out", default=str(DEFAULT_HOLD_OUT), metavar="N",
                   help=f"--data images kept out of training for the calibration (default {DEFAULT_HOLD_OUT}, "
                        "at most a third; none with fewer than 6 images)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--checkpoint-every", metavar="N", default="100",
                   help="write the checkpoint every N steps (default 100; also on Ctrl-C and at the end)")
    p.add_argument("--stop-after", metavar="M",
                   help="pause after M minutes of training (a long run in legs): the checkpoint is kept and the same "
                        "command with --resume continues it; exit status 3")
    grow = p.add_argument_group("growing a tunable model (one new tuner trains; everything else is frozen)")
    grow.add_argument("--add-anchor", metavar="SPEC", help="a new anchor after the axis's last: noise:SIGMA or jpeg:QUALITY")
    grow.add_argument("--axis", metavar="NAME", help="the axis that gains the anchor (default: the model's only axis)")
    grow.add_argument("--new-axis", metavar="NAME", help="a new axis (e.g. quality) reaching --to SPEC; its anchor 0 is "
                                                         "--from SPEC, else none (sigma 0, quality 100)")
    grow.add_argument("--corner", metavar="AXIS=LEVEL,...",
                      help="a joint correction where two or more axes sit at anchors (e.g. sigma=50,quality=10), "
                           "trained on patches with all of those degradations")
    grow.add_argument("--chain", action=argparse.BooleanOptionalAction, default=None,
                      help="with --new-axis, the new axis's (else a one-axis base's) later anchors start from the anchor "
                           "before (default) or, with --no-chain, "
                           "from the base")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    """Run ``ftn tune``; returns the exit status."""
    import warnings

    from .loop import tune

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"ftn tune: warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line  # e.g. images smaller than the patch, skipped: one line, not a traceback line
        return _run(args, tune)


def _run(args: argparse.Namespace, tune: Any) -> int:
    from .loop import TrainingPaused

    try:
        if args.base is not None and args.base_option is not None:
            raise ValueError("give the base once: BASE or --base MODEL")
        base = args.base if args.base is not None else args.base_option
        if base is None:
            raise ValueError("give the base: ftn tune BASE ... or ftn tune --base MODEL ...")
        if not args.out:
            raise ValueError("give the tuned model's file with -o OUT.safetensors")
        groups = _number(args.groups, "--groups", int)
        stop_after = _number(args.stop_after, "--stop-after", float)
        options = {} if groups is None else {"groups": groups}
        out = tune(base, to=args.to, from_=args.from_, data=args.data, teacher=args.teacher,
                   pairs=tuple(args.pairs) if args.pairs else None, method=args.method, method_options=options,
                   iters=_number(args.iters, "--iters", int), minutes=_number(args.minutes, "--minutes", float),
                   batch_size=_number(args.batch_size, "--batch-size", int),
                   patch_size=_number(args.patch_size, "--patch-size", int), lr=_number(args.lr, "--lr", float),
                   out=args.out, resume=args.resume, device=args.device, progress=not args.no_progress,
                   calibrate=not args.no_calibrate, hold_out_images=_number(args.hold_out, "--hold-out", int),
                   axis=args.axis, add_anchor=args.add_anchor, new_axis=args.new_axis, chain=args.chain,
                   corner=args.corner, checkpoint_every=_number(args.checkpoint_every, "--checkpoint-every", int),
                   stop_after_s=None if stop_after is None else 60.0 * stop_after)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ftn tune: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftn tune: interrupted (continue with --resume)", file=sys.stderr)
        return 130
    except TrainingPaused as paused:
        print(f"ftn tune: {paused}", file=sys.stderr)
        return 3
    print(f"tuned model: {out} (alpha 0 = the base; try: ftn run -i IMAGE -o OUT --model {out} {_try(out)})")
    return 0
