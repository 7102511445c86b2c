"""``ftn run``: apply a tunable model to an image or a folder of images at a chosen level.

    ftn run -i photo.png -o out.png --model denoise --level 50      # sigma 50, via the calibration
    ftn run -i photo.png -o out.png --model denoise --alpha 0.3
    ftn run -i photo.png -o out.png --model denoise --auto          # sigma estimated from the image
    ftn run -i photo.png -o out.png --model denoise --auto-map      # ... region by region: a per-pixel alpha
    ftn run -i scans/ -o clean/ --model dejpeg.safetensors --auto   # quality read from each JPEG
    ftn run -i photo.png -o out.png --model denoise --alpha-map mask.png   # per pixel: 0 = level 1
    ftn run -i big/ -o out/ --model sr-pd-x4 --alpha 0.5 --resume  # skip outputs already written

Models with several axes or anchors (:class:`ftn.methods.axes.AxesModel` files) take a value per
axis, in the vocabulary of :mod:`ftn.levels` (the options combine, each axis set once; axes not set
stay at alpha 0, their first anchor)::

    ftn run -i photo.jpg -o out.png --model restore.safetensors --level sigma=12,quality=70
    ftn run -i photo.jpg -o out.png --model restore.safetensors --alpha 0.3,0.8     # the model's axis order
    ftn run -i photo.jpg -o out.png --model restore.safetensors --alpha-map sigma=mask.png --level quality=70
    ftn run -i photo.jpg -o out.png --model restore.safetensors --auto              # sigma and quality estimated
    ftn run -i photo.jpg -o out.png --model restore.safetensors --auto-map          # ... sigma as a per-pixel map

Large images run in overlapping tiles sized from free memory (``--tile``). A folder run writes a
report (per file: level, alpha, time, sizes, and what made the output: the model and its sha256, the
setting, ftn's version, the input's and the output's sha256) to ``OUT/ftn-report.json`` (or ``--report``
.json/.csv), rewritten after every image. ``--resume`` after an interruption skips an output only when
its record shows it complete and made as this run would make it; others are redone, and the reasons
counted (:mod:`ftn.infer.report`).

A video (by its suffix: .mp4, .mkv, .mov, .webm, ...) runs frame by frame through
:mod:`ftn.infer.video` (PyAV: ``pip install "ftn[video]"``), its timestamps and audio kept::

    ftn run -i clip.mp4 -o clean.mp4 --model denoise --level 30
    ftn run -i clip.mp4 -o clean.mp4 --model denoise --alpha "0s:0.2,4s:0.8"    # keyframes: linear between
    ftn run -i clip.mp4 -o clean.mp4 --model denoise --alpha-map mask.mp4      # frame k of the mask -> frame k
    ftn run -i clip.mp4 -o clean.mp4 --model denoise --level 30 --resume       # keep finished segments

Bad input is refused with a one-line error on stderr and exit status 2, and never leaves an output
file behind (outputs are written atomically, only after the image was processed). In a folder, a
file that fails is reported and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

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
            "(e.g. sigma 20 ... sigma 80; `ftn info MODEL` shows them). A model with several axes takes a value "
            "per axis (--level sigma=12,quality=70, --alpha 0.3,0.8 in the model's axis order, --alpha-map "
            "sigma=map.png); these options and --auto combine, each axis set once, axes not set stay at alpha 0. "
            "A video input (.mp4, .mkv, .mov, .webm, ...) is processed frame by frame, its audio and frame rate "
            "kept; its alpha may change over time (--alpha 0s:0.2,4s:0.8) or come from a mask video."
        ),
    )
    # Required options are checked by run_command, so that every refusal is one line on stderr.
    p.add_argument("-i", "--input", metavar="IN", help="an image or video file, or a folder of images (required)")
    p.add_argument(
        "-o", "--output", metavar="OUT",
        help="the output file; for a folder IN, a folder (created if missing; outputs keep their names) (required)",
    )
    p.add_argument("-m", "--model", metavar="NAME_OR_PATH", help="a shipped model's name or a .safetensors file (required)")
    p.add_argument("--alpha", metavar="A", help="alpha in [0, 1]: 0 = the model's first level, 1 = its second; "
                   "several axes: 0.3,0.8 (the model's axis order) or sigma=1.5 (axis d in [0, K_d]); videos: "
                   "keyframes 0s:0.2,4s:0.8 (linear between, held outside; several axes: sigma=0s:0.5;4s:1.5)")
    p.add_argument("--level", metavar="L", help="a real level (e.g. sigma 50 or JPEG quality 30), through the model's "
                   "calibration; several axes: sigma=12,quality=70")
    p.add_argument(
        "--auto", action="store_true",
        help="estimate the level from each input: noise sigma from the image (denoise), quality from the JPEG file "
             "(dejpeg); several axes: every sigma and quality axis not set otherwise",
    )
    p.add_argument(
        "--auto-map", action="store_true",
        help="--auto, with the noise estimated region by region: a per-pixel alpha map (denoise models, and the "
             "sigma axis of a multi-axis model), for photos whose noise differs across the frame",
    )
    p.add_argument(
        "--alpha-map", metavar="MASK",
        help="per-pixel alpha from a grey image: black = the first level, white = the second (resized to fit); "
             "several axes: sigma=mask.png (white = the axis's last anchor); videos: a grey image, or a mask video "
             "(its frame k sets frame k)",
    )
    p.add_argument("--allow-extrapolation", action="store_true", help="accept --alpha outside [0, 1] (levels never trained)")
    p.add_argument("--quality", metavar="Q", default="95", help="JPEG / WebP output quality, 1-100 (default 95)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: cuda when available)")
    p.add_argument(
        "--tile", default="auto", metavar="N",
        help="tile side in input pixels for large images; auto (default) sizes tiles from free memory; 0 = never tile",
    )
    p.add_argument("--tile-overlap", default="64", metavar="N", help="input pixels shared by neighbouring tiles (default 64)")
    p.add_argument(
        "--report", metavar="FILE",
        help="folder runs: where the per-file report goes, .json or .csv (default OUT/ftn-report.json)",
    )
    p.add_argument(
        "--resume", action="store_true",
        help="folder runs: skip outputs the report shows complete and made with the same model, setting and ftn "
             "version; redo the others (outputs with no record in the report are redone); videos: keep the "
             "finished segments of an interrupted run of the same model, setting, input and encoding",
    )
    p.add_argument("--codec", metavar="NAME", default=None,  # checked by process_video: one line
                   help="videos: h264 (default; vp9 for .webm), vp9, or lossless ffv1 (.mkv) / png (.mov)")
    p.add_argument("--crf", metavar="N", default=None, help="videos: h264 / vp9 quality, 0-51, lower is better (default 18)")
    p.add_argument("--segment-seconds", metavar="S", default=None,
                   help="videos: the length of the segments --resume keeps (default 10)")
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
    level: float | None = None  # for "level": the level asked for
    label: str = ""
    mask: Tensor | None = None  # (1, 1, h, w) in [0, 1]
    mask_name: str = ""
    mask_sha256: str = ""  # the map file's, for --resume's record
    estimate: str = ""  # for auto: "sigma" or "quality"


@dataclass
class Processed:
    """What ``ftn run`` did with one image (a row of the folder report)."""

    input: str
    output: str
    label: str  # how the alpha was chosen, in words
    alpha: float | None  # None for a per-pixel map (see alpha_mean)
    alpha_mean: float
    level: float | None  # the level served, where the model's metadata can tell
    level_name: str | None
    seconds: float
    width: int
    height: int
    output_width: int
    output_height: int
    tiles: int
    status: str = "done"
    notes: str = ""
    setting: str = ""  # several axes: alpha per axis, e.g. "sigma=0.47,quality=map 0.1..0.9"
    # what made the output (folder runs; --resume compares them, see ftn.infer.report)
    model: str = ""  # as named on the command line
    model_sha256: str = ""
    options: str = ""  # the setting that decides the pixels, as canonical JSON
    ftn_version: str = ""
    input_sha256: str = ""
    output_bytes: int | None = None
    output_sha256: str = ""

    @property
    def line(self) -> str:
        extra = f" ({self.notes})" if self.notes else ""
        return f"{Path(self.input).name} -> {self.output}: {self.label}, {self.seconds:.2f} s{extra}"


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


@dataclass
class _AxesPlan:
    """How a multi-axis model is set for each image: per axis a number, a map, an estimate or 0."""

    values: dict[str, Any]  # axis -> ftn.levels.AxisValue (from --alpha / --level / --alpha-map)
    masks: dict[str, Tensor]  # axis -> (1, 1, h, w) grey map in [0, 1], for the "map" axes
    auto: dict[str, str]  # axis -> "sigma", "sigma-map" or "quality": what --auto estimates


# -- one image --------------------------------------------------------------------------------------


def process_image(
    model: Any,
    src: Path,
    dst: Path,
    plan: _Plan | _AxesPlan,
    *,
    allow_extrapolation: bool = False,
    quality: int = 95,
    tile: int | str | None = "auto",
    overlap: int = 64,
    log: Callable[[str], None] = print,
) -> Processed:
    """Load ``src``, run the model at the plan's alpha, write ``dst``; returns what was done."""
    from ..data.images import load_image
    from ..levels import Levels, alpha_to_level, level_name, level_to_alpha
    from .estimate import estimate_jpeg_quality, estimate_noise_sigma

    start = time.perf_counter()
    meta = model.metadata
    if isinstance(plan, _AxesPlan):
        return _process_axes(model, src, dst, plan, quality=quality, tile=tile, overlap=overlap, log=log, start=start)
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
    level: float | None = None
    if plan.kind in ("alpha", "level"):
        alpha, label = float(plan.alpha), plan.label
        level = plan.level if plan.kind == "level" else alpha_to_level(meta, alpha)
    elif plan.kind == "auto" and plan.estimate == "sigma-map":
        alpha, label = _noise_map_alpha(Levels.from_metadata(meta).axis(), image, src, log)
    elif plan.kind == "auto":
        if plan.estimate == "sigma":
            measured = estimate_noise_sigma(image, jpeg_file=src)
            what = f"estimated noise sigma {measured:.1f}"
        else:
            measured = q
            what = f"JPEG quality {measured:.0f} (from the file's quantisation tables)"
        alpha, note = level_to_alpha(meta, measured)
        level = float(measured)
        if note:
            log(f"{src.name}: {note}")
        label = f"{what} -> alpha {_fmt(alpha)}"
    else:
        alpha = _fit_mask(plan.mask, tuple(image.shape[-2:]), log, plan.mask_name)
        low, high = float(alpha.min()), float(alpha.max())
        label = f"alpha map {plan.mask_name}, alpha {_fmt(low)} ... {_fmt(high)}, mean {_fmt(float(alpha.mean()))}"

    out, tiles, notes = _apply_and_save(model, loaded, image, alpha, src, dst, allow_extrapolation=allow_extrapolation,
                                        quality=quality, tile=tile, overlap=overlap, log=log)
    is_map = isinstance(alpha, Tensor)
    return Processed(
        input=str(src), output=str(dst), label=label, alpha=None if is_map else float(alpha),
        alpha_mean=float(alpha.mean()) if is_map else float(alpha), level=level,
        level_name=level_name(meta) if level is not None else None, seconds=round(time.perf_counter() - start, 4),
        width=int(image.shape[-1]), height=int(image.shape[-2]), output_width=int(out.shape[-1]),
        output_height=int(out.shape[-2]), tiles=tiles, notes="; ".join(notes),
    )


def _apply_and_save(
    model: Any, loaded: Any, image: Tensor, alpha: Any, src: Path, dst: Path, *, allow_extrapolation: bool,
    quality: int, tile: int | str | None, overlap: int, log: Callable[[str], None],
) -> tuple[Tensor, int, list[str]]:
    """Run the model (tiles with a progress bar), write ``dst``; returns the output, the tile count, notes."""
    from ..data.images import save_image
    from .apply import apply_model

    suffix = dst.suffix.lower()
    bit_depth = 16 if loaded.bit_depth == 16 and suffix in _SIXTEEN_BIT_SUFFIXES else 8
    tiles = [1]
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        tiles[0] = total
        if bar is None and total > 1:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"{src.name} tiles", unit="tile", file=sys.stderr, disable=None, leave=False)
        if bar is not None:
            bar.update(done - bar.n)

    try:
        out = apply_model(model, image, alpha=alpha, allow_extrapolation=allow_extrapolation, tile=tile,
                          overlap=overlap, progress=progress, log=log)
    finally:
        if bar is not None:
            bar.close()

    notes = []
    if loaded.bit_depth == 16 and bit_depth == 8:
        notes.append(f"16-bit input written as 8-bit ({suffix} holds 8 bits per channel)")
    if loaded.alpha is not None and suffix not in _ALPHA_SUFFIXES:
        notes.append(f"transparency dropped ({suffix} cannot store it)")
    save_image(dst, out, alpha=loaded.alpha, bit_depth=bit_depth, quality=quality)
    if tiles[0] > 1:
        notes.append(f"{tiles[0]} tiles")
    return out, tiles[0], notes


def _noise_map_alpha(axis: Any, image: Tensor, src: Path, log: Callable[[str], None]) -> tuple[Tensor, str]:
    """The noise estimated region by region, as a (1, 1, H, W) alpha map for ``axis``, and it in words."""
    from ..levels import axis_alpha
    from .estimate import estimate_noise_map

    sigmas = estimate_noise_map(image, jpeg_file=src)
    alphas, note = axis_alpha(axis, sigmas.double().numpy())
    if note:
        log(f"{src.name}: {note}")
    amap = torch.from_numpy(alphas).float()[None, None]
    return amap, (f"noise map sigma {float(sigmas.min()):.1f} ... {float(sigmas.max()):.1f} -> alpha "
                  f"{_fmt(float(amap.min()))} ... {_fmt(float(amap.max()))}")


def _process_axes(
    model: Any, src: Path, dst: Path, plan: _AxesPlan, *, quality: int, tile: int | str | None, overlap: int,
    log: Callable[[str], None], start: float,
) -> Processed:
    """:func:`process_image` for a multi-axis model: per axis a number, a map or an estimate."""
    from ..data.images import load_image
    from ..levels import axis_alpha
    from .estimate import estimate_jpeg_quality, estimate_noise_sigma

    levels = model.levels
    # JPEG tables are read before anything is decoded
    q = estimate_jpeg_quality(src) if "quality" in plan.auto.values() else None
    loaded = load_image(src)
    image = loaded.image
    size = tuple(image.shape[-2:])
    if loaded.alpha is not None and loaded.bit_depth == 16 and image.shape[0] == 1 and dst.suffix.lower() != ".png":
        raise UsageError(f"{dst}: 16-bit grey + transparency can be written as .png only")
    setting: dict[str, float | Tensor] = {}
    words: list[str] = []
    for spec in model.axes:
        name, value = spec.name, plan.values[spec.name]
        how = plan.auto.get(name)
        if value.source == "map":
            amap = _fit_mask(plan.masks[name], size, log, Path(value.path).name) * spec.segments
            setting[name] = amap
            words.append(f"{name} alpha map {Path(value.path).name} ({_fmt(float(amap.min()))} ... {_fmt(float(amap.max()))})")
        elif how == "sigma":
            measured = estimate_noise_sigma(image, jpeg_file=src)
            a, note = axis_alpha(levels.axis(name), measured, clamp=True)
            setting[name] = float(a)
            words.append(f"{name}: estimated noise sigma {measured:.1f} -> alpha {_fmt(float(a))}")
            if note:
                log(f"{src.name}: {note}")
        elif how == "sigma-map":
            setting[name], label = _noise_map_alpha(levels.axis(name), image, src, log)
            words.append(f"{name}: {label}")
        elif how == "quality" and q is not None:
            a, note = axis_alpha(levels.axis(name), q, clamp=True)
            setting[name] = float(a)
            words.append(f"{name}: JPEG quality {q:.0f} (from the file's tables) -> alpha {_fmt(float(a))}")
            if note:
                log(f"{src.name}: {note}")
        elif how == "quality":
            setting[name] = 0.0
            words.append(f"{name}: not a JPEG file, not estimated -> alpha 0")
        else:
            setting[name] = float(value.alpha)
            words.append(value.words)
    out, tiles, notes = _apply_and_save(model, loaded, image, setting, src, dst, allow_extrapolation=False,
                                        quality=quality, tile=tile, overlap=overlap, log=log)
    compact = ",".join(f"{k}={_fmt(v)}" if isinstance(v, float) else f"{k}=map {_fmt(float(v.min()))}..{_fmt(float(v.max()))}"
                       for k, v in setting.items())
    means = [float(v.mean()) if isinstance(v, Tensor) else v for v in setting.values()]
    return Processed(
        input=str(src), output=str(dst), label="; ".join(words), alpha=None,
        alpha_mean=sum(means) / len(means),  # over the axes (and pixels); the setting says each
        level=None, level_name=None, seconds=round(time.perf_counter() - start, 4),
        width=int(image.shape[-1]), height=int(image.shape[-2]), output_width=int(out.shape[-1]),
        output_height=int(out.shape[-2]), tiles=tiles, notes="; ".join(notes), setting=compact,
    )


# -- the command ------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace, model: Any) -> _Plan:
    from ..levels import alpha_to_level, describe_levels, level_name, level_to_alpha

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
        return _Plan("level", alpha=alpha, level=level, label=f"{name} {_fmt(level)} -> alpha {_fmt(alpha)}")
    if args.auto or args.auto_map:
        task = meta.get("task")
        estimates = {"denoise": "sigma", "dejpeg": "quality"}
        if task not in estimates:
            raise UsageError(
                f"--auto can estimate the level for denoise and dejpeg models; this model's task is {task!r}; "
                "give --level or --alpha"
            )
        if args.auto_map and (task != "denoise" or not model.capabilities.per_pixel):
            raise UsageError("--auto-map estimates the noise per pixel: it needs a denoise model with per-pixel "
                             f"control (this one: task {task!r}, method {model.method}); use --auto")
        level_to_alpha(meta, 0.0)  # refuses a model without calibration, before any image is read
        name = level_name(meta)
        if name is not None and name != estimates[task]:
            raise UsageError(f"--auto estimates {estimates[task]}, but the model's calibration is in {name}")
        return _Plan("auto", estimate="sigma-map" if args.auto_map else estimates[task])
    mask_path = Path(args.alpha_map)
    if not mask_path.exists():
        raise FileNotFoundError(f"alpha map not found: {mask_path}")
    from .report import sha256_file

    return _Plan("map", mask=_load_mask(mask_path), mask_name=mask_path.name, mask_sha256=sha256_file(mask_path))


def _axes_plan(args: argparse.Namespace, model: Any) -> _AxesPlan:
    """The per-axis plan of a multi-axis model (the vocabulary of :func:`ftn.levels.parse_setting`)."""
    from ..levels import parse_setting

    if args.allow_extrapolation:
        raise UsageError("multi-axis models run inside their anchors (each axis in [0, K]); drop --allow-extrapolation")
    levels = model.levels
    values = parse_setting([(a.name, a.segments) for a in model.axes], levels,
                           alpha=args.alpha, level=args.level, alpha_map=args.alpha_map)
    masks = {}
    for name, value in values.items():
        if value.source == "map":
            path = Path(value.path)
            if not path.exists():
                raise FileNotFoundError(f"alpha map not found: {path}")
            masks[name] = _load_mask(path)
        if value.note:
            print(f"note: {value.note}")
    auto: dict[str, str] = {}
    if args.auto or args.auto_map:
        unset = [name for name, value in values.items() if value.source == "unset"]
        can = {"sigma": "sigma-map" if args.auto_map else "sigma", "quality": "quality"}
        auto = {name: can[name] for name in unset if name in can}
        if not auto:
            raise UsageError(
                f"--auto estimates the axes sigma (noise) and quality (JPEG tables); this model's axes left to it "
                f"are {', '.join(unset) or 'none'}; give them with --level or --alpha"
            )
        if levels is None:
            raise UsageError("--auto needs the model's anchor levels, and its axes do not name them; give --alpha")
        if args.auto_map and "sigma-map" not in auto.values():
            raise UsageError("--auto-map estimates the sigma axis per pixel, and this model has no sigma axis left to estimate")
    fixed = [v.words for v in values.values() if v.source != "unset" or v.axis not in auto]
    estimated = [f"{name} estimated per {'pixel' if how == 'sigma-map' else 'image'}" for name, how in auto.items()]
    print("setting: " + "; ".join(fixed + estimated))
    return _AxesPlan(values, masks, auto)


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

    chosen = [
        name for name, given in (
            ("--alpha", args.alpha is not None), ("--level", args.level is not None),
            ("--auto", bool(args.auto)), ("--auto-map", bool(getattr(args, "auto_map", False))),
            ("--alpha-map", args.alpha_map is not None),
        ) if given
    ]
    args.auto_map = bool(getattr(args, "auto_map", False))
    if not chosen:  # several (each axis once) are for multi-axis models: checked once the model is read
        raise UsageError("choose the level with exactly one of --alpha, --level, --auto, --alpha-map (none was given)")
    for option, value in (("-i/--input", args.input), ("-o/--output", args.output), ("--model", args.model)):
        if not value:
            raise UsageError(f"{option} is required")
    quality = _number(args.quality, "--quality")
    if not (quality.is_integer() and 1 <= quality <= 100):
        raise UsageError(f"--quality must be a whole number in [1, 100], got {args.quality!r}")
    tile = _tile_option(args.tile)
    overlap = _number(args.tile_overlap, "--tile-overlap")
    if not (overlap.is_integer() and overlap >= 0):
        raise UsageError(f"--tile-overlap must be a whole number >= 0, got {args.tile_overlap!r}")
    if isinstance(tile, int) and tile and tile <= overlap:
        raise UsageError(f"--tile {tile} must be larger than --tile-overlap {int(overlap)}")
    if args.report and Path(args.report).suffix.lower() not in (".json", ".csv"):
        raise UsageError(f"--report must end in .json or .csv, got {args.report!r}")

    src = Path(args.input)
    out = Path(args.output)
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    from .video import is_video

    if src.is_file() and is_video(src):
        return _run_video(args, src, out, tile, int(overlap))
    for option in ("codec", "crf", "segment_seconds"):
        if getattr(args, option, None) is not None:
            raise UsageError(f"--{option.replace('_', '-')} is for video inputs; {src.name} is not one")
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
    from ..api import load_model

    model = load_model(args.model, device)
    from ..methods.axes import AxesModel

    plan: _Plan | _AxesPlan
    print(_model_line(args.model, model))
    if isinstance(model, AxesModel):
        plan = _axes_plan(args, model)
    else:
        if len(chosen) != 1:
            which = f"got {' and '.join(chosen)}"
            raise UsageError(f"choose the level with exactly one of --alpha, --level, --auto, --alpha-map ({which})")
        plan = _plan(args, model)
    options = dict(allow_extrapolation=args.allow_extrapolation, quality=int(quality), tile=tile, overlap=int(overlap))

    if not src.is_dir():
        print(process_image(model, src, jobs[0][1], plan, **options).line)
        return 0

    return _run_folder(args, model, plan, jobs, out, options)


def _model_line(name: str, model: Any) -> str:
    """The model in one line: task, method and what its alpha spans."""
    from ..levels import describe_levels
    from ..methods.axes import AxesModel

    head = f"model {name}: task {model.metadata.get('task', '?')}, method {model.method}"
    if not isinstance(model, AxesModel):
        return f"{head}, {describe_levels(model.metadata)}"
    axes = ", ".join(f"{a.name} ({a.anchors} anchors)" for a in model.axes)
    spans = model.levels.describe() if model.levels is not None else "anchor levels not named"
    return f"{head}, axes {axes}: {spans}"


def _run_video(args: argparse.Namespace, src: Path, out: Path, tile: int | str | None, overlap: int) -> int:
    """``ftn run`` on a video file (:mod:`ftn.infer.video`): alpha constant, keyframed, or from a mask."""
    from .video import build_schedule, process_video, work_folder

    if args.auto or args.auto_map:
        raise UsageError("--auto estimates the level of each image; for a video give --level, --alpha (keyframes: "
                         "--alpha 0s:0.2,4s:0.8) or --alpha-map")
    crf = 18 if args.crf is None else _number(args.crf, "--crf")
    if not (float(crf).is_integer() and 0 <= crf <= 51):
        raise UsageError(f"--crf must be a whole number in [0, 51], got {args.crf!r}")
    seconds = 10.0 if args.segment_seconds is None else _number(args.segment_seconds, "--segment-seconds")
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--segment-seconds must be a number > 0, got {args.segment_seconds!r}")
    dst = out / src.name if out.is_dir() else out
    from ..api import load_model

    model = load_model(args.model, _device(args.device))
    print(_model_line(args.model, model))
    schedule = build_schedule(model, alpha=args.alpha, level=args.level, alpha_map=args.alpha_map,
                              allow_extrapolation=args.allow_extrapolation)
    print(f"setting: {schedule.words}")
    try:
        result = process_video(model, src, dst, schedule, codec=args.codec, crf=int(crf), segment_seconds=seconds,
                               resume=args.resume, tile=tile, overlap=overlap)
    except KeyboardInterrupt:
        _error(f"interrupted; the finished segments are kept in {work_folder(dst)}: the same command with --resume "
               "continues")
        return 130
    print(result.line)
    return 0


def _run_folder(
    args: argparse.Namespace, model: Any, plan: _Plan | _AxesPlan, jobs: list[tuple[Path, Path]], out: Path,
    options: dict[str, Any],
) -> int:
    """A folder run: each image in turn, the report rewritten after each; ``--resume`` skips what is done."""
    from tqdm import tqdm

    from .. import __version__
    from ..models import resolve
    from .report import options_text, read_report, resume_reason, resume_summary, sha256_file, write_report

    report_path = Path(args.report) if args.report else out / "ftn-report.json"
    rows: dict[str, dict[str, Any]] = {}
    if args.resume and report_path.is_file():  # read (or refused) before anything is written
        rows = {str(row["input"]): row for row in read_report(report_path)}
    elif args.resume and report_path.exists():
        raise UsageError(f"the report {report_path} is not a file; give --report another path or move it away")
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": str(args.model), "model_sha256": sha256_file(resolve(args.model)), "ftn_version": __version__}
    setting = _pixel_setting(plan, options["tile"], options["overlap"])
    per_output = {str(t): options_text(setting, t, options["quality"]) for _, t in jobs}
    todo = jobs
    if args.resume:
        if not report_path.is_file() and any(t.exists() for _, t in jobs):
            print(f"--resume: no report at {report_path}; outputs already there have no record and are redone")
        reasons = [resume_reason(rows.get(str(f)), f, t, {**record, "options": per_output[str(t)]}) for f, t in jobs]
        todo = [job for job, reason in zip(jobs, reasons, strict=True) if reason is not None]
        _remove_stale_temporaries([t for _, t in todo])
        print(resume_summary(reasons))
    failed = 0
    with tqdm(todo, desc=PROG, unit="image", file=sys.stderr, disable=None) as bar:
        log = lambda line: bar.write(line, file=sys.stdout)  # noqa: E731
        for path, target in bar:
            try:
                done = process_image(model, path, target, plan, log=log, **options)
                log(done.line)
                # the record --resume compares: hashed after the (atomic) write, so it is the file as written
                rows[str(path)] = asdict(done) | record | {
                    "options": per_output[str(target)], "input_sha256": sha256_file(path),
                    "output_bytes": target.stat().st_size, "output_sha256": sha256_file(target),
                }
            except Exception as err:  # noqa: BLE001  (report, and go on with the others)
                failed += 1
                message = _one_line(err)
                where = "" if str(path) in message else f"{path}: "
                bar.write(f"{PROG}: error: {where}{message}", file=sys.stderr)
                rows[str(path)] = {"input": str(path), "output": str(target), "status": "failed", "notes": message,
                                   "model": record["model"], "model_sha256": record["model_sha256"],
                                   "ftn_version": __version__}
            write_report(report_path, [rows[str(f)] for f, _ in jobs if str(f) in rows], _REPORT_COLUMNS)
    print(f"report: {report_path}")
    if failed:
        _error(f"{failed} of {len(jobs)} images failed; the others were written to {out}")
        return 1
    print(f"{len(jobs)} images written to {out}")
    return 0


def _tile_option(text: str) -> int | str | None:
    if str(text).lower() == "auto":
        return "auto"
    value = _number(text, "--tile")
    if not (value.is_integer() and value >= 0):
        raise UsageError(f"--tile must be auto or a whole number >= 0 (0 = never tile), got {text!r}")
    if 0 < value < 32:
        raise UsageError(f"--tile {int(value)} is too small; use at least 32 pixels (or 0 = never tile)")
    return int(value) or None


_REPORT_COLUMNS = [f.name for f in fields(Processed)]


def _pixel_setting(plan: _Plan | _AxesPlan, tile: int | str | None, overlap: int) -> dict[str, Any]:
    """What decides the outputs' pixels besides the model, the input and the format (for ``--resume``).

    The alpha itself rather than the words that chose it (``--level 50`` and the ``--alpha`` it maps to
    give the same image); an alpha map by its file's sha256. The device is left out: the same model and
    setting give the same image on any device, up to float rounding.
    """
    from .report import sha256_file

    if isinstance(plan, _AxesPlan):
        axes: dict[str, Any] = {}
        for name, value in plan.values.items():
            if value.source == "map":
                axes[name] = {"alpha_map_sha256": sha256_file(value.path)}
            elif value.source == "unset":
                axes[name] = {"auto": plan.auto[name]} if name in plan.auto else {"alpha": 0.0}
            else:
                axes[name] = {"alpha": float(value.alpha)}
        level: dict[str, Any] = {"axes": axes}
    elif plan.kind in ("alpha", "level"):
        level = {"alpha": float(plan.alpha)}
    elif plan.kind == "auto":
        level = {"auto": plan.estimate}
    else:
        level = {"alpha_map_sha256": plan.mask_sha256}
    return level | {"tile": tile if tile is not None else 0, "tile_overlap": int(overlap)}


def _remove_stale_temporaries(targets: list[Path]) -> None:
    """Remove what an interrupted write of these outputs left (``.NAME.<12 hex>.tmp``, never complete)."""
    for target in targets:
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.{'[0-9a-f]' * 12}.tmp"):
            tmp.unlink(missing_ok=True)
