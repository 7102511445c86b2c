"""One line from an image to a restored image: :func:`restore` (``ftn.restore``).

For people who have an image, not a tensor. The image comes back in the type it was given: a file path
gives a ``PIL.Image`` (8 bits per channel), a ``PIL.Image`` a ``PIL.Image``, a numpy array an array of
the same layout and dtype (uint8 / uint16 ``H x W`` or ``H x W x C``, or float in [0, 1]). The level
vocabulary is ``ftn run``'s (:mod:`ftn.levels`)::

    ftn.restore("photo.png", model="denoise", level=35)             # sigma 35, through the calibration
    ftn.restore(array, model="denoise", alpha=1.4)                  # anchors: 0 = sigma 20, 1 = 50, 2 = 80
    ftn.restore("scan.jpg", model="dejpeg", auto=True)              # quality from the JPEG's tables
    ftn.restore(photo, model="denoise", auto="map")                 # noise estimated region by region
    ftn.restore(photo, model="restore.safetensors", level="sigma=12,quality=70")   # several axes
    ftn.restore(photo, model="restore.safetensors", alpha="0.3,0.8")               # the model's axis order

A runnable example (a random image stands in for a photo):

>>> import numpy as np
>>> import ftn
>>> noisy = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
>>> clean = ftn.restore(noisy, model="denoise", level=35)
>>> clean.shape, clean.dtype
((48, 64, 3), dtype('uint8'))
>>> ftn.restore(noisy / 255.0, model="denoise", alpha=0.4).dtype
dtype('float64')

Models are loaded once and kept (the last few, by file and device). Refusals are one-line
``ValueError``\\ s (``FileNotFoundError`` for a missing file). :func:`load_model`,
:func:`choose_setting` and :func:`choose_device` are the pieces ``ftn run`` can share.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["choose_device", "choose_setting", "load_model", "restore"]

_CACHE: OrderedDict[tuple[str, int, int, str], Any] = OrderedDict()
_CACHE_SIZE = 3
# Tasks whose level ``auto`` can estimate, and what it estimates (as ``ftn run --auto``).
_ESTIMATES = {"denoise": "sigma", "dejpeg": "quality"}


def choose_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU (as ``ftn run --device auto``)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is available")
    return chosen


def load_model(model: str | os.PathLike[str], device: str | torch.device | None = "cpu") -> Any:
    """The tunable model of a file or shipped name, in eval mode on ``device``: a
    :class:`~ftn.TunableModel`, or an :class:`~ftn.AxesModel` for a multi-axis file (as ``ftn run`` loads it).

    Raises:
        FileNotFoundError: neither a file nor a shipped name.
        ValueError: not a model file (one line).
    """
    from .io import load_tunable
    from .models import resolve

    return load_tunable(resolve(model)).to(choose_device(device)).eval()


def _cached_model(model: Any, device: torch.device) -> Any:
    from .methods import AxesModel, TunableModel

    if isinstance(model, (TunableModel, AxesModel)):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a shipped name, a model file or a loaded tunable model, got {type(model).__name__}")
    from .models import resolve

    path = resolve(model)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    loaded = load_model(path, device)
    _CACHE[key] = loaded
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return loaded


# -- the level vocabulary --------------------------------------------------------------------------


def _text(value: Any, what: str) -> str | None:
    """A level or alpha as ``ftn run`` takes it: a number, a ``"sigma=12,quality=70"`` text, or a
    sequence of numbers (one per axis)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number or a text such as 'sigma=12', got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(repr(float(v)) for v in value)
    raise ValueError(f"{what} must be a number, a text such as 'sigma=12,quality=70' or a list of numbers, got {type(value).__name__}")


def _one_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} needs a number for this one-axis model, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} needs a finite number, got {text!r}")
    return value


def _noise_map_alpha(axis: Any, image: Tensor, jpeg_file: str | os.PathLike[str] | None) -> tuple[Tensor, list[str]]:
    """The noise estimated region by region (from a JPEG file's coefficients), as a (1, 1, H, W) alpha map for ``axis``."""
    from .infer.estimate import estimate_noise_map
    from .levels import axis_alpha

    alphas, note = axis_alpha(axis, estimate_noise_map(image, jpeg_file=jpeg_file).double().numpy())
    return torch.from_numpy(np.asarray(alphas)).float()[None, None], [note] if note else []


def choose_setting(
    model: Any,
    image: Tensor,
    *,
    alpha: Any = None,
    level: Any = None,
    auto: bool | str = False,
    jpeg_file: str | os.PathLike[str] | None = None,
    allow_extrapolation: bool = False,
) -> tuple[Any, list[str]]:
    """The alpha setting ``model`` runs ``image`` at, from ``ftn run``'s vocabulary; and notes (levels clamped).

    Args:
        model: a loaded :class:`~ftn.TunableModel` or :class:`~ftn.AxesModel`.
        image: the (C, H, W) float image, for ``auto`` estimates.
        alpha: one-axis: a number; several axes: ``"0.3,0.8"`` (axis order), ``"sigma=1.5"`` or a list.
        level: one-axis: a number (through the calibration); several axes: ``"sigma=12,quality=70"``.
        auto: ``True`` estimates the noise sigma from the pixels (from a JPEG ``jpeg_file``'s DCT
            coefficients) or the JPEG quality from ``jpeg_file``'s tables; ``"map"`` the noise per pixel
            (a per-pixel alpha map).
        jpeg_file: the file the image was read from, for the JPEG estimates.
        allow_extrapolation: accept one-axis alphas outside [0, 1].

    Returns:
        ``(setting, notes)``: a float or a (1, 1, H, W) map for a one-axis model, ``{axis: float or map}``
        for several axes; ``apply_model`` takes it as it is.

    Raises:
        ValueError: one line, in the words of ``ftn run`` (no level given, an unknown axis, a level
            outside an uncalibrated axis, ``auto`` for a task it cannot estimate, ...).
    """
    from .methods import AxesModel

    if auto not in (False, True, "map"):
        raise ValueError(f"auto must be True, False or 'map', got {auto!r}")
    alpha_text, level_text = _text(alpha, "alpha"), _text(level, "level")
    if isinstance(model, AxesModel):
        return _axes_setting(model, image, alpha_text, level_text, auto, jpeg_file, allow_extrapolation)
    chosen = [n for n, given in (("alpha", alpha_text is not None), ("level", level_text is not None), ("auto", bool(auto)))
              if given]
    if len(chosen) != 1:
        got = " and ".join(chosen) if chosen else "none was given"
        raise ValueError(f"choose the level with exactly one of alpha=, level=, auto= ({got})")
    from .control import check_alpha
    from .levels import Levels, level_to_alpha

    meta = model.metadata
    if alpha_text is not None:
        return float(check_alpha(_one_number(alpha_text, "alpha"), allow_extrapolation=allow_extrapolation)), []
    if level_text is not None:
        value, note = level_to_alpha(meta, _one_number(level_text, "level"))
        return value, [note] if note else []
    task = meta.get("task")
    if task not in _ESTIMATES:
        raise ValueError(f"auto can estimate the level for denoise and dejpeg models; this model's task is {task!r}; "
                         "give level= or alpha=")
    if auto == "map":
        if task != "denoise" or not model.capabilities.per_pixel:
            raise ValueError("auto='map' estimates the noise per pixel: it needs a denoise model with per-pixel control "
                             f"(this one: task {task!r}, method {model.method}); use auto=True")
        return _noise_map_alpha(Levels.from_metadata(meta).axis(), image, jpeg_file)
    measured = _estimate(_ESTIMATES[task], image, jpeg_file)
    value, note = level_to_alpha(meta, measured)
    return value, [note] if note else []


def _estimate(what: str, image: Tensor, jpeg_file: str | os.PathLike[str] | None) -> float:
    """The noise sigma of the pixels, or the quality of the JPEG file's tables."""
    from .infer.estimate import estimate_jpeg_quality, estimate_noise_sigma

    if what == "sigma":
        return estimate_noise_sigma(image, jpeg_file=jpeg_file)
    quality = estimate_jpeg_quality(jpeg_file) if jpeg_file is not None else None
    if quality is None:
        raise ValueError("auto reads the JPEG quality from the file's quantisation tables: give the JPEG file's path "
                         "(or a PIL image opened from it), or give level= or alpha=")
    return quality


def _axes_setting(model: Any, image: Tensor, alpha: str | None, level: str | None, auto: bool | str,
                  jpeg_file: str | os.PathLike[str] | None, allow_extrapolation: bool) -> tuple[dict[str, Any], list[str]]:
    """:func:`choose_setting` for a multi-axis model: per axis a number or an estimate; unset axes 0."""
    from .levels import axis_alpha, parse_setting

    if allow_extrapolation:
        raise ValueError("multi-axis models run inside their anchors (each axis in [0, K]); drop allow_extrapolation")
    if alpha is None and level is None and not auto:
        raise ValueError("choose the setting with alpha=, level= or auto= (several combine, each axis set once)")
    levels = model.levels
    values = parse_setting([(a.name, a.segments) for a in model.axes], levels, alpha=alpha, level=level)
    notes = [v.note for v in values.values() if v.note]
    setting: dict[str, Any] = {name: float(v.alpha or 0.0) for name, v in values.items()}
    if auto:
        unset = [name for name, v in values.items() if v.source == "unset"]
        todo = [name for name in unset if name in ("sigma", "quality")]
        if not todo:
            raise ValueError(f"auto estimates the axes sigma (noise) and quality (JPEG tables); this model's axes left to "
                             f"it are {', '.join(unset) or 'none'}; give them with level= or alpha=")
        if levels is None:
            raise ValueError("auto needs the model's anchor levels, and its axes do not name them; give alpha=")
        if auto == "map" and "sigma" not in todo:
            raise ValueError("auto='map' estimates the sigma axis per pixel, and this model has no sigma axis left to estimate")
        for name in todo:
            if name == "sigma" and auto == "map":
                setting[name], more = _noise_map_alpha(levels.axis(name), image, jpeg_file)
                notes += more
                continue
            if name == "quality" and jpeg_file is None:
                continue  # not a JPEG file: quality stays at alpha 0, as ftn run leaves a PNG's
            measured = _estimate(name, image, jpeg_file) if name == "sigma" else _quality_or_none(jpeg_file)
            if measured is None:
                continue
            value, note = axis_alpha(levels.axis(name), measured, clamp=True)
            setting[name] = float(value)
            notes += [note] if note else []
    return setting, notes


def _quality_or_none(jpeg_file: str | os.PathLike[str] | None) -> float | None:
    from .infer.estimate import estimate_jpeg_quality

    return estimate_jpeg_quality(jpeg_file) if jpeg_file is not None else None


# -- images in and out -----------------------------------------------------------------------------


def _from_array(array: np.ndarray) -> tuple[Tensor, Tensor | None]:
    """A numpy image as a (C, H, W) float tensor in [0, 1] and its transparency (last of 2 or 4 channels)."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"a numpy image must be H x W or H x W x C with C in 1-4, got shape {array.shape}")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        x = array.astype(np.float32) / np.float32(255 if array.dtype == np.uint8 else 65535)
    elif np.issubdtype(array.dtype, np.floating):
        x = array.astype(np.float32)
        if not np.isfinite(x).all() or x.min(initial=0.0) < 0 or x.max(initial=0.0) > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
    else:
        raise ValueError(f"a numpy image must be uint8, uint16 or float in [0, 1], got {array.dtype}")
    if min(x.shape[:2]) < 1:
        raise ValueError(f"the image is empty (shape {array.shape})")
    x = x[..., None] if x.ndim == 2 else x
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)
    if t.shape[0] in (2, 4):
        return t[:-1].contiguous(), t[-1:].contiguous()
    return t.contiguous(), None


def _to_array(out: Tensor, transparency: Tensor | None, like: np.ndarray) -> np.ndarray:
    """``out`` (C, H', W') back in the layout and dtype of ``like``, transparency appended."""
    if transparency is not None:
        out = torch.cat([out, _fit(transparency, out.shape[-2:])], dim=0)
    x = out.permute(1, 2, 0).cpu().numpy()
    if like.ndim == 2:
        x = x[..., 0]
    if np.issubdtype(like.dtype, np.floating):
        return x.astype(like.dtype)
    peak = 255 if like.dtype == np.uint8 else 65535
    return np.clip(np.rint(x.astype(np.float64) * peak), 0, peak).astype(like.dtype)


def _fit(transparency: Tensor, size: torch.Size) -> Tensor:
    """Transparency passes through; a super-resolution output gets it resized to its size."""
    if tuple(transparency.shape[-2:]) == tuple(size):
        return transparency
    return torch.nn.functional.interpolate(transparency[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def _from_pil(image: Any) -> tuple[np.ndarray, str | None]:
    """A PIL image as a numpy array (H x W [x C]) and the mode the result is given back in."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image), mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), "I;16"
    if mode == "I":
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16), "I;16"
    if mode == "F":
        raise ValueError("floating-point PIL images (mode F) are not supported; give a numpy float array in [0, 1]")
    target = "L" if mode == "1" else ("RGBA" if mode in ("PA", "RGBa", "La") or "transparency" in image.info else "RGB")
    if mode == "La":
        target = "LA"
    return np.asarray(image.convert(target)), target


def restore(
    image: Any,
    model: Any = "denoise",
    *,
    level: Any = None,
    alpha: Any = None,
    auto: bool | str = False,
    allow_extrapolation: bool = False,
    device: str | torch.device | None = "cpu",
    tile: int | str | None = "auto",
) -> Any:
    """Restore ``image`` with ``model`` at a level; the result has the type ``image`` has.

    Args:
        image: a file path (-> ``PIL.Image``, 8 bits per channel), a ``PIL.Image`` (-> ``PIL.Image``, its
            mode kept where it is L, LA, RGB, RGBA or 16-bit grey, else RGB / RGBA), or a numpy array
            ``H x W`` or ``H x W x C`` (C = 1-4; uint8, uint16 or float in [0, 1]; -> the same layout and
            dtype). Transparency (LA, RGBA, C = 2 or 4) passes through untouched.
        model: a shipped name (``"denoise"``, ``"dejpeg"``, ``"sr-pd-x4"``, ...), a model file, or a
            model from :func:`load_model` / :func:`ftn.load`.
        level: a real level through the model's calibration (``35``); several axes: ``"sigma=12,quality=70"``.
        alpha: alpha in [0, 1] (``0.3``); several axes: ``"0.3,0.8"`` in the model's axis order,
            ``"sigma=1.5"``, or a list.
        auto: ``True``: the level estimated from the image (noise sigma from the pixels; JPEG quality
            from the file's tables, so give the path); ``"map"``: the noise per region, as a per-pixel alpha.
        allow_extrapolation: accept alphas outside [0, 1] (levels never trained).
        device: ``"cpu"`` (default), ``"cuda"``, ``"auto"``.
        tile: large images run in tiles (``"auto"``: sized from free memory; an int; 0 or None: never).

    One-axis models take exactly one of ``level``, ``alpha`` and ``auto``; multi-axis models combine
    them, each axis set once, axes not set at alpha 0. Notes (a level clamped to the calibrated range)
    come as ``UserWarning``\\ s. Super-resolution models return a larger image.

    Raises:
        ValueError: one line: a bad level or alpha, an image of a kind not handled, a model file that
            does not load.
        FileNotFoundError: no such image or model.
    """
    from PIL import Image

    from .infer.apply import apply_model

    jpeg_file = None
    kind = "array"
    if isinstance(image, (str, os.PathLike)):
        from .data.images import load_image

        loaded = load_image(image)
        x, transparency, kind, jpeg_file = loaded.image, loaded.alpha, "path", Path(image)
        like = np.zeros((1, 1, 1), dtype=np.uint8)
    elif isinstance(image, Image.Image):
        like, pil_mode = _from_pil(image)
        filename = getattr(image, "filename", None)
        if image.format == "JPEG" and isinstance(filename, str) and filename and Path(filename).is_file():
            jpeg_file = Path(filename)  # the tables are in the file the image came from
        x, transparency = _from_array(like)
        kind = "pil"
    elif isinstance(image, np.ndarray):
        like = image
        x, transparency = _from_array(image)
    else:
        raise ValueError(f"image must be a file path, a PIL.Image or a numpy array, got {type(image).__name__}")

    net = _cached_model(model, choose_device(device))
    setting, notes = choose_setting(net, x, alpha=alpha, level=level, auto=auto, jpeg_file=jpeg_file,
                                    allow_extrapolation=allow_extrapolation)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    out = apply_model(net, x, alpha=setting, allow_extrapolation=allow_extrapolation, tile=tile).float().cpu()

    if kind == "array":
        return _to_array(out, transparency, like)
    if kind == "pil" and pil_mode == "I;16":
        return Image.fromarray(_to_array(out, None, like))
    result = _to_array(out, transparency, np.zeros((1, 1, 1), dtype=np.uint8))
    return Image.fromarray(result[..., 0] if result.shape[2] == 1 else result)
