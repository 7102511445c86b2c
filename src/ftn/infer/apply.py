"""Running a tunable model on one image, and translating between real levels and alpha.

A model file's metadata names its two levels (``"levels": [{"sigma": 20}, {"sigma": 80}]``: alpha 0
is the first, alpha 1 the second) and may carry a calibration measured on validation data, the
alpha that restores each level best::

    "calibration": {"level_name": "sigma", "levels": [20, 30, ..., 80], "alphas": [0.0, ..., 1.0]}

:func:`level_to_alpha` reads it (piecewise linear, monotone) so users can ask for ``sigma 50``
instead of guessing an alpha; :func:`alpha_to_level` goes back, for labels.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from ..control import check_alpha
from ..methods import TunableLayer, TunableModel

__all__ = ["level_to_alpha", "alpha_to_level", "describe_levels", "level_name", "apply_model", "model_channels"]


def _format_number(value: float) -> str:
    return f"{value:.4g}" if not float(value).is_integer() else str(int(value))


def _calibration(metadata: dict) -> tuple[str, np.ndarray, np.ndarray]:
    """(level name, levels ascending, alphas) of a model's calibration, validated."""
    cal = (metadata or {}).get("calibration")
    if not cal:
        raise ValueError(
            "this model has no level calibration, so a level cannot be turned into an alpha; "
            "choose the alpha yourself with --alpha (0 = "
            + describe_levels(metadata).replace(" ... ", ", 1 = ")
            + ")"
        )
    try:
        levels = np.asarray(cal["levels"], dtype=np.float64)
        alphas = np.asarray(cal["alphas"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the model's calibration is malformed ({type(err).__name__}: {err}); it needs 'levels' and 'alphas' lists") from None
    if levels.ndim != 1 or levels.shape != alphas.shape or levels.size < 2:
        raise ValueError("the model's calibration must have equally long 'levels' and 'alphas' lists of at least two numbers")
    if not (np.isfinite(levels).all() and np.isfinite(alphas).all()):
        raise ValueError("the model's calibration holds NaN or infinite numbers")
    order = np.argsort(levels, kind="stable")
    levels, alphas = levels[order], alphas[order]
    if np.any(np.diff(levels) == 0):
        raise ValueError("the model's calibration lists a level twice")
    steps = np.diff(alphas)
    if not (np.all(steps >= 0) or np.all(steps <= 0)):
        raise ValueError("the model's calibration is not monotone (alpha must move one way as the level grows)")
    name = str(cal.get("level_name") or level_name(metadata) or "level")
    return name, levels, alphas


def level_name(metadata: dict) -> str | None:
    """The name of the quantity the two levels vary ("sigma", "quality"), if the metadata says."""
    cal = (metadata or {}).get("calibration") or {}
    if isinstance(cal, dict) and cal.get("level_name"):
        return str(cal["level_name"])
    levels = (metadata or {}).get("levels")
    if isinstance(levels, list) and len(levels) == 2 and all(isinstance(x, dict) for x in levels):
        keys = set(levels[0]) & set(levels[1])
        numeric = [k for k in levels[0] if k in keys and isinstance(levels[0][k], (int, float)) and levels[0][k] != levels[1][k]]
        if len(numeric) == 1:
            return numeric[0]
    return None


def level_to_alpha(metadata: dict, level: float) -> tuple[float, str]:
    """The alpha that serves ``level`` (e.g. sigma 50), through the model's calibration.

    Returns ``(alpha, note)``: ``note`` is "" or says what was adjusted (a level outside the
    calibrated range is clamped to its nearest end).

    Raises:
        ValueError: the model has no calibration (use an alpha directly), or the level is not a
            finite number.
    """
    level = float(level)
    if not math.isfinite(level):
        raise ValueError(f"level must be a finite number, got {level}")
    name, levels, alphas = _calibration(metadata)
    note = ""
    low, high = float(levels[0]), float(levels[-1])
    if level < low or level > high:
        end = low if level < low else high
        note = (
            f"{name} {_format_number(level)} is outside the calibrated range {name} {_format_number(low)} ... "
            f"{name} {_format_number(high)}; using {name} {_format_number(end)}"
        )
        level = end
    alpha = float(np.interp(level, levels, alphas))
    return alpha, note


def alpha_to_level(metadata: dict, alpha: float) -> float | None:
    """The level an ``alpha`` serves, for labels: through the calibration where it covers alpha,
    else exact at alpha 0 and 1 from ``levels``; None when the metadata cannot tell."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        return None
    try:
        _, levels, alphas = _calibration(metadata)
    except ValueError:
        levels = alphas = None
    if levels is not None:
        order = np.argsort(alphas, kind="stable")
        a, lv = alphas[order], levels[order]
        keep = np.concatenate([[True], np.diff(a) > 0])  # a flat stretch maps to its first level
        a, lv = a[keep], lv[keep]
        if a.size >= 2 and a[0] <= alpha <= a[-1]:
            return float(np.interp(alpha, a, lv))
    name = level_name(metadata)
    ends = (metadata or {}).get("levels")
    if name and isinstance(ends, list) and len(ends) == 2 and alpha in (0.0, 1.0):
        value = ends[int(alpha)].get(name)
        return float(value) if isinstance(value, (int, float)) else None
    return None


def describe_levels(metadata: dict) -> str:
    """The two ends in words, e.g. ``"sigma 20 ... sigma 80"`` (alpha 0 ... alpha 1)."""
    ends = (metadata or {}).get("levels")
    if isinstance(ends, list) and len(ends) == 2 and all(isinstance(x, dict) and x for x in ends):
        words = [", ".join(f"{k} {_format_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v}" for k, v in x.items()) for x in ends]
        return f"{words[0]} ... {words[1]}"
    return "level 1 (alpha 0) ... level 2 (alpha 1)"


def model_channels(model: nn.Module) -> int:
    """Image channels the model takes (from its architecture options, else its first conv)."""
    network = model.model if isinstance(model, TunableModel) else model
    if isinstance(network, TunableLayer):
        network = network.base
    options = getattr(network, "arch_options", None) or {}
    if isinstance(options.get("in_channels"), int):
        return int(options["in_channels"])
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"cannot tell how many image channels {type(network).__name__} takes")


def _first_param(model: nn.Module) -> Tensor | None:
    return next(iter(model.parameters()), None)


def apply_model(
    model: nn.Module,
    image: Tensor,
    *,
    alpha: float | Tensor,
    allow_extrapolation: bool | None = None,
    tile: int | str | None = None,
    overlap: int = 64,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Tensor:
    """Run ``model`` on one image at ``alpha``; returns an image like the input, clamped to [0, 1].

    Args:
        model: a :class:`~ftn.TunableModel` (run in eval mode; its mode is restored afterwards).
        image: (C, H, W) or (1, C, H, W) float in [0, 1]. A grey image given to a colour model is
            replicated to three channels and the result averaged back to one; a colour image given
            to a grey model is processed one channel at a time.
        alpha: a number, or a per-pixel map of shape (H, W), (1, H, W) or (1, 1, H, W).
        allow_extrapolation: overrides the model's own setting for this call (alphas outside [0, 1]).
        tile: None or 0 runs the whole image at once; an int runs tiles of that side (input pixels);
            ``"auto"`` picks the side from free memory and tiles only images larger than it
            (:mod:`ftn.infer.tiling`). On CUDA, an out-of-memory error halves the tile and retries.
        overlap: input pixels shared by neighbouring tiles (the middle half is cross-faded).
        progress: called with ``(tiles done, tiles in all)``.
        log: where one-line notes go (a tile size halved, tiling a network with instance norm).

    Runs on the model's device and dtype under ``torch.inference_mode``.
    """
    if not isinstance(model, TunableModel):
        raise TypeError(
            f"apply_model needs a tunable model (ftn.attach / ftn.load of a file with a method), got {type(model).__name__}"
        )
    if not isinstance(image, Tensor) or image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) tensor, got {shape}")
    batched = image.dim() == 4
    x = image if batched else image[None]
    if isinstance(alpha, Tensor) and alpha.dim() in (2, 3):
        alpha = alpha.reshape(1, 1, *alpha.shape[-2:])
    extrapolate = model.control.allow_extrapolation if allow_extrapolation is None else bool(allow_extrapolation)
    check_alpha(alpha, allow_extrapolation=extrapolate)

    want = model_channels(model)
    have = x.shape[1]
    param = _first_param(model)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = x.to(device=device, dtype=dtype)
    if isinstance(alpha, Tensor):
        alpha = alpha.to(device=device, dtype=dtype)

    if have == want:
        inputs, merge = x, None
    elif have == 1 and want == 3:
        inputs, merge = x.expand(-1, 3, -1, -1), "mean"
    elif want == 1:
        inputs, merge = x.reshape(-1, 1, *x.shape[-2:]), "stack"
    else:
        raise ValueError(f"the model takes {want}-channel images; this one has {have} channels")

    was_training = model.training
    previous = model.control.allow_extrapolation
    model.control.allow_extrapolation = extrapolate
    try:
        model.eval()
        with torch.inference_mode():
            out = _forward(model, inputs, alpha, tile=tile, overlap=overlap, progress=progress, log=log or (lambda _: None))
    finally:
        model.control.allow_extrapolation = previous
        model.train(was_training)
    if merge == "mean":
        out = out.mean(dim=1, keepdim=True)
    elif merge == "stack":
        out = out.reshape(x.shape[0], have, *out.shape[-2:])
    out = out.clamp(0.0, 1.0).to(device=image.device, dtype=image.dtype if image.is_floating_point() else torch.float32)
    return out if batched else out[0]


def _network(model: TunableModel) -> nn.Module:
    network = model.model
    return network.base if isinstance(network, TunableLayer) else network


def _forward(
    model: TunableModel,
    x: Tensor,
    alpha: float | Tensor,
    *,
    tile: int | str | None,
    overlap: int,
    progress: Callable[[int, int], None] | None,
    log: Callable[[str], None],
) -> Tensor:
    """The model on ``x`` whole or in tiles; on CUDA out-of-memory, in tiles half as large."""
    from .tiling import auto_tile_size, normalises_globally, tiled_forward

    network = _network(model)
    align = int(getattr(network, "size_multiple", 1))
    height, width = x.shape[-2:]
    if tile == "auto":
        side = auto_tile_size(model, x.shape[1], x.device, multiple=max(16, align))
        tile = side if max(height, width) > side else None
    elif tile is not None and not isinstance(tile, int):
        raise ValueError(f"tile must be None, an int or 'auto', got {tile!r}")
    if tile and tile % align:
        tile += align - tile % align
    noted = False
    while True:
        try:
            if not tile or (height <= tile and width <= tile):
                return model(x, alpha=alpha)
            if tile <= overlap:
                raise ValueError(f"tile size {tile} must exceed the overlap {overlap}")
            if not noted and normalises_globally(network):
                log("note: this network normalises over the whole image (instance norm); tiles change the result slightly")
                noted = True
            amap = alpha if isinstance(alpha, Tensor) and alpha.dim() == 4 else None

            def run(piece: Tensor, piece_map: Tensor | None) -> Tensor:
                return model(piece, alpha=alpha if piece_map is None else piece_map)

            side = min(16, height, width)  # a small probe tells the output scale (super-resolution)
            probe = model(x[:, :, :side, :side], alpha=alpha if amap is None else amap[..., :side, :side])
            scale = probe.shape[-1] // side
            return tiled_forward(run, x, tile=tile, overlap=overlap, scale=scale, align=align, alpha_map=amap,
                                 progress=progress)
        except torch.cuda.OutOfMemoryError:
            smaller = (tile or auto_tile_size(model, x.shape[1], x.device)) // 2 // align * align
            if smaller <= overlap or smaller < 32:  # no tile small enough: the real error
                raise
            log(f"out of GPU memory with tiles of {tile or 'the whole image'}; retrying with tiles of {smaller}")
            torch.cuda.empty_cache()
            tile = smaller
