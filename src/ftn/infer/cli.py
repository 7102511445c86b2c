"""``ftn run``: apply a tunable model to an image or a folder of images at a chosen level.

    ftn run -i photo.png -o out.png --model denoise --level 50      # sigma 50, via the calibration
    ftn run -i photo.png -o out.png --model denoise --alpha 0.3
    ftn run -i photo.png -o out.png --model denoise --auto          # sigma estimated from the image
    ftn run -i scans/ -o clean/ --model dejpeg.safetensors --auto   # quality read from each JPEG
    ftn run -i photo.png -o out.png --model denoise --alpha-map mask.png   # per pixel: 0 = level 1

Bad input is refused with a one-line error on stderr and exit status 2, and never leaves an output
file behind (outputs are written atomically, only after the image was processed). In a folder, a
file that fails is reported and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["add_parser", "run_command"]

PROG = "ftn run"
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")


class UsageError(ValueError):
    """Refused input: reported as one line, exit status 2."""


def add_parser(subparsers: Any) -> None:
    """Add the ``run`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "run",
        help="apply a tunable model to an image or a folder at a chosen level",
        description=(
            "Apply a tunable model to an image or a folder of images. Choose the level with exactly one of "
            "--alpha, --level, --auto or --alpha-map. alpha 0 is the model's first level, 1 its second "
            "(e.g. sigma 20 ... sigma 80; `ftn info MODEL` shows them)."
        ),
    )
    # Required options are checked by run_command, so that every refusal is one line on stderr.
    p.add_argument("-i", "--input", metavar="IN", help="an image file, or a folder of images (required)")
    p.add_argument(
        "-o", "--output", metavar="OUT",
        help="the output file; for a folder IN, a folder (created if missing; outputs keep their names) (required)",
    )
    p.add_argument("-m", "--model", metavar="NAME_OR_PATH", help="a shipped model's name or a .safetensors file (required)")
    p.add_argument("--alpha", metavar="A", help="alpha in [0, 1]: 0 = the model's first level, 1 = its second")
    p.add_argument("--level", metavar="L", help="a real level (e.g. sigma 50 or JPEG quality 30), through the model's calibration")
    p.add_argument(
        "--auto", action="store_true",
        help="estimate the level from each input: noise sigma from the image (denoise), quality from the JPEG file (dejpeg)",
    )
    p.add_argument(
        "--alpha-map", metavar="MASK",
        help="per-pixel alpha from a grey image: black = the first level, white = the second (resized to fit)",
    )
    p.add_argument("--allow-extrapolation", action="store_true", help="accept --alpha outside [0, 1] (levels never trained)")
    p.add_argument("--quality", metavar="Q", default="95", help="JPEG / WebP output quality, 1-100 (default 95)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: cuda when available)")
    p.set_defaults(func=run_command)


# -- helpers ----------------------------------------------------------------------------------------


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{option} needs a number, got {text!r}") from None


def _check_alpha(alpha: float, allow_extrapolation: bool) -> float:
    from ..control import check_alpha

    try:
        return float(check_alpha(alpha, allow_extrapolation=allow_extrapolation))
    except ValueError as err:
        raise UsageError(str(err).replace("allow_extrapolation=True", "--allow-extrapolation")) from None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class _Plan:
    """How the alpha of each image is chosen."""

    kind: str  # "alpha" | "level" | "auto" | "map"
    alpha: float | None = None
    label: str = ""
    mask: Tensor | None = None  # (1, 1, h, w) in [0, 1]
    mask_name: str = ""
    estimate: str = ""  # for auto: "sigma" or "quality"


def _load_mask(path: Path) -> Tensor:
    from ..data.images import load_image

    loaded = load_image(path)
    grey = loaded.image
    if grey.shape[0] == 3:  # ITU-R BT.601 luma, as Pillow's convert("L")
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=grey.dtype).view(3, 1, 1)
        grey = (grey * weights).sum(dim=0, keepdim=True)
    return grey.clamp(0, 1)[None]


def _fit_mask(mask: Tensor, size: tuple[int, int], log: Callable[[str], None], name: str) -> Tensor:
    h, w = size
    mh, mw = mask.shape[-2:]
    if (mh, mw) == (h, w):
        return mask
    log(f"alpha map {name} is {mw}x{mh}; resized to the image's {w}x{h}")
    shrinking = h < mh or w < mw
    return F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking).clamp(0, 1)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but no CUDA device is available")
    return device


# -- one image --------------------------------------------------------------------------------------


def process_image(
    model: Any,
    src: Path,
    dst: Path,
    plan: _Plan,
    *,
    allow_extrapolation: bool = False,
    quality: int = 95,
    log: Callable[[str], None] = print,
) -> str:
    """Load ``src``, run the model at the plan's alpha, write ``dst``; returns the line to print."""
    from ..data.images import load_image, save_image
    from .apply import apply_model, level_to_alpha
    from .estimate import estimate_jpeg_quality, estimate_noise_sigma

    start = time.perf_counter()
    meta = model.metadata
    if plan.kind == "auto" and plan.estimate == "quality":  # read the tables before decoding anything
        q = estimate_jpeg_quality(src)
        if q is None:
            raise UsageError(
                f"{src}: --auto reads a dejpeg model's level from the JPEG quantisation tables, and this is not a "
                "JPEG file; give --level or --alpha"
            )
    loaded = load_image(src)
    image = loaded.image
    suffix = dst.suffix.lower()
    bit_depth = 16 if loaded.bit_depth == 16 and suffix in _SIXTEEN_BIT_SUFFIXES else 8
    if loaded.alpha is not None and bit_depth == 16 and image.shape[0] == 1 and suffix != ".png":
        raise UsageError(f"{dst}: 16-bit grey + transparency can be written as .png only")
    alpha: float | Tensor
    if plan.kind in ("alpha", "level"):
        alpha, label = float(plan.alpha), plan.label
    elif plan.kind == "auto":
        if plan.estimate == "sigma":
            measured = estimate_noise_sigma(image)
            what = f"estimated noise sigma {measured:.1f}"
        else:
            measured = q
            what = f"JPEG quality {measured:.0f} (from the file's quantisation tables)"
        alpha, note = level_to_alpha(meta, measured)
        if note:
            log(f"{src.name}: {note}")
        label = f"{what} -> alpha {_fmt(alpha)}"
    else:
        alpha = _fit_mask(plan.mask, tuple(image.shape[-2:]), log, plan.mask_name)
        low, high = float(alpha.min()), float(alpha.max())
        label = f"alpha map {plan.mask_name}, alpha {_fmt(low)} ... {_fmt(high)}, mean {_fmt(float(alpha.mean()))}"

    out = apply_model(model, image, alpha=alpha, allow_extrapolation=allow_extrapolation)

    notes = []
    if loaded.bit_depth == 16 and bit_depth == 8:
        notes.append(f"16-bit input written as 8-bit ({suffix} holds 8 bits per channel)")
    if loaded.alpha is not None and suffix not in _ALPHA_SUFFIXES:
        notes.append(f"transparency dropped ({suffix} cannot store it)")
    save_image(dst, out, alpha=loaded.alpha, bit_depth=bit_depth, quality=quality)
    elapsed = time.perf_counter() - start
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"{src.name} -> {dst}: {label}, {elapsed:.2f} s{extra}"


# -- the command ------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace, model: Any) -> _Plan:
    from .apply import alpha_to_level, describe_levels, level_name, level_to_alpha

    meta = model.metadata
    ends = describe_levels(meta)
    if args.alpha is not None:
        alpha = _check_alpha(_number(args.alpha, "--alpha"), args.allow_extrapolation)
        level = alpha_to_level(meta, alpha) if 0.0 <= alpha <= 1.0 else None
        name = level_name(meta)
        about = f" (about {name} {level:.3g})" if level is not None and name else ""
        return _Plan("alpha", alpha=alpha, label=f"alpha {_fmt(alpha)}{about}")
    if args.level is not None:
        level = _number(args.level, "--level")
        if not math.isfinite(level):
            raise UsageError(f"--level needs a finite number, got {args.level!r}")
        alpha, note = level_to_alpha(meta, level)
        if note:
            print(f"note: {note}")
        name = level_name(meta) or "level"
        print(f"{name} {_fmt(level)} -> alpha {_fmt(alpha)} (calibrated; the model spans {ends})")
        return _Plan("level", alpha=alpha, label=f"{name} {_fmt(level)} -> alpha {_fmt(alpha)}")
    if args.auto:
        task = meta.get("task")
        estimates = {"denoise": "sigma", "dejpeg": "quality"}
        if task not in estimates:
            raise UsageError(
                f"--auto can estimate the level for denoise and dejpeg models; this model's task is {task!r}; "
                "give --level or --alpha"
            )
        level_to_alpha(meta, 0.0)  # refuses a model without calibration, before any image is read
        name = level_name(meta)
        if name is not None and name != estimates[task]:
            raise UsageError(f"--auto estimates {estimates[task]}, but the model's calibration is in {name}")
        return _Plan("auto", estimate=estimates[task])
    mask_path = Path(args.alpha_map)
    if not mask_path.exists():
        raise FileNotFoundError(f"alpha map not found: {mask_path}")
    return _Plan("map", mask=_load_mask(mask_path), mask_name=mask_path.name)


def _load_model(name_or_path: str, device: torch.device) -> Any:
    from ..io import load
    from ..methods import TunableModel
    from ..models import resolve

    path = resolve(name_or_path)
    try:
        model = load(path)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # safetensors' own errors for a file that is not a model
        raise UsageError(f"cannot read model {path}: it is not a safetensors model file ({_one_line(err)})") from None
    if not isinstance(model, TunableModel):
        raise UsageError(f"{path} is a plain network with no alpha to set; ftn run needs a tunable model")
    return model.to(device).eval()


def run_command(args: argparse.Namespace) -> int:
    """Run ``ftn run`` for parsed ``args``; returns the exit status (0, 1: some files failed, 2: refused)."""
    try:
        return _run(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        _error(err)
        return 2
    except Exception as err:  # noqa: BLE001  (one line, never a traceback, for anything else)
        _error(f"{type(err).__name__}: {_one_line(err)}")
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..data.images import IMAGE_EXTENSIONS, list_images
    from .apply import describe_levels

    chosen = [
        name for name, given in (
            ("--alpha", args.alpha is not None), ("--level", args.level is not None),
            ("--auto", bool(args.auto)), ("--alpha-map", args.alpha_map is not None),
        ) if given
    ]
    if len(chosen) != 1:
        which = "none was given" if not chosen else f"got {' and '.join(chosen)}"
        raise UsageError(f"choose the level with exactly one of --alpha, --level, --auto, --alpha-map ({which})")
    for option, value in (("-i/--input", args.input), ("-o/--output", args.output), ("--model", args.model)):
        if not value:
            raise UsageError(f"{option} is required")
    quality = _number(args.quality, "--quality")
    if not (quality.is_integer() and 1 <= quality <= 100):
        raise UsageError(f"--quality must be a whole number in [1, 100], got {args.quality!r}")
    if args.alpha is not None:  # refuse a bad alpha before the model is read
        _check_alpha(_number(args.alpha, "--alpha"), args.allow_extrapolation)

    src = Path(args.input)
    out = Path(args.output)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    if src.is_dir():
        files = list_images(src)
        if out.exists() and not out.is_dir():
            raise UsageError(f"input {src} is a folder, so the output must be a folder; {out} is a file")
        if out.exists() and out.resolve() == src.resolve():
            raise UsageError("the output folder is the input folder; the outputs would overwrite the inputs")
        jobs = [(f, out / f.name) for f in files]
    else:
        dst = out / src.name if out.is_dir() else out
        if dst.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UsageError(
                f"cannot tell the output format of {dst} (use a suffix among {', '.join(IMAGE_EXTENSIONS)}; "
                "a folder output must exist)"
            )
        if not dst.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {dst.parent}")
        if dst.exists() and dst.resolve() == src.resolve():
            raise UsageError(f"the output {dst} is the input; choose another output file")
        jobs = [(src, dst)]

    device = _device(args.device)
    model = _load_model(args.model, device)
    print(f"model {args.model}: task {model.metadata.get('task', '?')}, method {model.method}, {describe_levels(model.metadata)}")
    plan = _plan(args, model)
    options = dict(allow_extrapolation=args.allow_extrapolation, quality=int(quality))

    if not src.is_dir():
        print(process_image(model, src, jobs[0][1], plan, **options))
        return 0

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tqdm(jobs, desc=PROG, unit="image", file=sys.stderr, disable=None) as bar:
        log = lambda line: bar.write(line, file=sys.stdout)  # noqa: E731
        for path, target in bar:
            try:
                log(process_image(model, path, target, plan, log=log, **options))
            except Exception as err:  # noqa: BLE001  (report, and go on with the others)
                failed += 1
                message = _one_line(err)
                where = "" if str(path) in message else f"{path}: "
                bar.write(f"{PROG}: error: {where}{message}", file=sys.stderr)
    if failed:
        _error(f"{failed} of {len(jobs)} images failed; the others were written to {out}")
        return 1
    print(f"{len(jobs)} images written to {out}")
    return 0
